//! The JWS examples of RFC 7515 appendix A, RFC 7520 section 4 and RFC 8037 appendix A.4,
//! byte for byte as published, with their published keys.
//!
//! Examples whose payload is a JWT claims set (RFC 7515 A.1-A.3, `exp` 1300819380) go
//! through the whole decision ([`decide`]) at a `now` inside their validity, and are shown
//! expired at a `now` after it. Examples whose payload is not a JSON object (RFC 7520's
//! text, RFC 8037's "Example of Ed25519 signing", RFC 7515 A.4's "Payload") are refused by
//! the token parser (a JWT payload is a JSON object, RFC 7519 section 7.2 step 10), so their
//! signatures are checked one layer down, with [`verify_signature`] and the keys as
//! configuration parses them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use jwt_verify::config::{Config, Policy};
use jwt_verify::decide::{decide, Ctx, Decision};
use jwt_verify::error::JwtError;
use jwt_verify::jwk::parse_jwks;
use jwt_verify::token::{self, b64url, b64url_encode, Header, Token};
use jwt_verify::verify::verify_signature;
use serde_json::{json, Value};
use shared::config::{parse_json, ConfigErrors};
use shared::request::Headers;

// ---------------------------------------------------------------------------------------
// RFC 7515 appendix A.

/// A.1 (HS256), with the `oct` key of RFC 7517 appendix A.3 (second key).
const A1: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const A1_K: &str = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
/// A.2 (RS256).
const A2: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
const A2_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
/// A.3 (ES256).
const A3: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
const A3_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const A3_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
/// A.4 (ES512, P-521): not supported.
const A4: &str = "eyJhbGciOiJFUzUxMiJ9.UGF5bG9hZA.AdwMgeerwtHoh-l192l60hp9wAHZFVJbLfD_UxMi70cwnZOYaRI1bKPWROc-mZZqwqT2SI-KGDKB34XO0aw_7XdtAG8GaSwFKdCAPZgoXD2YBJZCPEX3xKpRwcdOO8KpEHwJjyqOgzDO7iKvU8vcnwNrmxYbSW9ERBXukOXolLzeO_Jn";
const A4_X: &str = "AekpBQ8ST8a8VcfVOTNl353vSrDCLLJXmPk06wTjxrrjcBpXp5EOnYG_NjFZ6OvLFV1jSfS9tsz4qUxcWceqwQGk";
const A4_Y: &str = "ADSmRA43Z1DSNx_RvcLI87cdL07l6jQyyBXMoxVg_l2Th-x3S1WDhjDly79ajL4Kkd0AZMaZmh9ubmf63e3kyMj2";
/// A.5 (unsecured, `alg: none`).
const A5: &str = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.";

/// `exp` of the A.1-A.3 claims set.
const A_EXP: u64 = 1_300_819_380;

fn a1_key() -> Value {
    json!({"kty": "oct", "k": A1_K, "kid": "HMAC key used in JWS A.1 example"})
}
fn a2_key() -> Value {
    json!({"kty": "RSA", "n": A2_N, "e": "AQAB"})
}
fn a3_key() -> Value {
    json!({"kty": "EC", "crv": "P-256", "x": A3_X, "y": A3_Y})
}

fn compile(v: Value) -> Result<Policy, ConfigErrors> {
    parse_json::<Config>(v.to_string().as_bytes()).and_then(Config::compile)
}

/// The policy a user would write for issuer `joe` with these keys (cache off: every
/// decision below is a fresh verification).
fn joe(keys: Vec<Value>) -> Policy {
    compile(json!({"providers": {"joe": {"issuer": "joe", "local_jwks": {"keys": keys}}}, "cache": {"enabled": false}})).unwrap()
}

fn decide_at(policy: &Policy, token: &str, now_s: u64) -> Decision {
    let auth = format!("Bearer {token}");
    let h = Headers::from_pairs([(":method", "GET"), (":path", "/"), (":authority", "example.com"), ("authorization", auth.as_str())]);
    let cx = Ctx { policy, remotes: &[], cache: None, now_s, allow_wait: false };
    decide(&h, &cx).decision
}

fn assert_allowed(d: Decision, what: &str) {
    match d {
        Decision::Allow(a) => assert_eq!(a.provider, Some(0), "{what}"),
        other => panic!("{what}: expected allow, got {other:?}"),
    }
}

/// The token with one bit of its signature flipped (still canonical base64url).
fn flip_signature(token: &str) -> String {
    let (input, sig) = token.rsplit_once('.').unwrap();
    let mut s = b64url(sig.as_bytes()).unwrap();
    s[0] ^= 1;
    format!("{input}.{}", b64url_encode(&s))
}

#[test]
fn rfc_7515_a1_a2_a3_verify_through_the_whole_decision() {
    for (name, token, key) in [("A.1 HS256", A1, a1_key()), ("A.2 RS256", A2, a2_key()), ("A.3 ES256", A3, a3_key())] {
        let policy = joe(vec![key]);
        // Inside the validity window (default clock skew 60 s).
        assert_allowed(decide_at(&policy, token, A_EXP - 100), name);
        assert_allowed(decide_at(&policy, token, A_EXP + 59), name);
        // The filter is not weakened: the 2011 token is expired today.
        assert_eq!(decide_at(&policy, token, A_EXP + 60), Decision::Deny(JwtError::Expired), "{name}");
        assert_eq!(decide_at(&policy, token, 1_800_000_000), Decision::Deny(JwtError::Expired), "{name}");
        // One flipped bit in the signature.
        assert_eq!(decide_at(&policy, &flip_signature(token), A_EXP - 100), Decision::Deny(JwtError::SignatureInvalid), "{name}");
    }
    // Each example only verifies with its own key: the other two keys accept the token's
    // algorithm or not, and never verify it.
    assert_eq!(decide_at(&joe(vec![a2_key(), a3_key()]), A1, A_EXP - 100), Decision::Deny(JwtError::AlgMismatch));
    assert_eq!(decide_at(&joe(vec![a1_key(), a3_key()]), A2, A_EXP - 100), Decision::Deny(JwtError::AlgMismatch));
    assert_eq!(decide_at(&joe(vec![a1_key(), a2_key()]), A3, A_EXP - 100), Decision::Deny(JwtError::AlgMismatch));
    let other_hmac = json!({"kty": "oct", "k": b64url_encode(&[7u8; 64])});
    assert_eq!(decide_at(&joe(vec![other_hmac]), A1, A_EXP - 100), Decision::Deny(JwtError::SignatureInvalid));
    // All three keys together: each token finds its own (no kid: every fitting key is tried).
    let all = joe(vec![a1_key(), a2_key(), a3_key()]);
    for token in [A1, A2, A3] {
        assert_allowed(decide_at(&all, token, A_EXP - 100), "all keys");
    }
}

#[test]
fn rfc_7515_a4_es512_is_refused() {
    // The P-521 key is refused at configuration, naming the field.
    let err = compile(json!({"providers": {"joe": {"issuer": "joe", "local_jwks": {"keys": [{"kty": "EC", "crv": "P-521", "x": A4_X, "y": A4_Y}]}}}})).unwrap_err();
    assert!(err.0.iter().any(|e| e.path == "providers.joe.local_jwks.keys[0].crv" && e.message.contains("P-521")), "{err}");
    let err = compile(json!({"providers": {"joe": {"issuer": "joe", "local_jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": A3_X, "y": A3_Y, "alg": "ES512"}]}}}})).unwrap_err();
    assert!(err.0.iter().any(|e| e.path == "providers.joe.local_jwks.keys[0].alg"), "{err}");
    // ES512 is not an algorithm of the filter, whatever the key set.
    assert_eq!(signature_layer(A4, &[a3_key()]), Err(JwtError::AlgUnsupported));
    // Its payload ("Payload") is not a claims set.
    assert_eq!(token::parse(A4.as_bytes(), 16384).err(), Some(JwtError::Malformed));
}

#[test]
fn rfc_7515_a5_unsecured_none_is_refused() {
    assert_eq!(token::parse(A5.as_bytes(), 16384).unwrap().header.alg, "none");
    for keys in [vec![a1_key()], vec![a2_key()], vec![a1_key(), a2_key(), a3_key()]] {
        assert_eq!(decide_at(&joe(keys), A5, A_EXP - 100), Decision::Deny(JwtError::AlgUnsupported));
    }
    // Nor with a signature appended, nor with the case changed.
    for alg in ["none", "None", "NONE"] {
        let h = b64url_encode(format!("{{\"alg\":\"{alg}\"}}").as_bytes());
        let (_, rest) = A1.split_once('.').unwrap();
        let t = format!("{h}.{rest}");
        assert_eq!(decide_at(&joe(vec![a1_key()]), &t, A_EXP - 100), Decision::Deny(JwtError::AlgUnsupported), "{alg}");
    }
}

// ---------------------------------------------------------------------------------------
// Signature layer for examples whose payload is not a claims set.

/// Verify a compact JWS's signature with `keys` (parsed as configuration parses them; no
/// key may be refused) through [`verify_signature`], without the claims-set requirement.
fn signature_layer(compact: &str, keys: &[Value]) -> Result<(), JwtError> {
    let (set, problems) = parse_jwks(&json!({ "keys": keys }), true).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let mut parts = compact.split('.');
    let (h, p, s) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    let header = token::parse_object(&b64url(h.as_bytes()).unwrap()).unwrap();
    let text = |n: &str| header.get(n).and_then(Value::as_str).map(str::to_string);
    let t = Token {
        signing_input: &compact.as_bytes()[..h.len() + 1 + p.len()],
        header: Header { alg: text("alg").unwrap(), kid: text("kid"), typ: text("typ") },
        claims: Default::default(),
        signature: b64url(s.as_bytes()).unwrap(),
    };
    verify_signature(&t, &set)
}

#[test]
fn rfc_7515_a2_a3_also_verify_at_the_signature_layer() {
    assert_eq!(signature_layer(A2, &[a2_key()]), Ok(()));
    assert_eq!(signature_layer(A3, &[a3_key()]), Ok(()));
    assert_eq!(signature_layer(A1, &[a1_key()]), Ok(()));
}

// RFC 7520 section 3 keys and section 4 compact serializations (payload: section 4's
// "It's a dangerous business, Frodo, ..." text).
const R_PAYLOAD: &str = "SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4";
const R_RSA_N: &str = "n4EPtAOCc9AlkeQHPzHStgAbgs7bTZLwUBZdR8_KuKPEHLd4rHVTeT-O-XV2jRojdNhxJWTDvNd7nqQ0VEiZQHz_AJmSCpMaJMRBSFKrKb2wqVwGU_NsYOYL-QtiWN2lbzcEe6XC0dApr5ydQLrHqkHHig3RBordaZ6Aj-oBHqFEHYpPe7Tpe-OfVfHd1E6cS6M1FZcD1NNLYD5lFHpPI9bTwJlsde3uhGqC0ZCuEHg8lhzwOHrtIQbS0FVbb9k3-tVTU4fg_3L_vniUFAKwuCLqKnS2BYwdq_mzSnbLY7h_qixoR7jig3__kRhuaxwUkRz5iaiQkqgc5gHdrNP5zw";
const R_EC_X: &str = "AHKZLLOsCOzz5cY97ewNUajB957y-C-U88c3v13nmGZx6sYl_oJXu9A5RkTKqjqvjyekWF-7ytDyRXYgCF5cj0Kt";
const R_EC_Y: &str = "AdymlHvOiLxXkEhayXQnNCvDX4h9htZaCJN34kfmC6pV5OhQHiraVySsUdaQkAgDPrwQrJmbnX9cwlGfP-HqHZR1";
const R_HS_K: &str = "hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg";
const R41_H: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9";
const R41_S: &str = "MRjdkly7_-oTPTS3AXP41iQIGKa80A0ZmTuV5MEaHoxnW2e5CZ5NlKtainoFmKZopdHM1O2U4mwzJdQx996ivp83xuglII7PNDi84wnB-BDkoBwA78185hX-Es4JIwmDLJK3lfWRa-XtL0RnltuYv746iYTh_qHRD68BNt1uSNCrUCTJDt5aAE6x8wW1Kt9eRo4QPocSadnHXFxnt8Is9UzpERV0ePPQdLuW3IS_de3xyIrDaLGdjluPxUAhb6L2aXic1U12podGU0KLUQSE_oI-ZnmKJ3F4uOZDnd6QZWJushZ41Axf_fcIe8u9ipH84ogoree7vjbU5y18kDquDg";
const R42_H: &str = "eyJhbGciOiJQUzM4NCIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9";
const R42_S: &str = "cu22eBqkYDKgIlTpzDXGvaFfz6WGoz7fUDcfT0kkOy42miAh2qyBzk1xEsnk2IpN6-tPid6VrklHkqsGqDqHCdP6O8TTB5dDDItllVo6_1OLPpcbUrhiUSMxbbXUvdvWXzg-UD8biiReQFlfz28zGWVsdiNAUf8ZnyPEgVFn442ZdNqiVJRmBqrYRXe8P_ijQ7p8Vdz0TTrxUeT3lm8d9shnr2lfJT8ImUjvAA2Xez2Mlp8cBE5awDzT0qI0n6uiP1aCN_2_jLAeQTlqRHtfa64QQSUmFAAjVKPbByi7xho0uTOcbH510a6GYmJUAfmWjwZ6oD4ifKo8DYM-X72Eaw";
const R43_H: &str = "eyJhbGciOiJFUzUxMiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9";
const R43_S: &str = "AE_R_YZCChjn4791jSQCrdPZCNYqHXCTZH0-JZGYNlaAjP2kqaluUIIUnC9qvbu9Plon7KRTzoNEuT4Va2cmL1eJAQy3mtPBu_u_sDDyYjnAMDxXPn7XrT0lw-kvAD890jl8e2puQens_IEKBpHABlsbEPX6sFY8OcGDqoRuBomu9xQ2";
const R44_H: &str = "eyJhbGciOiJIUzI1NiIsImtpZCI6IjAxOGMwYWU1LTRkOWItNDcxYi1iZmQ2LWVlZjMxNGJjNzAzNyJ9";
const R44_S: &str = "s0h6KThzkfBBBkLspW1h84VsJZFTsPPqMDA7g1Md7p0";

fn r_rsa() -> Value {
    json!({"kty": "RSA", "kid": "bilbo.baggins@hobbiton.example", "use": "sig", "n": R_RSA_N, "e": "AQAB"})
}
fn r_hs() -> Value {
    json!({"kty": "oct", "kid": "018c0ae5-4d9b-471b-bfd6-eef314bc7037", "use": "sig", "alg": "HS256", "k": R_HS_K})
}
fn compact(h: &str, s: &str) -> String {
    format!("{h}.{R_PAYLOAD}.{s}")
}

#[test]
fn rfc_7520_section_4_signatures() {
    let r41 = compact(R41_H, R41_S);
    let r42 = compact(R42_H, R42_S);
    let r43 = compact(R43_H, R43_S);
    let r44 = compact(R44_H, R44_S);
    // 4.1 RSA v1.5 (RS256), 4.2 RSA-PSS (PS384), 4.4 HMAC-SHA2 (HS256): verify, selected by kid.
    assert_eq!(signature_layer(&r41, &[r_rsa(), r_hs()]), Ok(()));
    assert_eq!(signature_layer(&r42, &[r_rsa(), r_hs()]), Ok(()));
    assert_eq!(signature_layer(&r44, &[r_rsa(), r_hs()]), Ok(()));
    for t in [&r41, &r42, &r44] {
        assert_eq!(signature_layer(&flip_signature(t), &[r_rsa(), r_hs()]), Err(JwtError::SignatureInvalid), "{t}");
        // The payload is text, not a claims set: the token parser refuses the token.
        assert_eq!(token::parse(t.as_bytes(), 16384).err(), Some(JwtError::Malformed));
    }
    // The RSA key's kid with an HS256 header: the key does not accept HS256 (key confusion).
    let confused = compact(&b64url_encode(br#"{"alg":"HS256","kid":"bilbo.baggins@hobbiton.example"}"#), R44_S);
    assert_eq!(signature_layer(&confused, &[r_rsa(), r_hs()]), Err(JwtError::AlgMismatch));
    // The HMAC key says alg HS256: an HS384 header naming it is refused before any crypto.
    let wrong_alg = compact(&b64url_encode(br#"{"alg":"HS384","kid":"018c0ae5-4d9b-471b-bfd6-eef314bc7037"}"#), R44_S);
    assert_eq!(signature_layer(&wrong_alg, &[r_rsa(), r_hs()]), Err(JwtError::AlgMismatch));
    // 4.3 ECDSA (ES512, P-521): the key is refused at configuration, the algorithm is unknown.
    let (_, problems) = parse_jwks(&json!({"keys": [{"kty": "EC", "kid": "bilbo.baggins@hobbiton.example", "use": "sig", "crv": "P-521", "x": R_EC_X, "y": R_EC_Y}]}), false).unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].path, "keys[0].crv");
    assert_eq!(signature_layer(&r43, &[r_rsa(), r_hs()]), Err(JwtError::AlgUnsupported));
}

// RFC 8037 appendix A.4 (Ed25519 signing) with the A.2 public key.
const E_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
const E_TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

#[test]
fn rfc_8037_a4_ed25519() {
    let key = json!({"kty": "OKP", "crv": "Ed25519", "x": E_X});
    assert_eq!(signature_layer(E_TOKEN, std::slice::from_ref(&key)), Ok(()));
    assert_eq!(signature_layer(&flip_signature(E_TOKEN), std::slice::from_ref(&key)), Err(JwtError::SignatureInvalid));
    // Another payload under the same signature.
    let other = E_TOKEN.replacen("RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc", &b64url_encode(b"Example of Ed25519 signinG"), 1);
    assert_eq!(signature_layer(&other, std::slice::from_ref(&key)), Err(JwtError::SignatureInvalid));
    // RFC 8037 A.1's private key in a key set is refused.
    let (_, problems) = parse_jwks(&json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A", "x": E_X}]}), false).unwrap();
    assert_eq!(problems[0].path, "keys[0].d");
    assert_eq!(token::parse(E_TOKEN.as_bytes(), 16384).err(), Some(JwtError::Malformed));
}
