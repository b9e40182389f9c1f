//! Token bucket arithmetic in integer milli-tokens, with the time passed in.
//!
//! A bucket holds up to `burst * 1000` milli-tokens and gains `requests * 1000` milli-tokens
//! per window of `W` ms. Refill is exact: the part of a milli-token earned so far is kept as
//! a remainder `frac` (in 1/W milli-tokens), so `refill(refill(b, t1), t2) == refill(b, t2)`
//! and nothing is lost to rounding however often a bucket is updated. A request costs 1000
//! milli-tokens. A bucket that was never seen starts full.
//!
//! Stored form (24 bytes): milli-tokens `u32`, `frac` `u32`, `last_ms` `u64`, `full_at_ms`
//! `u64` (the moment the bucket will be full again if nothing consumes from it), which is
//! what eviction ranks by: see [`rank`].

use crate::policy::Limit;

/// Cost of one request.
pub const COST: u64 = 1000;
/// Bytes of a stored bucket.
pub const STORED_LEN: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub milli: u64,
    /// Earned fraction of the next milli-token, in units of 1/`window_ms` (always < window_ms).
    pub frac: u64,
    pub last_ms: u64,
}

/// What one request did to one bucket, and what the headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    /// Whole requests still available after this request.
    pub remaining: u64,
    /// Milliseconds until the next whole request becomes available; `None` when the bucket is
    /// full. For a denied request this is the exact wait before a retry can succeed.
    pub next_ms: Option<u64>,
}

impl Outcome {
    /// `Retry-After` / `t=` in whole seconds, rounded up so that waiting that long is enough.
    pub fn next_s(&self) -> Option<u64> {
        self.next_ms.map(|ms| ms.div_ceil(1000))
    }
}

impl Bucket {
    pub fn full(limit: &Limit, now_ms: u64) -> Self {
        Self { milli: limit.cap_milli(), frac: 0, last_ms: now_ms }
    }

    /// The bucket at `now_ms`. A clock that went backwards credits nothing (and `last_ms`
    /// stays, so nothing is credited twice when it comes back).
    pub fn refill(self, limit: &Limit, now_ms: u64) -> Self {
        let cap = limit.cap_milli();
        if self.milli >= cap {
            return Self { milli: cap, frac: 0, last_ms: self.last_ms.max(now_ms) };
        }
        if now_ms <= self.last_ms {
            return self;
        }
        let w = u128::from(limit.window_ms().max(1));
        let earned = u128::from(now_ms - self.last_ms) * u128::from(limit.rate_milli()) + u128::from(self.frac);
        let milli = u128::from(self.milli) + earned / w;
        if milli >= u128::from(cap) {
            return Self { milli: cap, frac: 0, last_ms: now_ms };
        }
        Self { milli: u64::try_from(milli).unwrap_or(cap), frac: u64::try_from(earned % w).unwrap_or(0), last_ms: now_ms }
    }

    /// Milliseconds from `now_ms` until the bucket holds at least `target` milli-tokens
    /// (0 if it already does). `self` must be refilled to `now_ms`.
    pub fn ms_until(&self, limit: &Limit, target: u64, now_ms: u64) -> u64 {
        if self.milli >= target {
            return 0;
        }
        let w = u128::from(limit.window_ms().max(1));
        let rate = u128::from(limit.rate_milli().max(1));
        let need = u128::from(target - self.milli) * w - u128::from(self.frac).min(w);
        // Time since last_ms not yet credited (0 once refilled to now_ms).
        let pending = u128::from(now_ms.saturating_sub(self.last_ms));
        u64::try_from(need.div_ceil(rate).saturating_sub(pending)).unwrap_or(u64::MAX).max(1)
    }

    /// When the bucket will be full again if nothing consumes from it.
    pub fn full_at(&self, limit: &Limit, now_ms: u64) -> u64 {
        now_ms.saturating_add(self.ms_until(limit, limit.cap_milli(), now_ms))
    }

    pub fn encode(&self, limit: &Limit, now_ms: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(STORED_LEN);
        out.extend_from_slice(&u32::try_from(self.milli).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&u32::try_from(self.frac).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&self.last_ms.to_le_bytes());
        out.extend_from_slice(&self.full_at(limit, now_ms).to_le_bytes());
        out
    }

    /// `None` for anything that is not a stored bucket (it is then treated as absent).
    pub fn decode(raw: &[u8]) -> Option<Self> {
        if raw.len() != STORED_LEN {
            return None;
        }
        let milli = u32::from_le_bytes(raw.get(0..4)?.try_into().ok()?);
        let frac = u32::from_le_bytes(raw.get(4..8)?.try_into().ok()?);
        let last_ms = u64::from_le_bytes(raw.get(8..16)?.try_into().ok()?);
        Some(Self { milli: u64::from(milli), frac: u64::from(frac), last_ms })
    }
}

/// Eviction rank of a stored bucket: the moment it will be full again. A full bucket is
/// indistinguishable from a new one, so evicting the lowest rank loses the least: a bucket
/// that is already full costs nothing to evict, and a client that drained its bucket is
/// evicted last. Unreadable entries rank 0 (evicted first).
pub fn rank(raw: &[u8]) -> u64 {
    if raw.len() != STORED_LEN {
        return 0;
    }
    raw.get(16..24).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes).unwrap_or(0)
}

/// Take one request from `current` (absent = a new, full bucket) at `now_ms`. Returns the
/// bucket to store when the request is allowed (`None` when denied: nothing changes) and the
/// outcome.
pub fn take(limit: &Limit, current: Option<Bucket>, now_ms: u64) -> (Option<Bucket>, Outcome) {
    let b = current.unwrap_or_else(|| Bucket::full(limit, now_ms)).refill(limit, now_ms);
    if b.milli >= COST {
        let after = Bucket { milli: b.milli - COST, ..b };
        (Some(after), report(limit, &after, now_ms, true))
    } else {
        (None, report(limit, &b, now_ms, false))
    }
}

/// The state of `current` at `now_ms` without taking anything (headers for a bucket that was
/// not consumed from).
pub fn peek(limit: &Limit, current: Option<Bucket>, now_ms: u64) -> Outcome {
    let b = current.unwrap_or_else(|| Bucket::full(limit, now_ms)).refill(limit, now_ms);
    report(limit, &b, now_ms, b.milli >= COST)
}

/// Give back one request taken by [`take`] (the other limit refused the request): the bucket
/// to store and its state for the headers.
pub fn give_back(limit: &Limit, current: Bucket, now_ms: u64) -> (Bucket, Outcome) {
    let b = current.refill(limit, now_ms);
    let cap = limit.cap_milli();
    let milli = b.milli.saturating_add(COST).min(cap);
    let after = Bucket { milli, frac: if milli >= cap { 0 } else { b.frac }, last_ms: b.last_ms };
    (after, report(limit, &after, now_ms, false))
}

fn report(limit: &Limit, b: &Bucket, now_ms: u64, allowed: bool) -> Outcome {
    let remaining = b.milli / COST;
    let next_ms = if b.milli >= limit.cap_milli() { None } else { Some(b.ms_until(limit, (remaining + 1) * COST, now_ms)) };
    Outcome { allowed, remaining, next_ms }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(requests: u64, window_s: u64, burst: u64) -> Limit {
        Limit { name: "t".into(), requests, window_s, burst }
    }

    /// Take `n` requests at `now`, threading the bucket; returns how many were allowed.
    fn burst(l: &Limit, b: &mut Option<Bucket>, now: u64, n: u64) -> u64 {
        let mut ok = 0;
        for _ in 0..n {
            let (next, o) = take(l, *b, now);
            if let Some(nb) = next {
                *b = Some(nb);
            }
            ok += u64::from(o.allowed);
        }
        ok
    }

    #[test]
    fn new_bucket_allows_exactly_burst() {
        let l = limit(10, 60, 10);
        let mut b = None;
        assert_eq!(burst(&l, &mut b, 1_000, 25), 10);
        let l = limit(1000, 60, 100);
        let mut b = None;
        assert_eq!(burst(&l, &mut b, 1_000, 250), 100);
    }

    #[test]
    fn refill_is_exact_at_the_token_boundary() {
        // 10 per minute: one token every 6000 ms.
        let l = limit(10, 60, 10);
        let mut b = None;
        assert_eq!(burst(&l, &mut b, 0, 10), 10);
        let (_, o) = take(&l, b, 5_999);
        assert!(!o.allowed);
        assert_eq!(o.next_ms, Some(1));
        let (nb, o) = take(&l, b, 6_000);
        assert!(o.allowed);
        assert_eq!(o.remaining, 0);
        assert_eq!(nb.unwrap().milli, 0);
    }

    #[test]
    fn retry_after_is_exact_and_rounded_up() {
        let l = limit(10, 60, 10);
        let mut b = None;
        burst(&l, &mut b, 0, 10);
        for (now, want_ms, want_s) in [(0, 6000, 6), (1, 5999, 6), (999, 5001, 6), (1000, 5000, 5), (5_001, 999, 1), (5_999, 1, 1)] {
            let (next, o) = take(&l, b, now);
            assert!(next.is_none() && !o.allowed, "denied at {now}");
            assert_eq!(o.next_ms, Some(want_ms), "at {now}");
            assert_eq!(o.next_s(), Some(want_s), "at {now}");
            // Waiting exactly next_ms is enough, one ms less is not.
            assert!(take(&l, b, now + want_ms).1.allowed);
            assert!(!take(&l, b, now + want_ms - 1).1.allowed);
        }
    }

    #[test]
    fn fractional_rates_lose_nothing_to_rounding() {
        // 7 per minute: 8571.43 ms per token, 0.1167 milli-tokens per ms. Updating the bucket
        // every ms must credit exactly as much as one update at the end.
        let l = limit(7, 60, 7);
        let start = Bucket { milli: 0, frac: 0, last_ms: 0 };
        let mut stepwise = start;
        for now in 1..=60_000 {
            stepwise = stepwise.refill(&l, now);
        }
        let once = start.refill(&l, 60_000);
        assert_eq!(stepwise.milli, 7_000);
        assert_eq!(once.milli, 7_000);
        // Half way, stepwise and once agree to the milli-token.
        let mut s = start;
        for now in 1..=30_000 {
            s = s.refill(&l, now);
        }
        assert_eq!(s.milli, start.refill(&l, 30_000).milli);
        assert_eq!(s.milli, 3_500);
    }

    #[test]
    fn per_second_rates_refill_over_time() {
        // 2 per second: a token every 500 ms.
        let l = limit(2, 1, 2);
        let mut b = None;
        assert_eq!(burst(&l, &mut b, 10_000, 5), 2);
        assert_eq!(burst(&l, &mut b, 10_499, 5), 0);
        assert_eq!(burst(&l, &mut b, 10_500, 5), 1);
        assert_eq!(burst(&l, &mut b, 11_500, 5), 2);
        // A long idle period refills only up to the capacity.
        assert_eq!(burst(&l, &mut b, 100_000, 5), 2);
    }

    #[test]
    fn burst_larger_and_smaller_than_rate() {
        // 1000/min with burst 100: 100 at once, then one every 60 ms.
        let l = limit(1000, 60, 100);
        let mut b = None;
        assert_eq!(burst(&l, &mut b, 0, 150), 100);
        assert_eq!(burst(&l, &mut b, 600, 150), 10);
        // 1/min with burst 5.
        let l = limit(1, 60, 5);
        let mut b = None;
        assert_eq!(burst(&l, &mut b, 0, 10), 5);
        assert_eq!(burst(&l, &mut b, 59_999, 10), 0);
        assert_eq!(burst(&l, &mut b, 60_000, 10), 1);
    }

    #[test]
    fn clock_going_backwards_credits_nothing() {
        let l = limit(10, 1, 10);
        let b = Bucket { milli: 0, frac: 0, last_ms: 10_000 };
        assert_eq!(b.refill(&l, 5_000), b);
        assert_eq!(b.refill(&l, 10_100).milli, 1_000);
    }

    #[test]
    fn remaining_and_next_for_headers() {
        let l = limit(10, 60, 10);
        let (b, o) = take(&l, None, 0);
        assert_eq!(o.remaining, 9);
        assert_eq!(o.next_ms, Some(6_000));
        let p = peek(&l, b, 3_000);
        assert_eq!(p.remaining, 9);
        assert_eq!(p.next_ms, Some(3_000));
        assert_eq!(peek(&l, None, 0).next_ms, None);
        assert_eq!(peek(&l, None, 0).remaining, 10);
    }

    #[test]
    fn give_back_is_capped() {
        let l = limit(10, 60, 10);
        let (b, _) = take(&l, None, 0);
        let (back, o) = give_back(&l, b.unwrap(), 0);
        assert_eq!(back.milli, 10_000);
        assert_eq!(o.remaining, 10);
        assert_eq!(give_back(&l, back, 0).0.milli, 10_000);
        // Given back after some refill: refill first, then one token, capped.
        let mut b = None;
        let mut last = None;
        for _ in 0..10 {
            let (n, _) = take(&l, b, 0);
            b = n.or(b);
            last = n;
        }
        let (back, o) = give_back(&l, last.unwrap(), 3_000);
        assert_eq!(back.milli, 1_500);
        assert_eq!(o.remaining, 1);
    }

    #[test]
    fn stored_form_round_trips_and_ranks() {
        let l = limit(10, 60, 10);
        let b = Bucket { milli: 4_000, frac: 17, last_ms: 1_000 };
        let raw = b.encode(&l, 1_000);
        assert_eq!(raw.len(), STORED_LEN);
        assert_eq!(Bucket::decode(&raw), Some(b));
        // 6 tokens short at 6000 ms each (17/60000 of a milli-token already earned).
        assert_eq!(rank(&raw), 1_000 + 36_000);
        let full = Bucket::full(&l, 5_000).encode(&l, 5_000);
        assert_eq!(rank(&full), 5_000);
        assert_eq!(Bucket::decode(&[1, 2, 3]), None);
        assert_eq!(rank(&[1, 2, 3]), 0);
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let l = limit(1_000_000, 86_400, 1_000_000);
        let b = Bucket { milli: 0, frac: 0, last_ms: 0 };
        assert_eq!(b.refill(&l, u64::MAX).milli, 1_000_000_000);
        let (_, o) = take(&l, Some(Bucket { milli: 0, frac: 0, last_ms: u64::MAX - 1 }), u64::MAX);
        assert!(!o.allowed);
        assert!(o.next_ms.is_some());
    }
}
