//! The compiled, ready-to-use form of the configuration.

use serde::Deserialize;
use shared::pathmatch::Methods;

#[derive(Debug, Clone)]
pub struct Policy {
    /// Security headers to set on every response, sorted by name.
    pub security_headers: Vec<(String, String)>,
    pub upstream_headers: UpstreamHeaders,
    pub remove_response_headers: Vec<String>,
    pub cors: Option<Cors>,
    pub methods: Methods,
    pub allowed_content_types: Vec<String>,
    pub max_body_bytes: u64,
    pub max_header_bytes: usize,
    pub max_header_count: usize,
    pub validate_path: bool,
    pub method_override: MethodOverride,
}

/// When upstream already set a security header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamHeaders {
    /// The gateway's value wins (default): the policy is the gateway's.
    #[default]
    Override,
    /// Keep upstream's value, add ours only where upstream set none.
    Keep,
}

/// Client headers that ask a server to treat a request as another method
/// (`X-HTTP-Method-Override: DELETE` on a POST) and so bypass method rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MethodOverride {
    /// Remove them before the request goes upstream (default).
    #[default]
    Remove,
    /// Reject the request with 400.
    Reject,
    /// Pass them through.
    Allow,
}

pub const METHOD_OVERRIDE_HEADERS: &[&str] = &["x-http-method-override", "x-http-method", "x-method-override"];

#[derive(Debug, Clone)]
pub struct Cors {
    pub origins: Vec<OriginPattern>,
    pub methods: Methods,
    pub allow_methods: String,
    pub allow_headers: Vec<String>,
    pub expose_headers: String,
    pub allow_credentials: bool,
    pub max_age: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    Any,
    Exact(String),
    /// `scheme://*.suffix[:port]`: any single or multi-label subdomain of suffix, not suffix itself.
    Subdomain { scheme: String, suffix: String, port: Option<String> },
}

impl OriginPattern {
    pub fn parse(s: &str) -> Option<Self> {
        let (scheme, rest) = s.split_once("://")?;
        if !(scheme == "http" || scheme == "https") || rest.is_empty() || rest.contains('/') {
            return None;
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p.to_string())),
            Some(_) => return None,
            None => (rest, None),
        };
        let host_ok = |h: &str| !h.is_empty() && h.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        if let Some(suffix) = host.strip_prefix("*.") {
            if !host_ok(suffix) || !suffix.contains('.') {
                return None;
            }
            return Some(OriginPattern::Subdomain { scheme: scheme.to_string(), suffix: suffix.to_string(), port });
        }
        if !host_ok(host) {
            return None;
        }
        Some(OriginPattern::Exact(s.to_string()))
    }

    pub fn matches(&self, origin: &str) -> bool {
        match self {
            OriginPattern::Any => true,
            OriginPattern::Exact(o) => o == origin,
            OriginPattern::Subdomain { scheme, suffix, port } => {
                let Some(rest) = origin.strip_prefix(scheme.as_str()).and_then(|r| r.strip_prefix("://")) else {
                    return false;
                };
                let (host, p) = match rest.rsplit_once(':') {
                    Some((h, p)) => (h, Some(p)),
                    None => (rest, None),
                };
                if p != port.as_deref() {
                    return false;
                }
                let Some(sub) = host.strip_suffix(suffix.as_str()).and_then(|s| s.strip_suffix('.')) else {
                    return false;
                };
                !sub.is_empty() && sub.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
            }
        }
    }
}

impl Cors {
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.origins.iter().any(|p| p.matches(origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_patterns() {
        let p = OriginPattern::parse("https://*.example.com").unwrap();
        assert!(p.matches("https://app.example.com"));
        assert!(p.matches("https://a.b.example.com"));
        assert!(!p.matches("https://example.com"));
        assert!(!p.matches("https://evilexample.com"));
        assert!(!p.matches("https://app.example.com.evil.org"));
        assert!(!p.matches("http://app.example.com"));
        assert!(!p.matches("https://app.example.com:8443"));
        assert!(!p.matches("https://APP.example.com"));
        let p = OriginPattern::parse("https://app.example.com:8443").unwrap();
        assert!(p.matches("https://app.example.com:8443"));
        assert!(!p.matches("https://app.example.com"));
        for bad in ["app.example.com", "https://", "https://x/y", "ftp://x", "https://*.com", "https://x:abc", "https://A.com"] {
            assert!(OriginPattern::parse(bad).is_none(), "{bad}");
        }
    }
}
