//! What a detected value (or a sensitive JSON field) is replaced with.

use crate::detect::Detector;
use crate::policy::{Field, Mode};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// The HMAC key for `hash` mode; `Debug` never shows it.
#[derive(Clone)]
pub struct HashKey {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(<hidden>)")
    }
}

/// Minimum key length accepted from the environment.
pub const MIN_KEY_BYTES: usize = 16;

impl HashKey {
    pub fn new(key: &[u8]) -> Option<Self> {
        if key.len() < MIN_KEY_BYTES {
            return None;
        }
        Hmac::<Sha256>::new_from_slice(key).ok().map(|mac| Self { mac })
    }

    /// 128 bits of HMAC-SHA256(key, label || 0 || canonical value), lower-case hex.
    pub fn token(&self, label: &str, canonical: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(canonical);
        let digest = mac.finalize().into_bytes();
        shared::hash::hex(digest.get(..16).unwrap_or(&digest))
    }
}

/// The form of a value that does not depend on how it was written: digits for cards,
/// SSNs and phones, upper-case for IBANs, lower-case for e-mails.
fn canonical(d: Detector, value: &[u8]) -> Vec<u8> {
    match d {
        Detector::CreditCard | Detector::Ssn | Detector::Phone => value.iter().copied().filter(u8::is_ascii_digit).collect(),
        Detector::Iban => value.iter().copied().filter(u8::is_ascii_alphanumeric).map(|b| b.to_ascii_uppercase()).collect(),
        Detector::Email => value.to_ascii_lowercase(),
        Detector::Ipv4 => value.to_vec(),
    }
}

fn redact_token(label: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"[REDACTED:");
    out.extend_from_slice(label.as_bytes());
    out.push(b']');
}

fn hash_token(label: &str, canonical: &[u8], key: Option<&HashKey>, out: &mut Vec<u8>) {
    match key {
        Some(k) => {
            out.extend_from_slice(b"[HASH:");
            out.extend_from_slice(label.as_bytes());
            out.push(b':');
            out.extend_from_slice(k.token(label, canonical).as_bytes());
            out.push(b']');
        }
        // compile() refuses hash mode without a key; never fall back to the raw value.
        None => redact_token(label, out),
    }
}

/// Star every ASCII alphanumeric except the last `keep`; separators stay.
fn keep_last_alnum(value: &[u8], keep: usize, out: &mut Vec<u8>) {
    let total = value.iter().filter(|b| b.is_ascii_alphanumeric()).count();
    let mut seen = 0usize;
    for &b in value {
        if b.is_ascii_alphanumeric() {
            seen += 1;
            out.push(if seen + keep > total { b } else { b'*' });
        } else {
            out.push(b);
        }
    }
}

/// Append the masked form of `value`, a `d` found by the detectors, to `out`.
pub fn write_masked(d: Detector, mode: Mode, value: &[u8], key: Option<&HashKey>, out: &mut Vec<u8>) {
    match mode {
        Mode::Partial => match d {
            Detector::CreditCard | Detector::Ssn | Detector::Phone | Detector::Iban => keep_last_alnum(value, 4, out),
            Detector::Email => {
                let at = value.iter().position(|&b| b == b'@').unwrap_or(0);
                if let Some(first) = value.first() {
                    out.push(*first);
                }
                out.extend_from_slice(b"***");
                out.extend_from_slice(value.get(at..).unwrap_or_default());
            }
            Detector::Ipv4 => {
                let mut octets = value.split(|&b| b == b'.');
                out.extend_from_slice(octets.next().unwrap_or_default());
                out.push(b'.');
                out.extend_from_slice(octets.next().unwrap_or_default());
                out.extend_from_slice(b".*.*");
            }
        },
        Mode::Hash => hash_token(d.name(), &canonical(d, value), key, out),
        // `remove` is refused for detectors by compile(); redact is the safe reading.
        Mode::Redact | Mode::Remove => redact_token(d.name(), out),
    }
}

/// The masked form of the whole value of a sensitive JSON field. A value that is itself a
/// detected kind (a card in `card_number`) is masked as that kind; anything else by the
/// generic rule: `partial` stars every letter and digit but the last 4 when there are at
/// least 8 (all of them otherwise).
pub fn field_value(value: &str, field: &Field, key: Option<&HashKey>) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 8);
    if let Some(d) = crate::detect::whole(value.as_bytes()) {
        write_masked(d, field.mode, value.as_bytes(), key, &mut out);
        return out;
    }
    match field.mode {
        Mode::Partial => {
            let total = value.chars().filter(|c| c.is_alphanumeric()).count();
            let keep = if total >= 8 { 4 } else { 0 };
            let mut seen = 0usize;
            let mut buf = [0u8; 4];
            for c in value.chars() {
                if c.is_alphanumeric() {
                    seen += 1;
                    if seen + keep > total {
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    } else {
                        out.push(b'*');
                    }
                } else {
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        Mode::Hash => hash_token(&field.label, value.as_bytes(), key, &mut out),
        Mode::Redact | Mode::Remove => redact_token(&field.label, &mut out),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(d: Detector, mode: Mode, v: &str) -> String {
        let key = HashKey::new(b"0123456789abcdef0123456789abcdef").unwrap();
        let mut out = Vec::new();
        write_masked(d, mode, v.as_bytes(), Some(&key), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn partial_keeps_last_four_and_separators() {
        assert_eq!(m(Detector::CreditCard, Mode::Partial, "4111 1111 1111 1111"), "**** **** **** 1111");
        assert_eq!(m(Detector::CreditCard, Mode::Partial, "4111111111111111"), "************1111");
        assert_eq!(m(Detector::Ssn, Mode::Partial, "123-45-6789"), "***-**-6789");
        assert_eq!(m(Detector::Phone, Mode::Partial, "+1 (415) 555-2671"), "+* (***) ***-2671");
        assert_eq!(m(Detector::Iban, Mode::Partial, "DE89 3704 0044 0532 0130 00"), "**** **** **** **** **30 00");
        assert_eq!(m(Detector::Email, Mode::Partial, "john.doe@example.com"), "j***@example.com");
        assert_eq!(m(Detector::Ipv4, Mode::Partial, "192.168.1.10"), "192.168.*.*");
    }

    #[test]
    fn redact_and_hash_tokens() {
        assert_eq!(m(Detector::Ssn, Mode::Redact, "123-45-6789"), "[REDACTED:ssn]");
        let a = m(Detector::CreditCard, Mode::Hash, "4111 1111 1111 1111");
        let b = m(Detector::CreditCard, Mode::Hash, "4111-1111-1111-1111");
        assert_eq!(a, b, "the same card written differently joins");
        assert!(a.starts_with("[HASH:credit_card:") && a.len() == "[HASH:credit_card:]".len() + 32, "{a}");
        assert_ne!(a, m(Detector::CreditCard, Mode::Hash, "5555 5555 5555 4444"));
        assert_eq!(m(Detector::Email, Mode::Hash, "John@Example.com"), m(Detector::Email, Mode::Hash, "john@example.com"));
    }

    #[test]
    fn hmac_matches_an_independent_computation() {
        // Expected value from Python's hmac module, an independent implementation:
        // hmac.new(b"0123456789abcdef", b"ssn\x00123456789", "sha256").hexdigest()[:32]
        let key = HashKey::new(b"0123456789abcdef").unwrap();
        assert_eq!(key.token("ssn", b"123456789"), "d20108c23843f48a7602eecfb2fd207c");
        assert!(HashKey::new(b"short").is_none());
    }

    #[test]
    fn fields_generic_rules() {
        let f = |mode| Field { label: "secret".into(), mode };
        let key = HashKey::new(b"0123456789abcdef").unwrap();
        let s = |v: &str, mode| String::from_utf8(field_value(v, &f(mode), Some(&key))).unwrap();
        assert_eq!(s("John Smith", Mode::Partial), "**** *mith");
        assert_eq!(s("Bob", Mode::Partial), "***");
        assert_eq!(s("4111 1111 1111 1111", Mode::Partial), "**** **** **** 1111");
        assert_eq!(s("Zoë Müller-Lüdenscheidt", Mode::Partial), "*** ******-********eidt");
        assert_eq!(s("hunter2", Mode::Redact), "[REDACTED:secret]");
        assert!(s("hunter2", Mode::Hash).starts_with("[HASH:secret:"));
        assert_eq!(s("123-45-6789", Mode::Redact), "[REDACTED:ssn]");
    }
}
