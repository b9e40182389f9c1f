//! Helpers shared by the host tests: the issue's config, identities, requests.
#![allow(dead_code, clippy::panic)]

use rate_limit::config::Config;
use rate_limit::policy::Policy;
use serde_json::{json, Value};
use shared::config::ConfigErrors;
use shared::identity::{Identity, Source};
use shared::request::Headers;

/// The configuration of issue 6, verbatim.
pub fn issue_config() -> Value {
    json!({
      "tiers": {
        "anonymous":     {"requests": 10,   "per": "minute"},
        "authenticated": {"requests": 100,  "per": "minute"},
        "premium":       {"requests": 1000, "per": "minute", "burst": 100}
      },
      "tier_claim": "tier",
      "trusted_proxy_hops": 0,
      "routes": [
        {"path": "/auth/login",    "methods": ["POST"], "requests": 10, "per": "minute", "key": "ip"},
        {"path": "/auth/register", "methods": ["POST"], "requests": 5,  "per": "minute", "key": "ip"},
        {"path": "/orders",        "methods": ["POST"], "requests": 50, "per": "minute", "key": "user"}
      ],
      "global": {"cluster": "ratelimit", "domain": "edge", "timeout_ms": 50, "failure_mode_deny": false}
    })
}

pub fn compile(v: &Value) -> Result<Policy, ConfigErrors> {
    shared::config::parse_json::<Config>(v.to_string().as_bytes()).and_then(Config::compile)
}

pub fn policy(v: Value) -> Policy {
    match compile(&v) {
        Ok(p) => p,
        Err(e) => panic!("config refused: {e}"),
    }
}

pub fn user(sub: &str, tier: Option<&str>) -> Identity {
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), Value::String(sub.into()));
    if let Some(t) = tier {
        claims.insert("tier".into(), Value::String(t.into()));
    }
    Identity { source: Source::Jwt, provider: "main".into(), subject: sub.into(), scopes: vec![], claims }
}

pub fn req(method: &str, path: &str, extra: &[(&str, &str)]) -> Headers {
    let mut pairs = vec![(":method", method), (":path", path), (":authority", "api.example.com")];
    pairs.extend_from_slice(extra);
    Headers::from_pairs(pairs)
}
