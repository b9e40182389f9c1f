//! pii_masking through the real Envoy: every detector in JSON and text responses, bodies
//! streamed in chunks with values split across chunk boundaries (and inside UTF-8
//! characters), multi-megabyte streams, JSON kept valid, look-alikes left alone, overflow
//! reject/pass, compressed responses, request bodies, rules, hash mode against an
//! independent HMAC (Python), metrics, refused configs.

use e2e::{Envoy, EnvoyBuilder, Filter, Request, UpResponse, Upstream};
use serde_json::{json, Value};
use std::time::Duration;

const KEY: &str = "k3y-for-tests-0123456789abcdef";

fn pii(config: Value) -> Filter {
    Filter::new("pii_masking", config).env("PII_HASH_KEY", KEY)
}

/// Envoy with the filter in front of an upstream that answers with `respond`.
fn envoy(config: Value, respond: impl Fn(&e2e::UpRequest) -> UpResponse + Send + Sync + 'static) -> Envoy {
    Envoy::builder().upstream(Upstream::with_handler(respond)).filter(pii(config)).start()
}

fn m(e: &Envoy, name: &str) -> u64 {
    e.metric("pii_masking", name)
}

/// The configuration of the issue.
fn issue_config() -> Value {
    json!({
        "detectors": ["email", "phone", "ssn", "credit_card", "iban", "ipv4"],
        "mode": "partial",
        "modes": {"credit_card": "partial", "ssn": "redact", "email": "partial"},
        "json_fields": {"password": "remove", "ssn": "redact", "card_number": "partial"},
        "content_types": ["application/json", "text/plain", "text/html", "text/csv"],
        "max_buffer_bytes": 1048576,
        "on_overflow": "reject",
        "hash_key_env": "PII_HASH_KEY",
        "rules": [{"prefix": "/admin/export", "mode": "redact"}, {"prefix": "/"}]
    })
}

/// Non-PII values that look like PII: none of them may change.
const LOOKALIKES: &[&str] = &[
    "4111111111111112",                     // order number, fails Luhn
    "1700000000123",                        // timestamp in ms
    "123e4567-e89b-12d3-a456-426614174000", // UUID
    "41111111-1111-1111-1111-111111111111", // all-digit UUID
    "$1,234.56",                            // price
    "10.0.19041.1",                         // version
    "v1.2.3.4",                             // version
    "2024-01-15T10:30:00Z",                 // timestamp
    "ORD-2024-000123",                      // order id
    "4155552671",                           // bare digits, not a phone without formatting
    "978-3-16-148410-0",                    // ISBN
    "666-12-3456",                          // invalid SSN area
    "DE89370400440532013001",               // IBAN with a bad checksum
    "john@localhost",                       // not a routable e-mail
];

fn json_document() -> Value {
    json!({
        "user": {
            "name": "Jane Doe",
            "email": "jane.doe@example.com",
            "password": "hunter2",
            "ssn": "123-45-6789",
            "phone": "+1 (415) 555-2671",
            "contacts": [{"Phone": "020 7946 0958"}, {"email": "x@y.io"}],
            "remarks": "SSN 219-45-6789 on file"
        },
        "payment": {"cardNumber": "4111 1111 1111 1111", "iban": "DE89 3704 0044 0532 0130 00", "note": "backup 3782-822463-10005", "amount": 12.5},
        "client_ip": "203.0.113.42",
        "raw_card": 5555555555554444u64,
        "lookalikes": LOOKALIKES,
    })
}

fn assert_json_masked(v: &Value) {
    assert_eq!(v["user"]["name"], "Jane Doe");
    assert_eq!(v["user"]["email"], "j***@example.com");
    assert!(v["user"].get("password").is_none(), "password removed: {v}");
    assert_eq!(v["user"]["ssn"], "[REDACTED:ssn]");
    assert_eq!(v["user"]["phone"], "+* (***) ***-2671");
    assert_eq!(v["user"]["contacts"][0]["Phone"], "*** **** 0958");
    assert_eq!(v["user"]["contacts"][1]["email"], "x***@y.io");
    assert_eq!(v["user"]["remarks"], "SSN [REDACTED:ssn] on file", "ssn mode is redact");
    assert_eq!(v["payment"]["cardNumber"], "**** **** **** 1111");
    assert_eq!(v["payment"]["iban"], "**** **** **** **** **30 00");
    assert_eq!(v["payment"]["note"], "backup ****-******-*0005");
    assert_eq!(v["payment"]["amount"], 12.5);
    assert_eq!(v["client_ip"], "203.0.*.*");
    assert_eq!(v["raw_card"], "************4444", "a card as a JSON number becomes a masked string");
    assert_eq!(v["lookalikes"], json!(LOOKALIKES), "look-alikes are untouched");
}

#[test]
fn json_response_every_detector_fields_any_depth_valid_json_exact_length() {
    let doc = json_document().to_string();
    let e = envoy(issue_config(), move |_| UpResponse::new(200).header("content-type", "application/json").body(doc.clone()));
    let r = e.get("/users/1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_json_masked(&r.json());
    // Headers were held until the body was masked: content-length is the masked length.
    assert_eq!(r.header("content-length"), Some(r.body.len().to_string().as_str()));
    for (name, n) in [("credit_card", 2), ("iban", 1), ("ssn", 1), ("phone", 2), ("email", 2), ("ipv4", 1), ("json_field", 3)] {
        assert_eq!(m(&e, &format!("masked.{name}")), n, "masked.{name}");
    }
    assert_eq!(m(&e, "response.masked"), 1);

    // The same document pretty-printed and streamed in small chunks (no content-length).
    let pretty = serde_json::to_string_pretty(&json_document()).unwrap().into_bytes();
    let pieces: Vec<Vec<u8>> = pretty.chunks(97).map(<[u8]>::to_vec).collect();
    let e = envoy(issue_config(), move |_| UpResponse::new(200).header("content-type", "application/json; charset=utf-8").chunks(pieces.clone(), Duration::from_millis(5)));
    let r = e.get("/users/1");
    assert_eq!(r.status, 200);
    assert_json_masked(&r.json());
    assert_eq!(r.header("content-length"), Some(r.body.len().to_string().as_str()));
}

const TEXT: &str = "Card 4111 1111 1111 1111, amex 3782-822463-10005; SSN 123-45-6789; IBAN DE89 3704 0044 0532 0130 00\n\
call +1 (415) 555-2671 or 020 7946 0958; mail jane.doe@example.com from 203.0.113.42:8443 — naïve café ✓\n";
const TEXT_MASKED: &str = "Card **** **** **** 1111, amex ****-******-*0005; SSN ***-**-6789; IBAN **** **** **** **** **30 00\n\
call +* (***) ***-2671 or *** **** 0958; mail j***@example.com from 203.0.*.*:8443 — naïve café ✓\n";

fn lookalike_text() -> String {
    LOOKALIKES.join(" | ") + "\n"
}

#[test]
fn text_response_every_detector_and_lookalikes_untouched() {
    let body = format!("{TEXT}{}", lookalike_text());
    let e = envoy(json!({}), move |_| UpResponse::new(200).header("content-type", "text/plain; charset=utf-8").body(body.clone()));
    let r = e.get("/report.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), format!("{TEXT_MASKED}{}", lookalike_text()));
    assert_eq!(r.header("content-length"), None, "the masked length differs: content-length is removed");
    for name in ["credit_card", "iban", "ssn", "email", "ipv4"] {
        assert!(m(&e, &format!("masked.{name}")) >= 1, "masked.{name}");
    }
    assert_eq!(m(&e, "masked.phone"), 2);
    assert_eq!(m(&e, "masked.credit_card"), 2);

    // HTML and CSV are text too; a media type not listed passes untouched.
    let e = envoy(json!({}), |r| {
        let ct = if r.path.ends_with(".png") { "image/png" } else if r.path.ends_with(".csv") { "text/csv" } else { "text/html" };
        UpResponse::new(200).header("content-type", ct).body("<td>jane.doe@example.com</td>")
    });
    assert_eq!(e.get("/a.html").text(), "<td>j***@example.com</td>");
    assert_eq!(e.get("/a.csv").text(), "<td>j***@example.com</td>");
    assert_eq!(e.get("/a.png").text(), "<td>jane.doe@example.com</td>");
    assert_eq!(m(&e, "response.skipped"), 1);
}

#[test]
fn chunked_response_values_split_across_chunk_boundaries_and_utf8() {
    // Cut the text at byte offsets inside every value and inside multi-byte characters.
    let text = TEXT.as_bytes();
    let mut cuts: Vec<usize> = Vec::new();
    for needle in ["1111 1111 1111", "822463", "45-67", "0044 0532", "(415) 5", "7946", "doe@exa", "113.4", "ï", "é", "✓"] {
        let at = TEXT.find(needle).unwrap_or_else(|| panic!("{needle}"));
        cuts.push(at + needle.len() / 2 + usize::from(!needle.is_ascii()));
    }
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut prev = 0;
    for c in cuts {
        pieces.push(text[prev..c].to_vec());
        prev = c;
    }
    pieces.push(text[prev..].to_vec());
    assert!(pieces.iter().any(|p| std::str::from_utf8(p).is_err()), "some piece ends inside a character");
    let n = pieces.len() as u64;
    let e = envoy(json!({}), move |_| UpResponse::new(200).header("content-type", "text/plain").chunks(pieces.clone(), Duration::from_millis(30)));
    let r = e.get("/stream");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), TEXT_MASKED);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    // Envoy handed the body over in several callbacks (Continue each time, no buffering).
    let chunks = m(&e, "response.body_chunks");
    assert!(chunks >= 2 && chunks <= n + 1, "{chunks} body callbacks for {n} pieces");
}

#[test]
fn multi_megabyte_text_is_streamed_not_buffered() {
    // 30 000 CSV rows with all six kinds (~3.6 MiB) in 64 KiB pieces cut at arbitrary bytes,
    // so many values straddle a piece boundary. The buffer limit for whole-body masking is
    // 64 KiB with on_overflow reject, which does not apply to streamed text.
    let rows = 30_000;
    let mut body = String::from("id,name,card,email,ip,ssn,iban,phone\n");
    let mut want = body.clone();
    for i in 0..rows {
        let (a, b) = (i % 256, i / 256 % 256);
        body.push_str(&format!("{i},user {i},4111 1111 1111 1111,user{i}@example.com,10.0.{a}.{b},123-45-6789,DE89 3704 0044 0532 0130 00,+1 415 555 2671\n"));
        want.push_str(&format!("{i},user {i},**** **** **** 1111,u***@example.com,10.0.*.*,***-**-6789,**** **** **** **** **30 00,+* *** *** 2671\n"));
    }
    let pieces: Vec<Vec<u8>> = body.as_bytes().chunks(65_536).map(<[u8]>::to_vec).collect();
    assert!(body.len() > 3 << 20);
    let e = envoy(json!({"max_buffer_bytes": 65536}), move |_| UpResponse::new(200).header("content-type", "text/csv").chunks(pieces.clone(), Duration::from_millis(1)));
    let r = e.send(Request::get("/export.csv").timeout(Duration::from_secs(60)));
    assert_eq!(r.status, 200);
    if let Some(at) = r.body.iter().zip(want.as_bytes()).position(|(a, b)| a != b) {
        panic!("streamed output differs at byte {at}: got {:?} want {:?}", String::from_utf8_lossy(&r.body[at.saturating_sub(80)..(at + 80).min(r.body.len())]), &want[at.saturating_sub(80)..(at + 80).min(want.len())]);
    }
    assert_eq!(r.body.len(), want.len());
    for name in ["credit_card", "email", "ipv4", "ssn", "iban", "phone"] {
        assert_eq!(m(&e, &format!("masked.{name}")), rows, "masked.{name}");
    }
    let chunks = m(&e, "response.body_chunks");
    assert!(chunks >= 4, "{chunks} body callbacks");
}

fn big_json(records: usize) -> Value {
    Value::Array(
        (0..records)
            .map(|i| json!({"id": i, "email": format!("user{i}@example.com"), "password": "hunter2", "card": "5555 5555 5555 4444"}))
            .collect(),
    )
}

#[test]
fn json_overflow_rejects_with_502_before_any_byte() {
    let doc = big_json(3000).to_string(); // ~250 KB
    let chunked = doc.clone();
    let e = envoy(json!({"max_buffer_bytes": 65536, "json_fields": {"password": "remove"}}), move |r| {
        let up = UpResponse::new(200).header("content-type", "application/json");
        if r.path == "/chunked" {
            up.chunks(chunked.as_bytes().chunks(16_384).map(<[u8]>::to_vec).collect(), Duration::from_millis(2))
        } else {
            up.body(doc.clone())
        }
    });
    // Declared length over the limit: refused on the headers.
    let r = e.get("/declared");
    assert_eq!(r.status, 502);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.code(), "response_too_large");
    // Chunked: refused when the buffered body passes the limit (headers were held).
    let r = e.get("/chunked");
    assert_eq!(r.status, 502);
    assert_eq!(r.code(), "response_too_large");
    assert!(!r.text().contains("example.com"));
    assert_eq!(m(&e, "response.overflow_rejected"), 2);
}

#[test]
fn json_overflow_pass_streams_multi_megabyte_json_masked_by_value() {
    let doc = big_json(25_000).to_string(); // ~2 MiB
    assert!(doc.len() > 2_000_000);
    let pieces: Vec<Vec<u8>> = doc.as_bytes().chunks(50_000).map(<[u8]>::to_vec).collect();
    let e = envoy(json!({"max_buffer_bytes": 65536, "on_overflow": "pass", "json_fields": {"password": "remove"}}), move |_| {
        UpResponse::new(200).header("content-type", "application/json").chunks(pieces.clone(), Duration::from_millis(1))
    });
    let r = e.send(Request::get("/big").timeout(Duration::from_secs(60)));
    assert_eq!(r.status, 200);
    let v = r.json();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 25_000);
    for (i, rec) in arr.iter().enumerate() {
        assert_eq!(rec["email"], "u***@example.com", "record {i}");
        assert_eq!(rec["card"], "**** **** **** 4444");
        // Past the limit field rules are given up (documented); values are still masked.
        assert_eq!(rec["password"], "hunter2");
    }
    assert_eq!(m(&e, "response.overflow_passed"), 1);
    assert_eq!(m(&e, "masked.email"), 25_000);
}

#[test]
fn without_held_headers_json_is_masked_and_overflow_resets() {
    let small = json_document().to_string();
    let big = big_json(3000).to_string();
    let e = envoy(
        json!({"hold_headers": false, "max_buffer_bytes": 65536, "modes": {"ssn": "redact"}, "json_fields": {"password": "remove", "ssn": "redact", "card_number": "partial"}}),
        move |r| {
            let up = UpResponse::new(200).header("content-type", "application/json");
            if r.path == "/big" {
                up.chunks(big.as_bytes().chunks(16_384).map(<[u8]>::to_vec).collect(), Duration::from_millis(2))
            } else {
                up.body(small.clone())
            }
        },
    );
    let r = e.get("/small");
    assert_eq!(r.status, 200);
    assert_json_masked(&r.json());
    assert_eq!(r.header("content-length"), None);
    // Headers are gone already: the only way to refuse is to reset the stream. The client
    // gets the 200 head and a connection closed before the first (unterminated) chunk: no
    // unmasked byte reaches it.
    match Request::get("/big").send(e.port) {
        Err(_) => {}
        Ok(r) => {
            assert_eq!(r.status, 200);
            assert!(r.body.is_empty(), "{} bytes of body after a reset", r.body.len());
        }
    }
    assert_eq!(m(&e, "response.overflow_rejected"), 1);
}

#[test]
fn compressed_responses_are_never_passed_and_upstream_is_asked_for_identity() {
    let e = envoy(json!({"rules": [{"prefix": "/public/", "skip": true}]}), |r| {
        if r.path.starts_with("/echo") {
            return e2e::upstream::echo(r);
        }
        let ct = if r.path.ends_with(".png") { "image/png" } else { "text/plain" };
        UpResponse::new(200).header("content-type", ct).header("content-encoding", "gzip").body(vec![0x1f, 0x8b, 8, 0, 1, 2, 3])
    });
    let r = e.send(Request::get("/echo").header("accept-encoding", "gzip, br").header("range", "bytes=0-10"));
    let seen = e.upstream.last().unwrap();
    assert_eq!(seen.header("accept-encoding"), Some("identity"));
    assert_eq!(seen.header("range"), None);
    assert_eq!(r.status, 200);

    let r = e.send(Request::get("/doc.txt").header("accept-encoding", "gzip"));
    assert_eq!(r.status, 502);
    assert_eq!(r.code(), "compressed_response");
    assert_eq!(m(&e, "response.compressed_rejected"), 1);
    // Not a masked media type, or a skipped path: passed as is.
    assert_eq!(e.get("/img.png").status, 200);
    let r = e.send(Request::get("/public/doc.txt").header("accept-encoding", "gzip"));
    assert_eq!(r.status, 200);
    assert_eq!(e.upstream.last().unwrap().header("accept-encoding"), Some("gzip"), "skipped paths are not touched");
}

#[test]
fn rules_by_path_prefix_and_hash_mode_matches_an_independent_hmac() {
    let e = envoy(
        json!({
            "hash_key_env": "PII_HASH_KEY",
            "rules": [
                {"prefix": "/admin/export", "mode": "redact"},
                {"prefix": "/public/", "skip": true},
                {"prefix": "/joined/", "mode": "hash"},
                {"prefix": "/emails-only/", "detectors": ["email"]}
            ]
        }),
        |_| UpResponse::new(200).header("content-type", "text/plain").body("a jane.doe@example.com b 4111 1111 1111 1111 c 4111-1111-1111-1111"),
    );
    assert_eq!(e.get("/admin/export/all").text(), "a [REDACTED:email] b [REDACTED:credit_card] c [REDACTED:credit_card]");
    assert_eq!(e.get("/public/x").text(), "a jane.doe@example.com b 4111 1111 1111 1111 c 4111-1111-1111-1111");
    assert_eq!(e.get("/emails-only/x").text(), "a j***@example.com b 4111 1111 1111 1111 c 4111-1111-1111-1111");
    assert_eq!(e.get("/other").text(), "a j***@example.com b **** **** **** 1111 c ****-****-****-1111");
    // Ambiguous paths cannot select the skip rule.
    assert_eq!(e.get("/public/../other").text(), "a j***@example.com b **** **** **** 1111 c ****-****-****-1111");

    let hashed = e.get("/joined/1").text();
    let card = e2e::python(&e2e::peer("pii_masking_corpus.py"), &["hmac", KEY, "credit_card", "4111111111111111"]);
    let email = e2e::python(&e2e::peer("pii_masking_corpus.py"), &["hmac", KEY, "email", "jane.doe@example.com"]);
    let card_token = format!("[HASH:credit_card:{}]", card.trim());
    assert_eq!(hashed, format!("a [HASH:email:{}] b {card_token} c {card_token}", email.trim()));
    assert_eq!(e.get("/joined/2").text(), hashed, "stable across requests");
}

#[test]
fn request_bodies_are_masked_when_enabled_and_untouched_by_default() {
    let body = json!({"email": "jane.doe@example.com", "password": "hunter2", "note": "card 4111 1111 1111 1111"}).to_string();
    let on = Envoy::builder().filter(pii(json!({"mask_request_bodies": true, "json_fields": {"password": "remove"}, "max_buffer_bytes": 65536}))).start();
    on.send(Request::post("/signup").header("content-type", "application/json").body(body.clone()));
    let seen = on.upstream.last().unwrap();
    let v: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(v, json!({"email": "j***@example.com", "note": "card **** **** **** 1111"}));
    assert_eq!(seen.header("content-length"), Some(seen.body.len().to_string().as_str()));
    assert_eq!(m(&on, "request.masked"), 1);
    // Text, chunked, split inside a value.
    on.send(Request::post("/log").header("content-type", "text/plain").chunked(vec![b"user jane.doe@ex".to_vec(), b"ample.com logged in".to_vec()], Duration::from_millis(20)));
    assert_eq!(on.upstream.last().unwrap().body, b"user j***@example.com logged in");
    // Compressed request bodies cannot be checked.
    let r = on.send(Request::post("/x").header("content-type", "text/plain").header("content-encoding", "gzip").body(vec![0x1f, 0x8b, 8]));
    assert_eq!(r.status, 415);
    assert_eq!(r.code(), "compressed_request");
    // A JSON body over max_buffer_bytes with on_overflow reject: 413, nothing reaches upstream.
    let before = on.upstream.count();
    let big = big_json(1000).to_string();
    assert!(big.len() > 65536);
    let r = on.send(Request::post("/bulk").header("content-type", "application/json").body(big));
    assert_eq!(r.status, 413);
    assert_eq!(r.code(), "request_too_large");
    assert_eq!(on.upstream.count(), before);

    let off = Envoy::builder().filter(pii(json!({}))).start();
    off.send(Request::post("/signup").header("content-type", "application/json").body(body.clone()));
    assert_eq!(off.upstream.last().unwrap().body, body.as_bytes());
}

#[test]
fn broken_configs_are_refused_naming_every_field() {
    let cfg = json!({"mode": "remove", "json_fields": {"a_b": "redact", "ab": "remove"}, "max_buffer_bytes": 1, "content_types": ["JSON"], "rules": [{"prefix": "x"}]});
    let err = match EnvoyBuilder::default().filter(pii(cfg)).try_start() {
        Ok(_) => panic!("envoy accepted a broken config"),
        Err(log) => log,
    };
    for needle in [
        "pii_masking: invalid configuration at 'mode'",
        "pii_masking: invalid configuration at 'json_fields.ab'",
        "pii_masking: invalid configuration at 'max_buffer_bytes'",
        "pii_masking: invalid configuration at 'content_types[0]'",
        "pii_masking: invalid configuration at 'rules[0].prefix'",
    ] {
        assert!(err.contains(needle), "expected {needle:?} in:\n{}", e2e::tail(&err, 30));
    }
    for (cfg, needle) in [
        (json!({"detectors": ["passport"]}), "invalid configuration at 'detectors[0]'"),
        (json!({"mod": "partial"}), "invalid configuration at 'mod'"),
        (json!({"mode": "hash"}), "invalid configuration at 'hash_key_env': required"),
        (json!({"mode": "hash", "hash_key_env": "NOT_IN_THE_VM"}), "'NOT_IN_THE_VM' is not set"),
    ] {
        let err = match EnvoyBuilder::default().filter(pii(cfg.clone())).try_start() {
            Ok(_) => panic!("envoy accepted {cfg}"),
            Err(log) => log,
        };
        assert!(err.contains(needle), "expected {needle:?} for {cfg} in:\n{}", e2e::tail(&err, 30));
    }
}
