//! Faults through the real Envoy: dependencies that are down, slow or answer garbage, and
//! configuration changed while Envoy serves (hot reload over file-based LDS).
//!
//! Already covered elsewhere, not repeated here (docs/security.md "Faults" lists them):
//! a JWKS server answering 500 from the start and its recovery, and an outage after a good
//! fetch (tests/tests/jwt_verify.rs); a slow rate-limit service with `failure_mode_deny: false`,
//! a dead one with `failure_mode_deny: true` and a dead Redis behind it
//! (tests/tests/rate_limit.rs); a panicking module (tests/tests/failure_policy.rs).
//!
//! "Nothing hangs" is asserted as a generous bound (seconds above the configured timeout),
//! never as a performance number.

use e2e::rls::{redis_server, rls_server_on};
use e2e::reload::LdsOutcome;
use e2e::{fixture_wasm, peer, python, root, Envoy, EnvoyBuilder, Filter, Request, Response, Upstream};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Hot reload

/// header_hardening adding `x-config-generation: <generation>` to every response.
fn hardening(generation: &str) -> Filter {
    Filter::new("header_hardening", json!({"response_headers": {"x-config-generation": generation}}))
}

/// One response of the load: status and `x-config-generation`, or the I/O error.
type Outcome = Result<(u16, Option<String>), String>;

/// Load on the listener while something else happens: `threads` clients, each sending
/// requests one after another (one connection each) until stopped; every response recorded.
struct Load {
    stop: Arc<AtomicBool>,
    handles: Vec<std::thread::JoinHandle<Vec<Outcome>>>,
}

impl Load {
    fn start(port: u16, threads: usize, path: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let handles = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut out = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let r = Request::get(path).timeout(Duration::from_secs(20)).send(port);
                        out.push(r.map(|r| (r.status, r.header("x-config-generation").map(str::to_string))).map_err(|e| e.to_string()));
                    }
                    out
                })
            })
            .collect();
        Self { stop, handles }
    }

    fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        self.handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    }
}

#[test]
fn hot_reload_changes_behaviour_without_dropping_requests_and_refuses_a_bad_config() {
    // An upstream slow enough that requests are always in flight when the listener changes.
    let up = Upstream::with_handler(|r| {
        std::thread::sleep(Duration::from_millis(100));
        e2e::upstream::echo(r)
    });
    let mut e = Envoy::builder().upstream(up).concurrency(2).filter(hardening("1")).start_lds();
    let r = e.get("/x");
    assert_eq!((r.status, r.header("x-config-generation")), (200, Some("1")));

    // Generation 2 while 8 clients keep requests in flight.
    let load = Load::start(e.port, 8, "/during-reload");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(e.update_filters(vec![hardening("2")]), LdsOutcome::Accepted, "{}", e2e::tail(&e.logs(), 30));
    assert!(e.wait_warm(), "the new listener never warmed");
    // Keep the load going while the old filter chain drains.
    std::thread::sleep(Duration::from_millis(1500));
    let results = load.finish();
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "requests failed during the reload: {failed:?}");
    let statuses: std::collections::BTreeMap<u16, usize> = results.iter().flatten().fold(Default::default(), |mut m, (s, _)| {
        *m.entry(*s).or_default() += 1;
        m
    });
    assert_eq!(statuses.keys().copied().collect::<Vec<_>>(), vec![200], "statuses during the reload: {statuses:?}");
    let generations: std::collections::BTreeSet<Option<String>> = results.iter().flatten().map(|(_, g)| g.clone()).collect();
    assert!(generations.contains(&Some("2".into())), "no request saw the new config during the load: {generations:?}");
    assert!(results.len() >= 16, "too few requests ran during the reload: {}", results.len());
    // After the swap every new request sees the new configuration.
    for _ in 0..5 {
        assert_eq!(e.get("/after").header("x-config-generation"), Some("2"));
    }

    // A config the filter refuses (unknown field): the listener update is rejected, the
    // rejection names the field, and generation 2 keeps serving.
    let rejected_before = e.lds_counter("update_rejected");
    let bad = Filter::new("header_hardening", json!({"response_headers": {"x-config-generation": "3"}, "respones_headers_typo": {}}));
    assert_eq!(e.update_filters(vec![bad]), LdsOutcome::Rejected, "{}", e2e::tail(&e.logs(), 30));
    assert_eq!(e.lds_counter("update_rejected"), rejected_before + 1);
    let logs = e.logs();
    assert!(logs.contains("header_hardening: invalid configuration at 'respones_headers_typo': unknown field"), "the rejection names the field:\n{}", e2e::tail(&logs, 30));
    assert!(logs.contains("lds: listener 'main' config rejected"), "Envoy logs the rejected update");
    for _ in 0..5 {
        let r = e.get("/still");
        assert_eq!((r.status, r.header("x-config-generation")), (200, Some("2")));
    }

    // Envoy itself only warns about unknown fields in dynamic resources (unless started with
    // --reject-unknown-dynamic-fields): a misspelled *Envoy* field is accepted and counted in
    // server.dynamic_unknown_fields. Our filters' own configs are refused either way (above).
    let unknown_before = e.counter("server.dynamic_unknown_fields").unwrap_or(0);
    let mut listener = e.listener(&[hardening("2")]);
    listener["per_connection_buffer_limit_bytez"] = json!(1024);
    assert_eq!(e.write_listener(listener), LdsOutcome::Accepted);
    assert!(e.counter("server.dynamic_unknown_fields").unwrap_or(0) > unknown_before, "Envoy counts the unknown field");
    assert_eq!(e.get("/still").header("x-config-generation"), Some("2"));
    // Repeated reloads do not pile up wasm VMs: once the old filter chains drain, the number
    // of live VMs is back where it was (each reload's plugin shares the VM by vm_id).
    let vms = |e: &Envoy| e.counter("wasm.envoy.wasm.runtime.v8.active").unwrap_or(0);
    let baseline = vms(&e);
    for generation in 3..8 {
        assert_eq!(e.update_filters(vec![hardening(&generation.to_string())]), LdsOutcome::Accepted);
        assert!(e.wait_warm());
        eventually("the new generation serves", Duration::from_secs(10), || e.get("/gen").header("x-config-generation") == Some(&generation.to_string()));
    }
    eventually("old VMs released after the reloads", Duration::from_secs(20), || vms(&e) <= baseline);
    eprintln!("hot reload: {} live VMs before and after 5 more reloads", baseline);
    eprintln!("hot reload: {} requests during the swap, statuses {statuses:?}, generations seen {generations:?}", results.len());
}

// ---------------------------------------------------------------------------------------------
// A dependency that misbehaves on demand: a loopback TCP server whose behaviour the test
// switches. Switching closes every open connection, so Envoy's connection pool starts over.

#[derive(Clone, Debug, PartialEq)]
enum Mode {
    /// HTTP/1.1 200 with this body (JSON or not).
    Answer(u16, String),
    /// Accept, read the request, answer after this long (past the client's timeout).
    Slow(Duration, String),
    /// Read the request, then close the connection without a byte of answer.
    Close,
    /// Accept, read, never answer (a black hole).
    Silent,
}

struct FaultServer {
    port: u16,
    mode: Arc<Mutex<Mode>>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl FaultServer {
    fn start(mode: Mode) -> Self {
        Self::on(0, mode)
    }

    /// Listen on a chosen port (a port the Envoy cluster already points at).
    fn on(port: u16, mode: Mode) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| panic!("bind {port}: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let _ = listener.set_nonblocking(true);
        let mode = Arc::new(Mutex::new(mode));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (m, c, s) = (mode.clone(), conns.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        if let (Ok(mut all), Ok(clone)) = (c.lock(), conn.try_clone()) {
                            all.push(clone);
                        }
                        let m = m.clone();
                        std::thread::spawn(move || serve(conn, m));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { port, mode, conns, stop, accept: Some(accept) }
    }

    fn set(&self, mode: Mode) {
        if let Ok(mut m) = self.mode.lock() {
            *m = mode;
        }
        self.drop_connections();
    }

    fn drop_connections(&self) {
        if let Ok(mut all) = self.conns.lock() {
            for c in all.drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        self.drop_connections();
    }
}

/// Serve one connection: read a request head (HTTP/1.1, or the HTTP/2 preface of a gRPC
/// client), act by the mode at that moment, repeat while the connection lasts.
fn serve(mut conn: TcpStream, mode: Arc<Mutex<Mode>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    loop {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let current = mode.lock().map(|m| m.clone()).unwrap_or(Mode::Close);
        let (status, body) = match current {
            Mode::Close => {
                // The server keeps a clone of every connection: close it for real.
                let _ = conn.shutdown(std::net::Shutdown::Both);
                return;
            }
            Mode::Silent => {
                // Hold the connection open until the peer or the test closes it.
                while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
                return;
            }
            Mode::Slow(d, body) => {
                std::thread::sleep(d);
                (200, body)
            }
            Mode::Answer(status, body) => (status, body),
        };
        let out = format!("HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len());
        if conn.write_all(out.as_bytes()).is_err() {
            return;
        }
    }
}

/// Send and time a request; "nothing hangs" is a bound of `limit`, not a performance number.
fn send_bounded(port: u16, req: Request, limit: Duration) -> Response {
    let started = Instant::now();
    let r = req.timeout(limit + Duration::from_secs(5)).send(port).unwrap_or_else(|e| panic!("request failed or hung past {limit:?}: {e}"));
    assert!(started.elapsed() < limit, "the request took {:?}, more than the {limit:?} bound", started.elapsed());
    r
}

fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("not reached within {limit:?}: {what}");
}

// ---------------------------------------------------------------------------------------------
// Remote JWKS down, slow, garbage

struct Keys {
    dir: std::path::PathBuf,
    init: Value,
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| {
        let dir = root().join("target/e2e").join(format!("faults-keys-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let init = serde_json::from_str(&python(&peer("jwt_tokens.py"), &[dir.to_str().unwrap_or_default(), "init"])).expect("peer output");
        Keys { dir, init }
    })
}

/// Tokens signed with the key published as `rot-a`, one per `(issuer, subject)`, minted by
/// PyJWT in one call.
fn tokens(which: &[(String, String)]) -> Vec<String> {
    let items: Vec<Value> = which.iter().map(|(iss, sub)| json!({"kid": "rot-a", "claims": {"iss": iss, "sub": sub, "jti": format!("jti-{sub}")}})).collect();
    let out = python(&peer("jwt_tokens.py"), &[keys().dir.to_str().unwrap_or_default(), "mint", &Value::Array(items).to_string()]);
    serde_json::from_str(&out).expect("tokens")
}

fn bearer(t: &str) -> Request {
    Request::get("/orders").header("authorization", &format!("Bearer {t}"))
}

const JWKS_TIMEOUT_MS: u64 = 1000;

#[test]
fn remote_jwks_down_slow_or_garbage_fails_closed_without_hanging_and_recovers() {
    let good_jwks = keys().init["rotation_a"].to_string();
    let ok = Mode::Answer(200, good_jwks.clone());
    // (provider, what the IdP does at first). Answering 500 from the start is in jwt_verify.rs.
    let refused_port = e2e::free_port();
    let faults: Vec<(&str, Option<Mode>)> = vec![
        ("refused", None), // nothing listens on the cluster's port
        ("slow", Some(Mode::Slow(Duration::from_millis(3 * JWKS_TIMEOUT_MS), good_jwks.clone()))),
        ("silent", Some(Mode::Silent)),
        ("closed", Some(Mode::Close)),
        ("not_json", Some(Mode::Answer(200, "<html>maintenance</html>".into()))),
        ("no_keys_member", Some(Mode::Answer(200, r#"{"issuer": "https://idp.example"}"#.into()))),
        ("empty_keys", Some(Mode::Answer(200, r#"{"keys": []}"#.into()))),
        ("unusable_keys", Some(Mode::Answer(200, r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "rot-a"}]}"#.into()))),
        ("truncated", Some(Mode::Answer(200, good_jwks[..good_jwks.len() / 2].to_string()))),
    ];
    let healthy = FaultServer::start(ok.clone());
    let mut servers: Vec<(&str, Option<FaultServer>)> = faults.iter().map(|(n, m)| (*n, m.clone().map(FaultServer::start))).collect();
    let port_of = |name: &str, servers: &[(&str, Option<FaultServer>)]| servers.iter().find(|(n, _)| *n == name).and_then(|(_, s)| s.as_ref().map(|s| s.port)).unwrap_or(refused_port);

    let provider = |name: &str| {
        json!({"issuer": format!("https://{name}.example"), "remote_jwks": {"cluster": format!("idp_{name}"), "authority": "idp.example", "path": "/jwks", "cache_duration_s": 1, "timeout_ms": JWKS_TIMEOUT_MS}})
    };
    let mut providers = serde_json::Map::new();
    providers.insert("healthy".into(), provider("healthy"));
    let mut b: EnvoyBuilder = Envoy::builder().cluster("idp_healthy", healthy.port);
    for (name, _) in &faults {
        providers.insert((*name).into(), provider(name));
        b = b.cluster(&format!("idp_{name}"), port_of(name, &servers));
    }
    let e = b.filter(Filter::new("jwt_verify", json!({"providers": providers}))).start();
    let bound = Duration::from_millis(JWKS_TIMEOUT_MS) + Duration::from_secs(9);
    // Per faulty provider: a token for each phase (first outage, recovery, garbage after a
    // good fetch), and one of the healthy provider per fault.
    let phases = ["down", "recovered", "degraded"];
    let mut wanted: Vec<(String, String)> = Vec::new();
    for (name, _) in &faults {
        for phase in phases {
            wanted.push((format!("https://{name}.example"), format!("{name}-{phase}")));
        }
        wanted.push(("https://healthy.example".into(), format!("healthy-{name}")));
    }
    let minted = tokens(&wanted);
    let token = |name: &str, phase: &str| -> String {
        let sub = format!("{name}-{phase}");
        wanted.iter().zip(&minted).find(|((_, s), _)| *s == sub).map(|(_, t)| t.clone()).unwrap_or_default()
    };

    // Each faulty IdP: a valid token is refused with 503 jwks_unavailable (the token may be
    // good: not a 401), promptly, and nothing reaches upstream. The healthy provider is unaffected.
    for (name, _) in &faults {
        let r = send_bounded(e.port, bearer(&token(name, "down")), bound);
        assert_eq!((r.status, r.code().as_str()), (503, "jwks_unavailable"), "{name}: {}", r.text());
        assert_eq!(r.header("retry-after"), Some("5"), "{name}");
        let r = send_bounded(e.port, bearer(&token("healthy", name)), bound);
        assert_eq!(r.status, 200, "healthy provider while {name} is down: {}", r.text());
    }
    let healthy_requests = faults.len();
    assert_eq!(e.upstream.count(), healthy_requests, "only the healthy provider's requests reached upstream");
    assert!(e.metric("jwt_verify", "jwks_fetch_failed") >= faults.len() as u64);

    // The IdPs recover (the refused one starts listening): valid tokens pass again.
    for (_, s) in servers.iter().filter_map(|(n, s)| s.as_ref().map(|s| (n, s))) {
        s.set(ok.clone());
    }
    servers.push(("refused", Some(FaultServer::on(refused_port, ok.clone()))));
    for (name, _) in &faults {
        let t = token(name, "recovered");
        eventually(&format!("{name} recovers"), Duration::from_secs(20), || send_bounded(e.port, bearer(&t), bound).status == 200);
    }

    // Garbage after a good fetch: every provider keeps its last good key set (cache_duration_s
    // is 1, so each refreshes every second and fails), and new tokens still verify.
    let failed_before = e.metric("jwt_verify", "jwks_fetch_failed");
    for ((name, mode), (_, s)) in faults.iter().zip(&servers) {
        let (Some(m), Some(s)) = (mode, s) else { continue };
        assert_eq!(servers.iter().filter(|(n, _)| n == name).count(), 1);
        s.set(m.clone());
    }
    if let Some((_, Some(s))) = servers.iter().find(|(n, _)| *n == "refused") {
        s.set(Mode::Close);
    }
    eventually("refreshes fail", Duration::from_secs(20), || e.metric("jwt_verify", "jwks_fetch_failed") >= failed_before + 2 * faults.len() as u64);
    for (name, _) in &faults {
        let r = send_bounded(e.port, bearer(&token(name, "degraded")), bound);
        assert_eq!(r.status, 200, "{name}: a failed refresh must keep the last good keys: {}", r.text());
    }
    assert!(e.logs().contains("the last good copy, if there is one, stays in use"), "{}", e2e::tail(&e.logs(), 30));
}

// ---------------------------------------------------------------------------------------------
// Global rate-limit service down, slow, garbage

const RLS_TIMEOUT_MS: u64 = 300;

fn global_rl(deny: bool) -> Filter {
    Filter::new(
        "rate_limit",
        json!({
            "tiers": {"anonymous": {"requests": 1000, "per": "hour"}, "authenticated": {"requests": 1000, "per": "hour"}},
            "global": {"cluster": "ratelimit", "domain": "edge", "timeout_ms": RLS_TIMEOUT_MS, "failure_mode_deny": deny},
            "table": {"sets": 16, "ways": 4}
        }),
    )
}

#[test]
fn global_rate_limit_service_down_slow_or_garbage_follows_failure_mode_without_hanging() {
    // Both Envoys point at one port; what listens there changes. (A dead service with
    // failure_mode_deny: true and a slow one with false are in rate_limit.rs.)
    let port = e2e::free_port();
    let stub = || Filter::new("identity_stub", json!({})).path(fixture_wasm("identity_stub"));
    let strict = Envoy::builder().grpc_cluster("ratelimit", port).filter(stub()).filter(global_rl(true)).start();
    let lenient = Envoy::builder().grpc_cluster("ratelimit", port).filter(stub()).filter(global_rl(false)).start();
    let bound = Duration::from_millis(RLS_TIMEOUT_MS) + Duration::from_secs(9);

    let check = |what: &str| {
        let r = send_bounded(strict.port, Request::get("/"), bound);
        assert_eq!((r.status, r.code().as_str()), (503, "rate_limit_unavailable"), "strict, {what}: {}", r.text());
        let r = send_bounded(lenient.port, Request::get("/"), bound);
        assert_eq!(r.status, 200, "lenient, {what}: {}", r.text());
    };
    // Nothing listens.
    check("connection refused");
    // Listens, never answers (the gRPC deadline must end the call).
    let server = FaultServer::on(port, Mode::Silent);
    check("silent");
    // A plain HTTP/1.1 server on the gRPC port: garbage to an HTTP/2 client.
    server.set(Mode::Answer(200, "{\"not\": \"grpc\"}".into()));
    check("HTTP/1.1 answer on the gRPC port");
    // Accepts and closes.
    server.set(Mode::Close);
    check("connection closed");
    assert_eq!(strict.upstream.count(), 0, "the strict proxy let nothing through");
    assert_eq!(strict.metric("rate_limit", "global.errors"), 4);
    assert_eq!(strict.metric("rate_limit", "denied.global_unavailable"), 4);
    assert_eq!(lenient.metric("rate_limit", "global.failure_allowed"), 4);

    // The real service comes back on the same port: decisions come from it again.
    drop(server);
    let (redis, redis_port) = redis_server();
    let rls = rls_server_on(port, redis_port, &["--limit", "tier=anonymous:3:3600"]);
    eventually("the strict proxy serves again", Duration::from_secs(20), || send_bounded(strict.port, Request::get("/"), bound).status == 200);
    let mut got: Vec<u16> = (0..4).map(|_| send_bounded(strict.port, Request::get("/"), bound).status).collect();
    got.dedup();
    assert_eq!(got.last(), Some(&429), "the service's limit (3 per hour) applies again: {got:?}");
    drop((rls, redis));
}
