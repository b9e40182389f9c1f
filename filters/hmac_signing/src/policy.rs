//! The compiled configuration: keys decoded, components parsed, rules compiled. Built once
//! in `on_configure` by [`crate::config::Config::compile`]; read-only afterwards.

use crate::components::ComponentId;
use crate::secret::Secret;
use shared::pathmatch::RouteMatch;
use std::collections::BTreeMap;

/// The only signature algorithm this filter accepts (RFC 9421 section 3.3.3).
pub const ALG: &str = "hmac-sha256";

/// An HMAC key that signs requests.
#[derive(Debug, Clone)]
pub struct HmacKey {
    pub secret: Secret,
    pub scopes: Vec<String>,
}

/// One API key, known only by the SHA-256 of its value.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub sha256: [u8; 32],
    pub id: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ApiKeys {
    /// Lower-case request header carrying the key.
    pub header: String,
    pub keys: Vec<ApiKey>,
    /// Forward the key header upstream (default: removed once verified).
    pub forward: bool,
}

/// What a rule requires of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Require {
    /// A valid RFC 9421 signature by a configured key.
    Signature,
    /// A valid API key.
    ApiKey,
    /// A signature if the request carries one, else an API key.
    Any,
    /// No credentials (health checks, public paths). Nothing is verified.
    None,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub route: RouteMatch,
    pub require: Require,
}

#[derive(Debug, Clone)]
pub struct ReplayCache {
    pub sets: u32,
    pub ways: usize,
}

/// The gateway's own key, used to sign responses.
#[derive(Debug, Clone)]
pub struct ResponseSigning {
    pub keyid: String,
    pub secret: Secret,
    pub label: String,
    /// `@status` and response header names.
    pub components: Vec<ComponentId>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub keys: BTreeMap<String, HmacKey>,
    pub required_components: Vec<ComponentId>,
    pub max_age_s: u64,
    pub clock_skew_s: u64,
    pub require_nonce: bool,
    pub require_content_digest: bool,
    pub max_body_bytes: u64,
    pub api_keys: Option<ApiKeys>,
    pub rules: Vec<Rule>,
    pub replay_cache: ReplayCache,
    pub response_signing: Option<ResponseSigning>,
}
