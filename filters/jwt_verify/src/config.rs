//! Plugin configuration (names follow Envoy's `jwt_authn`) and its compilation into a
//! ready [`Policy`]: keys parsed, routes compiled, every problem reported with its JSON path.

use crate::jwk::{parse_jwks, KeySet};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::config::{index, is_header_name, join, ConfigErrors, Validator};
use shared::pathmatch::RouteMatch;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// The whole plugin configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Token issuers by name. At least one is required.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// First match wins. Absent: one rule `{"prefix": "/"}` requiring any provider.
    #[serde(default)]
    pub rules: Option<Vec<RuleConfig>>,
    /// Verification cache shared by all workers.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Longest token accepted, in bytes (default 16384).
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
}

fn default_max_token_bytes() -> usize {
    16384
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Required `iss` value (exact match).
    pub issuer: String,
    /// When non-empty, the token's `aud` (string or array) must contain one of these.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Inline JWK Set `{"keys": [...]}`. Exactly one of `local_jwks` / `remote_jwks`.
    #[serde(default)]
    pub local_jwks: Option<Value>,
    #[serde(default)]
    pub remote_jwks: Option<RemoteJwksConfig>,
    /// Headers carrying the token. Default (when no source is set):
    /// `[{"name": "authorization", "value_prefix": "Bearer "}]`.
    #[serde(default)]
    pub from_headers: Option<Vec<HeaderSourceConfig>>,
    /// Cookie names carrying the token.
    #[serde(default)]
    pub from_cookies: Vec<String>,
    /// Query parameter names carrying the token.
    #[serde(default)]
    pub from_params: Vec<String>,
    /// Tolerance applied to `exp`, `nbf` and `iat` (default 60, at most 600).
    #[serde(default = "default_skew")]
    pub clock_skew_s: u64,
    /// Claims copied into request headers for upstream (client-sent copies always removed).
    #[serde(default)]
    pub claim_to_headers: Vec<ClaimToHeaderConfig>,
    /// Keep the token in the request sent upstream (default false: removed).
    #[serde(default)]
    pub forward: bool,
    /// Reject tokens whose `exp - iat` exceeds this (then `iat` is required).
    #[serde(default)]
    pub max_lifetime_s: Option<u64>,
    /// Expected JOSE `typ` (for example `at+jwt`), compared case-insensitively with an
    /// optional `application/` prefix (RFC 7515 section 4.1.9).
    #[serde(default)]
    pub typ: Option<String>,
    /// Claim name (or dotted path) to exact value; an array claim must contain the value.
    #[serde(default)]
    pub required_claims: BTreeMap<String, Value>,
    /// Refuse tokens without a string `jti`.
    #[serde(default)]
    pub require_jti: bool,
    /// Revoked `jti` values.
    #[serde(default)]
    pub revoked_jtis: Vec<String>,
    /// A JSON array of revoked `jti` values fetched from a cluster.
    #[serde(default)]
    pub remote_revocations: Option<RemoteListConfig>,
}

fn default_skew() -> u64 {
    60
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteJwksConfig {
    /// Envoy cluster serving the JWK Set.
    pub cluster: String,
    /// `:authority` of the fetch.
    pub authority: String,
    /// `:path` of the fetch.
    pub path: String,
    /// Refresh period (default 300).
    #[serde(default = "default_cache_duration")]
    pub cache_duration_s: u64,
    /// Fetch timeout (default 2000).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u32,
    /// A token with an unknown `kid` triggers an early refresh at most this often (default 30).
    #[serde(default = "default_unknown_kid_refresh")]
    pub unknown_kid_refresh_s: u64,
}

fn default_cache_duration() -> u64 {
    300
}
fn default_timeout() -> u32 {
    2000
}
fn default_unknown_kid_refresh() -> u64 {
    30
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteListConfig {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    /// Refresh period (default 60).
    #[serde(default = "default_list_refresh")]
    pub refresh_s: u64,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u32,
}

fn default_list_refresh() -> u64 {
    60
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderSourceConfig {
    pub name: String,
    /// Text before the token, matched ASCII case-insensitively (default empty).
    #[serde(default)]
    pub value_prefix: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimToHeaderConfig {
    /// Claim name or dotted path.
    pub claim: String,
    pub header: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Path prefix (on the normalized path). Exactly one of `prefix` / `path`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Path template (`/orders/{id}`, trailing `**`).
    #[serde(default)]
    pub path: Option<String>,
    /// Methods the rule applies to (default any).
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// A provider name, or a list of names (any one of them). Absent: any provider.
    #[serde(default)]
    pub requires: Option<Requires>,
    /// Let requests without any token through as anonymous (a present token is still verified).
    #[serde(default)]
    pub allow_missing: bool,
}

/// `"main"` or `["main", "partner"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Requires {
    One(String),
    Any(Vec<String>),
}

impl<'de> Deserialize<'de> for Requires {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Requires;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a provider name or a list of provider names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Requires, E> {
                Ok(Requires::One(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Requires, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Requires::Any(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Cache verified tokens in shared data (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Number of shared-data keys (default 2048).
    #[serde(default = "default_sets")]
    pub sets: u32,
    /// Entries per key (default 2). Capacity is `sets x ways` tokens.
    #[serde(default = "default_ways")]
    pub ways: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { enabled: true, sets: default_sets(), ways: default_ways() }
    }
}

fn yes() -> bool {
    true
}
fn default_sets() -> u32 {
    2048
}
fn default_ways() -> usize {
    2
}

// ---------------------------------------------------------------------------------------
// Compiled form.

/// Where a token may be found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    Header { name: String, prefix: String },
    Cookie(String),
    Param(String),
}

/// What a remote fetch brings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteKind {
    Jwks,
    Revocations,
}

/// A document fetched from a cluster and kept fresh by the root context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    pub kind: RemoteKind,
    pub provider: usize,
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub refresh_s: u64,
    pub timeout_ms: u32,
    /// Minimum time between two early refreshes (unknown `kid`); JWKS only.
    pub early_refresh_s: u64,
    /// Shared-data key prefix for this document, derived from what is fetched.
    pub shared_key: String,
}

#[derive(Debug, Clone)]
pub enum Keys {
    Local(KeySet),
    /// Index into [`Policy::remotes`].
    Remote(usize),
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub keys: Keys,
    /// Indices into [`Policy::sources`].
    pub sources: Vec<usize>,
    pub clock_skew_s: u64,
    /// `(claim, header)`.
    pub claim_to_headers: Vec<(String, String)>,
    pub forward: bool,
    pub max_lifetime_s: Option<u64>,
    /// Lower-case, without `application/`.
    pub typ: Option<String>,
    pub required_claims: Vec<(String, Value)>,
    pub require_jti: bool,
    pub revoked: HashSet<String>,
    /// Index into [`Policy::remotes`].
    pub revocations: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub route: RouteMatch,
    /// Provider indices; any one of them verifies the token.
    pub providers: Vec<usize>,
    pub allow_missing: bool,
    /// The token sources of those providers (indices into [`Policy::sources`]), computed once.
    pub sources: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct CacheSpec {
    pub sets: u32,
    pub ways: usize,
}

/// The compiled configuration, shared read-only by every stream.
#[derive(Debug, Clone)]
pub struct Policy {
    pub providers: Vec<Provider>,
    /// Issuer to the providers that have it (provider chosen before any signature check).
    pub by_issuer: HashMap<String, Vec<usize>>,
    pub rules: Vec<Rule>,
    pub sources: Vec<Source>,
    /// Every `claim_to_headers` header name of every provider: always removed from requests.
    pub claim_headers: Vec<String>,
    pub cache: Option<CacheSpec>,
    pub max_token_bytes: usize,
    pub remotes: Vec<RemoteSpec>,
    /// Hash of the whole configuration; cache records of another configuration never match.
    pub config_hash: [u8; 8],
}

/// Headers a claim may never be written to: they change how the request is routed or framed,
/// or carry credentials.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "proxy-authorization",
    "cookie",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "keep-alive",
    "expect",
    "x-request-id",
];

fn provider_name_ok(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn token_name_ok(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~!$'()*+,:@".contains(&b))
}

fn remote_ok(cluster: &str, authority: &str, path: &str, timeout_ms: u32, at: &str, v: &mut Validator) {
    v.check(!cluster.is_empty(), join(at, "cluster"), "must name an Envoy cluster");
    v.check(!authority.is_empty() && !authority.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()), join(at, "authority"), "must be a host name");
    v.check(path.starts_with('/') && !path.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()), join(at, "path"), "must start with '/' and contain no spaces");
    v.check((1..=60_000).contains(&timeout_ms), join(at, "timeout_ms"), "must be between 1 and 60000");
}

fn shared_key(kind: &str, cluster: &str, authority: &str, path: &str) -> String {
    let d = shared::hash::sha256(format!("{cluster}\0{authority}\0{path}").as_bytes());
    format!("edgesec.jwt_verify.{kind}.{}", shared::hash::hex(d.get(..8).unwrap_or(&d)))
}

/// Normalize a `typ` value for comparison (RFC 7515 section 4.1.9).
pub fn normalize_typ(t: &str) -> String {
    let l = t.to_ascii_lowercase();
    match l.strip_prefix("application/") {
        Some(rest) => rest.to_string(),
        None => l,
    }
}

impl Config {
    /// Validate and compile. Every problem is reported with its JSON path.
    pub fn compile(self) -> Result<Policy, ConfigErrors> {
        let mut v = Validator::new();
        let config_hash = {
            let bytes = serde_json::to_vec(&self).unwrap_or_default();
            let d = shared::hash::sha256(&bytes);
            let mut h = [0u8; 8];
            for (o, i) in h.iter_mut().zip(d.iter()) {
                *o = *i;
            }
            h
        };
        v.check(!self.providers.is_empty(), "providers", "at least one provider is required (a JWT filter cannot verify without keys)");
        v.check((256..=65536).contains(&self.max_token_bytes), "max_token_bytes", "must be between 256 and 65536");
        v.check((1..=65536).contains(&self.cache.sets), "cache.sets", "must be between 1 and 65536");
        v.check((1..=16).contains(&self.cache.ways), "cache.ways", "must be between 1 and 16");

        let mut sources: Vec<Source> = Vec::new();
        let mut providers = Vec::new();
        let mut remotes = Vec::new();
        let mut by_issuer: HashMap<String, Vec<usize>> = HashMap::new();
        let mut claim_headers: Vec<String> = Vec::new();
        let names: Vec<String> = self.providers.keys().cloned().collect();

        for (pi, (name, p)) in self.providers.iter().enumerate() {
            let at = format!("providers.{name}");
            v.check(provider_name_ok(name), &at, "provider names use letters, digits, '-', '_' and '.' (at most 64)");
            v.check(!p.issuer.is_empty(), join(&at, "issuer"), "must not be empty");
            for (i, a) in p.audiences.iter().enumerate() {
                v.check(!a.is_empty(), index(&join(&at, "audiences"), i), "must not be empty");
            }
            let keys = match (&p.local_jwks, &p.remote_jwks) {
                (Some(local), None) => {
                    let kat = join(&at, "local_jwks");
                    match parse_jwks(local, true) {
                        Ok((set, problems)) => {
                            for pr in &problems {
                                v.error(join(&kat, &pr.path), pr.message.clone());
                            }
                            if set.is_empty() && problems.is_empty() {
                                v.error(join(&kat, "keys"), "must hold at least one key");
                            }
                            Keys::Local(set)
                        }
                        Err(pr) => {
                            v.error(join(&kat, &pr.path), pr.message);
                            Keys::Local(KeySet::default())
                        }
                    }
                }
                (None, Some(r)) => {
                    let rat = join(&at, "remote_jwks");
                    remote_ok(&r.cluster, &r.authority, &r.path, r.timeout_ms, &rat, &mut v);
                    v.check((1..=604_800).contains(&r.cache_duration_s), join(&rat, "cache_duration_s"), "must be between 1 and 604800");
                    v.check((1..=86_400).contains(&r.unknown_kid_refresh_s), join(&rat, "unknown_kid_refresh_s"), "must be between 1 and 86400");
                    remotes.push(RemoteSpec {
                        kind: RemoteKind::Jwks,
                        provider: pi,
                        cluster: r.cluster.clone(),
                        authority: r.authority.clone(),
                        path: r.path.clone(),
                        refresh_s: r.cache_duration_s,
                        timeout_ms: r.timeout_ms,
                        early_refresh_s: r.unknown_kid_refresh_s,
                        shared_key: shared_key("jwks", &r.cluster, &r.authority, &r.path),
                    });
                    Keys::Remote(remotes.len() - 1)
                }
                (Some(_), Some(_)) => {
                    v.error(&at, "set exactly one of 'local_jwks' and 'remote_jwks', not both");
                    Keys::Local(KeySet::default())
                }
                (None, None) => {
                    v.error(&at, "one of 'local_jwks' or 'remote_jwks' is required");
                    Keys::Local(KeySet::default())
                }
            };

            // Token sources.
            let mut mine: Vec<Source> = Vec::new();
            let no_source = p.from_headers.is_none() && p.from_cookies.is_empty() && p.from_params.is_empty();
            if no_source {
                mine.push(Source::Header { name: "authorization".into(), prefix: "Bearer ".into() });
            }
            for (i, h) in p.from_headers.iter().flatten().enumerate() {
                let hat = index(&join(&at, "from_headers"), i);
                v.check(is_header_name(&h.name), join(&hat, "name"), format!("'{}' is not a lower-case header name", h.name));
                v.check(!h.value_prefix.bytes().any(|b| b.is_ascii_control()), join(&hat, "value_prefix"), "must not contain control characters");
                mine.push(Source::Header { name: h.name.clone(), prefix: h.value_prefix.clone() });
            }
            for (i, c) in p.from_cookies.iter().enumerate() {
                v.check(token_name_ok(c), index(&join(&at, "from_cookies"), i), format!("'{c}' is not a cookie name"));
                mine.push(Source::Cookie(c.clone()));
            }
            for (i, q) in p.from_params.iter().enumerate() {
                v.check(token_name_ok(q), index(&join(&at, "from_params"), i), format!("'{q}' is not a plain query parameter name"));
                mine.push(Source::Param(q.clone()));
            }
            if mine.is_empty() {
                v.error(join(&at, "from_headers"), "no token source: set from_headers, from_cookies or from_params");
            }
            let mut seen = HashSet::new();
            let mut src_idx = Vec::new();
            for s in mine {
                if !seen.insert(s.clone()) {
                    v.error(&at, "a token source is listed twice");
                    continue;
                }
                // The same header with two prefixes would read one value two ways.
                if let Source::Header { name, .. } = &s {
                    let clash = src_idx.iter().any(|&j: &usize| matches!(sources.get(j), Some(Source::Header { name: n, .. }) if n == name));
                    v.check(!clash, join(&at, "from_headers"), format!("header '{name}' is listed twice"));
                }
                let idx = match sources.iter().position(|x| *x == s) {
                    Some(i) => i,
                    None => {
                        sources.push(s);
                        sources.len() - 1
                    }
                };
                src_idx.push(idx);
            }

            v.check(p.clock_skew_s <= 600, join(&at, "clock_skew_s"), "must be at most 600");
            let mut my_headers = HashSet::new();
            for (i, c) in p.claim_to_headers.iter().enumerate() {
                let cat = index(&join(&at, "claim_to_headers"), i);
                v.check(!c.claim.is_empty(), join(&cat, "claim"), "must not be empty");
                let ok = is_header_name(&c.header) && !RESERVED_HEADERS.contains(&c.header.as_str());
                v.check(ok, join(&cat, "header"), format!("'{}' is not a lower-case header name a claim may be written to", c.header));
                v.check(my_headers.insert(c.header.clone()), join(&cat, "header"), format!("'{}' is set twice", c.header));
                if !claim_headers.contains(&c.header) {
                    claim_headers.push(c.header.clone());
                }
            }
            if let Some(m) = p.max_lifetime_s {
                v.check(m >= 1, join(&at, "max_lifetime_s"), "must be at least 1");
            }
            if let Some(t) = &p.typ {
                v.check(!t.is_empty() && t.is_ascii(), join(&at, "typ"), "must be a non-empty ASCII media type");
            }
            let mut required = Vec::new();
            for (k, val) in &p.required_claims {
                let cat = join(&join(&at, "required_claims"), k);
                v.check(!k.is_empty(), &cat, "claim names must not be empty");
                let scalar = matches!(val, Value::String(_) | Value::Bool(_) | Value::Number(_));
                v.check(scalar, &cat, "the expected value must be a string, number or boolean");
                required.push((k.clone(), val.clone()));
            }
            for (i, j) in p.revoked_jtis.iter().enumerate() {
                v.check(!j.is_empty(), index(&join(&at, "revoked_jtis"), i), "must not be empty");
            }
            let revocations = p.remote_revocations.as_ref().map(|r| {
                let rat = join(&at, "remote_revocations");
                remote_ok(&r.cluster, &r.authority, &r.path, r.timeout_ms, &rat, &mut v);
                v.check((1..=86_400).contains(&r.refresh_s), join(&rat, "refresh_s"), "must be between 1 and 86400");
                remotes.push(RemoteSpec {
                    kind: RemoteKind::Revocations,
                    provider: pi,
                    cluster: r.cluster.clone(),
                    authority: r.authority.clone(),
                    path: r.path.clone(),
                    refresh_s: r.refresh_s,
                    timeout_ms: r.timeout_ms,
                    early_refresh_s: 0,
                    shared_key: shared_key("revoked", &r.cluster, &r.authority, &r.path),
                });
                remotes.len() - 1
            });
            by_issuer.entry(p.issuer.clone()).or_default().push(pi);
            providers.push(Provider {
                name: name.clone(),
                issuer: p.issuer.clone(),
                audiences: p.audiences.clone(),
                keys,
                sources: src_idx,
                clock_skew_s: p.clock_skew_s,
                claim_to_headers: p.claim_to_headers.iter().map(|c| (c.claim.clone(), c.header.clone())).collect(),
                forward: p.forward,
                max_lifetime_s: p.max_lifetime_s,
                typ: p.typ.as_deref().map(normalize_typ),
                required_claims: required,
                require_jti: p.require_jti,
                revoked: p.revoked_jtis.iter().cloned().collect(),
                revocations,
            });
        }
        // A header that carries tokens for one provider must not be a claim header of another.
        for h in &claim_headers {
            let clash = sources.iter().any(|s| matches!(s, Source::Header { name, .. } if name == h));
            v.check(!clash, "providers", format!("'{h}' is both a token source and a claim header"));
        }

        let rules = match &self.rules {
            None => vec![Rule { route: RouteMatch::prefix("/"), providers: (0..providers.len()).collect(), allow_missing: false, sources: Vec::new() }],
            Some(list) => {
                v.check(!list.is_empty(), "rules", "an empty rule list would deny every request; omit 'rules' to require a token everywhere");
                let mut out: Vec<Rule> = Vec::new();
                let mut origin: Vec<usize> = Vec::new();
                for (i, r) in list.iter().enumerate() {
                    let at = index("rules", i);
                    let route = RouteMatch::compile(r.path.as_deref(), r.prefix.as_deref(), r.methods.as_deref(), &at, &mut v);
                    let wanted: Vec<String> = match &r.requires {
                        None => names.clone(),
                        Some(Requires::One(n)) => vec![n.clone()],
                        Some(Requires::Any(list)) => {
                            v.check(!list.is_empty(), join(&at, "requires"), "must name at least one provider");
                            list.clone()
                        }
                    };
                    let mut idx = Vec::new();
                    for n in &wanted {
                        match names.iter().position(|x| x == n) {
                            Some(p) if !idx.contains(&p) => idx.push(p),
                            Some(_) => v.error(join(&at, "requires"), format!("provider '{n}' is listed twice")),
                            None => v.error(join(&at, "requires"), format!("unknown provider '{n}'")),
                        }
                    }
                    if let Some(route) = route {
                        if let Some((e, j)) = out.iter().zip(&origin).find(|(e, _)| route.shadowed_by(&e.route)) {
                            v.error(&at, format!("never matches: rules[{j}] ({}) comes first", e.route.describe()));
                        }
                        out.push(Rule { route, providers: idx, allow_missing: r.allow_missing, sources: Vec::new() });
                        origin.push(i);
                    }
                }
                out
            }
        };

        let mut rules = rules;
        for rule in &mut rules {
            for p in rule.providers.iter().filter_map(|&i| providers.get(i)) {
                for s in &p.sources {
                    if !rule.sources.contains(s) {
                        rule.sources.push(*s);
                    }
                }
            }
        }
        let cache = self.cache.enabled.then_some(CacheSpec { sets: self.cache.sets, ways: self.cache.ways });
        v.finish(Policy {
            providers,
            by_issuer,
            rules,
            sources,
            claim_headers,
            cache,
            max_token_bytes: self.max_token_bytes,
            remotes,
            config_hash,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::jwk::tests::rsa_n;
    use serde_json::json;
    use shared::config::parse_json;

    pub fn compile(v: Value) -> Result<Policy, ConfigErrors> {
        parse_json::<Config>(v.to_string().as_bytes()).and_then(Config::compile)
    }

    fn jwks() -> Value {
        json!({"keys": [{"kty": "RSA", "n": rsa_n(2048), "e": "AQAB", "kid": "k1"}]})
    }

    #[test]
    fn issue_example_compiles() {
        let p = compile(json!({
          "providers": {
            "main": {
              "issuer": "https://issuer.example",
              "audiences": ["orders-api"],
              "local_jwks": jwks(),
              "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
              "from_cookies": ["access_token"],
              "from_params": ["access_token"],
              "clock_skew_s": 60,
              "claim_to_headers": [{"claim": "sub", "header": "x-jwt-sub"}],
              "forward": false
            },
            "idp": {
              "issuer": "https://idp.example",
              "remote_jwks": {"cluster": "idp", "authority": "idp.example", "path": "/.well-known/jwks.json",
                              "cache_duration_s": 300, "timeout_ms": 2000}
            }
          },
          "rules": [
            {"prefix": "/auth/", "allow_missing": true},
            {"prefix": "/", "requires": "main"}
          ]
        }))
        .unwrap();
        assert_eq!(p.providers.len(), 2);
        assert_eq!(p.sources.len(), 3);
        assert_eq!(p.rules[0].providers, vec![0, 1]);
        assert_eq!(p.rules[1].providers, vec![1]); // BTreeMap order: idp, main
        assert_eq!(p.rules[1].sources, vec![0, 1, 2]);
        assert_eq!(p.rules[0].sources, vec![0, 1, 2], "idp's default header is main's first source");
        assert_eq!(p.remotes.len(), 1);
        assert_eq!(p.claim_headers, vec!["x-jwt-sub".to_string()]);
        assert_eq!(p.by_issuer["https://issuer.example"], vec![1]);
        assert!(p.cache.is_some());
    }

    #[test]
    fn defaults() {
        let p = compile(json!({"providers": {"a": {"issuer": "i", "local_jwks": jwks()}}})).unwrap();
        assert_eq!(p.sources, vec![Source::Header { name: "authorization".into(), prefix: "Bearer ".into() }]);
        assert_eq!(p.rules.len(), 1);
        assert_eq!(p.providers[0].clock_skew_s, 60);
        assert!(!p.providers[0].forward);
        assert_eq!(p.max_token_bytes, 16384);
    }

    #[test]
    fn empty_config_is_refused() {
        let e = compile(json!({})).unwrap_err();
        assert!(e.has("providers"), "{e}");
        let e = parse_json::<Config>(b"").and_then(Config::compile).unwrap_err();
        assert!(e.has("providers"), "{e}");
    }

    #[test]
    fn unknown_fields_are_refused_everywhere() {
        for (cfg, path) in [
            (json!({"provider": {}}), "provider"),
            (json!({"providers": {"a": {"issuer": "i", "local_jwks": jwks(), "audience": ["x"]}}}), "providers.a.audience"),
            (json!({"providers": {"a": {"issuer": "i", "remote_jwks": {"cluster": "c", "authority": "a", "path": "/", "uri": "x"}}}}), "providers.a.remote_jwks.uri"),
            (json!({"providers": {"a": {"issuer": "i", "local_jwks": jwks(), "from_headers": [{"name": "x", "prefix": "B"}]}}}), "providers.a.from_headers[0].prefix"),
            (json!({"providers": {"a": {"issuer": "i", "local_jwks": jwks(), "claim_to_headers": [{"claim": "sub", "name": "x"}]}}}), "providers.a.claim_to_headers[0].name"),
            (json!({"providers": {"a": {"issuer": "i", "local_jwks": jwks()}}, "rules": [{"prefix": "/", "require": "a"}]}), "rules[0].require"),
            (json!({"providers": {"a": {"issuer": "i", "local_jwks": jwks()}}, "cache": {"size": 1}}), "cache.size"),
        ] {
            let e = compile(cfg).unwrap_err();
            assert!(e.has(path), "{path}: {e}");
        }
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let e = compile(json!({
          "providers": {
            "a": {"issuer": "", "local_jwks": {"keys": []}, "remote_jwks": {"cluster": "c", "authority": "a", "path": "/"}},
            "d": {"issuer": "d", "local_jwks": {"keys": [{"kty": "RSA", "n": rsa_n(1024), "e": "AQAB"}, {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA"}]}},
            "b": {"issuer": "i", "remote_jwks": {"cluster": "", "authority": "", "path": "x", "cache_duration_s": 0, "timeout_ms": 0},
                  "from_headers": [{"name": "Authorization"}], "from_cookies": ["a b"], "from_params": ["a=b"],
                  "clock_skew_s": 100000, "claim_to_headers": [{"claim": "", "header": "host"}, {"claim": "x", "header": "x-a"}, {"claim": "y", "header": "x-a"}],
                  "max_lifetime_s": 0, "typ": "", "required_claims": {"role": ["a"]}, "revoked_jtis": [""],
                  "remote_revocations": {"cluster": "c", "authority": "a", "path": "/r", "refresh_s": 0}},
            "c": {"issuer": "j"},
            "bad name": {"issuer": "k", "local_jwks": {"keys": []}}
          },
          "rules": [{"prefix": "x"}, {"prefix": "/", "requires": "nope"}, {"prefix": "/a", "requires": []}, {"path": "/b", "prefix": "/b"}],
          "cache": {"sets": 0, "ways": 100},
          "max_token_bytes": 1
        }))
        .unwrap_err();
        for path in [
            "providers.a.issuer",
            "providers.a",
            "providers.d.local_jwks.keys[0].n",
            "providers.d.local_jwks.keys[1].d",
            "providers.b.remote_jwks.cluster",
            "providers.b.remote_jwks.authority",
            "providers.b.remote_jwks.path",
            "providers.b.remote_jwks.cache_duration_s",
            "providers.b.remote_jwks.timeout_ms",
            "providers.b.from_headers[0].name",
            "providers.b.from_cookies[0]",
            "providers.b.from_params[0]",
            "providers.b.clock_skew_s",
            "providers.b.claim_to_headers[0].claim",
            "providers.b.claim_to_headers[0].header",
            "providers.b.claim_to_headers[2].header",
            "providers.b.max_lifetime_s",
            "providers.b.typ",
            "providers.b.required_claims.role",
            "providers.b.revoked_jtis[0]",
            "providers.b.remote_revocations.refresh_s",
            "providers.c",
            "providers.bad name",
            "providers.bad name.local_jwks.keys",
            "rules[0].prefix",
            "rules[1].requires",
            "rules[2].requires",
            "rules[3]",
            "cache.sets",
            "cache.ways",
            "max_token_bytes",
        ] {
            assert!(e.has(path), "missing {path}: {e}");
        }
    }

    #[test]
    fn rule_problems() {
        let base = |rules: Value| compile(json!({"providers": {"a": {"issuer": "i", "local_jwks": jwks()}}, "rules": rules}));
        assert!(base(json!([])).unwrap_err().has("rules"));
        let e = base(json!([{"prefix": "/"}, {"prefix": "/api/"}])).unwrap_err();
        assert!(e.has("rules[1]"), "{e}");
        let e = base(json!([{"prefix": "/", "requires": ["a", "a"]}])).unwrap_err();
        assert!(e.has("rules[0].requires"), "{e}");
        let e = base(json!([{"prefix": "/", "requires": 5}])).unwrap_err();
        assert!(e.0[0].message.contains("provider name"), "{e}");
        let p = base(json!([{"path": "/orders/{id}", "methods": ["GET"], "requires": ["a"]}, {"prefix": "/", "allow_missing": true}])).unwrap();
        assert_eq!(p.rules.len(), 2);
        assert!(p.rules[1].allow_missing);
    }

    #[test]
    fn token_header_cannot_be_a_claim_header() {
        let e = compile(json!({"providers": {
            "a": {"issuer": "i", "local_jwks": jwks(), "from_headers": [{"name": "x-token"}]},
            "b": {"issuer": "j", "local_jwks": jwks(), "claim_to_headers": [{"claim": "sub", "header": "x-token"}]}
        }}))
        .unwrap_err();
        assert!(e.has("providers"), "{e}");
    }

    #[test]
    fn config_hash_changes_with_config() {
        let a = compile(json!({"providers": {"a": {"issuer": "i", "local_jwks": jwks()}}})).unwrap();
        let b = compile(json!({"providers": {"a": {"issuer": "i", "local_jwks": jwks(), "audiences": ["x"]}}})).unwrap();
        let a2 = compile(json!({"providers": {"a": {"issuer": "i", "local_jwks": jwks()}}})).unwrap();
        assert_ne!(a.config_hash, b.config_hash);
        assert_eq!(a.config_hash, a2.config_hash);
    }

    #[test]
    fn typ_normalization() {
        assert_eq!(normalize_typ("application/AT+JWT"), "at+jwt");
        assert_eq!(normalize_typ("JWT"), "jwt");
    }
}
