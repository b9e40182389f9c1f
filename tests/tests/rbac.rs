//! rbac through the real Envoy: the issue's endpoint matrix for admin, trader, viewer and
//! anonymous callers, MFA, identity scopes, path tricks, forged role headers, shadow mode,
//! audit lines and metrics, a refused config, and service rules over real mTLS.
//!
//! Until jwt_verify is in front, the identity comes from the test-only fixture
//! `tests/fixtures/identity_stub` (built by `scripts/build`, never shipped), which records the
//! JSON identity of the `x-test-identity` header exactly as an authentication filter would.

use e2e::{fixture_wasm, Envoy, EnvoyBuilder, Filter, Request, Response};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ORDER_SVC: &str = "spiffe://cluster.local/ns/shop/sa/order-service";

/// The configuration of issue 5, verbatim.
fn issue_config() -> Value {
    json!({
      "roles": {
        "admin":   {"permissions": ["*"], "mfa_required": true},
        "trader":  {"permissions": ["users:read", "orders:read", "orders:write", "positions:read"]},
        "viewer":  {"permissions": ["*:read"]}
      },
      "role_claim": "role",
      "mfa_claim": "amr",
      "rules": [
        {"path": "/auth/login", "methods": ["POST"], "public": true},
        {"path": "/users/me", "methods": ["GET"], "permission": "users:read"},
        {"path": "/users/{id}", "methods": ["GET"], "roles": ["admin"]},
        {"path": "/orders", "methods": ["GET"], "permission": "orders:read"},
        {"path": "/orders", "methods": ["POST"], "permission": "orders:write"},
        {"path": "/admin/**", "permission": "admin:manage"}
      ],
      "services": {
        ORDER_SVC: {
          "allow": [{"path": "/v1/user/addresses", "methods": ["GET", "POST", "PUT"]}],
          "deny":  [{"path": "/v1/user/profile", "methods": ["PUT", "DELETE"]}]
        }
      },
      "shadow": false
    })
}

fn stub() -> Filter {
    Filter::new("identity_stub", json!({})).path(fixture_wasm("identity_stub"))
}

fn rbac(config: Value) -> Filter {
    Filter::new("rbac", config)
}

fn envoy(config: Value) -> Envoy {
    Envoy::builder().filter(stub()).filter(rbac(config)).start()
}

/// An identity as an authentication filter records it.
fn identity(subject: &str, claims: Value) -> String {
    json!({"source": "jwt", "provider": "test", "subject": subject, "claims": claims}).to_string()
}

fn admin() -> String {
    identity("alice", json!({"sub": "alice", "role": "admin", "amr": ["pwd", "otp"]}))
}
fn admin_without_mfa() -> String {
    identity("alice", json!({"sub": "alice", "role": "admin", "amr": ["pwd"]}))
}
fn trader() -> String {
    identity("bob", json!({"sub": "bob", "role": ["trader"]}))
}
fn viewer() -> String {
    identity("carol", json!({"sub": "carol", "role": "viewer"}))
}

fn req(method: &str, path: &str, who: Option<&str>) -> Request {
    let r = Request::new(method, path);
    let r = if method == "POST" || method == "PUT" { r.header("content-length", "0") } else { r };
    match who {
        Some(id) => r.header("x-test-identity", id),
        None => r,
    }
}

fn assert_problem(r: &Response, status: u16, code: &str) {
    assert_eq!(r.status, status, "body: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.json()["code"], code, "body: {}", r.text());
}

/// The JSON audit lines rbac wrote, waiting (bounded) until at least `n` are in the log.
fn audit_lines(e: &Envoy, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<Value> = e
            .logs()
            .lines()
            .filter_map(|l| l.find("{\"").and_then(|i| serde_json::from_str::<Value>(l.get(i..)?).ok()))
            .filter(|v| v["filter"] == "rbac")
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The issue's matrix: the exact status for every (endpoint, caller) cell, each refusal with
/// its code, each allowed request seen by the upstream, and the metrics adding up.
#[test]
fn endpoint_matrix_for_admin_trader_viewer_and_anonymous() {
    let e = envoy(issue_config());
    let callers = [Some(admin()), Some(trader()), Some(viewer()), None];
    //                                   admin trader viewer anonymous
    let rows: &[(&str, &str, [u16; 4])] = &[
        ("POST", "/auth/login", [200, 200, 200, 200]),
        ("GET", "/users/me", [200, 200, 200, 401]),
        ("GET", "/users/42", [200, 403, 403, 401]),
        ("GET", "/orders", [200, 200, 200, 401]),
        ("POST", "/orders", [200, 200, 403, 401]),
        ("GET", "/admin/users", [200, 403, 403, 401]),
        ("DELETE", "/admin/users/7", [200, 403, 403, 401]),
        ("DELETE", "/orders", [403, 403, 403, 403]),
        ("GET", "/positions", [403, 403, 403, 403]),
    ];
    let (mut allowed, mut unauth, mut denied403) = (0, 0, 0);
    for (method, path, want) in rows {
        for (who, status) in callers.iter().zip(want) {
            let before = e.upstream.count();
            let r = e.send(req(method, path, who.as_deref()));
            let cell = format!("{method} {path} as {}", who.as_deref().unwrap_or("anonymous"));
            assert_eq!(r.status, *status, "{cell}: {}", r.text());
            match status {
                200 => {
                    allowed += 1;
                    assert_eq!(r.json()["path"], *path, "{cell}: the upstream answered");
                    assert_eq!(e.upstream.count(), before + 1);
                    let up = e.upstream.last().unwrap();
                    assert!(up.header("x-test-identity").is_none(), "the fixture removes its header");
                }
                401 => {
                    unauth += 1;
                    assert_problem(&r, 401, "authentication_required");
                    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
                    assert_eq!(e.upstream.count(), before, "{cell}: reached upstream");
                }
                _ => {
                    denied403 += 1;
                    assert_eq!(r.header("content-type"), Some("application/problem+json"));
                    assert_eq!(e.upstream.count(), before, "{cell}: reached upstream");
                }
            }
        }
    }
    // Specific codes.
    assert_problem(&e.send(req("GET", "/users/42", Some(&trader()))), 403, "role_required");
    assert_problem(&e.send(req("POST", "/orders", Some(&viewer()))), 403, "permission_denied");
    assert_problem(&e.send(req("GET", "/admin/users", Some(&trader()))), 403, "permission_denied");
    assert_problem(&e.send(req("DELETE", "/orders", Some(&admin()))), 403, "no_matching_rule");
    assert_problem(&e.send(req("GET", "/positions", None)), 403, "no_matching_rule");

    assert_eq!(e.wait_metric("rbac", "allowed", allowed), allowed);
    assert_eq!(e.metric("rbac", "denied.unauthenticated"), unauth);
    assert_eq!(e.metric("rbac", "denied"), unauth + denied403 + 5);
    assert_eq!(e.metric("rbac", "denied.no_rule"), 8 + 2);
    assert_eq!(e.metric("rbac", "denied.role_required"), 2 + 1);
    assert_eq!(e.metric("rbac", "denied.permission_denied"), 5 + 2);
    assert_eq!(e.metric("rbac", "shadow_denied"), 0);
}

#[test]
fn mfa_is_required_for_the_admin_role() {
    let e = envoy(issue_config());
    for (m, path) in [("GET", "/admin/users"), ("GET", "/users/42"), ("GET", "/orders"), ("POST", "/orders")] {
        let r = e.send(req(m, path, Some(&admin_without_mfa())));
        assert_problem(&r, 403, "mfa_required");
        assert!(r.header("www-authenticate").is_some_and(|v| v.contains("insufficient_user_authentication")), "{:?}", r.headers);
    }
    assert_eq!(e.upstream.count(), 0);
    assert_eq!(e.send(req("GET", "/admin/users", Some(&admin()))).status, 200);
    for amr in ["mfa", "hwk", "swk"] {
        let id = identity("alice", json!({"role": "admin", "amr": [amr]}));
        assert_eq!(e.send(req("GET", "/admin/users", Some(&id))).status, 200, "{amr}");
    }
    // The public rule stays public.
    assert_eq!(e.send(req("POST", "/auth/login", Some(&admin_without_mfa()))).status, 200);
    assert_eq!(e.metric("rbac", "denied.mfa_required"), 4);
}

#[test]
fn api_key_scopes_grant_permissions() {
    let e = envoy(issue_config());
    let key = json!({"source": "api_key", "provider": "keys", "subject": "key-7", "scopes": ["orders:read"]}).to_string();
    assert_eq!(e.send(req("GET", "/orders", Some(&key))).status, 200);
    assert_problem(&e.send(req("POST", "/orders", Some(&key))), 403, "permission_denied");
    // A scope never stands in for a role.
    let all = json!({"source": "api_key", "provider": "keys", "subject": "key-8", "scopes": ["*"]}).to_string();
    assert_eq!(e.send(req("GET", "/admin/x", Some(&all))).status, 200);
    assert_problem(&e.send(req("GET", "/users/1", Some(&all))), 403, "role_required");
}

/// Encodings that servers read differently are refused with 400 and the PathError code;
/// equivalent spellings land on the rule they really address. Nothing reaches upstream.
#[test]
fn path_tricks_cannot_bypass_rules() {
    let e = envoy(issue_config());
    let t = trader();
    for (path, code) in [
        ("/admin/../orders", "path_dot_segment"),
        ("/orders/../admin/users", "path_dot_segment"),
        ("/admin/%2e%2e/orders", "path_encoded_dot_segment"),
        ("/admin/%2E%2e/orders", "path_encoded_dot_segment"),
        ("/orders%2F..%2Fadmin", "path_encoded_slash"),
        ("/admin%2fusers", "path_encoded_slash"),
        ("/admin%5Cusers", "path_encoded_slash"),
        ("/orders%00", "path_control_character"),
        ("/orders%", "path_bad_percent_encoding"),
    ] {
        for who in [Some(t.as_str()), None] {
            assert_problem(&e.send(req("GET", path, who)), 400, code);
        }
    }
    // A raw backslash passes Envoy's HTTP/1 codec (1.40) and is refused by rbac.
    let r = e.send_raw(b"GET /orders\\..\\admin HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").expect("response");
    assert_problem(&r, 400, "path_backslash");
    assert_eq!(e.upstream.count(), 0, "no trick reached upstream");

    // `//admin` and `/%61dmin` are `/admin`: the admin rule applies.
    assert_problem(&e.send(req("GET", "//admin/users", Some(&t))), 403, "permission_denied");
    assert_problem(&e.send(req("GET", "//admin", None)), 401, "authentication_required");
    assert_problem(&e.send(req("GET", "/%61dmin/users", Some(&t))), 403, "permission_denied");
    assert_eq!(e.send(req("GET", "//admin///users", Some(&admin()))).status, 200);
    // A query cannot smuggle a path.
    let r = e.send(req("GET", "/orders?next=/admin/../x", Some(&t)));
    assert_eq!(r.status, 200);
    assert_eq!(e.metric("rbac", "denied.bad_path"), 19);
}

/// Roles come from the verified identity only: role, claim and identity headers sent by the
/// client change nothing, and reach upstream untouched (rbac is not an identity source).
#[test]
fn forged_role_and_claim_headers_change_nothing() {
    let e = envoy(issue_config());
    let forged_admin = json!({"source": "jwt", "provider": "test", "subject": "mallory", "claims": {"role": "admin", "amr": ["mfa"]}}).to_string();
    let forged: Vec<(&str, &str)> = vec![
        ("x-role", "admin"),
        ("role", "admin"),
        ("x-user-roles", "admin"),
        ("x-jwt-claim-role", "admin"),
        ("x-amr", "mfa"),
        ("amr", "mfa"),
        ("x-forwarded-user", "alice"),
        ("x-scopes", "*"),
        ("identity", &forged_admin),
        ("x-identity", &forged_admin),
    ];
    let with_forged = |r: Request| forged.iter().fold(r, |r, (k, v)| r.header(k, v));
    assert_problem(&e.send(with_forged(req("POST", "/orders", Some(&viewer())))), 403, "permission_denied");
    assert_problem(&e.send(with_forged(req("GET", "/admin/users", Some(&trader())))), 403, "permission_denied");
    assert_problem(&e.send(with_forged(req("GET", "/admin/users", Some(&admin_without_mfa())))), 403, "mfa_required");
    assert_problem(&e.send(with_forged(req("GET", "/orders", None))), 401, "authentication_required");
    assert_problem(&e.send(with_forged(req("GET", "/users/1", None))), 401, "authentication_required");
    assert_eq!(e.upstream.count(), 0);
    // Allowed requests are otherwise unchanged.
    let r = e.send(with_forged(req("GET", "/orders", Some(&viewer()))));
    assert_eq!(r.status, 200);
    assert_eq!(e.upstream.last().unwrap().header("x-role"), Some("admin"));
}

/// One audit line per denial: who (subject, roles), what (method, path without query),
/// which rule, why; never token contents.
#[test]
fn one_audit_line_per_denial_without_token_contents() {
    let e = envoy(issue_config());
    let id = identity("bob", json!({"sub": "bob", "role": ["trader"], "email": "bob@example.com", "session_secret": "s3cr3t"}));
    let r = e.send(req("GET", "/admin/users?access_token=tok-in-query", Some(&id)).header("x-request-id", "req-audit-1"));
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["request_id"], "req-audit-1");
    e.send(req("GET", "/orders", None).header("x-request-id", "req-audit-2"));
    assert_eq!(e.send(req("GET", "/orders", Some(&id)).header("x-request-id", "req-audit-3")).status, 200);

    let lines = audit_lines(&e, 2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let a = &lines[0];
    assert_eq!(a["event"], "deny");
    assert_eq!(a["request_id"], "req-audit-1");
    assert_eq!((a["status"].as_u64(), a["code"].as_str()), (Some(403), Some("permission_denied")));
    assert_eq!((a["method"].as_str(), a["path"].as_str()), (Some("GET"), Some("/admin/users")));
    assert_eq!((a["subject"].as_str(), a["provider"].as_str()), (Some("bob"), Some("test")));
    assert_eq!(a["roles"], json!(["trader"]));
    assert_eq!((a["rule"].as_str(), a["route"].as_str()), (Some("rules[5]"), Some("* /admin/**")));
    assert_eq!(a["reason"], "permission_denied");
    let b = &lines[1];
    assert_eq!((b["request_id"].as_str(), b["code"].as_str(), b["subject"].clone()), (Some("req-audit-2"), Some("authentication_required"), Value::Null));
    let log = e.logs();
    for secret in ["bob@example.com", "s3cr3t", "tok-in-query"] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

#[test]
fn shadow_mode_decides_and_records_but_never_blocks() {
    let mut cfg = issue_config();
    cfg["shadow"] = json!(true);
    let e = envoy(cfg);
    let cases = [
        (req("GET", "/orders", None), "unauthenticated"),
        (req("POST", "/orders", Some(&viewer())), "permission_denied"),
        (req("GET", "/admin/x", Some(&admin_without_mfa())), "mfa_required"),
        (req("DELETE", "/orders", Some(&trader())), "no_rule"),
        (req("GET", "/admin/%2e%2e/orders", Some(&trader())), "bad_path"),
    ];
    for (i, (r, reason)) in cases.into_iter().enumerate() {
        let resp = e.send(r.header("x-request-id", &format!("shadow-{i}")));
        assert_eq!(resp.status, 200, "{reason}: shadow mode must not block");
        assert_eq!(e.upstream.count(), i + 1);
        assert_eq!(e.metric("rbac", &format!("shadow_denied.{reason}")), 1, "{reason}");
    }
    assert_eq!(e.send(req("GET", "/orders", Some(&viewer()))).status, 200);
    assert_eq!(e.metric("rbac", "shadow_denied"), 5);
    assert_eq!(e.metric("rbac", "denied"), 0);
    assert_eq!(e.wait_metric("rbac", "allowed", 1), 1);
    let lines = audit_lines(&e, 5);
    assert_eq!(lines.len(), 5);
    assert!(lines.iter().all(|l| l["event"] == "shadow_deny"), "{lines:?}");
    assert_eq!(lines[0]["code"], "authentication_required");
    assert_eq!(lines[0]["status"], 401);
}

#[test]
fn a_broken_config_is_refused_at_load_with_every_field_named() {
    let mut cfg = issue_config();
    cfg["rules"].as_array_mut().unwrap().extend([
        json!({"path": "/users/{id}", "methods": ["GET"], "roles": ["superuser"]}),
        json!({"path": "/reports", "permission": "reports"}),
        json!({"path": "/orders", "methods": ["get"], "permission": "orders:read"}),
        json!({"path": "/a/**/b", "public": true}),
    ]);
    let err = match EnvoyBuilder::default().filter(rbac(cfg)).try_start() {
        Ok(_) => panic!("envoy accepted a broken config"),
        Err(log) => log,
    };
    for needle in [
        "invalid configuration at 'rules[6]': can never match",
        "invalid configuration at 'rules[6].roles[0]': unknown role 'superuser'",
        "invalid configuration at 'rules[7].permission': 'reports': must be of the form 'resource:action'",
        "invalid configuration at 'rules[8].methods[0]'",
        "invalid configuration at 'rules[9].path'",
    ] {
        assert!(err.contains(needle), "expected {needle:?} in:\n{}", e2e::tail(&err, 30));
    }
    for (cfg, needle) in [
        (json!({}), "invalid configuration at 'rules'"),
        (
            json!({"roles": {"viewer": {"permissions": ["*:read"]}}, "rules": [{"path": "/r", "permission": "reports:export"}]}),
            "invalid configuration at 'rules[0].permission': no role grants 'reports:export'",
        ),
        (json!({"rules": [{"path": "/", "public": true}], "role": "x"}), "invalid configuration at 'role': unknown field `role`"),
    ] {
        let err = match EnvoyBuilder::default().filter(rbac(cfg.clone())).try_start() {
            Ok(_) => panic!("envoy accepted {cfg}"),
            Err(log) => log,
        };
        assert!(err.contains(needle), "expected {needle:?} for {cfg} in:\n{}", e2e::tail(&err, 30));
    }
}

// ---------------------------------------------------------------------------------------
// Service-to-service rules over real mTLS.

struct Pki {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[String]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

impl Pki {
    /// A CA, a server certificate for localhost, and client certificates: `order` and
    /// `other` with SPIFFE URI SANs, `nouri` with only a DNS SAN, `rogue` with the order
    /// service's SPIFFE ID but signed by another CA.
    fn generate() -> Self {
        let dir = e2e::root().join("target/e2e").join(format!("rbac-pki-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        const EC: &str = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
        for ca in ["ca", "rogue-ca"] {
            let mut a = args(&format!("req -x509 {EC} -keyout {ca}.key -out {ca}.crt -days 2 -subj /CN={ca}"));
            a.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"].map(String::from));
            openssl(&dir, &a);
        }
        let leaf = |name: &str, ca: &str, serial: u32, ext: &str| {
            std::fs::write(dir.join(format!("{name}.ext")), ext).expect("write ext");
            openssl(&dir, &args(&format!("req {EC} -keyout {name}.key -out {name}.csr -subj /CN={name}")));
            openssl(&dir, &args(&format!("x509 -req -in {name}.csr -CA {ca}.crt -CAkey {ca}.key -set_serial {serial} -days 2 -out {name}.crt -extfile {name}.ext")));
        };
        leaf("server", "ca", 1001, "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
        leaf("order", "ca", 1002, &format!("subjectAltName=URI:{ORDER_SVC}\nextendedKeyUsage=clientAuth\n"));
        leaf("other", "ca", 1003, "subjectAltName=URI:spiffe://cluster.local/ns/shop/sa/other-service\nextendedKeyUsage=clientAuth\n");
        leaf("nouri", "ca", 1004, "subjectAltName=DNS:client.local\nextendedKeyUsage=clientAuth\n");
        leaf("rogue", "rogue-ca", 1005, &format!("subjectAltName=URI:{ORDER_SVC}\nextendedKeyUsage=clientAuth\n"));
        Pki { dir }
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).to_string_lossy().into_owned()
    }

    /// A listener that requires a client certificate from the CA.
    fn listener_tls(&self) -> Value {
        json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "require_client_certificate": true,
                "common_tls_context": {
                    "tls_certificates": [{"certificate_chain": {"filename": self.path("server.crt")}, "private_key": {"filename": self.path("server.key")}}],
                    "validation_context": {"trusted_ca": {"filename": self.path("ca.crt")}}
                }
            }
        })
    }
}

/// `curl` over TLS with a client certificate: (status, body); status 0 when the TLS
/// handshake or connection failed.
fn curl(pki: &Pki, port: u16, client: Option<&str>, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--path-as-is", "-X", method, "--max-time", "20", "--cacert", &pki.path("ca.crt")])
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args(["-w", "\n%{http_code}"]);
    if let Some(c) = client {
        cmd.args(["--cert", &pki.path(&format!("{c}.crt")), "--key", &pki.path(&format!("{c}.key"))]);
    }
    for (k, v) in headers {
        cmd.args(["-H", &format!("{k}: {v}")]);
    }
    cmd.arg(format!("https://localhost:{port}{path}"));
    let out = cmd.output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn code_of(body: &str) -> String {
    serde_json::from_str::<Value>(body).ok().and_then(|v| v["code"].as_str().map(String::from)).unwrap_or_default()
}

#[test]
fn service_rules_over_real_mtls() {
    let pki = Pki::generate();
    let e = Envoy::builder().listener_transport_socket(pki.listener_tls()).filter(stub()).filter(rbac(issue_config())).start();
    let p = e.port;
    // The order service: allowed methods on its route; deny wins; nothing else.
    for m in ["GET", "POST", "PUT"] {
        let (st, body) = curl(&pki, p, Some("order"), m, "/v1/user/addresses", &[]);
        assert_eq!(st, 200, "{m}: {body}");
    }
    assert_eq!(e.upstream.count(), 3);
    let cases = [
        ("order", "DELETE", "/v1/user/addresses", "service_not_allowed"),
        ("order", "PUT", "/v1/user/profile", "service_denied"),
        ("order", "DELETE", "/v1/user/profile", "service_denied"),
        ("order", "GET", "/v1/user/profile", "service_not_allowed"),
        ("order", "GET", "/orders", "service_not_allowed"),
        ("order", "POST", "/auth/login", "service_not_allowed"),
        ("other", "GET", "/v1/user/addresses", "service_unknown"),
        ("nouri", "GET", "/v1/user/addresses", "service_identity_missing"),
        ("order", "GET", "/v1/user/x/../addresses", "path_dot_segment"),
    ];
    for (client, m, path, code) in cases {
        let (st, body) = curl(&pki, p, Some(client), m, path, &[]);
        assert_eq!((st, code_of(&body).as_str()), (if code.starts_with("path_") { 400 } else { 403 }, code), "{client} {m} {path}");
    }
    // A user identity on a service connection does not widen what the service may do.
    let (st, body) = curl(&pki, p, Some("order"), "GET", "/orders", &[("x-test-identity", &admin())]);
    assert_eq!((st, code_of(&body).as_str()), (403, "service_not_allowed"));
    assert_eq!(e.upstream.count(), 3, "no denied call reached upstream");
    // No client certificate, or one from another CA: the TLS handshake fails.
    assert_eq!(curl(&pki, p, None, "GET", "/v1/user/addresses", &[]).0, 0);
    assert_eq!(curl(&pki, p, Some("rogue"), "GET", "/v1/user/addresses", &[]).0, 0);
    assert_eq!(e.upstream.count(), 3);

    assert_eq!(e.wait_metric("rbac", "allowed", 3), 3);
    assert_eq!(e.metric("rbac", "denied.service_denied"), 2);
    assert_eq!(e.metric("rbac", "denied.service_not_allowed"), 5);
    assert_eq!(e.metric("rbac", "denied.service_unknown"), 1);
    assert_eq!(e.metric("rbac", "denied.service_identity_missing"), 1);
    let lines = audit_lines(&e, 10);
    let denied = lines.iter().find(|l| l["code"] == "service_denied").expect("a service_denied line");
    assert_eq!(denied["service"], ORDER_SVC);
    assert_eq!(denied["rule"], "services.deny[0]");
    let unknown = lines.iter().find(|l| l["code"] == "service_unknown").expect("a service_unknown line");
    assert_eq!(unknown["service"], "spiffe://cluster.local/ns/shop/sa/other-service");
    let _ = std::fs::remove_dir_all(&pki.dir);
}

// ---------------------------------------------------------------------------------------
// With the real authentication filter in front: jwt_verify verifies PyJWT tokens
// (tests/peers/rbac_tokens.py) and records the identity rbac decides on.

#[test]
fn chained_behind_jwt_verify_with_real_tokens() {
    let out = e2e::python(&e2e::peer("rbac_tokens.py"), &["https://issuer.test", "api"]);
    let peer: Value = serde_json::from_str(&out).expect("peer prints JSON");
    let jwt_cfg = json!({
        "providers": {"main": {"issuer": "https://issuer.test", "audiences": ["api"], "local_jwks": peer["jwks"]}},
        "rules": [{"prefix": "/", "allow_missing": true}]
    });
    let e = Envoy::builder().filter(Filter::new("jwt_verify", jwt_cfg)).filter(rbac(issue_config())).start();
    let token = |name: &str| peer["tokens"][name].as_str().expect("token").to_string();
    let send = |m: &str, path: &str, tok: Option<&str>| {
        let r = Request::new(m, path);
        let r = if m == "POST" { r.header("content-length", "0") } else { r };
        e.send(match tok {
            Some(t) => r.header("authorization", &format!("Bearer {t}")),
            None => r,
        })
    };
    let callers = [Some(token("admin")), Some(token("trader")), Some(token("viewer")), None];
    let rows: &[(&str, &str, [u16; 4])] = &[
        ("POST", "/auth/login", [200, 200, 200, 200]),
        ("GET", "/users/me", [200, 200, 200, 401]),
        ("GET", "/users/42", [200, 403, 403, 401]),
        ("GET", "/orders", [200, 200, 200, 401]),
        ("POST", "/orders", [200, 200, 403, 401]),
        ("GET", "/admin/users", [200, 403, 403, 401]),
        ("DELETE", "/orders", [403, 403, 403, 403]),
    ];
    for (m, path, want) in rows {
        let got: Vec<u16> = callers.iter().map(|t| send(m, path, t.as_deref()).status).collect();
        assert_eq!(got, want.to_vec(), "{m} {path} (admin, trader, viewer, anonymous)");
    }
    assert_problem(&send("GET", "/admin/users", Some(&token("admin_no_mfa"))), 403, "mfa_required");
    // Tokens that do not verify never reach rbac's role logic.
    for bad in ["forged_admin", "expired_admin"] {
        let r = send("GET", "/admin/users", Some(&token(bad)));
        assert_eq!(r.status, 401, "{bad}: {}", r.text());
    }
    // A forged role header next to a real viewer token changes nothing.
    let r = e.send(Request::post("/orders").header("content-length", "0").header("authorization", &format!("Bearer {}", token("viewer"))).header("x-role", "admin").header("role", "admin"));
    assert_problem(&r, 403, "permission_denied");
    let lines = audit_lines(&e, 1);
    assert!(lines.iter().any(|l| l["subject"] == "carol" && l["roles"] == json!(["viewer"])), "{lines:?}");
    assert!(!e.logs().contains(&token("viewer")), "a token in the log");
}
