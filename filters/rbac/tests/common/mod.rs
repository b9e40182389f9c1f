//! Helpers shared by the host tests: the issue's config, identities, a compile shortcut.
#![allow(dead_code)]

use rbac::config::Config;
use rbac::policy::Policy;
use serde_json::{json, Value};
use shared::config::ConfigErrors;
use shared::identity::{Identity, Source};

/// The configuration of issue 5, verbatim.
pub fn issue_config() -> Value {
    json!({
      "roles": {
        "admin":   {"permissions": ["*"], "mfa_required": true},
        "trader":  {"permissions": ["users:read", "orders:read", "orders:write", "positions:read"]},
        "viewer":  {"permissions": ["*:read"]}
      },
      "role_claim": "role",
      "mfa_claim": "amr",
      "rules": [
        {"path": "/auth/login", "methods": ["POST"], "public": true},
        {"path": "/users/me", "methods": ["GET"], "permission": "users:read"},
        {"path": "/users/{id}", "methods": ["GET"], "roles": ["admin"]},
        {"path": "/orders", "methods": ["GET"], "permission": "orders:read"},
        {"path": "/orders", "methods": ["POST"], "permission": "orders:write"},
        {"path": "/admin/**", "permission": "admin:manage"}
      ],
      "services": {
        "spiffe://cluster.local/ns/shop/sa/order-service": {
          "allow": [{"path": "/v1/user/addresses", "methods": ["GET", "POST", "PUT"]}],
          "deny":  [{"path": "/v1/user/profile", "methods": ["PUT", "DELETE"]}]
        }
      },
      "shadow": false
    })
}

pub fn compile(v: &Value) -> Result<Policy, ConfigErrors> {
    shared::config::parse_json::<Config>(v.to_string().as_bytes()).and_then(Config::compile)
}

pub fn policy(v: &Value) -> Policy {
    match compile(v) {
        Ok(p) => p,
        Err(e) => panic!("config should compile: {e}"),
    }
}

pub fn jwt(subject: &str, claims: Value) -> Identity {
    Identity {
        source: Source::Jwt,
        provider: "main".into(),
        subject: subject.into(),
        scopes: vec![],
        claims: claims.as_object().cloned().unwrap_or_default(),
    }
}

pub fn api_key(subject: &str, scopes: &[&str]) -> Identity {
    Identity {
        source: Source::ApiKey,
        provider: "keys".into(),
        subject: subject.into(),
        scopes: scopes.iter().map(|s| (*s).to_string()).collect(),
        claims: Default::default(),
    }
}

pub fn admin_mfa() -> Identity {
    jwt("alice", json!({"role": "admin", "amr": ["pwd", "otp"]}))
}
pub fn admin_no_mfa() -> Identity {
    jwt("alice", json!({"role": "admin", "amr": ["pwd"]}))
}
pub fn trader() -> Identity {
    jwt("bob", json!({"role": ["trader"]}))
}
pub fn viewer() -> Identity {
    jwt("carol", json!({"role": "viewer"}))
}
