//! The decision on the host: tiers, keys, route limits, both-must-allow, headers, eviction,
//! exactness under parallel workers, and bounded memory for a million clients.

#![allow(clippy::unwrap_used)]

mod common;

use common::{policy, req, user};
use rate_limit::decide::{check, plan, prepare_table, Plan, RequestView, Verdict, Violated};
use rate_limit::policy::Policy;
use rate_limit::rls;
use serde_json::json;
use shared::identity::Identity;
use shared::request::Headers;
use shared::slots::{MemoryStore, SharedStore, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Envoy's shared data as proxy-wasm-cpp-host implements it: CAS token 0 means "no check".
type Entries = HashMap<String, (Vec<u8>, u32)>;

#[derive(Default)]
struct EnvoyStore {
    /// Entries and the last CAS token handed out.
    map: Mutex<(Entries, u32)>,
}

impl SharedStore for EnvoyStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Ok(self.map.lock().unwrap().0.get(key).cloned())
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let mut g = self.map.lock().unwrap();
        let (map, next) = &mut *g;
        let cas = cas.unwrap_or(0);
        if let Some((_, current)) = map.get(key) {
            if cas != 0 && cas != *current {
                return Err(StoreError::CasMismatch);
            }
        }
        *next += 1;
        let token = *next;
        map.insert(key.to_string(), (value.to_vec(), token));
        Ok(())
    }
}

fn view<'a>(h: &'a Headers, id: Option<&'a Identity>, src: &'a str) -> RequestView<'a> {
    RequestView { headers: h, identity: id, source: Some(src) }
}

fn decide(p: &Policy, s: &dyn SharedStore, h: &Headers, id: Option<&Identity>, src: &str, now: u64) -> Verdict {
    let pl = plan(&view(h, id, src), p).unwrap();
    check(&pl, p, s, now).unwrap()
}

/// Send `n` identical requests at `now`; count the allowed ones.
fn allowed(p: &Policy, s: &dyn SharedStore, h: &Headers, id: Option<&Identity>, src: &str, now: u64, n: usize) -> usize {
    (0..n).filter(|_| matches!(decide(p, s, h, id, src, now), Verdict::Allow { .. })).count()
}

fn store(p: &Policy) -> MemoryStore {
    let s = MemoryStore::new();
    prepare_table(&s, &p.table_prefix, p.table_sets).unwrap();
    s
}

fn small_table(mut cfg: serde_json::Value) -> Policy {
    if let Some(o) = cfg.as_object_mut() {
        o.insert("table".into(), json!({"sets": 64, "ways": 8}));
    }
    policy(cfg)
}

#[test]
fn anonymous_callers_are_limited_per_ip() {
    let p = small_table(json!({}));
    let s = store(&p);
    let get = req("GET", "/items", &[]);
    assert_eq!(allowed(&p, &s, &get, None, "198.51.100.1:1000", 0, 15), 10);
    // Another port of the same IP is the same client; another IP is not.
    assert_eq!(allowed(&p, &s, &get, None, "198.51.100.1:2000", 0, 5), 0);
    assert_eq!(allowed(&p, &s, &get, None, "198.51.100.2:1000", 0, 15), 10);
}

#[test]
fn limited_verdict_has_exact_retry_after_and_headers() {
    let p = small_table(json!({}));
    let s = store(&p);
    let get = req("GET", "/", &[]);
    for i in 0..10u64 {
        match decide(&p, &s, &get, None, "10.0.0.1:1", 0) {
            Verdict::Allow { items } => {
                assert_eq!(items.len(), 1);
                assert_eq!(items[0].name, "anonymous");
                assert_eq!(items[0].remaining, 9 - i);
                assert_eq!(items[0].reset_s, Some(6));
            }
            v => panic!("{v:?}"),
        }
    }
    // 10 per minute: the next token comes 6000 ms after the burst, 1500 ms later 4.5 s remain.
    match decide(&p, &s, &get, None, "10.0.0.1:1", 1_500) {
        Verdict::Limited { items, violated, retry_after_s } => {
            assert_eq!(retry_after_s, 5);
            assert_eq!(violated, vec![Violated::Tier(p.anonymous)]);
            assert_eq!(items[0].remaining, 0);
            assert_eq!(items[0].reset_s, Some(5));
        }
        v => panic!("{v:?}"),
    }
    assert!(matches!(decide(&p, &s, &get, None, "10.0.0.1:1", 5_999), Verdict::Limited { retry_after_s: 1, .. }));
    assert!(matches!(decide(&p, &s, &get, None, "10.0.0.1:1", 6_000), Verdict::Allow { .. }));
}

#[test]
fn tiers_come_from_the_verified_identity() {
    let p = small_table(json!({}));
    let s = store(&p);
    let get = req("GET", "/", &[]);
    let plain = user("alice", None);
    let premium = user("bob", Some("premium"));
    let bogus = user("carol", Some("platinum"));
    let anon = user("dave", Some("anonymous"));
    assert_eq!(allowed(&p, &s, &get, Some(&plain), "10.0.0.1:1", 0, 150), 100);
    // premium: burst 100 at once, then 1000/min = one every 60 ms.
    assert_eq!(allowed(&p, &s, &get, Some(&premium), "10.0.0.1:1", 0, 150), 100);
    assert_eq!(allowed(&p, &s, &get, Some(&premium), "10.0.0.1:1", 600, 150), 10);
    // A claim naming no tier is ignored: authenticated.
    assert_eq!(allowed(&p, &s, &get, Some(&bogus), "10.0.0.1:1", 0, 150), 100);
    // A claim may name the anonymous tier (still keyed by the user).
    assert_eq!(allowed(&p, &s, &get, Some(&anon), "10.0.0.1:1", 0, 150), 10);
    // With tier_claim disabled every identity is authenticated.
    let p2 = small_table(json!({"tier_claim": null}));
    let s2 = store(&p2);
    assert_eq!(allowed(&p2, &s2, &get, Some(&premium), "10.0.0.1:1", 0, 150), 100);
    match decide(&p2, &s2, &get, Some(&premium), "10.0.0.1:1", 0) {
        Verdict::Limited { items, .. } => assert_eq!(items[0].name, "authenticated"),
        v => panic!("{v:?}"),
    }
}

#[test]
fn users_are_keyed_by_subject_not_address() {
    let p = small_table(json!({"tiers": {"anonymous": {"requests": 2, "per": "minute"}, "authenticated": {"requests": 3, "per": "minute"}}}));
    let s = store(&p);
    let get = req("GET", "/", &[]);
    let a = user("alice", None);
    let b = user("bob", None);
    // Same user from two addresses shares one bucket.
    assert_eq!(allowed(&p, &s, &get, Some(&a), "10.0.0.1:1", 0, 2), 2);
    assert_eq!(allowed(&p, &s, &get, Some(&a), "10.0.0.2:1", 0, 5), 1);
    // Another user on the same address has its own; anonymous callers there too.
    assert_eq!(allowed(&p, &s, &get, Some(&b), "10.0.0.1:1", 0, 5), 3);
    assert_eq!(allowed(&p, &s, &get, None, "10.0.0.1:1", 0, 5), 2);
    // The same subject from another provider is another user.
    let mut other = a.clone();
    other.provider = "partner".into();
    assert_eq!(allowed(&p, &s, &get, Some(&other), "10.0.0.1:1", 0, 5), 3);
}

#[test]
fn route_limits_apply_in_addition_to_tiers() {
    let p = small_table(common::issue_config());
    let s = store(&p);
    let register = req("POST", "/auth/register", &[]);
    // 5/min on the route, anonymous tier 10/min.
    for i in 0..5 {
        match decide(&p, &s, &register, None, "10.0.0.1:1", 0) {
            Verdict::Allow { items } => {
                assert_eq!(items.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["anonymous", "route1"]);
                assert_eq!(items[1].remaining, 4 - i);
            }
            v => panic!("{v:?}"),
        }
    }
    match decide(&p, &s, &register, None, "10.0.0.1:1", 0) {
        Verdict::Limited { violated, retry_after_s, items } => {
            assert_eq!(violated, vec![Violated::Route(1)]);
            assert_eq!(retry_after_s, 12);
            // The tier is reported but was not consumed by the refused request.
            assert_eq!(items[0].name, "anonymous");
            assert_eq!(items[0].remaining, 5);
        }
        v => panic!("{v:?}"),
    }
    // Other paths and methods only count against the tier: 5 left of 10.
    assert_eq!(allowed(&p, &s, &req("GET", "/auth/register", &[]), None, "10.0.0.1:1", 0, 10), 5);
}

#[test]
fn a_refusing_route_consumes_nothing_from_the_tier() {
    let p = small_table(json!({"routes": [{"name": "login", "path": "/auth/login", "requests": 2, "per": "minute"}]}));
    let s = store(&p);
    let login = req("POST", "/auth/login", &[]);
    assert_eq!(allowed(&p, &s, &login, None, "10.0.0.1:1", 0, 50), 2);
    // 48 refusals by the route took nothing from the tier: 8 of 10 left.
    assert_eq!(allowed(&p, &s, &req("GET", "/", &[]), None, "10.0.0.1:1", 0, 50), 8);
}

#[test]
fn a_refusing_tier_gives_the_route_token_back() {
    let p = small_table(json!({
        "tiers": {"anonymous": {"requests": 3, "per": "minute"}, "authenticated": {"requests": 100, "per": "minute"}},
        "routes": [{"name": "orders", "path": "/orders", "methods": ["POST"], "requests": 10, "per": "minute"}]
    }));
    let s = store(&p);
    let post = req("POST", "/orders", &[]);
    assert_eq!(allowed(&p, &s, &post, None, "10.0.0.1:1", 0, 3), 3);
    match decide(&p, &s, &post, None, "10.0.0.1:1", 0) {
        Verdict::Limited { violated, items, retry_after_s } => {
            assert_eq!(violated, vec![Violated::Tier(p.anonymous)]);
            assert_eq!(retry_after_s, 20);
            // The route bucket holds 7: the token taken for this request came back.
            assert_eq!(items[1].name, "orders");
            assert_eq!(items[1].remaining, 7);
        }
        v => panic!("{v:?}"),
    }
    for _ in 0..20 {
        assert!(matches!(decide(&p, &s, &post, None, "10.0.0.1:1", 0), Verdict::Limited { .. }));
    }
    // After the tier refills, the route still has its 7.
    let later = 60_000;
    let p_route_left = match decide(&p, &s, &post, None, "10.0.0.1:1", later) {
        Verdict::Allow { items } => items[1].remaining,
        v => panic!("{v:?}"),
    };
    // 7 left at time 0, plus a full minute of refill, capped at 10, minus this request.
    assert_eq!(p_route_left, 9);
}

#[test]
fn route_key_ip_counts_all_users_of_an_address_together() {
    let p = small_table(common::issue_config());
    let s = store(&p);
    let login = req("POST", "/auth/login", &[]);
    let users: Vec<Identity> = (0..20).map(|i| user(&format!("u{i}"), None)).collect();
    // /auth/login is 10/min by IP: 20 users behind one address get 10 in total.
    let ok = users.iter().filter(|u| matches!(decide(&p, &s, &login, Some(u), "10.0.0.9:1", 0), Verdict::Allow { .. })).count();
    assert_eq!(ok, 10);
    // /orders is 50/min by user: each user has its own.
    let orders = req("POST", "/orders", &[]);
    for u in &users[..3] {
        assert_eq!(allowed(&p, &s, &orders, Some(u), "10.0.0.9:1", 0, 60), 50);
    }
}

#[test]
fn forwarded_for_cannot_choose_the_key() {
    let get = |xff: &str| req("GET", "/", &[("x-forwarded-for", xff)]);
    // No trusted proxies: the header is ignored, the connection decides.
    let p = small_table(json!({}));
    let s = store(&p);
    let ok: usize = (0..30).map(|i| allowed(&p, &s, &get(&format!("203.0.113.{i}")), None, "10.0.0.1:1", 0, 1)).sum();
    assert_eq!(ok, 10);
    // Envoy with use_remote_address: false reports the client's own x-forwarded-for entry as
    // the source (port 0): every such request shares one "unverified" bucket.
    let s = store(&p);
    let ok: usize = (0..30).map(|i| allowed(&p, &s, &get(&format!("203.0.113.{i}")), None, &format!("203.0.113.{i}:0"), 0, 1)).sum();
    assert_eq!(ok, 10);
    let pl = plan(&view(&get("203.0.113.1"), None, "203.0.113.1:0"), &p).unwrap();
    assert_eq!(pl.ip_source, rate_limit::client::IpSource::Unverified);
    // Unless the operator says Envoy derives it from trusted proxies only.
    let p2 = small_table(json!({"trust_envoy_address": true}));
    let s2 = store(&p2);
    let ok: usize = (0..30).map(|i| allowed(&p2, &s2, &get(&format!("203.0.113.{i}")), None, &format!("203.0.113.{i}:0"), 0, 1)).sum();
    assert_eq!(ok, 30);
    // One trusted proxy, Envoy with use_remote_address: false: the proxy's entry is the
    // rightmost, and Envoy reports it as the source with port 0.
    let p = small_table(json!({"trusted_proxy_hops": 1}));
    let s = store(&p);
    let ok: usize = (0..30).map(|i| allowed(&p, &s, &get(&format!("203.0.113.{i}, 198.51.100.7")), None, "198.51.100.7:0", 0, 1)).sum();
    assert_eq!(ok, 10);
    // Same with use_remote_address: true: Envoy appended the proxy's address (the peer).
    let ok: usize = (0..30).map(|i| allowed(&p, &s, &get(&format!("203.0.113.{i}, 198.51.100.8, 10.0.0.1")), None, "10.0.0.1:1", 0, 1)).sum();
    assert_eq!(ok, 10);
    // Two clients behind the proxy are two keys.
    assert_eq!(allowed(&p, &s, &get("198.51.100.9"), None, "198.51.100.9:0", 0, 20), 10);
    // A request without the header (not through the proxy) is keyed by its peer.
    assert_eq!(allowed(&p, &s, &req("GET", "/", &[]), None, "10.0.0.1:1", 0, 20), 10);
    assert_eq!(allowed(&p, &s, &req("GET", "/", &[]), None, "10.0.0.2:1", 0, 20), 10);
}

#[test]
fn unnormalizable_paths_are_refused_when_routes_exist() {
    let p = small_table(common::issue_config());
    let h = req("POST", "/auth/x/../register", &[]);
    assert_eq!(plan(&view(&h, None, "10.0.0.1:1"), &p).unwrap_err().code(), "path_dot_segment");
    // Equivalent spellings match the route.
    let s = store(&p);
    let spellings = ["/auth/register", "//auth//register", "/auth/%72egister", "/auth/register?x=1"];
    let ok: usize = spellings.iter().map(|sp| allowed(&p, &s, &req("POST", sp, &[]), None, "10.0.0.1:1", 0, 2)).sum();
    assert_eq!(ok, 5);
    // Without routes the path is not looked at.
    let p2 = small_table(json!({}));
    assert!(plan(&view(&h, None, "10.0.0.1:1"), &p2).is_ok());
}

#[test]
fn refill_over_time_with_short_windows() {
    let p = small_table(json!({"tiers": {"anonymous": {"requests": 2, "per": "second"}, "authenticated": {"requests": 5, "per": "second"}}}));
    let s = store(&p);
    let get = req("GET", "/", &[]);
    let t0 = 1_700_000_000_000;
    assert_eq!(allowed(&p, &s, &get, None, "10.0.0.1:1", t0, 5), 2);
    assert_eq!(allowed(&p, &s, &get, None, "10.0.0.1:1", t0 + 499, 5), 0);
    assert_eq!(allowed(&p, &s, &get, None, "10.0.0.1:1", t0 + 500, 5), 1);
    assert_eq!(allowed(&p, &s, &get, None, "10.0.0.1:1", t0 + 1_500, 5), 2);
    // Idle for an hour: back to the burst, not more.
    assert_eq!(allowed(&p, &s, &get, None, "10.0.0.1:1", t0 + 3_600_000, 5), 2);
}

#[test]
fn flood_of_new_keys_cannot_evict_a_drained_bucket() {
    // One set of 4 buckets: every client competes for the same 4 places.
    let p = policy(json!({"table": {"sets": 1, "ways": 4}}));
    let s = store(&p);
    let get = req("GET", "/", &[]);
    assert_eq!(allowed(&p, &s, &get, None, "10.0.0.1:1", 0, 10), 10);
    // 10,000 new addresses, one request each, while the victim's bucket is still empty.
    for i in 0..10_000u32 {
        let ip = format!("100.{}.{}.{}:1", i >> 16, (i >> 8) & 255, i & 255);
        assert!(matches!(decide(&p, &s, &get, None, &ip, 1_000), Verdict::Allow { .. }));
    }
    // The drained bucket survived: still limited (a reset bucket would allow 10).
    assert_eq!(allowed(&p, &s, &get, None, "10.0.0.1:1", 2_000, 10), 0);
    // A client whose bucket is full again is the cheapest to evict, and evicting it is free.
    assert_eq!(allowed(&p, &s, &get, None, "10.0.0.1:1", 60_000, 1), 1);
    assert_eq!(s.keys(), 1);
}

#[test]
fn evicted_bucket_starts_full_when_the_table_is_too_small() {
    // The trade-off, pinned: when more clients drain their buckets at once than the set
    // holds, the one closest to full is evicted and that client gets a fresh bucket.
    let p = policy(json!({"table": {"sets": 1, "ways": 2}}));
    let s = store(&p);
    let get = req("GET", "/", &[]);
    assert_eq!(allowed(&p, &s, &get, None, "10.0.0.1:1", 0, 10), 10); // full_at 60 s
    assert_eq!(allowed(&p, &s, &get, None, "10.0.0.2:1", 0, 5), 5); // full_at 30 s
    assert_eq!(allowed(&p, &s, &get, None, "10.0.0.3:1", 0, 10), 10); // evicts .2 (closest to full)
    assert_eq!(allowed(&p, &s, &get, None, "10.0.0.1:1", 0, 1), 0);
    assert_eq!(allowed(&p, &s, &get, None, "10.0.0.2:1", 0, 10), 10);
}

#[test]
fn exact_across_parallel_workers() {
    // 8 threads stand in for Envoy workers sharing one store with Envoy's CAS semantics
    // (token 0 = unconditional); the table is prepared as on_configure does.
    let p = Arc::new(policy(json!({"tiers": {"anonymous": {"requests": 100, "per": "hour"}, "authenticated": {"requests": 100, "per": "hour"}}, "table": {"sets": 4, "ways": 8}})));
    let s = Arc::new(EnvoyStore::default());
    prepare_table(&*s, &p.table_prefix, p.table_sets).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let p = p.clone();
            let s = s.clone();
            std::thread::spawn(move || {
                let get = req("GET", "/", &[]);
                let mut ok = 0;
                let mut limited = 0;
                let mut errors = 0;
                for _ in 0..100 {
                    let pl = plan(&view(&get, None, "10.0.0.1:1"), &p).unwrap();
                    match check(&pl, &p, &*s, 0) {
                        Ok(Verdict::Allow { .. }) => ok += 1,
                        Ok(Verdict::Limited { .. }) => limited += 1,
                        Err(_) => errors += 1,
                    }
                }
                (ok, limited, errors)
            })
        })
        .collect();
    let (mut ok, mut limited, mut errors) = (0, 0, 0);
    for t in threads {
        let (a, b, c) = t.join().unwrap();
        ok += a;
        limited += b;
        errors += c;
    }
    assert_eq!(ok + limited + errors, 800);
    assert_eq!(ok, 100, "limited {limited}, contention errors {errors}");
}

#[test]
fn without_prepare_the_first_write_race_is_real() {
    // Documents why prepare_table exists: with Envoy's semantics two first writes to a
    // missing set both succeed, and one update is lost.
    let s = EnvoyStore::default();
    assert_eq!(s.get("k").unwrap(), None);
    s.set("k", b"a", Some(0)).unwrap();
    s.set("k", b"b", Some(0)).unwrap();
    assert_eq!(s.get("k").unwrap().unwrap().0, b"b");
    // After prepare, a stale token is refused.
    let p = policy(json!({"table": {"sets": 2, "ways": 2}}));
    assert_eq!(prepare_table(&s, &p.table_prefix, 2).unwrap(), 2);
    assert_eq!(prepare_table(&s, &p.table_prefix, 2).unwrap(), 0);
    let (_, cas) = s.get(&format!("{}.0", p.table_prefix)).unwrap().unwrap();
    s.set(&format!("{}.0", p.table_prefix), b"x", Some(cas)).unwrap();
    assert_eq!(s.set(&format!("{}.0", p.table_prefix), b"y", Some(cas)), Err(StoreError::CasMismatch));
}

#[test]
fn store_failure_is_an_error_not_an_allow() {
    struct Down;
    impl SharedStore for Down {
        fn get(&self, _: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
            Err(StoreError::Unavailable)
        }
        fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), StoreError> {
            Err(StoreError::Unavailable)
        }
    }
    let p = small_table(common::issue_config());
    for path in ["/", "/auth/login"] {
        let h = req("POST", path, &[]);
        let pl = plan(&view(&h, None, "10.0.0.1:1"), &p).unwrap();
        assert_eq!(check(&pl, &p, &Down, 0), Err(StoreError::Unavailable));
    }
}

#[test]
fn million_distinct_clients_fit_in_the_fixed_table() {
    let p = policy(json!({}));
    let s = store(&p);
    let get = req("GET", "/", &[]);
    let n = 1_000_000u32;
    for i in 0..n {
        let ip = format!("{}.{}.{}.{}:1", 10 + (i >> 24), (i >> 16) & 255, (i >> 8) & 255, i & 255);
        let pl = plan(&view(&get, None, &ip), &p).unwrap();
        assert!(matches!(check(&pl, &p, &s, u64::from(i)), Ok(Verdict::Allow { .. })));
    }
    let entry = 16 + 2 + rate_limit::bucket::STORED_LEN;
    let bound = p.table_sets as usize * (p.table_ways * entry + "rate_limit.default.8192x8.8191".len());
    println!("1,000,000 clients: {} shared-data keys, {} bytes (bound {bound})", s.keys(), s.bytes());
    assert_eq!(s.keys(), 8192);
    assert!(s.bytes() <= bound, "{} > {bound}", s.bytes());
    // Every set is full: the table holds exactly its capacity.
    assert_eq!(s.bytes() - (0..8192).map(|n| format!("rate_limit.default.8192x8.{n}").len()).sum::<usize>(), 8192 * 8 * entry);
}

#[test]
fn descriptors_for_the_global_service() {
    let p = small_table(common::issue_config());
    let login = req("POST", "/orders", &[]);
    let u = user("alice", Some("premium"));
    let pl: Plan = plan(&view(&login, Some(&u), "10.0.0.1:1"), &p).unwrap();
    let d = rls::descriptors(&pl, &p);
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].0, "premium");
    assert_eq!(d[0].1, vec![("tier".to_string(), "premium".to_string()), ("key".to_string(), "user:main:alice".to_string())]);
    assert_eq!(d[1].1, vec![("route".to_string(), "route2".to_string()), ("key".to_string(), "user:main:alice".to_string())]);
    let anon = plan(&view(&req("POST", "/auth/login", &[]), None, "10.0.0.1:1"), &p).unwrap();
    let d = rls::descriptors(&anon, &p);
    assert_eq!(d[0].1[1].1, "ip:10.0.0.1");
    assert_eq!(d[1].1[0].1, "route0");
}
