//! Differential test against PyJWT (issue 11): `tests/peers/jwt_differential.py` makes 300
//! tokens over all twelve algorithms with random claims and seeded mutations (flipped
//! signature and payload bits, swapped `alg`, `none`, key confusion, wrong key, times, `aud`,
//! `iss`, claim types, duplicate members, `crit`, padded / non-canonical base64, whitespace,
//! ...) and records PyJWT's verdict with the same keys and options. Each token then goes
//! through the filter's whole decision ([`decide`]) at the peer's `now`.
//!
//! Property: every token the filter accepts, PyJWT accepts too. The filter may be stricter;
//! each stricter case must be one of [`DOCUMENTED_STRICTER`] (docs/security.md, "Standard
//! test vectors"), with the error named there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use jwt_verify::config::{Config, Policy};
use jwt_verify::decide::{decide, Ctx, Decision};
use jwt_verify::error::JwtError;
use serde_json::{json, Value};
use shared::config::parse_json;
use shared::request::Headers;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const SEED: u64 = 11;
const COUNT: usize = 300;

/// Where the filter refuses what PyJWT 2.x accepts: (mutation, the filter's error, why).
const DOCUMENTED_STRICTER: &[(&str, JwtError, &str)] = &[
    ("duplicate_claim", JwtError::DuplicateKey, "a repeated member name is refused (RFC 7515 section 5.2 step 4 allows refusing); PyJWT keeps the last"),
    ("exp_string", JwtError::ClaimInvalid, "`exp` must be a JSON number (RFC 7519 NumericDate); PyJWT accepts a numeric string via int()"),
    ("padded_base64", JwtError::Malformed, "base64url without padding only (RFC 7515 section 2); PyJWT tolerates '=' on some segments"),
];

fn run_peer() -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    let script = root.join("tests/peers/jwt_differential.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(SEED.to_string())
        .arg(COUNT.to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} (scripts/setup creates the venv): {e}", python.display()));
    assert!(out.status.success(), "peer failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn policy(peer: &Value) -> Policy {
    let cfg = json!({
        "providers": {"main": {"issuer": peer["iss"], "audiences": [peer["aud"]], "local_jwks": peer["jwks"]}},
        "cache": {"enabled": false}
    });
    parse_json::<Config>(cfg.to_string().as_bytes()).and_then(Config::compile).unwrap()
}

fn filter_verdict(policy: &Policy, token: &str, now_s: u64) -> Result<(), JwtError> {
    let auth = format!("Bearer {token}");
    let h = Headers::from_pairs([(":method", "GET"), (":path", "/orders"), (":authority", "api.example"), ("authorization", auth.as_str())]);
    let cx = Ctx { policy, remotes: &[], cache: None, now_s, allow_wait: false };
    match decide(&h, &cx).decision {
        Decision::Allow(_) => Ok(()),
        Decision::Deny(e) => Err(e),
        Decision::Wait(w) => panic!("local keys never wait: {w:?}"),
    }
}

#[test]
fn filter_accepts_only_what_pyjwt_accepts() {
    let peer = run_peer();
    let policy = policy(&peer);
    let now = peer["now"].as_u64().unwrap();
    let cases = peer["cases"].as_array().unwrap();
    assert_eq!(cases.len(), COUNT);

    let mut violations = Vec::new();
    let mut undocumented = Vec::new();
    // (kind) -> (both accept, both refuse, filter stricter)
    let mut by_kind: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    let mut accepted_by_alg: BTreeMap<String, usize> = BTreeMap::new();
    for c in cases {
        let kind = c["kind"].as_str().unwrap();
        let alg = c["alg"].as_str().unwrap();
        let token = c["token"].as_str().unwrap();
        let pyjwt = c["pyjwt"].as_bool().unwrap();
        let ours = filter_verdict(&policy, token, now);
        let row = by_kind.entry(kind.to_string()).or_default();
        match (&ours, pyjwt) {
            (Ok(()), true) => {
                row.0 += 1;
                *accepted_by_alg.entry(alg.to_string()).or_default() += 1;
            }
            (Err(_), false) => row.1 += 1,
            (Ok(()), false) => violations.push(format!("{kind} {alg}: filter accepts, PyJWT refuses ({}): {token}", c["why"])),
            (Err(e), true) => {
                row.2 += 1;
                if !DOCUMENTED_STRICTER.iter().any(|(k, err, _)| *k == kind && err == e) {
                    undocumented.push(format!("{kind} {alg}: filter {e:?}, PyJWT accepts: {token}"));
                }
            }
        }
    }
    for (kind, (both_ok, both_no, stricter)) in &by_kind {
        println!("{kind:28} both accept {both_ok:3}  both refuse {both_no:3}  filter stricter {stricter:3}");
    }
    assert!(violations.is_empty(), "the filter accepted tokens PyJWT refuses:\n{}", violations.join("\n"));
    assert!(undocumented.is_empty(), "undocumented strictness differences:\n{}", undocumented.join("\n"));
    // Not vacuous: every algorithm has tokens both accept, and the baseline kinds all pass.
    assert_eq!(accepted_by_alg.len(), 12, "{accepted_by_alg:?}");
    for kind in ["valid", "valid_aud_array", "valid_no_kid", "valid_extra_header", "valid_unicode_nested", "valid_fractional_times", "valid_exp_within_leeway"] {
        let (both_ok, both_no, stricter) = by_kind.get(kind).copied().unwrap_or_default();
        assert!(both_ok > 0 && both_no == 0 && stricter == 0, "{kind}: {both_ok}/{both_no}/{stricter}");
    }
    // Every mutation meant to break a token was generated and refused by both.
    for kind in ["flip_signature", "flip_payload", "alg_swapped", "alg_none", "hs_with_rsa_public_key", "wrong_key", "exp_past", "wrong_aud", "crit_header", "duplicate_header"] {
        let (both_ok, both_no, _) = by_kind.get(kind).copied().unwrap_or_default();
        assert!(both_ok == 0 && both_no > 0, "{kind}: {both_ok} accepted, {both_no} refused");
    }
}
