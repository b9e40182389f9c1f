//! Pure decisions: what to do with a request, and how to edit a response.

use crate::policy::{MethodOverride, Policy, UpstreamHeaders, METHOD_OVERRIDE_HEADERS};
use shared::pathmatch::normalize;
use shared::reply::Rejection;
use shared::request::Headers;

/// Why a request was refused; each maps to one status, code and metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    MethodNotAllowed,
    HeadersTooLarge,
    TooManyHeaders,
    InvalidHeaderValue,
    InvalidPath(shared::pathmatch::PathError),
    MethodOverride,
    BodyTooLarge,
    UnsupportedMediaType,
    CorsOriginNotAllowed,
    CorsMethodNotAllowed,
    CorsHeaderNotAllowed,
}

impl Denial {
    /// Stable metric suffix (`edgesec.header_hardening.denied.<metric>`).
    pub fn metric(self) -> &'static str {
        match self {
            Denial::MethodNotAllowed => "method_not_allowed",
            Denial::HeadersTooLarge | Denial::TooManyHeaders => "headers_too_large",
            Denial::InvalidHeaderValue => "invalid_header",
            Denial::InvalidPath(_) => "invalid_path",
            Denial::MethodOverride => "method_override",
            Denial::BodyTooLarge => "body_too_large",
            Denial::UnsupportedMediaType => "unsupported_media_type",
            Denial::CorsOriginNotAllowed | Denial::CorsMethodNotAllowed | Denial::CorsHeaderNotAllowed => "cors_rejected",
        }
    }

    pub const METRICS: &'static [&'static str] = &[
        "method_not_allowed",
        "headers_too_large",
        "invalid_header",
        "invalid_path",
        "method_override",
        "body_too_large",
        "unsupported_media_type",
        "cors_rejected",
    ];

    pub fn rejection(self, policy: &Policy) -> Rejection {
        match self {
            Denial::MethodNotAllowed => Rejection::new(405, "method_not_allowed", "the request method is not allowed")
                .with_header("allow", policy.methods.as_slice().join(", ")),
            Denial::HeadersTooLarge => Rejection::new(431, "headers_too_large", "the request headers are too large"),
            Denial::TooManyHeaders => Rejection::new(431, "too_many_headers", "the request has too many headers"),
            Denial::InvalidHeaderValue => Rejection::new(400, "invalid_header_value", "a request header value contains a forbidden character"),
            Denial::InvalidPath(e) => Rejection::new(400, e.code(), e.to_string()),
            Denial::MethodOverride => Rejection::new(400, "method_override_forbidden", "method override headers are not accepted"),
            Denial::BodyTooLarge => Rejection::new(413, "body_too_large", "the request body is too large"),
            Denial::UnsupportedMediaType => Rejection::new(415, "unsupported_media_type", "the request body's content type is not accepted"),
            Denial::CorsOriginNotAllowed => Rejection::new(403, "cors_origin_not_allowed", "the origin is not allowed"),
            Denial::CorsMethodNotAllowed => Rejection::new(403, "cors_method_not_allowed", "the requested method is not allowed for cross-origin requests"),
            Denial::CorsHeaderNotAllowed => Rejection::new(403, "cors_header_not_allowed", "a requested header is not allowed for cross-origin requests"),
        }
    }
}

/// The outcome of the request checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestDecision {
    /// Let the request through after removing these headers. `cors_origin` is the allowed
    /// origin to answer to on the response, if any.
    Allow { remove: Vec<&'static str>, cors_origin: Option<String>, expect_body: bool },
    /// A CORS preflight the filter answers itself (204 with these headers).
    Preflight(Vec<(&'static str, String)>),
    Deny(Denial),
}

fn is_preflight(h: &Headers) -> bool {
    h.method() == b"OPTIONS" && h.contains("origin") && h.contains("access-control-request-method")
}

/// Check request headers. `end_of_stream` is Envoy's flag: false means a body follows.
pub fn check_request(h: &Headers, end_of_stream: bool, p: &Policy) -> RequestDecision {
    if h.len() > p.max_header_count {
        return RequestDecision::Deny(Denial::TooManyHeaders);
    }
    if h.byte_size() > p.max_header_bytes {
        return RequestDecision::Deny(Denial::HeadersTooLarge);
    }
    // Envoy's codecs already refuse control characters (and drop a bare CR); this guards
    // against any path (another codec, a filter that added headers) that lets one through.
    // RFC 9110 field values allow only VCHAR, obs-text, SP and HTAB.
    if h.iter().any(|(k, v)| k.bytes().chain(v.iter().copied()).any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)) {
        return RequestDecision::Deny(Denial::InvalidHeaderValue);
    }
    // RFC 9112 3.2: two Host lines are a 400. Envoy joins them with ',' into `:authority`
    // (measured in Envoy 1.40), which then routes on one name while upstream may pick another.
    if !valid_authority(h.authority()) {
        return RequestDecision::Deny(Denial::InvalidHeaderValue);
    }
    if p.validate_path {
        if let Err(e) = normalize(h.path()) {
            return RequestDecision::Deny(Denial::InvalidPath(e));
        }
    }

    if let Some(cors) = &p.cors {
        if is_preflight(h) {
            let origin = h.get_str("origin").unwrap_or_default();
            if !cors.origin_allowed(origin) {
                return RequestDecision::Deny(Denial::CorsOriginNotAllowed);
            }
            let method = h.get("access-control-request-method").unwrap_or_default();
            if !cors.methods.matches(method) || !p.methods.matches(method) {
                return RequestDecision::Deny(Denial::CorsMethodNotAllowed);
            }
            let requested = h.get_str("access-control-request-headers").unwrap_or_default();
            for name in requested.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let lower = name.to_ascii_lowercase();
                if !cors.allow_headers.contains(&lower) {
                    return RequestDecision::Deny(Denial::CorsHeaderNotAllowed);
                }
            }
            let mut out = vec![
                ("access-control-allow-origin", origin.to_string()),
                ("access-control-allow-methods", cors.allow_methods.clone()),
                ("access-control-max-age", cors.max_age.clone()),
                ("vary", "origin".to_string()),
            ];
            if !cors.allow_headers.is_empty() {
                out.push(("access-control-allow-headers", cors.allow_headers.join(", ")));
            }
            if cors.allow_credentials {
                out.push(("access-control-allow-credentials", "true".to_string()));
            }
            return RequestDecision::Preflight(out);
        }
    }

    if !p.methods.matches(h.method()) {
        return RequestDecision::Deny(Denial::MethodNotAllowed);
    }

    let mut remove = Vec::new();
    for name in METHOD_OVERRIDE_HEADERS {
        if h.contains(name) {
            match p.method_override {
                MethodOverride::Reject => return RequestDecision::Deny(Denial::MethodOverride),
                MethodOverride::Remove => remove.push(*name),
                MethodOverride::Allow => {}
            }
        }
    }

    let content_length = h.content_length();
    if content_length.is_some_and(|n| n > p.max_body_bytes) {
        return RequestDecision::Deny(Denial::BodyTooLarge);
    }
    let has_body = !end_of_stream && content_length != Some(0);
    if has_body && !p.allowed_content_types.is_empty() {
        let ok = h.media_type().is_some_and(|mt| p.allowed_content_types.contains(&mt));
        if !ok {
            return RequestDecision::Deny(Denial::UnsupportedMediaType);
        }
    }

    let cors_origin = p
        .cors
        .as_ref()
        .and_then(|c| h.get_str("origin").filter(|o| c.origin_allowed(o)).map(String::from));
    RequestDecision::Allow { remove, cors_origin, expect_body: has_body }
}

/// `host[:port]` with a DNS name, IPv4 address or bracketed IPv6 literal (letters, digits,
/// `-._`), or empty (HTTP/1.0). Refuses `,` (joined Host lines), spaces, `@` (userinfo) and
/// anything else a name server would not resolve.
fn valid_authority(a: &[u8]) -> bool {
    let (host, port) = match a.first() {
        Some(b'[') => match a.iter().position(|&b| b == b']') {
            Some(end) => {
                let inner = a.get(1..end).unwrap_or_default();
                if inner.is_empty() || !inner.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
                    return false;
                }
                (&[][..], a.get(end + 1..).unwrap_or_default())
            }
            None => return false,
        },
        _ => match a.iter().rposition(|&b| b == b':') {
            Some(i) => (a.get(..i).unwrap_or_default(), a.get(i..).unwrap_or_default()),
            None => (a, &[][..]),
        },
    };
    let host_ok = host.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => !digits.is_empty() && digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    host_ok && port_ok
}

/// Body bytes seen so far against the limit (for bodies without `content-length`).
pub fn body_within_limit(total: u64, p: &Policy) -> bool {
    total <= p.max_body_bytes
}

/// Where the CORS answer of a response comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorsReply<'a> {
    /// A response from upstream (or another filter): upstream's `access-control-*` headers are
    /// dropped and ours added for this allowed origin, if any.
    Upstream(Option<&'a str>),
    /// The preflight answer this filter sent itself: its CORS headers stay as they are.
    OwnPreflight,
}

/// The response header map after hardening, given upstream's (or a local reply's) map.
/// Returned whole so the glue can write it back in one host call.
pub fn harden_response(upstream: &Headers, p: &Policy, cors: CorsReply<'_>) -> Vec<(String, Vec<u8>)> {
    let cors_origin = match cors {
        CorsReply::Upstream(o) => o,
        CorsReply::OwnPreflight => None,
    };
    let ours = |name: &str| p.security_headers.iter().any(|(k, _)| k == name);
    let cors_on = p.cors.is_some();
    let mut out: Vec<(String, Vec<u8>)> = Vec::with_capacity(upstream.len() + p.security_headers.len() + 4);
    for (k, v) in upstream.iter() {
        if p.remove_response_headers.iter().any(|r| r == k) {
            continue;
        }
        // With CORS configured the gateway owns these: upstream must not reflect origins.
        if cors_on && k.starts_with("access-control-") && cors != CorsReply::OwnPreflight {
            continue;
        }
        if ours(k) && p.upstream_headers == UpstreamHeaders::Override {
            continue;
        }
        out.push((k.to_string(), v.to_vec()));
    }
    for (k, v) in &p.security_headers {
        if p.upstream_headers == UpstreamHeaders::Keep && upstream.contains(k) {
            continue;
        }
        out.push((k.clone(), v.clone().into_bytes()));
    }
    if let (Some(cors), Some(origin)) = (&p.cors, cors_origin) {
        out.push(("access-control-allow-origin".into(), origin.as_bytes().to_vec()));
        if cors.allow_credentials {
            out.push(("access-control-allow-credentials".into(), b"true".to_vec()));
        }
        if !cors.expose_headers.is_empty() {
            out.push(("access-control-expose-headers".into(), cors.expose_headers.clone().into_bytes()));
        }
    }
    if cors_on && !out.iter().any(|(k, v)| k == "vary" && v.eq_ignore_ascii_case(b"origin")) {
        out.push(("vary".into(), b"origin".to_vec()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use shared::config::parse_json;

    fn policy(json: &str) -> Policy {
        parse_json::<Config>(json.as_bytes()).and_then(Config::compile).unwrap()
    }

    fn req(pairs: &[(&str, &str)]) -> Headers {
        let mut all = vec![(":method", "GET"), (":path", "/"), (":authority", "x"), (":scheme", "http")];
        for (k, v) in pairs {
            if let Some(slot) = all.iter_mut().find(|(n, _)| n == k) {
                slot.1 = v;
            } else {
                all.push((k, v));
            }
        }
        Headers::from_pairs(all)
    }

    fn denial(d: RequestDecision) -> Option<Denial> {
        match d {
            RequestDecision::Deny(d) => Some(d),
            _ => None,
        }
    }

    #[test]
    fn request_table() {
        let p = policy(r#"{"request": {"max_body_bytes": 100, "max_header_bytes": 300, "max_header_count": 8}}"#);
        use shared::pathmatch::PathError as E;
        let long = "a".repeat(400);
        type Case<'a> = (Vec<(&'a str, &'a str)>, bool, Option<Denial>);
        let cases: Vec<Case> = vec![
            (vec![], true, None),
            (vec![(":method", "TRACE")], true, Some(Denial::MethodNotAllowed)),
            (vec![(":method", "get")], true, Some(Denial::MethodNotAllowed)),
            (vec![(":path", "/a/../b")], true, Some(Denial::InvalidPath(E::DotSegment))),
            (vec![(":path", "/a/%2e%2e/b")], true, Some(Denial::InvalidPath(E::EncodedDotSegment))),
            (vec![(":path", "/a%2fb")], true, Some(Denial::InvalidPath(E::EncodedSlash))),
            (vec![(":path", "/a%00")], true, Some(Denial::InvalidPath(E::ControlCharacter))),
            (vec![("x-a", "1\r\nx-b: 2")], true, Some(Denial::InvalidHeaderValue)),
            (vec![("x-a", "a\0b")], true, Some(Denial::InvalidHeaderValue)),
            (vec![("x-a", "a\x01b")], true, Some(Denial::InvalidHeaderValue)),
            (vec![("x-a", "a\tb")], true, None),
            (vec![("x-long", long.as_str())], true, Some(Denial::HeadersTooLarge)),
            (vec![("a", ""), ("b", ""), ("c", ""), ("d", ""), ("e", "")], true, Some(Denial::TooManyHeaders)),
            (vec![(":method", "POST"), ("content-type", "application/json"), ("content-length", "101")], false, Some(Denial::BodyTooLarge)),
            (vec![(":method", "POST"), ("content-type", "application/xml"), ("content-length", "5")], false, Some(Denial::UnsupportedMediaType)),
            (vec![(":method", "POST"), ("content-length", "5")], false, Some(Denial::UnsupportedMediaType)),
            (vec![(":method", "POST"), ("content-type", "Application/JSON; charset=utf-8"), ("content-length", "5")], false, None),
            (vec![(":method", "POST"), ("content-length", "0")], false, None),
            (vec![(":method", "POST")], true, None),
        ];
        for (pairs, eos, want) in cases {
            assert_eq!(denial(check_request(&req(&pairs), eos, &p)), want, "{pairs:?}");
        }
    }

    /// Found by the attack catalog (tests/tests/attacks.rs): overlong UTF-8 escapes and
    /// joined Host lines passed the request checks.
    #[test]
    fn overlong_escapes_and_joined_hosts_are_refused() {
        let p = policy("");
        use shared::pathmatch::PathError as E;
        let bad = Some(Denial::InvalidPath(E::BadPercentEncoding));
        let cases: Vec<(&str, &str, Option<Denial>)> = vec![
            ("/products/x%c0%af..%c0%afadmin", "x", bad),
            ("/products/%c0%ae%c0%ae/admin", "x", bad),
            ("/a/%e0%80%af", "x", bad),
            ("/a/%ed%a0%80", "x", bad),
            ("/a/%ff", "x", bad),
            ("/a/%c3", "x", bad),
            ("/caf%C3%A9/%ef%bc%8f", "x", None),
            ("/a?q=%c0%af%ff", "x", None),
            ("/a", "localhost,admin.internal", Some(Denial::InvalidHeaderValue)),
            ("/a", "localhost, admin.internal", Some(Denial::InvalidHeaderValue)),
            ("/a", "user@evil.example", Some(Denial::InvalidHeaderValue)),
            ("/a", "a.example:80:81", Some(Denial::InvalidHeaderValue)),
            ("/a", "a.example:", Some(Denial::InvalidHeaderValue)),
            ("/a", "[::1", Some(Denial::InvalidHeaderValue)),
            ("/a", "[zz]:80", Some(Denial::InvalidHeaderValue)),
            ("/a", "", None),
            ("/a", "API.Example.com", None),
            ("/a", "svc_1.ns.svc.cluster.local:8080", None),
            ("/a", "127.0.0.1:10000", None),
            ("/a", "[::1]:443", None),
            ("/a", "[2001:db8::1]", None),
        ];
        for (path, authority, want) in cases {
            let h = req(&[(":path", path), (":authority", authority)]);
            assert_eq!(denial(check_request(&h, true, &p)), want, "{path} {authority}");
        }
    }

    #[test]
    fn method_override_modes() {
        let h = req(&[(":method", "POST"), ("x-http-method-override", "DELETE")]);
        match check_request(&h, true, &policy("")) {
            RequestDecision::Allow { remove, .. } => assert_eq!(remove, vec!["x-http-method-override"]),
            other => panic!("{other:?}"),
        }
        let p = policy(r#"{"request": {"method_override": "reject"}}"#);
        assert_eq!(denial(check_request(&h, true, &p)), Some(Denial::MethodOverride));
        let p = policy(r#"{"request": {"method_override": "allow"}}"#);
        assert!(matches!(check_request(&h, true, &p), RequestDecision::Allow { ref remove, .. } if remove.is_empty()));
    }

    #[test]
    fn cors_preflight_and_actual() {
        let p = policy(
            r#"{"cors": {"allow_origins": ["https://app.example.com", "https://*.example.org"],
                 "allow_methods": ["GET", "POST"], "allow_headers": ["authorization", "content-type"],
                 "allow_credentials": true, "max_age_s": 60}}"#,
        );
        let pre = |origin: &str, method: &str, hdrs: &str| {
            check_request(
                &req(&[(":method", "OPTIONS"), ("origin", origin), ("access-control-request-method", method), ("access-control-request-headers", hdrs)]),
                true,
                &p,
            )
        };
        match pre("https://app.example.com", "POST", "Content-Type, Authorization") {
            RequestDecision::Preflight(h) => {
                assert!(h.contains(&("access-control-allow-origin", "https://app.example.com".into())));
                assert!(h.contains(&("access-control-allow-credentials", "true".into())));
                assert!(h.contains(&("access-control-max-age", "60".into())));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(denial(pre("https://evil.example.com", "POST", "")), Some(Denial::CorsOriginNotAllowed));
        assert_eq!(denial(pre("https://app.example.com", "DELETE", "")), Some(Denial::CorsMethodNotAllowed));
        assert_eq!(denial(pre("https://app.example.com", "GET", "x-secret")), Some(Denial::CorsHeaderNotAllowed));
        assert!(matches!(pre("https://a.example.org", "GET", ""), RequestDecision::Preflight(_)));

        let actual = check_request(&req(&[("origin", "https://app.example.com")]), true, &p);
        assert!(matches!(actual, RequestDecision::Allow { cors_origin: Some(ref o), .. } if o == "https://app.example.com"));
        let actual = check_request(&req(&[("origin", "https://evil.com")]), true, &p);
        assert!(matches!(actual, RequestDecision::Allow { cors_origin: None, .. }));
    }

    #[test]
    fn response_is_hardened() {
        let p = policy(r#"{"cors": {"allow_origins": ["https://app.example.com"], "expose_headers": ["x-id"]}}"#);
        let up = Headers::from_pairs([
            (":status", "200"),
            ("server", "nginx/1.2"),
            ("x-powered-by", "PHP"),
            ("x-frame-options", "ALLOWALL"),
            ("access-control-allow-origin", "*"),
            ("content-type", "application/json"),
        ]);
        let out = harden_response(&up, &p, CorsReply::Upstream(Some("https://app.example.com")));
        let get = |n: &str| out.iter().filter(|(k, _)| k == n).map(|(_, v)| String::from_utf8(v.clone()).unwrap()).collect::<Vec<_>>();
        assert_eq!(get(":status"), vec!["200"]);
        assert!(get("server").is_empty());
        assert!(get("x-powered-by").is_empty());
        assert_eq!(get("x-frame-options"), vec!["DENY"]);
        assert_eq!(get("access-control-allow-origin"), vec!["https://app.example.com"]);
        assert_eq!(get("access-control-expose-headers"), vec!["x-id"]);
        assert_eq!(get("vary"), vec!["origin"]);
        assert_eq!(get("strict-transport-security"), vec!["max-age=31536000; includeSubDomains"]);

        let keep = policy(r#"{"upstream_headers": "keep"}"#);
        let out = harden_response(&up, &keep, CorsReply::Upstream(None));
        let xfo: Vec<_> = out.iter().filter(|(k, _)| k == "x-frame-options").collect();
        assert_eq!(xfo.len(), 1);
        assert_eq!(xfo[0].1, b"ALLOWALL");
    }
}
