//! edge_chain: header_hardening, rate_limit, jwt_verify and rbac inside ONE proxy-wasm
//! filter (one VM, one set of callbacks per request), built from the members' own code.
//! See README.md. This file is only the proxy-wasm glue:
//! - the root compiles the combined configuration ([`config`]) and builds each member's own
//!   root context from its compiled policy (`<member>::member_root`); root callbacks (the
//!   tick, replies to the roots' outgoing calls) go to every member root;
//! - each request gets the member streams in a [`chain::Chain`];
//! - the [`registry::Registry`] is installed as `shared::host`'s combined-module hooks: the
//!   identity stays in memory, and a member that resumes a request after a callout (remote
//!   JWKS fetch, rate-limit service) gets the later members run before Envoy resumes, and
//!   the members of one run of request-headers callbacks share one read of the header map.

pub mod chain;
pub mod config;
pub mod registry;

use chain::Chain;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use registry::{HostProperty, Registry, Slot};
use shared::host;
use std::rc::Rc;

const FILTER: &str = "edge_chain";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

thread_local! {
    /// One registry per VM, shared by every edge_chain plugin the VM runs.
    static REGISTRY: Rc<Registry> = Rc::new(Registry::new(Box::new(HostProperty)));
}

fn registry() -> Rc<Registry> {
    REGISTRY.with(Rc::clone)
}

/// Run the members after the one that resumed; resume Envoy's chain if they all pass.
/// No borrow is held while Envoy resumes (that can re-enter this VM). The members share
/// one fresh read of the request header map (the copy of the first run was dropped when it
/// paused).
fn resume(slot: &Slot) {
    let action = match slot.chain.try_borrow_mut() {
        Ok(mut chain) => {
            slot.open_request_headers();
            let action = chain.resume(&|| slot.take_resume());
            slot.close_request_headers();
            action
        }
        Err(_) => return,
    };
    if action == Action::Continue {
        let _ = host::continue_stream(0);
    }
}

#[derive(Default)]
struct Root {
    /// The member roots, in request order; empty until configured.
    members: Vec<Box<dyn RootContext>>,
    export_identity: bool,
}

impl Root {
    /// Around every root callback: no request is current during it, and the requests its
    /// members resumed (jwt_verify after a key fetch) continue through the chain after it.
    fn forward(&mut self, f: impl Fn(&mut dyn RootContext)) {
        let reg = registry();
        reg.set_current(None);
        for m in &mut self.members {
            f(m.as_mut());
        }
        for (id, slot) in reg.take_pending() {
            if host::set_effective_context(id).is_ok() {
                resume(&slot);
            }
        }
        reg.set_current(None);
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, num_trailers: usize) {
        self.forward(|m| m.on_http_call_response(token_id, num_headers, body_size, num_trailers));
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        self.forward(|m| m.on_grpc_call_response(token_id, status_code, response_size));
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(plan) = host::load_config(FILTER, config::Config::compile) else {
            return false;
        };
        host::install_combined(registry());
        let names = plan.members();
        let roots = [
            plan.header_hardening.map(header_hardening::member_root),
            plan.rate_limit.map(rate_limit::member_root),
            plan.jwt_verify.map(jwt_verify::member_root),
            plan.rbac.map(rbac::member_root),
        ];
        let mut members = Vec::new();
        for root in roots.into_iter().flatten() {
            let Some(root) = root else {
                return false; // the member logged why
            };
            members.push(root);
        }
        host::info(&format!("{FILTER}: running {} in one filter", names.join(" -> ")));
        self.members = members;
        self.export_identity = plan.export_identity;
        true
    }

    fn on_tick(&mut self) {
        self.forward(|m| m.on_tick());
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        self.forward(|m| m.on_queue_ready(queue_id));
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Never `None` (the SDK panics on it): without members the stream fails closed.
        let members: Option<Vec<Box<dyn HttpContext>>> = self.members.iter().map(|m| m.create_http_context(context_id)).collect();
        let slot = match members {
            Some(m) if !m.is_empty() => {
                let slot = Rc::new(Slot::new(Chain::new(m), self.export_identity));
                registry().add(context_id, slot.clone());
                Some(slot)
            }
            _ => None,
        };
        Some(Box::new(Stream { id: context_id, slot, registry: registry() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    id: u32,
    /// `None` only if the plugin's configuration was refused: every request fails closed.
    slot: Option<Rc<Slot>>,
    registry: Rc<Registry>,
}

impl Stream {
    /// Every callback starts here: this request is the one the members' host calls act on.
    fn enter(&self) -> Option<Rc<Slot>> {
        self.registry.set_current(Some(self.id));
        self.slot.clone()
    }

    /// A callback for every member (outgoing-call replies, end of stream); then, if the
    /// member that paused resumed, the members after it.
    fn each(&mut self, f: impl FnMut(&mut Box<dyn HttpContext>)) {
        let Some(slot) = self.enter() else { return };
        if let Ok(mut chain) = slot.chain.try_borrow_mut() {
            chain.each(f);
        }
        if slot.take_resume() {
            resume(&slot);
        }
    }

    /// A request or response callback through the chain; fails closed if unconfigured.
    fn run(&mut self, unconfigured: fn() -> Action, f: impl FnOnce(&mut Chain, &Slot) -> Action) -> Action {
        let Some(slot) = self.enter() else {
            return unconfigured();
        };
        let Ok(mut chain) = slot.chain.try_borrow_mut() else {
            return Action::Pause;
        };
        f(&mut chain, &slot)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

impl Context for Stream {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, num_trailers: usize) {
        self.each(|m| m.on_http_call_response(token_id, num_headers, body_size, num_trailers));
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        self.each(|m| m.on_grpc_call_response(token_id, status_code, response_size));
    }

    fn on_done(&mut self) -> bool {
        self.each(|m| {
            m.on_done();
        });
        true
    }
}

fn pause() -> Action {
    Action::Pause
}

fn pass() -> Action {
    Action::Continue
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        // The members share one read of the request header map (kept coherent with their
        // own edits of it), dropped when the callback returns.
        self.run(host::reject_unconfigured, |c, slot| {
            slot.open_request_headers();
            let action = c.request_headers(num_headers, end_of_stream, &|| slot.take_resume());
            slot.close_request_headers();
            action
        })
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.run(pause, |c, _| c.request_body(body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, num_trailers: usize) -> Action {
        self.run(pause, |c, _| c.request_trailers(num_trailers))
    }

    fn on_http_response_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        self.run(pass, |c, _| c.response_headers(num_headers, end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.run(pass, |c, _| c.response_body(body_size, end_of_stream))
    }

    fn on_http_response_trailers(&mut self, num_trailers: usize) -> Action {
        self.run(pass, |c, _| c.response_trailers(num_trailers))
    }

    fn on_log(&mut self) {
        self.each(|m| m.on_log());
    }
}
