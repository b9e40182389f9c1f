//! Compact JWS parsing (RFC 7515 section 7.1), strict:
//! exactly three segments, base64url without padding and without stray bits, each of
//! header and payload a JSON object with no repeated member name at any depth
//! (serde_json would silently keep the last duplicate, so parsing uses its own visitor).

use crate::error::JwtError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Strict base64url (RFC 4648 section 5) without padding; non-canonical trailing bits are refused.
pub fn b64url(input: &[u8]) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(input).ok()
}

pub fn b64url_encode(input: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(input)
}

const DUPLICATE: &str = "duplicate JSON member";

/// A JSON value parsed with duplicate member names refused at every depth.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map(Value::Number).unwrap_or(Value::Null))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(de::Error::custom(DUPLICATE));
            }
            let Strict(v) = map.next_value()?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// Parse any JSON value with the same strictness as [`parse_object`] (a repeated member
/// name anywhere makes it invalid); `None` if invalid.
pub fn parse_value(bytes: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Strict>(bytes).ok().map(|Strict(v)| v)
}

/// Parse a JSON object, refusing duplicate member names at any depth, trailing data and
/// invalid UTF-8 (serde_json also refuses lone surrogate escapes and nests at most 128 deep).
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JwtError> {
    match serde_json::from_slice::<Strict>(bytes) {
        Ok(Strict(Value::Object(m))) => Ok(m),
        Ok(_) => Err(JwtError::Malformed),
        Err(e) if e.to_string().contains(DUPLICATE) => Err(JwtError::DuplicateKey),
        Err(_) => Err(JwtError::Malformed),
    }
}

/// The JOSE header members this filter acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
}

/// A parsed, not yet verified, compact JWS.
#[derive(Debug, Clone)]
pub struct Token<'a> {
    /// `base64url(header) "." base64url(payload)`, the bytes the signature covers.
    pub signing_input: &'a [u8],
    pub header: Header,
    pub claims: Map<String, Value>,
    pub signature: Vec<u8>,
}

fn optional_string(m: &Map<String, Value>, name: &str) -> Result<Option<String>, JwtError> {
    match m.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JwtError::Malformed),
    }
}

/// Parse `token` (at most `max_len` bytes). Only structure is checked here; algorithm,
/// keys and claims are the verifier's job.
pub fn parse(token: &[u8], max_len: usize) -> Result<Token<'_>, JwtError> {
    if token.len() > max_len {
        return Err(JwtError::TooLarge);
    }
    let mut parts = token.split(|&b| b == b'.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed);
    };
    let signing_input = token.get(..h.len() + 1 + p.len()).ok_or(JwtError::Malformed)?;
    let header_bytes = b64url(h).ok_or(JwtError::Malformed)?;
    let payload_bytes = b64url(p).ok_or(JwtError::Malformed)?;
    let signature = b64url(s).ok_or(JwtError::Malformed)?;
    let header = parse_object(&header_bytes)?;
    let claims = parse_object(&payload_bytes)?;
    // RFC 7515 4.1.11: a recipient MUST reject a token whose `crit` names an extension it
    // does not implement; this filter implements none (so `b64: false` etc. never pass).
    if header.contains_key("crit") {
        return Err(JwtError::CritUnsupported);
    }
    let alg = match header.get("alg") {
        Some(Value::String(a)) => a.clone(),
        Some(_) => return Err(JwtError::Malformed),
        None => return Err(JwtError::AlgUnsupported),
    };
    let kid = optional_string(&header, "kid")?;
    let typ = optional_string(&header, "typ")?;
    Ok(Token { signing_input, header: Header { alg, kid, typ }, claims, signature })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> String {
        b64url_encode(s.as_bytes())
    }

    fn tok(h: &str, p: &str) -> String {
        format!("{}.{}.{}", enc(h), enc(p), b64url_encode(b"sig"))
    }

    #[test]
    fn parses_a_good_token() {
        let t = tok(r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#, r#"{"sub":"u","exp":1}"#);
        let p = parse(t.as_bytes(), 4096).unwrap();
        assert_eq!(p.header.alg, "RS256");
        assert_eq!(p.header.kid.as_deref(), Some("k1"));
        assert_eq!(p.header.typ.as_deref(), Some("JWT"));
        assert_eq!(p.claims["sub"], "u");
        assert_eq!(p.signature, b"sig");
        assert_eq!(p.signing_input, t.rsplit_once('.').unwrap().0.as_bytes());
    }

    #[test]
    fn malformed_structure() {
        let h = enc(r#"{"alg":"RS256"}"#);
        let p = enc(r#"{}"#);
        let cases: Vec<(String, JwtError)> = vec![
            (String::new(), JwtError::Malformed),
            (format!("{h}.{p}"), JwtError::Malformed),
            (format!("{h}.{p}.c2ln.x"), JwtError::Malformed),
            (format!("{h}.{p}.a.b.c"), JwtError::Malformed),
            (format!("{h}=.{p}.c2ln"), JwtError::Malformed),
            (format!("{h}.{p}.c2ln="), JwtError::Malformed),
            (format!("{h}.{p}.c2l+"), JwtError::Malformed),
            (format!("{h}.{p}.c2l/"), JwtError::Malformed),
            (format!(" {h}.{p}.c2ln"), JwtError::Malformed),
            (format!("{h}.{p}.c2l"), JwtError::Malformed), // non-canonical trailing bits
            (format!("{h}.{p}.A"), JwtError::Malformed),    // impossible length
            (format!("{}.{p}.c2ln", enc("[1]")), JwtError::Malformed),
            (format!("{}.{p}.c2ln", enc("not json")), JwtError::Malformed),
            (format!("{}.{p}.c2ln", enc(r#"{"alg":"RS256"} x"#)), JwtError::Malformed),
            (format!("{h}.{}.c2ln", enc("\"str\"")), JwtError::Malformed),
            (format!("{h}.{}.c2ln", b64url_encode(b"{\"a\":\"\xff\"}")), JwtError::Malformed),
            (format!("{h}.{}.c2ln", enc(r#"{"a":"\ud800"}"#)), JwtError::Malformed),
            (format!("{}.{p}.c2ln", enc(r#"{"alg":5}"#)), JwtError::Malformed),
            (format!("{}.{p}.c2ln", enc(r#"{"alg":"RS256","kid":5}"#)), JwtError::Malformed),
            (format!("{}.{p}.c2ln", enc(r#"{"kid":"a"}"#)), JwtError::AlgUnsupported),
        ];
        for (t, want) in cases {
            assert_eq!(parse(t.as_bytes(), 4096).err(), Some(want), "{t}");
        }
    }

    #[test]
    fn duplicates_are_refused_at_any_depth() {
        let t = tok(r#"{"alg":"RS256","alg":"none"}"#, "{}");
        assert_eq!(parse(t.as_bytes(), 4096).err(), Some(JwtError::DuplicateKey));
        let t = tok(r#"{"alg":"RS256"}"#, r#"{"sub":"a","sub":"admin"}"#);
        assert_eq!(parse(t.as_bytes(), 4096).err(), Some(JwtError::DuplicateKey));
        let t = tok(r#"{"alg":"RS256"}"#, r#"{"x":[{"r":1,"r":2}]}"#);
        assert_eq!(parse(t.as_bytes(), 4096).err(), Some(JwtError::DuplicateKey));
        // Escapes spelling the same name are the same name.
        let t = tok(r#"{"alg":"RS256"}"#, r#"{"sub":"a","s\u0075b":"b"}"#);
        assert_eq!(parse(t.as_bytes(), 4096).err(), Some(JwtError::DuplicateKey));
    }

    #[test]
    fn crit_is_refused() {
        let t = tok(r#"{"alg":"RS256","crit":["exp"],"exp":1}"#, "{}");
        assert_eq!(parse(t.as_bytes(), 4096).err(), Some(JwtError::CritUnsupported));
        let t = tok(r#"{"alg":"HS256","b64":false,"crit":["b64"]}"#, "{}");
        assert_eq!(parse(t.as_bytes(), 4096).err(), Some(JwtError::CritUnsupported));
    }

    #[test]
    fn size_limit_and_deep_nesting() {
        let t = tok(r#"{"alg":"RS256"}"#, r#"{"a":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}"#);
        assert_eq!(parse(t.as_bytes(), 20).err(), Some(JwtError::TooLarge));
        assert!(parse(t.as_bytes(), t.len()).is_ok());
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(5000), "]".repeat(5000));
        let t = tok(r#"{"alg":"RS256"}"#, &deep);
        assert_eq!(parse(t.as_bytes(), usize::MAX).err(), Some(JwtError::Malformed));
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_u32;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    b"eyJhbGciOiJ.-_A0z{}\"\x00\xff"[(seed % 22) as usize]
                })
                .collect();
            let _ = parse(&bytes, 4096);
        }
    }
}
