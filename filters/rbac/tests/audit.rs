//! The audit line of a denial: who, what, which rule, why; no token contents.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code

mod common;

use common::*;
use rbac::audit::{deny_fields, log_path, MAX_PATH, MAX_ROLES};
use rbac::decide::{decide, PeerCert, RequestView};
use serde_json::{json, Value};
use shared::audit::DenyLog;

#[test]
fn who_what_which_rule_why_and_nothing_else() {
    let p = policy(&issue_config());
    let id = jwt("bob", json!({"role": ["viewer", "ghost"], "email": "bob@example.com", "session": "s3cr3t-session", "amr": ["pwd"]}));
    let d = decide(&RequestView::new(b"POST", b"/orders?access_token=tok-in-query"), Some(&id), None, &p);
    let extra = deny_fields(&d, Some(&id), None, &p);
    let line = DenyLog { filter: "rbac", code: "permission_denied", status: 403, method: "POST", path: &log_path(b"/orders?access_token=tok-in-query"), request_id: Some("r1"), client: None, extra, shadow: false }.line();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["event"], "deny");
    assert_eq!(v["subject"], "bob");
    assert_eq!(v["provider"], "main");
    assert_eq!(v["roles"], json!(["viewer", "ghost"]));
    assert_eq!(v["rule"], "rules[4]");
    assert_eq!(v["route"], "POST /orders");
    assert_eq!(v["reason"], "permission_denied");
    assert_eq!(v["path"], "/orders");
    for secret in ["bob@example.com", "s3cr3t-session", "tok-in-query", "pwd"] {
        assert!(!line.contains(secret), "{secret} leaked: {line}");
    }
}

#[test]
fn anonymous_service_and_shadow_lines() {
    let p = policy(&issue_config());
    let d = decide(&RequestView::new(b"GET", b"/orders"), None, None, &p);
    let f = deny_fields(&d, None, None, &p);
    assert_eq!(f["subject"], Value::Null);
    assert_eq!(f["reason"], "unauthenticated");

    let d = decide(&RequestView::new(b"GET", b"/nowhere"), None, None, &p);
    let f = deny_fields(&d, None, None, &p);
    assert_eq!(f["reason"], "no_rule");
    assert!(f.get("rule").is_none());

    let peer = PeerCert { uri_san: Some("spiffe://cluster.local/ns/shop/sa/order-service".into()) };
    let d = decide(&RequestView::new(b"PUT", b"/v1/user/profile"), None, Some(&peer), &p);
    let f = deny_fields(&d, None, Some(&peer), &p);
    assert_eq!(f["service"], "spiffe://cluster.local/ns/shop/sa/order-service");
    assert_eq!(f["rule"], "services.deny[0]");
    assert_eq!(f["reason"], "service_denied");
    assert!(f.get("subject").is_none());

    let line = DenyLog { filter: "rbac", code: "service_denied", status: 403, method: "PUT", path: "/v1/user/profile", extra: f, shadow: true, ..Default::default() }.line();
    assert!(line.contains("\"event\":\"shadow_deny\""), "{line}");
}

#[test]
fn fields_are_bounded() {
    let p = policy(&issue_config());
    let many: Vec<String> = (0..100).map(|i| format!("role-{i}-{}", "x".repeat(300))).collect();
    let id = jwt("bob", json!({"role": many}));
    let d = decide(&RequestView::new(b"GET", b"/orders"), Some(&id), None, &p);
    let f = deny_fields(&d, Some(&id), None, &p);
    let roles = f["roles"].as_array().unwrap();
    assert_eq!(roles.len(), MAX_ROLES);
    assert!(roles.iter().all(|r| r.as_str().unwrap().len() <= 131));
    let long = format!("/{}", "é".repeat(600));
    let lp = log_path(long.as_bytes());
    assert!(lp.len() <= MAX_PATH + 3 && lp.ends_with("..."));
    assert_eq!(log_path(b"/a\xff?b"), "/a\u{fffd}");
}
