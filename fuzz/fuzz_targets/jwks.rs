//! JWKS documents (as fetched from a remote server) never panic the parser.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = jwt_verify::jwk::parse_jwks(&v, false);
        let _ = jwt_verify::jwk::parse_jwks(&v, true);
    }
});
