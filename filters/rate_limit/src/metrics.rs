//! The filter's counters, defined once at configure time (`edgesec.rate_limit.<name>`, shown
//! by Envoy as `wasmcustom.edgesec.rate_limit.<name>`). Names come from the configuration
//! (tier and route names), never from a request.

use crate::denial::Denial;
use crate::policy::Policy;
use shared::host::{BatchedCounter, Counter};

const FILTER: &str = "rate_limit";

pub struct Metrics {
    /// Counted in memory, flushed on the root tick (the allowed path makes no metric call).
    pub allowed: BatchedCounter,
    pub limited: Counter,
    pub limited_tier: Vec<Counter>,
    pub limited_route: Vec<Counter>,
    pub global_limited: Counter,
    pub global_errors: Counter,
    pub global_failure_allowed: Counter,
    pub unverified_address: Counter,
    denied: Vec<(&'static str, Counter)>,
}

impl Metrics {
    pub fn define(policy: &Policy) -> Self {
        let name = |n: &str| Counter::define(&format!("edgesec.{FILTER}.{n}"));
        Self {
            allowed: BatchedCounter::define(&format!("edgesec.{FILTER}.allowed")),
            limited: name("limited"),
            limited_tier: policy.tiers.iter().map(|t| name(&format!("limited.tier.{}", t.name))).collect(),
            limited_route: policy.routes.iter().map(|r| name(&format!("limited.route.{}", r.limit.name))).collect(),
            global_limited: name("global.limited"),
            global_errors: name("global.errors"),
            global_failure_allowed: name("global.failure_allowed"),
            unverified_address: name("unverified_address"),
            denied: ["store_unavailable", "contention", "invalid_path", "global_unavailable", "not_configured", "internal_error"]
                .iter()
                .map(|m| (*m, name(&format!("denied.{m}"))))
                .collect(),
        }
    }

    pub fn denied(&self, d: &Denial) {
        if let Some((_, c)) = self.denied.iter().find(|(m, _)| *m == d.metric()) {
            c.inc();
        }
    }
}

