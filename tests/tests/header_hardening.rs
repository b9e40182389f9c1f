//! header_hardening through the real Envoy: headers added and removed, CORS, every request
//! rejection with its status and JSON body, metrics, and a refused config.

use e2e::{Envoy, EnvoyBuilder, Filter, Request, UpResponse, Upstream};
use serde_json::json;
use std::time::Duration;

fn hh(config: serde_json::Value) -> Filter {
    Filter::new("header_hardening", config)
}

/// Envoy itself overwrites `server` after the filters unless told to pass it through; our
/// configs set PASS_THROUGH so the filter decides (see filters/header_hardening/README.md).
fn envoy(config: serde_json::Value) -> Envoy {
    Envoy::builder().filter(hh(config)).hcm("server_header_transformation", json!("PASS_THROUGH")).start()
}

const DEFAULTS: &[(&str, &str)] = &[
    ("strict-transport-security", "max-age=31536000; includeSubDomains"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("x-permitted-cross-domain-policies", "none"),
];

fn assert_security_headers(r: &e2e::Response) {
    for (k, v) in DEFAULTS {
        assert_eq!(r.header(k), Some(*v), "{k} on a {} response; headers {:?}", r.status, r.headers);
    }
    assert!(r.header("permissions-policy").is_some_and(|v| v.contains("camera=()")));
}

fn assert_problem(r: &e2e::Response, status: u16, code: &str) {
    assert_eq!(r.status, status, "body: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let v = r.json();
    assert_eq!(v["status"], status);
    assert_eq!(v["code"], code);
}

#[test]
fn default_config_adds_security_headers_and_removes_leaky_ones() {
    let e = envoy(json!({}));
    let r = e.get("/hello");
    assert_eq!(r.status, 200);
    assert_security_headers(&r);
    assert_eq!(r.header("server"), None, "server header must be removed");
    assert_eq!(r.header("x-powered-by"), None);
    assert_eq!(r.json()["path"], "/hello", "the echo upstream answered");
    assert!(e.wait_metric("header_hardening", "allowed", 1) >= 1);
}

#[test]
fn headers_are_overridable_removable_and_upstream_values_handled() {
    let up = Upstream::with_handler(|_| {
        UpResponse::new(200).header("x-frame-options", "ALLOWALL").header("x-internal-version", "1.2.3").header("server", "kestrel").body("ok")
    });
    let e = Envoy::builder()
        .upstream(up.clone())
        .hcm("server_header_transformation", json!("PASS_THROUGH"))
        .filter(hh(json!({
            "response_headers": {"x-frame-options": "SAMEORIGIN", "content-security-policy": null, "x-gateway": "edge"},
            "remove_response_headers": ["x-internal-version"]
        })))
        .start();
    let r = e.get("/");
    assert_eq!(r.header("x-frame-options"), Some("SAMEORIGIN"), "ours overrides upstream's by default");
    assert_eq!(r.header_all("x-frame-options").len(), 1);
    assert_eq!(r.header("content-security-policy"), None);
    assert_eq!(r.header("x-gateway"), Some("edge"));
    assert_eq!(r.header("x-internal-version"), None);
    // A custom remove list replaces the default one: `server` now passes.
    assert_eq!(r.header("server"), Some("kestrel"));

    let keep = Envoy::builder()
        .upstream(up)
        .filter(hh(json!({"upstream_headers": "keep"})))
        .start();
    let r = keep.get("/");
    assert_eq!(r.header_all("x-frame-options"), vec!["ALLOWALL"]);
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
}

#[test]
fn request_rejections_have_status_code_and_json_body() {
    let e = envoy(json!({"request": {"max_body_bytes": 64, "max_header_bytes": 2048, "max_header_count": 20}}));
    let cases: Vec<(Request, u16, &str)> = vec![
        (Request::new("TRACE", "/"), 405, "method_not_allowed"),
        (Request::post("/").header("content-type", "application/xml").body("<a/>"), 415, "unsupported_media_type"),
        (Request::post("/").body("no content type"), 415, "unsupported_media_type"),
        (Request::post("/").header("content-type", "application/json").body(vec![b'1'; 65]), 413, "body_too_large"),
        (Request::get("/").header("x-big", &"a".repeat(3000)), 431, "headers_too_large"),
        ((0..25).fold(Request::get("/"), |r, i| r.header(&format!("x-h{i}"), "1")), 431, "too_many_headers"),
        (Request::get("/a/../admin"), 400, "path_dot_segment"),
        (Request::get("/a/%2e%2e/admin"), 400, "path_encoded_dot_segment"),
        (Request::get("/admin%2fusers"), 400, "path_encoded_slash"),
        (Request::get("/admin%5Cusers"), 400, "path_encoded_slash"),
        (Request::get("/a%00b"), 400, "path_control_character"),
        (Request::get("/a%0d%0aSet-Cookie:x"), 400, "path_control_character"),
    ];
    for (req, status, code) in cases {
        let before = e.upstream.count();
        let desc = format!("{} {}", req.method, &req.path[..req.path.len().min(40)]);
        let r = e.send(req);
        assert_problem(&r, status, code);
        assert_security_headers(&r);
        assert_eq!(e.upstream.count(), before, "{desc} must not reach upstream");
    }
    let r = e.send(Request::new("TRACE", "/"));
    assert_eq!(r.header("allow"), Some("DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"));

    for (metric, min) in [
        ("denied.method_not_allowed", 2),
        ("denied.unsupported_media_type", 2),
        ("denied.body_too_large", 1),
        ("denied.headers_too_large", 2),
        ("denied.invalid_path", 6),
    ] {
        assert!(e.metric("header_hardening", metric) >= min, "{metric}: {}", e.stats());
    }
    // Allowed requests still pass.
    let ok = e.send(Request::post("/orders").json(&json!({"a": 1})));
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["body"], "{\"a\":1}");
}

#[test]
fn chunked_body_over_the_limit_is_413_and_under_passes() {
    let e = envoy(json!({"request": {"max_body_bytes": 100}}));
    let big = Request::post("/upload").header("content-type", "text/plain").chunked(vec![vec![b'x'; 60], vec![b'y'; 60]], Duration::from_millis(50));
    let r = e.send(big);
    assert_problem(&r, 413, "body_too_large");
    let small = Request::post("/upload").header("content-type", "text/plain").chunked(vec![vec![b'x'; 40], vec![b'y'; 40]], Duration::from_millis(10));
    let r = e.send(small);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body"].as_str().map(str::len), Some(80));
}

#[test]
fn raw_control_characters_never_reach_upstream() {
    let e = envoy(json!({}));
    // Envoy's HTTP/1 codec refuses NUL and other control characters before any filter runs;
    // the filter re-checks as defence in depth (unit-tested in decide.rs).
    for raw in [
        &b"GET / HTTP/1.1\r\nhost: x\r\nx-a: a\0b\r\nconnection: close\r\n\r\n"[..],
        &b"GET / HTTP/1.1\r\nhost: x\r\nx-a: a\x01b\r\nconnection: close\r\n\r\n"[..],
        &b"GET / HTTP/1.1\r\nhost: x\r\nx-a: a\x7fb\r\nconnection: close\r\n\r\n"[..],
    ] {
        let r = e.send_raw(raw).expect("response");
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(raw));
    }
    assert_eq!(e.upstream.count(), 0);
    // A raw backslash passes Envoy 1.40's HTTP/1 parser; the filter refuses it.
    let r = e.send_raw(b"GET /a\\..\\admin HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").expect("response");
    assert_problem(&r, 400, "path_backslash");
    assert_eq!(e.upstream.count(), 0);
    // Measured in Envoy 1.40: a bare CR inside a value is removed by the codec, so no CR can
    // reach a filter or upstream (no header splitting).
    let r = e.send_raw(b"GET / HTTP/1.1\r\nhost: x\r\nx-a: a\rb\r\nconnection: close\r\n\r\n").expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(e.upstream.last().and_then(|u| u.header("x-a").map(String::from)).as_deref(), Some("ab"));
}

#[test]
fn method_override_headers_are_removed_or_rejected() {
    let e = envoy(json!({}));
    let r = e.send(Request::post("/orders").header("x-http-method-override", "DELETE").header("content-length", "0"));
    assert_eq!(r.status, 200);
    let seen = e.upstream.last().expect("request reached upstream");
    assert_eq!(seen.header("x-http-method-override"), None);
    assert_eq!(seen.method, "POST");

    let strict = envoy(json!({"request": {"method_override": "reject"}}));
    let r = strict.send(Request::get("/").header("x-method-override", "DELETE"));
    assert_problem(&r, 400, "method_override_forbidden");
}

#[test]
fn cors_preflight_actual_requests_and_origin_checks() {
    let up = Upstream::with_handler(|r| {
        // A careless upstream that reflects any origin with credentials.
        let origin = r.header("origin").unwrap_or("*").to_string();
        UpResponse::new(200).header("access-control-allow-origin", &origin).header("access-control-allow-credentials", "true").body("ok")
    });
    let e = Envoy::builder()
        .upstream(up.clone())
        .filter(hh(json!({"cors": {
            "allow_origins": ["https://app.example.com", "https://*.partner.example"],
            "allow_methods": ["GET", "POST"],
            "allow_headers": ["authorization", "content-type"],
            "expose_headers": ["x-request-id"],
            "allow_credentials": true,
            "max_age_s": 300
        }})))
        .start();

    let preflight = |origin: &str, method: &str, headers: &str| {
        e.send(
            Request::new("OPTIONS", "/orders")
                .header("origin", origin)
                .header("access-control-request-method", method)
                .header("access-control-request-headers", headers),
        )
    };
    let r = preflight("https://app.example.com", "POST", "content-type, authorization");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, POST"));
    assert_eq!(r.header("access-control-allow-headers"), Some("authorization, content-type"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-max-age"), Some("300"));
    assert_security_headers(&r);
    assert_eq!(up.count(), 0, "the filter answers preflights itself");

    let r = preflight("https://eu.partner.example", "GET", "");
    assert_eq!(r.status, 204);
    assert_problem(&preflight("https://evil.example", "GET", ""), 403, "cors_origin_not_allowed");
    assert_problem(&preflight("https://partner.example", "GET", ""), 403, "cors_origin_not_allowed");
    assert_problem(&preflight("https://app.example.com", "DELETE", ""), 403, "cors_method_not_allowed");
    assert_problem(&preflight("https://app.example.com", "GET", "x-admin"), 403, "cors_header_not_allowed");
    assert_eq!(up.count(), 0);

    let r = e.send(Request::get("/orders").header("origin", "https://app.example.com"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header_all("access-control-allow-origin"), vec!["https://app.example.com"]);
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-expose-headers"), Some("x-request-id"));
    assert_eq!(r.header("vary"), Some("origin"));

    // The upstream reflected evil's origin with credentials; the gateway strips it.
    let r = e.send(Request::get("/orders").header("origin", "https://evil.example"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(r.header("access-control-allow-credentials"), None);
    assert_eq!(e.metric("header_hardening", "cors_preflight"), 2);
    assert_eq!(e.metric("header_hardening", "denied.cors_rejected"), 4);
}

#[test]
fn local_replies_of_later_filters_still_get_security_headers() {
    // First filter: hardening with a marker header. Second: a strict instance that rejects
    // DELETE with a local reply. The reply travels back through the first one's encoder.
    let e = Envoy::builder()
        .filter(hh(json!({"response_headers": {"x-hardened-by": "first"}})))
        .filter(hh(json!({"request": {"allowed_methods": ["GET"]}})))
        .start();
    let r = e.send(Request::new("DELETE", "/orders/1"));
    assert_problem(&r, 405, "method_not_allowed");
    assert_eq!(r.header("x-hardened-by"), Some("first"));
    assert_security_headers(&r);
}

#[test]
fn a_broken_config_is_refused_at_load_with_the_field_named() {
    for (config, needle) in [
        (json!({"request": {"max_body": 5}}), "invalid configuration at 'request.max_body': unknown field `max_body`"),
        (json!({"cors": {"allow_origins": ["*"], "allow_credentials": true}}), "invalid configuration at 'cors.allow_origins[0]'"),
        (json!({"request": {"allowed_methods": ["get"]}}), "invalid configuration at 'request.allowed_methods[0]'"),
        (json!("{not json"), "invalid configuration at"),
    ] {
        let err = match EnvoyBuilder::default().filter(hh(config.clone())).try_start() {
            Ok(_) => panic!("envoy accepted a broken config: {config}"),
            Err(log) => log,
        };
        assert!(err.contains(needle), "expected {needle:?} for {config} in:\n{}", e2e::tail(&err, 30));
    }
}
