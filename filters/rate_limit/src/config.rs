//! Configuration of rate_limit: JSON types (every field documented in README.md) and their
//! compilation into a ready [`Policy`]. `compile` reports every error with its JSON path.

use crate::policy::{AllowedHeaders, Global, Limit, Per, Policy, Route, RouteKey};
use serde::Deserialize;
use shared::config::{ConfigErrors, Validator};
use shared::pathmatch::RouteMatch;
use shared::slots::SlotTable;
use std::collections::BTreeMap;

/// Largest `requests` and `burst`: keeps milli-tokens within a `u32` in the stored bucket.
pub const MAX_REQUESTS: u64 = 1_000_000;
/// Largest number of sets in the bucket table.
pub const MAX_SETS: u32 = 1 << 20;
/// Largest number of buckets per set (each update copies one whole set).
pub const MAX_WAYS: usize = 32;
/// Shared-data key prefix of the bucket table (`rate_limit.<sets>.<n>`).
pub const TABLE_PREFIX: &str = "rate_limit";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Limits per tier; must contain `anonymous` and `authenticated`.
    #[serde(default = "default_tiers")]
    pub tiers: BTreeMap<String, LimitConfig>,
    /// Claim of the verified identity naming its tier; `null` disables (every identity is
    /// `authenticated`).
    #[serde(default = "default_tier_claim")]
    pub tier_claim: Option<String>,
    /// Trusted proxies in front of Envoy that append to `x-forwarded-for`; 0 = use the
    /// connection's peer address.
    #[serde(default)]
    pub trusted_proxy_hops: u32,
    /// Use Envoy's downstream address even when Envoy derived it from request headers (HCM
    /// `xff_num_trusted_hops` or an original-IP detection extension configured to trust only
    /// your proxies). Default false: such an address could be the client's own choice.
    #[serde(default)]
    pub trust_envoy_address: bool,
    /// IPv6 clients are keyed by this prefix (a /64 is one subscriber).
    #[serde(default = "default_v6_prefix")]
    pub ipv6_prefix_len: u8,
    /// Extra limits for sensitive endpoints, applied in addition to the tier limit. First match.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Ask an external rate-limit service (Envoy RLS v3) after the local limits allowed.
    #[serde(default)]
    pub global: Option<GlobalConfig>,
    /// Which headers allowed responses carry.
    #[serde(default)]
    pub allowed_response_headers: AllowedHeaders,
    /// Geometry of the shared bucket table.
    #[serde(default)]
    pub table: TableConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            tiers: default_tiers(),
            tier_claim: default_tier_claim(),
            trusted_proxy_hops: 0,
            trust_envoy_address: false,
            ipv6_prefix_len: default_v6_prefix(),
            routes: Vec::new(),
            global: None,
            allowed_response_headers: AllowedHeaders::default(),
            table: TableConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// Requests allowed per window (the refill rate).
    pub requests: u64,
    pub per: Per,
    /// Bucket capacity: how many requests can arrive at once. Default: `requests`.
    #[serde(default)]
    pub burst: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Policy name in headers and metrics. Default: `route<index>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Path template (`/users/{id}`, `/admin/**`); exactly one of `path` and `prefix`.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    /// Methods; absent = any.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    pub requests: u64,
    pub per: Per,
    #[serde(default)]
    pub burst: Option<u64>,
    #[serde(default)]
    pub key: RouteKey,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfig {
    /// Envoy cluster (HTTP/2) of the rate-limit service.
    pub cluster: String,
    /// RLS domain.
    pub domain: String,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u32,
    /// Refuse (503) when the service fails or times out; default: allow.
    #[serde(default)]
    pub failure_mode_deny: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// Namespace of the table in Envoy's process-wide shared data. Two rate_limit filters in
    /// one Envoy (a per-IP limit before authentication, a per-user one after) need different
    /// names, or they would count in each other's buckets.
    #[serde(default = "default_table_name")]
    pub name: String,
    /// Number of shared-data keys.
    #[serde(default = "default_sets")]
    pub sets: u32,
    /// Buckets per key.
    #[serde(default = "default_ways")]
    pub ways: usize,
}

impl Default for TableConfig {
    fn default() -> Self {
        Self { name: default_table_name(), sets: default_sets(), ways: default_ways() }
    }
}

fn default_table_name() -> String {
    "default".to_string()
}

fn default_tiers() -> BTreeMap<String, LimitConfig> {
    let t = |requests, burst| LimitConfig { requests, per: Per::Minute, burst };
    BTreeMap::from([
        ("anonymous".to_string(), t(10, None)),
        ("authenticated".to_string(), t(100, None)),
        ("premium".to_string(), t(1000, Some(100))),
    ])
}
fn default_tier_claim() -> Option<String> {
    Some("tier".into())
}
fn default_v6_prefix() -> u8 {
    64
}
fn default_timeout() -> u32 {
    50
}
fn default_sets() -> u32 {
    8192
}
fn default_ways() -> usize {
    8
}

/// Policy names end up in headers (structured-field strings), bucket keys and metric names.
pub fn is_policy_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b.first().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

fn compile_limit(name: &str, requests: u64, per: Per, burst: Option<u64>, at: &str, v: &mut Validator) -> Limit {
    v.check((1..=MAX_REQUESTS).contains(&requests), format!("{at}.requests"), format!("must be between 1 and {MAX_REQUESTS}"));
    let burst_value = burst.unwrap_or(requests);
    if burst.is_some() {
        v.check((1..=MAX_REQUESTS).contains(&burst_value), format!("{at}.burst"), format!("must be between 1 and {MAX_REQUESTS}"));
    }
    Limit { name: name.to_string(), requests, window_s: per.seconds(), burst: burst_value }
}

impl Config {
    pub fn compile(self) -> Result<Policy, ConfigErrors> {
        let mut v = Validator::new();

        let mut tiers = Vec::new();
        for (name, l) in &self.tiers {
            let at = format!("tiers.{name}");
            v.check(is_policy_name(name), &at, "tier names are 1-64 characters of a-z, 0-9, '_' and '-'");
            tiers.push(compile_limit(name, l.requests, l.per, l.burst, &at, &mut v));
        }
        let anonymous = tiers.iter().position(|t| t.name == "anonymous");
        let authenticated = tiers.iter().position(|t| t.name == "authenticated");
        v.check(anonymous.is_some(), "tiers", "the 'anonymous' tier is required (callers without a verified identity)");
        v.check(authenticated.is_some(), "tiers", "the 'authenticated' tier is required (verified callers without a tier claim)");

        if let Some(c) = &self.tier_claim {
            v.check(!c.is_empty(), "tier_claim", "must not be empty (use null to disable)");
        }
        v.check(self.trusted_proxy_hops <= 16, "trusted_proxy_hops", "must be at most 16");
        v.check((16..=128).contains(&self.ipv6_prefix_len), "ipv6_prefix_len", "must be between 16 and 128");

        let mut routes: Vec<Route> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            let at = format!("routes[{i}]");
            let name = r.name.clone().unwrap_or_else(|| format!("route{i}"));
            if r.name.is_some() {
                v.check(is_policy_name(&name), format!("{at}.name"), "route names are 1-64 characters of a-z, 0-9, '_' and '-'");
            }
            v.check(!self.tiers.contains_key(&name), format!("{at}.name"), format!("'{name}' is already a tier name"));
            v.check(!names.contains(&name), format!("{at}.name"), format!("route name '{name}' is used twice"));
            names.push(name.clone());
            let limit = compile_limit(&name, r.requests, r.per, r.burst, &at, &mut v);
            let Some(matcher) = RouteMatch::compile(r.path.as_deref(), r.prefix.as_deref(), r.methods.as_deref(), &at, &mut v) else {
                continue;
            };
            if let Some(j) = routes.iter().position(|o| matcher.shadowed_by(&o.matcher)) {
                v.error(&at, format!("never applies: every request it matches is matched by the earlier route '{}' (first match wins)", routes.get(j).map(|o| o.limit.name.as_str()).unwrap_or_default()));
            }
            routes.push(Route { matcher, limit, key: r.key });
        }

        let global = self.global.as_ref().map(|g| {
            v.check(!g.cluster.is_empty(), "global.cluster", "must name the Envoy cluster of the rate-limit service");
            v.check(!g.domain.is_empty(), "global.domain", "must not be empty");
            v.check((1..=10_000).contains(&g.timeout_ms), "global.timeout_ms", "must be between 1 and 10000");
            Global { cluster: g.cluster.clone(), domain: g.domain.clone(), timeout_ms: g.timeout_ms, failure_mode_deny: g.failure_mode_deny }
        });

        v.check((1..=MAX_SETS).contains(&self.table.sets), "table.sets", format!("must be between 1 and {MAX_SETS}"));
        v.check((1..=MAX_WAYS).contains(&self.table.ways), "table.ways", format!("must be between 1 and {MAX_WAYS}"));
        let n = &self.table.name;
        v.check(
            (1..=32).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'),
            "table.name",
            "1-32 of a-z 0-9 _ -",
        );

        // The geometry is part of the prefix: a config change that resizes the table starts
        // a fresh table instead of reading sets laid out for another size.
        let table_prefix = format!("{TABLE_PREFIX}.{}.{}x{}", self.table.name, self.table.sets, self.table.ways);
        let table = SlotTable::new(table_prefix.clone(), self.table.sets, self.table.ways);

        v.finish(Policy {
            tiers,
            anonymous: anonymous.unwrap_or(0),
            authenticated: authenticated.unwrap_or(0),
            tier_claim: self.tier_claim,
            trusted_proxy_hops: self.trusted_proxy_hops,
            trust_envoy_address: self.trust_envoy_address,
            ipv6_prefix_len: self.ipv6_prefix_len,
            routes,
            global,
            allowed_headers: self.allowed_response_headers,
            table,
            table_prefix,
            table_sets: self.table.sets,
            table_ways: self.table.ways,
        })
    }
}
