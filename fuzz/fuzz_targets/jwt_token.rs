//! JWT parsing (header, payload, signature segments) and signature checks never panic on
//! any input, against every key type of the PyJWT-made test key set.
#![no_main]
use jwt_verify::jwk::{parse_jwks, KeySet};
use jwt_verify::token::parse;
use jwt_verify::verify::verify_signature;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn keys() -> &'static KeySet {
    static K: OnceLock<KeySet> = OnceLock::new();
    K.get_or_init(|| {
        let v: serde_json::Value = serde_json::from_str(include_str!("../../filters/jwt_verify/testdata/vectors.json")).expect("vectors");
        parse_jwks(&v["jwks"], true).expect("test JWKS parses").0
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = parse(data, 16 * 1024) {
        let _ = verify_signature(&token, keys());
    }
});
