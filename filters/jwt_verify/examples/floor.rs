//! The "floor" module of the issue's speed goal, for the throughput benchmark only (never
//! shipped): per request it reads the request headers once, hashes the bearer token, does one
//! shared-data read and records an identity. Nothing is verified. jwt_verify's cache-hit path
//! is compared against it (`filters/jwt_verify/bench/throughput.py`). With the configuration `"full"` it also
//! reads the clock and removes the token header: the two host calls any correct verifier
//! makes on a hit (expiry check, token not forwarded).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use shared::host;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { full: false }) });
}}

struct Root {
    full: bool,
}
impl Context for Root {}
impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.full = host::plugin_configuration().map(|c| c.windows(4).any(|w| w == b"full")).unwrap_or(false);
        true
    }
    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream { full: self.full }))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    full: bool,
}
impl Context for Stream {}
impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let Ok(headers) = host::request_headers() else { return Action::Continue };
        let token = headers.get("authorization").unwrap_or_default();
        let key = format!("floor.{}", shared::hash::hex(&shared::hash::sha256(token)[..8]));
        // The record is an identity of the size jwt_verify stores; written on the first request,
        // so every later read returns it like a cache hit.
        let identity = match host::get_shared(&key).ok().flatten() {
            Some((v, _)) => v,
            None => {
                let id = br#"{"source":"jwt","provider":"main","subject":"user-1","claims":{"aud":"api","exp":1795593600,"iat":1795590000,"iss":"https://issuer.example","sub":"user-1"}}"#.to_vec();
                let _ = host::set_shared(&key, &id, 0);
                id
            }
        };
        let _ = host::set_property(&[shared::identity::PROPERTY], &identity);
        if self.full {
            std::hint::black_box(host::now_ms());
            let _ = host::remove_header(host::MapType::HttpRequestHeaders, "authorization");
        }
        Action::Continue
    }
}
