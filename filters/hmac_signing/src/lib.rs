//! hmac_signing: RFC 9421 HTTP Message Signatures (`hmac-sha256`), RFC 9530 `Content-Digest`,
//! hashed API keys with scopes, and replay protection.
//! This file is only the proxy-wasm glue; the decisions live in [`decide`].

pub mod apikey;
pub mod components;
pub mod config;
pub mod decide;
pub mod digest;
pub mod error;
pub mod policy;
pub mod replay;
pub mod response;
pub mod secret;
pub mod sfv;
pub mod signature;

use decide::{Accepted, Decision, Pending};
use error::HmacError;
use policy::Policy;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use replay::ReplayGuard;
use shared::audit::DenyLog;
use shared::host::{self, BufferType, Counter, HostStore, MapType};
use shared::reply::Rejection;
use std::rc::Rc;

const FILTER: &str = "hmac_signing";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

struct Metrics {
    allowed_signature: Counter,
    allowed_api_key: Counter,
    allowed_anonymous: Counter,
    body_verified: Counter,
    replay_evicted_live: Counter,
    responses_signed: Counter,
    denied: Vec<(&'static str, Counter)>,
}

impl Metrics {
    fn define() -> Self {
        let name = |n: &str| format!("edgesec.{FILTER}.{n}");
        Self {
            allowed_signature: Counter::define(&name("allowed_signature")),
            allowed_api_key: Counter::define(&name("allowed_api_key")),
            allowed_anonymous: Counter::define(&name("allowed_anonymous")),
            body_verified: Counter::define(&name("body_verified")),
            replay_evicted_live: Counter::define(&name("replay_evicted_live")),
            responses_signed: Counter::define(&name("responses_signed")),
            denied: HmacError::CODES.iter().map(|c| (*c, Counter::define(&name(&format!("denied.{c}"))))).collect(),
        }
    }
}

struct State {
    policy: Policy,
    metrics: Metrics,
    guard: ReplayGuard,
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
        // Counts only: never the keys.
        host::info(&format!(
            "{FILTER}: {} signing keys, {} API keys, {} rules, response signing {}",
            policy.keys.len(),
            policy.api_keys.as_ref().map_or(0, |k| k.keys.len()),
            policy.rules.len(),
            if policy.response_signing.is_some() { "on" } else { "off" }
        ));
        let guard = ReplayGuard::new(policy.replay_cache.sets, policy.replay_cache.ways);
        if let Err(e) = guard.prepare(&HostStore) {
            host::warn(&format!("{FILTER}: could not prepare the nonce table ({e:?}); first writes may race"));
        }
        self.state = Some(Rc::new(State { policy, metrics: Metrics::define(), guard }));
        true
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        // Never return None: the SDK panics on it. Without a policy the stream fails closed.
        Some(Box::new(Stream { state: self.state.clone(), phase: Phase::Headers, body_size: 0, log: LogFields::default() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Where a stream is.
enum Phase {
    Headers,
    /// Request held; body being buffered for the checks in `Pending`.
    Buffering(Pending),
    /// Decided (allowed or refused).
    Done,
}

#[derive(Default)]
struct LogFields {
    method: String,
    path: String,
    request_id: Option<String>,
    subject: Option<String>,
}

struct Stream {
    state: Option<Rc<State>>,
    phase: Phase,
    body_size: usize,
    log: LogFields,
}

impl Context for Stream {}

impl Stream {
    fn deny(&mut self, state: &State, err: HmacError) -> Action {
        self.phase = Phase::Done;
        if let Some((_, c)) = state.metrics.denied.iter().find(|(m, _)| *m == err.metric()) {
            c.inc();
        }
        let rejection = Rejection::from(err);
        let mut extra = serde_json::Map::new();
        if let Some(s) = &self.log.subject {
            extra.insert("subject".into(), serde_json::Value::String(s.clone()));
        }
        let line = DenyLog {
            filter: FILTER,
            code: rejection.code,
            status: rejection.status,
            method: &self.log.method,
            path: &self.log.path,
            request_id: self.log.request_id.as_deref(),
            extra,
            ..Default::default()
        }
        .line();
        host::info(&line);
        let _ = host::send_rejection(&rejection, self.log.request_id.as_deref());
        Action::Pause
    }

    /// Last step before upstream: claim the nonce, record the identity.
    fn admit(&mut self, state: &State, accepted: Accepted) -> Action {
        match decide::commit(&accepted, &state.guard, &HostStore, host::now_s()) {
            Ok(claimed) if claimed.evicted_live => state.metrics.replay_evicted_live.inc(),
            Ok(_) => {}
            Err(e) => return self.deny(state, e),
        }
        match &accepted.identity {
            Some(id) => {
                if host::set_identity(id).is_err() {
                    return self.deny(state, HmacError::Internal);
                }
                match id.source {
                    shared::identity::Source::ApiKey => state.metrics.allowed_api_key.inc(),
                    _ => state.metrics.allowed_signature.inc(),
                }
            }
            None => state.metrics.allowed_anonymous.inc(),
        }
        self.phase = Phase::Done;
        Action::Continue
    }

    fn finish_body(&mut self, state: &State) -> Action {
        let Phase::Buffering(pending) = std::mem::replace(&mut self.phase, Phase::Done) else {
            return Action::Continue;
        };
        let Ok(body) = host::get_buffer(BufferType::HttpRequestBody, 0, self.body_size) else {
            return self.deny(state, HmacError::Internal);
        };
        match decide::finish(pending, &body) {
            Ok(accepted) => {
                state.metrics.body_verified.inc();
                self.admit(state, accepted)
            }
            Err(e) => self.deny(state, e),
        }
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        let Some(state) = self.state.clone() else {
            let _ = host::send_rejection(&Rejection::new(500, "filter_not_configured", "the gateway is misconfigured"), None);
            return Action::Pause;
        };
        let Ok(headers) = host::request_headers() else {
            return self.deny(&state, HmacError::Internal);
        };
        self.log.method = String::from_utf8_lossy(headers.method()).into_owned();
        self.log.path = String::from_utf8_lossy(headers.path()).into_owned();
        self.log.request_id = headers.get_str("x-request-id").map(str::to_string);
        match decide::decide(&headers, end_of_stream, &state.policy, host::now_s()) {
            Decision::Deny(e) => self.deny(&state, e),
            Decision::Allow { accepted, remove } => {
                for name in &remove {
                    let _ = host::remove_header(MapType::HttpRequestHeaders, name);
                }
                self.admit(&state, accepted)
            }
            Decision::Buffer { pending, remove } => {
                for name in &remove {
                    let _ = host::remove_header(MapType::HttpRequestHeaders, name);
                }
                self.log.subject = pending.accepted.identity.as_ref().map(|i| i.subject.clone());
                self.phase = Phase::Buffering(pending);
                // Hold the headers too (allow_on_headers_stop_iteration): nothing reaches the
                // upstream before the body is verified.
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !matches!(self.phase, Phase::Buffering(_)) {
            return Action::Continue;
        }
        let Some(state) = self.state.clone() else {
            return Action::Pause;
        };
        // After a pause, `body_size` is the whole buffered body so far.
        self.body_size = body_size;
        if !decide::body_within_limit(body_size as u64, &state.policy) {
            return self.deny(&state, HmacError::BodyTooLarge);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.finish_body(&state)
    }

    fn on_http_request_trailers(&mut self, _n: usize) -> Action {
        // With trailers the body callback never sees end_of_stream: finish here.
        if !matches!(self.phase, Phase::Buffering(_)) {
            return Action::Continue;
        }
        let Some(state) = self.state.clone() else {
            return Action::Pause;
        };
        self.finish_body(&state)
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        let Some(state) = self.state.as_ref() else {
            return Action::Continue;
        };
        let Some(cfg) = state.policy.response_signing.as_ref() else {
            return Action::Continue;
        };
        if let Ok(resp) = host::response_headers() {
            if let Some((input, sig)) = response::sign(&resp, cfg, host::now_s()) {
                let a = host::set_header(MapType::HttpResponseHeaders, "signature-input", input.as_bytes());
                let b = host::set_header(MapType::HttpResponseHeaders, "signature", sig.as_bytes());
                if a.is_ok() && b.is_ok() {
                    state.metrics.responses_signed.inc();
                }
            }
        }
        Action::Continue
    }
}
