//! Soak support: an upstream that keeps nothing per request ([`Upstream::counting`]: a
//! recording upstream would grow with a long run), and samples of Envoy's memory and wasm VM counters.

use crate::upstream::{UpRequest, UpResponse, Upstream};
use crate::Envoy;
use serde_json::Value;

/// The record `/users/me` returns: every detector of the chain's pii_masking has something.
pub const PII_PROFILE: &str = r#"{"name": "Alice Example", "email": "alice@example.com", "phone": "+14155552671", "ssn": "123-45-6789", "card_number": "4111 1111 1111 1111", "password": "hunter2", "order_id": "ORD-2024-000123"}"#;

/// The demo backend for the chain under soak: the identity provider's JWK Set at
/// `/.well-known/jwks.json`, a profile full of personal data at `/users/me` (pii_masking must
/// mask it), a small JSON answer otherwise. Counts requests, records nothing.
pub fn soak_upstream(jwks: String) -> Upstream {
    Upstream::counting(move |r: &UpRequest| {
        let out = match r.path.split('?').next().unwrap_or("/") {
            "/.well-known/jwks.json" => jwks.clone(),
            "/users/me" => PII_PROFILE.to_string(),
            p => serde_json::json!({"ok": true, "path": p, "bytes": r.body.len()}).to_string(),
        };
        UpResponse::new(200).header("content-type", "application/json").header("server", "soak-upstream").body(out)
    })
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
