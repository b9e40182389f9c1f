//! JSON masking never panics, and valid JSON stays valid JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pii_masking::json::mask;
use pii_masking::policy::Plan;
use pii_masking::text::Counts;
use std::sync::{Arc, OnceLock};

fn plan() -> &'static Arc<Plan> {
    static P: OnceLock<Arc<Plan>> = OnceLock::new();
    P.get_or_init(|| {
        let policy = shared::config::parse_json::<pii_masking::config::Config>(
            br#"{"json_fields": {"password": "remove", "ssn": "redact", "card_number": "partial"}}"#,
        )
        .and_then(pii_masking::config::Config::compile)
        .expect("fuzz policy compiles");
        let req = shared::request::Headers::from_pairs([(":path", "/x"), (":method", "GET")]);
        policy.plan_for(&req).expect("a plan for /x")
    })
}

fuzz_target!(|data: &[u8]| {
    let valid = serde_json::from_slice::<serde_json::Value>(data).is_ok();
    match mask(data, plan(), &mut Counts::default()) {
        Some(out) => {
            if valid {
                assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok(), "masking broke JSON: {:?}", String::from_utf8_lossy(&out));
            }
        }
        None => assert!(!valid, "valid JSON refused"),
    }
});
