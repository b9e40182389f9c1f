//! RFC 8941 dictionaries (Signature-Input, Signature): parsing never panics, and what parses
//! serializes to text that parses to the same value.
#![no_main]
use hmac_signing::sfv::{parse_dictionary, parse_list, serialize_dictionary};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_list(data);
    if let Ok(d) = parse_dictionary(data) {
        let text = serialize_dictionary(&d);
        let again = parse_dictionary(text.as_bytes()).expect("serialized dictionary must parse");
        assert_eq!(serialize_dictionary(&again), text);
    }
});
