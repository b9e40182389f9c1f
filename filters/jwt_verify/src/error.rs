//! Every reason a request is refused, mapped to the wire in one place.
//!
//! The `code` strings are part of the public contract (README "Error codes") and are also
//! the suffix of the `edgesec.jwt_verify.denied.<code>` counters, so they never change.

use shared::pathmatch::PathError;
use shared::reply::Rejection;

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwtError {
    /// The rule needs a token and the request has none.
    Missing,
    /// More than one `authorization` header, or two different tokens in the configured places.
    Ambiguous,
    /// Longer than `max_token_bytes`.
    TooLarge,
    /// Not three base64url segments, or a segment that is not a JSON object.
    Malformed,
    /// A JSON object in the header or payload repeats a member name.
    DuplicateKey,
    /// `alg` missing, `none`, or not one this filter implements.
    AlgUnsupported,
    /// `alg` does not fit the key (HS token against an RSA key, header `alg` != JWK `alg`).
    AlgMismatch,
    /// The header names a `crit` extension (none is implemented, RFC 7515 section 4.1.11).
    CritUnsupported,
    /// `typ` differs from the provider's expected `typ`.
    TypMismatch,
    /// `iss` missing, or no provider allowed on this route has that issuer.
    IssuerNotAllowed,
    /// No key with the token's `kid`.
    UnknownKid,
    /// No key of a type that fits the token's `alg` (token without `kid`).
    NoMatchingKey,
    /// The signature does not verify.
    SignatureInvalid,
    /// `exp` is missing.
    ExpMissing,
    /// `exp`, `nbf` or `iat` is not a non-negative number, or `sub`/`jti` not a string.
    ClaimInvalid,
    /// `exp` (plus clock skew) has passed.
    Expired,
    /// `nbf` (minus clock skew) is in the future.
    NotYetValid,
    /// `iat` (minus clock skew) is in the future.
    IssuedInFuture,
    /// `max_lifetime_s` is set and the token has no `iat`.
    IatMissing,
    /// `exp - iat` exceeds `max_lifetime_s`.
    LifetimeTooLong,
    /// `aud` does not intersect the provider's `audiences`.
    AudienceMismatch,
    /// A `required_claims` entry is missing or has another value.
    ClaimMismatch,
    /// `require_jti` is set and the token has no `jti`.
    JtiMissing,
    /// The token's `jti` is revoked.
    Revoked,
    /// The provider's remote key set (or revocation list) could not be fetched yet.
    JwksUnavailable,
    /// No rule covers the path: default deny.
    NoRule,
    /// The path cannot be matched safely.
    BadPath(PathError),
    /// The host refused a call needed to decide (request headers unreadable).
    Internal,
}

impl JwtError {
    /// Stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            JwtError::Missing => "token_missing",
            JwtError::Ambiguous => "token_ambiguous",
            JwtError::TooLarge => "token_too_large",
            JwtError::Malformed => "token_malformed",
            JwtError::DuplicateKey => "token_duplicate_key",
            JwtError::AlgUnsupported => "alg_unsupported",
            JwtError::AlgMismatch => "alg_mismatch",
            JwtError::CritUnsupported => "crit_unsupported",
            JwtError::TypMismatch => "typ_mismatch",
            JwtError::IssuerNotAllowed => "issuer_not_allowed",
            JwtError::UnknownKid => "unknown_kid",
            JwtError::NoMatchingKey => "no_matching_key",
            JwtError::SignatureInvalid => "signature_invalid",
            JwtError::ExpMissing => "exp_missing",
            JwtError::ClaimInvalid => "claim_invalid",
            JwtError::Expired => "token_expired",
            JwtError::NotYetValid => "token_not_yet_valid",
            JwtError::IssuedInFuture => "iat_in_future",
            JwtError::IatMissing => "iat_missing",
            JwtError::LifetimeTooLong => "lifetime_too_long",
            JwtError::AudienceMismatch => "audience_mismatch",
            JwtError::ClaimMismatch => "claim_mismatch",
            JwtError::JtiMissing => "jti_missing",
            JwtError::Revoked => "token_revoked",
            JwtError::JwksUnavailable => "jwks_unavailable",
            JwtError::NoRule => "no_matching_rule",
            JwtError::BadPath(p) => p.code(),
            JwtError::Internal => "internal_error",
        }
    }

    /// Safe to show a client: says what is wrong with the token, nothing about keys,
    /// claims' expected values or configuration.
    pub fn detail(self) -> &'static str {
        match self {
            JwtError::Missing => "a bearer token is required",
            JwtError::Ambiguous => "more than one token in the request",
            JwtError::TooLarge => "the token is too large",
            JwtError::Malformed => "the token is malformed",
            JwtError::DuplicateKey => "the token repeats a JSON member",
            JwtError::AlgUnsupported => "the token algorithm is not supported",
            JwtError::AlgMismatch => "the token algorithm does not match the key",
            JwtError::CritUnsupported => "the token requires an unsupported extension",
            JwtError::TypMismatch => "the token type is not accepted",
            JwtError::IssuerNotAllowed => "the token issuer is not accepted here",
            JwtError::UnknownKid => "the token key id is unknown",
            JwtError::NoMatchingKey => "no key matches the token",
            JwtError::SignatureInvalid => "the token signature is invalid",
            JwtError::ExpMissing => "the token has no expiration",
            JwtError::ClaimInvalid => "a token claim has an invalid type",
            JwtError::Expired => "the token has expired",
            JwtError::NotYetValid => "the token is not valid yet",
            JwtError::IssuedInFuture => "the token was issued in the future",
            JwtError::IatMissing => "the token has no issued-at time",
            JwtError::LifetimeTooLong => "the token lifetime is too long",
            JwtError::AudienceMismatch => "the token audience is not accepted",
            JwtError::ClaimMismatch => "a required claim is missing or different",
            JwtError::JtiMissing => "the token has no token id",
            JwtError::Revoked => "the token has been revoked",
            JwtError::JwksUnavailable => "the keys to verify the token are not available",
            JwtError::NoRule => "no access rule covers this path",
            JwtError::BadPath(_) => "the request path is ambiguous",
            JwtError::Internal => "the request could not be checked",
        }
    }

    /// Every code that can be reported, for defining the `denied.<code>` counters up front.
    pub const ALL: [JwtError; 28] = [
        JwtError::Missing,
        JwtError::Ambiguous,
        JwtError::TooLarge,
        JwtError::Malformed,
        JwtError::DuplicateKey,
        JwtError::AlgUnsupported,
        JwtError::AlgMismatch,
        JwtError::CritUnsupported,
        JwtError::TypMismatch,
        JwtError::IssuerNotAllowed,
        JwtError::UnknownKid,
        JwtError::NoMatchingKey,
        JwtError::SignatureInvalid,
        JwtError::ExpMissing,
        JwtError::ClaimInvalid,
        JwtError::Expired,
        JwtError::NotYetValid,
        JwtError::IssuedInFuture,
        JwtError::IatMissing,
        JwtError::LifetimeTooLong,
        JwtError::AudienceMismatch,
        JwtError::ClaimMismatch,
        JwtError::JtiMissing,
        JwtError::Revoked,
        JwtError::JwksUnavailable,
        JwtError::NoRule,
        JwtError::BadPath(PathError::NotAbsolute),
        JwtError::Internal,
    ];

    /// Index of this error's counter in [`JwtError::ALL`] (all path errors share one).
    pub fn counter_index(self) -> usize {
        match self {
            JwtError::BadPath(_) => 26,
            other => JwtError::ALL.iter().position(|e| *e == other).unwrap_or(27),
        }
    }

    /// Name of this error's `denied.<name>` counter.
    pub fn counter_name(self) -> &'static str {
        match self {
            JwtError::BadPath(_) => "bad_path",
            other => other.code(),
        }
    }
}

impl From<JwtError> for Rejection {
    fn from(e: JwtError) -> Rejection {
        match e {
            // RFC 6750 section 3.1: a request without credentials gets a bare challenge.
            JwtError::Missing => Rejection::unauthorized_bearer(e.code(), e.detail(), None),
            // RFC 6750 section 3.1: more than one method of including a token.
            JwtError::Ambiguous => Rejection::unauthorized_bearer(e.code(), e.detail(), Some("invalid_request")),
            JwtError::NoRule => Rejection::new(403, e.code(), e.detail()),
            JwtError::BadPath(_) => Rejection::new(400, e.code(), e.detail()),
            // The token may be fine: tell the client to retry, not to throw it away.
            JwtError::JwksUnavailable => Rejection::new(503, e.code(), e.detail()).with_header("retry-after", "5"),
            JwtError::Internal => Rejection::new(500, e.code(), e.detail()),
            _ => Rejection::unauthorized_bearer(e.code(), e.detail(), Some("invalid_token")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_counters_line_up() {
        let mut codes: Vec<&str> = JwtError::ALL.iter().map(|e| e.counter_name()).collect();
        for (i, e) in JwtError::ALL.iter().enumerate() {
            assert_eq!(e.counter_index(), i, "{e:?}");
        }
        codes.sort();
        let n = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), n);
        assert_eq!(JwtError::BadPath(PathError::DotSegment).counter_index(), 26);
    }

    #[test]
    fn token_errors_are_401_with_invalid_token() {
        for e in JwtError::ALL {
            let r = Rejection::from(e);
            let www = r.headers.iter().find(|(k, _)| k == "www-authenticate").map(|(_, v)| v.as_str());
            match e {
                JwtError::Missing => assert_eq!(www, Some("Bearer")),
                JwtError::Ambiguous => assert!(www.unwrap().starts_with("Bearer error=\"invalid_request\"")),
                JwtError::NoRule => assert_eq!(r.status, 403),
                JwtError::BadPath(_) => assert_eq!(r.status, 400),
                JwtError::JwksUnavailable => assert_eq!(r.status, 503),
                JwtError::Internal => assert_eq!(r.status, 500),
                _ => {
                    assert_eq!(r.status, 401, "{e:?}");
                    assert!(www.unwrap().starts_with("Bearer error=\"invalid_token\""), "{e:?}");
                }
            }
        }
    }
}
