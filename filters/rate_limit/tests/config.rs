//! Configuration: the issue's contract parses as written, defaults are the documented ones,
//! and every mistake is reported with its JSON path, all at once.

mod common;

use common::{compile, issue_config, policy};
use rate_limit::policy::{AllowedHeaders, RouteKey};
use serde_json::json;

#[test]
fn issue_config_compiles_verbatim() {
    let p = policy(issue_config());
    let names: Vec<&str> = p.tiers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["anonymous", "authenticated", "premium"]);
    let premium = &p.tiers[p.tier_index("premium").unwrap()];
    assert_eq!((premium.requests, premium.window_s, premium.burst), (1000, 60, 100));
    let anon = &p.tiers[p.anonymous];
    assert_eq!((anon.requests, anon.window_s, anon.burst), (10, 60, 10));
    assert_eq!(p.routes.len(), 3);
    assert_eq!(p.routes[0].limit.name, "route0");
    assert_eq!(p.routes[0].key, RouteKey::Ip);
    assert_eq!(p.routes[2].key, RouteKey::User);
    assert!(p.routes[1].matcher.matches("/auth/register", b"POST"));
    assert!(!p.routes[1].matcher.matches("/auth/register", b"GET"));
    let g = p.global.as_ref().unwrap();
    assert_eq!((g.cluster.as_str(), g.domain.as_str(), g.timeout_ms, g.failure_mode_deny), ("ratelimit", "edge", 50, false));
    assert_eq!(p.tier_claim.as_deref(), Some("tier"));
}

#[test]
fn empty_config_is_the_documented_defaults() {
    let p = policy(json!({}));
    assert_eq!(p.tiers.len(), 3);
    assert_eq!(p.tiers[p.anonymous].requests, 10);
    assert_eq!(p.tiers[p.authenticated].requests, 100);
    assert_eq!(p.tier_claim.as_deref(), Some("tier"));
    assert_eq!(p.trusted_proxy_hops, 0);
    assert_eq!(p.ipv6_prefix_len, 64);
    assert!(p.routes.is_empty());
    assert!(p.global.is_none());
    assert_eq!(p.allowed_headers, AllowedHeaders::RateLimit);
    assert_eq!((p.table_sets, p.table_ways), (8192, 8));
    assert_eq!(p.table.capacity(), 65_536);
    // Also through the empty plugin configuration Envoy passes when none is set.
    assert!(shared::config::parse_json::<rate_limit::config::Config>(b"").and_then(rate_limit::config::Config::compile).is_ok());
}

#[test]
fn tier_claim_null_disables_tiers_by_claim() {
    let p = policy(json!({"tier_claim": null}));
    assert_eq!(p.tier_claim, None);
}

#[test]
fn unknown_fields_are_refused_everywhere() {
    for (cfg, path) in [
        (json!({"tier": "x"}), "tier"),
        (json!({"tiers": {"anonymous": {"requests": 1, "per": "minute", "brust": 2}}}), "tiers.anonymous.brust"),
        (json!({"routes": [{"path": "/a", "requests": 1, "per": "second", "keys": "ip"}]}), "routes[0].keys"),
        (json!({"global": {"cluster": "c", "domain": "d", "timeout": 5}}), "global.timeout"),
        (json!({"table": {"sets": 1, "slots": 2}}), "table.slots"),
    ] {
        let e = compile(&cfg).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(e.0[0].path, path, "{e}");
        assert!(e.0[0].message.contains("unknown field"), "{e}");
    }
}

#[test]
fn wrong_enums_are_named() {
    let e = compile(&json!({"tiers": {"anonymous": {"requests": 1, "per": "week"}}})).unwrap_err();
    assert_eq!(e.0[0].path, "tiers.anonymous.per");
    let e = compile(&json!({"routes": [{"path": "/a", "requests": 1, "per": "second", "key": "header"}]})).unwrap_err();
    assert_eq!(e.0[0].path, "routes[0].key");
    let e = compile(&json!({"allowed_response_headers": "some"})).unwrap_err();
    assert_eq!(e.0[0].path, "allowed_response_headers");
}

#[test]
fn every_error_is_reported_at_once() {
    let cfg = json!({
        "tiers": {
            "Gold": {"requests": 0, "per": "minute"},
            "premium": {"requests": 10, "per": "minute", "burst": 2000000}
        },
        "tier_claim": "",
        "trusted_proxy_hops": 17,
        "ipv6_prefix_len": 8,
        "routes": [
            {"path": "auth/login", "requests": 1, "per": "minute"},
            {"path": "/a", "prefix": "/b", "requests": 1, "per": "minute"},
            {"name": "premium", "path": "/c", "requests": 1, "per": "minute"},
            {"name": "Bad Name", "path": "/d", "methods": ["get"], "requests": 1, "per": "minute"},
            {"name": "orders", "prefix": "/orders", "requests": 1, "per": "minute"},
            {"name": "orders", "path": "/orders/{id}", "requests": 2000000, "per": "minute"}
        ],
        "global": {"cluster": "", "domain": "", "timeout_ms": 0},
        "table": {"sets": 0, "ways": 33}
    });
    let e = compile(&cfg).unwrap_err();
    for path in [
        "tiers.Gold",
        "tiers.Gold.requests",
        "tiers.premium.burst",
        "tiers",
        "tier_claim",
        "trusted_proxy_hops",
        "ipv6_prefix_len",
        "routes[0].path",
        "routes[1]",
        "routes[2].name",
        "routes[3].name",
        "routes[3].methods[0]",
        "routes[5].name",
        "routes[5].requests",
        "global.cluster",
        "global.domain",
        "global.timeout_ms",
        "table.sets",
        "table.ways",
    ] {
        assert!(e.has(path), "missing error at {path}: {e}");
    }
    // Both required tiers are named.
    let tiers: Vec<_> = e.0.iter().filter(|x| x.path == "tiers").collect();
    assert_eq!(tiers.len(), 2, "{e}");
}

#[test]
fn shadowed_route_is_refused() {
    let e = compile(&json!({"routes": [
        {"prefix": "/auth/", "requests": 5, "per": "minute"},
        {"path": "/auth/login", "methods": ["POST"], "requests": 10, "per": "minute"}
    ]}))
    .unwrap_err();
    assert!(e.has("routes[1]"), "{e}");
    assert!(e.to_string().contains("route0"), "{e}");
}

#[test]
fn route_names_default_and_must_be_unique() {
    let p = policy(json!({"routes": [
        {"name": "login", "path": "/auth/login", "requests": 5, "per": "minute"},
        {"path": "/auth/register", "requests": 5, "per": "minute"}
    ]}));
    assert_eq!(p.routes[0].limit.name, "login");
    assert_eq!(p.routes[1].limit.name, "route1");
    let e = compile(&json!({"routes": [
        {"path": "/x", "requests": 5, "per": "minute"},
        {"name": "route0", "path": "/y", "requests": 5, "per": "minute"}
    ]}))
    .unwrap_err();
    assert!(e.has("routes[1].name"), "{e}");
}

#[test]
fn table_name_and_geometry_are_in_the_key_prefix() {
    let p = policy(json!({"table": {"sets": 16, "ways": 4}}));
    assert_eq!(p.table_prefix, "rate_limit.default.16x4");
    assert_eq!(p.table.capacity(), 64);
    let p = policy(json!({"table": {"name": "per_ip"}}));
    assert!(p.table_prefix.starts_with("rate_limit.per_ip."));
    let e = compile(&json!({"table": {"name": "Bad Name"}})).unwrap_err();
    assert!(e.has("table.name"), "{e}");
}
