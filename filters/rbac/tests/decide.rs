//! The decision function on the host: the issue's endpoint matrix, MFA, scopes, path tricks,
//! service rules, the wire form of each denial, and flat cost as rules grow.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code

mod common;

use common::*;
use rbac::decide::{decide, AllowReason, Decision, DenyReason, PeerCert, RequestView, RuleRef};
use rbac::policy::Policy;
use serde_json::json;
use shared::identity::Identity;
use shared::pathmatch::PathError;
use shared::reply::Rejection;

fn run(p: &Policy, method: &str, path: &str, id: Option<&Identity>) -> Decision {
    decide(&RequestView::new(method.as_bytes(), path.as_bytes()), id, None, p)
}

fn status(d: &Decision) -> u16 {
    match d {
        Decision::Allow { .. } => 200,
        Decision::Deny { reason, .. } => Rejection::from(*reason).status,
    }
}

/// The issue's matrix: exact status for each (endpoint, caller) cell.
#[test]
fn endpoint_matrix() {
    let p = policy(&issue_config());
    let admin = admin_mfa();
    let trader = trader();
    let viewer = viewer();
    //                                  admin trader viewer anonymous
    let rows: &[(&str, &str, [u16; 4])] = &[
        ("POST", "/auth/login", [200, 200, 200, 200]),
        ("GET", "/users/me", [200, 200, 200, 401]),
        ("GET", "/users/42", [200, 403, 403, 401]),
        ("GET", "/orders", [200, 200, 200, 401]),
        ("POST", "/orders", [200, 200, 403, 401]),
        ("GET", "/admin/users", [200, 403, 403, 401]),
        ("DELETE", "/admin/users/7", [200, 403, 403, 401]),
        ("GET", "/admin", [200, 403, 403, 401]),
        // No rule: default deny, for everyone.
        ("DELETE", "/orders", [403, 403, 403, 403]),
        ("GET", "/auth/login", [403, 403, 403, 403]),
        ("GET", "/positions", [403, 403, 403, 403]),
        ("GET", "/users/42/orders", [403, 403, 403, 403]),
        ("GET", "/", [403, 403, 403, 403]),
    ];
    for (method, path, want) in rows {
        let got = [
            status(&run(&p, method, path, Some(&admin))),
            status(&run(&p, method, path, Some(&trader))),
            status(&run(&p, method, path, Some(&viewer))),
            status(&run(&p, method, path, None)),
        ];
        assert_eq!(&got, want, "{method} {path} (admin, trader, viewer, anonymous)");
    }
}

#[test]
fn decisions_name_the_rule_and_the_reason() {
    let p = policy(&issue_config());
    assert_eq!(run(&p, "POST", "/auth/login", None), Decision::Allow { rule: RuleRef::Rule(0), reason: AllowReason::Public });
    assert_eq!(run(&p, "GET", "/orders", Some(&trader())), Decision::Allow { rule: RuleRef::Rule(3), reason: AllowReason::Permission });
    assert_eq!(run(&p, "GET", "/users/9", Some(&admin_mfa())), Decision::Allow { rule: RuleRef::Rule(2), reason: AllowReason::Role });
    assert_eq!(run(&p, "GET", "/orders", None), Decision::Deny { rule: Some(RuleRef::Rule(3)), reason: DenyReason::Unauthenticated });
    assert_eq!(run(&p, "POST", "/orders", Some(&viewer())), Decision::Deny { rule: Some(RuleRef::Rule(4)), reason: DenyReason::PermissionDenied });
    assert_eq!(run(&p, "GET", "/users/9", Some(&trader())), Decision::Deny { rule: Some(RuleRef::Rule(2)), reason: DenyReason::RoleRequired });
    assert_eq!(run(&p, "GET", "/nope", Some(&trader())), Decision::Deny { rule: None, reason: DenyReason::NoRule });
}

#[test]
fn mfa_required_roles() {
    let p = policy(&issue_config());
    let no_mfa = admin_no_mfa();
    for (m, path) in [("GET", "/users/me"), ("GET", "/users/1"), ("GET", "/orders"), ("POST", "/orders"), ("GET", "/admin/x")] {
        let d = run(&p, m, path, Some(&no_mfa));
        assert!(matches!(d, Decision::Deny { reason: DenyReason::MfaRequired, .. }), "{m} {path}: {d:?}");
        assert_eq!(status(&d), 403);
    }
    // Public stays public.
    assert!(run(&p, "POST", "/auth/login", Some(&no_mfa)).is_allow());
    // No amr claim at all; a string amr; every default value.
    assert!(!run(&p, "GET", "/orders", Some(&jwt("a", json!({"role": "admin"})))).is_allow());
    assert!(run(&p, "GET", "/orders", Some(&jwt("a", json!({"role": "admin", "amr": "mfa"})))).is_allow());
    for v in ["mfa", "otp", "hwk", "swk"] {
        assert!(run(&p, "GET", "/admin/x", Some(&jwt("a", json!({"role": "admin", "amr": [v]})))).is_allow(), "{v}");
    }
    for v in ["pwd", "sms", "MFA", ""] {
        assert!(!run(&p, "GET", "/admin/x", Some(&jwt("a", json!({"role": "admin", "amr": [v]})))).is_allow(), "{v}");
    }
    // Another role without MFA still grants what it grants, but not more.
    let both = jwt("a", json!({"role": ["admin", "viewer"], "amr": ["pwd"]}));
    assert!(run(&p, "GET", "/orders", Some(&both)).is_allow());
    assert!(matches!(run(&p, "POST", "/orders", Some(&both)), Decision::Deny { reason: DenyReason::MfaRequired, .. }));
    // An MFA claim without the role grants nothing.
    assert!(matches!(
        run(&p, "GET", "/admin/x", Some(&jwt("a", json!({"role": "viewer", "amr": ["mfa"]})))),
        Decision::Deny { reason: DenyReason::PermissionDenied, .. }
    ));
}

#[test]
fn mfa_claim_and_values_are_configurable_and_roles_can_be_nested() {
    let mut cfg = issue_config();
    cfg["mfa_claim"] = json!("factors");
    cfg["mfa_values"] = json!(["webauthn"]);
    cfg["role_claim"] = json!("realm_access.roles");
    let p = policy(&cfg);
    let id = |claims| jwt("a", claims);
    assert!(run(&p, "GET", "/admin/x", Some(&id(json!({"realm_access": {"roles": ["admin"]}, "factors": ["webauthn"]})))).is_allow());
    // The default values no longer count, nor does the default claim.
    assert!(!run(&p, "GET", "/admin/x", Some(&id(json!({"realm_access": {"roles": ["admin"]}, "factors": ["otp"]})))).is_allow());
    assert!(!run(&p, "GET", "/admin/x", Some(&id(json!({"realm_access": {"roles": ["admin"]}, "amr": ["webauthn"]})))).is_allow());
    // A top-level `role` claim is not where roles come from any more.
    assert!(!run(&p, "GET", "/orders", Some(&id(json!({"role": "viewer"})))).is_allow());
    assert!(run(&p, "GET", "/orders", Some(&id(json!({"realm_access": {"roles": "viewer"}})))).is_allow());
}

#[test]
fn roles_claim_shapes() {
    let p = policy(&issue_config());
    let id = |claims| jwt("a", claims);
    assert!(run(&p, "GET", "/orders", Some(&id(json!({"role": "viewer"})))).is_allow());
    assert!(run(&p, "GET", "/orders", Some(&id(json!({"role": ["ghost", "viewer"]})))).is_allow());
    assert!(run(&p, "GET", "/orders", Some(&id(json!({"role": [1, {"x": 1}, "viewer"]})))).is_allow());
    // Unknown roles, wrong types, role names in other claims: nothing granted.
    for claims in [json!({"role": "ghost"}), json!({"role": 7}), json!({"role": {"name": "viewer"}}), json!({"roles": "viewer"}), json!({"scope": "orders:read"}), json!({})] {
        let d = run(&p, "GET", "/orders", Some(&id(claims.clone())));
        assert!(matches!(d, Decision::Deny { reason: DenyReason::PermissionDenied, .. }), "{claims}: {d:?}");
    }
    // Role names are case-sensitive.
    assert!(!run(&p, "GET", "/orders", Some(&id(json!({"role": "Viewer"})))).is_allow());
}

#[test]
fn identity_scopes_are_granted_permissions() {
    let p = policy(&issue_config());
    let key = api_key("key-1", &["orders:read"]);
    assert_eq!(run(&p, "GET", "/orders", Some(&key)), Decision::Allow { rule: RuleRef::Rule(3), reason: AllowReason::Scope });
    assert!(matches!(run(&p, "POST", "/orders", Some(&key)), Decision::Deny { reason: DenyReason::PermissionDenied, .. }));
    assert!(run(&p, "POST", "/orders", Some(&api_key("k", &["orders:*"]))).is_allow());
    assert!(run(&p, "GET", "/users/me", Some(&api_key("k", &["*:read"]))).is_allow());
    assert!(run(&p, "GET", "/admin/x", Some(&api_key("k", &["*"]))).is_allow());
    // A scope never stands in for a role.
    assert!(matches!(run(&p, "GET", "/users/1", Some(&api_key("k", &["*"]))), Decision::Deny { reason: DenyReason::RoleRequired, .. }));
    // Malformed scopes grant nothing.
    for s in ["orders", "read:orders", "orders:read:x", ""] {
        assert!(!run(&p, "GET", "/orders", Some(&api_key("k", &[s]))).is_allow(), "{s:?}");
    }
    // Scopes are not subject to MFA (they belong to a key, not a role).
    let mut admin_key = admin_no_mfa();
    admin_key.scopes = vec!["orders:read".into()];
    assert!(run(&p, "GET", "/orders", Some(&admin_key)).is_allow());
    assert!(matches!(run(&p, "POST", "/orders", Some(&admin_key)), Decision::Deny { reason: DenyReason::MfaRequired, .. }));
}

#[test]
fn path_tricks_cannot_reach_other_rules() {
    let p = policy(&issue_config());
    let t = trader();
    let bad: &[(&str, PathError)] = &[
        ("/admin/../orders", PathError::DotSegment),
        ("/orders/../admin/x", PathError::DotSegment),
        ("/./orders", PathError::DotSegment),
        ("/admin/%2e%2e/orders", PathError::EncodedDotSegment),
        ("/admin/.%2E/orders", PathError::EncodedDotSegment),
        ("/admin%2Fusers", PathError::EncodedSlash),
        ("/orders%2f..%2fadmin", PathError::EncodedSlash),
        ("/admin%5cusers", PathError::EncodedSlash),
        ("/admin\\users", PathError::Backslash),
        ("/orders%00", PathError::ControlCharacter),
        ("/orders#x", PathError::Fragment),
        ("/orders%", PathError::BadPercentEncoding),
        ("orders", PathError::NotAbsolute),
    ];
    for (path, err) in bad {
        for id in [Some(&t), None] {
            let d = run(&p, "GET", path, id);
            assert_eq!(d, Decision::Deny { rule: None, reason: DenyReason::BadPath(*err) }, "{path}");
            let r = Rejection::from(DenyReason::BadPath(*err));
            assert_eq!((r.status, r.code), (400, err.code()));
        }
    }
    // Equivalent spellings normalize onto the rule they really address.
    assert_eq!(run(&p, "GET", "//admin/users", Some(&t)), Decision::Deny { rule: Some(RuleRef::Rule(5)), reason: DenyReason::PermissionDenied });
    assert_eq!(run(&p, "GET", "//admin", None), Decision::Deny { rule: Some(RuleRef::Rule(5)), reason: DenyReason::Unauthenticated });
    assert_eq!(run(&p, "GET", "/%61dmin/x", Some(&t)), Decision::Deny { rule: Some(RuleRef::Rule(5)), reason: DenyReason::PermissionDenied });
    assert_eq!(run(&p, "GET", "/%6Frders", Some(&t)).rule(), Some(RuleRef::Rule(3)));
    assert_eq!(run(&p, "GET", "/orders?next=/admin/x", Some(&t)).rule(), Some(RuleRef::Rule(3)));
    assert_eq!(run(&p, "GET", "///users//me", Some(&t)).rule(), Some(RuleRef::Rule(1)));
    // Case and trailing slashes are significant, as in the templates: no rule.
    assert_eq!(run(&p, "GET", "/ADMIN/x", Some(&t)), Decision::Deny { rule: None, reason: DenyReason::NoRule });
    assert_eq!(run(&p, "GET", "/orders/", Some(&t)), Decision::Deny { rule: None, reason: DenyReason::NoRule });
    // Methods are exact: lower-case or odd bytes match no rule.
    assert_eq!(run(&p, "get", "/orders", Some(&t)).rule(), None);
    assert_eq!(decide(&RequestView::new(b"G\xffT", b"/orders"), Some(&t), None, &p).rule(), None);
}

fn service(id: Option<&str>) -> PeerCert {
    PeerCert { uri_san: id.map(str::to_string) }
}

const ORDER_SVC: &str = "spiffe://cluster.local/ns/shop/sa/order-service";

#[test]
fn service_rules() {
    let mut cfg = issue_config();
    cfg["services"][ORDER_SVC]["allow"] = json!([{"prefix": "/v1/user/"}]);
    let p = policy(&cfg);
    let svc = service(Some(ORDER_SVC));
    let call = |m: &str, path: &str, peer: &PeerCert| decide(&RequestView::new(m.as_bytes(), path.as_bytes()), None, Some(peer), &p);
    assert_eq!(call("GET", "/v1/user/addresses", &svc), Decision::Allow { rule: RuleRef::ServiceAllow(0), reason: AllowReason::Service });
    assert_eq!(call("GET", "/v1/user/profile", &svc), Decision::Allow { rule: RuleRef::ServiceAllow(0), reason: AllowReason::Service });
    // Deny wins over allow.
    assert_eq!(call("PUT", "/v1/user/profile", &svc), Decision::Deny { rule: Some(RuleRef::ServiceDeny(0)), reason: DenyReason::ServiceDenied });
    assert_eq!(call("DELETE", "/v1/user/profile", &svc), Decision::Deny { rule: Some(RuleRef::ServiceDeny(0)), reason: DenyReason::ServiceDenied });
    // Nothing allows it.
    assert_eq!(call("GET", "/v1/admin", &svc), Decision::Deny { rule: None, reason: DenyReason::ServiceNotAllowed });
    // Service calls are decided by the service rules alone, even for public user routes.
    assert_eq!(call("POST", "/auth/login", &svc), Decision::Deny { rule: None, reason: DenyReason::ServiceNotAllowed });
    // Unknown caller, no SPIFFE ID: denied.
    assert_eq!(call("GET", "/v1/user/addresses", &service(Some("spiffe://cluster.local/ns/shop/sa/other"))).rule(), None);
    assert!(matches!(call("GET", "/v1/user/addresses", &service(Some("spiffe://cluster.local/ns/shop/sa/other"))), Decision::Deny { reason: DenyReason::ServiceUnknown, .. }));
    assert!(matches!(call("GET", "/v1/user/addresses", &service(None)), Decision::Deny { reason: DenyReason::ServiceIdentityMissing, .. }));
    // The SPIFFE ID is matched exactly.
    assert!(!call("GET", "/v1/user/addresses", &service(Some(&ORDER_SVC.to_uppercase()))).is_allow());
    assert!(!call("GET", "/v1/user/addresses", &service(Some(&format!("{ORDER_SVC}/x")))).is_allow());
    // A user token on an mTLS connection changes nothing.
    let d = decide(&RequestView::new(b"GET", b"/orders"), Some(&admin_mfa()), Some(&service(Some("spiffe://td/x"))), &p);
    assert!(matches!(d, Decision::Deny { reason: DenyReason::ServiceUnknown, .. }));
    // Path normalization applies to services too.
    assert!(matches!(call("GET", "/v1/user/x/../../admin", &svc), Decision::Deny { reason: DenyReason::BadPath(_), .. }));
    // Without mTLS the user rules apply.
    assert_eq!(run(&p, "GET", "/v1/user/addresses", Some(&admin_mfa())).rule(), None);
}

#[test]
fn the_issue_service_entry_as_written() {
    let p = policy(&issue_config());
    let svc = service(Some(ORDER_SVC));
    let call = |m: &str, path: &str| decide(&RequestView::new(m.as_bytes(), path.as_bytes()), None, Some(&svc), &p);
    for m in ["GET", "POST", "PUT"] {
        assert!(call(m, "/v1/user/addresses").is_allow(), "{m}");
    }
    assert!(matches!(call("DELETE", "/v1/user/addresses"), Decision::Deny { reason: DenyReason::ServiceNotAllowed, .. }));
    assert!(matches!(call("PUT", "/v1/user/profile"), Decision::Deny { reason: DenyReason::ServiceDenied, .. }));
    assert!(matches!(call("GET", "/v1/user/profile"), Decision::Deny { reason: DenyReason::ServiceNotAllowed, .. }));
}

#[test]
fn without_services_the_peer_certificate_is_not_an_authorization_basis() {
    let mut cfg = issue_config();
    cfg.as_object_mut().unwrap().remove("services");
    let p = policy(&cfg);
    let peer = service(Some(ORDER_SVC));
    let d = decide(&RequestView::new(b"GET", b"/orders"), Some(&trader()), Some(&peer), &p);
    assert_eq!(d, Decision::Allow { rule: RuleRef::Rule(3), reason: AllowReason::Permission });
    let d = decide(&RequestView::new(b"GET", b"/orders"), None, Some(&peer), &p);
    assert!(matches!(d, Decision::Deny { reason: DenyReason::Unauthenticated, .. }));
}

#[test]
fn peer_from_connection_properties() {
    let san = || Some(ORDER_SVC.as_bytes().to_vec());
    assert_eq!(PeerCert::from_properties(Some(&[1]), san), Some(service(Some(ORDER_SVC))));
    assert_eq!(PeerCert::from_properties(Some(b"true"), san), Some(service(Some(ORDER_SVC))));
    assert_eq!(PeerCert::from_properties(Some(&[0]), san), None);
    assert_eq!(PeerCert::from_properties(None, san), None);
    assert_eq!(PeerCert::from_properties(Some(&[1]), || None), Some(service(None)));
    assert_eq!(PeerCert::from_properties(Some(&[1]), || Some(vec![])), Some(service(None)));
    assert_eq!(PeerCert::from_properties(Some(&[1]), || Some(vec![0xff])), Some(service(None)));
}

#[test]
fn wire_form_of_each_denial() {
    let cases: &[(DenyReason, u16, &str)] = &[
        (DenyReason::NoRule, 403, "no_matching_rule"),
        (DenyReason::Unauthenticated, 401, "authentication_required"),
        (DenyReason::PermissionDenied, 403, "permission_denied"),
        (DenyReason::RoleRequired, 403, "role_required"),
        (DenyReason::MfaRequired, 403, "mfa_required"),
        (DenyReason::ServiceDenied, 403, "service_denied"),
        (DenyReason::ServiceNotAllowed, 403, "service_not_allowed"),
        (DenyReason::ServiceUnknown, 403, "service_unknown"),
        (DenyReason::ServiceIdentityMissing, 403, "service_identity_missing"),
        (DenyReason::BadPath(PathError::EncodedSlash), 400, "path_encoded_slash"),
    ];
    for (reason, st, code) in cases {
        let r = Rejection::from(*reason);
        assert_eq!((r.status, r.code), (*st, *code), "{reason:?}");
        assert!(DenyReason::METRICS.contains(&reason.metric()));
    }
    let h = Rejection::from(DenyReason::Unauthenticated);
    assert!(h.response_headers().contains(&("www-authenticate", "Bearer")));
    let h = Rejection::from(DenyReason::MfaRequired);
    assert!(h.response_headers().iter().any(|(k, v)| *k == "www-authenticate" && v.contains("insufficient_user_authentication")));
}

/// Matrix rules plus `n` generated rules, some with wildcard first segments, prefixes and
/// method sets, so the index has every kind of bucket.
fn big_config(n: usize) -> serde_json::Value {
    let mut cfg = issue_config();
    let rules = cfg["rules"].as_array_mut().unwrap();
    for i in 0..n {
        rules.push(match i % 5 {
            0 => json!({"path": format!("/svc{i}/items/{{id}}"), "methods": ["GET", "PUT"], "permission": "orders:read"}),
            1 => json!({"prefix": format!("/svc{i}/"), "permission": "positions:read"}),
            2 => json!({"path": format!("/{{tenant}}/svc{i}/**"), "methods": ["DELETE"], "roles": ["trader"]}),
            3 => json!({"path": format!("/svc{i}"), "public": true}),
            _ => json!({"prefix": format!("/svc{i}x"), "methods": ["PATCH"], "permission": "users:read"}),
        });
    }
    cfg
}

fn requests() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let paths = [
        "/", "/auth/login", "/users/me", "/users/42", "/orders", "/orders/1", "/admin", "/admin/a/b", "/positions", "/svc3",
        "/svc5/items/7", "/svc6/anything", "/acme/svc7/x/y", "/svc8", "/svc9xyz", "/svc10/items/1", "/svc11/", "/t/svc12/z",
        "/svc13", "/svc14x", "/svc995/items/1", "/svc996/x", "/other/svc997/q", "/svc998", "/svc999zz", "/nope/svc2/x",
    ];
    for m in ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"] {
        for path in paths {
            out.push((m.to_string(), path.to_string()));
        }
    }
    out
}

#[test]
fn ten_and_a_thousand_rules_decide_the_same() {
    let small = policy(&big_config(4));
    let large = policy(&big_config(994));
    assert_eq!((small.rules.len(), large.rules.len()), (10, 1000));
    let ids = [Some(admin_mfa()), Some(admin_no_mfa()), Some(trader()), Some(viewer()), Some(api_key("k", &["orders:read"])), None];
    // Requests the matrix rules address decide identically in both policies.
    for (m, path) in requests().iter().filter(|(_, p)| !p.contains("svc")) {
        for id in &ids {
            let a = run(&small, m, path, id.as_ref());
            let b = run(&large, m, path, id.as_ref());
            assert_eq!(a, b, "{m} {path}");
        }
    }
}

#[test]
fn the_index_agrees_with_a_linear_scan_and_examines_few_rules() {
    let large = policy(&big_config(994));
    let mut max_examined = 0;
    for (m, path) in requests() {
        let Ok(norm) = shared::pathmatch::normalize(path.as_bytes()) else { continue };
        let linear = large.rules.iter().position(|r| r.route.matches(&norm, m.as_bytes()));
        let (indexed, examined) = large.first_match_counted(&norm, m.as_bytes());
        assert_eq!(indexed, linear, "{m} {path}");
        max_examined = max_examined.max(examined);
    }
    // Wildcard-first rules (`/{tenant}/...`, one in five, DELETE only) are the only ones every
    // DELETE examines; other methods see a handful of candidates out of 1000 rules.
    for (m, path) in [("GET", "/orders"), ("POST", "/orders"), ("GET", "/users/me"), ("GET", "/admin/x"), ("GET", "/svc500/items/1")] {
        let norm = shared::pathmatch::normalize(path.as_bytes()).unwrap();
        let (hit, examined) = large.first_match_counted(&norm, m.as_bytes());
        assert!(hit.is_some(), "{m} {path}");
        assert!(examined <= 3, "{m} {path}: examined {examined} rules");
    }
    let small = policy(&issue_config());
    let norm = "/orders";
    assert_eq!(small.first_match_counted(norm, b"GET").1, large.first_match_counted(norm, b"GET").1);
    assert!(max_examined <= 210, "max examined {max_examined}");
}
