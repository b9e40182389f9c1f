//! JSON Web Keys (RFC 7517/7518/8037) for signature verification.
//!
//! Supported: RSA (2048 to 8192 bits), EC P-256 and P-384, OKP Ed25519, and `oct` secrets
//! (at least as long as the hash they are used with, RFC 7518 section 3.2). A key that
//! carries private members is refused: a key set published for verification must never
//! hold them. Each key says which algorithms it accepts, so the algorithm is decided by the
//! key, never by the token alone.

use crate::token::b64url;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fmt;

/// The JWS algorithms this filter verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
    HS256,
    HS384,
    HS512,
}

impl Alg {
    pub const ALL: [Alg; 12] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
        Alg::HS256,
        Alg::HS384,
        Alg::HS512,
    ];

    /// Exact, case-sensitive (RFC 7515 section 4.1.1); `none` is not an algorithm here.
    pub fn parse(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
        }
    }

    /// Minimum `oct` key length for HMAC algorithms (the hash output size).
    fn min_secret_len(self) -> usize {
        match self {
            Alg::HS384 => 48,
            Alg::HS512 => 64,
            _ => 32,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

/// Secret bytes whose `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// Big-endian modulus and exponent without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Uncompressed SEC1 point `04 || x || y`.
    Ec { curve: Curve, point: Vec<u8> },
    Ed25519 { x: Vec<u8> },
    Oct { k: Secret },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The JWK's own `alg`: when set, it is the only algorithm the key accepts.
    pub alg: Option<Alg>,
    pub material: KeyMaterial,
}

impl Jwk {
    /// Whether a token signed with `alg` may be verified with this key.
    pub fn accepts(&self, alg: Alg) -> bool {
        if self.alg.is_some_and(|a| a != alg) {
            return false;
        }
        match (&self.material, alg) {
            (KeyMaterial::Rsa { .. }, Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512) => true,
            (KeyMaterial::Ec { curve: Curve::P256, .. }, Alg::ES256) => true,
            (KeyMaterial::Ec { curve: Curve::P384, .. }, Alg::ES384) => true,
            (KeyMaterial::Ed25519 { .. }, Alg::EdDSA) => true,
            (KeyMaterial::Oct { k }, Alg::HS256 | Alg::HS384 | Alg::HS512) => k.0.len() >= alg.min_secret_len(),
            _ => false,
        }
    }

    fn kty(&self) -> &'static str {
        match self.material {
            KeyMaterial::Rsa { .. } => "RSA",
            KeyMaterial::Ec { .. } => "EC",
            KeyMaterial::Ed25519 { .. } => "OKP",
            KeyMaterial::Oct { .. } => "oct",
        }
    }
}

/// A verified-usable key set and a fingerprint of its content (cache records carry it, so
/// a cached verification is only served while the same keys are in force).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeySet {
    pub keys: Vec<Jwk>,
    pub fingerprint: [u8; 8],
}

impl KeySet {
    pub fn new(keys: Vec<Jwk>) -> Self {
        let mut h = Sha256::new();
        for k in &keys {
            h.update(k.kty().as_bytes());
            h.update([0]);
            h.update(k.kid.as_deref().unwrap_or_default().as_bytes());
            h.update([0]);
            h.update(k.alg.map(Alg::name).unwrap_or_default().as_bytes());
            h.update([0]);
            let parts: Vec<&[u8]> = match &k.material {
                KeyMaterial::Rsa { n, e } => vec![n, e],
                KeyMaterial::Ec { point, .. } => vec![point],
                KeyMaterial::Ed25519 { x } => vec![x],
                KeyMaterial::Oct { k } => vec![&k.0],
            };
            for p in parts {
                h.update((p.len() as u64).to_le_bytes());
                h.update(p);
            }
        }
        let d = h.finalize();
        let mut fingerprint = [0u8; 8];
        for (f, b) in fingerprint.iter_mut().zip(d.iter()) {
            *f = *b;
        }
        Self { keys, fingerprint }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A key that could not be used, with the JSON path below the key set (`keys[2].n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyProblem {
    pub path: String,
    pub message: String,
}

fn problem(path: String, message: impl Into<String>) -> KeyProblem {
    KeyProblem { path, message: message.into() }
}

const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;

fn bytes_member(obj: &Map<String, Value>, name: &str, at: &str) -> Result<Vec<u8>, KeyProblem> {
    match obj.get(name) {
        Some(Value::String(s)) => b64url(s.as_bytes()).ok_or_else(|| problem(format!("{at}.{name}"), "is not base64url without padding")),
        Some(_) => Err(problem(format!("{at}.{name}"), "must be a string")),
        None => Err(problem(format!("{at}.{name}"), "is required")),
    }
}

fn strip_leading_zeros(b: &[u8]) -> Vec<u8> {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(first..).unwrap_or_default().to_vec()
}

fn bit_len(be: &[u8]) -> usize {
    match be.first() {
        None => 0,
        Some(&top) => (be.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

fn parse_rsa(obj: &Map<String, Value>, at: &str) -> Result<KeyMaterial, KeyProblem> {
    let n = strip_leading_zeros(&bytes_member(obj, "n", at)?);
    let e = strip_leading_zeros(&bytes_member(obj, "e", at)?);
    let bits = bit_len(&n);
    if bits < RSA_MIN_BITS {
        return Err(problem(format!("{at}.n"), format!("RSA key of {bits} bits; at least {RSA_MIN_BITS} are required")));
    }
    if bits > RSA_MAX_BITS {
        return Err(problem(format!("{at}.n"), format!("RSA key of {bits} bits; at most {RSA_MAX_BITS} are supported")));
    }
    // ring accepts odd exponents from 3 to 2^33 - 1.
    let e_val = if e.len() <= 8 { e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)) } else { u64::MAX };
    if e_val < 3 || e_val % 2 == 0 || e_val >= (1 << 33) {
        return Err(problem(format!("{at}.e"), "unsupported RSA public exponent"));
    }
    Ok(KeyMaterial::Rsa { n, e })
}

fn parse_ec(obj: &Map<String, Value>, at: &str) -> Result<KeyMaterial, KeyProblem> {
    let (curve, len) = match obj.get("crv").and_then(Value::as_str) {
        Some("P-256") => (Curve::P256, 32),
        Some("P-384") => (Curve::P384, 48),
        Some(other) => return Err(problem(format!("{at}.crv"), format!("unsupported curve '{other}' (P-256, P-384)"))),
        None => return Err(problem(format!("{at}.crv"), "is required")),
    };
    let x = bytes_member(obj, "x", at)?;
    let y = bytes_member(obj, "y", at)?;
    if x.len() != len {
        return Err(problem(format!("{at}.x"), format!("must be {len} bytes")));
    }
    if y.len() != len {
        return Err(problem(format!("{at}.y"), format!("must be {len} bytes")));
    }
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(4);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(KeyMaterial::Ec { curve, point })
}

fn parse_okp(obj: &Map<String, Value>, at: &str) -> Result<KeyMaterial, KeyProblem> {
    match obj.get("crv").and_then(Value::as_str) {
        Some("Ed25519") => {}
        Some(other) => return Err(problem(format!("{at}.crv"), format!("unsupported curve '{other}' (Ed25519)"))),
        None => return Err(problem(format!("{at}.crv"), "is required")),
    }
    let x = bytes_member(obj, "x", at)?;
    if x.len() != 32 {
        return Err(problem(format!("{at}.x"), "must be 32 bytes"));
    }
    Ok(KeyMaterial::Ed25519 { x })
}

fn parse_oct(obj: &Map<String, Value>, at: &str) -> Result<KeyMaterial, KeyProblem> {
    let k = bytes_member(obj, "k", at)?;
    if k.len() < 32 {
        return Err(problem(format!("{at}.k"), format!("secret of {} bytes; at least 32 are required", k.len())));
    }
    Ok(KeyMaterial::Oct { k: Secret(k) })
}

/// Parse one JWK at JSON path `at`.
pub fn parse_jwk(value: &Value, at: &str, allow_oct: bool) -> Result<Jwk, KeyProblem> {
    let obj = value.as_object().ok_or_else(|| problem(at.to_string(), "a key must be a JSON object"))?;
    let kty = match obj.get("kty") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(problem(format!("{at}.kty"), "must be a string")),
        None => return Err(problem(format!("{at}.kty"), "is required")),
    };
    if let Some(u) = obj.get("use") {
        if u.as_str() != Some("sig") {
            return Err(problem(format!("{at}.use"), "only signature keys (\"sig\") are used"));
        }
    }
    if let Some(ops) = obj.get("key_ops") {
        let verifies = ops.as_array().is_some_and(|a| a.iter().any(|o| o.as_str() == Some("verify")));
        if !verifies {
            return Err(problem(format!("{at}.key_ops"), "does not include \"verify\""));
        }
    }
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(problem(format!("{at}.kid"), "must be a string")),
    };
    let private: &[&str] = match kty {
        "RSA" => &["d", "p", "q", "dp", "dq", "qi", "oth"],
        "EC" | "OKP" => &["d"],
        _ => &[],
    };
    if let Some(m) = private.iter().find(|m| obj.contains_key(**m)) {
        return Err(problem(format!("{at}.{m}"), "private key material must not be in a verification key set"));
    }
    let material = match kty {
        "RSA" => parse_rsa(obj, at)?,
        "EC" => parse_ec(obj, at)?,
        "OKP" => parse_okp(obj, at)?,
        "oct" if allow_oct => parse_oct(obj, at)?,
        "oct" => return Err(problem(format!("{at}.kty"), "symmetric keys are only accepted in local_jwks")),
        other => return Err(problem(format!("{at}.kty"), format!("unsupported key type '{other}' (RSA, EC, OKP, oct)"))),
    };
    let alg = match obj.get("alg") {
        None => None,
        Some(Value::String(s)) => match Alg::parse(s) {
            Some(a) => Some(a),
            None => return Err(problem(format!("{at}.alg"), format!("unsupported signature algorithm '{s}'"))),
        },
        Some(_) => return Err(problem(format!("{at}.alg"), "must be a string")),
    };
    let jwk = Jwk { kid, alg, material };
    if let Some(a) = alg {
        if !jwk.accepts(a) {
            return Err(problem(format!("{at}.alg"), format!("'{}' does not fit a {} key of this size", a.name(), jwk.kty())));
        }
    }
    Ok(jwk)
}

/// Parse a JWK Set (`{"keys": [...]}`). Returns the usable keys and a problem for each key
/// that is not; the caller decides whether a problem is fatal (local config) or skipped
/// (a remote set may publish encryption keys and other types alongside).
pub fn parse_jwks(value: &Value, allow_oct: bool) -> Result<(KeySet, Vec<KeyProblem>), KeyProblem> {
    let keys = value
        .as_object()
        .and_then(|o| o.get("keys"))
        .and_then(Value::as_array)
        .ok_or_else(|| problem("keys".into(), "a JWK Set is an object with a \"keys\" array"))?;
    let mut good = Vec::new();
    let mut problems = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        match parse_jwk(k, &format!("keys[{i}]"), allow_oct) {
            Ok(j) => good.push(j),
            Err(p) => problems.push(p),
        }
    }
    Ok((KeySet::new(good), problems))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::token::b64url_encode;
    use serde_json::json;

    pub fn rsa_n(bits: usize) -> String {
        let mut n = vec![0xc5u8; bits / 8];
        if let Some(last) = n.last_mut() {
            *last |= 1;
        }
        b64url_encode(&n)
    }

    #[test]
    fn rsa_sizes() {
        let ok = json!({"kty": "RSA", "n": rsa_n(2048), "e": "AQAB", "kid": "a"});
        let k = parse_jwk(&ok, "k", false).unwrap();
        assert!(k.accepts(Alg::RS256) && k.accepts(Alg::PS512));
        assert!(!k.accepts(Alg::HS256) && !k.accepts(Alg::ES256));
        let small = json!({"kty": "RSA", "n": rsa_n(1024), "e": "AQAB"});
        let e = parse_jwk(&small, "k", false).unwrap_err();
        assert_eq!(e.path, "k.n");
        assert!(e.message.contains("1024 bits"), "{e:?}");
        // 2047 bits with a leading zero byte is still too small.
        let mut n = vec![0u8];
        n.extend(vec![0x7fu8; 256]);
        let e = parse_jwk(&json!({"kty": "RSA", "n": b64url_encode(&n), "e": "AQAB"}), "k", false).unwrap_err();
        assert!(e.message.contains("2047 bits"), "{e:?}");
        let e = parse_jwk(&json!({"kty": "RSA", "n": rsa_n(2048), "e": "AQ"}), "k", false).unwrap_err();
        assert_eq!(e.path, "k.e");
        let e = parse_jwk(&json!({"kty": "RSA", "n": rsa_n(2048), "e": "AQAA"}), "k", false).unwrap_err();
        assert_eq!(e.path, "k.e");
    }

    #[test]
    fn alg_binding() {
        let k = parse_jwk(&json!({"kty": "RSA", "n": rsa_n(2048), "e": "AQAB", "alg": "PS256"}), "k", false).unwrap();
        assert!(k.accepts(Alg::PS256));
        assert!(!k.accepts(Alg::RS256));
        let e = parse_jwk(&json!({"kty": "RSA", "n": rsa_n(2048), "e": "AQAB", "alg": "ES256"}), "k", false).unwrap_err();
        assert_eq!(e.path, "k.alg");
        let e = parse_jwk(&json!({"kty": "RSA", "n": rsa_n(2048), "e": "AQAB", "alg": "none"}), "k", false).unwrap_err();
        assert_eq!(e.path, "k.alg");
        let e = parse_jwk(&json!({"kty": "oct", "k": b64url_encode(&[1u8; 32]), "alg": "HS512"}), "k", true).unwrap_err();
        assert_eq!(e.path, "k.alg");
    }

    #[test]
    fn ec_okp_oct() {
        let p = json!({"kty": "EC", "crv": "P-256", "x": b64url_encode(&[1u8; 32]), "y": b64url_encode(&[2u8; 32])});
        let k = parse_jwk(&p, "k", false).unwrap();
        assert!(k.accepts(Alg::ES256) && !k.accepts(Alg::ES384));
        let p = json!({"kty": "EC", "crv": "P-384", "x": b64url_encode(&[1u8; 48]), "y": b64url_encode(&[2u8; 48])});
        assert!(parse_jwk(&p, "k", false).unwrap().accepts(Alg::ES384));
        let p = json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"});
        assert_eq!(parse_jwk(&p, "k", false).unwrap_err().path, "k.crv");
        let p = json!({"kty": "EC", "crv": "P-256", "x": b64url_encode(&[1u8; 31]), "y": b64url_encode(&[2u8; 32])});
        assert_eq!(parse_jwk(&p, "k", false).unwrap_err().path, "k.x");
        let o = json!({"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(&[3u8; 32])});
        assert!(parse_jwk(&o, "k", false).unwrap().accepts(Alg::EdDSA));
        let o = json!({"kty": "OKP", "crv": "Ed448", "x": b64url_encode(&[3u8; 57])});
        assert_eq!(parse_jwk(&o, "k", false).unwrap_err().path, "k.crv");
        let s = json!({"kty": "oct", "k": b64url_encode(&[7u8; 48])});
        let k = parse_jwk(&s, "k", true).unwrap();
        assert!(k.accepts(Alg::HS256) && k.accepts(Alg::HS384) && !k.accepts(Alg::HS512) && !k.accepts(Alg::RS256));
        assert!(format!("{k:?}").contains("Secret(48 bytes)"));
        assert_eq!(parse_jwk(&s, "k", false).unwrap_err().path, "k.kty");
        let s = json!({"kty": "oct", "k": b64url_encode(&[7u8; 16])});
        assert_eq!(parse_jwk(&s, "k", true).unwrap_err().path, "k.k");
    }

    #[test]
    fn refuses_private_keys_and_non_signature_keys() {
        let p = json!({"kty": "EC", "crv": "P-256", "x": b64url_encode(&[1u8; 32]), "y": b64url_encode(&[2u8; 32]), "d": "AA"});
        assert_eq!(parse_jwk(&p, "k", false).unwrap_err().path, "k.d");
        let p = json!({"kty": "RSA", "n": rsa_n(2048), "e": "AQAB", "use": "enc"});
        assert_eq!(parse_jwk(&p, "k", false).unwrap_err().path, "k.use");
        let p = json!({"kty": "RSA", "n": rsa_n(2048), "e": "AQAB", "key_ops": ["encrypt"]});
        assert_eq!(parse_jwk(&p, "k", false).unwrap_err().path, "k.key_ops");
        let p = json!({"kty": "RSA", "n": rsa_n(2048), "e": "AQAB", "use": "sig", "key_ops": ["verify"], "x5c": ["..."]});
        assert!(parse_jwk(&p, "k", false).is_ok());
    }

    #[test]
    fn key_set_skips_and_reports() {
        let set = json!({"keys": [
            {"kty": "RSA", "n": rsa_n(2048), "e": "AQAB", "kid": "a"},
            {"kty": "RSA", "n": rsa_n(1024), "e": "AQAB", "kid": "weak"},
            {"kty": "weird"}
        ]});
        let (ks, problems) = parse_jwks(&set, false).unwrap();
        assert_eq!(ks.len(), 1);
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].path, "keys[1].n");
        assert!(parse_jwks(&json!({"nokeys": []}), false).is_err());
        assert!(parse_jwks(&json!([]), false).is_err());
    }

    #[test]
    fn fingerprint_follows_content() {
        let a = parse_jwk(&json!({"kty": "RSA", "n": rsa_n(2048), "e": "AQAB", "kid": "a"}), "k", false).unwrap();
        let b = parse_jwk(&json!({"kty": "RSA", "n": rsa_n(2048), "e": "AQAB", "kid": "b"}), "k", false).unwrap();
        let s1 = KeySet::new(vec![a.clone()]);
        let s2 = KeySet::new(vec![a.clone()]);
        let s3 = KeySet::new(vec![a, b]);
        assert_eq!(s1.fingerprint, s2.fingerprint);
        assert_ne!(s1.fingerprint, s3.fingerprint);
        assert_ne!(s1.fingerprint, KeySet::new(vec![]).fingerprint);
    }
}
