//! Soak support: an upstream that keeps nothing per request (the recording [`crate::Upstream`]
//! would grow with a long run), and samples of Envoy's memory and wasm VM counters.

use crate::Envoy;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The demo backend for the chain under soak: the identity provider's JWK Set at
/// `/.well-known/jwks.json`, a profile full of personal data at `/users/me` (pii_masking must
/// mask it), a small JSON answer otherwise. Counts requests, records nothing.
#[derive(Clone)]
pub struct SoakUpstream {
    port: u16,
    served: Arc<AtomicU64>,
}

/// The record `/users/me` returns: every detector of the chain's pii_masking has something.
pub const PII_PROFILE: &str = r#"{"name": "Alice Example", "email": "alice@example.com", "phone": "+14155552671", "ssn": "123-45-6789", "card_number": "4111 1111 1111 1111", "password": "hunter2", "order_id": "ORD-2024-000123"}"#;

impl SoakUpstream {
    pub fn start(jwks: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind soak upstream");
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let served = Arc::new(AtomicU64::new(0));
        let (jwks, counter) = (Arc::new(jwks), served.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (jwks, counter) = (jwks.clone(), counter.clone());
                std::thread::spawn(move || serve(conn, &jwks, &counter));
            }
        });
        Self { port, served }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

fn serve(conn: TcpStream, jwks: &str, served: &AtomicU64) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(120)));
    let Ok(mut w) = conn.try_clone() else { return };
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
                // Envoy sends bodies of the chain's requests with content-length (they are small).
            }
        }
        let mut body = vec![0u8; length];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        served.fetch_add(1, Ordering::Relaxed);
        let out = match path.split('?').next().unwrap_or("/") {
            "/.well-known/jwks.json" => jwks.to_string(),
            "/users/me" => PII_PROFILE.to_string(),
            p => serde_json::json!({"ok": true, "path": p, "bytes": length}).to_string(),
        };
        let resp = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nserver: soak-upstream\r\ncontent-length: {}\r\n\r\n{out}", out.len());
        if w.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// One sample of Envoy's memory and wasm VM state.
#[derive(Debug, Clone, Default)]
pub struct MemSample {
    /// Seconds since the load started.
    pub t: f64,
    /// Resident set size of the Envoy process (/proc), bytes: includes the V8 heaps and the
    /// wasm linear memories, which Envoy's allocator does not see.
    pub rss: u64,
    /// Envoy admin /memory `allocated` (tcmalloc bytes in use), and `heap_size`.
    pub allocated: u64,
    pub heap_size: u64,
    /// `wasm.envoy.wasm.runtime.v8.active` / `.created`: live VMs and VMs ever created (a VM
    /// that trapped and was reloaded shows up as a new one).
    pub vms_active: u64,
    pub vms_created: u64,
    /// Sum of `wasm.<plugin>.vm_reload` (FAIL_RELOAD reloads after a trap).
    pub vm_reloads: u64,
}

impl Envoy {
    /// Sample memory and VM gauges now (fields stay 0 when unavailable).
    pub fn mem_sample(&self, t: f64) -> MemSample {
        let mem: Value = serde_json::from_str(&self.admin("/memory")).unwrap_or(Value::Null);
        let stats = self.stats();
        let stat = |name: &str| stats.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(": ")?.trim().parse::<u64>().ok()).unwrap_or(0);
        let vm_reloads = stats
            .lines()
            .filter(|l| l.starts_with("wasm.") && l.contains(".vm_reload: "))
            .filter_map(|l| l.rsplit(": ").next()?.trim().parse::<u64>().ok())
            .sum();
        let num = |k: &str| mem[k].as_str().and_then(|s| s.parse().ok()).or_else(|| mem[k].as_u64()).unwrap_or(0);
        MemSample {
            t,
            rss: self.rss_bytes().unwrap_or(0),
            allocated: num("allocated"),
            heap_size: num("heap_size"),
            vms_active: stat("wasm.envoy.wasm.runtime.v8.active"),
            vms_created: stat("wasm.envoy.wasm.runtime.v8.created"),
            vm_reloads,
        }
    }
}
