//! Every way this filter refuses a request, mapped once to the wire ([`Rejection`]).

use crate::headers::{self, Item};
use shared::pathmatch::PathError;
use shared::reply::Rejection;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// A local bucket (tier or route) is empty.
    Limited { items: Vec<Item>, violated: Vec<String>, retry_after_s: u64 },
    /// The external rate-limit service said OVER_LIMIT.
    GlobalLimited { items: Vec<Item>, retry_after_s: u64 },
    /// The rate-limit service failed or timed out and `failure_mode_deny` is set.
    GlobalUnavailable,
    /// Envoy shared data refused a call: fail closed.
    StoreUnavailable,
    /// Too many workers updated the same set at once (the retries ran out): fail closed.
    Contention,
    /// The path cannot be normalized, so no route limit could be matched reliably.
    InvalidPath(PathError),
    /// The plugin has no valid configuration.
    NotConfigured,
    /// The request headers could not be read from Envoy.
    Internal,
}

impl Denial {
    /// Stable metric suffix (`edgesec.rate_limit.denied.<metric>`).
    pub fn metric(&self) -> &'static str {
        match self {
            Denial::Limited { .. } => "limited",
            Denial::GlobalLimited { .. } => "global_limited",
            Denial::GlobalUnavailable => "global_unavailable",
            Denial::StoreUnavailable => "store_unavailable",
            Denial::Contention => "contention",
            Denial::InvalidPath(_) => "invalid_path",
            Denial::NotConfigured => "not_configured",
            Denial::Internal => "internal_error",
        }
    }
}

fn limited(code: &'static str, detail: String, items: &[Item], retry_after_s: u64) -> Rejection {
    let mut r = Rejection::new(429, code, detail).with_header("retry-after", retry_after_s.max(1).to_string());
    if !items.is_empty() {
        r = r.with_header("ratelimit-policy", headers::policy(items)).with_header("ratelimit", headers::ratelimit(items));
    }
    r
}

impl From<Denial> for Rejection {
    fn from(d: Denial) -> Self {
        match d {
            Denial::Limited { items, violated, retry_after_s } => {
                let detail = format!("rate limit exceeded ({}); retry after {} s", violated.join(", "), retry_after_s.max(1));
                limited("rate_limited", detail, &items, retry_after_s)
            }
            Denial::GlobalLimited { items, retry_after_s } => {
                limited("rate_limited", format!("rate limit exceeded (global); retry after {} s", retry_after_s.max(1)), &items, retry_after_s)
            }
            Denial::GlobalUnavailable => Rejection::new(503, "rate_limit_unavailable", "the rate-limit service is unavailable"),
            Denial::StoreUnavailable => Rejection::new(503, "rate_limit_unavailable", "the rate-limit state is unavailable"),
            Denial::Contention => {
                Rejection::new(429, "rate_limit_contention", "too many concurrent requests for this client; retry after 1 s").with_header("retry-after", "1")
            }
            Denial::InvalidPath(e) => Rejection::new(400, e.code(), e.to_string()),
            Denial::NotConfigured => Rejection::new(500, "filter_not_configured", "the gateway is misconfigured"),
            Denial::Internal => Rejection::new(500, "internal_error", "the request could not be read"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limited_carries_all_headers() {
        let items = vec![Item { name: "anonymous".into(), quota: 10, window_s: 60, remaining: 0, reset_s: Some(6) }];
        let r: Rejection = Denial::Limited { items, violated: vec!["anonymous".into()], retry_after_s: 6 }.into();
        assert_eq!(r.status, 429);
        assert_eq!(r.code, "rate_limited");
        let h = r.response_headers();
        assert!(h.contains(&("retry-after", "6")));
        assert!(h.contains(&("ratelimit-policy", "\"anonymous\";q=10;w=60")));
        assert!(h.contains(&("ratelimit", "\"anonymous\";r=0;t=6")));
        let v: serde_json::Value = serde_json::from_str(&r.body(Some("rid"))).unwrap();
        assert_eq!(v["status"], 429);
        assert_eq!(v["code"], "rate_limited");
        assert_eq!(v["title"], "Too Many Requests");
    }

    #[test]
    fn failures_are_closed() {
        for (d, status, code) in [
            (Denial::GlobalUnavailable, 503, "rate_limit_unavailable"),
            (Denial::StoreUnavailable, 503, "rate_limit_unavailable"),
            (Denial::Contention, 429, "rate_limit_contention"),
            (Denial::InvalidPath(PathError::DotSegment), 400, "path_dot_segment"),
            (Denial::NotConfigured, 500, "filter_not_configured"),
            (Denial::Internal, 500, "internal_error"),
        ] {
            let r: Rejection = d.into();
            assert_eq!((r.status, r.code), (status, code));
        }
    }
}
