//! BENCHMARK ONLY, NEVER SHIPPED (`scripts/bench`, issue 10). The "floor" module: it does only
//! the least host work each of our filters must do for its job, so the benchmark can tell the
//! cost of the proxy-wasm crossings apart from the cost of our logic. Jobs, configured as
//! `{"jobs": [...]}` (an empty list is the no-op filter):
//!
//! * `headers`: on the response, read the header map once and write it back once with the
//!   nine OWASP security headers set (what header_hardening does: 2 host calls);
//!   `headers_each`: one replace call per security header instead (9 host calls).
//! * `rate_limit`: read `source.address`, then one compare-and-swap on one shared-data key
//!   (read + conditional write: 3 host calls).
//! * `jwt`: read `authorization`, SHA-256 of the token, one shared-data read (the cached
//!   identity; filled on the first miss only), record the identity property, remove the
//!   header (4 host calls on a hit).
//! * `rbac`: read the identity property (or take it from memory when `jwt` ran in the same
//!   filter), decode it, read `:path`, normalize and match it against one path template and
//!   check the role claim (2 host calls).
//!
//! Several jobs in one list run inside one filter (one VM, one set of callbacks), which is
//! what a combined module would pay. A request the floor cannot serve (no token, wrong role)
//! gets a local reply, so a broken benchmark set-up shows as errors, never as speed.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;
use shared::config::{ConfigErrors, Validator};
use shared::hash::sha256;
use shared::host::{self, MapType};
use shared::identity::Identity;
use shared::pathmatch::{normalize, PathTemplate};
use shared::reply::Rejection;
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { state: None }) });
}}

/// The nine default security headers of header_hardening (OWASP Secure Headers, API profile).
const SECURITY_HEADERS: [(&str, &str); 9] = [
    ("strict-transport-security", "max-age=31536000; includeSubDomains"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("permissions-policy", "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("x-permitted-cross-domain-policies", "none"),
];

const RL_SLOTS: u32 = 1024;
const JWT_SLOTS: u32 = 4096;
const CAS_RETRIES: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Job {
    Headers,
    HeadersEach,
    RateLimit,
    Jwt,
    Rbac,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    jobs: Vec<Job>,
    /// The identity the `jwt` job caches and records (what jwt_verify would record).
    #[serde(default)]
    identity: Option<serde_json::Value>,
    /// Path template the `rbac` job matches.
    #[serde(default = "default_path")]
    path: String,
    /// Role the `rbac` job requires in `role_claim`.
    #[serde(default = "default_role")]
    role: String,
    #[serde(default = "default_role_claim")]
    role_claim: String,
}

fn default_path() -> String {
    "/orders".into()
}
fn default_role() -> String {
    "viewer".into()
}
fn default_role_claim() -> String {
    "role".into()
}

struct State {
    headers: Option<Job>,
    rate_limit: bool,
    jwt: bool,
    rbac: bool,
    identity: Vec<u8>,
    template: Option<PathTemplate>,
    role: String,
    role_claim: String,
}

fn compile(c: Config) -> Result<State, ConfigErrors> {
    let mut v = Validator::new();
    let has = |j: Job| c.jobs.contains(&j);
    let identity = match &c.identity {
        Some(value) => match serde_json::from_value::<Identity>(value.clone()) {
            Ok(id) => id.encode(),
            Err(e) => {
                v.error("identity", format!("not an identity: {e}"));
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    v.check(!has(Job::Jwt) || !identity.is_empty(), "identity", "the jwt job needs an identity to record");
    let template = if has(Job::Rbac) { PathTemplate::compile(&c.path, "path", &mut v) } else { None };
    let headers = if has(Job::HeadersEach) { Some(Job::HeadersEach) } else if has(Job::Headers) { Some(Job::Headers) } else { None };
    v.finish(State {
        headers,
        rate_limit: has(Job::RateLimit),
        jwt: has(Job::Jwt),
        rbac: has(Job::Rbac),
        identity,
        template,
        role: c.role,
        role_claim: c.role_claim,
    })
}

struct Root {
    state: Option<Rc<State>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.state = host::load_config("floor", compile).map(Rc::new);
        self.state.is_some()
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream { state: self.state.clone() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    state: Option<Rc<State>>,
}

impl Context for Stream {}

fn refuse(status: u16, code: &'static str) -> Action {
    let _ = host::send_rejection(&Rejection::new(status, code, "floor module refused the request"), None);
    Action::Pause
}

fn slot(data: &[u8], slots: u32) -> u32 {
    let d = sha256(data);
    u32::from_le_bytes([d[0], d[1], d[2], d[3]]) % slots
}

/// Read the source address and count the request with one compare-and-swap.
fn rate_limit() -> Result<(), &'static str> {
    let addr = host::source_address().ok_or("no_source_address")?;
    let ip = addr.rsplit_once(':').map_or(addr.as_str(), |(ip, _)| ip);
    let key = format!("bench.floor.rl.{}", slot(ip.as_bytes(), RL_SLOTS));
    for _ in 0..CAS_RETRIES {
        let (value, cas) = host::get_shared(&key).map_err(|_| "store")?.unwrap_or((Vec::new(), 0));
        let count = value.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map_or(0, u64::from_le_bytes);
        match host::set_shared(&key, &count.wrapping_add(1).to_le_bytes(), cas) {
            Ok(()) => return Ok(()),
            Err(host::HostError { status: 8 }) => continue,
            Err(_) => return Err("store"),
        }
    }
    Err("contention")
}

/// Hash the token, one shared-data read, record the identity, remove the header.
/// Returns the identity bytes recorded.
fn jwt(state: &State) -> Result<Vec<u8>, &'static str> {
    let value = host::header(MapType::HttpRequestHeaders, "authorization").map_err(|_| "internal")?.ok_or("token_missing")?;
    let token = value.strip_prefix(b"Bearer ").ok_or("token_missing")?;
    let digest = sha256(token);
    let key = format!("bench.floor.jwt.{}", slot(&digest, JWT_SLOTS));
    let cached = host::get_shared(&key).map_err(|_| "store")?;
    let identity = match cached {
        Some((record, _)) if record.get(..32) == Some(&digest[..]) => record.get(32..).unwrap_or_default().to_vec(),
        _ => {
            // Miss: fill the slot (what a verification would do), off the hot path.
            let mut record = digest.to_vec();
            record.extend_from_slice(&state.identity);
            let _ = host::set_shared(&key, &record, 0);
            state.identity.clone()
        }
    };
    host::set_property(&[shared::identity::PROPERTY], &identity).map_err(|_| "internal")?;
    host::remove_header(MapType::HttpRequestHeaders, "authorization").map_err(|_| "internal")?;
    Ok(identity)
}

/// Read the identity (unless given) and the path; match the template and the role.
fn rbac(state: &State, identity: Option<Vec<u8>>) -> Result<(), (u16, &'static str)> {
    let raw = match identity {
        Some(bytes) => bytes,
        None => host::get_property(&[shared::identity::PROPERTY]).map_err(|_| (500, "internal"))?.ok_or((401, "authentication_required"))?,
    };
    let id = Identity::decode(&raw).ok_or((401, "authentication_required"))?;
    let path = host::header(MapType::HttpRequestHeaders, ":path").map_err(|_| (500, "internal"))?.unwrap_or_default();
    let normalized = normalize(&path).map_err(|_| (400, "bad_path"))?;
    let matched = state.template.as_ref().is_some_and(|t| t.matches(&normalized));
    if matched && id.claim_strings(&state.role_claim).contains(&state.role.as_str()) {
        Ok(())
    } else {
        Err((403, "permission_denied"))
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        let Some(state) = self.state.clone() else {
            return host::reject_unconfigured();
        };
        if state.rate_limit {
            if let Err(code) = rate_limit() {
                return refuse(503, code);
            }
        }
        let mut identity = None;
        if state.jwt {
            match jwt(&state) {
                Ok(id) => identity = Some(id),
                Err(code) => return refuse(401, code),
            }
        }
        if state.rbac {
            if let Err((status, code)) = rbac(&state, identity) {
                return refuse(status, code);
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        match self.state.as_ref().and_then(|s| s.headers) {
            Some(Job::HeadersEach) => {
                for (k, v) in SECURITY_HEADERS {
                    let _ = host::set_header(MapType::HttpResponseHeaders, k, v.as_bytes());
                }
            }
            Some(_) => {
                if let Ok(upstream) = host::response_headers() {
                    let mut pairs: Vec<(&str, &[u8])> = upstream.iter().filter(|(k, _)| !SECURITY_HEADERS.iter().any(|(s, _)| s == k)).collect();
                    pairs.extend(SECURITY_HEADERS.iter().map(|(k, v)| (*k, v.as_bytes())));
                    let _ = host::set_header_pairs(MapType::HttpResponseHeaders, &pairs);
                }
            }
            None => {}
        }
        Action::Continue
    }
}
