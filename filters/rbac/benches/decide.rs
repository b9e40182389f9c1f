//! Per-request cost of `decide` with 10 and 1,000 rules: `cargo bench -p rbac`.
//! The matrix rules of the issue come first or last among generated rules with distinct
//! first segments; the cost should stay flat because the index examines only the rules that
//! share the request's method and first segment (plus the wildcard ones).

#![allow(clippy::expect_used)] // a benchmark, not a request path

use rbac::config::Config;
use rbac::decide::{decide, RequestView};
use rbac::policy::Policy;
use serde_json::json;
use shared::identity::{Identity, Source};
use std::hint::black_box;
use std::time::Instant;

fn policy(n: usize, matrix_last: bool) -> Policy {
    let matrix = vec![
        json!({"path": "/auth/login", "methods": ["POST"], "public": true}),
        json!({"path": "/users/me", "methods": ["GET"], "permission": "users:read"}),
        json!({"path": "/users/{id}", "methods": ["GET"], "roles": ["admin"]}),
        json!({"path": "/orders", "methods": ["GET"], "permission": "orders:read"}),
        json!({"path": "/orders", "methods": ["POST"], "permission": "orders:write"}),
        json!({"path": "/admin/**", "permission": "admin:manage"}),
    ];
    let filler: Vec<_> = (0..n.saturating_sub(matrix.len()))
        .map(|i| json!({"path": format!("/svc{i}/items/{{id}}"), "methods": ["GET", "PUT"], "permission": "orders:read"}))
        .collect();
    let rules: Vec<_> = if matrix_last { filler.into_iter().chain(matrix).collect() } else { matrix.into_iter().chain(filler).collect() };
    let cfg = json!({
        "roles": {
            "admin": {"permissions": ["*"], "mfa_required": true},
            "trader": {"permissions": ["users:read", "orders:read", "orders:write", "positions:read"]},
            "viewer": {"permissions": ["*:read"]}
        },
        "rules": rules
    });
    let c: Config = shared::config::parse_json(cfg.to_string().as_bytes()).expect("config parses");
    c.compile().expect("config compiles")
}

fn main() {
    let trader = Identity {
        source: Source::Jwt,
        provider: "main".into(),
        subject: "u1".into(),
        scopes: vec![],
        claims: json!({"role": ["trader"]}).as_object().cloned().unwrap_or_default(),
    };
    let requests: [(&[u8], &[u8]); 5] =
        [(b"GET", b"/orders"), (b"POST", b"/orders"), (b"GET", b"/users/me"), (b"GET", b"/admin/x/y"), (b"DELETE", b"/nothing/here")];
    const ROUNDS: usize = 200_000;
    for n in [10usize, 1000] {
        for last in [false, true] {
            let p = policy(n, last);
            let start = Instant::now();
            for _ in 0..ROUNDS {
                for (m, path) in &requests {
                    black_box(decide(&RequestView::new(m, path), Some(&trader), None, black_box(&p)));
                }
            }
            let ns = start.elapsed().as_nanos() as f64 / (ROUNDS * requests.len()) as f64;
            println!("rules={n:5} matrix_{}: {ns:7.1} ns/decision", if last { "last " } else { "first" });
        }
    }
    // For contrast: what a plain first-match scan over the rules would cost.
    for n in [10usize, 1000] {
        let p = policy(n, true);
        let norm: Vec<(&[u8], String)> =
            requests.iter().filter_map(|(m, path)| shared::pathmatch::normalize(path).ok().map(|n| (*m, n))).collect();
        let start = Instant::now();
        for _ in 0..ROUNDS / 10 {
            for (m, path) in &norm {
                black_box(p.rules.iter().position(|r| r.route.matches(path, m)));
            }
        }
        let ns = start.elapsed().as_nanos() as f64 / (ROUNDS / 10 * norm.len()) as f64;
        println!("rules={n:5} linear scan (no index), matching only: {ns:9.1} ns/request");
    }
}
