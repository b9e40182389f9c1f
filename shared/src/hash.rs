//! Hashing helpers used for cache keys and for logging client keys without revealing them.

use sha2::{Digest, Sha256};

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A short, stable, non-reversible tag for a client key in logs (first 12 hex of SHA-256).
pub fn log_tag(data: &[u8]) -> String {
    let d = sha256(data);
    hex(d.get(..6).unwrap_or(&d))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn hex_of_sha256_abc() {
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(log_tag(b"abc"), "ba7816bf8f01");
    }
}
