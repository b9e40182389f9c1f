//! rate_limit through the real Envoy, with 4 worker threads (`--concurrency 4`) so every
//! limit is shown to hold for the whole process: each tier, each route limit, refill over
//! time, exact counts under parallel load, `x-forwarded-for` spoofing, the IETF headers,
//! bucket eviction with a small table, a refused config, and global mode against a real
//! rate-limit service (tests/fixtures/rls_server, backed by redis-server) shared by two
//! Envoy processes, with its failure modes.
//!
//! Identities come from the test-only fixture `tests/fixtures/identity_stub` (built by
//! `scripts/build`, never shipped), which records the JSON identity of `x-test-identity`
//! exactly as an authentication filter would.

use e2e::rls::{redis_server, rls_server};
use e2e::{fixture_wasm, Envoy, EnvoyBuilder, Filter, Request, Response};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const WORKERS: u32 = 4;

fn rl(config: Value) -> Filter {
    Filter::new("rate_limit", config)
}

fn stub() -> Filter {
    Filter::new("identity_stub", json!({})).path(fixture_wasm("identity_stub"))
}

fn builder() -> EnvoyBuilder {
    Envoy::builder().concurrency(WORKERS)
}

/// Envoy with the identity fixture in front of rate_limit.
fn envoy(config: Value) -> Envoy {
    builder().filter(stub()).filter(rl(config)).start()
}

/// An identity as an authentication filter records it.
fn identity(subject: &str, tier: Option<&str>) -> String {
    let mut claims = json!({"sub": subject});
    if let Some(t) = tier {
        claims["tier"] = json!(t);
    }
    json!({"source": "jwt", "provider": "test", "subject": subject, "claims": claims}).to_string()
}

fn req(method: &str, path: &str, who: Option<&str>) -> Request {
    let r = Request::new(method, path);
    let r = if method == "POST" { r.header("content-length", "0") } else { r };
    match who {
        Some(id) => r.header("x-test-identity", id),
        None => r,
    }
}

/// Send `n` requests one after the other; the statuses.
fn statuses(e: &Envoy, n: usize, make: impl Fn() -> Request) -> Vec<u16> {
    (0..n).map(|_| e.send(make()).status).collect()
}

fn count(v: &[u16], status: u16) -> usize {
    v.iter().filter(|s| **s == status).count()
}

fn assert_limited(r: &Response) {
    assert_eq!(r.status, 429, "body: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.json()["code"], "rate_limited", "body: {}", r.text());
    assert!(r.header("retry-after").and_then(|v| v.parse::<u64>().ok()).is_some_and(|s| s >= 1), "retry-after {:?}", r.header("retry-after"));
}

/// The `r=` and `t=` of one policy in a `RateLimit` field.
fn item(field: Option<&str>, name: &str) -> Option<(u64, Option<u64>)> {
    let field = field?;
    let quoted = format!("\"{name}\"");
    let it = field.split(',').map(str::trim).find(|i| i.starts_with(&quoted))?;
    let param = |p: &str| it.split(';').find_map(|kv| kv.strip_prefix(p)).and_then(|v| v.parse().ok());
    Some((param("r=")?, param("t=")))
}

#[test]
fn anonymous_tier_by_ip_with_ietf_headers() {
    let e = envoy(json!({
        "tiers": {"anonymous": {"requests": 3, "per": "hour"}, "authenticated": {"requests": 100, "per": "hour"}},
        "table": {"sets": 64, "ways": 8}
    }));
    for want_r in [2, 1, 0] {
        let r = e.get("/items");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["path"], "/items", "the upstream answered");
        // 3 per hour: the next request comes back 1200 s after one is used.
        let (rem, t) = item(r.header("ratelimit"), "anonymous").unwrap_or_else(|| panic!("RateLimit {:?}", r.header("ratelimit")));
        assert_eq!(rem, want_r);
        assert!(matches!(t, Some(1199..=1200)), "t={t:?}");
        assert_eq!(r.header("ratelimit-policy"), None, "the default adds RateLimit only");
        assert_eq!(r.header("retry-after"), None);
    }
    for _ in 0..2 {
        let r = e.get("/items");
        assert_limited(&r);
        let retry: u64 = r.header("retry-after").unwrap_or_default().parse().unwrap_or(0);
        assert!((1199..=1200).contains(&retry), "retry-after {retry}");
        assert_eq!(r.header("ratelimit-policy"), Some("\"anonymous\";q=3;w=3600"));
        let (rem, t) = item(r.header("ratelimit"), "anonymous").unwrap();
        assert_eq!(rem, 0);
        assert_eq!(t, Some(retry), "Retry-After is the end of the effective window");
        let body = r.json();
        assert_eq!(body["status"], 429);
        assert_eq!(body["title"], "Too Many Requests");
    }
    assert_eq!(e.upstream.count(), 3);
    assert_eq!(e.wait_metric("rate_limit", "allowed", 3), 3);
    assert_eq!(e.metric("rate_limit", "limited"), 2);
    assert_eq!(e.metric("rate_limit", "limited.tier.anonymous"), 2);
    // One structured deny line per refusal, with a hashed client, never the raw address.
    let logs = e.logs();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains("\"filter\":\"rate_limit\"") && l.contains("\"code\":\"rate_limited\"")).collect();
    assert_eq!(lines.len(), 2, "{logs}");
    assert!(lines.iter().all(|l| l.contains("\"client\":\"") && !l.contains("127.0.0.1")));
}

#[test]
fn each_tier_from_the_verified_identity() {
    let e = envoy(json!({
        "tiers": {
            "anonymous": {"requests": 2, "per": "hour"},
            "authenticated": {"requests": 4, "per": "hour"},
            "premium": {"requests": 100, "per": "hour", "burst": 6}
        },
        "tier_claim": "tier",
        "allowed_response_headers": "rate_limit_and_policy",
        "table": {"sets": 64, "ways": 8}
    }));
    let alice = identity("alice", None);
    let bob = identity("bob", Some("premium"));
    let carol = identity("carol", Some("platinum"));
    // Same address for everyone: users are keyed by subject, anonymous callers by address.
    let cases: &[(Option<&str>, &str, usize)] = &[(Some(&alice), "authenticated", 4), (Some(&bob), "premium", 6), (Some(&carol), "authenticated", 4), (None, "anonymous", 2)];
    for (who, tier, n) in cases {
        let got = statuses(&e, n + 3, || req("GET", "/profile", *who));
        assert_eq!(count(&got, 200), *n, "{tier} for {who:?}: {got:?}");
        assert_eq!(&got[..*n], vec![200; *n].as_slice(), "the first {n} pass, then none");
        let r = e.send(req("GET", "/profile", *who));
        assert_limited(&r);
        assert!(r.header("ratelimit-policy").is_some_and(|p| p.starts_with(&format!("\"{tier}\";"))), "{:?}", r.header("ratelimit-policy"));
    }
    // Allowed responses carry both fields when configured.
    let dave = identity("dave", Some("premium"));
    let r = e.send(req("GET", "/profile", Some(&dave)));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-policy"), Some("\"premium\";q=100;w=3600"));
    assert_eq!(item(r.header("ratelimit"), "premium").map(|x| x.0), Some(5));
    assert_eq!(e.metric("rate_limit", "limited.tier.premium"), 4);
    assert_eq!(e.metric("rate_limit", "limited.tier.authenticated"), 8);
    assert_eq!(e.metric("rate_limit", "limited.tier.anonymous"), 4);
}

#[test]
fn each_route_limit_applies_on_top_of_the_tier() {
    // The routes, with counts small enough to exhaust.
    let e = envoy(json!({
        "tiers": {"anonymous": {"requests": 50, "per": "hour"}, "authenticated": {"requests": 50, "per": "hour"}},
        "routes": [
            {"name": "login", "path": "/auth/login", "methods": ["POST"], "requests": 3, "per": "hour", "key": "ip"},
            {"name": "register", "path": "/auth/register", "methods": ["POST"], "requests": 2, "per": "hour", "key": "ip"},
            {"name": "orders", "path": "/orders", "methods": ["POST"], "requests": 4, "per": "hour", "key": "user"}
        ],
        "table": {"sets": 64, "ways": 8}
    }));
    let alice = identity("alice", None);
    let bob = identity("bob", None);

    // login: by IP, so alice and bob (same address) share 3.
    let a = statuses(&e, 2, || req("POST", "/auth/login", Some(&alice)));
    let b = statuses(&e, 3, || req("POST", "/auth/login", Some(&bob)));
    assert_eq!((a, b), (vec![200, 200], vec![200, 429, 429]));
    let r = e.send(req("POST", "/auth/login", None));
    assert_limited(&r);
    let (rem, _) = item(r.header("ratelimit"), "login").unwrap();
    assert_eq!(rem, 0);
    // The refused requests took nothing from the tier: the anonymous bucket is still full.
    assert_eq!(item(r.header("ratelimit"), "anonymous").map(|x| x.0), Some(50), "anonymous untouched: {:?}", r.header("ratelimit"));
    // Other methods and spellings: GET is not limited by the route, an encoded spelling is.
    assert_eq!(e.send(req("GET", "/auth/login", None)).status, 200);
    assert_limited(&e.send(req("POST", "//auth/%6cogin", None)));
    // A path that cannot be normalized is refused, not waved past the route limit.
    let r = e.send(req("POST", "/auth/x/../login", None));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["code"], "path_dot_segment");

    // register: 2 per IP.
    let got = statuses(&e, 4, || req("POST", "/auth/register", None));
    assert_eq!(got, vec![200, 200, 429, 429]);

    // orders: 4 per user, so alice and bob have 4 each from the same address.
    let a = statuses(&e, 6, || req("POST", "/orders", Some(&alice)));
    let b = statuses(&e, 6, || req("POST", "/orders", Some(&bob)));
    assert_eq!(count(&a, 200), 4, "{a:?}");
    assert_eq!(count(&b, 200), 4, "{b:?}");
    assert_eq!(e.send(req("GET", "/orders", Some(&alice))).status, 200, "GET /orders has no route limit");

    assert_eq!(e.metric("rate_limit", "limited.route.login"), 4);
    assert_eq!(e.metric("rate_limit", "limited.route.register"), 2);
    assert_eq!(e.metric("rate_limit", "limited.route.orders"), 4);
    assert_eq!(e.metric("rate_limit", "denied.invalid_path"), 1);
}

#[test]
fn buckets_refill_over_time() {
    let e = builder()
        .filter(rl(json!({
            "tiers": {"anonymous": {"requests": 2, "per": "second"}, "authenticated": {"requests": 2, "per": "second"}},
            "table": {"sets": 16, "ways": 4}
        })))
        .start();
    // A burst of 2 passes; the first refusal says to come back within a second.
    assert_eq!(statuses(&e, 2, || Request::get("/")), vec![200, 200]);
    let refused = (0..10).map(|_| e.get("/")).find(|r| r.status == 429).unwrap_or_else(|| panic!("never limited"));
    assert_limited(&refused);
    assert_eq!(refused.header("retry-after"), Some("1"), "2 per second: the next one within 500 ms rounds up to 1 s");
    // Wait past the full refill (1 s for 2 tokens); the bucket allows a burst of 2 again.
    std::thread::sleep(Duration::from_millis(1_100));
    let again = statuses(&e, 2, || Request::get("/"));
    assert_eq!(again, vec![200, 200]);
    // Half a refill period: exactly one more token (500 ms per request).
    std::thread::sleep(Duration::from_millis(600));
    let half = e.get("/");
    assert_eq!(half.status, 200);
}

#[test]
fn exact_count_across_workers_under_parallel_load() {
    // 24 clients in parallel, 10 requests each, all from one address; 4 workers race on the
    // same bucket. Exactly 50 get through: no worker has its own copy of the limit.
    let e = Arc::new(
        builder()
            .filter(rl(json!({
                "tiers": {"anonymous": {"requests": 50, "per": "hour"}, "authenticated": {"requests": 50, "per": "hour"}},
                "table": {"sets": 64, "ways": 8}
            })))
            .start(),
    );
    let threads: Vec<_> = (0..24)
        .map(|_| {
            let e = e.clone();
            std::thread::spawn(move || (0..10).map(|_| e.get("/burst")).map(|r| (r.status, if r.status == 200 { String::new() } else { r.code() })).collect::<Vec<_>>())
        })
        .collect();
    let results: Vec<(u16, String)> = threads.into_iter().flat_map(|t| t.join().unwrap_or_default()).collect();
    assert_eq!(results.len(), 240);
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 50, "exactly the limit passes; refusals: {:?}", results.iter().filter(|(s, _)| *s != 200).map(|(_, c)| c).collect::<std::collections::BTreeSet<_>>());
    assert!(results.iter().all(|(s, c)| *s == 200 || (*s == 429 && (c == "rate_limited" || c == "rate_limit_contention"))));
    assert_eq!(e.upstream.count(), 50);
    assert_eq!(e.wait_metric("rate_limit", "allowed", 50), 50);
    // The connections really were spread over the workers (Envoy's per-worker listener stats).
    let stats = e.stats();
    let busy = stats
        .lines()
        .filter(|l| l.starts_with("listener.") && l.contains(".worker_") && l.contains(".downstream_cx_total: "))
        .filter(|l| l.rsplit(": ").next().and_then(|v| v.trim().parse::<u64>().ok()).is_some_and(|n| n > 0))
        .count();
    assert!(busy >= 2, "only {busy} worker(s) served connections:\n{}", stats.lines().filter(|l| l.contains(".worker_")).collect::<Vec<_>>().join("\n"));
}

fn small_tiers(extra: Value) -> Value {
    let mut cfg = json!({"tiers": {"anonymous": {"requests": 3, "per": "hour"}, "authenticated": {"requests": 3, "per": "hour"}}, "table": {"sets": 64, "ways": 8}});
    if let (Some(c), Some(x)) = (cfg.as_object_mut(), extra.as_object()) {
        c.extend(x.clone());
    }
    cfg
}

fn spoofing(e: &Envoy, xff: impl Fn(usize) -> String) -> Vec<u16> {
    (0..10).map(|i| e.send(Request::get("/").header("x-forwarded-for", &xff(i))).status).collect()
}

#[test]
fn forwarded_for_cannot_choose_the_key() {
    // Envoy's default (use_remote_address: false) sets the downstream address from the
    // client's own x-forwarded-for. The filter sees it was derived from headers and keys all
    // such requests together: 10 spoofed addresses get 3 requests between them.
    let e = builder().filter(rl(small_tiers(json!({})))).start();
    let got = spoofing(&e, |i| format!("203.0.113.{i}"));
    assert_eq!(count(&got, 200), 3, "{got:?}");
    assert_eq!(e.metric("rate_limit", "unverified_address"), 10);
    drop(e);

    // The edge configuration Envoy recommends (use_remote_address: true): the TCP peer.
    let e = builder().hcm("use_remote_address", json!(true)).filter(rl(small_tiers(json!({})))).start();
    let got = spoofing(&e, |i| format!("203.0.113.{i}"));
    assert_eq!(count(&got, 200), 3, "{got:?}");
    assert_eq!(e.metric("rate_limit", "unverified_address"), 0);
    drop(e);

    // One trusted proxy in front: its appended (rightmost) entry is the client; what the
    // client wrote to the left is never read. Same with Envoy appending the peer itself.
    for use_remote_address in [false, true] {
        let e = builder().hcm("use_remote_address", json!(use_remote_address)).filter(rl(small_tiers(json!({"trusted_proxy_hops": 1})))).start();
        let spoofed = spoofing(&e, |i| format!("10.9.9.{i}, 198.51.100.7"));
        assert_eq!(count(&spoofed, 200), 3, "use_remote_address {use_remote_address}: {spoofed:?}");
        // A second header line with a fake address does not help either.
        let r = e.send(Request::get("/").header("x-forwarded-for", "1.1.1.1").header("x-forwarded-for", "198.51.100.7"));
        assert_limited(&r);
        // Another client behind the proxy has its own bucket.
        let other: Vec<u16> = (0..4).map(|_| e.send(Request::get("/").header("x-forwarded-for", "198.51.100.8")).status).collect();
        assert_eq!(other, vec![200, 200, 200, 429], "use_remote_address {use_remote_address}");
        // No header at all (not through the proxy): keyed by the peer address, separately.
        let direct = statuses(&e, 4, || Request::get("/"));
        assert_eq!(direct, vec![200, 200, 200, 429], "use_remote_address {use_remote_address}");
    }
}

#[test]
fn flood_of_new_clients_does_not_reset_a_drained_bucket() {
    // A table of one set with 4 buckets: every client competes for the same 4 places.
    let e = builder()
        .filter(rl(json!({
            "tiers": {"anonymous": {"requests": 3, "per": "hour"}, "authenticated": {"requests": 3, "per": "hour"}},
            "trusted_proxy_hops": 1,
            "table": {"sets": 1, "ways": 4}
        })))
        .start();
    let victim = || Request::get("/").header("x-forwarded-for", "198.51.100.66");
    assert_eq!(statuses(&e, 4, victim), vec![200, 200, 200, 429]);
    // 200 new clients, one request each: each evicts the bucket closest to full, which is
    // always another newcomer's, never the drained one.
    for i in 0..200 {
        let r = e.send(Request::get("/").header("x-forwarded-for", &format!("100.64.{}.{}", i / 250, i % 250 + 1)));
        assert_eq!(r.status, 200);
    }
    assert_limited(&e.send(victim()));
    // And the newcomers do get evicted: the first of them starts full again.
    let first = statuses(&e, 4, || Request::get("/").header("x-forwarded-for", "100.64.0.1"));
    assert_eq!(first, vec![200, 200, 200, 429]);
}

#[test]
fn headers_can_be_turned_off_for_allowed_responses() {
    let e = builder()
        .filter(rl(json!({"tiers": {"anonymous": {"requests": 1, "per": "minute"}, "authenticated": {"requests": 1, "per": "minute"}}, "allowed_response_headers": "none", "table": {"sets": 8, "ways": 4}})))
        .start();
    let r = e.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit"), None);
    assert_eq!(r.header("ratelimit-policy"), None);
    // A 429 always carries them.
    let r = e.get("/");
    assert_limited(&r);
    assert_eq!(r.header("ratelimit-policy"), Some("\"anonymous\";q=1;w=60"));
    assert!(r.header("ratelimit").is_some_and(|v| v.starts_with("\"anonymous\";r=0;t=")));
}

#[test]
fn bad_config_is_refused_with_every_error_named() {
    let err = match builder()
        .filter(rl(json!({"tiers": {"gold": {"requests": 0, "per": "minute"}}, "routes": [{"path": "no-slash", "requests": 1, "per": "minute"}]})))
        .try_start()
    {
        Ok(_) => panic!("envoy accepted a broken rate_limit config"),
        Err(log) => log,
    };
    for field in ["'tiers.gold.requests'", "'tiers'", "'routes[0].path'"] {
        assert!(err.contains(&format!("rate_limit: invalid configuration at {field}")), "{field} not named:\n{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Global mode: a real rate-limit service (tests/fixtures/rls_server) with its counters in a
// real redis-server, both on loopback.

/// Local limits high enough never to bite: the service decides.
fn global_config(deny: bool, timeout_ms: u32) -> Value {
    json!({
        "tiers": {"anonymous": {"requests": 1000, "per": "hour"}, "authenticated": {"requests": 1000, "per": "hour"}},
        "routes": [{"name": "login", "path": "/auth/login", "methods": ["POST"], "requests": 1000, "per": "hour", "key": "ip"}],
        "global": {"cluster": "ratelimit", "domain": "edge", "timeout_ms": timeout_ms, "failure_mode_deny": deny},
        "table": {"sets": 64, "ways": 8}
    })
}

fn global_envoy(rls_port: u16, config: Value) -> Envoy {
    builder().grpc_cluster("ratelimit", rls_port).filter(stub()).filter(rl(config)).start()
}

#[test]
fn global_limit_is_shared_by_two_envoy_processes() {
    let (_redis, redis_port) = redis_server();
    let (_rls, rls_port) = rls_server(redis_port, &["--limit", "tier=anonymous:5:3600", "--limit", "tier=authenticated:100:3600", "--limit", "route=login:2:3600"]);
    let e1 = global_envoy(rls_port, global_config(true, 2_000));
    let e2 = global_envoy(rls_port, global_config(true, 2_000));

    // Anonymous: 5 per hour for the whole fleet, requests alternating between the two Envoys.
    let mut got = Vec::new();
    for i in 0..10 {
        let e = if i % 2 == 0 { &e1 } else { &e2 };
        let r = e.get("/fleet");
        if r.status == 200 {
            let remaining = item(r.header("ratelimit"), "anonymous").map(|x| x.0);
            assert_eq!(remaining, Some(4 - got.len() as u64), "RateLimit from the service's status: {:?}", r.header("ratelimit"));
        } else {
            assert_limited(&r);
            let retry: u64 = r.header("retry-after").unwrap_or_default().parse().unwrap_or(0);
            assert!((3590..=3600).contains(&retry), "Retry-After from the service's duration_until_reset: {retry}");
            assert_eq!(r.header("ratelimit-policy"), Some("\"anonymous\";q=5;w=3600"));
            assert_eq!(item(r.header("ratelimit"), "anonymous").map(|x| x.0), Some(0));
        }
        got.push(r.status);
    }
    assert_eq!(got, [200, 200, 200, 200, 200, 429, 429, 429, 429, 429]);
    assert!(e1.upstream.count() == 3 && e2.upstream.count() == 2, "both Envoys served: {} + {}", e1.upstream.count(), e2.upstream.count());
    assert_eq!(e1.metric("rate_limit", "global.limited") + e2.metric("rate_limit", "global.limited"), 5);

    // The route descriptor: 2 logins per hour per address, across both; a verified user
    // (authenticated: 100 per hour) still hits the route limit.
    let alice = identity("alice", None);
    let logins: Vec<u16> = (0..5).map(|i| (if i % 2 == 0 { &e1 } else { &e2 }).send(req("POST", "/auth/login", Some(&alice))).status).collect();
    assert_eq!(logins, [200, 200, 429, 429, 429]);
    let r = e2.send(req("POST", "/auth/login", Some(&alice)));
    assert_limited(&r);
    assert_eq!(item(r.header("ratelimit"), "login").map(|x| x.0), Some(0), "{:?}", r.header("ratelimit"));
    // Other users' tier buckets are their own.
    assert_eq!(e1.send(req("GET", "/", Some(&identity("bob", None)))).status, 200);
    assert_eq!(e1.metric("rate_limit", "global.errors") + e2.metric("rate_limit", "global.errors"), 0);
}

#[test]
fn global_failure_modes() {
    let (mut redis, redis_port) = redis_server();

    // The service answers too late (1.5 s, timeout 100 ms), failure_mode_deny false: allowed,
    // counted as a global error.
    let (_slow, slow_port) = rls_server(redis_port, &["--limit", "tier=anonymous:1:3600", "--delay-ms", "1500"]);
    let lenient = global_envoy(slow_port, global_config(false, 100));
    let r = lenient.get("/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(lenient.metric("rate_limit", "global.errors"), 1);
    assert_eq!(lenient.metric("rate_limit", "global.failure_allowed"), 1);
    drop(lenient);

    // Nothing listens on the cluster, failure_mode_deny true: 503.
    let dead = global_envoy(e2e::free_port(), global_config(true, 500));
    let r = dead.get("/");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["code"], "rate_limit_unavailable");
    assert_eq!(dead.upstream.count(), 0, "refused before the upstream");
    assert_eq!(dead.metric("rate_limit", "global.errors"), 1);
    drop(dead);

    // The service works, then its Redis goes away: the service answers UNAVAILABLE and a
    // strict filter refuses.
    let (_rls, rls_port) = rls_server(redis_port, &["--limit", "tier=anonymous:100:3600"]);
    let strict = global_envoy(rls_port, global_config(true, 2_000));
    assert_eq!(strict.get("/").status, 200);
    let _ = redis.0.kill();
    let _ = redis.0.wait();
    let r = strict.get("/");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["code"], "rate_limit_unavailable");
    assert_eq!(strict.metric("rate_limit", "denied.global_unavailable"), 1);
}
