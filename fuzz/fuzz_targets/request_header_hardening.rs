//! Request checks and response hardening over arbitrary header maps never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use header_hardening::decide::{check_request, harden_response, CorsReply};
use shared::request::Headers;

fuzz_target!(|input: (Vec<(String, Vec<u8>)>, bool)| {
    let (pairs, eos) = input;
    let policy = match shared::config::parse_json::<header_hardening::config::Config>(
        br#"{"cors": {"allow_origins": ["https://a.example.com", "https://*.b.example"], "allow_credentials": true, "allow_headers": ["x-a"]}}"#,
    )
    .and_then(header_hardening::config::Config::compile)
    {
        Ok(p) => p,
        Err(_) => return,
    };
    let h = Headers::new(pairs);
    let _ = check_request(&h, eos, &policy);
    let _ = harden_response(&h, &policy, CorsReply::Upstream(h.get_str("origin")));
});
