//! The compiled configuration: limits with their bucket geometry, routes with their matchers,
//! the slot table the buckets live in, and the global (RLS) settings.

use shared::pathmatch::RouteMatch;
use shared::slots::SlotTable;

/// Length of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    Second,
    Minute,
    Hour,
    Day,
}

impl Per {
    pub fn seconds(self) -> u64 {
        match self {
            Per::Second => 1,
            Per::Minute => 60,
            Per::Hour => 3_600,
            Per::Day => 86_400,
        }
    }
}

/// One token bucket definition: `requests` per `window_ms` refill, `burst` capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// Policy name: the tier or route name. Used in the `RateLimit` headers, in bucket keys
    /// and in metric names (validated to `[a-z0-9][a-z0-9_-]*`).
    pub name: String,
    pub requests: u64,
    pub window_s: u64,
    pub burst: u64,
}

impl Limit {
    pub fn window_ms(&self) -> u64 {
        self.window_s.saturating_mul(1000)
    }
    /// Capacity in milli-tokens.
    pub fn cap_milli(&self) -> u64 {
        self.burst.saturating_mul(1000)
    }
    /// Refill rate numerator: milli-tokens per window (rate = `rate_milli() / window_ms()` per ms).
    pub fn rate_milli(&self) -> u64 {
        self.requests.saturating_mul(1000)
    }
}

/// Which client key a route limit counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKey {
    /// The verified user (`sub`) when there is one, else the client IP.
    #[default]
    User,
    /// Always the client IP, even for authenticated callers.
    Ip,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub matcher: RouteMatch,
    pub limit: Limit,
    pub key: RouteKey,
}

/// Which rate-limit headers an allowed response carries (a 429 always carries all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllowedHeaders {
    /// `RateLimit` only.
    #[default]
    RateLimit,
    /// `RateLimit` and `RateLimit-Policy`.
    RateLimitAndPolicy,
    /// Nothing on allowed responses.
    None,
}

/// The external rate-limit service (Envoy RLS v3 over gRPC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    pub cluster: String,
    pub domain: String,
    pub timeout_ms: u32,
    pub failure_mode_deny: bool,
}

#[derive(Debug, Clone)]
pub struct Policy {
    /// All tiers; `anonymous` and `authenticated` always exist.
    pub tiers: Vec<Limit>,
    pub anonymous: usize,
    pub authenticated: usize,
    pub tier_claim: Option<String>,
    pub trusted_proxy_hops: u32,
    pub trust_envoy_address: bool,
    pub ipv6_prefix_len: u8,
    pub routes: Vec<Route>,
    pub global: Option<Global>,
    pub allowed_headers: AllowedHeaders,
    pub table: SlotTable,
    /// Shared-data key prefix of the table.
    pub table_prefix: String,
    pub table_sets: u32,
    pub table_ways: usize,
}

impl Policy {
    pub fn tier(&self, i: usize) -> Option<&Limit> {
        self.tiers.get(i)
    }
    pub fn tier_index(&self, name: &str) -> Option<usize> {
        self.tiers.iter().position(|t| t.name == name)
    }
}
