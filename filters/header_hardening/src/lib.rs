//! header_hardening: security response headers, CORS, and request validation.
//! This file is only the proxy-wasm glue; the decisions live in [`decide`].

pub mod config;
pub mod decide;
pub mod policy;

use decide::{check_request, harden_response, CorsReply, Denial, RequestDecision};
use policy::Policy;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::Action;
use shared::audit::DenyLog;
use shared::host::{self, BatchedCounter, Counter, MapType, SimpleFilter, SimpleRoot};
use std::rc::Rc;

const FILTER: &str = "header_hardening";

#[cfg(feature = "glue")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(SimpleRoot::<HeaderHardening>::default()) });
}}

struct Metrics {
    /// Counted in memory, flushed on the root tick (the allowed path makes no metric call).
    allowed: BatchedCounter,
    preflight: Counter,
    denied: Vec<(&'static str, Counter)>,
}

impl Metrics {
    fn define() -> Self {
        let name = |n: &str| format!("edgesec.{FILTER}.{n}");
        Self {
            allowed: BatchedCounter::define(&name("allowed")),
            preflight: Counter::define(&name("cors_preflight")),
            denied: Denial::METRICS.iter().map(|m| (*m, Counter::define(&name(&format!("denied.{m}"))))).collect(),
        }
    }
    fn denied(&self, d: Denial) {
        if let Some((_, c)) = self.denied.iter().find(|(m, _)| *m == d.metric()) {
            c.inc();
        }
    }
}

struct State {
    policy: Policy,
    metrics: Metrics,
}

impl State {
    fn new(policy: Policy) -> Self {
        Self { policy, metrics: Metrics::define() }
    }
}

/// This filter's root context from an already compiled policy, for a module that runs it
/// with other filters inside one proxy-wasm filter (filters/edge_chain). Defines the same
/// metrics and does the same load-time work as `on_configure` (including the flush tick).
pub fn member_root(policy: Policy) -> Option<Box<dyn RootContext>> {
    Some(Box::new(SimpleRoot::<HeaderHardening>::with_state(State::new(policy))))
}

struct HeaderHardening;

impl SimpleFilter for HeaderHardening {
    type State = State;

    fn configure() -> Option<State> {
        host::load_config(FILTER, config::Config::compile).map(State::new)
    }

    fn stream(state: Option<Rc<State>>) -> Box<dyn HttpContext> {
        Box::new(Stream { state, cors_origin: None, preflight: false, body_seen: 0, count_body: false })
    }

    const TICKS: bool = true;

    fn tick(state: &State) {
        state.metrics.allowed.flush();
    }
}

struct Stream {
    state: Option<Rc<State>>,
    cors_origin: Option<String>,
    /// This filter answered a CORS preflight itself.
    preflight: bool,
    body_seen: u64,
    count_body: bool,
}

impl Context for Stream {}

impl Stream {
    fn deny(&self, denial: Denial, policy: &Policy, metrics: &Metrics, request_id: Option<&str>, method: &str, path: &str) -> Action {
        metrics.denied(denial);
        let rejection = denial.rejection(policy);
        host::info(&DenyLog { filter: FILTER, code: rejection.code, status: rejection.status, method, path, request_id, ..Default::default() }.line());
        let _ = host::send_rejection(&rejection, request_id);
        Action::Pause
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        let Some(state) = self.state.clone() else {
            return host::reject_unconfigured();
        };
        let Ok(headers) = host::request_headers() else {
            return host::reject_unreadable();
        };
        let (policy, metrics) = (&state.policy, &state.metrics);
        match check_request(&headers, end_of_stream, policy) {
            RequestDecision::Allow { remove, cors_origin, expect_body } => {
                for name in remove {
                    let _ = host::remove_header(MapType::HttpRequestHeaders, name);
                }
                self.cors_origin = cors_origin;
                // With a content-length the limit was checked already; otherwise count bytes.
                self.count_body = expect_body && headers.content_length().is_none();
                metrics.allowed.inc();
                Action::Continue
            }
            RequestDecision::Preflight(cors) => {
                metrics.preflight.inc();
                self.preflight = true;
                let h: Vec<(&str, &[u8])> = cors.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
                let _ = host::send_local_response(204, &h, b"");
                Action::Pause
            }
            RequestDecision::Deny(d) => {
                let method = String::from_utf8_lossy(headers.method()).into_owned();
                let path = String::from_utf8_lossy(headers.path()).into_owned();
                self.deny(d, policy, metrics, headers.get_str("x-request-id"), &method, &path)
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        if !self.count_body {
            return Action::Continue;
        }
        let Some(state) = self.state.clone() else {
            return Action::Continue;
        };
        self.body_seen = self.body_seen.saturating_add(body_size as u64);
        if !decide::body_within_limit(self.body_seen, &state.policy) {
            self.count_body = false;
            return self.deny(Denial::BodyTooLarge, &state.policy, &state.metrics, None, "", "");
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        let Some(policy) = self.state.as_ref().map(|s| &s.policy) else {
            return Action::Continue;
        };
        // One read and one write of the whole map: the cheapest way through the ABI.
        if let Ok(upstream) = host::response_headers() {
            let cors = if self.preflight { CorsReply::OwnPreflight } else { CorsReply::Upstream(self.cors_origin.as_deref()) };
            let hardened = harden_response(&upstream, policy, cors);
            let pairs: Vec<(&str, &[u8])> = hardened.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
            let _ = host::set_header_pairs(MapType::HttpResponseHeaders, &pairs);
        }
        Action::Continue
    }
}
