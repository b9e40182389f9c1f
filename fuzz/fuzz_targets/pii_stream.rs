//! Streaming masking: a body split at arbitrary points masks exactly as the whole body does
//! (in `redact` and in `partial` mode), and a body masked in `redact` mode contains nothing a
//! detector still finds. (`partial` keeps the last four digits of a value, which may form a
//! new value with the text after it, so the second property is only for redaction.)
#![no_main]
use libfuzzer_sys::fuzz_target;
use pii_masking::policy::Plan;
use pii_masking::text::{mask, spans, Counts, StreamMasker};
use std::sync::{Arc, OnceLock};

fn plan_for(config: &[u8]) -> Arc<Plan> {
    let policy = shared::config::parse_json::<pii_masking::config::Config>(config)
        .and_then(pii_masking::config::Config::compile)
        .expect("fuzz policy compiles");
    let req = shared::request::Headers::from_pairs([(":path", "/x"), (":method", "GET")]);
    policy.plan_for(&req).expect("a plan for /x")
}

fn redact() -> &'static Arc<Plan> {
    static P: OnceLock<Arc<Plan>> = OnceLock::new();
    P.get_or_init(|| plan_for(br#"{"mode": "redact"}"#))
}

fn partial() -> &'static Arc<Plan> {
    static P: OnceLock<Arc<Plan>> = OnceLock::new();
    P.get_or_init(|| plan_for(br#"{"mode": "partial"}"#))
}

/// Mask `body` whole and split at `points`; both must agree. Returns the whole-body result.
fn whole_and_streamed(body: &[u8], points: &[usize], plan: &Plan) -> Vec<u8> {
    let mut whole_counts = Counts::default();
    let whole = mask(body, plan, &mut whole_counts);
    let mut streamed = Vec::new();
    let mut masker = StreamMasker::new();
    let mut counts = Counts::default();
    let mut at = 0;
    for &p in points {
        streamed.extend(masker.push(&body[at..p], false, plan, &mut counts));
        at = p;
    }
    streamed.extend(masker.push(&body[at..], true, plan, &mut counts));
    assert_eq!(streamed, whole, "chunked masking differs from whole-body masking");
    assert_eq!(counts, whole_counts, "chunked masking counts differ");
    whole
}

fuzz_target!(|input: (&[u8], Vec<u16>)| {
    let (body, cuts) = input;
    let mut points: Vec<usize> = cuts.iter().map(|c| usize::from(*c) % (body.len() + 1)).collect();
    points.sort_unstable();
    let plan = redact();
    let whole = whole_and_streamed(body, &points, plan);
    assert!(spans(&whole, plan.detectors).is_empty(), "PII left after masking: {:?}", String::from_utf8_lossy(&whole));
    whole_and_streamed(body, &points, partial());
});
