//! jwt_verify through the real Envoy, with tokens made by PyJWT (`tests/peers/jwt_tokens.py`):
//! every algorithm, every rejection class with its code, token sources, claim headers and
//! client injection, token removal, rules, a real JWKS server on loopback (first fetch,
//! rotation, outage, requests that wait), the shared verification cache (hits across
//! workers, invalidation on a key-set change, revocation, expiry while cached), and the
//! identity read by a later filter.

use e2e::{peer, python, root, Envoy, EnvoyBuilder, Filter, Request, Response, UpResponse, Upstream};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const ISS: &str = "https://issuer.example";
const AUD: &str = "orders-api";

/// Keys and public JWK Sets made once per test process by the peer.
struct Issuer {
    dir: PathBuf,
    init: Value,
}

fn issuer() -> &'static Issuer {
    static ISSUER: OnceLock<Issuer> = OnceLock::new();
    ISSUER.get_or_init(|| {
        let dir = root().join("target/e2e").join(format!("jwt-keys-{}", std::process::id()));
        let init: Value = serde_json::from_str(&python(&peer("jwt_tokens.py"), &[dir.to_str().unwrap_or_default(), "init"])).unwrap();
        Issuer { dir, init }
    })
}

fn jwks() -> Value {
    issuer().init["jwks"].clone()
}

/// Mint tokens: each item as `jwt_tokens.py mint` takes it.
fn mint(items: Value) -> Vec<String> {
    let out = python(&peer("jwt_tokens.py"), &[issuer().dir.to_str().unwrap_or_default(), "mint", &items.to_string()]);
    serde_json::from_str(&out).unwrap()
}

fn mint1(item: Value) -> String {
    mint(json!([item])).remove(0)
}

/// Standard good claims.
fn claims(sub: &str) -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": sub, "jti": format!("jti-{sub}")})
}

fn jwt(config: Value) -> Filter {
    Filter::new("jwt_verify", config)
}

fn bearer(path: &str, token: &str) -> Request {
    Request::get(path).header("authorization", &format!("Bearer {token}"))
}

/// Headers the upstream saw, from the echo body.
fn upstream_headers(r: &Response) -> Vec<(String, String)> {
    r.json()["headers"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| Some((p[0].as_str()?.to_ascii_lowercase(), p[1].as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

fn upstream_header(r: &Response, name: &str) -> Option<String> {
    upstream_headers(r).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn assert_401(r: &Response, code: &str) {
    assert_eq!(r.status, 401, "{code}: body {}", r.text());
    assert_eq!(r.json()["code"], code, "body {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let www = r.header("www-authenticate").unwrap_or_default();
    assert!(www.starts_with("Bearer error=\"invalid_token\""), "{code}: www-authenticate {www}");
}

/// Wait (bounded) until `f` holds; the filter's own fetches run on its 500 ms tick.
fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("not reached within {limit:?}: {what}");
}

/// A jwt_verify counter once it reached `want` (per-request counters are flushed to Envoy's
/// stats on the filter's 500 ms tick, all at once per worker), asserted exactly.
fn metric_eq(e: &Envoy, name: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while e.metric("jwt_verify", name) < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(e.metric("jwt_verify", name), want, "counter {name}");
}

/// Let every pending counter reach Envoy's stats (two ticks).
fn settle() {
    std::thread::sleep(Duration::from_millis(1100));
}

fn local_provider(extra: Value) -> Value {
    let mut p = json!({"issuer": ISS, "audiences": [AUD], "local_jwks": jwks()});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        p[k] = v;
    }
    p
}

#[test]
fn every_algorithm_from_pyjwt_verifies_and_the_token_is_removed() {
    let e = Envoy::start(vec![jwt(json!({"providers": {"main": local_provider(json!({}))}}))]);
    let kids = ["rs256", "rs384", "rs512", "ps256", "ps384", "ps512", "es256", "es384", "eddsa", "hs256", "hs384", "hs512"];
    let items: Vec<Value> = kids.iter().map(|k| json!({"kid": k, "claims": claims(&format!("user-{k}"))})).collect();
    let tokens = mint(Value::Array(items));
    for (kid, t) in kids.iter().zip(&tokens) {
        let r = e.send(bearer("/orders", t));
        assert_eq!(r.status, 200, "{kid}: {}", r.text());
        assert_eq!(upstream_header(&r, "authorization"), None, "{kid}: the token must not reach upstream");
    }
    metric_eq(&e, "allowed", 12);
    metric_eq(&e, "cache_miss", 12);
    // The same tokens again: served from the cache.
    for t in &tokens {
        assert_eq!(e.send(bearer("/orders", t)).status, 200);
    }
    metric_eq(&e, "cache_hit", 12);
}

/// The provider used for the rejection matrix: every optional check switched on.
fn strict_provider() -> Value {
    local_provider(json!({
        "clock_skew_s": 5,
        "max_lifetime_s": 900,
        "typ": "at+jwt",
        "required_claims": {"token_use": "access"},
        "require_jti": true,
        "revoked_jtis": ["jti-revoked"]
    }))
}

/// A token the strict provider accepts, with `claims`/`header` merged over the good ones.
fn strict_item(kid: &str, extra_claims: Value, extra_header: Value) -> Value {
    let mut c = claims("alice");
    c["token_use"] = json!("access");
    for (k, v) in extra_claims.as_object().cloned().unwrap_or_default() {
        c[k] = v;
    }
    let mut h = json!({"typ": "at+jwt"});
    for (k, v) in extra_header.as_object().cloned().unwrap_or_default() {
        h[k] = v;
    }
    json!({"kid": kid, "claims": c, "header": h, "exp_in": 600})
}

#[test]
fn every_rejection_class_is_401_with_its_code() {
    let e = Envoy::start(vec![jwt(json!({"providers": {"main": strict_provider()}}))]);
    let no_exp_payload = json!({"iss": ISS, "aud": AUD, "sub": "alice", "jti": "j", "token_use": "access", "iat": issuer().init["now"]}).to_string();
    let dup_payload = format!(r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"alice","sub":"admin","jti":"j","token_use":"access","exp":4102444800}}"#);
    let mut items = vec![
        ("ok", strict_item("es256", json!({}), json!({}))),
        ("alg_unsupported", json!({"kid": "es256", "alg": "none", "claims": strict_item("es256", json!({}), json!({}))["claims"], "header": {"typ": "at+jwt"}})),
        ("alg_mismatch", json!({"kid": "rs256", "alg": "HS256", "hmac_with_public_pem": "rs256", "claims": strict_item("rs256", json!({}), json!({}))["claims"], "header": {"typ": "at+jwt"}})),
        ("alg_mismatch", strict_item("rs256", json!({}), json!({}))),
        ("crit_unsupported", strict_item("es256", json!({}), json!({"crit": ["exp"], "exp": 1}))),
        ("typ_mismatch", strict_item("es256", json!({}), json!({"typ": "JWT"}))),
        ("issuer_not_allowed", strict_item("es256", json!({"iss": "https://evil.example"}), json!({}))),
        ("unknown_kid", strict_item("rsa1024", json!({}), json!({}))),
        ("signature_invalid", strict_item("forger", json!({}), json!({"kid": "rs256"}))),
        ("audience_mismatch", strict_item("es256", json!({"aud": ["billing"]}), json!({}))),
        ("claim_mismatch", strict_item("es256", json!({"token_use": "refresh"}), json!({}))),
        ("token_revoked", strict_item("es256", json!({"jti": "jti-revoked"}), json!({}))),
        ("claim_invalid", strict_item("es256", json!({"sub": 42}), json!({}))),
        ("token_not_yet_valid", strict_item("es256", json!({"nbf": 4102444800u64}), json!({}))),
        ("exp_missing", json!({"kid": "hs256", "alg": "HS256", "raw_payload": no_exp_payload, "header": {"typ": "at+jwt"}})),
        ("token_duplicate_key", json!({"kid": "hs256", "alg": "HS256", "raw_payload": dup_payload, "header": {"typ": "at+jwt"}})),
    ];
    // The "alg_mismatch" JWK case above: an RS256 JWK, a token signed RS384 by the same key.
    items[3].1["alg"] = json!("RS384");
    let mut timed = vec![
        ("token_expired", json!({"exp_in": -60})),
        ("iat_in_future", json!({"iat_in": 60})),
        // A 30-day refresh token never passes as a 15-minute access token.
        ("lifetime_too_long", json!({"exp_in": 30 * 86400})),
    ];
    for (code, t) in timed.drain(..) {
        let mut it = strict_item("es256", json!({}), json!({}));
        for (k, v) in t.as_object().cloned().unwrap_or_default() {
            it[k] = v;
        }
        items.push((code, it));
    }
    let mut no_jti = strict_item("es256", json!({}), json!({}));
    no_jti["claims"].as_object_mut().map(|c| c.remove("jti"));
    items.push(("jti_missing", no_jti));
    let tokens = mint(Value::Array(items.iter().map(|(_, i)| i.clone()).collect()));
    let good = tokens[0].clone();
    let r = e.send(bearer("/orders", &good));
    assert_eq!(r.status, 200, "{}", r.text());
    let before = e.upstream.count();
    for ((code, _), t) in items.iter().zip(&tokens).skip(1) {
        assert_401(&e.send(bearer("/orders", t)), code);
    }
    // Tampered payload under a valid signature.
    let parts: Vec<&str> = good.split('.').collect();
    let forged_payload = base64_url(&json!({"iss": ISS, "aud": AUD, "sub": "admin", "jti": "x", "token_use": "access", "iat": issuer().init["now"], "exp": issuer().init["now"].as_u64().unwrap_or(0) + 600}).to_string());
    assert_401(&e.send(bearer("/orders", &format!("{}.{forged_payload}.{}", parts[0], parts[2]))), "signature_invalid");
    // Malformed input of every kind.
    for bad in ["abc", "a.b", "a.b.c.d", "a.b.c", &format!("{}.{}.{}=", parts[0], parts[1], parts[2]), &format!("{}.{}", parts[0], parts[1]), &format!("{}.{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[2], parts[2])] {
        assert_401(&e.send(bearer("/orders", bad)), "token_malformed");
    }
    assert_401(&e.send(bearer("/orders", &format!("{}.{}.{}", parts[0], "A".repeat(20_000), parts[2]))), "token_too_large");
    // No token at all: a bare challenge (RFC 6750 section 3.1).
    let r = e.get("/orders");
    assert_eq!((r.status, r.json()["code"].as_str()), (401, Some("token_missing")));
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    // Two authorization headers: refused, never read as the first or the last.
    let r = e.send(Request::get("/orders").header("authorization", &format!("Bearer {good}")).header("authorization", &format!("Bearer {good}")));
    assert_eq!((r.status, r.json()["code"].as_str()), (401, Some("token_ambiguous")), "{}", r.text());
    assert!(r.header("www-authenticate").unwrap_or_default().starts_with("Bearer error=\"invalid_request\""));
    // No internals in the bodies, nothing reached upstream, one counter per reason.
    assert_eq!(e.upstream.count(), before, "a rejected request reached the upstream");
    metric_eq(&e, "denied.alg_mismatch", 2);
    metric_eq(&e, "denied.token_malformed", 7);
    metric_eq(&e, "denied.token_revoked", 1);
    metric_eq(&e, "denied", (items.len() - 1 + 1 + 7 + 1 + 2) as u64);
    assert!(e.logs().contains("\"code\":\"lifetime_too_long\""), "one audit line per denial");
}

fn base64_url(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &x)| acc | (u32::from(x) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[test]
fn cookies_params_claim_headers_and_client_injection() {
    let provider = local_provider(json!({
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "from_cookies": ["access_token"],
        "from_params": ["access_token"],
        "claim_to_headers": [{"claim": "sub", "header": "x-jwt-sub"}, {"claim": "roles", "header": "x-jwt-roles"}]
    }));
    let e = Envoy::start(vec![jwt(json!({"providers": {"main": provider}, "rules": [{"prefix": "/public/", "allow_missing": true}, {"prefix": "/"}]}))]);
    let mut c = claims("alice");
    c["roles"] = json!(["viewer", "trader"]);
    let t = mint1(json!({"kid": "es256", "claims": c}));
    // Cookie: the token cookie is removed, the others stay; an injected claim header is replaced.
    let r = e.send(Request::get("/orders").header("cookie", &format!("theme=dark; access_token={t}; lang=en")).header("x-jwt-sub", "admin").header("x-jwt-roles", "admin"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(upstream_header(&r, "cookie").as_deref(), Some("theme=dark; lang=en"));
    assert_eq!(upstream_header(&r, "x-jwt-sub").as_deref(), Some("alice"));
    assert_eq!(upstream_header(&r, "x-jwt-roles").as_deref(), Some("viewer,trader"));
    assert_eq!(upstream_headers(&r).iter().filter(|(k, _)| k == "x-jwt-sub").count(), 1);
    // Query parameter: removed from the path upstream sees, other parameters kept.
    let r = e.get(&format!("/orders?page=2&access_token={t}&q=x"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/orders?page=2&q=x");
    assert_eq!(upstream_header(&r, "x-jwt-sub").as_deref(), Some("alice"));
    // Header.
    let r = e.send(bearer("/orders", &t));
    assert_eq!(r.status, 200);
    assert_eq!(upstream_header(&r, "authorization"), None);
    // The same token in two places is fine; two different tokens are ambiguous.
    let r = e.send(bearer(&format!("/orders?access_token={t}"), &t));
    assert_eq!(r.status, 200, "{}", r.text());
    let other = mint1(json!({"kid": "eddsa", "claims": claims("bob")}));
    let r = e.send(bearer(&format!("/orders?access_token={other}"), &t));
    assert_eq!((r.status, r.json()["code"].as_str()), (401, Some("token_ambiguous")));
    // Anonymous on an allow_missing path: the injected claim headers never reach upstream.
    let r = e.send(Request::get("/public/info").header("x-jwt-sub", "admin").header("x-jwt-roles", "admin"));
    assert_eq!(r.status, 200);
    assert_eq!(upstream_header(&r, "x-jwt-sub"), None);
    assert_eq!(upstream_header(&r, "x-jwt-roles"), None);
    metric_eq(&e, "allowed_anonymous", 1);
    // A denied request with the token in the query: the audit line never shows it.
    let r = e.get(&format!("/orders?access_token={t}x"));
    assert_401(&r, "token_malformed");
    assert!(!e.logs().contains(&t[..40]), "the token leaked into the log");
    // allow_missing still rejects a present, invalid token.
    assert_401(&e.send(bearer("/public/info", "x.y.z")), "token_malformed");
}

#[test]
fn forward_keeps_the_token_for_upstream() {
    let e = Envoy::start(vec![jwt(json!({"providers": {"main": local_provider(json!({"forward": true}))}}))]);
    let t = mint1(json!({"kid": "rs256", "claims": claims("alice")}));
    let r = e.send(bearer("/x", &t));
    assert_eq!(r.status, 200);
    assert_eq!(upstream_header(&r, "authorization"), Some(format!("Bearer {t}")));
}

#[test]
fn rules_allow_missing_requires_and_default_deny() {
    let other = json!({"issuer": "https://partner.example", "local_jwks": jwks()});
    let e = Envoy::start(vec![jwt(json!({
        "providers": {"main": local_provider(json!({})), "partner": other},
        "rules": [
            {"prefix": "/auth/", "allow_missing": true},
            {"prefix": "/api/", "requires": "main"},
            {"prefix": "/shared/", "requires": ["main", "partner"]}
        ]
    }))]);
    let main_t = mint1(json!({"kid": "es256", "claims": claims("alice")}));
    let partner_t = mint1(json!({"kid": "es256", "claims": {"iss": "https://partner.example", "sub": "p1"}}));
    // Default deny: no rule covers /elsewhere, token or not.
    for r in [e.get("/elsewhere"), e.send(bearer("/elsewhere", &main_t))] {
        assert_eq!((r.status, r.json()["code"].as_str()), (403, Some("no_matching_rule")), "{}", r.text());
    }
    assert_eq!(e.get("/auth/login").status, 200, "anonymous on allow_missing");
    assert_eq!(e.send(bearer("/api/orders", &main_t)).status, 200);
    assert_401(&e.send(bearer("/api/orders", &partner_t)), "issuer_not_allowed");
    assert_eq!(e.send(bearer("/shared/x", &partner_t)).status, 200);
    assert_eq!(e.send(bearer("/shared/x", &main_t)).status, 200);
    let r = e.get("/api/orders");
    assert_eq!((r.status, r.json()["code"].as_str()), (401, Some("token_missing")));
    // An ambiguous path is refused before any rule.
    let r = e.get("/auth/../api/orders");
    assert_eq!(r.status, 400, "{}", r.text());
}

#[test]
fn bad_configs_are_refused_naming_the_field() {
    let small = issuer().init["rsa1024_jwk"].clone();
    for (config, needle) in [
        (json!({}), "invalid configuration at 'providers'"),
        (json!({"providers": {"main": {"issuer": ISS, "local_jwks": {"keys": [small]}}}}), "invalid configuration at 'providers.main.local_jwks.keys[0].n': RSA key of 1024 bits"),
        (json!({"providers": {"main": local_provider(json!({"audience": "x"}))}}), "invalid configuration at 'providers.main.audience'"),
        (json!({"providers": {"main": local_provider(json!({}))}, "rules": [{"prefix": "/", "requires": "nope"}]}), "invalid configuration at 'rules[0].requires': unknown provider 'nope'"),
    ] {
        match EnvoyBuilder::default().filter(jwt(config.clone())).try_start() {
            Ok(_) => panic!("envoy accepted a broken config: {config}"),
            Err(log) => assert!(log.contains(needle), "expected {needle:?} for {config} in:\n{}", e2e::tail(&log, 30)),
        }
    }
}

#[test]
fn expiry_while_cached() {
    let e = Envoy::start(vec![jwt(json!({"providers": {"main": local_provider(json!({"clock_skew_s": 0}))}}))]);
    let t = mint1(json!({"kid": "hs256", "claims": claims("alice"), "exp_in": 3}));
    assert_eq!(e.send(bearer("/x", &t)).status, 200);
    assert_eq!(e.send(bearer("/x", &t)).status, 200);
    metric_eq(&e, "cache_hit", 1);
    let mut last = 0;
    eventually("the cached token expires", Duration::from_secs(8), || {
        let r = e.send(bearer("/x", &t));
        last = r.status;
        r.status == 401
    });
    assert_eq!(last, 401);
    metric_eq(&e, "denied.token_expired", 1);
}

#[test]
fn one_verification_serves_every_worker() {
    let e = Envoy::builder().filter(jwt(json!({"providers": {"main": local_provider(json!({}))}}))).concurrency(2).start();
    let t = mint1(json!({"kid": "rs256", "claims": claims("alice")}));
    for _ in 0..20 {
        assert_eq!(e.send(bearer("/x", &t)).status, 200);
    }
    // Each worker flushes its own counters: wait for both.
    eventually("both workers flushed", Duration::from_secs(5), || e.metric("jwt_verify", "cache_hit") + e.metric("jwt_verify", "cache_miss") == 20);
    assert_eq!(e.metric("jwt_verify", "cache_miss"), 1, "one verification for all workers");
    assert_eq!(e.metric("jwt_verify", "cache_hit"), 19);
}

/// A JWKS / revocation-list server on loopback whose answers the test changes.
#[derive(Clone)]
struct Idp {
    state: Arc<Mutex<IdpState>>,
    server: Upstream,
    fetches: Arc<AtomicU32>,
}

struct IdpState {
    status: u16,
    jwks: Value,
    revoked: Value,
    /// While true, JWKS requests are held (the test releases them).
    hold: bool,
}

impl Idp {
    fn new(jwks: Value) -> Self {
        let state = Arc::new(Mutex::new(IdpState { status: 200, jwks, revoked: json!([]), hold: false }));
        let fetches = Arc::new(AtomicU32::new(0));
        let (s, f) = (state.clone(), fetches.clone());
        let server = Upstream::with_handler(move |req| {
            if req.path == "/jwks" {
                f.fetch_add(1, Ordering::SeqCst);
                while s.lock().map(|st| st.hold).unwrap_or(false) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let st = match s.lock() {
                Ok(st) => st,
                Err(_) => return UpResponse::new(500),
            };
            let body = if req.path == "/revoked" { st.revoked.to_string() } else { st.jwks.to_string() };
            UpResponse::new(st.status).header("content-type", "application/json").body(body)
        });
        Self { state, server, fetches }
    }

    fn set(&self, f: impl FnOnce(&mut IdpState)) {
        if let Ok(mut st) = self.state.lock() {
            f(&mut st);
        }
    }

    fn envoy(&self, provider_extra: Value, concurrency: u32) -> Envoy {
        let mut p = json!({"issuer": ISS, "remote_jwks": {"cluster": "idp", "authority": "idp.example", "path": "/jwks", "cache_duration_s": 300, "unknown_kid_refresh_s": 30}});
        for (k, v) in provider_extra.as_object().cloned().unwrap_or_default() {
            p[k] = v;
        }
        Envoy::builder().filter(jwt(json!({"providers": {"idp": p}}))).cluster("idp", self.server.port()).concurrency(concurrency).start()
    }
}

#[test]
fn requests_wait_for_the_first_fetch_and_bodies_do_not_slip_through() {
    let idp = Idp::new(issuer().init["rotation_a"].clone());
    idp.set(|s| s.hold = true);
    let e = idp.envoy(json!({}), 1);
    let t = mint1(json!({"kid": "rot-a", "claims": claims("alice")}));
    let port = e.port;
    let req = bearer("/orders", &t).header("content-type", "text/plain").body("order body");
    let pending = std::thread::spawn(move || req.send(port));
    eventually("the request is parked", Duration::from_secs(10), || e.metric("jwt_verify", "waited") >= 1);
    assert_eq!(e.upstream.count(), 0, "nothing may pass while the keys are loading");
    idp.set(|s| s.hold = false);
    let r = pending.join().unwrap().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body"], "order body");
    assert!(e.metric("jwt_verify", "jwks_fetch_ok") >= 1);
}

#[test]
fn remote_jwks_rotation_uses_an_early_refresh_and_invalidates_the_cache() {
    let idp = Idp::new(issuer().init["rotation_a"].clone());
    let e = idp.envoy(json!({}), 1);
    let [ta, tb]: [String; 2] = mint(json!([{"kid": "rot-a", "claims": claims("alice")}, {"kid": "rot-b", "claims": claims("bob")}])).try_into().unwrap();
    assert_eq!(e.send(bearer("/x", &ta)).status, 200);
    assert_eq!(e.send(bearer("/x", &ta)).status, 200);
    metric_eq(&e, "cache_hit", 1);
    let fetched = idp.fetches.load(Ordering::SeqCst);
    // The IdP rotates: key A withdrawn, key B published. Token B has an unknown kid: one
    // early refresh (not the 300 s schedule) brings B in.
    idp.set(|s| s.jwks = issuer().init["rotation_b"].clone());
    let r = e.send(bearer("/x", &tb));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(idp.fetches.load(Ordering::SeqCst), fetched + 1);
    assert!(e.logs().contains("provider 'idp': new key set (1 keys) from cluster 'idp', generation 2"), "{}", e2e::tail(&e.logs(), 20));
    // Token A was cached as valid under the old key set: no longer served.
    settle();
    let hits = e.metric("jwt_verify", "cache_hit");
    assert_401(&e.send(bearer("/x", &ta)), "unknown_kid");
    settle();
    assert_eq!(e.metric("jwt_verify", "cache_hit"), hits, "no hit across a key-set change");
    // Unknown kids do not trigger more fetches within unknown_kid_refresh_s.
    let forged = mint1(json!({"kid": "forger", "claims": claims("mallory"), "header": {"kid": "rot-c"}}));
    assert_401(&e.send(bearer("/x", &forged)), "unknown_kid");
    assert_eq!(idp.fetches.load(Ordering::SeqCst), fetched + 1);
}

#[test]
fn remote_jwks_outage_keeps_the_last_good_set() {
    let idp = Idp::new(issuer().init["rotation_a"].clone());
    let e = idp.envoy(json!({"remote_jwks": {"cluster": "idp", "authority": "idp.example", "path": "/jwks", "cache_duration_s": 1}}), 1);
    let [t1, t2]: [String; 2] = mint(json!([{"kid": "rot-a", "claims": claims("alice")}, {"kid": "rot-a", "claims": claims("bob")}])).try_into().unwrap();
    assert_eq!(e.send(bearer("/x", &t1)).status, 200);
    idp.set(|s| s.status = 503);
    eventually("refreshes fail", Duration::from_secs(15), || e.metric("jwt_verify", "jwks_fetch_failed") >= 2);
    assert_eq!(e.send(bearer("/x", &t1)).status, 200, "cached token");
    assert_eq!(e.send(bearer("/x", &t2)).status, 200, "a new token still verifies with the last good keys");
    assert!(e.logs().contains("the last good copy, if there is one, stays in use"));
}

#[test]
fn an_idp_down_from_the_start_fails_closed_with_503() {
    let idp = Idp::new(issuer().init["rotation_a"].clone());
    idp.set(|s| s.status = 500);
    let e = idp.envoy(json!({}), 1);
    let t = mint1(json!({"kid": "rot-a", "claims": claims("alice")}));
    let r = e.send(bearer("/x", &t));
    assert_eq!((r.status, r.json()["code"].as_str()), (503, Some("jwks_unavailable")), "{}", r.text());
    assert_eq!(e.upstream.count(), 0);
    // Once the IdP is back, the next attempt loads the keys.
    idp.set(|s| s.status = 200);
    eventually("keys load after the outage", Duration::from_secs(15), || e.send(bearer("/x", &t)).status == 200);
}

#[test]
fn remote_revocation_applies_to_cached_tokens() {
    let idp = Idp::new(issuer().init["rotation_a"].clone());
    let e = idp.envoy(json!({"remote_revocations": {"cluster": "idp", "authority": "idp.example", "path": "/revoked", "refresh_s": 1}}), 1);
    let t = mint1(json!({"kid": "rot-a", "claims": claims("alice")}));
    assert_eq!(e.send(bearer("/x", &t)).status, 200);
    assert_eq!(e.send(bearer("/x", &t)).status, 200);
    metric_eq(&e, "cache_hit", 1);
    idp.set(|s| s.revoked = json!(["jti-alice"]));
    eventually("the revocation is fetched", Duration::from_secs(15), || e.send(bearer("/x", &t)).status == 401);
    assert_401(&e.send(bearer("/x", &t)), "token_revoked");
    assert!(e.metric("jwt_verify", "revocations_fetch_ok") >= 2);
}

#[test]
fn identity_is_read_by_a_later_filter() {
    let rbac = Filter::new(
        "rbac",
        json!({
            "roles": {"viewer": {"permissions": ["orders:read"]}},
            "role_claim": "role",
            "rules": [{"path": "/public", "public": true}, {"path": "/orders", "methods": ["GET"], "permission": "orders:read"}]
        }),
    );
    let provider = local_provider(json!({"claim_to_headers": [{"claim": "sub", "header": "x-jwt-sub"}]}));
    let e = Envoy::start(vec![jwt(json!({"providers": {"main": provider}, "rules": [{"prefix": "/", "allow_missing": true}]})), rbac]);
    let mut viewer = claims("vera");
    viewer["role"] = json!("viewer");
    let [tv, tn]: [String; 2] = mint(json!([{"kid": "es256", "claims": viewer}, {"kid": "es256", "claims": claims("nobody")}])).try_into().unwrap();
    let r = e.send(bearer("/orders", &tv));
    assert_eq!(r.status, 200, "rbac saw the verified role: {}", r.text());
    assert_eq!(upstream_header(&r, "x-jwt-sub").as_deref(), Some("vera"));
    assert_eq!(upstream_header(&r, "authorization"), None);
    // Cached identity works the same.
    assert_eq!(e.send(bearer("/orders", &tv)).status, 200);
    let r = e.send(bearer("/orders", &tn));
    assert_eq!((r.status, r.json()["code"].as_str()), (403, Some("permission_denied")), "{}", r.text());
    // Anonymous: jwt_verify lets it through, rbac sees no identity; a forged role header is nothing.
    let r = e.send(Request::get("/orders").header("x-jwt-role", "viewer").header("identity", "{\"subject\":\"x\"}"));
    assert_eq!((r.status, r.json()["code"].as_str()), (401, Some("authentication_required")), "{}", r.text());
    assert_eq!(e.get("/public").status, 200);
}
