//! The whole decision (extraction from headers, cookies and query, provider by `iss`, claims,
//! cache) over arbitrary tokens and headers never panics.
#![no_main]
use jwt_verify::cache::Cache;
use jwt_verify::config::{Config, Policy};
use jwt_verify::decide::{decide, Ctx};
use jwt_verify::remote::Remote;
use libfuzzer_sys::fuzz_target;
use shared::request::Headers;
use shared::slots::MemoryStore;
use std::sync::OnceLock;

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        let v: serde_json::Value = serde_json::from_str(include_str!("../../filters/jwt_verify/testdata/vectors.json")).expect("vectors");
        let cfg = serde_json::json!({
            "providers": {"main": {
                "issuer": "https://issuer.example", "audiences": ["orders-api"], "local_jwks": v["jwks"],
                "from_cookies": ["access_token"], "from_params": ["access_token"],
                "claim_to_headers": [{"claim": "sub", "header": "x-jwt-sub"}]
            }},
            "rules": [{"prefix": "/public/", "allow_missing": true}, {"prefix": "/", "requires": "main"}]
        });
        shared::config::parse_json::<Config>(cfg.to_string().as_bytes()).and_then(Config::compile).expect("fuzz policy compiles")
    })
}

fuzz_target!(|input: (&[u8], Vec<(String, Vec<u8>)>, u64)| {
    let (token, extra, now) = input;
    let p = policy();
    let mut pairs = vec![(":method".to_string(), b"GET".to_vec()), (":path".to_string(), b"/orders?access_token=x".to_vec())];
    let mut auth = b"Bearer ".to_vec();
    auth.extend_from_slice(token);
    pairs.push(("authorization".to_string(), auth));
    pairs.extend(extra.into_iter().take(8));
    let remotes: Vec<Remote> = p.remotes.iter().cloned().map(Remote::new).collect();
    let cache = p.cache.as_ref().map(|c| Cache::new(c.sets.min(4), c.ways));
    let store = MemoryStore::new();
    let cx = Ctx { policy: p, remotes: &remotes, cache: cache.as_ref().map(|c| (c, &store as &dyn shared::slots::SharedStore)), now_s: now, allow_wait: false };
    let _ = decide(&Headers::new(pairs.clone()), &cx);
    // Twice: the second run goes through the cache path.
    let _ = decide(&Headers::new(pairs), &cx);
});
