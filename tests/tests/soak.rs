//! Soak: the whole chain (`envoy-config/envoy.yaml`, as `scripts/run` starts it) under a
//! steady mixed load from `tests/peers/soak_load.py`: good requests with thousands of
//! distinct PyJWT tokens, expired/forged/malformed tokens, forbidden roles, path tricks,
//! oversized input, a flood of distinct rate-limit keys (every request from its own loopback
//! source address) and two single-address floods.
//!
//! Asserted: every class got only its expected statuses, no 5xx, no failed connection, no
//! raw personal data, no wasm VM reloaded, and Envoy's memory flat after warm-up (RSS and
//! allocated bytes at most +20 %, plus a small absolute allowance for short runs).
//!
//! Short by default (~25 s, part of `scripts/test`); `scripts/soak [seconds]` runs it long
//! (`SOAK_SECONDS`, `SOAK_RATE`, `SOAK_USERS`, `SOAK_SOURCES`). The summary goes to stdout and to
//! `target/soak.md` (`target/soak-test.md` for the short run, `SOAK_REPORT` to choose).

use e2e::soak::{soak_upstream, MemSample};
use e2e::{peer, python, python_bin, root, Envoy};
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PARTNER_SECRET: &str = "cGFydG5lci1hLXNlY3JldC1mb3ItdGhlLWNoYWluLXRlc3Q=";
/// Growth allowed after warm-up: relative, and an absolute floor (a short run samples a
/// process still settling by a few MiB).
const GROWTH: f64 = 0.20;
const SLACK_BYTES: u64 = 8 << 20;

fn env_num(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

#[test]
fn the_chain_stays_correct_and_flat_under_a_steady_mixed_load() {
    let seconds = env_num("SOAK_SECONDS", 25.0);
    let rate = env_num("SOAK_RATE", 150.0);
    let users = env_num("SOAK_USERS", if seconds > 60.0 { 5000.0 } else { 1200.0 }) as u64;
    let sources = env_num("SOAK_SOURCES", 0.0) as u64;
    let warmup = (seconds / 5.0).clamp(5.0, 60.0);
    let report_path = std::env::var_os("SOAK_REPORT")
        .map(|p| root().join(p)) // relative to the repository root (tests run in tests/)
        .unwrap_or_else(|| root().join(if std::env::var_os("SOAK_SECONDS").is_some() { "target/soak.md" } else { "target/soak-test.md" }));

    let dir = root().join("target/e2e").join(format!("soak-{}", std::process::id()));
    let jwks = python(&peer("soak_load.py"), &["keys", dir.to_str().unwrap_or_default()]);
    let up = soak_upstream(jwks.trim().to_string());
    let e = Arc::new(
        Envoy::builder()
            .config_file(&root().join("envoy-config/envoy.yaml"))
            .map_cluster("demo_upstream", up.port())
            .map_cluster("idp", up.port())
            .process_env("PARTNER_A_SECRET", PARTNER_SECRET)
            .concurrency(2)
            .start(),
    );

    // Sample memory once a second while the load runs (minting tokens comes first: the
    // clock starts with the first request, when the loader says so on stderr).
    let samples: Arc<Mutex<Vec<MemSample>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut loader = std::process::Command::new(python_bin())
        .arg(peer("soak_load.py"))
        .args(["run", dir.to_str().unwrap_or_default(), "--port", &e.port.to_string(), "--seconds", &seconds.to_string(), "--rate", &rate.to_string(), "--users", &users.to_string(), "--sources", &sources.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run the loader: {err}"));
    let mut stderr = loader.stderr.take().expect("loader stderr");
    // The loader prints "load started" on stderr once its tokens are minted.
    let mut started_line = Vec::new();
    {
        use std::io::Read;
        let mut b = [0u8; 1];
        while stderr.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
            started_line.push(b[0]);
        }
    }
    assert_eq!(String::from_utf8_lossy(&started_line), "load started", "the loader did not start");
    let load_start = Instant::now();
    let sampler = {
        let (e, samples, stop) = (e.clone(), samples.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let s = e.mem_sample(load_start.elapsed().as_secs_f64());
                if let Ok(mut v) = samples.lock() {
                    v.push(s);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let out = loader.wait_with_output().unwrap_or_else(|err| panic!("loader: {err}"));
    stop.store(true, Ordering::SeqCst);
    let _ = sampler.join();
    let mut rest = String::new();
    {
        use std::io::Read;
        let _ = stderr.read_to_string(&mut rest);
    }
    assert!(out.status.success(), "the loader failed: {rest}");
    let result: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|err| panic!("loader output: {err}: {}", String::from_utf8_lossy(&out.stdout)));
    let samples = samples.lock().map(|v| v.clone()).unwrap_or_default();
    let after = e.mem_sample(load_start.elapsed().as_secs_f64());

    // Memory: the first sample after warm-up against the last one under load.
    let start = samples.iter().find(|s| s.t >= warmup).cloned().unwrap_or_default();
    let end = samples.iter().rev().find(|s| s.t <= seconds).cloned().unwrap_or_default();
    let peak_rss = samples.iter().map(|s| s.rss).max().unwrap_or(0);
    let first = samples.first().cloned().unwrap_or_default();

    // The report.
    let classes = result["classes"].as_object().cloned().unwrap_or_default();
    let mut md = String::new();
    let _ = writeln!(md, "# Soak of envoy-config/envoy.yaml\n");
    let _ = writeln!(
        md,
        "{} s, {} requests ({} req/s achieved of {} targeted; the loader ended up to {} s behind its schedule when the machine could not keep up), {} users, {} distinct tokens (minted in {} s by PyJWT), Envoy --concurrency 2, source addresses of the non-flood requests: {}.\n",
        result["seconds"],
        result["requests"],
        result["rate_achieved"],
        result["rate_target"],
        result["max_lag_s"],
        result["users"],
        result["distinct_tokens"],
        result["mint_seconds"],
        if sources == 0 { "a new random loopback address per request".to_string() } else { format!("a pool of {sources} loopback addresses") }
    );
    let _ = writeln!(md, "| class | requests | statuses | expected | unexpected | errors |\n|---|---|---|---|---|---|");
    let mut problems = Vec::new();
    let mut total_5xx = 0u64;
    for (name, c) in &classes {
        let statuses = c["statuses"].as_object().cloned().unwrap_or_default();
        let shown: Vec<String> = statuses.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let expected: Vec<String> = c["expected"].as_array().map(|a| a.iter().map(|x| x.to_string()).collect()).unwrap_or_default();
        let _ = writeln!(md, "| {name} | {} | {} | {} | {} | {} |", c["count"], shown.join(", "), expected.join(", "), c["unexpected"], c["errors"]);
        total_5xx += statuses.iter().filter(|(k, _)| k.starts_with('5')).map(|(_, v)| v.as_u64().unwrap_or(0)).sum::<u64>();
        if c["unexpected"].as_u64() != Some(0) {
            problems.push(format!("{name}: unexpected statuses {shown:?}, e.g. {}", c["unexpected_samples"]));
        }
        if c["errors"].as_u64() != Some(0) {
            problems.push(format!("{name}: {} failed requests, e.g. {}", c["errors"], c["error_samples"]));
        }
        if c["raw_pii"].as_u64().unwrap_or(0) != 0 {
            problems.push(format!("{name}: raw personal data in {} responses", c["raw_pii"]));
        }
        if c["count"].as_u64().unwrap_or(0) == 0 {
            problems.push(format!("{name}: no request of this class completed"));
        }
    }
    for flood in ["flood_one_ip", "login_flood"] {
        if classes.get(flood).and_then(|c| c["statuses"]["429"].as_u64()).unwrap_or(0) == 0 {
            problems.push(format!("{flood}: the limiter never answered 429"));
        }
    }
    let limit = |v: u64| (v as f64 * (1.0 + GROWTH)) as u64 + SLACK_BYTES;
    let _ = writeln!(md, "\n| Envoy memory | at start | after warm-up ({:.0} s) | end of load ({:.0} s) | growth after warm-up |\n|---|---|---|---|---|", start.t, end.t);
    let growth = |a: u64, b: u64| if a == 0 { "n/a".to_string() } else { format!("{:+.1} %", (b as f64 - a as f64) * 100.0 / a as f64) };
    let _ = writeln!(md, "| RSS (/proc) | {} | {} | {} | {} (peak {}) |", mib(first.rss), mib(start.rss), mib(end.rss), growth(start.rss, end.rss), mib(peak_rss));
    let _ = writeln!(md, "| allocated (admin /memory) | {} | {} | {} | {} |", mib(first.allocated), mib(start.allocated), mib(end.allocated), growth(start.allocated, end.allocated));
    let _ = writeln!(md, "| heap_size (admin /memory) | {} | {} | {} | {} |", mib(first.heap_size), mib(start.heap_size), mib(end.heap_size), growth(start.heap_size, end.heap_size));
    let _ = writeln!(md, "| wasm VMs active / created | {} / {} | {} / {} | {} / {} | |", first.vms_active, first.vms_created, start.vms_active, start.vms_created, after.vms_active, after.vms_created);
    let _ = writeln!(md, "| wasm VM reloads (`wasm.*.vm_reload`) | {} | {} | {} | |", first.vm_reloads, start.vm_reloads, after.vm_reloads);
    let _ = writeln!(md, "\nOver time (RSS / allocated):");
    for tenth in 0..=10 {
        let at = seconds * f64::from(tenth) / 10.0;
        if let Some(s) = samples.iter().find(|s| s.t >= at - 0.5) {
            let _ = write!(md, "{}{:.0} s {} / {}", if tenth == 0 { " " } else { "; " }, s.t, mib(s.rss), mib(s.allocated));
        }
    }
    let _ = writeln!(md);
    let _ = writeln!(md, "\nUpstream answered {} requests (including JWKS fetches). {} 5xx responses.", up.count(), total_5xx);

    if total_5xx != 0 {
        problems.push(format!("{total_5xx} responses were 5xx"));
    }
    if start.rss == 0 || end.rss == 0 {
        problems.push(format!("no memory samples after warm-up ({} samples)", samples.len()));
    } else {
        if end.rss > limit(start.rss) {
            problems.push(format!("RSS grew from {} to {} after warm-up", mib(start.rss), mib(end.rss)));
        }
        if end.allocated > limit(start.allocated) {
            problems.push(format!("allocated grew from {} to {} after warm-up", mib(start.allocated), mib(end.allocated)));
        }
    }
    if after.vm_reloads != 0 {
        problems.push(format!("{} wasm VM reloads (a filter trapped)", after.vm_reloads));
    }
    if after.vms_created != first.vms_created || after.vms_active != first.vms_active {
        problems.push(format!("wasm VMs changed during the soak (a trap reloads a VM): created {} -> {}, active {} -> {}", first.vms_created, after.vms_created, first.vms_active, after.vms_active));
    }
    let _ = writeln!(md, "\nResult: {}", if problems.is_empty() { "PASS".to_string() } else { format!("FAIL\n\n- {}", problems.join("\n- ")) });
    if let Some(parent) = report_path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::write(&report_path, &md);
    println!("{md}\n(written to {})", report_path.display());
    assert!(problems.is_empty(), "soak failed:\n{}\n\n{md}\nenvoy log tail:\n{}", problems.join("\n"), e2e::tail(&e.logs(), 20));
}
