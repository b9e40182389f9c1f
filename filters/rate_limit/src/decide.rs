//! The decision: which buckets a request counts against ([`plan`]), and whether they allow
//! it ([`check`]), against any [`SharedStore`] (Envoy shared data, or memory in tests), with
//! the time passed in.
//!
//! A route limit applies in addition to the tier limit and both must allow. The two buckets
//! live under different shared-data keys, which cannot be updated in one atomic step, so:
//! 1. the route bucket is taken from first (compare-and-swap); if it is empty the request is
//!    limited and the tier bucket is only read, never consumed;
//! 2. then the tier bucket; if it is empty the request is limited and the token taken from
//!    the route bucket is given back (a second compare-and-swap).
//!
//! Neither limit ever lets through more than its own count, and a request refused by the
//! route limit takes nothing from the tier. The one imprecision: between the take of step 1
//! and the give-back of step 2 (a few microseconds), the route bucket holds one token fewer
//! than it will afterwards. A parallel request of the same client on the same route that
//! finds the route bucket empty in that window is refused, although after the give-back it
//! would have found one token. A give-back only happens while the tier limit refuses that
//! client, so such a request would in practice be refused by the tier limit too.

use crate::bucket::{self, Bucket, Outcome};
use crate::client::{client_ip, user_or_ip, ClientKey, IpSource};
use crate::headers::Item;
use crate::policy::{Limit, Policy, RouteKey};
use shared::identity::Identity;
use shared::pathmatch::{normalize, PathError};
use shared::request::Headers;
use shared::slots::{SharedStore, SlotTable, StoreError, Write};

/// What the filter reads about a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub headers: &'a Headers,
    pub identity: Option<&'a Identity>,
    /// `source.address` of the connection (`ip:port`).
    pub source: Option<&'a str>,
}

/// The buckets a request counts against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub tier: usize,
    pub client: ClientKey,
    /// Index of the first matching route and the key it counts by.
    pub route: Option<(usize, ClientKey)>,
    /// Where the client IP came from (whether or not a key uses it).
    pub ip_source: IpSource,
}

/// The tier of a caller: the configured tier named by `tier_claim` in the verified identity,
/// else `authenticated` for any identity, `anonymous` without one. A claim naming no
/// configured tier is ignored (the caller is `authenticated`).
pub fn tier_of(identity: Option<&Identity>, policy: &Policy) -> usize {
    let Some(id) = identity else {
        return policy.anonymous;
    };
    policy
        .tier_claim
        .as_deref()
        .and_then(|c| id.claim(c))
        .and_then(|v| v.as_str())
        .and_then(|name| policy.tier_index(name))
        .unwrap_or(policy.authenticated)
}

/// Classify a request. A path that cannot be normalized is refused: otherwise a route limit
/// could be dodged by spelling the path in a way the matcher and upstream read differently.
pub fn plan(req: &RequestView<'_>, policy: &Policy) -> Result<Plan, PathError> {
    let (ip, ip_source) = client_ip(req.source, req.headers, policy.trusted_proxy_hops, policy.ipv6_prefix_len, policy.trust_envoy_address);
    let client = user_or_ip(req.identity, &ip);
    let tier = tier_of(req.identity, policy);
    let route = if policy.routes.is_empty() {
        None
    } else {
        let path = normalize(req.headers.path())?;
        let method = req.headers.method();
        policy.routes.iter().position(|r| r.matcher.matches(&path, method)).map(|i| {
            let key = match policy.routes.get(i).map(|r| r.key) {
                Some(RouteKey::Ip) => ClientKey::Ip(ip.clone()),
                _ => client.clone(),
            };
            (i, key)
        })
    };
    Ok(Plan { tier, client, route, ip_source })
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violated {
    Tier(usize),
    Route(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every bucket had a token; `items` is the state after this request (tier first).
    Allow { items: Vec<Item> },
    /// Refused; `retry_after_s` is enough for every exhausted bucket to hold a token again.
    Limited { items: Vec<Item>, violated: Vec<Violated>, retry_after_s: u64 },
}

/// Shared-data key of a bucket: kind, policy name, client.
pub fn bucket_key(kind: &str, limit: &Limit, client: &ClientKey) -> String {
    format!("{kind}:{}:{}", limit.name, client.as_key())
}

fn take_in(table: &SlotTable, store: &dyn SharedStore, key: &str, limit: &Limit, now_ms: u64) -> Result<Outcome, StoreError> {
    table.update(
        store,
        key.as_bytes(),
        |cur| {
            let (next, outcome) = bucket::take(limit, cur.and_then(Bucket::decode), now_ms);
            match next {
                Some(b) => (Write::Put(b.encode(limit, now_ms)), outcome),
                None => (Write::Keep, outcome),
            }
        },
        bucket::rank,
    )
}

fn peek_in(table: &SlotTable, store: &dyn SharedStore, key: &str, limit: &Limit, now_ms: u64) -> Result<Outcome, StoreError> {
    let cur = table.get(store, key.as_bytes())?;
    Ok(bucket::peek(limit, cur.as_deref().and_then(Bucket::decode), now_ms))
}

fn give_back_in(table: &SlotTable, store: &dyn SharedStore, key: &str, limit: &Limit, now_ms: u64) -> Result<Option<Outcome>, StoreError> {
    table.update(
        store,
        key.as_bytes(),
        |cur| match cur.and_then(Bucket::decode) {
            Some(b) => {
                let (after, outcome) = bucket::give_back(limit, b, now_ms);
                (Write::Put(after.encode(limit, now_ms)), Some(outcome))
            }
            // Evicted meanwhile: a new bucket starts full, nothing to give back.
            None => (Write::Keep, None),
        },
        bucket::rank,
    )
}

fn retry_after(outcomes: &[&Outcome]) -> u64 {
    outcomes.iter().filter(|o| !o.allowed).filter_map(|o| o.next_s()).max().unwrap_or(1).max(1)
}

/// Count the request against its buckets at `now_ms`. A store error is returned as such (the
/// caller fails closed); nothing is half-applied except as described in the module docs.
pub fn check(plan: &Plan, policy: &Policy, store: &dyn SharedStore, now_ms: u64) -> Result<Verdict, StoreError> {
    let table = &policy.table;
    let Some(tier) = policy.tier(plan.tier) else {
        return Err(StoreError::Unavailable);
    };
    let tier_key = bucket_key("t", tier, &plan.client);
    let route = plan.route.as_ref().and_then(|(i, k)| policy.routes.get(*i).map(|r| (*i, &r.limit, bucket_key("r", &r.limit, k))));

    let Some((ri, rlimit, route_key)) = route else {
        let t = take_in(table, store, &tier_key, tier, now_ms)?;
        let items = vec![Item::from_outcome(tier, &t)];
        return Ok(if t.allowed {
            Verdict::Allow { items }
        } else {
            Verdict::Limited { items, violated: vec![Violated::Tier(plan.tier)], retry_after_s: retry_after(&[&t]) }
        });
    };

    let r = take_in(table, store, &route_key, rlimit, now_ms)?;
    if !r.allowed {
        // Report the tier too, without consuming from it.
        let mut items = Vec::with_capacity(2);
        let mut violated = Vec::with_capacity(2);
        let mut outcomes = vec![&r];
        let t = peek_in(table, store, &tier_key, tier, now_ms).ok();
        if let Some(t) = &t {
            items.push(Item::from_outcome(tier, t));
            if !t.allowed {
                violated.push(Violated::Tier(plan.tier));
                outcomes.push(t);
            }
        }
        items.push(Item::from_outcome(rlimit, &r));
        violated.push(Violated::Route(ri));
        return Ok(Verdict::Limited { items, violated, retry_after_s: retry_after(&outcomes) });
    }

    let t = match take_in(table, store, &tier_key, tier, now_ms) {
        Ok(t) => t,
        Err(e) => {
            let _ = give_back_in(table, store, &route_key, rlimit, now_ms);
            return Err(e);
        }
    };
    if !t.allowed {
        let r_after = give_back_in(table, store, &route_key, rlimit, now_ms).ok().flatten().unwrap_or(r);
        let items = vec![Item::from_outcome(tier, &t), Item::from_outcome(rlimit, &r_after)];
        return Ok(Verdict::Limited { items, violated: vec![Violated::Tier(plan.tier)], retry_after_s: retry_after(&[&t]) });
    }
    Ok(Verdict::Allow { items: vec![Item::from_outcome(tier, &t), Item::from_outcome(rlimit, &r)] })
}

/// Create every set of the bucket table before traffic (see [`SlotTable::prepare`]).
pub fn prepare_table(store: &dyn SharedStore, prefix: &str, sets: u32) -> Result<u32, StoreError> {
    SlotTable::new(prefix, sets, 1).prepare(store)
}
