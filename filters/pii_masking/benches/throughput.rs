//! Host-side throughput of the maskers (not Envoy, not Wasm): `cargo bench -p pii_masking`.
//! JSON documents of 1 MiB and 10 MiB (records with a name, an e-mail, a phone, a card, an
//! IP, a password field and look-alike numbers), masked whole as the filter does at the end
//! of a buffered JSON body; and the same bytes streamed as text in 64 KiB chunks.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark, not a request path

use pii_masking::config::Config;
use pii_masking::text::{Counts, StreamMasker};
use serde_json::json;
use std::hint::black_box;
use std::time::Instant;

fn document(target: usize) -> Vec<u8> {
    let mut records = Vec::new();
    let mut size = 2;
    let mut i = 0u64;
    while size < target {
        let r = json!({
            "id": i,
            "name": format!("Customer {i}"),
            "email": format!("customer{i}@example.com"),
            "phone": "+1 (415) 555-2671",
            "card": "4111 1111 1111 1111",
            "ip": format!("10.1.{}.{}", i % 256, (i / 256) % 256),
            "password": "hunter2",
            "order": format!("ORD-{:08}", i),
            "created": "2024-01-15T10:30:00Z",
            "total": 1234.56,
            "note": "Thanks for your order, it ships tomorrow.",
        });
        size += r.to_string().len() + 1;
        records.push(r);
        i += 1;
    }
    serde_json::to_vec(&records).expect("serializes")
}

fn best_of(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let cfg: Config = shared::config::parse_json(br#"{"json_fields": {"password": "remove"}}"#).expect("config parses");
    let policy = cfg.compile().expect("config compiles");
    let plan = policy.default_plan.clone();
    println!("| body | size | mode | best of 5 | throughput |");
    println!("|---|---:|---|---:|---:|");
    for mib in [1usize, 10] {
        let doc = document(mib << 20);
        let mb = doc.len() as f64 / (1 << 20) as f64;
        let secs = best_of(5, || {
            let mut c = Counts::default();
            black_box(pii_masking::json::mask(black_box(&doc), &plan, &mut c).expect("valid JSON"));
        });
        println!("| JSON | {mb:.1} MiB | field-aware, whole | {:.1} ms | {:.0} MiB/s |", secs * 1e3, mb / secs);
        let secs = best_of(5, || {
            let mut sm = StreamMasker::new();
            let mut c = Counts::default();
            for chunk in doc.chunks(64 * 1024) {
                black_box(sm.push(chunk, false, &plan, &mut c));
            }
            black_box(sm.push(b"", true, &plan, &mut c));
        });
        println!("| same bytes as text | {mb:.1} MiB | streamed, 64 KiB chunks | {:.1} ms | {:.0} MiB/s |", secs * 1e3, mb / secs);
    }
    // Adversarial text: every byte a possible start, long near-misses.
    for (name, unit) in [
        ("digits and spaces", "1 2 3 4 5 6 7 8 9 0 ".to_string()),
        ("near-miss cards", "4111 1111 1111 1112 ".to_string()),
        ("near-miss e-mails", format!("{}@{} ", "a".repeat(60), "b".repeat(60))),
        ("dotted numbers", "1.2.3.4.5.6.7.8.9.".to_string()),
        ("plus signs", "+1 +2 +3 (4) (5) ".to_string()),
    ] {
        let doc: Vec<u8> = unit.repeat((1 << 20) / unit.len()).into_bytes();
        let mb = doc.len() as f64 / (1 << 20) as f64;
        let secs = best_of(3, || {
            let mut sm = StreamMasker::new();
            let mut c = Counts::default();
            for chunk in doc.chunks(64 * 1024) {
                black_box(sm.push(chunk, false, &plan, &mut c));
            }
            black_box(sm.push(b"", true, &plan, &mut c));
        });
        println!("| adversarial: {name} | {mb:.1} MiB | streamed, 64 KiB chunks | {:.1} ms | {:.0} MiB/s |", secs * 1e3, mb / secs);
    }
}
