//! Configuration of pii_masking: JSON types (every field documented in README.md) and their
//! compilation into a ready [`Policy`].

use crate::detect::{Detector, DetectorSet};
use crate::mask::{HashKey, MIN_KEY_BYTES};
use crate::policy::{field_key, Field, MediaRange, Mode, Overflow, Plan, Policy, Rule};
use serde::Deserialize;
use shared::config::{ConfigErrors, Validator};
use shared::pathmatch::RouteMatch;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Detectors to run on values. Default: all six.
    #[serde(default = "all_detectors")]
    pub detectors: Vec<Detector>,
    /// Mode of every detector without an entry in `modes`. Default `partial`.
    #[serde(default = "partial")]
    pub mode: Mode,
    /// Mode per detector (keys are detector names).
    #[serde(default)]
    pub modes: BTreeMap<String, Mode>,
    /// JSON member names (any depth; case, `_` and `-` ignored) and how their values are masked.
    #[serde(default)]
    pub json_fields: BTreeMap<String, Mode>,
    /// Media types whose bodies are masked (`type/subtype`, `type/*`, `type/*+suffix`).
    #[serde(default = "default_content_types")]
    pub content_types: Vec<String>,
    /// Largest body buffered for whole-body (JSON) masking.
    #[serde(default = "default_max_buffer")]
    pub max_buffer_bytes: usize,
    /// What happens to a JSON body larger than `max_buffer_bytes`.
    #[serde(default)]
    pub on_overflow: Overflow,
    /// Environment variable (of the Wasm VM) holding the HMAC key for `hash` mode.
    #[serde(default)]
    pub hash_key_env: Option<String>,
    /// Per-path overrides, first match wins; unmatched paths use the top-level settings.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Mask request bodies too (before they reach upstream). Default false.
    #[serde(default)]
    pub mask_request_bodies: bool,
    /// Hold the headers of JSON bodies until the body is masked, so `content-length` is exact
    /// and an overflow can still be answered with an error. Requires Envoy's Wasm
    /// `allow_on_headers_stop_iteration: true`. Default true.
    #[serde(default = "yes")]
    pub hold_headers: bool,
}

impl Default for Config {
    fn default() -> Self {
        match shared::config::parse_json::<Config>(b"{}") {
            Ok(c) => c,
            // Unreachable: every field has a default. Keep a safe value without panicking.
            Err(_) => Config {
                detectors: all_detectors(),
                mode: Mode::Partial,
                modes: BTreeMap::new(),
                json_fields: BTreeMap::new(),
                content_types: default_content_types(),
                max_buffer_bytes: default_max_buffer(),
                on_overflow: Overflow::Reject,
                hash_key_env: None,
                rules: Vec::new(),
                mask_request_bodies: false,
                hold_headers: true,
            },
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Path prefix (normalized path).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Path template (`/users/{id}/export`), instead of `prefix`.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Mode for every detector and every JSON field on these paths (fields set to `remove`
    /// stay removed).
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Detectors on these paths instead of the top-level list.
    #[serde(default)]
    pub detectors: Option<Vec<Detector>>,
    /// Do not mask on these paths.
    #[serde(default)]
    pub skip: bool,
}

fn yes() -> bool {
    true
}
fn partial() -> Mode {
    Mode::Partial
}
fn all_detectors() -> Vec<Detector> {
    Detector::ALL.to_vec()
}
fn default_content_types() -> Vec<String> {
    ["application/json", "application/*+json", "text/plain", "text/html", "text/csv"].map(String::from).to_vec()
}
fn default_max_buffer() -> usize {
    1024 * 1024
}

/// Largest `max_buffer_bytes` accepted (Envoy's buffers must be raised to match).
pub const MAX_BUFFER_LIMIT: usize = 64 * 1024 * 1024;

fn detector_set(list: &[Detector], at: &str, v: &mut Validator) -> DetectorSet {
    let mut set = DetectorSet::none();
    for (i, d) in list.iter().enumerate() {
        v.check(!set.contains(*d), format!("{at}[{i}]"), format!("'{}' is listed twice", d.name()));
        set = set.with(*d);
    }
    set
}

fn no_remove(mode: Mode, at: &str, v: &mut Validator) {
    v.check(mode != Mode::Remove, at, "'remove' applies to json_fields only; use 'redact' for detected values");
}

impl Config {
    /// Compile, reading `hash_key_env` from the process environment.
    pub fn compile(self) -> Result<Policy, ConfigErrors> {
        self.compile_with_env(&|name| std::env::var(name).ok())
    }

    /// Compile with `env` standing for the environment (tests).
    pub fn compile_with_env(self, env: &dyn Fn(&str) -> Option<String>) -> Result<Policy, ConfigErrors> {
        let mut v = Validator::new();

        let detectors = detector_set(&self.detectors, "detectors", &mut v);
        no_remove(self.mode, "mode", &mut v);
        let mut modes = [self.mode; 6];
        for (name, m) in &self.modes {
            let at = format!("modes.{name}");
            let Some(d) = Detector::ALL.into_iter().find(|d| d.name() == name) else {
                v.error(&at, "unknown detector; expected one of credit_card, iban, ssn, phone, email, ipv4");
                continue;
            };
            no_remove(*m, &at, &mut v);
            if let Some(slot) = modes.get_mut(d.index()) {
                *slot = *m;
            }
        }

        let mut fields: BTreeMap<String, Field> = BTreeMap::new();
        for (name, mode) in &self.json_fields {
            let at = format!("json_fields.{name}");
            let key = field_key(name);
            if key.is_empty() {
                v.error(&at, "a field name needs at least one character other than '_' and '-'");
                continue;
            }
            if let Some(other) = fields.get(&key) {
                v.error(&at, format!("matches the same members as '{}' (names are compared ignoring case, '_' and '-')", other.label));
                continue;
            }
            fields.insert(key, Field { label: name.clone(), mode: *mode });
        }

        let mut content_types = Vec::new();
        v.check(!self.content_types.is_empty(), "content_types", "at least one media type is required");
        for (i, ct) in self.content_types.iter().enumerate() {
            match MediaRange::parse(ct) {
                Some(r) => content_types.push(r),
                None => v.error(format!("content_types[{i}]"), "expected a lower-case media type: 'text/plain', 'text/*' or 'application/*+json'"),
            }
        }

        v.check(
            (1024..=MAX_BUFFER_LIMIT).contains(&self.max_buffer_bytes),
            "max_buffer_bytes",
            format!("must be between 1024 and {MAX_BUFFER_LIMIT}"),
        );

        // Rules.
        type RulePlan = Option<(DetectorSet, [Mode; 6], Option<Mode>)>;
        let mut rule_parts: Vec<(usize, RouteMatch, RulePlan)> = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            let matcher = RouteMatch::compile(r.path.as_deref(), r.prefix.as_deref(), r.methods.as_deref(), &at, &mut v);
            if r.skip && (r.mode.is_some() || r.detectors.is_some()) {
                v.error(&at, "'skip' cannot be combined with 'mode' or 'detectors'");
            }
            if let Some(m) = r.mode {
                no_remove(m, &format!("{at}.mode"), &mut v);
            }
            let set = r.detectors.as_ref().map(|d| detector_set(d, &format!("{at}.detectors"), &mut v)).unwrap_or(detectors);
            let Some(matcher) = matcher else { continue };
            if let Some((j, _, _)) = rule_parts.iter().find(|(_, earlier, _)| matcher.shadowed_by(earlier)) {
                v.error(&at, format!("never applies: rules[{j}] matches every request it matches"));
            }
            let rule_modes = r.mode.map(|m| [m; 6]).unwrap_or(modes);
            rule_parts.push((i, matcher, (!r.skip).then_some((set, rule_modes, r.mode))));
        }

        // The hash key: required when any mode is `hash`, always checked when named.
        let mut uses_hash = modes.contains(&Mode::Hash) || fields.values().any(|f| f.mode == Mode::Hash);
        uses_hash |= self.rules.iter().any(|r| r.mode == Some(Mode::Hash));
        let key = match &self.hash_key_env {
            Some(name) => {
                let ok_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !ok_name {
                    v.error("hash_key_env", "expected an environment variable name ([A-Za-z0-9_]+)");
                    None
                } else {
                    match env(name) {
                        None => {
                            v.error("hash_key_env", format!("environment variable '{name}' is not set in the Wasm VM (vm_config.environment_variables)"));
                            None
                        }
                        Some(val) => match HashKey::new(val.as_bytes()) {
                            Some(k) => Some(Arc::new(k)),
                            None => {
                                v.error("hash_key_env", format!("the key in '{name}' must be at least {MIN_KEY_BYTES} bytes"));
                                None
                            }
                        },
                    }
                }
            }
            None => {
                v.check(!uses_hash, "hash_key_env", "required when a mode is 'hash'");
                None
            }
        };

        let make_plan = |set: DetectorSet, modes: [Mode; 6], override_mode: Option<Mode>| -> Arc<Plan> {
            let fields = fields
                .iter()
                .map(|(k, f)| {
                    let mode = match override_mode {
                        Some(m) if f.mode != Mode::Remove => m,
                        _ => f.mode,
                    };
                    (k.clone(), Field { label: f.label.clone(), mode })
                })
                .collect();
            Arc::new(Plan { detectors: set, modes, fields, key: key.clone() })
        };
        let default_plan = make_plan(detectors, modes, None);
        let rules = rule_parts
            .into_iter()
            .map(|(_, matcher, p)| Rule { matcher, plan: p.map(|(set, m, o)| make_plan(set, m, o)) })
            .collect();

        v.finish(Policy {
            default_plan,
            rules,
            content_types,
            max_buffer_bytes: self.max_buffer_bytes,
            on_overflow: self.on_overflow,
            mask_request_bodies: self.mask_request_bodies,
            hold_headers: self.hold_headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::BodyKind;
    use shared::config::parse_json;
    use shared::request::Headers;

    fn env(name: &str) -> Option<String> {
        (name == "PII_HASH_KEY").then(|| "0123456789abcdef0123456789abcdef".to_string())
    }

    fn compile(json: &str) -> Result<Policy, ConfigErrors> {
        parse_json::<Config>(json.as_bytes()).and_then(|c| c.compile_with_env(&env))
    }

    fn req(path: &str) -> Headers {
        Headers::from_pairs([(":path", path), (":method", "GET")])
    }

    #[test]
    fn empty_config_is_the_secure_default() {
        let p = compile("").unwrap();
        let plan = p.plan_for(&req("/anything")).unwrap();
        assert_eq!(plan.detectors, DetectorSet::all());
        assert_eq!(plan.modes, [Mode::Partial; 6]);
        assert_eq!(p.max_buffer_bytes, 1 << 20);
        assert_eq!(p.on_overflow, Overflow::Reject);
        assert!(!p.mask_request_bodies);
        assert!(p.hold_headers);
        assert_eq!(p.body_kind(Some("application/json")), Some(BodyKind::Json));
        assert_eq!(p.body_kind(Some("application/problem+json")), Some(BodyKind::Json));
        assert_eq!(p.body_kind(Some("text/csv")), Some(BodyKind::Text));
        assert_eq!(p.body_kind(Some("image/png")), None);
        assert_eq!(p.body_kind(None), None);
    }

    #[test]
    fn the_issue_example_compiles() {
        let p = compile(
            r#"{
              "detectors": ["email", "phone", "ssn", "credit_card", "iban", "ipv4"],
              "mode": "partial",
              "modes": {"credit_card": "partial", "ssn": "redact", "email": "partial"},
              "json_fields": {"password": "remove", "ssn": "redact", "card_number": "partial"},
              "content_types": ["application/json", "text/plain", "text/html", "text/csv"],
              "max_buffer_bytes": 1048576,
              "on_overflow": "reject",
              "hash_key_env": "PII_HASH_KEY",
              "rules": [{"prefix": "/admin/export", "mode": "redact"}, {"prefix": "/"}]
            }"#,
        )
        .unwrap();
        let export = p.plan_for(&req("/admin/export/all")).unwrap();
        assert_eq!(export.modes, [Mode::Redact; 6]);
        assert_eq!(export.field("Password").unwrap().mode, Mode::Remove);
        assert_eq!(export.field("cardNumber").unwrap().mode, Mode::Redact);
        let other = p.plan_for(&req("/users")).unwrap();
        assert_eq!(other.mode(Detector::Ssn), Mode::Redact);
        assert_eq!(other.mode(Detector::Phone), Mode::Partial);
        assert_eq!(other.field("card_number").unwrap().mode, Mode::Partial);
        assert!(other.key.is_some());
    }

    #[test]
    fn skip_rules_and_fail_closed_paths() {
        let p = compile(r#"{"rules": [{"prefix": "/public/", "skip": true}, {"prefix": "/x", "detectors": ["email"], "methods": ["POST"]}]}"#).unwrap();
        assert!(p.plan_for(&req("/public/file")).is_none());
        // an ambiguous path cannot pick the skip rule
        assert!(p.plan_for(&req("/public/../secret")).is_some());
        assert!(p.plan_for(&req("/public%2fsecret")).is_some());
        // unmatched: top-level settings
        assert_eq!(p.plan_for(&req("/other")).unwrap().detectors, DetectorSet::all());
        // method-specific rule
        let post = Headers::from_pairs([(":path", "/x"), (":method", "POST")]);
        assert_eq!(p.plan_for(&post).unwrap().detectors, DetectorSet::none().with(Detector::Email));
        assert_eq!(p.plan_for(&req("/x")).unwrap().detectors, DetectorSet::all());
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let e = compile(
            r#"{"detectors": ["email", "email"], "mode": "remove", "modes": {"ssn": "remove", "phone": "hash", "passport": "redact"},
                "json_fields": {"card_number": "partial", "cardNumber": "redact", "__": "remove"},
                "content_types": ["JSON", "text/*"], "max_buffer_bytes": 10,
                "rules": [{"prefix": "nope"}, {"prefix": "/a", "skip": true, "mode": "redact"}, {"prefix": "/a/b"},
                          {"path": "/x", "prefix": "/y"}, {"prefix": "/z", "mode": "remove"}]}"#,
        )
        .unwrap_err();
        for path in [
            "detectors[1]",
            "mode",
            "modes.ssn",
            "json_fields.card_number",
            "modes.passport",
            "json_fields.__",
            "content_types[0]",
            "max_buffer_bytes",
            "rules[0].prefix",
            "rules[1]",
            "rules[2]",
            "rules[3]",
            "rules[4].mode",
            "hash_key_env",
        ] {
            assert!(e.has(path), "missing {path} in {e}");
        }
        assert!(e.to_string().contains("rules[2]: never applies: rules[1]"), "{e}");
    }

    #[test]
    fn hash_key_is_read_and_checked_at_configure() {
        assert!(compile(r#"{"mode": "hash", "hash_key_env": "PII_HASH_KEY"}"#).is_ok());
        let e = compile(r#"{"mode": "hash", "hash_key_env": "MISSING"}"#).unwrap_err();
        assert!(e.has("hash_key_env") && e.to_string().contains("not set"), "{e}");
        let short = |_: &str| Some("short".to_string());
        let e = parse_json::<Config>(br#"{"json_fields": {"x": "hash"}, "hash_key_env": "K"}"#).unwrap().compile_with_env(&short).unwrap_err();
        assert!(e.to_string().contains("at least 16 bytes"), "{e}");
        let e = compile(r#"{"rules": [{"prefix": "/", "mode": "hash"}]}"#).unwrap_err();
        assert!(e.has("hash_key_env"));
        assert!(compile(r#"{"hash_key_env": "bad-name"}"#).unwrap_err().has("hash_key_env"));
        // the real environment is what compile() reads
        assert!(parse_json::<Config>(br#"{"mode":"hash","hash_key_env":"PII_TEST_SURELY_UNSET_VAR"}"#).unwrap().compile().is_err());
    }

    #[test]
    fn unknown_fields_and_values_are_refused() {
        let e = compile(r#"{"detector": ["email"]}"#).unwrap_err();
        assert_eq!(e.0[0].path, "detector");
        let e = compile(r#"{"detectors": ["passport"]}"#).unwrap_err();
        assert_eq!(e.0[0].path, "detectors[0]");
        let e = compile(r#"{"modes": {"email": "scramble"}}"#).unwrap_err();
        assert_eq!(e.0[0].path, "modes.email");
        let e = compile(r#"{"rules": [{"prefix": "/", "skp": true}]}"#).unwrap_err();
        assert_eq!(e.0[0].path, "rules[0].skp");
        let e = compile(r#"{"on_overflow": "drop"}"#).unwrap_err();
        assert_eq!(e.0[0].path, "on_overflow");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let p = compile(r#"{"mode": "hash", "hash_key_env": "PII_HASH_KEY"}"#).unwrap();
        let s = format!("{p:?}");
        assert!(!s.contains("0123456789abcdef"), "{s}");
        assert!(s.contains("<hidden>"));
    }
}
