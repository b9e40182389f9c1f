//! RFC 9421 verification of `Signature-Input` / `Signature` with `hmac-sha256`.
//!
//! Order of checks: structure, a label whose `keyid` is configured, `alg`, parameter types,
//! covered components (unique, and every required one present), `created`/`expires`
//! against `now`, `nonce` when required; then the signature base is rebuilt and the HMAC
//! compared in constant time (`hmac::Mac::verify_slice`). Checking policy before the HMAC
//! gives callers a precise error; none of these checks depend on a secret.

use crate::components::{self, ComponentError, ComponentId, RequestParts};
use crate::policy::{HmacKey, Policy, ALG};
use crate::sfv::{self, BareItem, Dictionary, InnerList, Member};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use shared::request::Headers;

type HmacSha256 = Hmac<Sha256>;

/// More labels than this in one request is refused (each costs an HMAC).
pub const MAX_SIGNATURES: usize = 8;
/// More covered components than this in one signature is refused.
pub const MAX_COMPONENTS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigError {
    /// Neither `Signature-Input` nor `Signature` is present.
    Missing,
    /// The fields do not parse, do not match each other, or carry the wrong types.
    Malformed(&'static str),
    /// No signature names a configured `keyid`.
    UnknownKey,
    /// `alg` names another algorithm.
    AlgorithmMismatch,
    /// `created`, `expires`, `nonce`, ... missing or of the wrong type.
    ParamsInvalid(&'static str),
    /// A required component is not covered (its serialized identifier).
    NotCovered(String),
    ComponentMissing,
    ComponentUnsupported,
    ComponentInvalid,
    Expired,
    NotYetValid,
    NonceMissing,
    /// The HMAC does not match.
    Invalid,
}

/// A verified signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub keyid: String,
    pub label: String,
    pub covers_content_digest: bool,
    pub nonce: Option<String>,
    /// Unix time after which this signature is refused anyway (age, `expires`, skew):
    /// how long its nonce must be remembered.
    pub valid_until: u64,
}

/// Whether the request carries any signature field.
pub fn present(h: &Headers) -> bool {
    h.contains("signature-input") || h.contains("signature")
}

/// All lines of a field, combined as RFC 9110 section 5.3 says.
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

fn parse_field(h: &Headers, name: &str, what: &'static str) -> Result<Option<Dictionary>, SigError> {
    let Some(raw) = combined(h, name) else {
        return Ok(None);
    };
    let d = sfv::parse_dictionary(&raw).map_err(|_| SigError::Malformed(what))?;
    if d.duplicate_keys {
        return Err(SigError::Malformed("a signature label appears twice"));
    }
    Ok(Some(d))
}

/// Verify the request's signature against the policy's keys at time `now` (Unix seconds).
pub fn verify(h: &Headers, policy: &Policy, now: u64) -> Result<Verified, SigError> {
    let inputs = parse_field(h, "signature-input", "Signature-Input is not a structured-field dictionary")?;
    let sigs = parse_field(h, "signature", "Signature is not a structured-field dictionary")?;
    let (inputs, sigs) = match (inputs, sigs) {
        (None, None) => return Err(SigError::Missing),
        (Some(i), Some(s)) => (i, s),
        _ => return Err(SigError::Malformed("Signature-Input and Signature must be sent together")),
    };
    if inputs.is_empty() {
        return Err(SigError::Missing);
    }
    if inputs.len() > MAX_SIGNATURES || sigs.len() > MAX_SIGNATURES {
        return Err(SigError::Malformed("too many signatures"));
    }
    let mut first_error = None;
    let mut candidates = 0usize;
    for (label, member) in &inputs.members {
        let Some(list) = components::as_inner_list(member) else {
            return Err(SigError::Malformed("each Signature-Input member must be an inner list"));
        };
        let Some(BareItem::String(keyid)) = sfv::param(&list.params, "keyid") else {
            continue;
        };
        let Some(key) = policy.keys.get(keyid) else {
            continue;
        };
        candidates += 1;
        match verify_one(h, label, keyid, key, list, &sigs, policy, now) {
            Ok(v) => return Ok(v),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None if candidates == 0 => Err(SigError::UnknownKey),
        None => Err(SigError::Invalid),
    }
}

fn int_param(list: &InnerList, name: &str, what: &'static str) -> Result<Option<u64>, SigError> {
    match sfv::param(&list.params, name) {
        None => Ok(None),
        Some(BareItem::Integer(i)) => u64::try_from(*i).map(Some).map_err(|_| SigError::ParamsInvalid(what)),
        Some(_) => Err(SigError::ParamsInvalid(what)),
    }
}

fn string_param<'a>(list: &'a InnerList, name: &str, what: &'static str) -> Result<Option<&'a str>, SigError> {
    match sfv::param(&list.params, name) {
        None => Ok(None),
        Some(BareItem::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(SigError::ParamsInvalid(what)),
    }
}

impl From<ComponentError> for SigError {
    fn from(e: ComponentError) -> Self {
        match e {
            ComponentError::Malformed => SigError::Malformed("covered components must be distinct lower-case strings"),
            ComponentError::Missing => SigError::ComponentMissing,
            ComponentError::Unsupported => SigError::ComponentUnsupported,
            ComponentError::Invalid => SigError::ComponentInvalid,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn verify_one(h: &Headers, label: &str, keyid: &str, key: &HmacKey, list: &InnerList, sigs: &Dictionary, policy: &Policy, now: u64) -> Result<Verified, SigError> {
    let signature = match sigs.get(label) {
        Some(Member::Item(sfv::Item { bare: BareItem::ByteSeq(b), .. })) => b,
        Some(_) => return Err(SigError::Malformed("a Signature member must be a byte sequence")),
        None => return Err(SigError::Malformed("Signature has no member for the Signature-Input label")),
    };
    match sfv::param(&list.params, "alg") {
        None => {}
        Some(BareItem::String(a)) if a == ALG => {}
        Some(BareItem::String(_)) => return Err(SigError::AlgorithmMismatch),
        Some(_) => return Err(SigError::ParamsInvalid("alg must be a string")),
    }
    let created = int_param(list, "created", "created must be a non-negative integer")?.ok_or(SigError::ParamsInvalid("created is required"))?;
    let expires = int_param(list, "expires", "expires must be a non-negative integer")?;
    let nonce = string_param(list, "nonce", "nonce must be a string")?;
    string_param(list, "tag", "tag must be a string")?;

    if list.items.len() > MAX_COMPONENTS {
        return Err(SigError::Malformed("too many covered components"));
    }
    let covered = components::covered_components(&list.items)?;
    for r in &policy.required_components {
        if !covered.iter().any(|c| c.same(r)) {
            return Err(SigError::NotCovered(r.serialize()));
        }
    }

    let skew = policy.clock_skew_s;
    if created > now.saturating_add(skew) {
        return Err(SigError::NotYetValid);
    }
    let age_limit = created.saturating_add(policy.max_age_s);
    if now > age_limit.saturating_add(skew) {
        return Err(SigError::Expired);
    }
    if let Some(e) = expires {
        if now > e.saturating_add(skew) {
            return Err(SigError::Expired);
        }
    }
    if policy.require_nonce && nonce.is_none() {
        return Err(SigError::NonceMissing);
    }

    let base = components::signature_base(&RequestParts::new(h), &covered, &list.params)?;
    if !hmac_verify(key.secret.expose(), base.as_bytes(), signature) {
        return Err(SigError::Invalid);
    }
    Ok(Verified {
        keyid: keyid.to_string(),
        label: label.to_string(),
        covers_content_digest: covered.iter().any(ComponentId::covers_content_digest),
        nonce: nonce.map(str::to_string),
        valid_until: age_limit.min(expires.unwrap_or(u64::MAX)).saturating_add(skew),
    })
}

/// HMAC-SHA256 of `data`, compared with `mac` in constant time.
pub fn hmac_verify(secret: &[u8], data: &[u8], mac: &[u8]) -> bool {
    match HmacSha256::new_from_slice(secret) {
        Ok(mut m) => {
            m.update(data);
            m.verify_slice(mac).is_ok()
        }
        Err(_) => false,
    }
}

/// HMAC-SHA256 of `data` (response signing).
pub fn hmac_sign(secret: &[u8], data: &[u8]) -> Vec<u8> {
    match HmacSha256::new_from_slice(secret) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use base64::Engine;

    pub const B25_SECRET: &str = "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";
    const B25_INPUT: &str = r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#;
    const B25_SIG: &str = "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:";
    const CREATED: u64 = 1618884473;

    fn policy(extra: &str) -> Policy {
        let required = if extra.contains("required_components") { "" } else { r#", "required_components": []"# };
        let json = format!(r#"{{"keys": {{"test-shared-secret": {{"secret_base64": "{B25_SECRET}", "scopes": ["s"]}}}} {required} {extra}}}"#);
        shared::config::parse_json::<Config>(json.as_bytes()).and_then(Config::compile).unwrap()
    }

    /// RFC 9421 appendix B.2 test request.
    fn b2_request(extra: &[(&'static str, &'static str)]) -> Headers {
        let mut pairs = vec![
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", "example.com"),
            (":path", "/foo?param=Value&Pet=dog"),
            ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
            ("content-type", "application/json"),
            ("content-digest", "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"),
            ("content-length", "18"),
        ];
        pairs.extend_from_slice(extra);
        Headers::from_pairs(pairs)
    }

    #[test]
    fn rfc_9421_appendix_b_2_5_verifies() {
        let h = b2_request(&[("signature-input", B25_INPUT), ("signature", B25_SIG)]);
        let v = verify(&h, &policy(""), CREATED + 10).unwrap();
        assert_eq!(v.keyid, "test-shared-secret");
        assert_eq!(v.label, "sig-b25");
        assert!(!v.covers_content_digest);
        assert_eq!(v.nonce, None);
        assert_eq!(v.valid_until, CREATED + 300 + 30);
    }

    #[test]
    fn rfc_9421_appendix_b_2_5_sign_reproduces_the_vector() {
        let h = b2_request(&[]);
        let d = sfv::parse_dictionary(B25_INPUT.as_bytes()).unwrap();
        let l = components::as_inner_list(d.get("sig-b25").unwrap()).unwrap();
        let comps = components::covered_components(&l.items).unwrap();
        let base = components::signature_base(&RequestParts::new(&h), &comps, &l.params).unwrap();
        let secret = base64::engine::general_purpose::STANDARD.decode(B25_SECRET).unwrap();
        let mac = hmac_sign(&secret, base.as_bytes());
        assert_eq!(base64::engine::general_purpose::STANDARD.encode(mac), "pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=");
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let p = policy("");
        for (name, value) in [("date", "Tue, 20 Apr 2021 02:07:56 GMT"), ("content-type", "text/plain"), (":authority", "example.org")] {
            let mut pairs: Vec<(String, Vec<u8>)> = b2_request(&[("signature-input", B25_INPUT), ("signature", B25_SIG)]).iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect();
            for p in pairs.iter_mut().filter(|(k, _)| k == name) {
                p.1 = value.as_bytes().to_vec();
            }
            assert_eq!(verify(&Headers::new(pairs), &p, CREATED), Err(SigError::Invalid), "{name}");
        }
        // A changed parameter changes @signature-params.
        let h = b2_request(&[("signature-input", r#"sig-b25=("date" "@authority" "content-type");created=1618884474;keyid="test-shared-secret""#), ("signature", B25_SIG)]);
        assert_eq!(verify(&h, &p, CREATED), Err(SigError::Invalid));
        // Re-ordered components too.
        let h = b2_request(&[("signature-input", r#"sig-b25=("@authority" "date" "content-type");created=1618884473;keyid="test-shared-secret""#), ("signature", B25_SIG)]);
        assert_eq!(verify(&h, &p, CREATED), Err(SigError::Invalid));
        // Whitespace differences in the field are canonicalized away (RFC 8941 re-serialization).
        let h = b2_request(&[("signature-input", r#"sig-b25=( "date"  "@authority" "content-type" );created=1618884473;keyid="test-shared-secret""#), ("signature", B25_SIG)]);
        assert!(verify(&h, &p, CREATED).is_ok());
    }

    #[test]
    fn time_window() {
        let p = policy("");
        let h = b2_request(&[("signature-input", B25_INPUT), ("signature", B25_SIG)]);
        assert!(verify(&h, &p, CREATED - 30).is_ok());
        assert_eq!(verify(&h, &p, CREATED - 31), Err(SigError::NotYetValid));
        assert!(verify(&h, &p, CREATED + 330).is_ok());
        assert_eq!(verify(&h, &p, CREATED + 331), Err(SigError::Expired));
        let h = b2_request(&[("signature-input", r#"sig-b25=("date");created=1618884473;expires=1618884483;keyid="test-shared-secret""#), ("signature", B25_SIG)]);
        assert_eq!(verify(&h, &p, CREATED + 41), Err(SigError::Expired));
        assert_eq!(verify(&h, &p, CREATED + 40), Err(SigError::Invalid), "within expires+skew the HMAC is checked");
    }

    #[test]
    fn policy_errors() {
        let p = policy(r#", "required_components": ["@method", "content-digest"], "require_nonce": true"#);
        let h = b2_request(&[("signature-input", B25_INPUT), ("signature", B25_SIG)]);
        assert_eq!(verify(&h, &p, CREATED), Err(SigError::NotCovered("\"@method\"".into())));
        let h = b2_request(&[("signature-input", r#"s=("@method" "content-digest");created=1618884473;keyid="test-shared-secret""#), ("signature", "s=:AAAA:")]);
        assert_eq!(verify(&h, &p, CREATED), Err(SigError::NonceMissing));
        let h = b2_request(&[("signature-input", r#"s=("@method" "content-digest");created=1618884473;keyid="test-shared-secret";nonce="n""#), ("signature", "s=:AAAA:")]);
        assert_eq!(verify(&h, &p, CREATED), Err(SigError::Invalid));
    }

    #[test]
    fn structural_errors() {
        let p = policy("");
        let cases: &[(&[(&str, &str)], SigError)] = &[
            (&[], SigError::Missing),
            (&[("signature-input", B25_INPUT)], SigError::Malformed("Signature-Input and Signature must be sent together")),
            (&[("signature", B25_SIG)], SigError::Malformed("Signature-Input and Signature must be sent together")),
            (&[("signature-input", "sig-b25=(\"date\""), ("signature", B25_SIG)], SigError::Malformed("Signature-Input is not a structured-field dictionary")),
            (&[("signature-input", B25_INPUT), ("signature", "sig-b25=\"x\"")], SigError::Malformed("a Signature member must be a byte sequence")),
            (&[("signature-input", B25_INPUT), ("signature", "other=:AAAA:")], SigError::Malformed("Signature has no member for the Signature-Input label")),
            (&[("signature-input", r#"sig-b25=("date");created=1;keyid="nobody""#), ("signature", B25_SIG)], SigError::UnknownKey),
            (&[("signature-input", r#"sig-b25=("date");created=1"#), ("signature", B25_SIG)], SigError::UnknownKey),
            (&[("signature-input", r#"sig-b25=("date");created=1618884473;keyid="test-shared-secret";alg="rsa-pss-sha512""#), ("signature", B25_SIG)], SigError::AlgorithmMismatch),
            (&[("signature-input", r#"sig-b25=("date");created=1618884473;keyid="test-shared-secret";alg=hmac-sha256"#), ("signature", B25_SIG)], SigError::ParamsInvalid("alg must be a string")),
            (&[("signature-input", r#"sig-b25=("date");keyid="test-shared-secret""#), ("signature", B25_SIG)], SigError::ParamsInvalid("created is required")),
            (&[("signature-input", r#"sig-b25=("date");created=-1;keyid="test-shared-secret""#), ("signature", B25_SIG)], SigError::ParamsInvalid("created must be a non-negative integer")),
            (&[("signature-input", r#"sig-b25=("date");created="1618884473";keyid="test-shared-secret""#), ("signature", B25_SIG)], SigError::ParamsInvalid("created must be a non-negative integer")),
            (&[("signature-input", r#"sig-b25=("date");created=1618884473;keyid="test-shared-secret";nonce=1"#), ("signature", B25_SIG)], SigError::ParamsInvalid("nonce must be a string")),
            (&[("signature-input", r#"sig-b25=("date" "date");created=1618884473;keyid="test-shared-secret""#), ("signature", B25_SIG)], SigError::Malformed("covered components must be distinct lower-case strings")),
            (&[("signature-input", r#"sig-b25=("x-missing");created=1618884473;keyid="test-shared-secret""#), ("signature", B25_SIG)], SigError::ComponentMissing),
            (&[("signature-input", r#"sig-b25=("@status");created=1618884473;keyid="test-shared-secret""#), ("signature", B25_SIG)], SigError::ComponentUnsupported),
            (&[("signature-input", r#"sig-b25=("date";bs);created=1618884473;keyid="test-shared-secret""#), ("signature", B25_SIG)], SigError::ComponentUnsupported),
            (&[("signature-input", "sig-b25=:AAAA:"), ("signature", B25_SIG)], SigError::Malformed("each Signature-Input member must be an inner list")),
            (&[("signature-input", r#"a=("date"), a=("date")"#), ("signature", B25_SIG)], SigError::Malformed("a signature label appears twice")),
        ];
        for (extra, want) in cases {
            let h = b2_request(extra);
            assert_eq!(verify(&h, &p, CREATED).as_ref().err(), Some(want), "{extra:?}");
        }
    }

    #[test]
    fn a_second_signature_with_an_unknown_key_is_ignored() {
        let p = policy("");
        let h = b2_request(&[
            ("signature-input", r#"other=("date");created=1;keyid="someone-else""#),
            ("signature-input", B25_INPUT),
            ("signature", "other=:AAAA:, sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:"),
        ]);
        assert_eq!(verify(&h, &p, CREATED).unwrap().label, "sig-b25");
    }

    #[test]
    fn wrong_length_or_wrong_key_fails() {
        let p = policy("");
        let h = b2_request(&[("signature-input", B25_INPUT), ("signature", "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8A:")]);
        assert_eq!(verify(&h, &p, CREATED), Err(SigError::Invalid));
        let h = b2_request(&[("signature-input", B25_INPUT), ("signature", "sig-b25=::")]);
        assert_eq!(verify(&h, &p, CREATED), Err(SigError::Invalid));
        let other = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let json = format!(r#"{{"keys": {{"test-shared-secret": {{"secret_base64": "{other}"}}}}, "required_components": []}}"#);
        let p2 = shared::config::parse_json::<Config>(json.as_bytes()).and_then(Config::compile).unwrap();
        let h = b2_request(&[("signature-input", B25_INPUT), ("signature", B25_SIG)]);
        assert_eq!(verify(&h, &p2, CREATED), Err(SigError::Invalid));
    }
}
