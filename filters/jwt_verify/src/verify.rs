//! Choosing the key and checking the signature. The algorithm is the token's `alg` only if
//! the chosen key accepts it ([`Jwk::accepts`]): `none` is never an algorithm, an HS token
//! never meets an RSA/EC/OKP key (key confusion), and a JWK with its own `alg` accepts only that.

use crate::crypto;
use crate::error::JwtError;
use crate::jwk::{Alg, Jwk, KeySet};
use crate::token::Token;

/// Verify `token`'s signature with `keys`. `kid` selects the key; without `kid`, every
/// key that accepts the algorithm is tried (bounded by the size of the key set).
pub fn verify_signature(token: &Token<'_>, keys: &KeySet) -> Result<(), JwtError> {
    let alg = Alg::parse(&token.header.alg).ok_or(JwtError::AlgUnsupported)?;
    let candidates: Vec<&Jwk> = match &token.header.kid {
        Some(kid) => {
            let same_kid: Vec<&Jwk> = keys.keys.iter().filter(|k| k.kid.as_deref() == Some(kid.as_str())).collect();
            if same_kid.is_empty() {
                return Err(JwtError::UnknownKid);
            }
            let fit: Vec<&Jwk> = same_kid.into_iter().filter(|k| k.accepts(alg)).collect();
            if fit.is_empty() {
                return Err(JwtError::AlgMismatch);
            }
            fit
        }
        None => {
            let fit: Vec<&Jwk> = keys.keys.iter().filter(|k| k.accepts(alg)).collect();
            if fit.is_empty() {
                return Err(if keys.is_empty() { JwtError::NoMatchingKey } else { JwtError::AlgMismatch });
            }
            fit
        }
    };
    if candidates.iter().any(|k| crypto::verify(alg, &k.material, token.signing_input, &token.signature)) {
        Ok(())
    } else {
        Err(JwtError::SignatureInvalid)
    }
}
