//! Every way this filter refuses a request, mapped once to the wire form (status, stable
//! code, problem+json detail, challenge). Details say what failed and nothing more: no
//! key material, no expected values.

use crate::apikey::ApiKeyError;
use crate::digest::DigestError;
use crate::replay::ReplayError;
use crate::signature::SigError;
use shared::pathmatch::PathError;
use shared::reply::Rejection;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HmacError {
    Path(PathError),
    NoMatchingRule,
    /// Rule `any`: neither a signature nor an API key.
    CredentialsMissing,
    Signature(SigError),
    /// A signed request with a body whose signature does not cover a `content-digest`.
    DigestMissing,
    Digest(DigestError),
    BodyTooLarge,
    ApiKey(ApiKeyError),
    Replay(ReplayError),
    /// The host refused a call this filter needs (reading the body, recording the identity).
    Internal,
}

const SIG_CHALLENGE: &str = "Signature";
const KEY_CHALLENGE: &str = "ApiKey";

impl HmacError {
    /// Stable codes, also the `denied.<code>` metric names (path errors share `path_invalid`).
    pub const CODES: &'static [&'static str] = &[
        "path_invalid",
        "no_matching_rule",
        "credentials_missing",
        "signature_missing",
        "signature_malformed",
        "unknown_key",
        "algorithm_mismatch",
        "signature_params_invalid",
        "component_not_covered",
        "component_missing",
        "component_unsupported",
        "component_invalid",
        "signature_expired",
        "signature_not_yet_valid",
        "nonce_missing",
        "signature_invalid",
        "replay",
        "replay_check_unavailable",
        "digest_missing",
        "digest_invalid",
        "digest_unsupported",
        "digest_mismatch",
        "body_too_large",
        "api_key_missing",
        "api_key_invalid",
        "internal_error",
    ];

    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            HmacError::Path(p) => p.code(),
            HmacError::NoMatchingRule => "no_matching_rule",
            HmacError::CredentialsMissing => "credentials_missing",
            HmacError::Signature(s) => match s {
                SigError::Missing => "signature_missing",
                SigError::Malformed(_) => "signature_malformed",
                SigError::UnknownKey => "unknown_key",
                SigError::AlgorithmMismatch => "algorithm_mismatch",
                SigError::ParamsInvalid(_) => "signature_params_invalid",
                SigError::NotCovered(_) => "component_not_covered",
                SigError::ComponentMissing => "component_missing",
                SigError::ComponentUnsupported => "component_unsupported",
                SigError::ComponentInvalid => "component_invalid",
                SigError::Expired => "signature_expired",
                SigError::NotYetValid => "signature_not_yet_valid",
                SigError::NonceMissing => "nonce_missing",
                SigError::Invalid => "signature_invalid",
            },
            HmacError::DigestMissing => "digest_missing",
            HmacError::Digest(d) => match d {
                DigestError::Invalid => "digest_invalid",
                DigestError::Unsupported => "digest_unsupported",
                DigestError::Mismatch => "digest_mismatch",
            },
            HmacError::BodyTooLarge => "body_too_large",
            HmacError::ApiKey(ApiKeyError::Missing) => "api_key_missing",
            HmacError::ApiKey(ApiKeyError::Invalid) => "api_key_invalid",
            HmacError::Replay(ReplayError::Replay) => "replay",
            HmacError::Replay(ReplayError::Unavailable) => "replay_check_unavailable",
            HmacError::Internal => "internal_error",
        }
    }

    /// The metric bucket (`denied.<metric>`): the code, with all path errors together.
    pub fn metric(&self) -> &'static str {
        match self {
            HmacError::Path(_) => "path_invalid",
            other => other.code(),
        }
    }
}

impl From<SigError> for HmacError {
    fn from(e: SigError) -> Self {
        HmacError::Signature(e)
    }
}

impl From<HmacError> for Rejection {
    fn from(e: HmacError) -> Self {
        let code = e.code();
        let sig = |detail: &'static str| Rejection::new(401, code, detail).with_header("www-authenticate", SIG_CHALLENGE);
        match e {
            HmacError::Path(p) => Rejection::new(400, code, p.to_string()),
            HmacError::NoMatchingRule => Rejection::new(403, code, "no rule allows this request"),
            HmacError::CredentialsMissing => {
                Rejection::new(401, code, "the request carries neither a signature nor an API key").with_header("www-authenticate", format!("{SIG_CHALLENGE}, {KEY_CHALLENGE}"))
            }
            HmacError::Signature(s) => match s {
                SigError::Missing => sig("the request is not signed (Signature-Input and Signature are required)"),
                SigError::Malformed(why) => sig(why),
                SigError::UnknownKey => sig("no signature uses a known keyid"),
                SigError::AlgorithmMismatch => sig("the signature algorithm must be hmac-sha256"),
                SigError::ParamsInvalid(why) => sig(why),
                SigError::NotCovered(c) => Rejection::new(401, code, format!("the signature must cover {c}")).with_header("www-authenticate", SIG_CHALLENGE),
                SigError::ComponentMissing => sig("a covered component is absent from the request"),
                SigError::ComponentUnsupported => sig("a covered component or its parameters are not supported (use header names, ;key or ;sf on dictionary fields, and the request derived components)"),
                SigError::ComponentInvalid => sig("a covered component has a value that cannot be signed (non-ASCII, or a repeated query parameter)"),
                SigError::Expired => sig("the signature has expired"),
                SigError::NotYetValid => sig("the signature was created in the future"),
                SigError::NonceMissing => sig("the signature must carry a nonce"),
                SigError::Invalid => sig("the signature does not match the request"),
            },
            HmacError::DigestMissing => Rejection::new(400, code, "a request body must be covered by a signed Content-Digest"),
            HmacError::Digest(DigestError::Invalid) => Rejection::new(400, code, "Content-Digest is malformed"),
            HmacError::Digest(DigestError::Unsupported) => Rejection::new(400, code, "Content-Digest must carry sha-256 or sha-512"),
            HmacError::Digest(DigestError::Mismatch) => Rejection::new(400, code, "Content-Digest does not match the request body"),
            HmacError::BodyTooLarge => Rejection::new(413, code, "the request body is too large to verify"),
            HmacError::ApiKey(ApiKeyError::Missing) => Rejection::new(401, code, "an API key is required").with_header("www-authenticate", KEY_CHALLENGE),
            HmacError::ApiKey(ApiKeyError::Invalid) => Rejection::new(401, code, "the API key is not valid").with_header("www-authenticate", KEY_CHALLENGE),
            HmacError::Replay(ReplayError::Replay) => sig("this signature nonce was already used"),
            HmacError::Replay(ReplayError::Unavailable) => Rejection::new(503, code, "the replay check is unavailable; retry").with_header("retry-after", "1"),
            HmacError::Internal => Rejection::new(500, code, "the request could not be verified"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<HmacError> {
        vec![
            HmacError::Path(PathError::DotSegment),
            HmacError::NoMatchingRule,
            HmacError::CredentialsMissing,
            SigError::Missing.into(),
            SigError::Malformed("x").into(),
            SigError::UnknownKey.into(),
            SigError::AlgorithmMismatch.into(),
            SigError::ParamsInvalid("x").into(),
            SigError::NotCovered("\"@method\"".into()).into(),
            SigError::ComponentMissing.into(),
            SigError::ComponentUnsupported.into(),
            SigError::ComponentInvalid.into(),
            SigError::Expired.into(),
            SigError::NotYetValid.into(),
            SigError::NonceMissing.into(),
            SigError::Invalid.into(),
            HmacError::Replay(ReplayError::Replay),
            HmacError::Replay(ReplayError::Unavailable),
            HmacError::DigestMissing,
            HmacError::Digest(DigestError::Invalid),
            HmacError::Digest(DigestError::Unsupported),
            HmacError::Digest(DigestError::Mismatch),
            HmacError::BodyTooLarge,
            HmacError::ApiKey(ApiKeyError::Missing),
            HmacError::ApiKey(ApiKeyError::Invalid),
            HmacError::Internal,
        ]
    }

    #[test]
    fn every_error_has_a_listed_metric_and_a_sane_status() {
        let errors = all();
        let metrics: Vec<&str> = errors.iter().map(HmacError::metric).collect();
        assert_eq!(metrics, HmacError::CODES, "CODES must list every error once, in order");
        for e in errors {
            let r = Rejection::from(e.clone());
            assert_eq!(r.code, e.code());
            assert!(matches!(r.status, 400 | 401 | 403 | 413 | 500 | 503), "{e:?}");
            if r.status == 401 {
                assert!(r.headers.iter().any(|(k, _)| k == "www-authenticate"), "{e:?}");
            }
        }
    }

    #[test]
    fn statuses_that_clients_rely_on() {
        assert_eq!(Rejection::from(HmacError::Digest(DigestError::Mismatch)).status, 400);
        assert_eq!(Rejection::from(HmacError::BodyTooLarge).status, 413);
        assert_eq!(Rejection::from(HmacError::Replay(ReplayError::Replay)).status, 401);
        assert_eq!(Rejection::from(HmacError::from(SigError::Expired)).status, 401);
        assert_eq!(Rejection::from(HmacError::Path(PathError::EncodedSlash)).code, "path_encoded_slash");
    }
}
