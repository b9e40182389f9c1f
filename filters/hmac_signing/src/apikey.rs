//! API keys, known to the gateway only by their SHA-256. The presented key is hashed and
//! compared in constant time with every configured hash; the raw key is never stored,
//! logged or counted.

use crate::policy::{ApiKey, ApiKeys};
use shared::hash::sha256;
use shared::request::Headers;
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeyError {
    Missing,
    /// Unknown, empty or repeated.
    Invalid,
}

/// Whether the request presents an API key header.
pub fn present(h: &Headers, keys: &ApiKeys) -> bool {
    h.contains(&keys.header)
}

/// The configured key matching the request's API key header.
pub fn verify<'a>(h: &Headers, keys: &'a ApiKeys) -> Result<&'a ApiKey, ApiKeyError> {
    let presented = match h.get_unique(&keys.header) {
        Ok(Some(v)) => v,
        Ok(None) => return Err(ApiKeyError::Missing),
        Err(_) => return Err(ApiKeyError::Invalid),
    };
    if presented.is_empty() {
        return Err(ApiKeyError::Invalid);
    }
    lookup(presented, &keys.keys).ok_or(ApiKeyError::Invalid)
}

/// Compare against every hash (no early exit), so timing does not tell which entry matched.
pub fn lookup<'a>(presented: &[u8], keys: &'a [ApiKey]) -> Option<&'a ApiKey> {
    let digest = sha256(presented);
    let mut found = None;
    for k in keys {
        if bool::from(k.sha256.ct_eq(&digest)) {
            found = Some(k);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ApiKeys {
        ApiKeys {
            header: "x-api-key".into(),
            keys: vec![
                ApiKey { sha256: sha256(b"key-one"), id: "one".into(), scopes: vec!["a".into()] },
                ApiKey { sha256: sha256(b"key-two"), id: "two".into(), scopes: vec![] },
            ],
            forward: false,
        }
    }

    #[test]
    fn hashed_lookup() {
        let k = keys();
        assert_eq!(verify(&Headers::from_pairs([("x-api-key", "key-two")]), &k).unwrap().id, "two");
        assert_eq!(verify(&Headers::from_pairs([("x-api-key", "key-one")]), &k).unwrap().scopes, vec!["a"]);
        assert_eq!(verify(&Headers::from_pairs([("x-api-key", "key-three")]), &k).err(), Some(ApiKeyError::Invalid));
        assert_eq!(verify(&Headers::from_pairs([("x-api-key", "")]), &k).err(), Some(ApiKeyError::Invalid));
        assert_eq!(verify(&Headers::from_pairs([("x-other", "key-one")]), &k).err(), Some(ApiKeyError::Missing));
        assert_eq!(verify(&Headers::from_pairs([("x-api-key", "key-one"), ("x-api-key", "key-one")]), &k).err(), Some(ApiKeyError::Invalid));
        // The hash of a key is not the key.
        let hex = shared::hash::hex(&sha256(b"key-one"));
        assert_eq!(verify(&Headers::from_pairs([("x-api-key", hex.as_str())]), &k).err(), Some(ApiKeyError::Invalid));
    }
}
