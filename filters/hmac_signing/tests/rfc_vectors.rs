//! RFC 9421 appendix B.2 and RFC 9530 examples through the whole host decision
//! ([`decide`] then [`finish`] with the body), complementing the unit tests beside the code
//! (B.2.5 signature base and MAC, RFC 9530 appendix D digests) and the Envoy test of B.2.5:
//!
//! - B.2.5 (`hmac-sha256`, key `test-shared-secret`) under the default policy, which wants a
//!   body covered by a signed `Content-Digest`: B.2.5 covers only `date`, `@authority` and
//!   `content-type`, so its request with a body is refused (`DigestMissing`); with
//!   `require_content_digest: false` it passes and its `Content-Digest` is still checked;
//! - B.2.6 (`ed25519`, key `test-key-ed25519`): the filter verifies `hmac-sha256` only, so the
//!   signature is refused whichever way the key is configured;
//! - RFC 9530's `sha-256` of the B.2 body `{"hello": "world"}` (the unit tests cover the
//!   sha-512 value and the `{"hello": "world"}\n` body of appendix D).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use hmac_signing::config::Config;
use hmac_signing::decide::{decide, finish, Decision};
use hmac_signing::digest::DigestError;
use hmac_signing::error::HmacError;
use hmac_signing::policy::Policy;
use hmac_signing::signature::SigError;
use serde_json::{json, Value};
use shared::request::Headers;

/// RFC 9421 B.1.5 `test-shared-secret`.
const SHARED_SECRET: &str = "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";
const CREATED: u64 = 1_618_884_473;
const BODY: &[u8] = br#"{"hello": "world"}"#;
const B2_SHA512: &str = "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";
/// RFC 9530: `sha-256` of `{"hello": "world"}`.
const B2_SHA256: &str = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:";

const B25_INPUT: &str = r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#;
const B25_SIG: &str = "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:";
const B26_INPUT: &str = r#"sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#;
const B26_SIG: &str = "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:";

fn policy(extra: Value) -> Policy {
    let mut cfg = json!({
        "keys": {"test-shared-secret": {"secret_base64": SHARED_SECRET}},
        "required_components": [],
        "rules": [{"prefix": "/", "require": "signature"}]
    });
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    shared::config::parse_json::<Config>(cfg.to_string().as_bytes()).and_then(Config::compile).unwrap()
}

/// The RFC 9421 B.2 test request with `digest` as its Content-Digest and a signature.
fn b2(digest: &str, input: &str, sig: &str) -> Headers {
    Headers::from_pairs([
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "example.com"),
        (":path", "/foo?param=Value&Pet=dog"),
        ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("content-type", "application/json"),
        ("content-digest", digest),
        ("content-length", "18"),
        ("signature-input", input),
        ("signature", sig),
    ])
}

/// Decide with the body: `Ok(())` when the request goes through.
fn run(h: &Headers, p: &Policy, body: &[u8]) -> Result<(), HmacError> {
    match decide(h, body.is_empty(), p, CREATED + 5) {
        Decision::Allow { .. } => Ok(()),
        Decision::Buffer { pending, .. } => finish(pending, body).map(|_| ()),
        Decision::Deny(e) => Err(e),
    }
}

#[test]
fn rfc_9421_b_2_5_default_policy_wants_the_body_signed() {
    let p = policy(json!({}));
    assert_eq!(run(&b2(B2_SHA512, B25_INPUT, B25_SIG), &p, BODY), Err(HmacError::DigestMissing));
}

#[test]
fn rfc_9421_b_2_5_and_rfc_9530_digests_through_decide() {
    let p = policy(json!({"require_content_digest": false}));
    for digest in [B2_SHA512, B2_SHA256, &format!("{B2_SHA256}, {B2_SHA512}")] {
        let h = b2(digest, B25_INPUT, B25_SIG);
        assert_eq!(run(&h, &p, BODY), Ok(()), "{digest}");
        // The digest is still checked against the body received.
        assert_eq!(run(&h, &p, br#"{"hello": "World"}"#), Err(HmacError::Digest(DigestError::Mismatch)), "{digest}");
        assert_eq!(run(&h, &p, b"{\"hello\": \"world\"}\n"), Err(HmacError::Digest(DigestError::Mismatch)), "{digest}");
    }
}

#[test]
fn rfc_9421_b_2_6_ed25519_is_refused() {
    // The key is not configured (an ed25519 key cannot be): no signature by a known key.
    let p = policy(json!({"require_content_digest": false}));
    assert_eq!(run(&b2(B2_SHA512, B26_INPUT, B26_SIG), &p, BODY), Err(HmacError::Signature(SigError::UnknownKey)));
    // A key configured under that keyid is an HMAC secret: the ed25519 signature does not verify.
    let p = policy(json!({"require_content_digest": false, "keys": {"test-key-ed25519": {"secret_base64": SHARED_SECRET}}}));
    assert_eq!(run(&b2(B2_SHA512, B26_INPUT, B26_SIG), &p, BODY), Err(HmacError::Signature(SigError::Invalid)));
    // Said explicitly, the algorithm is refused before any MAC.
    let with_alg = B26_INPUT.replace(r#"keyid="test-key-ed25519""#, r#"keyid="test-key-ed25519";alg="ed25519""#);
    assert_eq!(run(&b2(B2_SHA512, &with_alg, B26_SIG), &p, BODY), Err(HmacError::Signature(SigError::AlgorithmMismatch)));
}
