//! hmac_signing through the real Envoy, with requests signed by an independent RFC 9421
//! implementation (the PyPI package `http-message-signatures`, `tests/peers/hmac_sign.py`):
//! valid requests reach the echo upstream; tampered method, path, query, header, body and
//! timestamps, replays, unknown keys and missing coverage are refused with their codes;
//! the RFC 9421 B.2.5 vector verifies; hashed API keys; a secret from the VM environment;
//! body limits over chunked bodies and trailers; response signatures the peer verifies; and
//! API-key / signing-key scopes feeding rbac.

use e2e::{peer, python, Envoy, EnvoyBuilder, Filter, Request, Response};
use serde_json::{json, Value};

const HOST: &str = "api.example.com";
/// RFC 9421 appendix B.1.5 shared secret; here also partner-a's key.
const SECRET_A: &str = "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";
/// partner-b's key, delivered only through the VM environment.
const SECRET_B: &str = "QPvMpWx9Qxc4F+pZ5cJsHoxYsPLSI1Yy48hO8S5m1ec=";
const GATEWAY_SECRET: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const API_KEY: &str = "rk_live_reporting_7f3a9c";
/// `printf %s rk_live_reporting_7f3a9c | sha256sum`
const API_KEY_SHA256: &str = "d1e5b916a1b2dc27655bff274f6e1ac6d6afe547ab663f7f5f3e03014d79d0f3";
const OTHER_KEY: &str = "rk_live_other_scope_11";
/// `printf %s rk_live_other_scope_11 | sha256sum`
const OTHER_KEY_SHA256: &str = "ae7f70005d49c97361deab6a53783fa339d7a5c4d1f241818adfa2e007b38c30";

fn config() -> Value {
    json!({
      "keys": {
        "partner-a": {"secret_base64": SECRET_A, "scopes": ["orders:write"]},
        "partner-b": {"secret_env": "PARTNER_B_SECRET", "scopes": ["orders:read"]}
      },
      "required_components": ["@method", "@target-uri"],
      "max_age_s": 300,
      "clock_skew_s": 30,
      "require_content_digest": true,
      "api_keys": {
        "header": "x-api-key",
        "sha256": {
          API_KEY_SHA256: {"id": "reporting", "scopes": ["orders:read"]},
          OTHER_KEY_SHA256: {"id": "other", "scopes": ["other:read"]}
        }
      },
      "rules": [
        {"prefix": "/health", "require": "none"},
        {"prefix": "/webhooks/", "require": "signature"},
        {"prefix": "/reports/", "require": "api_key"},
        {"prefix": "/", "require": "any"}
      ]
    })
}

fn hmac_filter(config: Value) -> Filter {
    Filter::new("hmac_signing", config).env("PARTNER_B_SECRET", SECRET_B)
}

/// A signing job for the peer: partner-a, `@method @target-uri`, fresh `created`.
fn job(method: &str, path: &str) -> Value {
    json!({
        "method": method,
        "url": format!("http://{HOST}{path}"),
        "headers": {},
        "keyid": "partner-a",
        "secret_b64": SECRET_A,
        "components": ["@method", "@target-uri"],
    })
}

fn with(mut j: Value, patch: Value) -> Value {
    if let (Some(o), Some(p)) = (j.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            o.insert(k.clone(), v.clone());
        }
    }
    j
}

/// Sign every job with the independent peer (one Python run).
fn sign(jobs: &[Value]) -> Vec<Vec<(String, String)>> {
    let out = python(&peer("hmac_sign.py"), &["sign", &Value::from(jobs.to_vec()).to_string()]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("peer output {out:?}: {e}"));
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect())
        .collect()
}

fn request(method: &str, path: &str, headers: &[(String, String)], body: &[u8]) -> Request {
    let mut r = Request::new(method, path).header("host", HOST);
    for (k, v) in headers {
        r = r.header(k, v);
    }
    r.body(body.to_vec())
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> &'a str {
    h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no {name} in {h:?}"))
}

fn replace(h: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    h.iter().map(|(k, v)| (k.clone(), if k.eq_ignore_ascii_case(name) { value.to_string() } else { v.clone() })).collect()
}

#[track_caller]
fn assert_refused(r: &Response, status: u16, code: &str) {
    assert_eq!(r.status, status, "expected {status} {code}, got {} {}", r.status, r.text());
    assert_eq!(r.code(), code, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
}

/// What the echo upstream saw.
fn echoed(r: &Response) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn echoed_header(r: &Response, name: &str) -> Option<String> {
    echoed(r)["headers"].as_array().unwrap().iter().find(|p| p[0].as_str().is_some_and(|k| k.eq_ignore_ascii_case(name))).and_then(|p| p[1].as_str().map(String::from))
}

#[test]
fn signed_requests_pass_and_every_tampering_fails() {
    let envoy = Envoy::start(vec![hmac_filter(config())]);
    let body = r#"{"order": 42, "qty": 1}"#;
    let jobs = vec![
        /* 0 */ job("GET", "/webhooks/orders?since=2026-01-01&Pet=dog"),
        /* 1 */ with(job("POST", "/webhooks/orders"), json!({"body": body, "digest": "sha-256", "headers": {"Content-Type": "application/json"}, "components": ["@method", "@target-uri", "content-type"]})),
        /* 2 */ with(job("PUT", "/webhooks/orders/7"), json!({"body": body, "digest": "sha-512"})),
        /* 3 */ with(job("GET", "/webhooks/b"), json!({"keyid": "partner-b", "secret_b64": SECRET_B})),
        /* 4 */ with(job("GET", "/webhooks/t"), json!({"headers": {"X-Tenant": "t1"}, "components": ["@method", "@target-uri", "x-tenant", "\"@query-param\";name=\"a\"", "@authority", "@path", "@query", "@scheme", "@request-target"], "url": format!("http://{HOST}/webhooks/t?a=1&b=2")})),
        /* 5 */ with(job("GET", "/webhooks/old"), json!({"created_in": -1000})),
        /* 6 */ with(job("GET", "/webhooks/future"), json!({"created_in": 1000})),
        /* 7 */ with(job("GET", "/webhooks/exp"), json!({"expires_in": -100})),
        /* 8 */ with(job("POST", "/webhooks/nodigest"), json!({})),
        /* 9 */ with(job("GET", "/webhooks/partial"), json!({"components": ["@method"]})),
        /* 10 */ with(job("GET", "/webhooks/nobody"), json!({"keyid": "nobody"})),
        /* 11 */ with(job("GET", "/webhooks/wrongkey"), json!({"secret_b64": SECRET_B})),
        /* 12 */ with(job("GET", "/api/any"), json!({"include_alg": false})),
    ];
    let signed = sign(&jobs);
    let s = |i: usize| signed[i].clone();

    // Valid requests reach the upstream, exactly as sent.
    let r = envoy.send(request("GET", "/webhooks/orders?since=2026-01-01&Pet=dog", &s(0), b""));
    assert_eq!(echoed(&r)["path"], "/webhooks/orders?since=2026-01-01&Pet=dog");
    assert_eq!(echoed_header(&r, "signature").as_deref(), Some(header(&s(0), "signature")), "signatures go upstream untouched");
    let r = envoy.send(request("POST", "/webhooks/orders", &s(1), body.as_bytes()));
    assert_eq!(echoed(&r)["body"], body);
    let r = envoy.send(request("PUT", "/webhooks/orders/7", &s(2), body.as_bytes()));
    assert!(header(&s(2), "content-digest").starts_with("sha-512="));
    assert_eq!(echoed(&r)["body"], body);
    assert_eq!(envoy.send(request("GET", "/webhooks/b", &s(3), b"")).status, 200, "partner-b's secret comes from the VM environment");
    assert_eq!(envoy.send(request("GET", "/webhooks/t?a=1&b=2", &s(4), b"")).status, 200, "every derived component and a header field");
    assert_eq!(envoy.send(request("GET", "/api/any", &s(12), b"")).status, 200, "alg may be omitted (the key's algorithm)");
    let passed = envoy.upstream.count();
    assert_eq!(passed, 6);

    // Tampering.
    assert_refused(&envoy.send(request("DELETE", "/webhooks/orders?since=2026-01-01&Pet=dog", &s(0), b"")), 401, "signature_invalid");
    assert_refused(&envoy.send(request("GET", "/webhooks/orderz?since=2026-01-01&Pet=dog", &s(0), b"")), 401, "signature_invalid");
    assert_refused(&envoy.send(request("GET", "/webhooks/orders?since=2027-01-01&Pet=dog", &s(0), b"")), 401, "signature_invalid");
    assert_refused(&envoy.send(request("GET", "/webhooks/orders?since=2026-01-01&Pet=dog", &s(0), b"").header("host", "evil.example.com")), 401, "signature_invalid");
    assert_refused(&envoy.send(request("GET", "/webhooks/t?a=1&b=2", &replace(&s(4), "x-tenant", "t2"), b"")), 401, "signature_invalid");
    assert_refused(&envoy.send(request("GET", "/webhooks/t?a=2&b=2", &s(4), b"")), 401, "signature_invalid");
    assert_refused(&envoy.send(request("POST", "/webhooks/orders", &replace(&s(1), "content-type", "text/plain"), body.as_bytes())), 401, "signature_invalid");
    // Body: same length, different bytes; the signed digest no longer matches. Never upstream.
    let evil = r#"{"order": 42, "qty": 9}"#;
    assert_refused(&envoy.send(request("POST", "/webhooks/orders", &s(1), evil.as_bytes())), 400, "digest_mismatch");
    assert_refused(&envoy.send(request("PUT", "/webhooks/orders/7", &s(2), evil.as_bytes())), 400, "digest_mismatch");
    // Re-computing the digest for the new body breaks the signature instead.
    let recomputed = sign(&[with(job("POST", "/x"), json!({"body": evil, "digest": "sha-256"}))]);
    assert_refused(&envoy.send(request("POST", "/webhooks/orders", &replace(&s(1), "content-digest", header(&recomputed[0], "content-digest")), evil.as_bytes())), 401, "signature_invalid");
    // Timestamps: old, future, expired, and a fresh `created` edited into the input.
    assert_refused(&envoy.send(request("GET", "/webhooks/old", &s(5), b"")), 401, "signature_expired");
    assert_refused(&envoy.send(request("GET", "/webhooks/future", &s(6), b"")), 401, "signature_not_yet_valid");
    assert_refused(&envoy.send(request("GET", "/webhooks/exp", &s(7), b"")), 401, "signature_expired");
    let input = header(&s(0), "signature-input").to_string();
    let created: u64 = input.split(";created=").nth(1).and_then(|r| r.split(';').next()).and_then(|n| n.parse().ok()).unwrap();
    let edited = input.replace(&format!(";created={created}"), &format!(";created={}", created - 1));
    assert_refused(&envoy.send(request("GET", "/webhooks/orders?since=2026-01-01&Pet=dog", &replace(&s(0), "signature-input", &edited), b"")), 401, "signature_invalid");
    // Policy.
    assert_refused(&envoy.send(request("POST", "/webhooks/nodigest", &s(8), b"payload")), 400, "digest_missing");
    assert_refused(&envoy.send(request("GET", "/webhooks/partial", &s(9), b"")), 401, "component_not_covered");
    assert_refused(&envoy.send(request("GET", "/webhooks/nobody", &s(10), b"")), 401, "unknown_key");
    assert_refused(&envoy.send(request("GET", "/webhooks/wrongkey", &s(11), b"")), 401, "signature_invalid");
    let r = envoy.send(request("GET", "/webhooks/x", &[], b""));
    assert_refused(&r, 401, "signature_missing");
    assert!(r.header("www-authenticate").is_some());
    assert_refused(&envoy.send(request("GET", "/webhooks/x", &replace(&s(0), "signature-input", &input.replace("hmac-sha256", "ed25519")), b"")), 401, "algorithm_mismatch");
    assert_refused(&envoy.send(request("GET", "/webhooks/x", &replace(&s(0), "signature", "sig1=\"nope\""), b"")), 401, "signature_malformed");

    assert_eq!(envoy.upstream.count(), passed, "no refused request reached the upstream");
    assert!(envoy.upstream.requests().iter().all(|r| !String::from_utf8_lossy(&r.body).contains("\"qty\": 9")));
    assert_eq!(envoy.metric("hmac_signing", "allowed_signature"), 6);
    assert_eq!(envoy.metric("hmac_signing", "body_verified"), 2);
    assert_eq!(envoy.metric("hmac_signing", "denied.signature_invalid"), 10);
    assert_eq!(envoy.metric("hmac_signing", "denied.digest_mismatch"), 2);
    assert_eq!(envoy.metric("hmac_signing", "denied.signature_expired"), 2);
    let logs = envoy.logs();
    assert_eq!(logs.lines().filter(|l| l.contains(r#""code":"digest_mismatch","event":"deny","filter":"hmac_signing""#)).count(), 2, "one audit line per denial");
    assert!(!logs.contains(SECRET_A) && !logs.contains(SECRET_B), "secrets never logged");
}

#[test]
fn replays_are_refused_across_workers() {
    let mut cfg = config();
    cfg["require_nonce"] = json!(true);
    let envoy = EnvoyBuilder::default().concurrency(2).filter(hmac_filter(cfg)).start();
    let signed = sign(&[
        with(job("GET", "/webhooks/r"), json!({"nonce": "n-0001"})),
        with(job("GET", "/webhooks/r"), json!({"nonce": "n-0002"})),
        job("GET", "/webhooks/r"),
        with(job("GET", "/webhooks/r"), json!({"nonce": "n-0003", "keyid": "partner-b", "secret_b64": SECRET_B})),
        // Same nonce, another key: a different pair.
        with(job("GET", "/webhooks/r"), json!({"nonce": "n-0001", "keyid": "partner-b", "secret_b64": SECRET_B})),
    ]);
    // Each request is a new connection; with two workers they are spread over both.
    let statuses: Vec<u16> = (0..6).map(|_| envoy.send(request("GET", "/webhooks/r", &signed[0], b"")).status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    let r = envoy.send(request("GET", "/webhooks/r", &signed[0], b""));
    assert_refused(&r, 401, "replay");
    assert_eq!(envoy.send(request("GET", "/webhooks/r", &signed[1], b"")).status, 200);
    assert_refused(&envoy.send(request("GET", "/webhooks/r", &signed[2], b"")), 401, "nonce_missing");
    assert_eq!(envoy.send(request("GET", "/webhooks/r", &signed[3], b"")).status, 200);
    assert_eq!(envoy.send(request("GET", "/webhooks/r", &signed[4], b"")).status, 200);
    assert_eq!(envoy.metric("hmac_signing", "denied.replay"), 6);
    assert_eq!(envoy.upstream.count(), 4);
}

#[test]
fn rfc_9421_b_2_5_vector_verifies() {
    // The RFC's request of 2021: allow its age, and do not require a covered digest (B.2.5
    // covers date, @authority and content-type only). Its Content-Digest is still checked.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let cfg = json!({
        "keys": {"test-shared-secret": {"secret_base64": SECRET_A}},
        "required_components": [],
        "max_age_s": now - 1618884473 + 3600,
        "require_content_digest": false,
        "rules": [{"prefix": "/", "require": "signature"}]
    });
    let envoy = Envoy::start(vec![Filter::new("hmac_signing", cfg)]);
    let b2 = |date: &str, body: &str| {
        Request::post("/foo?param=Value&Pet=dog")
            .header("Host", "example.com")
            .header("Date", date)
            .header("Content-Type", "application/json")
            .header("Content-Digest", "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:")
            .header("Signature-Input", r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#)
            .header("Signature", "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:")
            .body(body.to_string())
    };
    let r = envoy.send(b2("Tue, 20 Apr 2021 02:07:55 GMT", r#"{"hello": "world"}"#));
    assert_eq!(echoed(&r)["body"], r#"{"hello": "world"}"#);
    assert_refused(&envoy.send(b2("Tue, 20 Apr 2021 02:07:56 GMT", r#"{"hello": "world"}"#)), 401, "signature_invalid");
    assert_refused(&envoy.send(b2("Tue, 20 Apr 2021 02:07:55 GMT", r#"{"hello": "World"}"#)), 400, "digest_mismatch");
    assert_eq!(envoy.upstream.count(), 1);
}

#[test]
fn api_keys_are_checked_by_hash_and_never_forwarded() {
    let envoy = Envoy::start(vec![hmac_filter(config())]);
    let r = envoy.send(Request::get("/reports/daily").header("x-api-key", API_KEY));
    assert_eq!(echoed(&r)["path"], "/reports/daily");
    assert_eq!(echoed_header(&r, "x-api-key"), None, "the key stays at the gateway");
    assert_refused(&envoy.send(Request::get("/reports/daily").header("x-api-key", "rk_live_reporting_7f3a9d")), 401, "api_key_invalid");
    assert_refused(&envoy.send(Request::get("/reports/daily").header("x-api-key", API_KEY_SHA256)), 401, "api_key_invalid");
    assert_refused(&envoy.send(Request::get("/reports/daily").header("x-api-key", API_KEY).header("x-api-key", API_KEY)), 401, "api_key_invalid");
    let r = envoy.send(Request::get("/reports/daily"));
    assert_refused(&r, 401, "api_key_missing");
    assert_eq!(r.header("www-authenticate"), Some("ApiKey"));
    // Rule `any` accepts an API key; with nothing at all it says so.
    assert_eq!(envoy.send(Request::get("/api/x").header("x-api-key", API_KEY)).status, 200);
    assert_refused(&envoy.send(Request::get("/api/x")), 401, "credentials_missing");
    // A signature path does not take an API key.
    assert_refused(&envoy.send(Request::get("/webhooks/x").header("x-api-key", API_KEY)), 401, "signature_missing");
    // Public rule, ambiguous paths.
    assert_eq!(envoy.send(Request::get("/health")).status, 200);
    assert_refused(&envoy.send(Request::get("/health/../reports/daily")), 400, "path_dot_segment");
    assert_eq!(envoy.metric("hmac_signing", "allowed_api_key"), 2);
    assert_eq!(envoy.metric("hmac_signing", "allowed_anonymous"), 1);
    assert_eq!(envoy.metric("hmac_signing", "denied.api_key_invalid"), 3);
    assert_eq!(envoy.upstream.count(), 3);
    assert!(!envoy.logs().contains(API_KEY), "raw API keys never logged");
}

#[test]
fn bodies_are_buffered_within_limits_including_chunked_and_trailers() {
    let mut cfg = config();
    cfg["max_body_bytes"] = json!(64);
    let envoy = EnvoyBuilder::default().filter(hmac_filter(cfg)).hcm("http_protocol_options", json!({"enable_trailers": true})).start();
    let small = "a".repeat(40);
    let big = "b".repeat(100);
    let signed = sign(&[
        with(job("POST", "/webhooks/small"), json!({"body": small, "digest": "sha-256"})),
        with(job("POST", "/webhooks/big"), json!({"body": big, "digest": "sha-256"})),
    ]);
    // Chunked, in several pieces: buffered, verified, then forwarded whole.
    let pieces: Vec<Vec<u8>> = small.as_bytes().chunks(7).map(<[u8]>::to_vec).collect();
    let mut req = request("POST", "/webhooks/small", &signed[0], b"");
    req = req.chunked(pieces.clone(), std::time::Duration::from_millis(5));
    assert_eq!(echoed(&envoy.send(req))["body"], small.as_str());
    // Chunked with one byte changed.
    let mut tampered = pieces.clone();
    tampered[2][0] = b'z';
    let req = request("POST", "/webhooks/small", &signed[0], b"").chunked(tampered, std::time::Duration::from_millis(5));
    assert_refused(&envoy.send(req), 400, "digest_mismatch");
    // Too large: by content-length at once, and by counting a chunked body.
    assert_refused(&envoy.send(request("POST", "/webhooks/big", &signed[1], big.as_bytes())), 413, "body_too_large");
    let req = request("POST", "/webhooks/big", &signed[1], b"").chunked(big.as_bytes().chunks(30).map(<[u8]>::to_vec).collect(), std::time::Duration::from_millis(5));
    assert_refused(&envoy.send(req), 413, "body_too_large");
    // With trailers the body callback never sees end_of_stream: finished in the trailers.
    for (body, want) in [(small.clone(), 200u16), (small.replace('a', "c"), 400)] {
        let mut raw = format!("POST /webhooks/small HTTP/1.1\r\nhost: {HOST}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n");
        for (k, v) in &signed[0] {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str(&format!("\r\n{:x}\r\n{body}\r\n0\r\nx-trailer: t\r\n\r\n", body.len()));
        let r = envoy.send_raw(raw.as_bytes()).unwrap();
        assert_eq!(r.status, want, "{}", r.text());
        if want == 200 {
            assert_eq!(echoed(&r)["body"], small.as_str());
        } else {
            assert_eq!(r.code(), "digest_mismatch");
        }
    }
    assert_eq!(envoy.upstream.count(), 2);
    assert_eq!(envoy.metric("hmac_signing", "denied.body_too_large"), 2);
}

#[test]
fn bad_configs_are_refused_naming_the_field() {
    // The env secret is missing: the plugin refuses to load, naming the field, not the value.
    let err = Envoy::builder().filter(Filter::new("hmac_signing", config())).try_start().err().expect("config must be refused");
    assert!(err.contains("hmac_signing: invalid configuration at 'keys.partner-b.secret_env'"), "{}", e2e::tail(&err, 30));
    let mut cfg = config();
    cfg["keys"]["partner-a"]["secret_base64"] = json!("c2hvcnQ=");
    cfg["rules"][0]["require"] = json!("everyone");
    let err = Envoy::builder().filter(hmac_filter(cfg)).try_start().err().expect("config must be refused");
    assert!(err.contains("invalid configuration at 'rules[0].require'"), "{}", e2e::tail(&err, 30));
    let mut cfg = config();
    cfg["keys"]["partner-a"]["secret_base64"] = json!("c2hvcnQ=");
    cfg["unknown"] = json!(1);
    let err = Envoy::builder().filter(hmac_filter(cfg)).try_start().err().expect("config must be refused");
    assert!(err.contains("invalid configuration at 'unknown'"), "{}", e2e::tail(&err, 30));
    let mut cfg = config();
    cfg["keys"]["partner-a"]["secret_base64"] = json!("c2hvcnQ=");
    let err = Envoy::builder().filter(hmac_filter(cfg)).try_start().err().expect("config must be refused");
    assert!(err.contains("invalid configuration at 'keys.partner-a.secret_base64'"), "{}", e2e::tail(&err, 30));
    assert!(!err.contains(SECRET_B), "secrets never logged");
}

#[test]
fn responses_are_signed_for_clients_to_verify() {
    let mut cfg = config();
    cfg["response_signing"] = json!({"keyid": "gateway-2026", "secret_env": "GATEWAY_SECRET", "components": ["@status", "content-type", "content-length"]});
    let envoy = Envoy::start(vec![hmac_filter(cfg).env("GATEWAY_SECRET", GATEWAY_SECRET)]);
    let r = envoy.send(Request::get("/reports/x").header("x-api-key", API_KEY));
    assert_eq!(r.status, 200);
    let verify = |r: &Response, require: Value| -> Value {
        let job = json!({"status": r.status, "headers": r.headers, "keyid": "gateway-2026", "secret_b64": GATEWAY_SECRET, "require": require});
        serde_json::from_str(&python(&peer("hmac_sign.py"), &["verify_response", &job.to_string()])).unwrap()
    };
    let v = verify(&r, json!(["@status", "content-type"]));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["keyid"], "gateway-2026");
    // Our own refusals are signed too; a changed status does not verify.
    let mut denied = envoy.send(Request::get("/reports/x"));
    assert_eq!(denied.status, 401);
    assert_eq!(verify(&denied, json!(["@status"]))["ok"], true);
    denied.status = 200;
    let v = verify(&denied, json!(["@status"]));
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(envoy.metric("hmac_signing", "responses_signed"), 2);
}

#[test]
fn key_scopes_feed_rbac() {
    let rbac = json!({
        "roles": {"reader": {"permissions": ["orders:read"]}, "writer": {"permissions": ["orders:write"]}},
        "rules": [
            {"prefix": "/reports/", "methods": ["GET"], "permission": "orders:read"},
            {"prefix": "/api/orders", "methods": ["POST"], "permission": "orders:write"},
            {"prefix": "/", "public": true}
        ]
    });
    let envoy = Envoy::start(vec![hmac_filter(config()), Filter::new("rbac", rbac)]);
    assert_eq!(envoy.send(Request::get("/reports/daily").header("x-api-key", API_KEY)).status, 200, "API key scope orders:read");
    assert_refused(&envoy.send(Request::get("/reports/daily").header("x-api-key", OTHER_KEY)), 403, "permission_denied");
    let body = r#"{"order": 1}"#;
    let signed = sign(&[
        with(job("POST", "/api/orders"), json!({"body": body, "digest": "sha-256"})),
        with(job("POST", "/api/orders"), json!({"body": body, "digest": "sha-256", "keyid": "partner-b", "secret_b64": SECRET_B})),
    ]);
    assert_eq!(envoy.send(request("POST", "/api/orders", &signed[0], body.as_bytes())).status, 200, "partner-a scope orders:write");
    assert_refused(&envoy.send(request("POST", "/api/orders", &signed[1], body.as_bytes())), 403, "permission_denied");
    assert_eq!(envoy.upstream.count(), 2);
}
