//! Configuration of header_hardening: JSON types (every field documented in README.md)
//! and their compilation into a ready [`Policy`].

use crate::policy::{Cors, MethodOverride, OriginPattern, Policy, UpstreamHeaders};
use serde::Deserialize;
use shared::config::{is_header_name, ConfigErrors, Validator};
use shared::pathmatch::Methods;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Security response headers: a value overrides the default, `null` removes it,
    /// a new name adds one.
    #[serde(default)]
    pub response_headers: BTreeMap<String, Option<String>>,
    /// What to do when upstream already set one of the security headers.
    #[serde(default)]
    pub upstream_headers: UpstreamHeaders,
    /// Response headers to remove because they leak implementation details.
    /// `None` means the default list.
    #[serde(default)]
    pub remove_response_headers: Option<Vec<String>>,
    #[serde(default)]
    pub cors: Option<CorsConfig>,
    #[serde(default)]
    pub request: RequestConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins (`https://app.example.com`) or one-label wildcards (`https://*.example.com`).
    pub allow_origins: Vec<String>,
    #[serde(default = "default_cors_methods")]
    pub allow_methods: Vec<String>,
    #[serde(default)]
    pub allow_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    #[serde(default = "default_max_age")]
    pub max_age_s: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    #[serde(default = "default_methods")]
    pub allowed_methods: Vec<String>,
    /// Media types accepted for request bodies; `[]` accepts any.
    #[serde(default = "default_content_types")]
    pub allowed_content_types: Vec<String>,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Total size of all request header names and values (pseudo-headers included).
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    #[serde(default = "default_max_header_count")]
    pub max_header_count: usize,
    /// Refuse ambiguous paths (dot segments, encoded slashes, NUL, control characters...).
    #[serde(default = "yes")]
    pub validate_path: bool,
    #[serde(default)]
    pub method_override: MethodOverride,
}

impl Default for RequestConfig {
    fn default() -> Self {
        Self {
            allowed_methods: default_methods(),
            allowed_content_types: default_content_types(),
            max_body_bytes: default_max_body(),
            max_header_bytes: default_max_header_bytes(),
            max_header_count: default_max_header_count(),
            validate_path: true,
            method_override: MethodOverride::default(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_cors_methods() -> Vec<String> {
    ["GET", "HEAD", "POST"].map(String::from).to_vec()
}
fn default_max_age() -> u32 {
    600
}
fn default_methods() -> Vec<String> {
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].map(String::from).to_vec()
}
fn default_content_types() -> Vec<String> {
    ["application/json", "application/x-www-form-urlencoded", "multipart/form-data", "text/plain"].map(String::from).to_vec()
}
fn default_max_body() -> u64 {
    1024 * 1024
}
fn default_max_header_bytes() -> usize {
    16 * 1024
}
fn default_max_header_count() -> usize {
    100
}

/// The OWASP Secure Headers Project recommendations for an API gateway.
pub const DEFAULT_SECURITY_HEADERS: &[(&str, &str)] = &[
    ("strict-transport-security", "max-age=31536000; includeSubDomains"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("permissions-policy", "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("x-permitted-cross-domain-policies", "none"),
];

/// Headers that tell an attacker what runs behind the gateway.
pub const DEFAULT_REMOVE: &[&str] = &["server", "x-powered-by", "x-aspnet-version", "x-aspnetmvc-version", "x-generator"];

fn header_value_ok(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

impl Config {
    pub fn compile(self) -> Result<Policy, ConfigErrors> {
        let mut v = Validator::new();

        let mut headers: BTreeMap<String, String> =
            DEFAULT_SECURITY_HEADERS.iter().map(|(k, val)| (k.to_string(), val.to_string())).collect();
        for (name, value) in &self.response_headers {
            let at = format!("response_headers.{name}");
            v.check(is_header_name(name), &at, "not a lower-case header name");
            v.check(!name.starts_with(':'), &at, "pseudo-headers cannot be set");
            v.check(!name.starts_with("access-control-"), &at, "CORS headers are configured under 'cors'");
            match value {
                Some(val) => {
                    v.check(header_value_ok(val), &at, "header value has a control or non-ASCII character");
                    headers.insert(name.clone(), val.clone());
                }
                None => {
                    headers.remove(name);
                }
            }
        }

        let remove: Vec<String> = self.remove_response_headers.unwrap_or_else(|| DEFAULT_REMOVE.iter().map(|s| s.to_string()).collect());
        for (i, name) in remove.iter().enumerate() {
            let at = format!("remove_response_headers[{i}]");
            v.check(is_header_name(name), &at, "not a lower-case header name");
            v.check(!headers.contains_key(name), &at, "a header cannot be both set and removed");
        }

        let r = &self.request;
        let methods = Methods::compile(&r.allowed_methods, "request.allowed_methods", &mut v);
        v.check(!r.allowed_methods.is_empty(), "request.allowed_methods", "at least one method is required");
        for (i, ct) in r.allowed_content_types.iter().enumerate() {
            let ok = ct.split_once('/').is_some_and(|(a, b)| is_header_name(a) && is_header_name(b) && ct.bytes().all(|c| !c.is_ascii_uppercase()));
            v.check(ok, format!("request.allowed_content_types[{i}]"), "not a lower-case media type like 'application/json'");
        }
        v.check(r.max_body_bytes > 0, "request.max_body_bytes", "must be greater than 0");
        v.check(r.max_header_bytes >= 256, "request.max_header_bytes", "must be at least 256");
        v.check(r.max_header_count >= 4, "request.max_header_count", "must be at least 4");

        let cors = self.cors.map(|c| compile_cors(c, &mut v));

        v.finish(Policy {
            security_headers: headers.into_iter().collect(),
            upstream_headers: self.upstream_headers,
            remove_response_headers: remove,
            cors,
            methods,
            allowed_content_types: self.request.allowed_content_types,
            max_body_bytes: self.request.max_body_bytes,
            max_header_bytes: self.request.max_header_bytes,
            max_header_count: self.request.max_header_count,
            validate_path: self.request.validate_path,
            method_override: self.request.method_override,
        })
    }
}

fn compile_cors(c: CorsConfig, v: &mut Validator) -> Cors {
    let mut origins = Vec::new();
    v.check(!c.allow_origins.is_empty(), "cors.allow_origins", "at least one origin is required");
    for (i, o) in c.allow_origins.iter().enumerate() {
        let at = format!("cors.allow_origins[{i}]");
        if o == "*" {
            v.check(!c.allow_credentials, &at, "'*' cannot be combined with allow_credentials: browsers refuse it and reflecting any origin with credentials is unsafe");
            origins.push(OriginPattern::Any);
            continue;
        }
        match OriginPattern::parse(o) {
            Some(p) => origins.push(p),
            None => v.error(&at, "expected 'scheme://host[:port]' or 'scheme://*.domain[:port]' with no path"),
        }
    }
    let methods = Methods::compile(&c.allow_methods, "cors.allow_methods", v);
    for (field, list) in [("cors.allow_headers", &c.allow_headers), ("cors.expose_headers", &c.expose_headers)] {
        for (i, h) in list.iter().enumerate() {
            v.check(is_header_name(h), format!("{field}[{i}]"), "not a lower-case header name");
        }
    }
    Cors {
        origins,
        allow_methods: methods.as_slice().join(", "),
        methods,
        allow_headers: c.allow_headers,
        expose_headers: c.expose_headers.join(", "),
        allow_credentials: c.allow_credentials,
        max_age: c.max_age_s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::config::parse_json;

    fn compile(json: &str) -> Result<Policy, ConfigErrors> {
        parse_json::<Config>(json.as_bytes()).and_then(Config::compile)
    }

    #[test]
    fn empty_config_is_the_secure_default() {
        let p = compile("").unwrap();
        assert_eq!(p.security_headers.len(), DEFAULT_SECURITY_HEADERS.len());
        assert!(p.methods.matches(b"GET"));
        assert!(!p.methods.matches(b"TRACE"));
        assert!(p.cors.is_none());
        assert_eq!(p.max_body_bytes, 1 << 20);
    }

    #[test]
    fn overrides_and_removals() {
        let p = compile(r#"{"response_headers": {"x-frame-options": "SAMEORIGIN", "content-security-policy": null, "x-extra": "1"}}"#).unwrap();
        let h: BTreeMap<_, _> = p.security_headers.iter().cloned().collect();
        assert_eq!(h["x-frame-options"], "SAMEORIGIN");
        assert!(!h.contains_key("content-security-policy"));
        assert_eq!(h["x-extra"], "1");
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let e = compile(
            r#"{"response_headers": {"Bad Name": "x", "x-ok": "a\nb"},
                "remove_response_headers": ["x-frame-options"],
                "request": {"allowed_methods": ["get"], "allowed_content_types": ["json"], "max_body_bytes": 0},
                "cors": {"allow_origins": ["*", "ftp://x/y"], "allow_credentials": true}}"#,
        )
        .unwrap_err();
        for path in [
            "response_headers.Bad Name",
            "response_headers.x-ok",
            "remove_response_headers[0]",
            "request.allowed_methods[0]",
            "request.allowed_content_types[0]",
            "request.max_body_bytes",
            "cors.allow_origins[0]",
            "cors.allow_origins[1]",
        ] {
            assert!(e.has(path), "missing {path} in {e}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = compile(r#"{"request": {"max_body": 1}}"#).unwrap_err();
        assert_eq!(e.0[0].path, "request.max_body");
        let e = compile(r#"{"upstream_headers": "merge"}"#).unwrap_err();
        assert_eq!(e.0[0].path, "upstream_headers");
    }
}
