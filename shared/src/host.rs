//! The only module that talks to Envoy.
//!
//! proxy-wasm-rust-sdk 0.2's `hostcalls::*` panic on any host status they did not expect
//! (for example after the client went away, envoyproxy/envoy#26485), and a panic kills the
//! whole VM: every later request on that worker fails until the VM is reloaded. So the calls
//! used on request paths are declared here against the proxy-wasm ABI directly and every
//! status becomes a `Result`. Parsing of host-returned maps is bounds-checked.
//! On non-wasm targets (unit tests) every call returns [`HostError`].
//!
//! Outgoing calls (`dispatch_http_call`, `dispatch_grpc_call`) are deliberately NOT here: the
//! SDK routes a reply only to a call it registered itself, and a reply for a token it does
//! not know crashes its dispatcher. Filters make them from the root context with the SDK's
//! `proxy_wasm::hostcalls::dispatch_*` (never on a request path).

use crate::reply::Rejection;
use crate::request::Headers;
use crate::slots::{SharedStore, StoreError};
pub use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};

/// A host call failed; `status` is the proxy-wasm status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError {
    pub status: u32,
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
const OK: u32 = 0;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
const NOT_FOUND: u32 = 1;
const CAS_MISMATCH: u32 = 8;

type R<T> = Result<T, HostError>;

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn check(status: u32) -> R<()> {
    if status == OK {
        Ok(())
    } else {
        Err(HostError { status })
    }
}

#[cfg(target_arch = "wasm32")]
#[allow(clashing_extern_declarations)]
mod abi {
    #[link(wasm_import_module = "env")]
    extern "C" {
        pub fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
        pub fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
        pub fn proxy_get_buffer_bytes(buffer_type: u32, start: usize, max_size: usize, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
        pub fn proxy_set_buffer_bytes(buffer_type: u32, start: usize, size: usize, data: *const u8, data_size: usize) -> u32;
        pub fn proxy_get_header_map_pairs(map_type: u32, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
        pub fn proxy_set_header_map_pairs(map_type: u32, data: *const u8, size: usize) -> u32;
        pub fn proxy_get_header_map_value(map_type: u32, key: *const u8, key_size: usize, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
        pub fn proxy_replace_header_map_value(map_type: u32, key: *const u8, key_size: usize, value: *const u8, value_size: usize) -> u32;
        pub fn proxy_add_header_map_value(map_type: u32, key: *const u8, key_size: usize, value: *const u8, value_size: usize) -> u32;
        pub fn proxy_remove_header_map_value(map_type: u32, key: *const u8, key_size: usize) -> u32;
        pub fn proxy_get_property(path: *const u8, path_size: usize, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
        pub fn proxy_set_property(path: *const u8, path_size: usize, value: *const u8, value_size: usize) -> u32;
        pub fn proxy_get_shared_data(key: *const u8, key_size: usize, return_data: *mut *mut u8, return_size: *mut usize, return_cas: *mut u32) -> u32;
        pub fn proxy_set_shared_data(key: *const u8, key_size: usize, value: *const u8, value_size: usize, cas: u32) -> u32;
        pub fn proxy_send_local_response(status: u32, details: *const u8, details_size: usize, body: *const u8, body_size: usize, headers: *const u8, headers_size: usize, grpc_status: i32) -> u32;
        pub fn proxy_continue_stream(stream_type: u32) -> u32;
        pub fn proxy_set_effective_context(context_id: u32) -> u32;
        pub fn proxy_define_metric(metric_type: u32, name: *const u8, name_size: usize, return_id: *mut u32) -> u32;
        pub fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
        pub fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    }

    /// Take ownership of a buffer the host allocated through the SDK's allocator.
    pub unsafe fn take(ptr: *mut u8, size: usize) -> Vec<u8> {
        if ptr.is_null() {
            Vec::new()
        } else {
            Vec::from_raw_parts(ptr, size, size)
        }
    }
}

/// Serialize a header map in the proxy-wasm wire format.
pub fn serialize_map(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let size = 4 + pairs.iter().map(|(k, v)| k.len() + v.len() + 10).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Parse the proxy-wasm map wire format; `None` if it is malformed.
pub fn deserialize_map(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(b) as usize)
    };
    let n = u32_at(0)?;
    let mut p = 4usize.checked_add(n.checked_mul(8)?)?;
    if p > bytes.len() {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let ks = u32_at(4 + i * 8)?;
        let vs = u32_at(8 + i * 8)?;
        let k = bytes.get(p..p.checked_add(ks)?)?;
        p = p.checked_add(ks + 1)?;
        let v = bytes.get(p..p.checked_add(vs)?)?;
        p = p.checked_add(vs + 1)?;
        out.push((String::from_utf8_lossy(k).into_owned(), v.to_vec()));
    }
    Some(out)
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn property_path(path: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in path.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(p.as_bytes());
    }
    out
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::*;

    pub fn log(level: LogLevel, msg: &str) {
        unsafe {
            abi::proxy_log(level as u32, msg.as_ptr(), msg.len());
        }
    }

    pub fn now_nanos() -> R<u64> {
        let mut t = 0u64;
        check(unsafe { abi::proxy_get_current_time_nanoseconds(&mut t) })?;
        Ok(t)
    }

    pub fn get_buffer(buffer: BufferType, start: usize, max: usize) -> R<Vec<u8>> {
        let mut ptr = std::ptr::null_mut();
        let mut size = 0usize;
        let st = unsafe { abi::proxy_get_buffer_bytes(buffer as u32, start, max, &mut ptr, &mut size) };
        let data = unsafe { abi::take(ptr, size) };
        match st {
            OK => Ok(data),
            NOT_FOUND => Ok(Vec::new()),
            s => Err(HostError { status: s }),
        }
    }

    pub fn set_buffer(buffer: BufferType, start: usize, size: usize, data: &[u8]) -> R<()> {
        check(unsafe { abi::proxy_set_buffer_bytes(buffer as u32, start, size, data.as_ptr(), data.len()) })
    }

    pub fn header_pairs(map: MapType) -> R<Vec<(String, Vec<u8>)>> {
        let mut ptr = std::ptr::null_mut();
        let mut size = 0usize;
        check(unsafe { abi::proxy_get_header_map_pairs(map as u32, &mut ptr, &mut size) })?;
        let data = unsafe { abi::take(ptr, size) };
        deserialize_map(&data).ok_or(HostError { status: 7 })
    }

    pub fn set_header_pairs(map: MapType, pairs: &[(&str, &[u8])]) -> R<()> {
        let data = serialize_map(pairs);
        check(unsafe { abi::proxy_set_header_map_pairs(map as u32, data.as_ptr(), data.len()) })
    }

    pub fn header(map: MapType, name: &str) -> R<Option<Vec<u8>>> {
        let mut ptr = std::ptr::null_mut();
        let mut size = 0usize;
        let st = unsafe { abi::proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut ptr, &mut size) };
        let data = unsafe { abi::take(ptr, size) };
        match st {
            OK if !ptr.is_null() => Ok(Some(data)),
            OK | NOT_FOUND => Ok(None),
            s => Err(HostError { status: s }),
        }
    }

    pub fn set_header(map: MapType, name: &str, value: &[u8]) -> R<()> {
        check(unsafe { abi::proxy_replace_header_map_value(map as u32, name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
    }

    pub fn add_header(map: MapType, name: &str, value: &[u8]) -> R<()> {
        check(unsafe { abi::proxy_add_header_map_value(map as u32, name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
    }

    pub fn remove_header(map: MapType, name: &str) -> R<()> {
        check(unsafe { abi::proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()) })
    }

    pub fn get_property(path: &[&str]) -> R<Option<Vec<u8>>> {
        let p = property_path(path);
        let mut ptr = std::ptr::null_mut();
        let mut size = 0usize;
        let st = unsafe { abi::proxy_get_property(p.as_ptr(), p.len(), &mut ptr, &mut size) };
        let had = !ptr.is_null();
        let data = unsafe { abi::take(ptr, size) };
        match st {
            OK if had => Ok(Some(data)),
            OK | NOT_FOUND => Ok(None),
            s => Err(HostError { status: s }),
        }
    }

    pub fn set_property(path: &[&str], value: &[u8]) -> R<()> {
        let p = property_path(path);
        check(unsafe { abi::proxy_set_property(p.as_ptr(), p.len(), value.as_ptr(), value.len()) })
    }

    pub fn get_shared(key: &str) -> R<Option<(Vec<u8>, u32)>> {
        let mut ptr = std::ptr::null_mut();
        let mut size = 0usize;
        let mut cas = 0u32;
        let st = unsafe { abi::proxy_get_shared_data(key.as_ptr(), key.len(), &mut ptr, &mut size, &mut cas) };
        let had = !ptr.is_null();
        let data = unsafe { abi::take(ptr, size) };
        match st {
            OK if had => Ok(Some((data, cas))),
            OK | NOT_FOUND => Ok(None),
            s => Err(HostError { status: s }),
        }
    }

    pub fn set_shared(key: &str, value: &[u8], cas: u32) -> R<()> {
        check(unsafe { abi::proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) })
    }

    pub fn send_local_response(status: u32, headers: &[(&str, &[u8])], body: &[u8]) -> R<()> {
        let h = serialize_map(headers);
        check(unsafe { abi::proxy_send_local_response(status, std::ptr::null(), 0, body.as_ptr(), body.len(), h.as_ptr(), h.len(), -1) })
    }

    pub fn continue_stream(stream: u32) -> R<()> {
        check(unsafe { abi::proxy_continue_stream(stream) })
    }

    pub fn set_effective_context(id: u32) -> R<()> {
        check(unsafe { abi::proxy_set_effective_context(id) })
    }

    pub fn define_metric(kind: MetricType, name: &str) -> R<u32> {
        let mut id = 0u32;
        check(unsafe { abi::proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) })?;
        Ok(id)
    }

    pub fn increment_metric(id: u32, by: i64) -> R<()> {
        check(unsafe { abi::proxy_increment_metric(id, by) })
    }

    pub fn set_tick_period_ms(ms: u32) -> R<()> {
        check(unsafe { abi::proxy_set_tick_period_milliseconds(ms) })
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[allow(unused_variables)]
mod imp {
    use super::*;
    const NO_HOST: HostError = HostError { status: 12 };
    pub fn log(level: LogLevel, msg: &str) {}
    pub fn now_nanos() -> R<u64> {
        Err(NO_HOST)
    }
    pub fn get_buffer(buffer: BufferType, start: usize, max: usize) -> R<Vec<u8>> {
        Err(NO_HOST)
    }
    pub fn set_buffer(buffer: BufferType, start: usize, size: usize, data: &[u8]) -> R<()> {
        Err(NO_HOST)
    }
    pub fn header_pairs(map: MapType) -> R<Vec<(String, Vec<u8>)>> {
        Err(NO_HOST)
    }
    pub fn header(map: MapType, name: &str) -> R<Option<Vec<u8>>> {
        Err(NO_HOST)
    }
    pub fn set_header_pairs(map: MapType, pairs: &[(&str, &[u8])]) -> R<()> {
        Err(NO_HOST)
    }
    pub fn set_header(map: MapType, name: &str, value: &[u8]) -> R<()> {
        Err(NO_HOST)
    }
    pub fn add_header(map: MapType, name: &str, value: &[u8]) -> R<()> {
        Err(NO_HOST)
    }
    pub fn remove_header(map: MapType, name: &str) -> R<()> {
        Err(NO_HOST)
    }
    pub fn get_property(path: &[&str]) -> R<Option<Vec<u8>>> {
        Err(NO_HOST)
    }
    pub fn set_property(path: &[&str], value: &[u8]) -> R<()> {
        Err(NO_HOST)
    }
    pub fn get_shared(key: &str) -> R<Option<(Vec<u8>, u32)>> {
        Err(NO_HOST)
    }
    pub fn set_shared(key: &str, value: &[u8], cas: u32) -> R<()> {
        Err(NO_HOST)
    }
    pub fn send_local_response(status: u32, headers: &[(&str, &[u8])], body: &[u8]) -> R<()> {
        Err(NO_HOST)
    }
    pub fn continue_stream(stream: u32) -> R<()> {
        Err(NO_HOST)
    }
    pub fn set_effective_context(id: u32) -> R<()> {
        Err(NO_HOST)
    }
    pub fn define_metric(kind: MetricType, name: &str) -> R<u32> {
        Err(NO_HOST)
    }
    pub fn increment_metric(id: u32, by: i64) -> R<()> {
        Err(NO_HOST)
    }
    pub fn set_tick_period_ms(ms: u32) -> R<()> {
        Err(NO_HOST)
    }
}

pub use imp::{
    continue_stream, define_metric, get_buffer, get_property, get_shared, header_pairs, increment_metric, log, now_nanos, send_local_response, set_buffer,
    set_property, set_shared, set_tick_period_ms,
};

/// Several filters run inside ONE proxy-wasm filter (filters/edge_chain): the identity of a
/// request stays in the VM's memory, and a member's "resume this request" means "run the
/// members after me" rather than "continue Envoy's filter chain". The combined module
/// installs one per VM with [`install_combined`]; the separate modules never do, and then
/// [`identity`], [`set_identity`], [`resume_request`] and [`set_effective_context`] talk to
/// the host exactly as documented.
pub trait Combined {
    /// The host was told to act on `context_id` (a root resuming a parked stream).
    fn enter(&self, context_id: u32);
    /// The identity of the current request as the combined module knows it (`Some(None)`:
    /// anonymous); `None`: not a combined stream, read the host property.
    fn identity(&self) -> Option<Option<Vec<u8>>>;
    /// Keep the identity of the current request; `None`: not a combined stream (use the
    /// host property).
    fn set_identity(&self, encoded: &[u8]) -> Option<R<()>>;
    /// A member resumes the current request; true if the combined module takes it over.
    fn resume_request(&self) -> bool;
    /// The current request's header map as the combined module keeps it (one read shared by
    /// the members of one request-headers callback); `None`: not kept, read the host.
    fn request_headers(&self) -> Option<Headers> {
        None
    }
    /// The current request's header map was just read from the host: keep it if the module
    /// caches it now.
    fn keep_request_headers(&self, _headers: &Headers) {}
    /// A member edited the current request's header map (`ok`: the host accepted the edit):
    /// keep the cached copy equal to the host's map.
    fn request_headers_edited(&self, _edit: &HeaderEdit<'_>, _ok: bool) {}
}

/// An edit of a header map, as the host applies it (for copies kept in memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderEdit<'a> {
    /// `replace_header_map_value`: every `name` entry removed, one added.
    Replace(&'a str, &'a [u8]),
    /// `add_header_map_value`: one entry appended.
    Add(&'a str, &'a [u8]),
    /// `remove_header_map_value`: every `name` entry removed.
    Remove(&'a str),
    /// `set_header_map_pairs`: the whole map replaced.
    All(&'a [(&'a str, &'a [u8])]),
}

impl HeaderEdit<'_> {
    /// Apply the edit to a copy of the map.
    pub fn apply(&self, headers: &mut Headers) {
        match *self {
            HeaderEdit::Replace(name, value) => headers.replace(name, value),
            HeaderEdit::Add(name, value) => headers.append(name, value),
            HeaderEdit::Remove(name) => headers.remove(name),
            HeaderEdit::All(pairs) => *headers = Headers::new(pairs.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.to_vec())).collect()),
        }
    }
}

/// Tell the combined module (if any) about an edit of the request header map.
fn edited(map: MapType, edit: HeaderEdit<'_>, result: R<()>) -> R<()> {
    if map == MapType::HttpRequestHeaders {
        if let Some(c) = combined() {
            c.request_headers_edited(&edit, result.is_ok());
        }
    }
    result
}

/// One header value (the first one, as the host answers). Inside a combined module a request
/// header is answered from the kept request map when there is one (no host call).
pub fn header(map: MapType, name: &str) -> R<Option<Vec<u8>>> {
    if map == MapType::HttpRequestHeaders {
        if let Some(kept) = combined().and_then(|c| c.request_headers()) {
            return Ok(kept.get(&name.to_ascii_lowercase()).map(<[u8]>::to_vec));
        }
    }
    imp::header(map, name)
}

/// Replace a header (every entry of `name` removed, one added).
pub fn set_header(map: MapType, name: &str, value: &[u8]) -> R<()> {
    edited(map, HeaderEdit::Replace(name, value), imp::set_header(map, name, value))
}

/// Add one header entry.
pub fn add_header(map: MapType, name: &str, value: &[u8]) -> R<()> {
    edited(map, HeaderEdit::Add(name, value), imp::add_header(map, name, value))
}

/// Remove every entry of a header.
pub fn remove_header(map: MapType, name: &str) -> R<()> {
    edited(map, HeaderEdit::Remove(name), imp::remove_header(map, name))
}

/// Replace the whole header map.
pub fn set_header_pairs(map: MapType, pairs: &[(&str, &[u8])]) -> R<()> {
    edited(map, HeaderEdit::All(pairs), imp::set_header_pairs(map, pairs))
}

thread_local! {
    static COMBINED: std::cell::RefCell<Option<std::rc::Rc<dyn Combined>>> = const { std::cell::RefCell::new(None) };
}

/// Install the combined module's hooks for this VM (once, at configure time).
pub fn install_combined(hooks: std::rc::Rc<dyn Combined>) {
    COMBINED.with(|slot| {
        if let Ok(mut s) = slot.try_borrow_mut() {
            *s = Some(hooks);
        }
    });
}

fn combined() -> Option<std::rc::Rc<dyn Combined>> {
    COMBINED.with(|slot| slot.try_borrow().ok().and_then(|s| s.clone()))
}

/// Make `context_id` the context later host calls act on (a root resuming a parked stream).
pub fn set_effective_context(context_id: u32) -> R<()> {
    imp::set_effective_context(context_id)?;
    if let Some(c) = combined() {
        c.enter(context_id);
    }
    Ok(())
}

/// Wall-clock time in whole seconds since the Unix epoch (0 if the host refuses).
pub fn now_s() -> u64 {
    now_nanos().map(|n| n / 1_000_000_000).unwrap_or(0)
}

/// Wall-clock time in milliseconds since the Unix epoch (0 if the host refuses).
pub fn now_ms() -> u64 {
    now_nanos().map(|n| n / 1_000_000).unwrap_or(0)
}

/// All request headers in one host call. Inside a combined module the members of one
/// request-headers callback share one read (see [`Combined::request_headers`]).
pub fn request_headers() -> R<Headers> {
    let hooks = combined();
    if let Some(kept) = hooks.as_ref().and_then(|c| c.request_headers()) {
        return Ok(kept);
    }
    let headers = header_pairs(MapType::HttpRequestHeaders).map(Headers::new)?;
    if let Some(c) = hooks {
        c.keep_request_headers(&headers);
    }
    Ok(headers)
}

/// All response headers in one host call.
pub fn response_headers() -> R<Headers> {
    header_pairs(MapType::HttpResponseHeaders).map(Headers::new)
}

/// The plugin configuration (Envoy `configuration`, Istio `pluginConfig`).
pub fn plugin_configuration() -> R<Vec<u8>> {
    get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
}

/// Resume a paused request (proxy-wasm stream type 0). Inside a combined module the module
/// decides (it runs its later members first, see [`Combined`]).
pub fn resume_request() -> R<()> {
    if combined().is_some_and(|c| c.resume_request()) {
        return Ok(());
    }
    continue_stream(0)
}

/// Resume a paused response (proxy-wasm stream type 1).
pub fn resume_response() -> R<()> {
    continue_stream(1)
}

/// Send `rejection` as the local reply. The caller returns `Action::Pause` afterwards.
pub fn send_rejection(rejection: &Rejection, request_id: Option<&str>) -> R<()> {
    let body = rejection.body(request_id);
    let headers: Vec<(&str, &[u8])> = rejection.response_headers().into_iter().map(|(k, v)| (k, v.as_bytes())).collect();
    send_local_response(u32::from(rejection.status), &headers, body.as_bytes())
}

/// Envoy's `x-request-id`, for replies and audit logs.
pub fn request_id() -> Option<String> {
    header(MapType::HttpRequestHeaders, "x-request-id").ok().flatten().and_then(|v| String::from_utf8(v).ok())
}

/// The peer address of the downstream connection (`ip:port`).
pub fn source_address() -> Option<String> {
    get_property(&["source", "address"]).ok().flatten().and_then(|v| String::from_utf8(v).ok())
}

/// The identity a previous filter recorded for this request.
pub fn identity() -> Option<crate::identity::Identity> {
    let encoded = match combined().and_then(|c| c.identity()) {
        Some(kept) => kept,
        None => get_property(&[crate::identity::PROPERTY]).ok().flatten(),
    };
    encoded.and_then(|b| crate::identity::Identity::decode(&b))
}

/// Record the identity for the later filters of this request.
pub fn set_identity(identity: &crate::identity::Identity) -> R<()> {
    set_identity_encoded(&identity.encode())
}

/// [`set_identity`] for an identity already encoded ([`crate::identity::Identity::encode`]).
pub fn set_identity_encoded(encoded: &[u8]) -> R<()> {
    match combined().and_then(|c| c.set_identity(encoded)) {
        Some(kept) => kept,
        None => set_property(&[crate::identity::PROPERTY], encoded),
    }
}

/// Envoy shared data, process-wide across worker threads.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        get_shared(key).map_err(|_| StoreError::Unavailable)
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match set_shared(key, value, cas.unwrap_or(0)) {
            Ok(()) => Ok(()),
            Err(HostError { status: CAS_MISMATCH }) => Err(StoreError::CasMismatch),
            Err(_) => Err(StoreError::Unavailable),
        }
    }
}

/// A counter defined once at configure time. Envoy exposes it as a stat named
/// `wasmcustom.<name>` in `/stats`, and `<name>` with `.` as `_` in `/stats/prometheus`
/// (measured in Envoy 1.40).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter(Option<u32>);

impl Counter {
    pub fn define(name: &str) -> Self {
        Counter(define_metric(MetricType::Counter, name).ok())
    }
    /// A counter that counts nothing (unit tests, or when the host refused it).
    pub fn none() -> Self {
        Counter(None)
    }
    pub fn inc(self) {
        self.add(1);
    }
    pub fn add(self, n: u64) {
        if let Some(id) = self.0 {
            let _ = increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

/// Root tick period, in milliseconds, on which [`BatchedCounter`]s are flushed (and jwt_verify
/// syncs its remote documents). One value for every filter: inside a combined module
/// (filters/edge_chain) the members share one root tick, and the last member to set it wins.
pub const FLUSH_TICK_MS: u32 = 500;

/// A per-request counter counted in the VM's memory and added to Envoy's stat by [`flush`]
/// (called on the root tick, every [`FLUSH_TICK_MS`]): one host call per tick instead of one
/// per request, which on an allowed request costs about as much as the filter's own work.
/// Envoy's stat therefore lags by up to one tick (per worker VM).
///
/// [`flush`]: BatchedCounter::flush
#[derive(Debug)]
pub struct BatchedCounter {
    counter: Counter,
    pending: std::cell::Cell<u64>,
}

impl BatchedCounter {
    pub fn define(name: &str) -> Self {
        Self::over(Counter::define(name))
    }
    /// A batched counter that counts nothing (unit tests, or when the host refused it).
    pub fn none() -> Self {
        Self::over(Counter::none())
    }
    fn over(counter: Counter) -> Self {
        Self { counter, pending: std::cell::Cell::new(0) }
    }
    /// Count one, in memory (no host call).
    pub fn inc(&self) {
        self.pending.set(self.pending.get().saturating_add(1));
    }
    /// Counted since the last flush.
    pub fn pending(&self) -> u64 {
        self.pending.get()
    }
    /// Add what was counted since the last flush to Envoy's stat (one host call, none if
    /// nothing was counted).
    pub fn flush(&self) {
        let n = self.pending.replace(0);
        if n > 0 {
            self.counter.add(n);
        }
    }
}

/// A filter whose root context only loads its configuration and hands it to each stream.
/// Filters with root work of their own (timers, outgoing calls) write their own root.
pub trait SimpleFilter: 'static {
    /// Everything the streams share: the compiled policy, metrics.
    type State: 'static;
    /// Load, validate and compile the plugin configuration; `None` refuses the plugin (the
    /// reasons are logged, see [`load_config`]).
    fn configure() -> Option<Self::State>;
    /// The stream context of one request. `state` is `None` only if Envoy creates streams for
    /// a plugin whose configuration was refused: the stream must fail closed.
    fn stream(state: Option<std::rc::Rc<Self::State>>) -> Box<dyn proxy_wasm::traits::HttpContext>;
    /// Whether the root ticks every [`FLUSH_TICK_MS`] and calls [`SimpleFilter::tick`]
    /// (filters with [`BatchedCounter`]s).
    const TICKS: bool = false;
    /// On the root tick (only with [`SimpleFilter::TICKS`]): flush the batched counters.
    fn tick(_state: &Self::State) {}
}

/// The root context of a [`SimpleFilter`]; register it with
/// `proxy_wasm::set_root_context(|_| Box::new(SimpleRoot::<F>::default()))`.
pub struct SimpleRoot<F: SimpleFilter> {
    state: Option<std::rc::Rc<F::State>>,
}

impl<F: SimpleFilter> SimpleRoot<F> {
    /// A root whose configuration was loaded by someone else (a combined module).
    pub fn with_state(state: F::State) -> Self {
        Self::start_tick();
        Self { state: Some(std::rc::Rc::new(state)) }
    }

    /// Set the root tick if the filter wants one. A refused tick only delays the batched
    /// counters (they stay in memory): logged, the plugin still runs.
    fn start_tick() {
        if F::TICKS && set_tick_period_ms(FLUSH_TICK_MS).is_err() {
            error("cannot set the tick period: batched counters will not reach Envoy's stats");
        }
    }
}

impl<F: SimpleFilter> Default for SimpleRoot<F> {
    fn default() -> Self {
        Self { state: None }
    }
}

impl<F: SimpleFilter> proxy_wasm::traits::Context for SimpleRoot<F> {}

impl<F: SimpleFilter> proxy_wasm::traits::RootContext for SimpleRoot<F> {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.state = F::configure().map(std::rc::Rc::new);
        if self.state.is_some() {
            Self::start_tick();
        }
        self.state.is_some()
    }

    fn on_tick(&mut self) {
        if let Some(state) = &self.state {
            F::tick(state);
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn proxy_wasm::traits::HttpContext>> {
        // Never `None`: the SDK panics on it.
        Some(F::stream(self.state.clone()))
    }

    fn get_type(&self) -> Option<proxy_wasm::types::ContextType> {
        Some(proxy_wasm::types::ContextType::HttpContext)
    }
}

/// Fail closed when a stream runs without a configuration (500, never a pass).
pub fn reject_unconfigured() -> proxy_wasm::types::Action {
    let _ = send_rejection(&Rejection::new(500, "filter_not_configured", "the gateway is misconfigured"), None);
    proxy_wasm::types::Action::Pause
}

/// Fail closed when the request headers cannot be read from the host.
pub fn reject_unreadable() -> proxy_wasm::types::Action {
    let _ = send_rejection(&Rejection::new(500, "internal_error", "the request could not be read"), None);
    proxy_wasm::types::Action::Pause
}

/// Log at info (the level denials use) and warn/error (load-time problems).
pub fn info(msg: &str) {
    log(LogLevel::Info, msg);
}
pub fn warn(msg: &str) {
    log(LogLevel::Warn, msg);
}
pub fn error(msg: &str) {
    log(LogLevel::Error, msg);
}

/// Read, parse and compile the plugin configuration; on any error log one line per problem
/// naming the field, and return `None` so `on_configure` refuses the plugin.
pub fn load_config<T, P>(filter: &str, compile: impl FnOnce(T) -> Result<P, crate::config::ConfigErrors>) -> Option<P>
where
    T: serde::de::DeserializeOwned,
{
    let raw = match plugin_configuration() {
        Ok(raw) => raw,
        Err(e) => {
            error(&format!("{filter}: cannot read the plugin configuration (status {})", e.status));
            return None;
        }
    };
    match crate::config::parse_json::<T>(&raw).and_then(compile) {
        Ok(p) => Some(p),
        Err(errors) => {
            for e in &errors.0 {
                error(&format!("{filter}: invalid configuration at '{}': {}", e.path, e.message));
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_round_trip() {
        let pairs: Vec<(&str, &[u8])> = vec![(":path", b"/x"), ("a", b"\xff\x00z"), ("empty", b"")];
        let bytes = serialize_map(&pairs);
        let back = deserialize_map(&bytes).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[1].1, b"\xff\x00z");
        assert_eq!(deserialize_map(&[]), Some(vec![]));
    }

    #[test]
    fn malformed_maps_do_not_panic() {
        let bytes = serialize_map(&[("abc", b"def")]);
        for cut in 0..bytes.len() {
            let _ = deserialize_map(&bytes[..cut]);
        }
        assert_eq!(deserialize_map(&[255, 255, 255, 255]), None);
        assert_eq!(deserialize_map(&[1, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 0]), None);
    }

    #[test]
    fn batched_counter_counts_in_memory_until_flushed() {
        let c = BatchedCounter::none();
        assert_eq!(c.pending(), 0);
        c.inc();
        c.inc();
        c.inc();
        assert_eq!(c.pending(), 3);
        c.flush();
        assert_eq!(c.pending(), 0);
        c.flush();
        assert_eq!(c.pending(), 0);
        c.inc();
        assert_eq!(c.pending(), 1);
    }

    #[test]
    fn property_paths() {
        assert_eq!(property_path(&["source", "address"]), b"source\0address");
        assert_eq!(property_path(&["identity"]), b"identity");
    }
}
