//! The verified caller identity that an authentication filter (jwt_verify, hmac_signing)
//! records and later filters (rbac, rate_limit) read.
//!
//! It travels in Envoy filter state through the proxy-wasm property [`PROPERTY`], which a
//! client cannot set; never through request headers.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Property path under which the identity is stored for the rest of the chain.
pub const PROPERTY: &str = "identity";

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Jwt,
    Signature,
    ApiKey,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub source: Source,
    /// The provider (JWT provider name, or `hmac`) that verified it.
    pub provider: String,
    /// `sub` for JWTs, the key id for signatures and API keys.
    pub subject: String,
    /// Permissions granted directly to the caller (API key / signing key scopes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// The verified claims (JWT payload); empty for keys.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub claims: Map<String, Value>,
}

impl Identity {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// `None` for anything that is not an identity this crate wrote.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    /// A claim by name, or by dotted path into nested objects (`realm_access.roles`).
    /// An exact top-level name wins over a dotted path.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        if let Some(v) = self.claims.get(name) {
            return Some(v);
        }
        let mut parts = name.split('.');
        let mut cur = self.claims.get(parts.next()?)?;
        for p in parts {
            cur = cur.as_object()?.get(p)?;
        }
        Some(cur)
    }

    /// A claim read as a set of strings: a string gives one, an array gives its strings
    /// (non-strings ignored), anything else none.
    pub fn claim_strings(&self, name: &str) -> Vec<&str> {
        match self.claim(name) {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(claims: Value) -> Identity {
        Identity {
            source: Source::Jwt,
            provider: "main".into(),
            subject: "u1".into(),
            scopes: vec![],
            claims: claims.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn round_trip() {
        let i = id(json!({"sub": "u1", "role": ["a", "b"]}));
        assert_eq!(Identity::decode(&i.encode()), Some(i));
        assert_eq!(Identity::decode(b"{\"sub\":\"x\"}"), None);
        assert_eq!(Identity::decode(b"\xff"), None);
    }

    #[test]
    fn claims_as_strings() {
        let i = id(json!({"role": "admin", "roles": ["a", 1, "b"], "realm_access": {"roles": ["x"]}, "n": 3, "a.b": "exact"}));
        assert_eq!(i.claim_strings("role"), vec!["admin"]);
        assert_eq!(i.claim_strings("roles"), vec!["a", "b"]);
        assert_eq!(i.claim_strings("realm_access.roles"), vec!["x"]);
        assert!(i.claim_strings("n").is_empty());
        assert!(i.claim_strings("missing").is_empty());
        assert_eq!(i.claim_strings("a.b"), vec!["exact"]);
    }
}
