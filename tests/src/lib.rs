//! End-to-end harness: runs the real Envoy binary with a chain of our wasm filters in front
//! of an echo upstream, and talks to it over raw HTTP/1.1 so tests control every byte.
//!
//! * [`Envoy::start`] / [`EnvoyBuilder`] write an Envoy config (JSON, which Envoy reads like
//!   YAML) for the chain, start Envoy on free loopback ports, wait for the admin `/ready`,
//!   and kill Envoy when the value is dropped (also when a test fails).
//! * [`Upstream`] echoes what reached it as JSON, records every request, or answers with a
//!   handler the test supplies (streamed in chosen chunks).
//! * [`Request`] / [`Response`]: a minimal HTTP/1.1 client, one connection per request.
//!
//! Requires `scripts/build` (modules in `dist/`) and the Envoy from `scripts/setup`
//! (`.venv/bin/envoy`); override with `ENVOY_BIN` and `WASM_DIR`.

pub mod http;
pub mod reload;
pub mod rls;
pub mod soak;
pub mod upstream;

pub use http::{Request, Response};
pub use upstream::{UpBody, UpRequest, UpResponse, Upstream};

use serde_json::{json, Value};
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

pub fn envoy_bin() -> PathBuf {
    std::env::var_os("ENVOY_BIN").map(PathBuf::from).unwrap_or_else(|| root().join(".venv/bin/envoy"))
}

pub fn python_bin() -> PathBuf {
    root().join(".venv/bin/python")
}

pub fn wasm_path(module: &str) -> PathBuf {
    std::env::var_os("WASM_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("dist")).join(format!("{module}.wasm"))
}

/// A test-only module built from `tests/fixtures/<name>` by `scripts/build` (never shipped).
pub fn fixture_wasm(name: &str) -> PathBuf {
    root().join("target/wasm32-wasip1/release").join(format!("{name}.wasm"))
}

/// A free TCP port on 127.0.0.1 (released before use; collisions are retried by callers).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn work_dir() -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let dir = root().join("target/e2e").join(format!("{}-{n}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// One wasm filter in the chain: a module from `dist/` and its JSON configuration.
#[derive(Debug, Clone)]
pub struct Filter {
    pub module: String,
    /// The plugin configuration. A JSON string value is passed verbatim (to test broken JSON).
    pub config: Value,
    pub env: Vec<(String, String)>,
    /// Path of the .wasm file (defaults to `dist/<module>.wasm`).
    pub path: Option<PathBuf>,
}

impl Filter {
    pub fn new(module: &str, config: Value) -> Self {
        Self { module: module.into(), config, env: Vec::new(), path: None }
    }

    /// An environment variable for the VM (`vm_config.environment_variables`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Load the module from another file (test fixtures).
    pub fn path(mut self, path: PathBuf) -> Self {
        self.path = Some(path);
        self
    }

    /// The Envoy `http_filters` entry for this filter. `vm_id` lets instances share a VM.
    pub fn to_envoy(&self, vm_id: &str) -> Value {
        let config = match &self.config {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        let path = self.path.clone().unwrap_or_else(|| wasm_path(&self.module));
        let env: serde_json::Map<String, Value> = self.env.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        json!({
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": self.module,
                    "root_id": self.module,
                    "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": config},
                    "vm_config": {
                        "vm_id": vm_id,
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": {"local": {"filename": path.to_string_lossy()}},
                        "environment_variables": {"key_values": env},
                    },
                    "failure_policy": "FAIL_RELOAD",
                    "allow_on_headers_stop_iteration": true,
                }
            }
        })
    }
}

/// Builds and starts an Envoy.
pub struct EnvoyBuilder {
    /// A repository config file to run instead of a generated config.
    file: Option<PathBuf>,
    cluster_ports: Vec<(String, u16)>,
    process_env: Vec<(String, String)>,
    filters: Vec<Value>,
    concurrency: u32,
    clusters: Vec<Value>,
    upstream: Option<Upstream>,
    transport_socket: Option<Value>,
    hcm_extra: serde_json::Map<String, Value>,
    route_extra: serde_json::Map<String, Value>,
}

impl Default for EnvoyBuilder {
    fn default() -> Self {
        Self {
            file: None,
            cluster_ports: Vec::new(),
            process_env: Vec::new(),
            filters: Vec::new(),
            concurrency: 1,
            clusters: Vec::new(),
            upstream: None,
            transport_socket: None,
            hcm_extra: serde_json::Map::new(),
            route_extra: serde_json::Map::new(),
        }
    }
}

impl EnvoyBuilder {
    /// Add a wasm filter; each gets its own VM.
    pub fn filter(mut self, f: Filter) -> Self {
        let vm_id = format!("{}-{}", f.module, self.filters.len());
        self.filters.push(f.to_envoy(&vm_id));
        self
    }

    /// Add any Envoy http filter entry (native filters for comparisons).
    pub fn raw_filter(mut self, v: Value) -> Self {
        self.filters.push(v);
        self
    }

    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n;
        self
    }

    /// Use this upstream instead of a default echo server.
    pub fn upstream(mut self, u: Upstream) -> Self {
        self.upstream = Some(u);
        self
    }

    /// A plain HTTP/1.1 cluster to 127.0.0.1:port (JWKS servers and the like).
    pub fn cluster(mut self, name: &str, port: u16) -> Self {
        self.clusters.push(static_cluster(name, port, false));
        self
    }

    /// An HTTP/2 cluster to 127.0.0.1:port (gRPC services).
    pub fn grpc_cluster(mut self, name: &str, port: u16) -> Self {
        self.clusters.push(static_cluster(name, port, true));
        self
    }

    /// Any cluster definition.
    pub fn raw_cluster(mut self, v: Value) -> Self {
        self.clusters.push(v);
        self
    }

    /// A transport socket for the listener (TLS, mTLS).
    pub fn listener_transport_socket(mut self, v: Value) -> Self {
        self.transport_socket = Some(v);
        self
    }

    /// Extra HttpConnectionManager fields (e.g. `normalize_path`).
    pub fn hcm(mut self, key: &str, v: Value) -> Self {
        self.hcm_extra.insert(key.into(), v);
        self
    }

    /// Extra route action fields (e.g. `timeout`).
    pub fn route(mut self, key: &str, v: Value) -> Self {
        self.route_extra.insert(key.into(), v);
        self
    }

    /// Run a repository config file (e.g. `envoy-config/envoy.yaml`) as users run it: only the
    /// addresses change (listeners and admin move to free loopback ports, clusters named with
    /// [`EnvoyBuilder::map_cluster`] point at local test servers) and relative file paths
    /// become absolute. Filters added with [`EnvoyBuilder::filter`] are ignored.
    pub fn config_file(mut self, path: &Path) -> Self {
        self.file = Some(path.to_path_buf());
        self
    }

    /// Point every endpoint of `cluster` (in a config file) at 127.0.0.1:port.
    pub fn map_cluster(mut self, cluster: &str, port: u16) -> Self {
        self.cluster_ports.push((cluster.into(), port));
        self
    }

    /// An environment variable of the Envoy process (read by `host_env_keys`).
    pub fn process_env(mut self, key: &str, value: &str) -> Self {
        self.process_env.push((key.into(), value.into()));
        self
    }

    /// Start Envoy; panics (failing the test) if it does not become ready.
    pub fn start(self) -> Envoy {
        match self.try_start() {
            Ok(e) => e,
            Err(log) => panic!("envoy did not start:\n{log}"),
        }
    }

    /// Start Envoy; `Err(log)` if it exits or does not become ready (refused configs).
    pub fn try_start(self) -> Result<Envoy, String> {
        let upstream = match self.upstream {
            Some(u) => u,
            None => Upstream::echo(),
        };
        let mut last_err = String::new();
        // Ports are picked free then released; retry on the rare collision.
        for _ in 0..3 {
            let port = free_port();
            let admin_port = free_port();
            let config = match &self.file {
                Some(path) => file_config(path, port, admin_port, &self.cluster_ports)?,
                None => envoy_config(port, admin_port, upstream.port(), &self.filters, &self.clusters, self.transport_socket.as_ref(), &self.hcm_extra, &self.route_extra),
            };
            let dir = work_dir();
            let config_path = dir.join("envoy.json");
            let log_path = dir.join("envoy.log");
            if let Err(e) = std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap_or_default()) {
                return Err(format!("cannot write config: {e}"));
            }
            match spawn(&config_path, &log_path, self.concurrency, &self.process_env) {
                Ok(child) => {
                    let mut envoy = Envoy { child, port, admin_port, log_path, config_path, upstream: upstream.clone() };
                    match envoy.wait_ready() {
                        Ok(()) => return Ok(envoy),
                        Err(e) => {
                            last_err = e;
                            if !last_err.contains("Address already in use") {
                                return Err(last_err);
                            }
                        }
                    }
                }
                Err(e) => return Err(format!("cannot start {}: {e}", envoy_bin().display())),
            }
        }
        Err(last_err)
    }
}

/// Load a YAML/JSON Envoy config from the repository and rewrite its addresses and paths.
fn file_config(path: &Path, port: u16, admin_port: u16, clusters: &[(String, u16)]) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut v: Value = serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    v["admin"]["address"]["socket_address"] = json!({"address": "127.0.0.1", "port_value": admin_port});
    if let Some(listeners) = v["static_resources"]["listeners"].as_array_mut() {
        if listeners.len() != 1 {
            return Err(format!("{}: expected exactly one listener", path.display()));
        }
        for l in listeners {
            l["address"]["socket_address"] = json!({"address": "127.0.0.1", "port_value": port});
        }
    }
    if let Some(cs) = v["static_resources"]["clusters"].as_array_mut() {
        for c in cs {
            let name = c["name"].as_str().unwrap_or_default().to_string();
            if let Some((_, p)) = clusters.iter().find(|(n, _)| *n == name) {
                if let Some(eps) = c["load_assignment"]["endpoints"].as_array_mut() {
                    for ep in eps {
                        if let Some(lbs) = ep["lb_endpoints"].as_array_mut() {
                            for lb in lbs {
                                lb["endpoint"]["address"]["socket_address"] = json!({"address": "127.0.0.1", "port_value": p});
                            }
                        }
                    }
                }
            }
        }
    }
    absolutize_filenames(&mut v);
    Ok(v)
}

/// Make every relative `filename` (wasm modules, certificates) relative to the repository root.
fn absolutize_filenames(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if k == "filename" {
                    if let Some(f) = val.as_str() {
                        if !f.starts_with('/') {
                            *val = Value::String(root().join(f).to_string_lossy().into_owned());
                        }
                    }
                } else {
                    absolutize_filenames(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(absolutize_filenames),
        _ => {}
    }
}

fn static_cluster(name: &str, port: u16, http2: bool) -> Value {
    let mut c = json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
    });
    if http2 {
        c["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}
            }
        });
    }
    c
}

#[allow(clippy::too_many_arguments)]
fn envoy_config(
    port: u16,
    admin_port: u16,
    upstream_port: u16,
    filters: &[Value],
    clusters: &[Value],
    transport_socket: Option<&Value>,
    hcm_extra: &serde_json::Map<String, Value>,
    route_extra: &serde_json::Map<String, Value>,
) -> Value {
    let mut http_filters: Vec<Value> = filters.to_vec();
    http_filters.push(json!({"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}));
    let mut route = json!({"cluster": "upstream", "timeout": "30s"});
    for (k, v) in route_extra {
        route[k] = v.clone();
    }
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "codec_type": "AUTO",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": route}]}]},
        "http_filters": http_filters,
    });
    for (k, v) in hcm_extra {
        hcm[k] = v.clone();
    }
    let mut chain = json!({"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]});
    if let Some(ts) = transport_socket {
        chain["transport_socket"] = ts.clone();
    }
    let mut all_clusters = vec![static_cluster("upstream", upstream_port, false)];
    all_clusters.extend(clusters.iter().cloned());
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{"name": "main", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}, "filter_chains": [chain]}],
            "clusters": all_clusters,
        }
    })
}

fn spawn(config: &Path, log: &Path, concurrency: u32, env: &[(String, String)]) -> std::io::Result<Child> {
    let log_file = std::fs::File::create(log)?;
    Command::new(envoy_bin())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .arg("-c")
        .arg(config)
        .args(["--concurrency", &concurrency.to_string(), "--disable-hot-restart", "-l", "info", "--log-format", "[%l][%n] %v"])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
}

/// A running Envoy; killed on drop.
pub struct Envoy {
    child: Child,
    pub port: u16,
    pub admin_port: u16,
    pub log_path: PathBuf,
    pub config_path: PathBuf,
    pub upstream: Upstream,
}

impl Envoy {
    pub fn builder() -> EnvoyBuilder {
        EnvoyBuilder::default()
    }

    /// Envoy with these wasm filters, one worker, in front of an echo upstream.
    pub fn start(filters: Vec<Filter>) -> Envoy {
        filters.into_iter().fold(EnvoyBuilder::default(), EnvoyBuilder::filter).start()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("envoy exited with {status}:\n{}", self.logs()));
            }
            if let Ok(r) = Request::get("/ready").timeout(Duration::from_secs(2)).send(self.admin_port) {
                if r.status == 200 {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("envoy not ready after 60 s:\n{}", self.logs()))
    }

    /// Send a request through the listener.
    pub fn send(&self, req: Request) -> Response {
        match req.clone().send(self.port) {
            Ok(r) => r,
            Err(e) => panic!("request {} {} failed: {e}\nenvoy log tail:\n{}", req.method, req.path, tail(&self.logs(), 40)),
        }
    }

    pub fn get(&self, path: &str) -> Response {
        self.send(Request::get(path))
    }

    /// Send raw bytes and parse what comes back.
    pub fn send_raw(&self, bytes: &[u8]) -> std::io::Result<Response> {
        http::send_raw(self.port, bytes, Duration::from_secs(30), false)
    }

    /// An admin endpoint's body.
    pub fn admin(&self, path: &str) -> String {
        Request::get(path).send(self.admin_port).map(|r| r.text()).unwrap_or_default()
    }

    /// All stats as `name: value` lines.
    pub fn stats(&self) -> String {
        self.admin("/stats")
    }

    /// A counter's value; our filters' counters are `wasmcustom.edgesec.<filter>.<name>`.
    pub fn counter(&self, name: &str) -> Option<u64> {
        let stats = self.stats();
        stats.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")).and_then(|v| v.trim().parse().ok()))
    }

    /// Our filter counter `wasmcustom.edgesec.<filter>.<name>`, 0 when absent.
    pub fn metric(&self, filter: &str, name: &str) -> u64 {
        self.counter(&format!("wasmcustom.edgesec.{filter}.{name}")).unwrap_or(0)
    }

    /// [`Envoy::metric`] once it reached `want`, polled for up to 5 s: batched counters
    /// (`shared::host::BatchedCounter`, e.g. the `allowed` counters) reach Envoy's stats on
    /// the filter's 500 ms tick, per worker. The caller asserts the value returned.
    pub fn wait_metric(&self, filter: &str, name: &str, want: u64) -> u64 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let v = self.metric(filter, name);
            if v >= want || std::time::Instant::now() >= deadline {
                return v;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Envoy's resident memory in bytes (from /proc).
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `n` lines of a log.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Run a peer script with the project's Python (`.venv`), returning stdout; panics with
/// stderr on failure.
pub fn python(script: &Path, args: &[&str]) -> String {
    let out = Command::new(python_bin()).arg(script).args(args).output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => panic!("{} failed: {}", script.display(), String::from_utf8_lossy(&o.stderr)),
        Err(e) => panic!("cannot run {}: {e}", python_bin().display()),
    }
}

/// Path of a peer script in `tests/peers/`.
pub fn peer(name: &str) -> PathBuf {
    root().join("tests/peers").join(name)
}
