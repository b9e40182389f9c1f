//! Micro-benchmark of the verification path, per algorithm, with PyJWT's vectors
//! (`testdata/vectors.json`). Run natively or as WebAssembly under Node's V8 (the engine
//! Envoy embeds), which is the figure that matters:
//!
//! ```text
//! cargo run --release -p jwt_verify --example bench
//! CARGO_TARGET_WASM32_WASIP1_RUNNER=scripts/wasi-run \
//!   cargo run --release -p jwt_verify --example bench --target wasm32-wasip1
//! ```
//!
//! Prints microseconds per operation: signature check only, the whole decision without a
//! cache (parse, claims, signature, identity), and the decision on a cache hit (in-memory
//! store standing in for Envoy shared data).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use jwt_verify::cache::Cache;
use jwt_verify::config::{Config, Policy};
use jwt_verify::decide::{decide, Ctx, Decision};
use jwt_verify::jwk::{parse_jwks, KeySet};
use jwt_verify::token;
use jwt_verify::verify::verify_signature;
use serde_json::{json, Value};
use shared::request::Headers;
use shared::slots::{MemoryStore, SharedStore};
use std::hint::black_box;
use std::time::Instant;

const NOW: u64 = 1_700_000_100;

fn per_op(iters: u32, mut f: impl FnMut()) -> f64 {
    f(); // warm up (JIT tiers, lazy tables)
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(iters)
}

fn policy(jwks: &Value, cache: bool) -> Policy {
    let cfg = json!({"providers": {"main": {"issuer": "https://issuer.example", "local_jwks": jwks}}, "cache": {"enabled": cache}});
    Config::compile(serde_json::from_value(cfg).unwrap()).unwrap()
}

fn main() {
    let v: Value = serde_json::from_str(include_str!("../testdata/vectors.json")).unwrap();
    let jwks = v["jwks"].clone();
    let (keys, _): (KeySet, _) = parse_jwks(&jwks, true).unwrap();
    let no_cache = policy(&jwks, false);
    let with_cache = policy(&jwks, true);
    let store = MemoryStore::new();
    let cache = Cache::new(2048, 2);
    let target = if cfg!(target_arch = "wasm32") { "wasm32 (V8)" } else { "native" };
    println!("jwt_verify bench, {target}: microseconds per operation");
    println!("{:<8} {:>12} {:>14} {:>12}", "alg", "signature", "decide(miss)", "decide(hit)");
    let algs = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256", "HS384", "HS512"];
    for alg in algs {
        let t = v["tokens"][alg].as_str().unwrap().to_string();
        let parsed = token::parse(t.as_bytes(), 16384).unwrap();
        let iters = if alg.starts_with("HS") { 20_000 } else { 300 };
        let sig = per_op(iters, || {
            black_box(verify_signature(black_box(&parsed), &keys)).unwrap();
        });
        let headers = Headers::from_pairs([(":method", "GET"), (":path", "/orders"), ("authorization", &format!("Bearer {t}"))]);
        let miss_cx = Ctx { policy: &no_cache, remotes: &[], cache: None, now_s: NOW, allow_wait: true };
        let miss = per_op(iters, || {
            assert!(matches!(decide(black_box(&headers), &miss_cx).decision, Decision::Allow(_)));
        });
        let hit_cx = Ctx { policy: &with_cache, remotes: &[], cache: Some((&cache, &store as &dyn SharedStore)), now_s: NOW, allow_wait: true };
        let hit = per_op(20_000, || {
            assert!(matches!(decide(black_box(&headers), &hit_cx).decision, Decision::Allow(_)));
        });
        println!("{alg:<8} {sig:>12.1} {miss:>14.1} {hit:>12.1}");
    }
}
