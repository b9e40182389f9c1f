//! What Envoy does when a filter panics (traps): with `failure_policy: FAIL_RELOAD` (our
//! configs) the request is refused, never passed upstream, and the VM is reloaded so later
//! requests are served again. The panicking module is a test fixture (tests/fixtures/panic_probe).

use e2e::{fixture_wasm, Envoy, Filter};
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn a_panicking_filter_fails_closed_and_the_vm_recovers() {
    let e = Envoy::builder()
        .filter(Filter::new("header_hardening", json!({})))
        .filter(Filter::new("panic_probe", json!({})).path(fixture_wasm("panic_probe")))
        .start();
    assert_eq!(e.get("/ok").status, 200);
    let before = e.upstream.count();

    let r = e.get("/panic");
    assert!(r.status >= 500, "a panic must never pass the request: got {}", r.status);
    assert_eq!(e.upstream.count(), before, "the panicking request reached upstream");

    // The VM reloads after a backoff; until then requests fail closed, never open.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut recovered = false;
    while Instant::now() < deadline {
        let r = e.get("/ok");
        if r.status == 200 {
            recovered = true;
            break;
        }
        assert!(r.status >= 500, "while reloading, requests must fail closed: got {}", r.status);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(recovered, "the VM did not recover:\n{}", e2e::tail(&e.logs(), 30));
    assert!(e.logs().contains("deliberate panic"), "the panic is logged");
}
