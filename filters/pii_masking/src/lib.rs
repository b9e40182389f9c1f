//! pii_masking: masks personal data (cards, SSNs, IBANs, phones, e-mails, IPv4) in response
//! bodies, and optionally request bodies, as they stream through Envoy.
//! This file is only the proxy-wasm glue; decisions live in [`decide`], the per-body state
//! machine in [`body`], detection and masking in [`detect`], [`text`], [`json`], [`mask`].

pub mod body;
pub mod config;
pub mod decide;
pub mod detect;
pub mod json;
pub mod mask;
pub mod policy;
pub mod text;

use body::{BodyMasker, Limits, Step};
use decide::{BodyPlan, Denial, Direction, Outcome, BODY_HEADERS};
use detect::Detector;
use policy::{Plan, Policy};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, LogLevel};
use shared::audit::DenyLog;
use shared::host::{self, BufferType, Counter, MapType, SimpleFilter, SimpleRoot};
use shared::reply::Rejection;
use std::rc::Rc;
use std::sync::Arc;

const FILTER: &str = "pii_masking";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(SimpleRoot::<PiiMasking>::default()) });
}}

struct Metrics {
    masked: Vec<Counter>,
    json_fields: Counter,
    request: Vec<Counter>,
    response: Vec<Counter>,
    response_chunks: Counter,
}

impl Metrics {
    fn define() -> Self {
        let name = |n: &str| Counter::define(&format!("edgesec.{FILTER}.{n}"));
        Self {
            masked: Detector::ALL.iter().map(|d| name(&format!("masked.{}", d.name()))).collect(),
            json_fields: name("masked.json_field"),
            request: Outcome::ALL.iter().map(|o| name(&format!("request.{}", o.name()))).collect(),
            response: Outcome::ALL.iter().map(|o| name(&format!("response.{}", o.name()))).collect(),
            response_chunks: name("response.body_chunks"),
        }
    }

    fn outcome(&self, dir: Direction, o: Outcome) {
        let list = match dir {
            Direction::Request => &self.request,
            Direction::Response => &self.response,
        };
        if let Some(c) = Outcome::ALL.iter().position(|x| *x == o).and_then(|i| list.get(i)) {
            c.inc();
        }
    }

    fn finished(&self, dir: Direction, m: &BodyMasker) {
        for o in m.outcomes() {
            self.outcome(dir, o);
        }
        for d in Detector::ALL {
            if let Some(c) = self.masked.get(d.index()) {
                c.add(m.counts().of(d));
            }
        }
        self.json_fields.add(m.counts().fields);
        if dir == Direction::Response {
            self.response_chunks.add(m.chunks);
        }
    }
}

/// What every stream shares: the compiled policy and the metrics.
struct State {
    policy: Policy,
    metrics: Metrics,
}

struct PiiMasking;

impl SimpleFilter for PiiMasking {
    type State = State;

    fn configure() -> Option<State> {
        host::load_config(FILTER, config::Config::compile).map(|policy| State { policy, metrics: Metrics::define() })
    }

    /// Without a policy (`None`) the stream fails closed.
    fn stream(state: Option<Rc<State>>) -> Box<dyn HttpContext> {
        Box::new(Stream { state, ..Stream::default() })
    }
}

/// One body direction of a stream.
#[derive(Default)]
struct Side {
    masker: Option<BodyMasker>,
    /// The headers wait for the masked body (JSON with `hold_headers`).
    held: bool,
}

#[derive(Default)]
struct Stream {
    state: Option<Rc<State>>,
    plan: Option<Arc<Plan>>,
    request: Side,
    response: Side,
    replied: bool,
    method: String,
    path: String,
    request_id: Option<String>,
}

impl Context for Stream {}

fn buffer_of(dir: Direction) -> (BufferType, MapType) {
    match dir {
        Direction::Request => (BufferType::HttpRequestBody, MapType::HttpRequestHeaders),
        Direction::Response => (BufferType::HttpResponseBody, MapType::HttpResponseHeaders),
    }
}

impl Stream {
    fn deny(&mut self, denial: Denial, dir: Direction) -> Action {
        let rejection = Rejection::from(denial);
        if let Some(state) = &self.state {
            state.metrics.outcome(dir, denial.outcome());
        }
        host::info(
            &DenyLog { filter: FILTER, code: rejection.code, status: rejection.status, method: &self.method, path: &self.path, request_id: self.request_id.as_deref(), ..Default::default() }
                .line(),
        );
        if !self.replied {
            self.replied = true;
            // After the response headers went out Envoy can only reset the stream: still
            // nothing unmasked gets through.
            let _ = host::send_rejection(&rejection, self.request_id.as_deref());
        }
        Action::Pause
    }

    fn start_body(&mut self, dir: Direction, plan: BodyPlan, map: MapType) -> Action {
        let body_plan = match (&plan, self.plan.clone()) {
            (BodyPlan::Reject(d), _) => return self.deny(*d, dir),
            (BodyPlan::Text { .. } | BodyPlan::Json { .. }, Some(p)) => p,
            _ => {
                if let Some(state) = &self.state {
                    state.metrics.outcome(dir, Outcome::Skipped);
                }
                return Action::Continue;
            }
        };
        let side = match dir {
            Direction::Request => &mut self.request,
            Direction::Response => &mut self.response,
        };
        let hold = match plan {
            BodyPlan::Text { overflow_passed } => {
                side.masker = Some(BodyMasker::text(dir, body_plan, overflow_passed));
                false
            }
            BodyPlan::Json { hold } => {
                side.masker = Some(BodyMasker::json(dir, body_plan));
                hold
            }
            BodyPlan::Skip | BodyPlan::Reject(_) => return Action::Continue,
        };
        side.held = hold;
        if dir == Direction::Response {
            for h in BODY_HEADERS {
                let _ = host::remove_header(map, h);
            }
        }
        if hold {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    /// Apply one step of a body masker: write the masked bytes in place of the `size`
    /// presented bytes, or keep buffering, or refuse.
    fn body(&mut self, dir: Direction, size: usize, trailers: bool, end: bool) -> Action {
        let Some(state) = self.state.clone() else { return Action::Continue };
        let (buffer, map) = buffer_of(dir);
        let side = match dir {
            Direction::Request => &mut self.request,
            Direction::Response => &mut self.response,
        };
        let Some(masker) = side.masker.as_mut() else { return Action::Continue };
        if masker.is_done() {
            return Action::Continue;
        }
        let limits = Limits { max_buffer_bytes: state.policy.max_buffer_bytes, on_overflow: state.policy.on_overflow };
        let mut presented = size;
        let step = if trailers {
            let data = host::get_buffer(buffer, 0, usize::MAX).ok();
            presented = data.as_ref().map_or(0, Vec::len);
            masker.on_trailers(|| data)
        } else {
            masker.on_body(size, end, limits, || host::get_buffer(buffer, 0, size).ok())
        };
        let held = side.held;
        let action = match step {
            Step::Pass => Action::Continue,
            Step::Buffer => return Action::Pause,
            Step::Replace { bytes, complete } => {
                if host::set_buffer(buffer, 0, presented, &bytes).is_err() {
                    return self.deny(Denial::Failed(dir), dir);
                }
                if complete && held {
                    let _ = host::set_header(map, "content-length", bytes.len().to_string().as_bytes());
                }
                Action::Continue
            }
            Step::Reject(d) => return self.deny(d, dir),
        };
        if masker.is_done() {
            state.metrics.finished(dir, masker);
        }
        action
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        let Some(state) = self.state.clone() else {
            return self.deny(Denial::NotConfigured, Direction::Request);
        };
        let policy = &state.policy;
        let Ok(headers) = host::request_headers() else {
            return self.deny(Denial::Failed(Direction::Request), Direction::Request);
        };
        self.method = String::from_utf8_lossy(headers.method()).into_owned();
        self.path = String::from_utf8_lossy(headers.path()).into_owned();
        self.request_id = headers.get_str("x-request-id").map(str::to_string);
        let d = decide::request(&headers, end_of_stream, policy);
        self.plan = d.plan;
        for name in &d.edits.remove {
            let _ = host::remove_header(MapType::HttpRequestHeaders, name);
        }
        for (name, value) in &d.edits.set {
            let _ = host::set_header(MapType::HttpRequestHeaders, name, value.as_bytes());
        }
        if !policy.mask_request_bodies {
            return Action::Continue;
        }
        self.start_body(Direction::Request, d.body, MapType::HttpRequestHeaders)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Pause;
        }
        self.body(Direction::Request, body_size, false, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _n: usize) -> Action {
        if self.replied {
            return Action::Pause;
        }
        self.body(Direction::Request, 0, true, true)
    }

    fn on_http_response_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        // Our own local reply comes back through the response hooks: let it out.
        if self.replied {
            return Action::Continue;
        }
        let Some(state) = self.state.clone() else { return Action::Continue };
        let Ok(headers) = host::response_headers() else {
            return self.deny(Denial::Failed(Direction::Response), Direction::Response);
        };
        let plan = decide::response(&headers, self.plan.as_deref(), end_of_stream, &state.policy);
        self.start_body(Direction::Response, plan, MapType::HttpResponseHeaders)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Continue;
        }
        self.body(Direction::Response, body_size, false, end_of_stream)
    }

    fn on_http_response_trailers(&mut self, _n: usize) -> Action {
        if self.replied {
            return Action::Continue;
        }
        self.body(Direction::Response, 0, true, true)
    }
}
