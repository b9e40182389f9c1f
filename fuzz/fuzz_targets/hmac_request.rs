//! The signature decision over arbitrary request headers never panics.
#![no_main]
use hmac_signing::decide::decide;
use libfuzzer_sys::fuzz_target;
use shared::request::Headers;
use std::sync::OnceLock;

fn policy() -> &'static Option<hmac_signing::policy::Policy> {
    static P: OnceLock<Option<hmac_signing::policy::Policy>> = OnceLock::new();
    P.get_or_init(|| {
        shared::config::parse_json::<hmac_signing::config::Config>(
            br#"{"keys": {"k1": {"secret_base64": "dGVzdC1zZWNyZXQtdGhhdC1pcy1sb25nLWVub3VnaC0zMmI=", "scopes": ["a:b"]}},
                 "required_components": ["@method", "@path"], "require_content_digest": false,
                 "api_keys": {"header": "x-api-key", "sha256": {"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08": {"id": "r", "scopes": ["x:y"]}}},
                 "rules": [{"prefix": "/", "require": "any"}]}"#,
        )
        .and_then(|c| c.compile())
        .map_err(|e| eprintln!("fuzz policy refused: {e}"))
        .ok()
    })
}

fuzz_target!(|input: (Vec<(String, Vec<u8>)>, bool, u64)| {
    let (pairs, eos, now) = input;
    let p = policy().as_ref().expect("the fuzz policy compiles");
    let _ = decide(&Headers::new(pairs), eos, p, now);
});
