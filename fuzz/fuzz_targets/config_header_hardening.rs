//! Any plugin configuration is either refused with errors or compiled: never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = shared::config::parse_json::<header_hardening::config::Config>(data).and_then(header_hardening::config::Config::compile) {
        assert!(!e.0.is_empty());
    }
});
