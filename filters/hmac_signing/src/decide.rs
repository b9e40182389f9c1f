//! The pure decision: from the request headers (and, when needed, the body) to allow, hold
//! for the body, or refuse. No host calls: `now` is passed in, the replay store is a
//! [`SharedStore`] the caller supplies.

use crate::apikey::{self, ApiKeyError};
use crate::digest::ContentDigest;
use crate::error::HmacError;
use crate::policy::{Policy, Require};
use crate::replay::{Claimed, NonceClaim, ReplayGuard};
use crate::signature::{self, SigError};
use shared::identity::{Identity, Source};
use shared::pathmatch::normalize;
use shared::request::Headers;
use shared::slots::SharedStore;

/// Identity provider name recorded for signatures and API keys.
pub const PROVIDER: &str = "hmac";

/// A request that passed every check that does not need shared state.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// `None` for rules that require nothing.
    pub identity: Option<Identity>,
    /// The signature's nonce, to claim before letting the request through.
    pub nonce: Option<NonceClaim>,
}

/// Checks that need the whole body.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub accepted: Accepted,
    /// `Content-Digest` the body must match.
    pub digest: Option<ContentDigest>,
    /// A signed request whose signature does not cover `content-digest`: its body must be empty.
    pub body_must_be_empty: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Let the request through (after claiming the nonce, see [`commit`]).
    Allow { accepted: Accepted, remove: Vec<String> },
    /// Hold the request, buffer the body, then call [`finish`].
    Buffer { pending: Pending, remove: Vec<String> },
    Deny(HmacError),
}

enum Auth {
    Anonymous,
    Signed(signature::Verified),
    ApiKey { id: String, scopes: Vec<String> },
}

fn authenticate(h: &Headers, require: Require, policy: &Policy, now: u64) -> Result<Auth, HmacError> {
    let api_key = || -> Result<Auth, HmacError> {
        let Some(keys) = policy.api_keys.as_ref() else {
            return Err(HmacError::ApiKey(ApiKeyError::Missing));
        };
        let k = apikey::verify(h, keys).map_err(HmacError::ApiKey)?;
        Ok(Auth::ApiKey { id: k.id.clone(), scopes: k.scopes.clone() })
    };
    let sig = || -> Result<Auth, HmacError> { Ok(Auth::Signed(signature::verify(h, policy, now)?)) };
    match require {
        Require::None => Ok(Auth::Anonymous),
        Require::Signature => sig(),
        Require::ApiKey => api_key(),
        Require::Any => {
            let has_api_keys = policy.api_keys.as_ref().is_some_and(|k| apikey::present(h, k));
            if signature::present(h) {
                sig()
            } else if has_api_keys {
                api_key()
            } else if policy.api_keys.is_none() {
                Err(SigError::Missing.into())
            } else if policy.keys.is_empty() {
                Err(HmacError::ApiKey(ApiKeyError::Missing))
            } else {
                Err(HmacError::CredentialsMissing)
            }
        }
    }
}

fn combined(h: &Headers, name: &str) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for line in h.get_all(name) {
        let o = out.get_or_insert_with(Vec::new);
        if !o.is_empty() {
            o.extend_from_slice(b", ");
        }
        o.extend_from_slice(line.trim_ascii());
    }
    out
}

/// Decide on the request headers. `end_of_stream` is true when the request has no body.
pub fn decide(h: &Headers, end_of_stream: bool, policy: &Policy, now: u64) -> Decision {
    match decide_inner(h, end_of_stream, policy, now) {
        Ok(d) => d,
        Err(e) => Decision::Deny(e),
    }
}

fn decide_inner(h: &Headers, end_of_stream: bool, policy: &Policy, now: u64) -> Result<Decision, HmacError> {
    let path = normalize(h.path()).map_err(HmacError::Path)?;
    let rule = policy.rules.iter().find(|r| r.route.matches(&path, h.method())).ok_or(HmacError::NoMatchingRule)?;
    let auth = authenticate(h, rule.require, policy, now)?;

    // The API key never travels further than the gateway unless asked to.
    let mut remove = Vec::new();
    if let Some(k) = policy.api_keys.as_ref() {
        if !k.forward && h.contains(&k.header) {
            remove.push(k.header.clone());
        }
    }

    let (identity, nonce, body_must_be_empty) = match auth {
        // Nothing is verified on public rules, not even a Content-Digest.
        Auth::Anonymous => return Ok(Decision::Allow { accepted: Accepted { identity: None, nonce: None }, remove }),
        Auth::Signed(v) => {
            let scopes = policy.keys.get(&v.keyid).map(|k| k.scopes.clone()).unwrap_or_default();
            let nonce = v.nonce.clone().map(|n| NonceClaim { keyid: v.keyid.clone(), nonce: n, until: v.valid_until });
            let must_be_empty = policy.require_content_digest && !v.covers_content_digest;
            (identity(Source::Signature, v.keyid, scopes), nonce, must_be_empty)
        }
        Auth::ApiKey { id, scopes } => (identity(Source::ApiKey, id, scopes), None, false),
    };
    let accepted = Accepted { identity: Some(identity), nonce };

    let digest = match combined(h, "content-digest") {
        Some(raw) => Some(ContentDigest::parse(&raw).map_err(HmacError::Digest)?),
        None => None,
    };
    let pending = Pending { accepted, digest, body_must_be_empty };
    if end_of_stream {
        return finish(pending, b"").map(|accepted| Decision::Allow { accepted, remove });
    }
    if pending.digest.is_none() && !pending.body_must_be_empty {
        // Nothing to check in the body: let it stream.
        return Ok(Decision::Allow { accepted: pending.accepted, remove });
    }
    if h.content_length().is_some_and(|n| n > policy.max_body_bytes) {
        return Err(HmacError::BodyTooLarge);
    }
    Ok(Decision::Buffer { pending, remove })
}

fn identity(source: Source, subject: String, scopes: Vec<String>) -> Identity {
    Identity { source, provider: PROVIDER.into(), subject, scopes, claims: Default::default() }
}

/// Whether `buffered` body bytes are still within the limit.
pub fn body_within_limit(buffered: u64, policy: &Policy) -> bool {
    buffered <= policy.max_body_bytes
}

/// Finish a held request with its complete body.
pub fn finish(pending: Pending, body: &[u8]) -> Result<Accepted, HmacError> {
    if pending.body_must_be_empty && !body.is_empty() {
        return Err(HmacError::DigestMissing);
    }
    if let Some(d) = &pending.digest {
        d.verify(body).map_err(HmacError::Digest)?;
    }
    Ok(pending.accepted)
}

/// Claim the nonce (if any) of an accepted request: the last check before it goes upstream.
pub fn commit(accepted: &Accepted, guard: &ReplayGuard, store: &dyn SharedStore, now: u64) -> Result<Claimed, HmacError> {
    match &accepted.nonce {
        Some(n) => guard.claim(store, n, now).map_err(HmacError::Replay),
        None => Ok(Claimed::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::digest::{sha256_field, DigestError};
    use crate::replay::ReplayError;
    use crate::signature::hmac_sign;
    use base64::Engine;
    use shared::slots::MemoryStore;

    const SECRET_B64: &str = "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";
    const NOW: u64 = 1_700_000_000;

    fn api_hash(key: &str) -> String {
        shared::hash::hex(&shared::hash::sha256(key.as_bytes()))
    }

    fn policy(extra: &str) -> Policy {
        let json = format!(
            r#"{{
              "keys": {{"partner-a": {{"secret_base64": "{SECRET_B64}", "scopes": ["orders:write"]}}}},
              "api_keys": {{"sha256": {{"{}": {{"id": "reporting", "scopes": ["orders:read"]}}}}}},
              "rules": [
                {{"prefix": "/health", "require": "none"}},
                {{"prefix": "/webhooks/", "require": "signature"}},
                {{"prefix": "/reports/", "require": "api_key"}},
                {{"prefix": "/api/", "require": "any"}}
              ]
              {extra}
            }}"#,
            api_hash("secret-api-key")
        );
        shared::config::parse_json::<Config>(json.as_bytes()).and_then(Config::compile).unwrap()
    }

    /// Sign like an RFC 9421 client: returns the request headers with Signature-Input/Signature.
    fn signed(method: &str, path: &str, components: &[&str], params: &str, extra: &[(&str, &str)]) -> Headers {
        let mut pairs: Vec<(String, Vec<u8>)> = vec![
            (":method".into(), method.into()),
            (":scheme".into(), b"http".to_vec()),
            (":authority".into(), b"api.example.com".to_vec()),
            (":path".into(), path.into()),
        ];
        pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())));
        let h = Headers::new(pairs.clone());
        let list: String = components.iter().map(|c| if c.starts_with('"') { c.to_string() } else { format!("\"{c}\"") }).collect::<Vec<_>>().join(" ");
        let input = format!("({list}){params}");
        let d = crate::sfv::parse_dictionary(format!("sig1={input}").as_bytes()).unwrap();
        let l = crate::components::as_inner_list(d.get("sig1").unwrap()).unwrap();
        let comps = crate::components::covered_components(&l.items).unwrap();
        let base = crate::components::signature_base(&crate::components::RequestParts::new(&h), &comps, &l.params).unwrap();
        let secret = base64::engine::general_purpose::STANDARD.decode(SECRET_B64).unwrap();
        let sig = base64::engine::general_purpose::STANDARD.encode(hmac_sign(&secret, base.as_bytes()));
        pairs.push(("signature-input".into(), format!("sig1={input}").into_bytes()));
        pairs.push(("signature".into(), format!("sig1=:{sig}:").into_bytes()));
        Headers::new(pairs)
    }

    fn params(nonce: Option<&str>) -> String {
        let mut p = format!(";created={NOW};keyid=\"partner-a\";alg=\"hmac-sha256\"");
        if let Some(n) = nonce {
            p.push_str(&format!(";nonce=\"{n}\""));
        }
        p
    }

    fn deny(d: Decision) -> HmacError {
        match d {
            Decision::Deny(e) => e,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    #[test]
    fn signed_get_is_allowed_with_identity() {
        let p = policy("");
        let h = signed("GET", "/webhooks/x?a=1", &["@method", "@target-uri"], &params(None), &[]);
        let Decision::Allow { accepted, remove } = decide(&h, true, &p, NOW) else { panic!() };
        let id = accepted.identity.unwrap();
        assert_eq!(id.source, Source::Signature);
        assert_eq!(id.provider, "hmac");
        assert_eq!(id.subject, "partner-a");
        assert_eq!(id.scopes, vec!["orders:write"]);
        assert!(id.claims.is_empty());
        assert!(remove.is_empty());
    }

    #[test]
    fn signed_post_with_digest_is_held_then_checked() {
        let p = policy("");
        let body = b"{\"order\": 1}";
        let cd = sha256_field(body);
        let h = signed("POST", "/webhooks/x", &["@method", "@target-uri", "content-digest"], &params(None), &[("content-digest", &cd), ("content-length", "12")]);
        let Decision::Buffer { pending, .. } = decide(&h, false, &p, NOW) else { panic!() };
        assert!(finish(pending.clone(), body).is_ok());
        assert_eq!(finish(pending.clone(), b"{\"order\": 2}"), Err(HmacError::Digest(DigestError::Mismatch)));
        assert_eq!(finish(pending, b""), Err(HmacError::Digest(DigestError::Mismatch)));
    }

    #[test]
    fn signed_body_without_covered_digest() {
        let p = policy("");
        let h = signed("POST", "/webhooks/x", &["@method", "@target-uri"], &params(None), &[("content-length", "5")]);
        let Decision::Buffer { pending, .. } = decide(&h, false, &p, NOW) else { panic!() };
        assert_eq!(finish(pending.clone(), b"hello"), Err(HmacError::DigestMissing));
        // An empty body after all is fine.
        assert!(finish(pending, b"").is_ok());
        // With require_content_digest off, the body streams unchecked.
        let p = policy(r#", "require_content_digest": false"#);
        assert!(matches!(decide(&h, false, &p, NOW), Decision::Allow { .. }));
    }

    #[test]
    fn uncovered_but_present_digest_is_still_checked() {
        let p = policy(r#", "require_content_digest": false"#);
        let h = signed("POST", "/webhooks/x", &["@method", "@target-uri"], &params(None), &[("content-digest", &sha256_field(b"a"))]);
        let Decision::Buffer { pending, .. } = decide(&h, false, &p, NOW) else { panic!() };
        assert_eq!(finish(pending, b"b"), Err(HmacError::Digest(DigestError::Mismatch)));
    }

    #[test]
    fn body_limit() {
        let p = policy(r#", "max_body_bytes": 10"#);
        let h = signed("POST", "/webhooks/x", &["@method", "@target-uri", "content-digest"], &params(None), &[("content-digest", &sha256_field(b"x")), ("content-length", "11")]);
        assert_eq!(deny(decide(&h, false, &p, NOW)), HmacError::BodyTooLarge);
        assert!(body_within_limit(10, &p));
        assert!(!body_within_limit(11, &p));
    }

    #[test]
    fn malformed_digest_is_refused_before_the_body() {
        let p = policy("");
        let h = signed("POST", "/webhooks/x", &["@method", "@target-uri", "content-digest"], &params(None), &[("content-digest", "sha-256=:AAAA:")]);
        assert_eq!(deny(decide(&h, false, &p, NOW)), HmacError::Digest(DigestError::Invalid));
    }

    #[test]
    fn no_body_with_digest_of_empty() {
        let p = policy("");
        let h = signed("DELETE", "/webhooks/x", &["@method", "@target-uri", "content-digest"], &params(None), &[("content-digest", &sha256_field(b""))]);
        assert!(matches!(decide(&h, true, &p, NOW), Decision::Allow { .. }));
        let h = signed("DELETE", "/webhooks/x", &["@method", "@target-uri", "content-digest"], &params(None), &[("content-digest", &sha256_field(b"x"))]);
        assert_eq!(deny(decide(&h, true, &p, NOW)), HmacError::Digest(DigestError::Mismatch));
    }

    #[test]
    fn tampering_is_caught() {
        let p = policy("");
        let h = signed("GET", "/webhooks/x?a=1", &["@method", "@target-uri", "x-tenant"], &params(None), &[("x-tenant", "t1")]);
        let tamper = |name: &str, value: &str| {
            let pairs = h.iter().map(|(k, v)| (k.to_string(), if k == name { value.as_bytes().to_vec() } else { v.to_vec() })).collect();
            deny(decide(&Headers::new(pairs), true, &p, NOW))
        };
        assert_eq!(tamper(":method", "DELETE"), SigError::Invalid.into());
        assert_eq!(tamper(":path", "/webhooks/y?a=1"), SigError::Invalid.into());
        assert_eq!(tamper(":path", "/webhooks/x?a=2"), SigError::Invalid.into());
        assert_eq!(tamper("x-tenant", "t2"), SigError::Invalid.into());
        assert_eq!(tamper(":authority", "evil.example.com"), SigError::Invalid.into());
    }

    #[test]
    fn rules_route_requirements() {
        let p = policy("");
        let bare = |path: &str, extra: &[(&'static str, &'static str)]| {
            let mut pairs = vec![(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", path)];
            pairs.extend_from_slice(extra);
            Headers::from_pairs(pairs)
        };
        assert!(matches!(decide(&bare("/health", &[]), true, &p, NOW), Decision::Allow { accepted: Accepted { identity: None, .. }, .. }));
        assert_eq!(deny(decide(&bare("/webhooks/x", &[]), true, &p, NOW)), SigError::Missing.into());
        assert_eq!(deny(decide(&bare("/webhooks/x", &[("x-api-key", "secret-api-key")]), true, &p, NOW)), SigError::Missing.into(), "an API key is not enough for a signature rule");
        assert_eq!(deny(decide(&bare("/reports/x", &[]), true, &p, NOW)), HmacError::ApiKey(ApiKeyError::Missing));
        assert_eq!(deny(decide(&bare("/reports/x", &[("x-api-key", "wrong")]), true, &p, NOW)), HmacError::ApiKey(ApiKeyError::Invalid));
        assert_eq!(deny(decide(&bare("/api/x", &[]), true, &p, NOW)), HmacError::CredentialsMissing);
        assert_eq!(deny(decide(&bare("/other", &[]), true, &p, NOW)), HmacError::NoMatchingRule);
        assert_eq!(deny(decide(&bare("/webhooks/../reports/x", &[]), true, &p, NOW)), HmacError::Path(shared::pathmatch::PathError::DotSegment));

        let Decision::Allow { accepted, remove } = decide(&bare("/reports/x", &[("x-api-key", "secret-api-key")]), true, &p, NOW) else { panic!() };
        let id = accepted.identity.unwrap();
        assert_eq!((id.source, id.subject.as_str(), id.scopes.clone()), (Source::ApiKey, "reporting", vec!["orders:read".to_string()]));
        assert_eq!(remove, vec!["x-api-key"]);
        // Rule `any` takes either; a present signature is always the one checked.
        assert!(matches!(decide(&bare("/api/x", &[("x-api-key", "secret-api-key")]), true, &p, NOW), Decision::Allow { .. }));
        let h = signed("GET", "/api/x", &["@method", "@target-uri"], &params(None), &[("x-api-key", "secret-api-key")]);
        let Decision::Allow { accepted, .. } = decide(&h, true, &p, NOW) else { panic!() };
        assert_eq!(accepted.identity.unwrap().source, Source::Signature);
        let h = signed("GET", "/api/x", &["@method"], &params(None), &[("x-api-key", "secret-api-key")]);
        assert_eq!(deny(decide(&h, true, &p, NOW)), SigError::NotCovered("\"@target-uri\"".into()).into(), "no fallback to the API key");
    }

    #[test]
    fn forwarding_the_api_key_is_opt_in() {
        let json = format!(r#"{{"api_keys": {{"forward": true, "sha256": {{"{}": {{"id": "r"}}}}}}}}"#, api_hash("k"));
        let p = shared::config::parse_json::<Config>(json.as_bytes()).and_then(Config::compile).unwrap();
        let h = Headers::from_pairs([(":method", "GET"), (":path", "/x"), ("x-api-key", "k")]);
        let Decision::Allow { remove, .. } = decide(&h, true, &p, NOW) else { panic!() };
        assert!(remove.is_empty());
        // With only API keys configured, the default rule asks for an API key.
        let h = Headers::from_pairs([(":method", "GET"), (":path", "/x")]);
        assert_eq!(deny(decide(&h, true, &p, NOW)), HmacError::ApiKey(ApiKeyError::Missing));
    }

    #[test]
    fn nonces_are_claimed_once() {
        let p = policy(r#", "require_nonce": true"#);
        let guard = ReplayGuard::new(p.replay_cache.sets, p.replay_cache.ways);
        let store = MemoryStore::new();
        let h = signed("GET", "/webhooks/x", &["@method", "@target-uri"], &params(Some("n-1")), &[]);
        let Decision::Allow { accepted, .. } = decide(&h, true, &p, NOW) else { panic!() };
        assert_eq!(accepted.nonce.as_ref().unwrap().until, NOW + 300 + 30);
        assert!(commit(&accepted, &guard, &store, NOW).is_ok());
        // The very same request again: every check passes but the nonce.
        let Decision::Allow { accepted, .. } = decide(&h, true, &p, NOW + 5) else { panic!() };
        assert_eq!(commit(&accepted, &guard, &store, NOW + 5), Err(HmacError::Replay(ReplayError::Replay)));
        let h = signed("GET", "/webhooks/x", &["@method", "@target-uri"], &params(None), &[]);
        assert_eq!(deny(decide(&h, true, &p, NOW)), SigError::NonceMissing.into());
    }

    #[test]
    fn expired_and_future_signatures() {
        let p = policy("");
        let h = signed("GET", "/webhooks/x", &["@method", "@target-uri"], &params(None), &[]);
        assert_eq!(deny(decide(&h, true, &p, NOW + 331)), SigError::Expired.into());
        assert_eq!(deny(decide(&h, true, &p, NOW - 31)), SigError::NotYetValid.into());
    }

    #[test]
    fn query_param_and_sf_components_verify() {
        let p = policy("");
        let h = signed(
            "POST",
            "/webhooks/x?Pet=dog&b=with+plus",
            &["@method", "@target-uri", r#""@query-param";name="Pet""#, r#""@query-param";name="b""#, r#""content-digest";sf"#, r#""content-digest";key="sha-256""#, "@request-target", "@path", "@query", "@scheme", "@authority"],
            &params(Some("abc")),
            &[("content-digest", &sha256_field(b"x"))],
        );
        let Decision::Buffer { pending, .. } = decide(&h, false, &p, NOW) else { panic!("{:?}", decide(&h, false, &p, NOW)) };
        assert!(finish(pending, b"x").is_ok());
    }

    #[test]
    fn mutated_requests_never_panic() {
        let p = policy(r#", "require_nonce": false"#);
        let base = signed(
            "POST",
            "/webhooks/x?Pet=dog",
            &["@method", "@target-uri", r#""@query-param";name="Pet""#, r#""content-digest";key="sha-256""#],
            &params(Some("n")),
            &[("content-digest", &sha256_field(b"x"))],
        );
        let pairs: Vec<(String, Vec<u8>)> = base.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let mut m = pairs.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % m.len();
                let v = &mut m[i].1;
                match next() % 3 {
                    0 if !v.is_empty() => {
                        let j = (next() as usize) % v.len();
                        v[j] = next() as u8;
                    }
                    1 if !v.is_empty() => v.truncate((next() as usize) % v.len()),
                    _ => v.insert((next() as usize) % (v.len() + 1), b"();=\":,\x00 "[(next() % 9) as usize]),
                }
            }
            if let Decision::Buffer { pending, .. } = decide(&Headers::new(m), false, &p, NOW) {
                let _ = finish(pending, b"x");
            }
        }
    }
}
