//! The compiled configuration: what to mask where, and how.

use crate::detect::{Detector, DetectorSet};
use crate::mask::HashKey;
use serde::Deserialize;
use shared::pathmatch::{normalize, RouteMatch};
use shared::request::Headers;
use std::collections::BTreeMap;
use std::sync::Arc;

/// How a value is masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Keep the last 4 digits and the separators (cards, phones, SSNs, IBANs), the first
    /// character and the domain (e-mails), the first two octets (IPv4).
    Partial,
    /// Replace with a fixed token `[REDACTED:<kind>]`.
    Redact,
    /// Replace with `[HASH:<kind>:<32 hex>]`, HMAC-SHA256 under a key from the environment:
    /// stable, so records can still be joined, but not reversible without the key.
    Hash,
    /// Drop the JSON member (JSON fields only).
    Remove,
}

/// What to do when a body that must be masked whole (JSON) is larger than `max_buffer_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Refuse it: 502 on responses, 413 on requests.
    #[default]
    Reject,
    /// Give up field-aware masking for it: the body is streamed and masked by value only.
    Pass,
}

/// A JSON field masked by name, wherever it appears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name as configured (used in redaction and hash tokens).
    pub label: String,
    pub mode: Mode,
}

/// Everything needed to mask one body: enabled detectors, their modes, JSON fields, key.
#[derive(Debug, Clone)]
pub struct Plan {
    pub detectors: DetectorSet,
    pub modes: [Mode; 6],
    /// Keyed by [`field_key`] of the configured name.
    pub fields: BTreeMap<String, Field>,
    pub key: Option<Arc<HashKey>>,
}

impl Plan {
    pub fn mode(&self, d: Detector) -> Mode {
        self.modes.get(d.index()).copied().unwrap_or(Mode::Redact)
    }

    /// The field rule for a JSON member name, matched case-insensitively and ignoring `_`
    /// and `-` (`cardNumber`, `card-number` and `CARD_NUMBER` all match `card_number`).
    pub fn field(&self, name: &str) -> Option<&Field> {
        // A handful of fields: compare in place rather than allocate a key per member.
        self.fields.iter().find(|(key, _)| same_field(name, key)).map(|(_, f)| f)
    }
}

/// `field_key(name) == key`, without allocating.
fn same_field(name: &str, key: &str) -> bool {
    let mut a = name.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase);
    let mut b = key.chars();
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x == y => {}
            _ => return false,
        }
    }
}

/// Normal form of a JSON field name for matching.
pub fn field_key(name: &str) -> String {
    name.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect()
}

/// One entry of `content_types`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaRange {
    /// `text/plain`
    Exact(String),
    /// `text/*`
    AnySubtype(String),
    /// `application/*+json`
    Suffix(String, String),
}

impl MediaRange {
    pub fn parse(s: &str) -> Option<Self> {
        let (t, sub) = s.split_once('/')?;
        let token = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$&-^_.+".contains(&b));
        if !token(t) {
            return None;
        }
        if sub == "*" {
            return Some(MediaRange::AnySubtype(t.into()));
        }
        if let Some(suffix) = sub.strip_prefix("*+") {
            return token(suffix).then(|| MediaRange::Suffix(t.into(), suffix.into()));
        }
        token(sub).then(|| MediaRange::Exact(s.into()))
    }

    pub fn matches(&self, media: &str) -> bool {
        match self {
            MediaRange::Exact(m) => m == media,
            MediaRange::AnySubtype(t) => media.split_once('/').is_some_and(|(a, _)| a == t),
            MediaRange::Suffix(t, s) => {
                media.split_once('/').is_some_and(|(a, sub)| a == t && sub.rsplit_once('+').is_some_and(|(_, x)| x == s))
            }
        }
    }
}

/// How a body of a given media type is masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// Buffered whole (up to `max_buffer_bytes`), masked field-aware and by value.
    Json,
    /// Streamed chunk by chunk, masked by value.
    Text,
}

/// Where a plan applies.
#[derive(Debug, Clone)]
pub struct Rule {
    pub matcher: RouteMatch,
    /// `None`: the rule exempts its paths from masking (`"skip": true`).
    pub plan: Option<Arc<Plan>>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    /// Used when no rule matches, and when the path cannot be normalized (fail closed).
    pub default_plan: Arc<Plan>,
    pub rules: Vec<Rule>,
    pub content_types: Vec<MediaRange>,
    pub max_buffer_bytes: usize,
    pub on_overflow: Overflow,
    pub mask_request_bodies: bool,
    pub hold_headers: bool,
}

impl Policy {
    /// The plan for a request (`None`: not masked), chosen by its path and method.
    pub fn plan_for(&self, request: &Headers) -> Option<Arc<Plan>> {
        if self.rules.is_empty() {
            return Some(self.default_plan.clone());
        }
        let Ok(path) = normalize(request.path()) else {
            // Ambiguous paths cannot pick a rule safely; they get the default masking.
            return Some(self.default_plan.clone());
        };
        match self.rules.iter().find(|r| r.matcher.matches(&path, request.method())) {
            Some(rule) => rule.plan.clone(),
            None => Some(self.default_plan.clone()),
        }
    }

    /// How a body with this media type (lower-case, no parameters) is masked, if at all.
    pub fn body_kind(&self, media: Option<&str>) -> Option<BodyKind> {
        let media = media?;
        if !self.content_types.iter().any(|r| r.matches(media)) {
            return None;
        }
        let json = media == "application/json" || media.rsplit_once('+').is_some_and(|(_, s)| s == "json");
        Some(if json { BodyKind::Json } else { BodyKind::Text })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_ranges() {
        let r = MediaRange::parse("application/*+json").unwrap();
        assert!(r.matches("application/problem+json"));
        assert!(!r.matches("application/json"));
        assert!(MediaRange::parse("text/*").unwrap().matches("text/csv"));
        assert!(MediaRange::parse("text/plain").unwrap().matches("text/plain"));
        assert!(MediaRange::parse("Text/Plain").is_none());
        assert!(MediaRange::parse("json").is_none());
        assert!(MediaRange::parse("*/*").is_none());
    }

    #[test]
    fn field_names_match_loosely() {
        assert_eq!(field_key("cardNumber"), field_key("card_number"));
        assert_eq!(field_key("CARD-NUMBER"), "cardnumber");
        assert!(same_field("Card_Number", "cardnumber"));
        assert!(!same_field("card_numbers", "cardnumber"));
        assert!(!same_field("card", "cardnumber"));
        assert!(same_field("ÉMAIL", "émail"));
    }
}
