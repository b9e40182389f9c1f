//! rate_limit: token buckets per tier and per route, exact across Envoy worker threads
//! (shared data + compare-and-swap), IETF `RateLimit` headers, optional global mode over
//! Envoy's rate-limit service protocol. This file is only the proxy-wasm glue; decisions
//! live in [`decide`] (local) and [`rls`] (global).

pub mod bucket;
pub mod client;
pub mod config;
pub mod decide;
pub mod denial;
pub mod headers;
pub mod metrics;
pub mod policy;
pub mod rls;

use decide::{RequestView, Verdict, Violated};
use denial::Denial;
use headers::Item;
use metrics::Metrics;
use policy::{AllowedHeaders, Policy};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType};
use shared::audit::DenyLog;
use shared::host::{self, HostStore};
use shared::reply::Rejection;
use shared::request::Headers;
use shared::slots::StoreError;
use std::rc::Rc;
use std::time::Duration;

const FILTER: &str = "rate_limit";

#[cfg(feature = "glue")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

struct State {
    policy: Policy,
    metrics: Metrics,
}

impl State {
    fn new(policy: Policy) -> Self {
        // Create every set now so later writes are real compare-and-swaps (see prepare_table).
        if let Err(e) = decide::prepare_table(&HostStore, &policy.table_prefix, policy.table_sets) {
            host::warn(&format!("{FILTER}: could not prepare the bucket table ({e:?}); first writes may race"));
        }
        // The tick flushes the batched `allowed` counter; refused, it only stays in memory.
        if host::set_tick_period_ms(host::FLUSH_TICK_MS).is_err() {
            host::error(&format!("{FILTER}: cannot set the tick period: the allowed counter will not reach Envoy's stats"));
        }
        let metrics = Metrics::define(&policy);
        Self { policy, metrics }
    }
}

/// This filter's root context from an already compiled policy, for a module that runs it
/// with other filters inside one proxy-wasm filter (filters/edge_chain). Defines the same
/// metrics and does the same load-time work as `on_configure` (including the flush tick).
pub fn member_root(policy: Policy) -> Option<Box<dyn RootContext>> {
    Some(Box::new(Root { state: Some(Rc::new(State::new(policy))) }))
}

#[derive(Default)]
struct Root {
    state: Option<Rc<State>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(policy) = host::load_config(FILTER, config::Config::compile) else {
            return false;
        };
        self.state = Some(Rc::new(State::new(policy)));
        true
    }

    fn on_tick(&mut self) {
        if let Some(state) = &self.state {
            state.metrics.allowed.flush();
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        // Never return None: the SDK panics on it. Without a policy the stream fails closed.
        Some(Box::new(Stream { state: self.state.clone(), phase: Phase::Start, log: LogInfo::default() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Where a stream is.
enum Phase {
    Start,
    /// Locally allowed, waiting for the rate-limit service.
    AwaitingGlobal { token: u32, names: Vec<String>, local: Vec<Item> },
    /// Allowed: the items for the response's `RateLimit` header.
    Allowed(Vec<Item>),
    /// This filter answered (a rejection); its reply passes our response hook untouched.
    Replied,
}

/// What a deny log line needs, kept from the request headers. Built only when the request
/// is denied or waits for the rate-limit service (which may deny it), never on the allowed
/// path; the client's log tag (a hash) is computed only when the line is written.
#[derive(Default)]
struct LogInfo {
    method: String,
    path: String,
    request_id: Option<String>,
    /// The client key ([`client::ClientKey::as_key`]), logged as its tag.
    client_key: Option<String>,
    tier: String,
}

impl LogInfo {
    fn new(headers: &Headers, plan: Option<&decide::Plan>, policy: &Policy) -> Self {
        Self {
            method: String::from_utf8_lossy(headers.method()).into_owned(),
            path: String::from_utf8_lossy(headers.path()).into_owned(),
            request_id: headers.get_str("x-request-id").map(str::to_string),
            client_key: plan.map(|p| p.client.as_key()),
            tier: plan.and_then(|p| policy.tier(p.tier)).map(|t| t.name.clone()).unwrap_or_default(),
        }
    }
}

struct Stream {
    state: Option<Rc<State>>,
    phase: Phase,
    log: LogInfo,
}

impl Stream {
    fn deny(&mut self, denial: Denial, metrics: Option<&Metrics>) {
        if let Some(m) = metrics {
            m.denied(&denial);
        }
        let mut extra = serde_json::Map::new();
        if !self.log.tier.is_empty() {
            extra.insert("tier".into(), self.log.tier.clone().into());
        }
        if let Denial::Limited { violated, .. } = &denial {
            extra.insert("violated".into(), violated.clone().into());
        }
        let rejection = Rejection::from(denial);
        let client = self.log.client_key.as_deref().map(|k| shared::hash::log_tag(k.as_bytes()));
        host::info(
            &DenyLog {
                filter: FILTER,
                code: rejection.code,
                status: rejection.status,
                method: &self.log.method,
                path: &self.log.path,
                request_id: self.log.request_id.as_deref(),
                client: client.as_deref(),
                extra,
                shadow: false,
            }
            .line(),
        );
        let _ = host::send_rejection(&rejection, self.log.request_id.as_deref());
        self.phase = Phase::Replied;
    }

    fn allow(&mut self, items: Vec<Item>, metrics: &Metrics) {
        metrics.allowed.inc();
        self.phase = Phase::Allowed(items);
    }

    /// The rate-limit service failed: allow with the local state, or refuse.
    fn global_failed(&mut self, state: &State, local: Vec<Item>) -> bool {
        state.metrics.global_errors.inc();
        if state.policy.global.as_ref().is_some_and(|g| g.failure_mode_deny) {
            self.deny(Denial::GlobalUnavailable, Some(&state.metrics));
            false
        } else {
            state.metrics.global_failure_allowed.inc();
            self.allow(local, &state.metrics);
            true
        }
    }
}

impl Context for Stream {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let Some(state) = self.state.clone() else {
            return;
        };
        let Phase::AwaitingGlobal { token, names, local } = std::mem::replace(&mut self.phase, Phase::Start) else {
            return;
        };
        if token != token_id {
            self.phase = Phase::AwaitingGlobal { token, names, local };
            return;
        }
        let verdict = if status_code != 0 {
            rls::GlobalVerdict::Error
        } else {
            match host::get_buffer(BufferType::GrpcReceiveBuffer, 0, response_size).ok().map(|b| rls::decode_response(&b)) {
                Some(Ok(resp)) => rls::verdict(&resp, &names),
                _ => rls::GlobalVerdict::Error,
            }
        };
        match verdict {
            rls::GlobalVerdict::Allow { items } => {
                self.allow(if items.is_empty() { local } else { items }, &state.metrics);
                let _ = host::resume_request();
            }
            rls::GlobalVerdict::Limited { items, retry_after_s } => {
                state.metrics.global_limited.inc();
                self.deny(Denial::GlobalLimited { items, retry_after_s }, Some(&state.metrics));
            }
            rls::GlobalVerdict::Error => {
                if self.global_failed(&state, local) {
                    let _ = host::resume_request();
                }
            }
        }
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        let Some(state) = self.state.clone() else {
            self.deny(Denial::NotConfigured, None);
            return Action::Pause;
        };
        let (policy, metrics) = (&state.policy, &state.metrics);
        let Ok(headers) = host::request_headers() else {
            self.deny(Denial::Internal, Some(metrics));
            return Action::Pause;
        };
        let identity = host::identity();
        let source = host::source_address();
        let view = RequestView { headers: &headers, identity: identity.as_ref(), source: source.as_deref() };
        let plan = match decide::plan(&view, policy) {
            Ok(p) => p,
            Err(e) => {
                self.log = LogInfo::new(&headers, None, policy);
                self.deny(Denial::InvalidPath(e), Some(metrics));
                return Action::Pause;
            }
        };
        if plan.ip_source == client::IpSource::Unverified {
            metrics.unverified_address.inc();
        }

        let local = match decide::check(&plan, policy, &HostStore, host::now_ms()) {
            Ok(Verdict::Allow { items }) => items,
            Ok(Verdict::Limited { items, violated, retry_after_s }) => {
                self.log = LogInfo::new(&headers, Some(&plan), policy);
                metrics.limited.inc();
                let mut names = Vec::with_capacity(violated.len());
                for v in violated {
                    let (counter, name) = match v {
                        Violated::Tier(i) => (metrics.limited_tier.get(i), policy.tier(i).map(|t| t.name.clone())),
                        Violated::Route(i) => (metrics.limited_route.get(i), policy.routes.get(i).map(|r| r.limit.name.clone())),
                    };
                    if let Some(c) = counter {
                        c.inc();
                    }
                    names.extend(name);
                }
                self.deny(Denial::Limited { items, violated: names, retry_after_s }, Some(metrics));
                return Action::Pause;
            }
            Err(StoreError::CasMismatch) => {
                self.log = LogInfo::new(&headers, Some(&plan), policy);
                self.deny(Denial::Contention, Some(metrics));
                return Action::Pause;
            }
            Err(StoreError::Unavailable) => {
                self.log = LogInfo::new(&headers, Some(&plan), policy);
                self.deny(Denial::StoreUnavailable, Some(metrics));
                return Action::Pause;
            }
        };

        let Some(global) = policy.global.as_ref() else {
            self.allow(local, metrics);
            return Action::Continue;
        };
        // The service's answer (or its failure) may deny the request.
        self.log = LogInfo::new(&headers, Some(&plan), policy);
        let descriptors = rls::descriptors(&plan, policy);
        let names: Vec<String> = descriptors.iter().map(|(n, _)| n.clone()).collect();
        let entries: Vec<rls::Descriptor> = descriptors.into_iter().map(|(_, d)| d).collect();
        let message = rls::encode_request(&global.domain, &entries);
        // The SDK's dispatch, not `shared::host::grpc_call`: only a token the SDK registered
        // gets its response delivered to this context (an unregistered one is dropped and the
        // stream would hang). Envoy's grpcCall returns Ok, ParseFailure (unknown cluster) or
        // InternalFailure, which the SDK maps to `Err` without panicking.
        match proxy_wasm::hostcalls::dispatch_grpc_call(
            &global.cluster,
            rls::SERVICE,
            rls::METHOD,
            Vec::new(),
            Some(&message),
            Duration::from_millis(u64::from(global.timeout_ms)),
        ) {
            Ok(token) => {
                self.phase = Phase::AwaitingGlobal { token, names, local };
                Action::Pause
            }
            Err(_) => {
                if self.global_failed(&state, local) {
                    Action::Continue
                } else {
                    Action::Pause
                }
            }
        }
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        let Some(state) = self.state.as_ref() else {
            return Action::Continue;
        };
        let Phase::Allowed(items) = &self.phase else {
            return Action::Continue;
        };
        if items.is_empty() {
            return Action::Continue;
        }
        // Appended, not replaced: upstream's own RateLimit items stay (the fields are lists).
        match state.policy.allowed_headers {
            AllowedHeaders::None => {}
            AllowedHeaders::RateLimit => {
                let _ = host::add_header(MapType::HttpResponseHeaders, "ratelimit", headers::ratelimit(items).as_bytes());
            }
            AllowedHeaders::RateLimitAndPolicy => {
                let _ = host::add_header(MapType::HttpResponseHeaders, "ratelimit-policy", headers::policy(items).as_bytes());
                let _ = host::add_header(MapType::HttpResponseHeaders, "ratelimit", headers::ratelimit(items).as_bytes());
            }
        }
        Action::Continue
    }
}
