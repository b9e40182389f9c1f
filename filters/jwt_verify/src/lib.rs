//! `jwt_verify`: JWT verification for Envoy (proxy-wasm). See README.md.
//!
//! This file is only the proxy-wasm glue. The root context parses the configuration, owns
//! the remote documents (JWK Sets, revocation lists) of its VM, fetches them on its tick,
//! and resumes requests that waited for them. Each stream asks [`decide::decide`] and
//! applies the answer.

pub mod cache;
pub mod claims;
pub mod config;
pub mod crypto;
pub mod decide;
pub mod error;
pub mod extract;
pub mod jwk;
pub mod remote;
pub mod token;
pub mod verify;

use cache::Cache;
use config::{Policy, RemoteKind};
use decide::{decide, CacheUse, Ctx, Decision, Outcome, Wait};
use error::JwtError;
use extract::Edit;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use remote::Remote;
use shared::audit::DenyLog;
use shared::host::{self, BatchedCounter, BufferType, Counter, HostStore, MapType};
use shared::reply::Rejection;
use shared::request::Headers;
use shared::slots::SharedStore;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

const FILTER: &str = "jwt_verify";
/// Root tick: remote documents are synced from shared data and refreshed on it, and the
/// per-request counters are flushed to Envoy's stats.
const TICK_MS: u32 = host::FLUSH_TICK_MS;
/// A request waits at most this long for a fetch, then is decided without waiting.
const MAX_WAIT_MS: u64 = 30_000;
/// A request is re-decided at most this many times after waiting.
const MAX_WAITS: u8 = 4;

#[cfg(feature = "glue")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

struct Metrics {
    allowed: BatchedCounter,
    allowed_anonymous: BatchedCounter,
    denied: BatchedCounter,
    denied_by: Vec<BatchedCounter>,
    cache_hit: BatchedCounter,
    cache_miss: BatchedCounter,
    cache_error: BatchedCounter,
    waited: BatchedCounter,
    jwks_fetch_ok: Counter,
    jwks_fetch_failed: Counter,
    revocations_fetch_ok: Counter,
    revocations_fetch_failed: Counter,
}

impl Metrics {
    fn define() -> Self {
        let name = |n: &str| format!("edgesec.{FILTER}.{n}");
        let b = |n: &str| BatchedCounter::define(&name(n));
        let c = |n: &str| Counter::define(&name(n));
        Self {
            allowed: b("allowed"),
            allowed_anonymous: b("allowed_anonymous"),
            denied: b("denied"),
            denied_by: JwtError::ALL.iter().map(|e| b(&format!("denied.{}", e.counter_name()))).collect(),
            cache_hit: b("cache_hit"),
            cache_miss: b("cache_miss"),
            cache_error: b("cache_error"),
            waited: b("waited"),
            jwks_fetch_ok: c("jwks_fetch_ok"),
            jwks_fetch_failed: c("jwks_fetch_failed"),
            revocations_fetch_ok: c("revocations_fetch_ok"),
            revocations_fetch_failed: c("revocations_fetch_failed"),
        }
    }

    fn flush(&self) {
        for b in [&self.allowed, &self.allowed_anonymous, &self.denied, &self.cache_hit, &self.cache_miss, &self.cache_error, &self.waited] {
            b.flush();
        }
        for b in &self.denied_by {
            b.flush();
        }
    }
}

/// What a paused stream is waiting for; shared between the stream and the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamState {
    Deciding,
    Waiting,
    Allowed,
    Denied,
}

struct Waiter {
    context_id: u32,
    headers: Headers,
    wait: Wait,
    since_ms: u64,
    waits: u8,
    state: Rc<Cell<StreamState>>,
}

/// Per-VM mutable state, owned by the root.
struct Runtime {
    remotes: Vec<Remote>,
    waiters: Vec<Waiter>,
    /// Fetches under way: (token, remote index).
    calls: Vec<(u32, usize)>,
}

struct State {
    policy: Policy,
    metrics: Metrics,
    cache: Option<Cache>,
    rt: RefCell<Runtime>,
}

enum Applied {
    Continue,
    Replied,
    Waiting,
}

impl State {
    fn decide(&self, headers: &Headers, now_s: u64, allow_wait: bool) -> Outcome {
        let Ok(rt) = self.rt.try_borrow() else {
            return Outcome { decision: Decision::Deny(JwtError::Internal), cache: CacheUse::NotUsed };
        };
        let store = HostStore;
        let cx = Ctx {
            policy: &self.policy,
            remotes: &rt.remotes,
            cache: self.cache.as_ref().map(|c| (c, &store as &dyn SharedStore)),
            now_s,
            allow_wait,
        };
        decide(headers, &cx)
    }

    fn deny(&self, e: JwtError, headers: &Headers) -> Applied {
        self.metrics.denied.inc();
        if let Some(c) = self.metrics.denied_by.get(e.counter_index()) {
            c.inc();
        }
        let rejection = Rejection::from(e);
        let method = String::from_utf8_lossy(headers.method());
        // Without the query: a token may travel in a query parameter, and logs never carry one.
        let path = String::from_utf8_lossy(shared::request::split_query(headers.path()).0);
        let request_id = headers.get_str("x-request-id");
        host::info(&DenyLog { filter: FILTER, code: rejection.code, status: rejection.status, method: &method, path: &path, request_id, ..Default::default() }.line());
        let _ = host::send_rejection(&rejection, request_id);
        Applied::Replied
    }

    /// Carry out a decision for the stream that is the host's current (effective) context.
    fn apply(&self, outcome: Outcome, headers: &Headers, context_id: u32, waits: u8, since_ms: u64, stream: &Rc<Cell<StreamState>>) -> Applied {
        match outcome.cache {
            CacheUse::Hit => self.metrics.cache_hit.inc(),
            CacheUse::Miss { .. } => self.metrics.cache_miss.inc(),
            CacheUse::Error => self.metrics.cache_error.inc(),
            CacheUse::NotUsed => {}
        }
        match outcome.decision {
            Decision::Allow(a) => {
                for e in &a.edits {
                    let _ = match e {
                        Edit::Remove(n) => host::remove_header(MapType::HttpRequestHeaders, n),
                        Edit::Set(n, v) => host::set_header(MapType::HttpRequestHeaders, n, v),
                        Edit::Add(n, v) => host::add_header(MapType::HttpRequestHeaders, n, v),
                    };
                }
                match &a.identity {
                    Some(id) => {
                        // Without the identity, later filters would see an anonymous request.
                        if host::set_identity_encoded(id).is_err() {
                            stream.set(StreamState::Denied);
                            return self.deny(JwtError::Internal, headers);
                        }
                        self.metrics.allowed.inc();
                    }
                    None => self.metrics.allowed_anonymous.inc(),
                }
                stream.set(StreamState::Allowed);
                Applied::Continue
            }
            Decision::Deny(e) => {
                stream.set(StreamState::Denied);
                self.deny(e, headers)
            }
            Decision::Wait(wait) => {
                let Ok(mut rt) = self.rt.try_borrow_mut() else {
                    stream.set(StreamState::Denied);
                    return self.deny(JwtError::Internal, headers);
                };
                if let Wait::EarlyRefresh(i) = wait {
                    if let Some(r) = rt.remotes.get_mut(i) {
                        r.want_early();
                    }
                }
                rt.waiters.push(Waiter { context_id, headers: headers.clone(), wait, since_ms, waits, state: stream.clone() });
                self.metrics.waited.inc();
                stream.set(StreamState::Waiting);
                Applied::Waiting
            }
        }
    }

    /// Sync remote documents from shared data, start due fetches, wake waiters.
    fn poll(&self, now_ms: u64) {
        let store = HostStore;
        let mut woken: Vec<usize> = Vec::new();
        let mut due: Vec<usize> = Vec::new();
        if let Ok(mut rt) = self.rt.try_borrow_mut() {
            for (i, r) in rt.remotes.iter_mut().enumerate() {
                let entry = store.get(&r.spec.shared_key).ok().flatten().map(|(v, _)| v);
                let t = r.tick(entry.as_deref(), now_ms);
                if t.wake {
                    woken.push(i);
                }
                if t.fetch {
                    due.push(i);
                }
            }
        }
        for i in due {
            if !self.fetch(i, now_ms) {
                woken.push(i);
            }
        }
        self.wake(&woken, now_ms);
    }

    /// Dispatch the fetch of remote `i`; false if the host refused it.
    fn fetch(&self, i: usize, now_ms: u64) -> bool {
        let Some(spec) = self.rt.try_borrow().ok().and_then(|rt| rt.remotes.get(i).map(|r| r.spec.clone())) else { return true };
        let headers = vec![(":method", "GET"), (":path", spec.path.as_str()), (":authority", spec.authority.as_str()), ("accept", "application/json")];
        // The SDK's dispatch registers the call so the response reaches this root context;
        // a call made through the raw ABI would make the SDK panic on the response. It
        // returns Err for an unknown cluster or a refused call (root context only, never on
        // a request path).
        let result = proxy_wasm::hostcalls::dispatch_http_call(&spec.cluster, headers, None, vec![], Duration::from_millis(u64::from(spec.timeout_ms)));
        let ok = result.is_ok();
        if let Ok(mut rt) = self.rt.try_borrow_mut() {
            if let Ok(token) = result {
                rt.calls.push((token, i));
            }
            if let Some(r) = rt.remotes.get_mut(i) {
                r.dispatched(ok, now_ms);
            }
        }
        if !ok {
            self.fetch_failed(&spec, "the host refused the call (unknown cluster?)");
        }
        ok
    }

    fn fetch_failed(&self, spec: &config::RemoteSpec, why: &str) {
        match spec.kind {
            RemoteKind::Jwks => self.metrics.jwks_fetch_failed.inc(),
            RemoteKind::Revocations => self.metrics.revocations_fetch_failed.inc(),
        }
        host::warn(&format!("{FILTER}: fetching {} from cluster '{}' failed: {why}; the last good copy, if there is one, stays in use", spec.path, spec.cluster));
    }

    fn on_response(&self, token: u32, body_size: usize, now_ms: u64) {
        let status = host::header(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|v| std::str::from_utf8(&v).ok().and_then(|s| s.parse::<u16>().ok()));
        let body = if body_size > remote::MAX_BODY {
            Vec::new()
        } else {
            host::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).unwrap_or_default()
        };
        let status = if body_size > remote::MAX_BODY { Some(413) } else { status };
        let mut woken = Vec::new();
        let result = {
            let Ok(mut rt) = self.rt.try_borrow_mut() else { return };
            let Some(pos) = rt.calls.iter().position(|(t, _)| *t == token) else { return };
            let (_, i) = rt.calls.swap_remove(pos);
            woken.push(i);
            rt.remotes.get_mut(i).map(|r| (r.spec.clone(), r.on_response(status, &body, now_ms)))
        };
        match result {
            Some((spec, Ok((skipped, body)))) => {
                let generation = remote::publish(&HostStore, &spec.shared_key, &body, now_ms / 1000).ok();
                let mut changed = None;
                if let Ok(mut rt) = self.rt.try_borrow_mut() {
                    if let (Some(r), Some(g)) = (woken.first().and_then(|&i| rt.remotes.get_mut(i)), generation) {
                        if r.generation != g {
                            changed = Some((g, r.keys().map_or(0, jwk::KeySet::len)));
                        }
                        r.generation = g;
                    }
                }
                if let Some((g, n)) = changed {
                    let provider = self.policy.providers.get(spec.provider).map(|p| p.name.as_str()).unwrap_or_default();
                    let what = match spec.kind {
                        RemoteKind::Jwks => format!("key set ({n} keys)"),
                        RemoteKind::Revocations => "revocation list".to_string(),
                    };
                    host::info(&format!("{FILTER}: provider '{provider}': new {what} from cluster '{}', generation {g}", spec.cluster));
                }
                match spec.kind {
                    RemoteKind::Jwks => self.metrics.jwks_fetch_ok.inc(),
                    RemoteKind::Revocations => self.metrics.revocations_fetch_ok.inc(),
                }
                if skipped > 0 {
                    host::warn(&format!("{FILTER}: {} from cluster '{}': {skipped} unusable key(s) skipped", spec.path, spec.cluster));
                }
            }
            Some((spec, Err(e))) => self.fetch_failed(&spec, &format!("{e:?}")),
            None => {}
        }
        self.wake(&woken, now_ms);
    }

    /// Re-decide the requests waiting for one of `remotes`, and those waiting too long.
    /// No `RefCell` borrow is held while a stream is resumed (resuming can re-enter the VM).
    fn wake(&self, remotes: &[usize], now_ms: u64) {
        let ready: Vec<Waiter> = {
            let Ok(mut rt) = self.rt.try_borrow_mut() else { return };
            let waiters = std::mem::take(&mut rt.waiters);
            let (ready, keep): (Vec<Waiter>, Vec<Waiter>) = waiters.into_iter().partition(|w| {
                let target = match w.wait {
                    Wait::Remote(i) | Wait::EarlyRefresh(i) => i,
                };
                remotes.contains(&target) || now_ms.saturating_sub(w.since_ms) >= MAX_WAIT_MS
            });
            rt.waiters = keep;
            ready
        };
        for w in ready {
            if w.state.get() != StreamState::Waiting || host::set_effective_context(w.context_id).is_err() {
                continue; // the stream is gone
            }
            let allow_wait = w.waits < MAX_WAITS && now_ms.saturating_sub(w.since_ms) < MAX_WAIT_MS;
            let outcome = self.decide(&w.headers, now_ms / 1000, allow_wait);
            if let Applied::Continue = self.apply(outcome, &w.headers, w.context_id, w.waits.saturating_add(1), w.since_ms, &w.state) {
                let _ = host::resume_request();
            }
        }
    }

    fn forget(&self, context_id: u32) {
        if let Ok(mut rt) = self.rt.try_borrow_mut() {
            rt.waiters.retain(|w| w.context_id != context_id);
        }
    }
}

impl State {
    /// The load-time work after the configuration compiled; `None` refuses the plugin.
    fn new(policy: Policy) -> Option<Self> {
        let remotes: Vec<Remote> = policy.remotes.iter().cloned().map(Remote::new).collect();
        let cache = policy.cache.as_ref().map(|c| Cache::new(c.sets, c.ways));
        if let Some(Err(e)) = cache.as_ref().map(|c| c.prepare(&HostStore)) {
            host::warn(&format!("{FILTER}: could not prepare the verification cache ({e:?}); first writes may race"));
        }
        if host::set_tick_period_ms(TICK_MS).is_err() {
            host::error(&format!("{FILTER}: cannot set the tick period (remote keys would never be fetched, metrics never flushed)"));
            return None;
        }
        Some(Self { policy, metrics: Metrics::define(), cache, rt: RefCell::new(Runtime { remotes, waiters: Vec::new(), calls: Vec::new() }) })
    }
}

/// This filter's root context from an already compiled policy, for a module that runs it
/// with other filters inside one proxy-wasm filter (filters/edge_chain). Defines the same
/// metrics and does the same load-time work as `on_configure` (including the 500 ms tick).
pub fn member_root(policy: Policy) -> Option<Box<dyn RootContext>> {
    Some(Box::new(Root { state: Some(Rc::new(State::new(policy)?)) }))
}

#[derive(Default)]
struct Root {
    state: Option<Rc<State>>,
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        if let Some(state) = &self.state {
            state.on_response(token_id, body_size, host::now_ms());
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(policy) = host::load_config(FILTER, config::Config::compile) else {
            return false;
        };
        self.state = State::new(policy).map(Rc::new);
        self.state.is_some()
    }

    fn on_tick(&mut self) {
        if let Some(state) = &self.state {
            state.poll(host::now_ms());
            state.metrics.flush();
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Never return None: the SDK panics on it. Without a policy the stream fails closed.
        Some(Box::new(Stream { context_id, state: self.state.clone(), stream: Rc::new(Cell::new(StreamState::Deciding)) }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    context_id: u32,
    state: Option<Rc<State>>,
    stream: Rc<Cell<StreamState>>,
}

impl Context for Stream {
    fn on_done(&mut self) -> bool {
        if self.stream.get() == StreamState::Waiting {
            self.stream.set(StreamState::Denied);
            if let Some(state) = &self.state {
                state.forget(self.context_id);
            }
        }
        true
    }
}

impl Stream {
    /// Body and trailers must not move a request past this filter before it is decided:
    /// returning Continue from a body callback would resume a paused request.
    fn hold_unless_allowed(&self) -> Action {
        if self.stream.get() == StreamState::Allowed {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        let Some(state) = self.state.clone() else {
            self.stream.set(StreamState::Denied);
            let _ = host::send_rejection(&Rejection::new(500, "filter_not_configured", "the gateway is misconfigured"), None);
            return Action::Pause;
        };
        let Ok(headers) = host::request_headers() else {
            self.stream.set(StreamState::Denied);
            let _ = host::send_rejection(&Rejection::from(JwtError::Internal), None);
            return Action::Pause;
        };
        let now_ms = host::now_ms();
        let outcome = state.decide(&headers, now_ms / 1000, true);
        match state.apply(outcome, &headers, self.context_id, 0, now_ms, &self.stream) {
            Applied::Continue => Action::Continue,
            Applied::Replied | Applied::Waiting => Action::Pause,
        }
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        self.hold_unless_allowed()
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.hold_unless_allowed()
    }
}
