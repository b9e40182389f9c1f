//! rbac: role- and permission-based access control after authentication.
//! This file is only the proxy-wasm glue; the decision lives in [`decide`].

pub mod audit;
pub mod config;
pub mod decide;
pub mod permission;
pub mod policy;

use decide::{decide, Decision, DenyReason, PeerCert, RequestView};
use policy::Policy;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::Action;
use shared::audit::DenyLog;
use shared::host::{self, BatchedCounter, Counter, SimpleFilter, SimpleRoot};
use shared::reply::Rejection;
use std::rc::Rc;

const FILTER: &str = "rbac";

#[cfg(feature = "glue")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(SimpleRoot::<Rbac>::default()) });
}}

struct Metrics {
    /// Counted in memory, flushed on the root tick (the allowed path makes no metric call).
    allowed: BatchedCounter,
    denied: Counter,
    shadow_denied: Counter,
    denied_by: Vec<(&'static str, Counter, Counter)>,
}

impl Metrics {
    fn define() -> Self {
        let name = |n: &str| format!("edgesec.{FILTER}.{n}");
        Self {
            allowed: BatchedCounter::define(&name("allowed")),
            denied: Counter::define(&name("denied")),
            shadow_denied: Counter::define(&name("shadow_denied")),
            denied_by: DenyReason::METRICS
                .iter()
                .map(|m| (*m, Counter::define(&name(&format!("denied.{m}"))), Counter::define(&name(&format!("shadow_denied.{m}")))))
                .collect(),
        }
    }

    fn denied(&self, reason: DenyReason, shadow: bool) {
        if shadow { self.shadow_denied } else { self.denied }.inc();
        if let Some((_, enforced, shadowed)) = self.denied_by.iter().find(|(m, _, _)| *m == reason.metric()) {
            if shadow { shadowed } else { enforced }.inc();
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
    Some(Box::new(SimpleRoot::<Rbac>::with_state(State::new(policy))))
}

struct Rbac;

impl SimpleFilter for Rbac {
    type State = State;

    fn configure() -> Option<State> {
        host::load_config(FILTER, config::Config::compile).map(State::new)
    }

    fn stream(state: Option<Rc<State>>) -> Box<dyn HttpContext> {
        Box::new(Stream { state })
    }

    const TICKS: bool = true;

    fn tick(state: &State) {
        state.metrics.allowed.flush();
    }
}

struct Stream {
    state: Option<Rc<State>>,
}

impl Context for Stream {}

/// The mTLS peer of the downstream connection, from Envoy's connection attributes.
fn peer_cert() -> Option<PeerCert> {
    let mtls = host::get_property(&["connection", "mtls"]).ok().flatten();
    // A failed read of the SAN of an mTLS peer leaves it without SPIFFE ID: denied.
    let san = || host::get_property(&["connection", "uri_san_peer_certificate"]).ok().flatten();
    PeerCert::from_properties(mtls.as_deref(), san)
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        let Some(state) = self.state.clone() else {
            return host::reject_unconfigured();
        };
        let Ok(headers) = host::request_headers() else {
            return host::reject_unreadable();
        };
        let (policy, metrics) = (&state.policy, &state.metrics);
        let identity = host::identity();
        let peer = if policy.has_services() { peer_cert() } else { None };
        let view = RequestView::from_headers(&headers);
        let decision = decide(&view, identity.as_ref(), peer.as_ref(), policy);
        let Decision::Deny { reason, .. } = decision else {
            metrics.allowed.inc();
            return Action::Continue;
        };
        metrics.denied(reason, policy.shadow);
        let rejection = Rejection::from(reason);
        let request_id = headers.get_str("x-request-id");
        let method = String::from_utf8_lossy(view.method);
        let path = audit::log_path(view.path);
        let extra = audit::deny_fields(&decision, identity.as_ref(), peer.as_ref(), policy);
        let line = DenyLog { filter: FILTER, code: rejection.code, status: rejection.status, method: &method, path: &path, request_id, client: None, extra, shadow: policy.shadow };
        host::info(&line.line());
        if policy.shadow {
            return Action::Continue;
        }
        let _ = host::send_rejection(&rejection, request_id);
        Action::Pause
    }
}
