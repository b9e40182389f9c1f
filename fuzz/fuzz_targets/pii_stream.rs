//! Streaming masking: a body split at arbitrary points masks exactly as the whole body does,
//! and a masked body contains nothing a detector still finds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pii_masking::policy::Plan;
use pii_masking::text::{mask, spans, Counts, StreamMasker};
use std::sync::{Arc, OnceLock};

fn plan() -> &'static Arc<Plan> {
    static P: OnceLock<Arc<Plan>> = OnceLock::new();
    P.get_or_init(|| {
        let policy = shared::config::parse_json::<pii_masking::config::Config>(br#"{"mode": "redact"}"#)
            .and_then(pii_masking::config::Config::compile)
            .expect("fuzz policy compiles");
        let req = shared::request::Headers::from_pairs([(":path", "/x"), (":method", "GET")]);
        policy.plan_for(&req).expect("a plan for /x")
    })
}

fuzz_target!(|input: (&[u8], Vec<u16>)| {
    let (body, cuts) = input;
    let plan = plan();
    let whole = mask(body, plan, &mut Counts::default());

    let mut points: Vec<usize> = cuts.iter().map(|c| usize::from(*c) % (body.len() + 1)).collect();
    points.sort_unstable();
    let mut streamed = Vec::new();
    let mut masker = StreamMasker::new();
    let mut counts = Counts::default();
    let mut at = 0;
    for p in points {
        streamed.extend(masker.push(&body[at..p], false, plan, &mut counts));
        at = p;
    }
    streamed.extend(masker.push(&body[at..], true, plan, &mut counts));
    assert_eq!(streamed, whole, "chunked masking differs from whole-body masking");
    assert!(spans(&whole, plan.detectors).is_empty(), "PII left after masking: {:?}", String::from_utf8_lossy(&whole));
});
