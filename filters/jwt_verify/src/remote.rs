//! Documents fetched from a cluster (remote JWK Sets and revocation lists): when to fetch,
//! what a response means, and how workers share what one of them fetched.
//!
//! Each Envoy worker runs its own VM and root context. Whichever root fetches a document
//! publishes it in shared data (`<shared_key>`: generation, fetch time, body fingerprint,
//! body); every root looks at that entry on each tick and adopts a newer body, so all workers
//! converge on the same key set within a tick and a fresh fetch by one spares the others.
//! A failed fetch never replaces the last good document. Plain Rust: the glue performs the
//! host calls this module asks for.

use crate::config::{RemoteKind, RemoteSpec};
use crate::jwk::{parse_jwks, KeySet};
use crate::token::parse_value;
use serde_json::Value;
use shared::slots::{SharedStore, StoreError, CAS_RETRIES};
use std::collections::HashSet;

/// Largest response body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// A parsed document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Doc {
    Jwks(KeySet),
    Revoked(HashSet<String>),
}

/// Why a fetch did not produce a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// No response (timeout, reset, no such cluster) or a status other than 200.
    Status(Option<u16>),
    TooLarge,
    /// Not JSON (or repeats a member name).
    NotJson,
    /// JSON of the wrong shape.
    Shape(String),
    /// A JWK Set without any usable key.
    NoUsableKey(usize),
}

/// Parse a response body for `kind`. For a JWK Set also returns how many keys were skipped.
pub fn parse_body(kind: RemoteKind, body: &[u8]) -> Result<(Doc, usize), FetchError> {
    if body.len() > MAX_BODY {
        return Err(FetchError::TooLarge);
    }
    let value = parse_value(body).ok_or(FetchError::NotJson)?;
    match kind {
        RemoteKind::Jwks => {
            let (set, problems) = parse_jwks(&value, false).map_err(|p| FetchError::Shape(p.message))?;
            if set.is_empty() {
                return Err(FetchError::NoUsableKey(problems.len()));
            }
            Ok((Doc::Jwks(set), problems.len()))
        }
        RemoteKind::Revocations => {
            let Value::Array(list) = value else { return Err(FetchError::Shape("a revocation list is a JSON array of strings".into())) };
            let mut out = HashSet::with_capacity(list.len());
            for v in list {
                match v {
                    Value::String(s) => {
                        out.insert(s);
                    }
                    _ => return Err(FetchError::Shape("a revocation list is a JSON array of strings".into())),
                }
            }
            Ok((Doc::Revoked(out), 0))
        }
    }
}

fn body_fingerprint(body: &[u8]) -> [u8; 16] {
    let d = shared::hash::sha256(body);
    let mut f = [0u8; 16];
    for (o, i) in f.iter_mut().zip(d.iter()) {
        *o = *i;
    }
    f
}

/// The shared-data entry of one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub generation: u64,
    pub fetched_at_s: u64,
    pub fingerprint: [u8; 16],
    pub body: Vec<u8>,
}

const ENTRY_VERSION: u8 = 1;

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(33 + self.body.len());
        out.push(ENTRY_VERSION);
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.fetched_at_s.to_le_bytes());
        out.extend_from_slice(&self.fingerprint);
        out.extend_from_slice(&self.body);
        out
    }

    pub fn decode(raw: &[u8]) -> Option<Entry> {
        if *raw.first()? != ENTRY_VERSION {
            return None;
        }
        let generation = u64::from_le_bytes(raw.get(1..9)?.try_into().ok()?);
        let fetched_at_s = u64::from_le_bytes(raw.get(9..17)?.try_into().ok()?);
        let fingerprint: [u8; 16] = raw.get(17..33)?.try_into().ok()?;
        let body = raw.get(33..)?.to_vec();
        (body_fingerprint(&body) == fingerprint).then_some(Entry { generation, fetched_at_s, fingerprint, body })
    }
}

/// Publish a freshly fetched body: same body keeps the generation and refreshes the time;
/// a different body bumps the generation. Returns the generation now in force.
pub fn publish(store: &dyn SharedStore, key: &str, body: &[u8], now_s: u64) -> Result<u64, StoreError> {
    let fingerprint = body_fingerprint(body);
    for _ in 0..CAS_RETRIES {
        let current = store.get(key)?;
        let (old, cas) = match &current {
            Some((raw, cas)) => (Entry::decode(raw), *cas),
            None => (None, 0),
        };
        let generation = match &old {
            Some(o) if o.fingerprint == fingerprint => o.generation,
            Some(o) => o.generation.wrapping_add(1),
            None => 1,
        };
        let fetched_at_s = old.as_ref().map_or(now_s, |o| o.fetched_at_s.max(now_s));
        let entry = Entry { generation, fetched_at_s, fingerprint, body: body.to_vec() };
        match store.set(key, &entry.encode(), Some(cas)) {
            Ok(()) => return Ok(generation),
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::CasMismatch)
}

/// Whether a provider's remote document can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Ready,
    /// Not fetched yet, a fetch is due or under way: wait for it.
    Loading,
    /// Never fetched and the last attempt failed.
    Unavailable,
}

/// What a tick asks the glue to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TickOutcome {
    /// Dispatch a fetch now.
    pub fetch: bool,
    /// The document changed or an attempt ended: re-run the waiting requests.
    pub wake: bool,
}

/// One remote document as this VM sees it.
#[derive(Debug, Clone)]
pub struct Remote {
    pub spec: RemoteSpec,
    pub doc: Option<Doc>,
    pub fingerprint: [u8; 16],
    pub generation: u64,
    /// When the content was last confirmed fresh (by this VM or by another via shared data).
    pub fresh_at_s: u64,
    /// Start time (ms) of the fetch under way.
    pub in_flight_since_ms: Option<u64>,
    pub last_attempt_ms: Option<u64>,
    /// The last attempt failed.
    pub failed: bool,
    /// A request met an unknown `kid`: refresh at the next tick.
    pub early_wanted: bool,
    pub last_early_s: Option<u64>,
}

/// Grace after the fetch timeout before a fetch is presumed lost.
const LOST_AFTER_MS: u64 = 5_000;

impl Remote {
    pub fn new(spec: RemoteSpec) -> Self {
        Self {
            spec,
            doc: None,
            fingerprint: [0; 16],
            generation: 0,
            fresh_at_s: 0,
            in_flight_since_ms: None,
            last_attempt_ms: None,
            failed: false,
            early_wanted: false,
            last_early_s: None,
        }
    }

    pub fn availability(&self) -> Availability {
        match (&self.doc, self.failed && self.in_flight_since_ms.is_none() && !self.early_wanted) {
            (Some(_), _) => Availability::Ready,
            (None, true) => Availability::Unavailable,
            (None, false) => Availability::Loading,
        }
    }

    pub fn keys(&self) -> Option<&KeySet> {
        match &self.doc {
            Some(Doc::Jwks(k)) => Some(k),
            _ => None,
        }
    }

    pub fn is_revoked(&self, jti: &str) -> bool {
        matches!(&self.doc, Some(Doc::Revoked(set)) if set.contains(jti))
    }

    /// Whether a request with an unknown `kid` may wait for a refresh: one is under way or
    /// wanted, or the last early refresh is at least `unknown_kid_refresh_s` old.
    pub fn may_refresh_early(&self, now_s: u64) -> bool {
        self.spec.early_refresh_s > 0
            && (self.in_flight_since_ms.is_some()
                || self.early_wanted
                || self.last_early_s.is_none_or(|t| now_s >= t.saturating_add(self.spec.early_refresh_s)))
    }

    /// Ask for an early refresh (the caller checked [`Remote::may_refresh_early`]).
    pub fn want_early(&mut self) {
        if self.in_flight_since_ms.is_none() {
            self.early_wanted = true;
        }
    }

    fn adopt(&mut self, doc: Doc, fingerprint: [u8; 16], generation: u64, fresh_at_s: u64) {
        self.doc = Some(doc);
        self.fingerprint = fingerprint;
        self.generation = generation;
        self.fresh_at_s = fresh_at_s;
        self.failed = false;
    }

    /// Once per tick: adopt what another worker published, expire a lost fetch, and say
    /// whether to fetch now.
    pub fn tick(&mut self, shared: Option<&[u8]>, now_ms: u64) -> TickOutcome {
        let mut out = TickOutcome::default();
        if let Some(entry) = shared.and_then(Entry::decode) {
            if entry.fingerprint != self.fingerprint || self.doc.is_none() {
                if let Ok((doc, _)) = parse_body(self.spec.kind, &entry.body) {
                    self.adopt(doc, entry.fingerprint, entry.generation, entry.fetched_at_s);
                    out.wake = true;
                }
            } else {
                self.fresh_at_s = self.fresh_at_s.max(entry.fetched_at_s);
                self.generation = entry.generation;
            }
        }
        if let Some(since) = self.in_flight_since_ms {
            if now_ms.saturating_sub(since) > u64::from(self.spec.timeout_ms) + LOST_AFTER_MS {
                self.in_flight_since_ms = None;
                self.failed = true;
                out.wake = true;
            }
        }
        out.fetch = self.should_fetch(now_ms);
        out
    }

    fn should_fetch(&self, now_ms: u64) -> bool {
        if self.in_flight_since_ms.is_some() {
            return false;
        }
        if self.early_wanted {
            return true;
        }
        let now_s = now_ms / 1000;
        let stale = self.doc.is_none() || now_s.saturating_sub(self.fresh_at_s) >= self.spec.refresh_s;
        if !stale {
            return false;
        }
        let backoff_ms = if self.doc.is_none() { 2_000 } else { self.spec.refresh_s.saturating_mul(1000).min(10_000) };
        self.last_attempt_ms.is_none_or(|t| now_ms.saturating_sub(t) >= backoff_ms)
    }

    /// A fetch was dispatched (`Ok`) or refused by the host (`Err`).
    pub fn dispatched(&mut self, ok: bool, now_ms: u64) {
        self.last_attempt_ms = Some(now_ms);
        if self.early_wanted {
            self.early_wanted = false;
            self.last_early_s = Some(now_ms / 1000);
        }
        if ok {
            self.in_flight_since_ms = Some(now_ms);
        } else {
            self.failed = true;
        }
    }

    /// A response arrived (status `None`: no response). On success the document is adopted
    /// and the body returned for publishing; on failure the last good document stays.
    pub fn on_response(&mut self, status: Option<u16>, body: &[u8], now_ms: u64) -> Result<(usize, Vec<u8>), FetchError> {
        self.in_flight_since_ms = None;
        let result = match status {
            Some(200) => parse_body(self.spec.kind, body),
            other => Err(FetchError::Status(other)),
        };
        match result {
            Ok((doc, skipped)) => {
                self.adopt(doc, body_fingerprint(body), self.generation, now_ms / 1000);
                Ok((skipped, body.to_vec()))
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwk::tests::rsa_n;
    use serde_json::json;
    use shared::slots::MemoryStore;

    fn spec(kind: RemoteKind) -> RemoteSpec {
        RemoteSpec {
            kind,
            provider: 0,
            cluster: "idp".into(),
            authority: "idp".into(),
            path: "/jwks".into(),
            refresh_s: 300,
            timeout_ms: 1000,
            early_refresh_s: 30,
            shared_key: "k".into(),
        }
    }

    fn jwks_body(kid: &str) -> Vec<u8> {
        json!({"keys": [{"kty": "RSA", "n": rsa_n(2048), "e": "AQAB", "kid": kid}, {"kty": "RSA", "n": rsa_n(1024), "e": "AQAB"}]}).to_string().into_bytes()
    }

    #[test]
    fn bodies() {
        let (doc, skipped) = parse_body(RemoteKind::Jwks, &jwks_body("a")).unwrap();
        assert!(matches!(doc, Doc::Jwks(ref k) if k.len() == 1));
        assert_eq!(skipped, 1);
        assert_eq!(parse_body(RemoteKind::Jwks, b"nope"), Err(FetchError::NotJson));
        assert_eq!(parse_body(RemoteKind::Jwks, br#"{"keys":[],"keys":[]}"#), Err(FetchError::NotJson));
        assert_eq!(parse_body(RemoteKind::Jwks, br#"{"keys":[]}"#), Err(FetchError::NoUsableKey(0)));
        let oct = json!({"keys": [{"kty": "oct", "k": crate::token::b64url_encode(&[1u8; 32])}]}).to_string();
        assert_eq!(parse_body(RemoteKind::Jwks, oct.as_bytes()), Err(FetchError::NoUsableKey(1)));
        assert!(matches!(parse_body(RemoteKind::Jwks, b"[]"), Err(FetchError::Shape(_))));
        let (doc, _) = parse_body(RemoteKind::Revocations, br#"["a","b"]"#).unwrap();
        assert!(matches!(doc, Doc::Revoked(ref s) if s.contains("a") && s.len() == 2));
        assert!(matches!(parse_body(RemoteKind::Revocations, br#"["a",1]"#), Err(FetchError::Shape(_))));
        assert!(matches!(parse_body(RemoteKind::Revocations, br#"{}"#), Err(FetchError::Shape(_))));
        assert_eq!(parse_body(RemoteKind::Revocations, &vec![b' '; MAX_BODY + 1]), Err(FetchError::TooLarge));
    }

    #[test]
    fn first_fetch_then_refresh_schedule() {
        let mut r = Remote::new(spec(RemoteKind::Jwks));
        assert_eq!(r.availability(), Availability::Loading);
        let t = r.tick(None, 1_000_000);
        assert!(t.fetch);
        r.dispatched(true, 1_000_000);
        assert!(!r.tick(None, 1_000_500).fetch, "one fetch at a time");
        let (skipped, body) = r.on_response(Some(200), &jwks_body("a"), 1_000_600).unwrap();
        assert_eq!(skipped, 1);
        assert_eq!(body, jwks_body("a"));
        assert_eq!(r.availability(), Availability::Ready);
        assert!(!r.tick(None, 1_200_000).fetch);
        assert!(r.tick(None, 1_000_600 + 300_000).fetch, "due after cache_duration_s");
    }

    #[test]
    fn failure_keeps_last_good_and_backs_off() {
        let mut r = Remote::new(spec(RemoteKind::Jwks));
        r.tick(None, 0);
        r.dispatched(true, 0);
        assert!(r.on_response(Some(503), b"", 100).is_err());
        assert_eq!(r.availability(), Availability::Unavailable);
        assert!(!r.tick(None, 1_000).fetch, "backoff");
        assert!(r.tick(None, 2_100).fetch);
        r.dispatched(true, 2_100);
        assert_eq!(r.availability(), Availability::Loading);
        r.on_response(Some(200), &jwks_body("a"), 2_200).unwrap();
        let keys = r.keys().unwrap().clone();
        // Later refresh fails: the key set stays.
        r.dispatched(true, 400_000);
        assert_eq!(r.on_response(None, b"", 400_100), Err(FetchError::Status(None)));
        assert_eq!(r.availability(), Availability::Ready);
        assert_eq!(r.keys(), Some(&keys));
        assert!(r.on_response(Some(200), b"{\"keys\": [", 400_200).is_err());
        assert_eq!(r.keys(), Some(&keys));
    }

    #[test]
    fn lost_fetch_is_expired() {
        let mut r = Remote::new(spec(RemoteKind::Jwks));
        r.dispatched(true, 0);
        assert!(!r.tick(None, 5_000).wake);
        let t = r.tick(None, 6_001);
        assert!(t.wake);
        assert_eq!(r.availability(), Availability::Unavailable);
    }

    #[test]
    fn early_refresh_is_rate_limited() {
        let mut r = Remote::new(spec(RemoteKind::Jwks));
        r.dispatched(true, 0);
        r.on_response(Some(200), &jwks_body("a"), 10).unwrap();
        assert!(r.may_refresh_early(100));
        r.want_early();
        assert!(r.may_refresh_early(100), "a wanted refresh can be waited for");
        assert!(r.tick(None, 100_000).fetch);
        r.dispatched(true, 100_000);
        assert!(r.may_refresh_early(100), "one under way can be waited for");
        r.on_response(Some(200), &jwks_body("b"), 100_100).unwrap();
        assert!(!r.may_refresh_early(110));
        assert!(r.may_refresh_early(130));
        let mut off = Remote::new(RemoteSpec { early_refresh_s: 0, ..spec(RemoteKind::Jwks) });
        off.dispatched(true, 0);
        assert!(!off.may_refresh_early(0) || off.in_flight_since_ms.is_some());
    }

    #[test]
    fn workers_share_through_the_entry() {
        let store = MemoryStore::new();
        let mut a = Remote::new(spec(RemoteKind::Jwks));
        let mut b = Remote::new(spec(RemoteKind::Jwks));
        a.dispatched(true, 1_000);
        let (_, body) = a.on_response(Some(200), &jwks_body("a"), 1_100).unwrap();
        assert_eq!(publish(&store, "k", &body, 1).unwrap(), 1);
        let raw = store.get("k").unwrap().unwrap().0;
        let t = b.tick(Some(&raw), 1_200);
        assert!(t.wake && !t.fetch, "adopted, no own fetch needed");
        assert_eq!(b.keys(), a.keys());
        // Same body again keeps the generation; a new body bumps it.
        assert_eq!(publish(&store, "k", &body, 2).unwrap(), 1);
        assert_eq!(publish(&store, "k", &jwks_body("b"), 3).unwrap(), 2);
        let raw = store.get("k").unwrap().unwrap().0;
        let t = b.tick(Some(&raw), 3_000);
        assert!(t.wake);
        assert_eq!(b.generation, 2);
        assert_ne!(b.keys(), a.keys());
        assert!(!b.tick(Some(&raw), 4_000).wake, "unchanged entry wakes nobody");
        // A corrupt entry is ignored.
        let mut bad = raw.clone();
        if let Some(last) = bad.last_mut() {
            *last ^= 1;
        }
        assert_eq!(Entry::decode(&bad), None);
    }
}
