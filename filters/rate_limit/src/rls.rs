//! Global mode: Envoy's rate-limit service protocol (`envoy.service.ratelimit.v3`,
//! `RateLimitService/ShouldRateLimit`), encoded and decoded by hand. Only the fields this
//! filter uses are written; everything else in a response is skipped by wire type, so newer
//! services stay compatible. Decoding is bounds-checked and never panics.
//!
//! Descriptors sent (the limits themselves are configured in the service):
//! * `[("tier", <tier>), ("key", <client key>)]` for every request;
//! * `[("route", <route name>), ("key", <route client key>)]` when a route limit matches.
//!
//! Client keys are `user:<provider>:<sub>` or `ip:<address>` as in local mode.

use crate::decide::Plan;
use crate::headers::Item;
use crate::policy::Policy;

pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

/// A descriptor: ordered key/value entries.
pub type Descriptor = Vec<(String, String)>;

/// The descriptors for a request and, for each, the policy name used in headers.
pub fn descriptors(plan: &Plan, policy: &Policy) -> Vec<(String, Descriptor)> {
    let mut out = Vec::with_capacity(2);
    if let Some(t) = policy.tier(plan.tier) {
        out.push((t.name.clone(), vec![("tier".into(), t.name.clone()), ("key".into(), plan.client.as_key())]));
    }
    if let Some((i, key)) = &plan.route {
        if let Some(r) = policy.routes.get(*i) {
            out.push((r.limit.name.clone(), vec![("route".into(), r.limit.name.clone()), ("key".into(), key.as_key())]));
        }
    }
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    put_varint(out, u64::from(field << 3 | 2));
    put_varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// `RateLimitRequest { domain = 1; descriptors = 2; hits_addend = 3 }`.
pub fn encode_request(domain: &str, descriptors: &[Descriptor]) -> Vec<u8> {
    let mut out = Vec::new();
    put_bytes(&mut out, 1, domain.as_bytes());
    for d in descriptors {
        let mut desc = Vec::new();
        for (k, v) in d {
            let mut entry = Vec::new();
            put_bytes(&mut entry, 1, k.as_bytes());
            put_bytes(&mut entry, 2, v.as_bytes());
            put_bytes(&mut desc, 1, &entry);
        }
        put_bytes(&mut out, 2, &desc);
    }
    put_varint(&mut out, 3 << 3);
    put_varint(&mut out, 1);
    out
}

/// `RateLimitResponse.Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unknown,
    Ok,
    OverLimit,
}

impl Code {
    fn from(v: u64) -> Self {
        match v {
            1 => Code::Ok,
            2 => Code::OverLimit,
            _ => Code::Unknown,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentLimit {
    pub requests_per_unit: u64,
    /// Unit in seconds (0 = unknown).
    pub unit_s: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorStatus {
    pub code: Code,
    pub current_limit: Option<CurrentLimit>,
    pub limit_remaining: u64,
    /// `duration_until_reset` in milliseconds.
    pub reset_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub overall: Code,
    pub statuses: Vec<DescriptorStatus>,
}

/// The response cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

struct Reader<'a> {
    buf: &'a [u8],
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first().ok_or(Malformed)?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Malformed)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.buf.len() {
            return Err(Malformed);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// Next field number and value; `None` at the end.
    fn field(&mut self) -> Result<Option<(u64, Value<'a>)>, Malformed> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| Malformed)?;
                Value::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            _ => return Err(Malformed),
        };
        Ok(Some((key >> 3, value)))
    }
}

fn unit_seconds(unit: u64) -> u64 {
    match unit {
        1 => 1,
        2 => 60,
        3 => 3_600,
        4 => 86_400,
        5 => 30 * 86_400,
        6 => 365 * 86_400,
        7 => 7 * 86_400,
        _ => 0,
    }
}

fn decode_limit(buf: &[u8]) -> Result<CurrentLimit, Malformed> {
    let mut r = Reader { buf };
    let mut l = CurrentLimit { requests_per_unit: 0, unit_s: 0 };
    while let Some((f, v)) = r.field()? {
        match (f, v) {
            (1, Value::Varint(n)) => l.requests_per_unit = n,
            (2, Value::Varint(u)) => l.unit_s = unit_seconds(u),
            _ => {}
        }
    }
    Ok(l)
}

fn decode_duration_ms(buf: &[u8]) -> Result<u64, Malformed> {
    let mut r = Reader { buf };
    let (mut s, mut nanos) = (0u64, 0u64);
    while let Some((f, v)) = r.field()? {
        match (f, v) {
            // Negative durations (two's complement varints) read as huge and are capped below.
            (1, Value::Varint(n)) => s = if n > i64::MAX as u64 { 0 } else { n },
            (2, Value::Varint(n)) => nanos = if n > 999_999_999 { 0 } else { n },
            _ => {}
        }
    }
    Ok(s.saturating_mul(1000).saturating_add(nanos.div_ceil(1_000_000)))
}

fn decode_status(buf: &[u8]) -> Result<DescriptorStatus, Malformed> {
    let mut r = Reader { buf };
    let mut s = DescriptorStatus { code: Code::Unknown, current_limit: None, limit_remaining: 0, reset_ms: None };
    while let Some((f, v)) = r.field()? {
        match (f, v) {
            (1, Value::Varint(c)) => s.code = Code::from(c),
            (2, Value::Bytes(b)) => s.current_limit = Some(decode_limit(b)?),
            (3, Value::Varint(n)) => s.limit_remaining = n,
            (4, Value::Bytes(b)) => s.reset_ms = Some(decode_duration_ms(b)?),
            _ => {}
        }
    }
    Ok(s)
}

/// Decode a `RateLimitResponse`.
pub fn decode_response(buf: &[u8]) -> Result<Response, Malformed> {
    let mut r = Reader { buf };
    let mut out = Response { overall: Code::Unknown, statuses: Vec::new() };
    while let Some((f, v)) = r.field()? {
        match (f, v) {
            (1, Value::Varint(c)) => out.overall = Code::from(c),
            (2, Value::Bytes(b)) => out.statuses.push(decode_status(b)?),
            _ => {}
        }
    }
    Ok(out)
}

/// What the service decided, with header items built from its descriptor statuses
/// (`names[i]` is the policy name of descriptor `i`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobalVerdict {
    Allow { items: Vec<Item> },
    Limited { items: Vec<Item>, retry_after_s: u64 },
    /// `UNKNOWN` overall code: treated as a service failure.
    Error,
}

pub fn verdict(resp: &Response, names: &[String]) -> GlobalVerdict {
    let items: Vec<Item> = resp
        .statuses
        .iter()
        .zip(names)
        .filter_map(|(s, name)| {
            let l = s.current_limit.as_ref()?;
            Some(Item {
                name: name.clone(),
                quota: l.requests_per_unit,
                window_s: l.unit_s,
                remaining: s.limit_remaining,
                reset_s: s.reset_ms.map(|ms| ms.div_ceil(1000)),
            })
        })
        .collect();
    match resp.overall {
        Code::Ok => GlobalVerdict::Allow { items },
        Code::OverLimit => {
            let retry = resp
                .statuses
                .iter()
                .filter(|s| s.code == Code::OverLimit)
                .filter_map(|s| s.reset_ms.map(|ms| ms.div_ceil(1000)).or_else(|| s.current_limit.as_ref().map(|l| l.unit_s)))
                .max()
                .unwrap_or(1)
                .max(1);
            GlobalVerdict::Limited { items, retry_after_s: retry }
        }
        Code::Unknown => GlobalVerdict::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bytes_match_protobuf() {
        // domain "d", one descriptor [("k","v")], hits_addend 1; checked by hand against the
        // protobuf encoding rules (tag = field << 3 | wire type).
        let got = encode_request("d", &[vec![("k".into(), "v".into())]]);
        let want = [0x0a, 1, b'd', 0x12, 8, 0x0a, 6, 0x0a, 1, b'k', 0x12, 1, b'v', 0x18, 1];
        assert_eq!(got, want);
    }

    fn status(code: u64, rpu: u64, unit: u64, remaining: u64, secs: u64) -> Vec<u8> {
        let mut limit = Vec::new();
        put_varint(&mut limit, 1 << 3);
        put_varint(&mut limit, rpu);
        put_varint(&mut limit, 2 << 3);
        put_varint(&mut limit, unit);
        let mut dur = Vec::new();
        put_varint(&mut dur, 1 << 3);
        put_varint(&mut dur, secs);
        put_varint(&mut dur, 2 << 3);
        put_varint(&mut dur, 500_000_000);
        let mut s = Vec::new();
        put_varint(&mut s, 1 << 3);
        put_varint(&mut s, code);
        put_bytes(&mut s, 2, &limit);
        put_varint(&mut s, 3 << 3);
        put_varint(&mut s, remaining);
        put_bytes(&mut s, 4, &dur);
        s
    }

    fn response(overall: u64, statuses: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, 1 << 3);
        put_varint(&mut out, overall);
        for s in statuses {
            put_bytes(&mut out, 2, s);
        }
        // Unknown fields of every wire type are skipped.
        put_bytes(&mut out, 5, b"raw body");
        put_varint(&mut out, 9 << 3 | 1);
        out.extend_from_slice(&[0; 8]);
        put_varint(&mut out, 10 << 3 | 5);
        out.extend_from_slice(&[0; 4]);
        out
    }

    #[test]
    fn decodes_over_limit_with_statuses() {
        let raw = response(2, &[status(1, 10, 2, 7, 30), status(2, 5, 2, 0, 41)]);
        let r = decode_response(&raw).unwrap();
        assert_eq!(r.overall, Code::OverLimit);
        assert_eq!(r.statuses.len(), 2);
        assert_eq!(r.statuses[1].reset_ms, Some(41_500));
        let names = vec!["anonymous".to_string(), "login".to_string()];
        match verdict(&r, &names) {
            GlobalVerdict::Limited { items, retry_after_s } => {
                assert_eq!(retry_after_s, 42);
                assert_eq!(items.len(), 2);
                assert_eq!(items[0], Item { name: "anonymous".into(), quota: 10, window_s: 60, remaining: 7, reset_s: Some(31) });
                assert_eq!(items[1].remaining, 0);
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn ok_and_unknown() {
        let r = decode_response(&response(1, &[])).unwrap();
        assert_eq!(verdict(&r, &[]), GlobalVerdict::Allow { items: vec![] });
        let r = decode_response(&[]).unwrap();
        assert_eq!(verdict(&r, &[]), GlobalVerdict::Error);
    }

    #[test]
    fn truncated_or_garbage_never_panics() {
        let raw = response(2, &[status(2, 5, 2, 0, 41)]);
        for cut in 0..raw.len() {
            let _ = decode_response(&raw[..cut]);
        }
        assert_eq!(decode_response(&[0x0b]), Err(Malformed)); // group wire type
        assert_eq!(decode_response(&[0x12, 0xff, 0xff, 0xff, 0xff, 0x0f]), Err(Malformed));
        assert_eq!(decode_response(&[0x08; 11]), Err(Malformed)); // key without a value at the end
        assert_eq!(decode_response(&[0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), Err(Malformed));
    }

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(Reader { buf: &b }.varint(), Ok(v));
        }
    }
}
