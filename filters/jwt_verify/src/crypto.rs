//! Signature verification: `ring` 0.17 for RSA (PKCS#1 v1.5 and PSS), ECDSA and Ed25519;
//! RustCrypto `hmac` + `sha2` for HS*, compared in constant time (`verify_slice` uses
//! `subtle`). No cryptography is implemented here, only the mapping from JWS algorithm and
//! JWK to the library call.

use crate::jwk::{Alg, Curve, KeyMaterial};
use hmac::{Hmac, Mac};
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use sha2::{Sha256, Sha384, Sha512};

fn hmac_ok<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    match <M as hmac::digest::KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(msg);
            mac.verify_slice(sig).is_ok()
        }
        Err(_) => false,
    }
}

/// True when `sig` is a valid `alg` signature of `msg` under `key`. The caller has already
/// checked that the key accepts `alg` ([`crate::jwk::Jwk::accepts`]); a mismatch here is
/// still a plain `false`, never a panic.
pub fn verify(alg: Alg, key: &KeyMaterial, msg: &[u8], sig: &[u8]) -> bool {
    match (key, alg) {
        (KeyMaterial::Rsa { n, e }, _) => {
            let params: &signature::RsaParameters = match alg {
                Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                Alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                Alg::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
                _ => return false,
            };
            RsaPublicKeyComponents { n: n.as_slice(), e: e.as_slice() }.verify(params, msg, sig).is_ok()
        }
        (KeyMaterial::Ec { curve: Curve::P256, point }, Alg::ES256) => {
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).verify(msg, sig).is_ok()
        }
        (KeyMaterial::Ec { curve: Curve::P384, point }, Alg::ES384) => {
            UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point).verify(msg, sig).is_ok()
        }
        (KeyMaterial::Ed25519 { x }, Alg::EdDSA) => UnparsedPublicKey::new(&signature::ED25519, x).verify(msg, sig).is_ok(),
        (KeyMaterial::Oct { k }, Alg::HS256) => hmac_ok::<Hmac<Sha256>>(&k.0, msg, sig),
        (KeyMaterial::Oct { k }, Alg::HS384) => hmac_ok::<Hmac<Sha384>>(&k.0, msg, sig),
        (KeyMaterial::Oct { k }, Alg::HS512) => hmac_ok::<Hmac<Sha512>>(&k.0, msg, sig),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwk::Secret;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};

    #[test]
    fn hmac_round_trip_and_tamper() {
        let key = KeyMaterial::Oct { k: Secret(vec![9u8; 64]) };
        for (alg, len) in [(Alg::HS256, 32), (Alg::HS384, 48), (Alg::HS512, 64)] {
            let sig: Vec<u8> = match alg {
                Alg::HS256 => {
                    let mut m = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(&[9u8; 64]).unwrap();
                    m.update(b"msg");
                    m.finalize().into_bytes().to_vec()
                }
                Alg::HS384 => {
                    let mut m = <Hmac<Sha384> as hmac::digest::KeyInit>::new_from_slice(&[9u8; 64]).unwrap();
                    m.update(b"msg");
                    m.finalize().into_bytes().to_vec()
                }
                _ => {
                    let mut m = <Hmac<Sha512> as hmac::digest::KeyInit>::new_from_slice(&[9u8; 64]).unwrap();
                    m.update(b"msg");
                    m.finalize().into_bytes().to_vec()
                }
            };
            assert_eq!(sig.len(), len);
            assert!(verify(alg, &key, b"msg", &sig));
            assert!(!verify(alg, &key, b"msg2", &sig));
            assert!(!verify(alg, &key, b"msg", &sig[..len - 1]));
            let mut bad = sig.clone();
            bad[0] ^= 1;
            assert!(!verify(alg, &key, b"msg", &bad));
        }
    }

    #[test]
    fn ecdsa_and_eddsa_round_trip() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let sig = kp.sign(&rng, b"msg").unwrap();
        let key = KeyMaterial::Ec { curve: Curve::P256, point: kp.public_key().as_ref().to_vec() };
        assert!(verify(Alg::ES256, &key, b"msg", sig.as_ref()));
        assert!(!verify(Alg::ES256, &key, b"msh", sig.as_ref()));
        assert!(!verify(Alg::ES384, &key, b"msg", sig.as_ref()));

        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let sig = kp.sign(b"msg");
        let key = KeyMaterial::Ed25519 { x: kp.public_key().as_ref().to_vec() };
        assert!(verify(Alg::EdDSA, &key, b"msg", sig.as_ref()));
        assert!(!verify(Alg::EdDSA, &key, b"msh", sig.as_ref()));
        // Key confusion: an HMAC over the public key bytes is not an EdDSA signature.
        assert!(!verify(Alg::HS256, &key, b"msg", sig.as_ref()));
    }

    #[test]
    fn invalid_keys_are_false_not_panics() {
        let key = KeyMaterial::Ec { curve: Curve::P256, point: vec![4u8; 65] };
        assert!(!verify(Alg::ES256, &key, b"m", &[0u8; 64]));
        let key = KeyMaterial::Rsa { n: vec![0xffu8; 256], e: vec![1, 0, 1] };
        assert!(!verify(Alg::RS256, &key, b"m", &[0u8; 256]));
        assert!(!verify(Alg::RS256, &key, b"m", &[]));
        assert!(!verify(Alg::ES256, &key, b"m", &[0u8; 64]));
    }
}
