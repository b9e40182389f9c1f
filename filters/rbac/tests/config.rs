//! Configuration: strict parsing and a compile() that reports every problem with its path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code

mod common;

use common::{compile, issue_config, policy};
use rbac::config::{Config, DEFAULT_MFA_VALUES};
use rbac::policy::Access;
use serde_json::json;
use shared::config::parse_json;

fn errors(v: serde_json::Value) -> shared::config::ConfigErrors {
    match compile(&v) {
        Ok(_) => panic!("config should be refused: {v}"),
        Err(e) => e,
    }
}

#[test]
fn the_issue_config_compiles() {
    let p = policy(&issue_config());
    assert_eq!(p.roles.len(), 3);
    assert_eq!(p.rules.len(), 6);
    assert_eq!(p.services.len(), 1);
    assert!(!p.shadow);
    assert_eq!(p.rules[0].access, Access::Public);
    // `orders:read` is granted by admin (`*`), trader and viewer (`*:read`).
    let Access::Permission { granted_by, .. } = &p.rules[3].access else { panic!("permission rule") };
    assert_eq!(granted_by.len(), 3);
    // `admin:manage` only by admin.
    let Access::Permission { granted_by, .. } = &p.rules[5].access else { panic!("permission rule") };
    assert_eq!(granted_by, &vec![p.role_id("admin").unwrap()]);
}

#[test]
fn defaults() {
    let p = policy(&json!({"roles": {"r": {"permissions": ["a:b"]}}, "rules": [{"path": "/", "permission": "a:b"}]}));
    assert_eq!(p.role_claim, "role");
    assert_eq!(p.mfa_claim, "amr");
    assert_eq!(p.mfa_values, DEFAULT_MFA_VALUES);
    assert!(!p.shadow);
    assert!(!p.roles[0].mfa_required);
    assert!(!p.has_services());
}

#[test]
fn empty_config_is_refused_because_it_would_deny_everything() {
    let e = parse_json::<Config>(b"").and_then(Config::compile).unwrap_err();
    assert!(e.has("rules"), "{e}");
    // A services-only policy is fine.
    assert!(compile(&json!({"services": {"spiffe://td/a": {"allow": [{"prefix": "/"}]}}})).is_ok());
}

#[test]
fn unknown_fields_are_refused_at_every_level() {
    let cases = [
        (json!({"rules": [], "extra": 1}), "extra"),
        (json!({"roles": {"a": {"permissions": [], "mfa": true}}}), "roles.a.mfa"),
        (json!({"rules": [{"path": "/", "public": true, "action": "allow"}]}), "rules[0].action"),
        (json!({"services": {"spiffe://td/a": {"allow": [{"path": "/", "verbs": ["GET"]}]}}}), "services.spiffe://td/a.allow[0].verbs"),
        (json!({"services": {"spiffe://td/a": {"allow": [], "audit": true}}}), "services.spiffe://td/a.audit"),
    ];
    for (cfg, path) in cases {
        let e = errors(cfg);
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(e.0[0].path, path, "{e}");
        assert!(e.0[0].message.contains("unknown field"), "{e}");
    }
}

#[test]
fn wrong_types_are_refused() {
    let e = errors(json!({"rules": [{"path": "/", "methods": "GET", "public": true}]}));
    assert_eq!(e.0[0].path, "rules[0].methods");
    let e = errors(json!({"shadow": "yes", "rules": [{"path": "/", "public": true}]}));
    assert_eq!(e.0[0].path, "shadow");
}

#[test]
fn duplicate_keys_are_refused_not_collapsed() {
    let raw = br#"{"roles": {"a": {"permissions": ["x:y"]}, "a": {"permissions": ["*"]}}, "rules": [{"path": "/", "roles": ["a"]}]}"#;
    let e = parse_json::<Config>(raw).unwrap_err();
    assert!(e.0[0].message.contains("duplicate key `a`"), "{e}");
    let raw = br#"{"services": {"spiffe://td/a": {"allow": [{"prefix": "/"}]}, "spiffe://td/a": {"allow": [{"prefix": "/x/"}]}}}"#;
    let e = parse_json::<Config>(raw).unwrap_err();
    assert!(e.0[0].message.contains("duplicate key"), "{e}");
}

#[test]
fn every_error_is_reported_in_one_pass() {
    let cfg = json!({
        "roles": {
            "admin": {"permissions": ["orders:write"], "mfa_required": true},
            "ops": {"permissions": ["orders:read", "orders", "or*ders:read", "orders:read"]},
            "": {"permissions": []}
        },
        "role_claim": "",
        "mfa_values": [],
        "rules": [
            {"path": "/orders", "methods": ["GET"], "permission": "orders:read"},
            {"path": "/orders", "methods": ["GET"], "permission": "orders:read"},
            {"path": "/users/{id}", "roles": ["admin", "superuser"]},
            {"path": "/x", "permission": "reports:export:now"},
            {"path": "/y", "permission": "orders:*"},
            {"path": "/z", "methods": ["get", "FETCH"], "public": true},
            {"path": "/a/**/b", "public": true},
            {"path": "/c", "public": true, "permission": "orders:read"},
            {"path": "/d"},
            {"path": "/e", "roles": []},
            {"prefix": "/f//", "public": true},
            {"path": "/g", "methods": [], "public": true},
            {"path": "/h", "prefix": "/h", "public": true},
            {"path": "/i", "roles": ["admin", "admin"]},
            {"path": "/j/{id}", "permission": "nobody:grants"}
        ],
        "services": {
            "http://not-spiffe/x": {"allow": [{"path": "/v1/a"}]},
            "spiffe://td/empty": {"allow": []},
            "spiffe://td/svc": {
                "allow": [{"path": "/v1/p", "methods": ["PUT"]}, {"path": "/v1/q"}, {"path": "/v1/q", "methods": ["GET"]}],
                "deny": [{"path": "/v1/p"}, {"path": "/v1/{x}/bad"}]
            }
        }
    });
    let e = errors(cfg);
    let expected = [
        "roles.ops.permissions[1]",          // 'orders' is not resource:action
        "roles.ops.permissions[2]",          // bad character
        "roles.ops.permissions[3]",          // listed twice
        "roles.",                            // empty role name
        "role_claim",                        // empty
        "mfa_values",                        // empty list
        "rules[1]",                          // duplicate of rules[0]
        "rules[2].roles[1]",                 // unknown role
        "rules[3].permission",               // bad shape
        "rules[4].permission",               // wildcard in a rule
        "rules[5].methods[0]",               // lower-case method
        "rules[6].path",                     // '**' not last
        "rules[7]",                          // public and permission
        "rules[8]",                          // nothing set
        "rules[9].roles",                    // empty roles
        "rules[10].prefix",                  // not normalized: can never match
        "rules[11].methods",                 // empty methods
        "rules[12]",                         // path and prefix
        "rules[13].roles[1]",                // role twice
        "rules[14].permission",              // no role grants it
        "services.http://not-spiffe/x",      // not a SPIFFE ID
        "services.spiffe://td/empty.allow",  // no allow
        "services.spiffe://td/svc.allow[0]", // covered by deny[0]
        "services.spiffe://td/svc.allow[2]", // covered by allow[1]
    ];
    for path in expected {
        assert!(e.has(path), "missing error at {path}; got: {e}");
    }
    assert_eq!(e.0.len(), expected.len(), "{e}");
    // Messages name the problem.
    let msg = |p: &str| e.0.iter().find(|x| x.path == p).map(|x| x.message.clone()).unwrap_or_default();
    assert!(msg("rules[1]").contains("rules[0] (GET /orders)"), "{}", msg("rules[1]"));
    assert!(msg("rules[2].roles[1]").contains("unknown role 'superuser'"));
    assert!(msg("rules[14].permission").contains("no role grants 'nobody:grants'"));
    assert!(msg("services.spiffe://td/svc.allow[0]").contains("deny[0]"));
}

#[test]
fn shadowed_rules_are_reported() {
    // A catch-all prefix first shadows everything after it.
    let e = errors(json!({
        "roles": {"r": {"permissions": ["*"]}},
        "rules": [
            {"prefix": "/", "permission": "a:b"},
            {"path": "/orders", "methods": ["GET"], "public": true},
            {"prefix": "/admin/", "public": true}
        ]
    }));
    assert!(e.has("rules[1]") && e.has("rules[2]"), "{e}");
    // A prefix covering a literal template; methods subset.
    let e = errors(json!({
        "roles": {"r": {"permissions": ["*"]}},
        "rules": [
            {"prefix": "/admin/", "methods": ["GET", "POST"], "permission": "a:b"},
            {"path": "/admin/users", "methods": ["GET"], "public": true}
        ]
    }));
    assert!(e.has("rules[1]"), "{e}");
    // Same path, disjoint methods: both reachable.
    assert!(compile(&json!({
        "roles": {"r": {"permissions": ["*"]}},
        "rules": [
            {"path": "/orders", "methods": ["GET"], "permission": "a:b"},
            {"path": "/orders", "methods": ["POST"], "permission": "a:c"},
            {"path": "/orders", "permission": "a:d"},
            {"prefix": "/orders/", "permission": "a:e"}
        ]
    }))
    .is_ok());
    // A rule with methods does not shadow a later rule for all methods.
    assert!(compile(&json!({
        "roles": {"r": {"permissions": ["*"]}},
        "rules": [{"path": "/a", "methods": ["GET"], "public": true}, {"path": "/a", "permission": "a:b"}]
    }))
    .is_ok());
}

#[test]
fn prefixes_must_be_normalized() {
    for bad in ["/a//", "/a/./", "/a%2fb", "/%6Frders/", "/a%3a", "/a?x"] {
        let e = errors(json!({"rules": [{"prefix": bad, "public": true}]}));
        assert!(e.has("rules[0].prefix"), "{bad}: {e}");
    }
    for good in ["/", "/orders", "/orders/", "/a%3A/"] {
        assert!(compile(&json!({"rules": [{"prefix": good, "public": true}]})).is_ok(), "{good}");
    }
}

#[test]
fn spiffe_ids() {
    for good in ["spiffe://cluster.local/ns/shop/sa/order-service", "spiffe://td", "spiffe://example.org/a_b/C.d-1"] {
        assert!(compile(&json!({"services": {good: {"allow": [{"prefix": "/"}]}}})).is_ok(), "{good}");
    }
    for bad in ["spiffe://", "spiffe://TD/x", "spiffe://td/", "spiffe://td//x", "spiffe://td/a/../b", "spiffe://td/a b", "https://td/x", "spiffe://td/x?y"] {
        let e = errors(json!({"services": {bad: {"allow": [{"prefix": "/"}]}}}));
        assert!(e.has(&format!("services.{bad}")), "{bad}: {e}");
    }
}

#[test]
fn role_claim_may_be_a_dotted_path_and_mfa_is_configurable() {
    let p = policy(&json!({
        "roles": {"admin": {"permissions": ["*"], "mfa_required": true}},
        "role_claim": "realm_access.roles",
        "mfa_claim": "acr_methods",
        "mfa_values": ["webauthn"],
        "rules": [{"prefix": "/", "roles": ["admin"]}],
        "shadow": true
    }));
    assert_eq!(p.role_claim, "realm_access.roles");
    assert_eq!(p.mfa_claim, "acr_methods");
    assert_eq!(p.mfa_values, vec!["webauthn".to_string()]);
    assert!(p.shadow);
    assert!(p.roles[0].mfa_required);
}
