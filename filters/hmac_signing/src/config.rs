//! Configuration of hmac_signing: JSON types (every field documented in README.md) and
//! their compilation into a ready [`Policy`]. Every problem is reported with its JSON path.
//! Secrets named by `secret_env` are read from the VM environment here, once.

use crate::components::ComponentId;
use crate::policy::{ApiKey, ApiKeys, HmacKey, Policy, ReplayCache, Require, ResponseSigning, Rule};
use crate::secret::Secret;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde::Deserialize;
use shared::config::{is_header_name, ConfigErrors, Validator};
use shared::pathmatch::RouteMatch;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HMAC keys by key id (the `keyid` signature parameter).
    #[serde(default)]
    pub keys: BTreeMap<String, KeyConfig>,
    /// Components every signature must cover.
    #[serde(default = "default_required")]
    pub required_components: Vec<String>,
    /// Oldest accepted `created`, in seconds before now.
    #[serde(default = "default_max_age")]
    pub max_age_s: u64,
    /// Tolerated clock difference with signers, in seconds.
    #[serde(default = "default_skew")]
    pub clock_skew_s: u64,
    /// Refuse signatures without a `nonce` parameter.
    #[serde(default)]
    pub require_nonce: bool,
    /// A signed request with a non-empty body must cover a `content-digest` that matches it.
    #[serde(default = "yes")]
    pub require_content_digest: bool,
    /// Largest body buffered to check a `content-digest` (413 beyond).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    #[serde(default)]
    pub api_keys: Option<ApiKeysConfig>,
    /// First match wins; a request no rule matches is refused. Default: everything requires
    /// a signature or an API key.
    #[serde(default)]
    pub rules: Option<Vec<RuleConfig>>,
    #[serde(default)]
    pub replay_cache: ReplayCacheConfig,
    #[serde(default)]
    pub response_signing: Option<ResponseSigningConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The secret, base64 (standard alphabet).
    #[serde(default)]
    pub secret_base64: Option<String>,
    /// Name of a VM environment variable holding the secret, base64.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Scopes granted to requests signed with this key.
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeysConfig {
    /// Request header carrying the key.
    #[serde(default = "default_api_key_header")]
    pub header: String,
    /// Keys by the lower-case hex SHA-256 of their value.
    #[serde(default)]
    pub sha256: BTreeMap<String, ApiKeyConfig>,
    /// Forward the key header to the upstream (default: removed).
    #[serde(default)]
    pub forward: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    pub id: String,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    #[serde(default)]
    pub prefix: Option<String>,
    /// A path template (`/orders/{id}`, `/files/**`) instead of a prefix.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    pub require: Require,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayCacheConfig {
    #[serde(default = "default_sets")]
    pub sets: u32,
    #[serde(default = "default_ways")]
    pub ways: u32,
}

impl Default for ReplayCacheConfig {
    fn default() -> Self {
        Self { sets: default_sets(), ways: default_ways() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseSigningConfig {
    pub keyid: String,
    #[serde(default)]
    pub secret_base64: Option<String>,
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(default = "default_label")]
    pub label: String,
    #[serde(default = "default_response_components")]
    pub components: Vec<String>,
}

fn yes() -> bool {
    true
}
fn default_required() -> Vec<String> {
    vec!["@method".into(), "@target-uri".into()]
}
fn default_max_age() -> u64 {
    300
}
fn default_skew() -> u64 {
    30
}
fn default_max_body() -> u64 {
    1024 * 1024
}
fn default_api_key_header() -> String {
    "x-api-key".into()
}
fn default_sets() -> u32 {
    4096
}
fn default_ways() -> u32 {
    8
}
fn default_label() -> String {
    "sig1".into()
}
fn default_response_components() -> Vec<String> {
    vec!["@status".into(), "content-type".into(), "content-digest".into()]
}

/// Shortest accepted HMAC key: 256 bits, the output size of SHA-256 (RFC 2104 section 3).
pub const MIN_SECRET_BYTES: usize = 32;
/// Upper bound of `max_age_s` (about 31 years: enough to replay the RFC's 2021 test vectors).
pub const MAX_AGE_LIMIT: u64 = 1_000_000_000;
pub const MAX_BODY_LIMIT: u64 = 64 * 1024 * 1024;
/// Headers this filter reads for signatures; they cannot carry API keys.
const SIGNATURE_HEADERS: &[&str] = &["signature", "signature-input", "content-digest"];

const B64: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent));

/// Where `secret_env` values come from: the VM environment, or a map in tests.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn secret(b64: Option<&str>, env_name: Option<&str>, at: &str, env: EnvLookup<'_>, v: &mut Validator) -> Option<Secret> {
    let (encoded, from) = match (b64, env_name) {
        (Some(s), None) => (s.to_string(), "secret_base64".to_string()),
        (None, Some(name)) => {
            let from = format!("secret_env ({name})");
            if name.is_empty() {
                v.error(format!("{at}.secret_env"), "must name an environment variable");
                return None;
            }
            match env(name) {
                Some(s) => (s, from),
                None => {
                    v.error(format!("{at}.secret_env"), format!("environment variable '{name}' is not set in the VM (vm_config.environment_variables)"));
                    return None;
                }
            }
        }
        (Some(_), Some(_)) => {
            v.error(at, "set one of 'secret_base64' and 'secret_env', not both");
            return None;
        }
        (None, None) => {
            v.error(at, "one of 'secret_base64' or 'secret_env' is required");
            return None;
        }
    };
    let field = if from.starts_with("secret_env") { "secret_env" } else { "secret_base64" };
    match B64.decode(encoded.trim().as_bytes()) {
        Ok(bytes) if bytes.len() >= MIN_SECRET_BYTES => Some(Secret::new(bytes)),
        Ok(bytes) => {
            v.error(format!("{at}.{field}"), format!("the secret from {from} is {} bytes; at least {MIN_SECRET_BYTES} are required", bytes.len()));
            None
        }
        // Never echo the value: it is a secret.
        Err(_) => {
            v.error(format!("{at}.{field}"), format!("the secret from {from} is not valid base64"));
            None
        }
    }
}

fn check_id(id: &str, at: &str, what: &str, v: &mut Validator) {
    v.check(!id.is_empty() && id.len() <= 256 && id.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\'), at, format!("{what} must be 1-256 visible ASCII characters without quotes or backslashes"));
}

fn check_scopes(scopes: &[String], at: &str, v: &mut Validator) {
    for (i, s) in scopes.iter().enumerate() {
        v.check(!s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b)), format!("{at}.scopes[{i}]"), "a scope must be non-empty visible ASCII without spaces");
    }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        let pair = s.get(i * 2..i * 2 + 2)?;
        *slot = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

impl Config {
    /// Compile with secrets from the process environment (in Envoy: the VM's
    /// `environment_variables`).
    pub fn compile(self) -> Result<Policy, ConfigErrors> {
        self.compile_with_env(&|name| std::env::var(name).ok())
    }

    pub fn compile_with_env(self, env: EnvLookup<'_>) -> Result<Policy, ConfigErrors> {
        let mut v = Validator::new();

        let mut keys = BTreeMap::new();
        for (keyid, k) in &self.keys {
            let at = format!("keys.{keyid}");
            check_id(keyid, &at, "a key id", &mut v);
            check_scopes(&k.scopes, &at, &mut v);
            if let Some(s) = secret(k.secret_base64.as_deref(), k.secret_env.as_deref(), &at, env, &mut v) {
                keys.insert(keyid.clone(), HmacKey { secret: s, scopes: k.scopes.clone() });
            }
        }

        let mut required_components: Vec<ComponentId> = Vec::new();
        for (i, c) in self.required_components.iter().enumerate() {
            let at = format!("required_components[{i}]");
            match ComponentId::parse_config(c) {
                Ok(id) => {
                    if id.check_supported().is_err() {
                        v.error(&at, format!("'{c}' is not a component this filter can verify (derived: @method, @target-uri, @authority, @scheme, @request-target, @path, @query, \"@query-param\";name=\"...\"; or a header name, with ;sf/;key only on dictionary fields)"));
                    } else if required_components.iter().any(|r| r.same(&id)) {
                        v.error(&at, format!("'{c}' is listed twice"));
                    } else {
                        required_components.push(id);
                    }
                }
                Err(e) => v.error(&at, e),
            }
        }

        v.check(self.max_age_s > 0 && self.max_age_s <= MAX_AGE_LIMIT, "max_age_s", format!("must be between 1 and {MAX_AGE_LIMIT}"));
        v.check(self.clock_skew_s <= 600, "clock_skew_s", "must be at most 600");
        v.check(self.max_body_bytes > 0 && self.max_body_bytes <= MAX_BODY_LIMIT, "max_body_bytes", format!("must be between 1 and {MAX_BODY_LIMIT}"));

        let api_keys = self.api_keys.as_ref().map(|a| {
            let header = a.header.to_string();
            v.check(is_header_name(&header) && !header.starts_with(':'), "api_keys.header", "not a lower-case header name");
            v.check(!SIGNATURE_HEADERS.contains(&header.as_str()), "api_keys.header", "this header carries signatures");
            v.check(!a.sha256.is_empty(), "api_keys.sha256", "at least one key hash is required");
            let mut list: Vec<ApiKey> = Vec::new();
            for (hex, entry) in &a.sha256 {
                let at = format!("api_keys.sha256.{hex}");
                check_id(&entry.id, &format!("{at}.id"), "an API key id", &mut v);
                check_scopes(&entry.scopes, &at, &mut v);
                match parse_hex32(hex) {
                    Some(h) if list.iter().any(|k| k.sha256 == h) => v.error(&at, "the same hash is listed twice"),
                    Some(h) => list.push(ApiKey { sha256: h, id: entry.id.clone(), scopes: entry.scopes.clone() }),
                    None => v.error(&at, "not the 64 hex digits of a SHA-256 (hash the key: printf %s KEY | sha256sum)"),
                }
            }
            ApiKeys { header, keys: list, forward: a.forward }
        });

        if self.keys.is_empty() && self.api_keys.is_none() {
            v.error(".", "configure at least one signing key ('keys') or API key ('api_keys'): without credentials this filter can only refuse every request, so it has no default");
        }

        let rule_configs = self.rules.unwrap_or_else(|| vec![RuleConfig { prefix: Some("/".into()), path: None, methods: None, require: Require::Any }]);
        v.check(!rule_configs.is_empty(), "rules", "at least one rule is required (a request no rule matches is refused)");
        let mut rules: Vec<Rule> = Vec::new();
        for (i, r) in rule_configs.iter().enumerate() {
            let at = format!("rules[{i}]");
            match r.require {
                Require::Signature => v.check(!self.keys.is_empty(), format!("{at}.require"), "'signature' needs at least one key in 'keys'"),
                Require::ApiKey => v.check(self.api_keys.is_some(), format!("{at}.require"), "'api_key' needs 'api_keys'"),
                Require::Any | Require::None => {}
            }
            if let Some(route) = RouteMatch::compile(r.path.as_deref(), r.prefix.as_deref(), r.methods.as_deref(), &at, &mut v) {
                if let Some(j) = rules.iter().position(|earlier| route.shadowed_by(&earlier.route)) {
                    v.error(&at, format!("never used: rules[{j}] ({}) matches every request this rule matches", rules.get(j).map(|e| e.route.describe()).unwrap_or_default()));
                }
                rules.push(Rule { route, require: r.require });
            }
        }

        let rc = &self.replay_cache;
        v.check((1..=65_536).contains(&rc.sets), "replay_cache.sets", "must be between 1 and 65536");
        v.check((1..=64).contains(&rc.ways), "replay_cache.ways", "must be between 1 and 64");

        let response_signing = self.response_signing.as_ref().and_then(|r| {
            let at = "response_signing";
            check_id(&r.keyid, &format!("{at}.keyid"), "a key id", &mut v);
            let label_ok = r.label.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'*')
                && r.label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b));
            v.check(label_ok, format!("{at}.label"), "a label must be a structured-field key (lower-case letters, digits, _ - . *)");
            let mut components: Vec<ComponentId> = Vec::new();
            for (i, c) in r.components.iter().enumerate() {
                let cat = format!("{at}.components[{i}]");
                let ok = c == "@status" || (is_header_name(c) && !matches!(c.as_str(), "signature" | "signature-input"));
                if !ok {
                    v.error(&cat, "expected '@status' or a lower-case response header name");
                } else if components.iter().any(|x| x.name == *c) {
                    v.error(&cat, format!("'{c}' is listed twice"));
                } else {
                    components.push(ComponentId::new(c));
                }
            }
            v.check(!r.components.is_empty(), format!("{at}.components"), "at least one component is required");
            let s = secret(r.secret_base64.as_deref(), r.secret_env.as_deref(), at, env, &mut v)?;
            Some(ResponseSigning { keyid: r.keyid.clone(), secret: s, label: r.label.clone(), components })
        });

        v.finish(Policy {
            keys,
            required_components,
            max_age_s: self.max_age_s,
            clock_skew_s: self.clock_skew_s,
            require_nonce: self.require_nonce,
            require_content_digest: self.require_content_digest,
            max_body_bytes: self.max_body_bytes,
            api_keys,
            rules,
            replay_cache: ReplayCache { sets: rc.sets, ways: usize::try_from(rc.ways).unwrap_or(8) },
            response_signing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::config::parse_json;

    const SECRET_B64: &str = "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";

    fn compile_env(json: &str, env: &[(&str, &str)]) -> Result<Policy, ConfigErrors> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        parse_json::<Config>(json.as_bytes()).and_then(|c| c.compile_with_env(&|n| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())))
    }

    fn compile(json: &str) -> Result<Policy, ConfigErrors> {
        compile_env(json, &[])
    }

    #[test]
    fn issue_example_compiles() {
        let sha = shared::hash::hex(&shared::hash::sha256(b"reporting-key"));
        let json = format!(
            r#"{{
              "keys": {{
                "partner-a": {{"secret_base64": "{SECRET_B64}", "scopes": ["orders:write"]}},
                "partner-b": {{"secret_env": "PARTNER_B_SECRET", "scopes": ["orders:read"]}}
              }},
              "required_components": ["@method", "@target-uri", "content-digest"],
              "max_age_s": 300,
              "clock_skew_s": 30,
              "require_nonce": false,
              "require_content_digest": true,
              "api_keys": {{
                "header": "x-api-key",
                "sha256": {{"{sha}": {{"id": "reporting", "scopes": ["orders:read"]}}}}
              }},
              "rules": [
                {{"prefix": "/webhooks/", "require": "signature"}},
                {{"prefix": "/reports/", "require": "api_key"}},
                {{"prefix": "/", "require": "any"}}
              ]
            }}"#
        );
        let p = compile_env(&json, &[("PARTNER_B_SECRET", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")]).unwrap();
        assert_eq!(p.keys.len(), 2);
        assert_eq!(p.keys["partner-b"].secret.expose(), b"0123456789abcdef0123456789abcdef");
        assert_eq!(p.keys["partner-a"].scopes, vec!["orders:write"]);
        assert_eq!(p.required_components.len(), 3);
        assert_eq!(p.rules.len(), 3);
        let a = p.api_keys.as_ref().unwrap();
        assert_eq!(a.keys[0].id, "reporting");
        assert!(!a.forward);
        // The debug form of the whole policy never shows a secret.
        let dbg = format!("{p:?}");
        assert!(!dbg.contains("uzvJ") && !dbg.contains("187, 59"), "{dbg}");
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn defaults() {
        let p = compile(&format!(r#"{{"keys": {{"k": {{"secret_base64": "{SECRET_B64}"}}}}}}"#)).unwrap();
        assert_eq!(p.max_age_s, 300);
        assert_eq!(p.clock_skew_s, 30);
        assert!(!p.require_nonce);
        assert!(p.require_content_digest);
        assert_eq!(p.max_body_bytes, 1 << 20);
        assert_eq!(p.required_components.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), vec!["@method", "@target-uri"]);
        assert_eq!(p.rules.len(), 1);
        assert_eq!(p.rules[0].require, Require::Any);
        assert_eq!((p.replay_cache.sets, p.replay_cache.ways), (4096, 8));
        assert!(p.response_signing.is_none());
    }

    #[test]
    fn empty_config_is_refused_with_a_reason() {
        let e = compile("").unwrap_err();
        assert!(e.has("."), "{e}");
        assert!(e.to_string().contains("at least one signing key"));
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let e = compile_env(
            r#"{
              "keys": {
                "short": {"secret_base64": "c2hvcnQ="},
                "both": {"secret_base64": "AAAA", "secret_env": "X"},
                "none": {},
                "notb64": {"secret_base64": "!!!not base64!!!"},
                "unset": {"secret_env": "NOT_SET"},
                "bad\"id": {"secret_env": "GOOD", "scopes": ["a b"]}
              },
              "required_components": ["@status", "Content-Type", "@method", "@method", "\"x\";bs", "\"content-digest\";sf"],
              "max_age_s": 0,
              "clock_skew_s": 9999,
              "max_body_bytes": 0,
              "api_keys": {"header": "X Bad", "sha256": {"abc": {"id": ""}, "AA": {"id": "x"}}},
              "rules": [
                {"prefix": "nope", "require": "any"},
                {"prefix": "/", "path": "/x", "require": "any"},
                {"prefix": "/a/", "require": "signature"},
                {"prefix": "/a/b", "require": "api_key"}
              ],
              "replay_cache": {"sets": 0, "ways": 65},
              "response_signing": {"keyid": "", "label": "Bad", "components": ["@method", "X"]}
            }"#,
            &[("GOOD", SECRET_B64)],
        )
        .unwrap_err();
        for path in [
            "keys.short.secret_base64",
            "keys.both",
            "keys.none",
            "keys.notb64.secret_base64",
            "keys.unset.secret_env",
            "keys.bad\"id",
            "keys.bad\"id.scopes[0]",
            "required_components[0]",
            "required_components[1]",
            "required_components[3]",
            "required_components[4]",
            "max_age_s",
            "clock_skew_s",
            "max_body_bytes",
            "api_keys.header",
            "api_keys.sha256.abc",
            "api_keys.sha256.abc.id",
            "api_keys.sha256.AA",
            "rules[0].prefix",
            "rules[1]",
            "rules[3]",
            "replay_cache.sets",
            "replay_cache.ways",
            "response_signing.keyid",
            "response_signing.label",
            "response_signing.components[0]",
            "response_signing.components[1]",
            "response_signing",
        ] {
            assert!(e.has(path), "missing {path} in {e}");
        }
        // `;sf` on content-digest (a known dictionary) is fine.
        assert!(!e.has("required_components[5]"), "{e}");
        // Secret values never appear in messages.
        assert!(!e.to_string().contains("not base64!!!"), "{e}");
        assert!(!e.to_string().contains("c2hvcnQ"), "{e}");
    }

    #[test]
    fn rules_need_their_credentials() {
        let sha = "a".repeat(64);
        let e = compile(&format!(r#"{{"api_keys": {{"sha256": {{"{sha}": {{"id": "x"}}}}}}, "rules": [{{"prefix": "/", "require": "signature"}}]}}"#)).unwrap_err();
        assert!(e.has("rules[0].require"), "{e}");
        let e = compile(&format!(r#"{{"keys": {{"k": {{"secret_base64": "{SECRET_B64}"}}}}, "rules": [{{"prefix": "/", "require": "api_key"}}]}}"#)).unwrap_err();
        assert!(e.has("rules[0].require"), "{e}");
        let e = compile(&format!(r#"{{"keys": {{"k": {{"secret_base64": "{SECRET_B64}"}}}}, "rules": []}}"#)).unwrap_err();
        assert!(e.has("rules"), "{e}");
    }

    #[test]
    fn upper_case_hashes_are_accepted_and_duplicates_caught() {
        let lower = "ab".repeat(32);
        let upper = "AB".repeat(32);
        let p = compile(&format!(r#"{{"api_keys": {{"sha256": {{"{upper}": {{"id": "x"}}}}}}}}"#)).unwrap();
        assert_eq!(p.api_keys.unwrap().keys[0].sha256, [0xab; 32]);
        let e = compile(&format!(r#"{{"api_keys": {{"sha256": {{"{upper}": {{"id": "x"}}, "{lower}": {{"id": "y"}}}}}}}}"#)).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
    }

    #[test]
    fn unknown_fields_and_bad_enums_are_refused() {
        let e = compile(r#"{"keys": {"k": {"secret": "x"}}}"#).unwrap_err();
        assert_eq!(e.0[0].path, "keys.k.secret");
        let e = compile(r#"{"rules": [{"prefix": "/", "require": "everything"}]}"#).unwrap_err();
        assert_eq!(e.0[0].path, "rules[0].require");
        let e = compile(r#"{"max_age": 3}"#).unwrap_err();
        assert_eq!(e.0[0].path, "max_age");
    }

    #[test]
    fn response_signing_compiles() {
        let p = compile(&format!(r#"{{"keys": {{"k": {{"secret_base64": "{SECRET_B64}"}}}}, "response_signing": {{"keyid": "gateway", "secret_env": "GW"}}}}"#));
        assert!(p.unwrap_err().has("response_signing.secret_env"));
        let p = compile_env(&format!(r#"{{"keys": {{"k": {{"secret_base64": "{SECRET_B64}"}}}}, "response_signing": {{"keyid": "gateway", "secret_env": "GW"}}}}"#), &[("GW", SECRET_B64)]).unwrap();
        let r = p.response_signing.unwrap();
        assert_eq!(r.label, "sig1");
        assert_eq!(r.components.len(), 3);
    }
}
