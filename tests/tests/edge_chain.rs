//! edge_chain (header_hardening, rate_limit, jwt_verify and rbac inside ONE wasm filter)
//! through the real Envoy, with PyJWT tokens from `tests/peers/rbac_tokens.py`: the chain's
//! decisions and their order, security headers on every reply including each member's local
//! reply, the members' own metrics, requests parked by a callout (remote JWKS fetch,
//! rate-limit service) running the later members when they resume, the identity kept in
//! memory (and exported on request), and a bad configuration refused with member paths.

use e2e::{fixture_wasm, peer, python, Envoy, EnvoyBuilder, Filter, Request, Response, UpResponse, Upstream};
use serde_json::{json, Value};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const ISS: &str = "https://issuer.test";
const AUD: &str = "api";

/// `{"jwks": ..., "tokens": {admin, admin_no_mfa, trader, viewer, forged_admin, expired_admin}}`.
fn peer_out() -> &'static Value {
    static P: OnceLock<Value> = OnceLock::new();
    P.get_or_init(|| serde_json::from_str(&python(&peer("rbac_tokens.py"), &[ISS, AUD])).expect("peer prints JSON"))
}

fn token(name: &str) -> String {
    peer_out()["tokens"][name].as_str().expect("token").to_string()
}

fn rbac_config() -> Value {
    json!({
        "roles": {
            "admin":  {"permissions": ["*"]},
            "viewer": {"permissions": ["*:read"]}
        },
        "role_claim": "role",
        "rules": [
            {"path": "/auth/login", "methods": ["POST"], "public": true},
            {"path": "/orders", "methods": ["GET"], "permission": "orders:read"},
            {"path": "/orders", "methods": ["POST"], "permission": "orders:write"},
            {"path": "/admin/**", "permission": "admin:manage"}
        ]
    })
}

fn jwt_local() -> Value {
    json!({
        "providers": {"main": {"issuer": ISS, "audiences": [AUD], "local_jwks": peer_out()["jwks"]}},
        "rules": [{"prefix": "/", "allow_missing": true}]
    })
}

/// All four members; logins limited to 2 per hour per address.
fn full_config(jwt: Value) -> Value {
    json!({
        "header_hardening": {"request": {"max_body_bytes": 64}},
        "rate_limit": {
            "tiers": {"anonymous": {"requests": 1000, "per": "hour"}, "authenticated": {"requests": 1000, "per": "hour"}},
            "routes": [{"name": "login", "path": "/auth/login", "methods": ["POST"], "requests": 2, "per": "hour", "key": "ip"}]
        },
        "jwt_verify": jwt,
        "rbac": rbac_config()
    })
}

/// Envoy as at the edge (envoy-config/envoy.yaml): header_hardening decides about `server`.
fn builder() -> EnvoyBuilder {
    Envoy::builder().upstream(upstream()).hcm("server_header_transformation", json!("PASS_THROUGH"))
}

fn chain(config: Value) -> Filter {
    Filter::new("edge_chain", config)
}

/// A request with the named peer token (POSTs without a body carry `content-length: 0`).
fn bearer(method: &str, path: &str, who: Option<&str>) -> Request {
    let r = Request::new(method, path);
    let r = if method == "POST" { r.header("content-length", "0") } else { r };
    with_token(r, who)
}

fn with_token(r: Request, who: Option<&str>) -> Request {
    match who {
        Some(name) => r.header("authorization", &format!("Bearer {}", token(name))),
        None => r,
    }
}

fn assert_hardened(r: &Response) {
    for h in ["strict-transport-security", "content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy"] {
        assert!(r.header(h).is_some(), "{h} missing on a {} response: {:?}", r.status, r.headers);
    }
    assert_eq!(r.header("server"), None, "server header leaked on a {} response", r.status);
}

fn assert_reply(r: &Response, status: u16, code: &str) {
    assert_eq!(r.status, status, "body: {}", r.text());
    assert_eq!(r.code(), code, "body: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_hardened(r);
}

/// An upstream that names itself (`server`, removed by header_hardening) and echoes.
fn upstream() -> Upstream {
    Upstream::with_handler(|r| {
        let mut resp = e2e::upstream::echo(r);
        resp = resp.header("server", "demo/1.0");
        resp
    })
}

fn upstream_saw(r: &Response, name: &str) -> Option<String> {
    r.json()["headers"].as_array().and_then(|a| {
        a.iter().find(|p| p[0].as_str().is_some_and(|k| k.eq_ignore_ascii_case(name))).and_then(|p| p[1].as_str().map(str::to_string))
    })
}

/// Wait (bounded) until `f` holds.
fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("not reached within {limit:?}: {what}");
}

#[test]
fn one_filter_allows_denies_in_chain_order_and_hardens_every_reply() {
    let e = builder().filter(chain(full_config(jwt_local()))).concurrency(2).start();

    // A valid token with the right role: through every member to the upstream.
    let r = e.send(bearer("GET", "/orders", Some("viewer")));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_hardened(&r);
    assert!(r.header("ratelimit").is_some(), "rate_limit's RateLimit header survives header_hardening: {:?}", r.headers);
    assert_eq!(upstream_saw(&r, "authorization"), None, "jwt_verify removed the token");
    let r = e.send(bearer("GET", "/admin/users", Some("admin")));
    assert_eq!(r.status, 200, "{}", r.text());

    // A token that does not verify: jwt_verify's 401, rbac never asked.
    for bad in ["forged_admin", "expired_admin"] {
        let r = e.send(bearer("GET", "/admin/users", Some(bad)));
        assert_reply(&r, 401, if bad == "expired_admin" { "token_expired" } else { "signature_invalid" });
        assert!(r.header("www-authenticate").unwrap_or_default().starts_with("Bearer"), "{:?}", r.headers);
    }
    // A verified token whose role lacks the permission: rbac's 403.
    assert_reply(&e.send(bearer("POST", "/orders", Some("viewer"))), 403, "permission_denied");
    assert_reply(&e.send(bearer("GET", "/admin/users", Some("viewer"))), 403, "permission_denied");
    // No token on a protected route: rbac's 401 (jwt_verify lets anonymous requests pass).
    assert_reply(&e.send(bearer("GET", "/orders", None)), 401, "authentication_required");
    // header_hardening's own request checks come first.
    let r = e.send(with_token(Request::post("/orders"), Some("admin")).header("content-type", "text/plain").body("x".repeat(100)));
    assert_reply(&r, 413, "body_too_large");
    assert_reply(&e.send(bearer("GET", "/orders/%2e%2e/admin", Some("admin"))), 400, "path_encoded_dot_segment");

    // rate_limit per address, before authentication: the third login is refused.
    for _ in 0..2 {
        let r = e.send(bearer("POST", "/auth/login", None));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = e.send(bearer("POST", "/auth/login", None));
    assert_reply(&r, 429, "rate_limited");
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);

    assert_eq!(e.upstream.count(), 4, "only the allowed requests reached the upstream");

    // Each member counts under its own name.
    assert_eq!(e.wait_metric("rbac", "allowed", 4), 4, "{}", e.stats());
    assert_eq!(e.metric("rbac", "denied"), 3);
    assert_eq!(e.metric("rate_limit", "limited"), 1, "{}", e.stats());
    assert_eq!(e.metric("rate_limit", "limited.route.login"), 1);
    assert_eq!(e.metric("header_hardening", "denied.body_too_large"), 1, "{}", e.stats());
    eventually("jwt_verify's batched counters flushed", Duration::from_secs(5), || e.metric("jwt_verify", "denied") == 2);
    assert!(e.logs().contains("edge_chain: running header_hardening -> rate_limit -> jwt_verify -> rbac in one filter"));
}

#[test]
fn identity_stays_in_memory_unless_exported_and_an_earlier_filters_identity_is_seen() {
    let stub = Filter::new("identity_stub", json!({})).path(fixture_wasm("identity_stub"));
    let inner = |export: bool| chain(json!({"jwt_verify": jwt_local(), "rbac": rbac_config(), "export_identity": export}));
    let viewer_claims = json!({"source": "jwt", "provider": "test", "subject": "carol", "claims": {"sub": "carol", "role": "viewer"}}).to_string();

    // identity_stub -> edge_chain{jwt_verify, rbac} -> rbac (a separate module after it).
    let e = Envoy::builder().filter(stub.clone()).filter(inner(false)).filter(Filter::new("rbac", rbac_config())).start();
    // Set by a filter before edge_chain (no token): edge_chain's rbac reads it, and so does the later rbac.
    let r = e.send(Request::get("/orders").header("x-test-identity", &viewer_claims));
    assert_eq!(r.status, 200, "{}", r.text());
    // Verified inside edge_chain: kept in memory, so the later rbac sees an anonymous request.
    let r = e.send(bearer("GET", "/orders", Some("viewer")));
    assert_reply_plain(&r, 401, "authentication_required");
    drop(e);

    // export_identity: the later rbac sees the identity edge_chain verified.
    let e = Envoy::builder().filter(inner(true)).filter(Filter::new("rbac", rbac_config())).start();
    let r = e.send(bearer("GET", "/orders", Some("viewer")));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_reply_plain(&e.send(bearer("POST", "/orders", Some("viewer"))), 403, "permission_denied");
}

/// A rejection without header_hardening in front.
fn assert_reply_plain(r: &Response, status: u16, code: &str) {
    assert_eq!(r.status, status, "body: {}", r.text());
    assert_eq!(r.code(), code, "body: {}", r.text());
}

#[test]
fn requests_parked_for_the_first_key_fetch_resume_through_rbac() {
    let jwks = peer_out()["jwks"].to_string();
    let hold = Arc::new(AtomicBool::new(true));
    let h = hold.clone();
    let idp = Upstream::with_handler(move |_| {
        while h.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        UpResponse::new(200).header("content-type", "application/json").body(jwks.clone())
    });
    let jwt = json!({
        "providers": {"main": {"issuer": ISS, "audiences": [AUD],
            "remote_jwks": {"cluster": "idp", "authority": "idp.example", "path": "/jwks", "cache_duration_s": 300}}},
        "rules": [{"prefix": "/", "allow_missing": true}]
    });
    let e = builder().cluster("idp", idp.port()).filter(chain(full_config(jwt))).concurrency(1).start();
    let port = e.port;
    let send = move |r: Request| std::thread::spawn(move || r.send(port));
    // Three requests wait for the keys: one allowed (with a body), one rbac refuses, one forged.
    let allowed = send(with_token(Request::post("/orders"), Some("admin")).header("content-type", "text/plain").body("order body"));
    let forbidden = send(bearer("POST", "/orders", Some("viewer")));
    let forged = send(bearer("GET", "/orders", Some("forged_admin")));
    eventually("the requests are parked", Duration::from_secs(10), || e.metric("jwt_verify", "waited") >= 3);
    assert_eq!(e.upstream.count(), 0, "nothing passes while the keys load");
    hold.store(false, Ordering::SeqCst);

    let r = allowed.join().expect("thread").expect("response");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body"], "order body", "the body held during the wait reaches the upstream");
    assert_hardened(&r);
    // rbac ran after jwt_verify resumed: the viewer may not write orders.
    assert_reply(&forbidden.join().expect("thread").expect("response"), 403, "permission_denied");
    assert_reply(&forged.join().expect("thread").expect("response"), 401, "signature_invalid");
    assert_eq!(e.upstream.count(), 1);
    assert_eq!(e.metric("rbac", "denied"), 1, "{}", e.stats());
}

/// A TCP server that accepts connections and never answers: every callout to it times out.
fn silent_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming() {
            held.push(s);
        }
    });
    port
}

#[test]
fn a_rate_limit_service_callout_resumes_through_jwt_verify_and_rbac() {
    let global = |deny: bool| {
        let mut c = full_config(jwt_local());
        c["rate_limit"]["global"] = json!({"cluster": "ratelimit", "domain": "edge", "timeout_ms": 200, "failure_mode_deny": deny});
        c
    };
    let rls = silent_server();

    // The service times out, failure_mode_deny false: allowed by rate_limit, then decided by
    // the members after it.
    let e = builder().grpc_cluster("ratelimit", rls).filter(chain(global(false))).start();
    let r = e.send(bearer("GET", "/orders", Some("viewer")));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_hardened(&r);
    assert_reply(&e.send(bearer("GET", "/orders", Some("forged_admin"))), 401, "signature_invalid");
    assert_reply(&e.send(bearer("POST", "/orders", Some("viewer"))), 403, "permission_denied");
    assert_reply(&e.send(bearer("GET", "/orders", None)), 401, "authentication_required");
    assert_eq!(e.metric("rate_limit", "global.failure_allowed"), 4, "{}", e.stats());
    assert_eq!(e.upstream.count(), 1);
    drop(e);

    // failure_mode_deny true: the refusal sent from the callout's reply is hardened too.
    let e = builder().grpc_cluster("ratelimit", rls).filter(chain(global(true))).start();
    assert_reply(&e.send(bearer("GET", "/orders", Some("admin"))), 503, "rate_limit_unavailable");
    assert_eq!(e.upstream.count(), 0);
}

fn refused(config: Value) -> String {
    match EnvoyBuilder::default().filter(chain(config.clone())).try_start() {
        Ok(_) => panic!("envoy accepted {config}"),
        Err(log) => log,
    }
}

#[test]
fn a_bad_configuration_is_refused_at_load_with_member_paths() {
    let mut cfg = full_config(json!({"providers": {}}));
    cfg["rbac"]["rules"][1] = json!({"path": "/orders", "methods": ["GET"], "roles": ["superuser"]});
    cfg["header_hardening"] = json!({"request": {"allowed_methods": ["get"]}});
    let log = refused(cfg);
    for needle in [
        "edge_chain: invalid configuration at 'jwt_verify.providers'",
        "edge_chain: invalid configuration at 'rbac.rules[1].roles[0]': unknown role 'superuser'",
        "edge_chain: invalid configuration at 'header_hardening.request.allowed_methods[0]'",
    ] {
        assert!(log.contains(needle), "expected {needle:?} in:\n{}", e2e::tail(&log, 30));
    }
    let log = refused(json!({"header_hardening": {}, "pii_masking": {}}));
    assert!(log.contains("edge_chain: invalid configuration at 'pii_masking': unknown field `pii_masking`"), "{}", e2e::tail(&log, 30));
    let log = refused(json!({}));
    assert!(log.contains("edge_chain: invalid configuration at '.': at least one member is required"), "{}", e2e::tail(&log, 30));
}
