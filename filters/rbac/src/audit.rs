//! What a denial's audit line says, beyond the common [`shared::audit::DenyLog`] fields:
//! who (subject, provider, roles), which rule, why, and the calling service. Never token
//! contents: only the subject and the role names are taken from the identity.

use crate::decide::{Decision, PeerCert, RuleRef};
use crate::policy::Policy;
use serde_json::{Map, Value};
use shared::identity::Identity;
use shared::request::split_query;

/// At most this many role names, each cut to [`MAX_FIELD`] bytes, go into a log line.
pub const MAX_ROLES: usize = 16;
pub const MAX_FIELD: usize = 128;
/// The logged path is cut to this many bytes.
pub const MAX_PATH: usize = 512;

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", s.get(..end).unwrap_or_default())
}

/// The path for the log line: the query is dropped (it may carry tokens), non-UTF-8 is
/// replaced, the length is bounded.
pub fn log_path(raw: &[u8]) -> String {
    let (path, _) = split_query(raw);
    cut(&String::from_utf8_lossy(path), MAX_PATH)
}

/// Filter-specific fields of the audit line for a denial.
pub fn deny_fields(decision: &Decision, identity: Option<&Identity>, peer: Option<&PeerCert>, policy: &Policy) -> Map<String, Value> {
    let mut m = Map::new();
    if let Decision::Deny { reason, .. } = decision {
        m.insert("reason".into(), Value::from(reason.metric()));
    }
    if let Some(rule) = decision.rule() {
        m.insert("rule".into(), Value::from(rule.label()));
        if let RuleRef::Rule(i) = rule {
            if let Some(r) = policy.rules.get(i) {
                m.insert("route".into(), Value::from(r.route.describe()));
            }
        }
    }
    let service_call = peer.is_some() && policy.has_services();
    match (service_call, peer) {
        (true, Some(p)) => {
            m.insert("service".into(), p.uri_san.as_deref().map(|s| Value::from(cut(s, MAX_PATH))).unwrap_or(Value::Null));
        }
        _ => match identity {
            Some(id) => {
                m.insert("subject".into(), Value::from(cut(&id.subject, MAX_FIELD)));
                m.insert("provider".into(), Value::from(cut(&id.provider, MAX_FIELD)));
                let roles: Vec<Value> =
                    id.claim_strings(&policy.role_claim).into_iter().take(MAX_ROLES).map(|r| Value::from(cut(r, MAX_FIELD))).collect();
                m.insert("roles".into(), Value::Array(roles));
            }
            None => {
                m.insert("subject".into(), Value::Null);
            }
        },
    }
    m
}
