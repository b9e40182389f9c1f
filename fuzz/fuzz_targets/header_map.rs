//! The proxy-wasm map wire format: parsing host bytes never panics, and serialize/parse
//! round-trips.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shared::host::{deserialize_map, serialize_map};

fuzz_target!(|data: &[u8]| {
    if let Some(pairs) = deserialize_map(data) {
        let refs: Vec<(&str, &[u8])> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        let again = deserialize_map(&serialize_map(&refs));
        assert_eq!(again.as_ref(), Some(&pairs));
    }
});
