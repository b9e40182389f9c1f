//! RFC 9530 `Content-Digest`: `sha-256` and `sha-512` over the exact body bytes received.
//!
//! The field must be a structured-field dictionary whose supported members are byte
//! sequences of the right length; members with other algorithm names are ignored (RFC 9530
//! section 2 lets a recipient ignore digests it does not support), but at least one
//! supported digest is required. Every supported member present must match.

use crate::sfv::{self, BareItem, Item, Member};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestError {
    /// Not a dictionary, a repeated algorithm, or a digest of the wrong type or length.
    Invalid,
    /// No `sha-256` or `sha-512` member.
    Unsupported,
    /// A digest does not match the body.
    Mismatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    fn from_key(k: &str) -> Option<Self> {
        match k {
            "sha-256" => Some(Self::Sha256),
            "sha-512" => Some(Self::Sha512),
            _ => None,
        }
    }
    fn len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }
}

/// A parsed `Content-Digest` with its supported members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentDigest {
    pub digests: Vec<(Algorithm, Vec<u8>)>,
}

impl ContentDigest {
    /// Parse the (combined) field value.
    pub fn parse(value: &[u8]) -> Result<Self, DigestError> {
        let d = sfv::parse_dictionary(value).map_err(|_| DigestError::Invalid)?;
        if d.duplicate_keys || d.is_empty() {
            return Err(DigestError::Invalid);
        }
        let mut digests = Vec::new();
        for (k, m) in &d.members {
            let Some(alg) = Algorithm::from_key(k) else { continue };
            match m {
                Member::Item(Item { bare: BareItem::ByteSeq(b), .. }) if b.len() == alg.len() => digests.push((alg, b.clone())),
                _ => return Err(DigestError::Invalid),
            }
        }
        if digests.is_empty() {
            return Err(DigestError::Unsupported);
        }
        Ok(Self { digests })
    }

    /// Check every supported digest against `body`, in constant time per comparison.
    pub fn verify(&self, body: &[u8]) -> Result<(), DigestError> {
        let mut ok = true;
        for (alg, expected) in &self.digests {
            let actual: Vec<u8> = match alg {
                Algorithm::Sha256 => Sha256::digest(body).to_vec(),
                Algorithm::Sha512 => Sha512::digest(body).to_vec(),
            };
            ok &= bool::from(actual.ct_eq(expected));
        }
        if ok {
            Ok(())
        } else {
            Err(DigestError::Mismatch)
        }
    }
}

/// The `Content-Digest` value for `body` (response signing, tests).
pub fn sha256_field(body: &[u8]) -> String {
    let mut out = String::from("sha-256=");
    sfv::serialize_bare(&BareItem::ByteSeq(Sha256::digest(body).to_vec()), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 9530 section 2 / appendix D: the body is `{"hello": "world"}` plus a newline.
    const BODY: &[u8] = b"{\"hello\": \"world\"}\n";
    const SHA256: &str = "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:";
    const SHA512: &str = "sha-512=:YMAam51Jz/jOATT6/zvHrLVgOYTGFy1d6GJiOHTohq4yP+pgk4vf2aCsyRZOtw8MjkM7iw7yZ/WkppmM44T3qg==:";

    #[test]
    fn rfc_9530_examples() {
        ContentDigest::parse(SHA256.as_bytes()).unwrap().verify(BODY).unwrap();
        ContentDigest::parse(SHA512.as_bytes()).unwrap().verify(BODY).unwrap();
        let both = format!("{SHA256}, {SHA512}");
        ContentDigest::parse(both.as_bytes()).unwrap().verify(BODY).unwrap();
        assert_eq!(sha256_field(BODY), SHA256);
    }

    #[test]
    fn rfc_9421_appendix_b_2_body() {
        // The B.2 test request body (no trailing newline) with its sha-512 Content-Digest.
        let d = ContentDigest::parse(b"sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:").unwrap();
        d.verify(b"{\"hello\": \"world\"}").unwrap();
        assert_eq!(d.verify(BODY), Err(DigestError::Mismatch));
    }

    #[test]
    fn mismatch_on_any_member() {
        let d = ContentDigest::parse(SHA256.as_bytes()).unwrap();
        assert_eq!(d.verify(b"{\"hello\": \"world\"}"), Err(DigestError::Mismatch));
        assert_eq!(d.verify(b""), Err(DigestError::Mismatch));
        // One good, one bad: refused.
        let bad512 = format!("{SHA256}, sha-512=:{}:", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0u8; 64]));
        assert_eq!(ContentDigest::parse(bad512.as_bytes()).unwrap().verify(BODY), Err(DigestError::Mismatch));
    }

    #[test]
    fn empty_body() {
        let d = ContentDigest::parse(sha256_field(b"").as_bytes()).unwrap();
        d.verify(b"").unwrap();
        assert_eq!(sha256_field(b""), "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:");
    }

    #[test]
    fn malformed_and_unsupported() {
        assert_eq!(ContentDigest::parse(b"sha-256=:AAAA:"), Err(DigestError::Invalid), "wrong length");
        assert_eq!(ContentDigest::parse(b"sha-256=\"RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=\""), Err(DigestError::Invalid));
        assert_eq!(ContentDigest::parse(b"sha-256"), Err(DigestError::Invalid));
        assert_eq!(ContentDigest::parse(b""), Err(DigestError::Invalid));
        assert_eq!(ContentDigest::parse(b"sha256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:"), Err(DigestError::Unsupported));
        assert_eq!(ContentDigest::parse(b"md5=:AAAA:"), Err(DigestError::Unsupported));
        let dup = format!("{SHA256}, {SHA256}");
        assert_eq!(ContentDigest::parse(dup.as_bytes()), Err(DigestError::Invalid));
        // Unknown algorithms next to a supported one are ignored.
        let mixed = format!("md5=:AAAA:, {SHA256}");
        ContentDigest::parse(mixed.as_bytes()).unwrap().verify(BODY).unwrap();
    }
}
