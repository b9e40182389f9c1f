//! The seeds' story through the whole chain, running `envoy-config/envoy.yaml` itself (the
//! file `scripts/run` uses) with only its addresses rewritten: anonymous callers rate limited,
//! login, JWT verified, the RBAC endpoint matrix, a signed partner webhook, an API key, PII
//! masked in responses, and security headers on every response including 401/403/429.

use e2e::{peer, python, root, Envoy, Request, Response, UpResponse, Upstream};
use serde_json::{json, Value};
use std::sync::OnceLock;

/// Demo partner secret (32 bytes, base64), handed to Envoy through its environment.
const PARTNER_SECRET: &str = "cGFydG5lci1hLXNlY3JldC1mb3ItdGhlLWNoYWluLXRlc3Q=";
/// The API key whose SHA-256 is in envoy.yaml.
const API_KEY: &str = "demo-reporting-key-change-me";

fn issuer() -> &'static Value {
    static I: OnceLock<Value> = OnceLock::new();
    I.get_or_init(|| serde_json::from_str(&python(&peer("chain_tokens.py"), &[])).expect("peer output"))
}

fn token(name: &str) -> String {
    issuer()["tokens"][name].as_str().expect("token").to_string()
}

const PII_RECORD: &str = r#"{"name": "Alice Example", "email": "alice@example.com", "phone": "+14155552671",
  "ssn": "123-45-6789", "card_number": "4111 1111 1111 1111", "password": "hunter2", "order_id": "ORD-2024-000123"}"#;

/// The demo upstream and identity provider: JWKS, a PII-bearing profile, echo otherwise.
fn upstream() -> Upstream {
    let jwks = issuer()["jwks"].to_string();
    Upstream::with_handler(move |r| match r.path.as_str() {
        "/.well-known/jwks.json" => UpResponse::new(200).header("content-type", "application/json").body(jwks.clone()),
        "/users/me" => UpResponse::new(200).header("content-type", "application/json").header("server", "demo").body(PII_RECORD),
        _ => e2e::upstream::echo(r),
    })
}

fn chain() -> Envoy {
    let up = upstream();
    Envoy::builder()
        .config_file(&root().join("envoy-config/envoy.yaml"))
        .map_cluster("demo_upstream", up.port())
        .map_cluster("idp", up.port())
        .process_env("PARTNER_A_SECRET", PARTNER_SECRET)
        .upstream(up)
        .concurrency(2)
        .start()
}

fn bearer(path: &str, who: &str) -> Request {
    Request::get(path).header("authorization", &format!("Bearer {}", token(who)))
}

fn assert_hardened(r: &Response) {
    for h in ["strict-transport-security", "content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy"] {
        assert!(r.header(h).is_some(), "{h} missing on a {} response: {:?}", r.status, r.headers);
    }
    assert_eq!(r.header("server"), None, "server header leaked on a {} response", r.status);
}

fn assert_status(r: &Response, status: u16, code: Option<&str>) {
    assert_eq!(r.status, status, "body: {}", r.text());
    assert_hardened(r);
    if let Some(code) = code {
        assert_eq!(r.code(), code, "body: {}", r.text());
    }
}

#[test]
fn anonymous_callers_login_and_are_rate_limited() {
    let e = chain();
    // Login is public; anonymous callers share a 10/min bucket per IP.
    let r = e.send(Request::post("/auth/login").json(&json!({"username": "alice", "password": "x"})));
    assert_status(&r, 200, None);
    for i in 0..9 {
        let r = e.get(&format!("/products/{i}"));
        assert_status(&r, 200, None);
        assert!(r.header("ratelimit").is_some(), "allowed responses carry RateLimit");
    }
    let r = e.get("/products/10");
    assert_status(&r, 429, Some("rate_limited"));
    assert!(r.header("retry-after").is_some_and(|v| v.parse::<u64>().is_ok()));
    assert!(r.header("ratelimit-policy").is_some_and(|v| v.contains("anonymous")), "{:?}", r.headers);
    // Authenticated callers have their own bucket: unaffected.
    assert_status(&e.send(bearer("/orders", "trader")), 200, None);
    // Protected endpoints without a token: 401 from rbac, with a challenge, headers intact.
    let r = e.get("/orders");
    assert_status(&r, 401, Some("authentication_required"));
    assert!(r.header("www-authenticate").is_some());
}

#[test]
fn jwt_and_the_rbac_endpoint_matrix() {
    let e = chain();
    // (who, method, path, status, code)
    let matrix: &[(&str, &str, &str, u16, Option<&str>)] = &[
        ("trader", "GET", "/users/me", 200, None),
        ("trader", "GET", "/orders", 200, None),
        ("trader", "POST", "/orders", 200, None),
        ("trader", "GET", "/users/42", 403, Some("role_required")),
        ("trader", "GET", "/admin/stats", 403, Some("permission_denied")),
        ("viewer", "GET", "/orders", 200, None),
        ("viewer", "POST", "/orders", 403, Some("permission_denied")),
        ("viewer", "GET", "/users/me", 200, None),
        ("admin_no_mfa", "GET", "/admin/stats", 403, Some("mfa_required")),
        ("admin_mfa", "GET", "/admin/stats", 200, None),
        ("admin_mfa", "GET", "/users/42", 200, None),
        ("admin_mfa", "DELETE", "/orders", 403, Some("no_matching_rule")),
        ("refresh_30d", "GET", "/orders", 401, None),
        ("expired", "GET", "/orders", 401, Some("token_expired")),
        ("forged", "GET", "/admin/stats", 401, Some("signature_invalid")),
    ];
    for (who, method, path, status, code) in matrix {
        let req = Request::new(method, path).header("authorization", &format!("Bearer {}", token(who)));
        let req = if *method == "POST" { req.json(&json!({"sku": "X1", "qty": 1})) } else { req };
        let r = e.send(req);
        assert_eq!(r.status, *status, "{who} {method} {path}: {}", r.text());
        assert_hardened(&r);
        if let Some(code) = code {
            assert_eq!(r.code(), *code, "{who} {method} {path}");
        }
        if r.status == 401 {
            assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{who} {path}");
        }
    }
    // The token never reaches upstream; forged role headers change nothing.
    let r = e.send(bearer("/orders", "trader").header("x-role", "admin").header("role", "admin"));
    assert_eq!(r.status, 200);
    let seen = e.upstream.last().expect("reached upstream");
    assert_eq!(seen.header("authorization"), None);
    let r = e.send(bearer("/users/42", "trader").header("x-role", "admin").header("x-jwt-role", "admin"));
    assert_status(&r, 403, Some("role_required"));
    // Path tricks cannot reach admin endpoints.
    for p in ["/orders/../admin/stats", "/orders/%2e%2e/admin/stats", "/admin%2fstats"] {
        let r = e.send(bearer(p, "trader"));
        assert_status(&r, 400, None);
    }
}

#[test]
fn partners_sign_webhooks_and_use_api_keys() {
    let e = chain();
    let body = r#"{"order": "ORD-1", "status": "shipped"}"#;
    let job = json!({
        "method": "POST", "url": "http://api.example.com/webhooks/orders",
        "headers": {"content-type": "application/json", "host": "api.example.com"},
        "body": body, "keyid": "partner-a", "secret_b64": PARTNER_SECRET,
        "components": ["@method", "@target-uri", "content-type"], "digest": "sha-256",
    });
    let out: Value = serde_json::from_str(&python(&peer("hmac_sign.py"), &["sign", &json!([job]).to_string()])).expect("signed");
    let headers = out[0].as_object().expect("headers").clone();
    let signed = |b: &str| {
        headers.iter().fold(Request::post("/webhooks/orders").body(b.to_string()), |r, (k, v)| r.header(k, v.as_str().unwrap_or_default()))
    };
    let r = e.send(signed(body));
    assert_status(&r, 200, None);
    assert_eq!(e.upstream.last().expect("upstream").body, body.as_bytes());

    let before = e.upstream.count();
    let r = e.send(signed(r#"{"order": "ORD-1", "status": "refunded"}"#));
    assert_status(&r, 400, Some("digest_mismatch"));
    let r = e.send(Request::post("/webhooks/orders").json(&json!({"order": "ORD-1"})));
    assert_status(&r, 401, Some("signature_missing"));
    assert_eq!(e.upstream.count(), before, "refused webhooks never reach upstream");

    // API key with the reports:read scope; RBAC treats the key's scopes as permissions.
    let r = e.send(Request::get("/reports/daily").header("x-api-key", API_KEY));
    assert_status(&r, 200, None);
    assert_eq!(e.upstream.last().expect("upstream").header("x-api-key"), None, "the key is not forwarded");
    let r = e.send(Request::get("/reports/daily").header("x-api-key", "guessed-key"));
    assert_status(&r, 401, None);
    // A JWT is not an API key.
    let r = e.send(bearer("/reports/daily", "viewer"));
    assert_status(&r, 401, None);
}

#[test]
fn personal_data_is_masked_in_responses_and_metrics_are_exported() {
    let e = chain();
    let r = e.send(bearer("/users/me", "trader"));
    assert_status(&r, 200, None);
    let v = r.json();
    assert_eq!(v["email"], "a***@example.com");
    assert_eq!(v["ssn"], "[REDACTED:ssn]");
    assert!(v["card_number"].as_str().is_some_and(|c| c.ends_with("1111") && c.contains('*')), "{v}");
    assert!(v["phone"].as_str().is_some_and(|p| p.ends_with("2671") && !p.contains("415555")), "{v}");
    assert!(v.get("password").is_none(), "password removed");
    assert_eq!(v["order_id"], "ORD-2024-000123", "look-alikes untouched");
    assert_eq!(r.header("content-length").map(|l| l.parse::<usize>().ok()), Some(Some(r.body.len())));

    // Every filter's counters appear in Prometheus format under one prefix.
    let _ = e.get("/orders"); // a 401
    let wanted = [
        ("edgesec_header_hardening_allowed", 2),
        ("edgesec_rate_limit_allowed", 2),
        ("edgesec_jwt_verify_allowed", 1),
        ("edgesec_rbac_allowed", 1),
        ("edgesec_rbac_denied", 1),
        ("edgesec_pii_masking_masked_email", 1),
    ];
    let value = |prom: &str, metric: &str| -> u64 {
        prom.lines()
            .filter(|l| l.starts_with(metric) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    // The `allowed` counters (and jwt_verify's) are flushed on the filters' 500 ms tick: poll.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut prom = e.admin("/stats/prometheus");
    while wanted.iter().any(|(m, min)| value(&prom, m) < *min) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        prom = e.admin("/stats/prometheus");
    }
    for (metric, min) in wanted {
        let value = value(&prom, metric);
        assert!(value >= min, "{metric} = {value} (want >= {min}); exported:\n{}", prom.lines().filter(|l| l.contains("edgesec")).collect::<Vec<_>>().join("\n"));
    }
}
