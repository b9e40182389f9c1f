//! Attack catalog (issue 11): a table of hostile requests sent through the REAL chain,
//! `envoy-config/envoy.yaml` as `scripts/run` starts it (only its addresses rewritten, like
//! `tests/tests/chain.rs`), each with the status a strict gateway must return.
//!
//! Tokens and attacker keys come from an independent peer (`tests/peers/attack_tokens.py`,
//! PyJWT + cryptography); RFC 9421 signatures from `tests/peers/hmac_sign.py`
//! (`http-message-signatures`). Raw rows are exact bytes on the wire.
//!
//! Every row also checks invariants: a refused request never reaches the upstream, an allowed
//! one does, and our own refusals carry the security headers. After the whole catalog a valid
//! request still gets 200 and the log shows no wasm panic (no VM died). The run writes the
//! table as Markdown to `target/attack-table.md`, pasted into `docs/security.md`.
//!
//! A second test feeds each filter of the chain a configuration it does not support (unknown
//! field, unsupported algorithm or value) and checks `envoy --mode validate` (which runs the
//! plugins' `on_configure`) refuses it with a log line naming the field; the shipped chain is
//! the control and is accepted.

use e2e::{peer, python, root, Envoy, Request, Response, UpRequest, UpResponse, Upstream};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Demo partner secret (32 bytes, base64), handed to Envoy through its environment.
const PARTNER_SECRET: &str = "cGFydG5lci1hLXNlY3JldC1mb3ItdGhlLWNoYWluLXRlc3Q=";

const SECURITY_HEADERS: &[&str] = &["strict-transport-security", "content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy"];

// ---------------------------------------------------------------------------------------
// Rows

/// What one row sends.
enum Send {
    Req(Request),
    Raw(Vec<u8>),
}

type Check = Box<dyn Fn(&Response, Option<&UpRequest>) -> Result<(), String>>;

/// A custom row: runs against the chain, returns (observed, passed).
type Custom = Box<dyn Fn(&Ctx) -> (String, bool)>;

enum Action {
    Send { send: Send, status: u16, code: Option<&'static str>, check: Option<Check>, hardened: bool },
    Custom { expected: String, run: Custom },
}

struct Case {
    name: String,
    class: &'static str,
    summary: String,
    action: Action,
}

struct Outcome {
    name: String,
    class: &'static str,
    summary: String,
    expected: String,
    observed: String,
    ok: bool,
}

impl Case {
    fn req(name: &str, class: &'static str, summary: &str, req: Request, status: u16, code: Option<&'static str>) -> Self {
        Self { name: name.into(), class, summary: summary.into(), action: Action::Send { send: Send::Req(req), status, code, check: None, hardened: true } }
    }

    fn raw(name: &str, class: &'static str, summary: &str, bytes: &[u8], status: u16, code: Option<&'static str>) -> Self {
        Self { name: name.into(), class, summary: summary.into(), action: Action::Send { send: Send::Raw(bytes.to_vec()), status, code, check: None, hardened: true } }
    }

    fn custom(name: &str, class: &'static str, summary: &str, expected: &str, run: impl Fn(&Ctx) -> (String, bool) + 'static) -> Self {
        Self { name: name.into(), class, summary: summary.into(), action: Action::Custom { expected: expected.into(), run: Box::new(run) } }
    }

    /// An extra check on the response and on what reached the upstream.
    fn check(mut self, f: impl Fn(&Response, Option<&UpRequest>) -> Result<(), String> + 'static) -> Self {
        if let Action::Send { check, .. } = &mut self.action {
            *check = Some(Box::new(f));
        }
        self
    }

    /// The reply comes from Envoy itself (codec), before any filter: no security headers.
    fn envoy_reply(mut self) -> Self {
        if let Action::Send { hardened, .. } = &mut self.action {
            *hardened = false;
        }
        self
    }
}

struct Ctx<'a> {
    envoy: &'a Envoy,
}

impl Ctx<'_> {
    fn send(&self, req: Request) -> Result<Response, String> {
        req.send(self.envoy.port).map_err(|e| format!("no response ({e})"))
    }
}

fn code_of(r: &Response) -> Option<String> {
    serde_json::from_slice::<Value>(&r.body).ok().and_then(|v| v["code"].as_str().map(str::to_string))
}

fn describe(r: &Response) -> String {
    match code_of(r) {
        Some(c) => format!("{} {c}", r.status),
        None => format!("{}", r.status),
    }
}

fn run_case(e: &Envoy, case: Case) -> Outcome {
    let ctx = Ctx { envoy: e };
    let (expected, observed, ok) = match case.action {
        Action::Custom { expected, run } => {
            let (observed, ok) = run(&ctx);
            (expected, observed, ok)
        }
        Action::Send { send, status, code, check, hardened } => {
            let expected = match code {
                Some(c) => format!("{status} {c}"),
                None => format!("{status}"),
            };
            let before = e.upstream.count();
            let result = match send {
                Send::Req(r) => ctx.send(r),
                Send::Raw(b) => e.send_raw(&b).map_err(|err| format!("no response ({err})")),
            };
            let after = e.upstream.count();
            let seen = if after > before { e.upstream.requests().pop() } else { None };
            match result {
                Err(msg) => (expected, msg, false),
                Ok(r) => {
                    let mut observed = describe(&r);
                    let mut problems = Vec::new();
                    if r.status != status || code.is_some_and(|c| code_of(&r).as_deref() != Some(c)) {
                        problems.push(String::new());
                    }
                    if r.status >= 400 && after != before {
                        problems.push("refused but reached upstream".into());
                    }
                    if r.status < 300 && after == before {
                        problems.push("allowed but never reached upstream".into());
                    }
                    if hardened && SECURITY_HEADERS.iter().any(|h| r.header(h).is_none()) {
                        problems.push("security headers missing".into());
                    }
                    if !hardened && code_of(&r).is_some() {
                        problems.push("expected Envoy's own reply, got a filter's".into());
                    }
                    if let Some(check) = check {
                        if let Err(m) = check(&r, seen.as_ref()) {
                            problems.push(m);
                        }
                    }
                    let extra: Vec<&String> = problems.iter().filter(|p| !p.is_empty()).collect();
                    if !extra.is_empty() {
                        observed = format!("{observed} ({})", extra.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; "));
                    }
                    (expected, observed, problems.is_empty())
                }
            }
        }
    };
    Outcome { name: case.name, class: case.class, summary: case.summary, expected, observed, ok }
}

// ---------------------------------------------------------------------------------------
// The chain

struct Peer {
    jwks: Value,
    tokens: HashMap<String, String>,
}

fn peer_tokens() -> Peer {
    let v: Value = serde_json::from_str(&python(&peer("attack_tokens.py"), &[])).expect("attack_tokens.py output");
    let tokens = v["tokens"].as_object().expect("tokens").iter().map(|(k, t)| (k.clone(), t.as_str().unwrap_or_default().to_string())).collect();
    Peer { jwks: v["jwks"].clone(), tokens }
}

/// The chain of envoy-config/envoy.yaml; the IdP (JWKS) is a server of its own so that the
/// demo upstream's request count shows exactly what got through.
fn chain(jwks: &Value) -> (Envoy, Upstream) {
    let body = jwks.to_string();
    let idp = Upstream::with_handler(move |_| UpResponse::new(200).header("content-type", "application/json").body(body.clone()));
    let up = Upstream::echo();
    let e = Envoy::builder()
        .config_file(&root().join("envoy-config/envoy.yaml"))
        .map_cluster("demo_upstream", up.port())
        .map_cluster("idp", idp.port())
        .process_env("PARTNER_A_SECRET", PARTNER_SECRET)
        .upstream(up)
        .concurrency(2)
        .start();
    (e, idp)
}

fn bearer(req: Request, token: &str) -> Request {
    req.header("authorization", &format!("Bearer {token}"))
}

/// A raw HTTP/1.1 request: request line, extra header lines (exact bytes), no body.
fn raw_get(target: &[u8], headers: &[&[u8]]) -> Vec<u8> {
    let mut out = b"GET ".to_vec();
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\nhost: localhost\r\n");
    for h in headers {
        out.extend_from_slice(h);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out
}

fn auth_line(token: &str) -> Vec<u8> {
    format!("authorization: Bearer {token}").into_bytes()
}

fn upstream_lacks(names: &'static [&'static str]) -> impl Fn(&Response, Option<&UpRequest>) -> Result<(), String> {
    move |_, seen| {
        let seen = seen.ok_or("nothing reached upstream")?;
        match names.iter().find(|n| seen.header(n).is_some()) {
            Some(n) => Err(format!("upstream saw {n}")),
            None => Ok(()),
        }
    }
}

/// The upstream got no `x-role` header (a header injected through the value before it).
fn no_injected_role(_: &Response, seen: Option<&UpRequest>) -> Result<(), String> {
    let seen = seen.ok_or("nothing reached upstream")?;
    match seen.header("x-role") {
        Some(v) => Err(format!("upstream saw x-role: {v}")),
        None if seen.header("x-note").is_some_and(|v| v.contains('\r')) => Err("upstream saw a CR".into()),
        None => Ok(()),
    }
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// The catalog

fn jwt_rows(t: &HashMap<String, String>) -> Vec<Case> {
    let tok = |n: &str| t.get(n).cloned().unwrap_or_else(|| panic!("peer has no token {n}"));
    let admin = |n: &str| bearer(Request::get("/admin/stats"), &tok(n));
    let orders = |n: &str| bearer(Request::get("/orders"), &tok(n));
    let mut rows = vec![Case::req("valid admin token (control)", "control", "GET /admin/stats, issuer-signed admin+MFA token", admin("admin_valid"), 200, None)];
    for alg in ["none", "None", "NONE", "nOnE"] {
        rows.push(Case::req(&format!("alg: {alg}"), "JWT alg none (RFC 8725 3.1)", &format!("GET /admin/stats, unsigned admin token, header alg \"{alg}\""), admin(&format!("alg_{alg}")), 401, Some("alg_unsupported")));
    }
    rows.extend([
        Case::req("alg none + a real signature", "JWT alg none", "alg none, issuer's signature of another token appended", admin("alg_none_with_sig"), 401, Some("alg_unsupported")),
        Case::req("alg missing", "JWT alg none", "no alg member, issuer-signed", admin("alg_missing"), 401, Some("alg_unsupported")),
        Case::req("alg empty", "JWT alg none", "alg \"\", no signature", admin("alg_empty"), 401, Some("alg_unsupported")),
        Case::req("HS256 keyed with RSA public key (SPKI PEM)", "JWT alg confusion (CVE-2015-9235, CVE-2016-10555)", "alg HS256, kid demo-1, HMAC key = issuer public key PEM", admin("hs256_spki_pem"), 401, Some("alg_mismatch")),
        Case::req("HS256 keyed with RSA public key, no kid", "JWT alg confusion", "alg HS256, no kid, HMAC key = public key PEM", admin("hs256_spki_pem_nokid"), 401, Some("alg_mismatch")),
        Case::req("HS256 keyed with PKCS#1 PEM", "JWT alg confusion", "alg HS256, HMAC key = RSA PUBLIC KEY PEM", admin("hs256_pkcs1_pem"), 401, Some("alg_mismatch")),
        Case::req("HS256 keyed with the JWK JSON", "JWT alg confusion", "alg HS256, HMAC key = the published JWK text", admin("hs256_jwk_json"), 401, Some("alg_mismatch")),
        Case::req("HS256 keyed with the modulus", "JWT alg confusion", "alg HS256, HMAC key = n bytes", admin("hs256_modulus"), 401, Some("alg_mismatch")),
        Case::req("PS256 over an RS256-pinned key", "JWT alg substitution", "alg PS256, kid demo-1 (JWK alg RS256), attacker key", admin("ps256_attacker"), 401, Some("alg_mismatch")),
        Case::req("kid path traversal", "JWT kid injection", "kid ../../../../../../dev/null, HS256 with empty key", admin("kid_dev_null"), 401, Some("unknown_kid")),
        Case::req("kid SQL injection", "JWT kid injection", "kid ' OR 1=1--, HS256 key \"1\"", admin("kid_sql"), 401, Some("unknown_kid")),
        Case::req("kid SQL UNION", "JWT kid injection", "kid x' UNION SELECT 'k'--, HS256 key \"k\"", admin("kid_sql_union"), 401, Some("unknown_kid")),
        Case::req("unknown kid", "JWT kid injection", "kid demo-2 (not in JWKS), issuer-signed", admin("kid_unknown"), 401, Some("unknown_kid")),
        Case::req("kid with NUL suffix", "JWT kid injection (C-string truncation)", "kid \"demo-1\\u0000\", issuer-signed", admin("kid_nul_suffix"), 401, Some("unknown_kid")),
        Case::req("kid not a string", "JWT kid injection (NoSQL)", "kid {\"$ne\": \"\"}, issuer-signed", admin("kid_not_string"), 401, Some("token_malformed")),
        Case::req("jku to attacker JWKS", "JWT embedded key (jku)", "attacker-signed, kid attacker-1, jku http://127.0.0.1:9/jwks.json", admin("jku_attacker"), 401, Some("unknown_kid")),
        Case::req("jku with the real kid", "JWT embedded key (jku)", "attacker-signed, kid demo-1, jku", admin("jku_real_kid"), 401, Some("signature_invalid")),
        Case::req("x5u to attacker cert", "JWT embedded key (x5u)", "attacker-signed, kid attacker-1, x5u", admin("x5u_attacker"), 401, Some("unknown_kid")),
        Case::req("embedded jwk, real kid", "JWT embedded key (jwk, CVE-2018-0114)", "attacker-signed, header jwk = attacker public key, kid demo-1", admin("jwk_embedded"), 401, Some("signature_invalid")),
        Case::req("embedded jwk, no kid", "JWT embedded key (jwk, CVE-2018-0114)", "attacker-signed, header jwk = attacker public key", admin("jwk_embedded_nokid"), 401, Some("signature_invalid")),
        Case::req("embedded x5c self-signed", "JWT embedded key (x5c)", "attacker-signed, x5c = self-signed cert CN idp.example", admin("x5c_self_signed"), 401, Some("signature_invalid")),
        Case::req("forged signature", "JWT forgery", "attacker key, kid demo-1", admin("forged_signature"), 401, Some("signature_invalid")),
        Case::req("expired", "JWT claims", "exp = now-120 (skew 30)", admin("expired"), 401, Some("token_expired")),
        Case::req("not yet valid", "JWT claims", "nbf = now+300", admin("not_yet_valid"), 401, Some("token_not_yet_valid")),
        Case::req("issued in the future", "JWT claims", "iat = now+300", admin("iat_future"), 401, Some("iat_in_future")),
        Case::req("wrong issuer", "JWT claims", "iss https://evil.example, issuer-signed", admin("wrong_issuer"), 401, Some("issuer_not_allowed")),
        Case::req("issuer with trailing slash", "JWT claims", "iss https://idp.example/", admin("issuer_trailing_slash"), 401, Some("issuer_not_allowed")),
        Case::req("issuer in upper case", "JWT claims", "iss HTTPS://IDP.EXAMPLE", admin("issuer_case"), 401, Some("issuer_not_allowed")),
        Case::req("wrong audience", "JWT claims", "aud billing-api", admin("wrong_audience"), 401, Some("audience_mismatch")),
        Case::req("audience missing", "JWT claims", "no aud", admin("audience_missing"), 401, Some("audience_mismatch")),
        Case::req("exp missing", "JWT claims", "no exp", admin("exp_missing"), 401, Some("exp_missing")),
        Case::req("exp as a string", "JWT claims (type confusion)", "exp \"<now+600>\"", admin("exp_string"), 401, Some("claim_invalid")),
        Case::req("30-day token as access token", "JWT claims", "exp - iat = 30 d (max_lifetime_s 900)", admin("lifetime_30d"), 401, Some("lifetime_too_long")),
        // header_hardening's 16 KiB header budget is the same as jwt_verify's max_token_bytes,
        // so it answers first.
        Case::req("token over max_token_bytes", "size limits", "17 KB issuer-signed token", admin("oversize_17k"), 431, Some("headers_too_large")),
        Case::req("token over Envoy's header limit", "size limits", "94 KB token (Envoy max_request_headers_kb 60)", admin("oversize_70k"), 431, None).envoy_reply(),
        Case::req("duplicate alg in header", "JSON duplicate keys (parser differential)", "{\"alg\":\"RS256\",...,\"alg\":\"none\"}, issuer-signed", admin("dup_header_alg"), 401, Some("token_duplicate_key")),
        Case::req("duplicate kid in header", "JSON duplicate keys", "kid demo-1 then kid ../../dev/null", admin("dup_header_kid"), 401, Some("token_duplicate_key")),
        Case::req("duplicate role in payload", "JSON duplicate keys", "viewer token with a second \"role\":\"admin\", issuer-signed", admin("dup_payload_role"), 401, Some("token_duplicate_key")),
        Case::req("duplicate sub in payload", "JSON duplicate keys", "sub bob then sub root", admin("dup_payload_sub"), 401, Some("token_duplicate_key")),
        Case::req("duplicate in nested object", "JSON duplicate keys", "realm.roles twice", admin("dup_payload_nested"), 401, Some("token_duplicate_key")),
        Case::req("duplicate via escaped name", "JSON duplicate keys", "\"r\\u006fle\":\"admin\" after \"role\"", admin("dup_payload_escaped"), 401, Some("token_duplicate_key")),
        Case::req("valid viewer token (control)", "control", "GET /orders, issuer-signed viewer token", orders("b64_trailing_bits_signature_control"), 200, None),
        Case::req("signature with trailing bits set", "non-canonical base64url (token malleability)", "the control token with the signature's 4 unused bits set", orders("b64_trailing_bits_signature"), 401, Some("token_malformed")),
        Case::req("payload with padding", "non-canonical base64url", "payload segment + \"==\", issuer-signed over it", orders("b64_padding"), 401, Some("token_malformed")),
        Case::req("payload in '+/' alphabet", "non-canonical base64url", "payload in standard base64, issuer-signed over it", orders("b64_std_alphabet"), 401, Some("token_malformed")),
        Case::req("payload with trailing bits set", "non-canonical base64url", "last payload char with unused bits set, issuer-signed", orders("b64_trailing_bits_payload"), 401, Some("token_malformed")),
        Case::req("space inside a segment", "non-canonical base64url", "a space inside the payload, issuer-signed", orders("b64_whitespace"), 401, Some("token_malformed")),
        Case::req("five segments (JWE shape)", "JWT malformed", "valid token + \".x.y\"", orders("jwe_five_segments"), 401, Some("token_malformed")),
        Case::req("token in the query string", "credential source confusion", "GET /admin/stats?access_token=<admin token>", Request::get(&format!("/admin/stats?access_token={}", tok("admin_valid"))), 401, Some("authentication_required")),
        Case::req("two authorization headers", "repeated headers (CVE-2021-32777 class)", "authorization: Bearer <viewer> and authorization: Bearer <admin>", bearer(admin("viewer"), &tok("admin_valid")), 401, Some("token_ambiguous")),
        Case::req("two tokens in one authorization", "repeated headers", "authorization: Bearer <viewer>, Bearer <admin>", Request::get("/admin/stats").header("authorization", &format!("Bearer {}, Bearer {}", tok("viewer"), tok("admin_valid"))), 401, Some("token_ambiguous")),
    ]);
    rows
}

fn header_rows(t: &HashMap<String, String>) -> Vec<Case> {
    let tok = |n: &str| t.get(n).cloned().unwrap_or_else(|| panic!("peer has no token {n}"));
    let trader = tok("trader");
    let viewer = tok("viewer");
    let tr = |p: &str| bearer(Request::get(p), &trader);
    let identity_headers = |r: Request| {
        r.header("x-jwt-sub", "root")
            .header("x-user", "root")
            .header("x-roles", "admin")
            .header("x-role", "admin")
            .header("role", "admin")
            .header("x-jwt-payload", "eyJyb2xlIjoiYWRtaW4iLCJhbXIiOlsib3RwIl19")
            .header("x-forwarded-user", "root")
            .header("x-remote-user", "root")
            .header("x-auth-request-user", "root")
            .header("x-amr", "otp")
            .header("x-scopes", "admin:manage orders:write")
            .header("x-api-key-id", "reporting")
    };
    let ta = auth_line(&trader);
    vec![
        // Identity claimed in headers.
        Case::req("identity headers, no token", "client-sent identity headers", "GET /admin/stats with x-jwt-sub/x-user/x-roles/x-role/x-jwt-payload/x-forwarded-user/... = admin", identity_headers(Request::get("/admin/stats")), 401, Some("authentication_required")),
        Case::req("identity headers + viewer token", "client-sent identity headers", "viewer POST /orders with the same admin headers", identity_headers(bearer(Request::post("/orders"), &viewer)).json(&json!({"sku": "X1"})), 403, Some("permission_denied")),
        Case::req("two role headers", "repeated headers (CVE-2026-26308 class)", "viewer GET /admin/stats, x-role: viewer + x-role: admin", bearer(Request::get("/admin/stats"), &viewer).header("x-role", "viewer").header("x-role", "admin"), 403, Some("permission_denied")),
        // Control characters (CVE-2019-9900).
        Case::raw("NUL in a header value", "CR/LF/NUL in headers (CVE-2019-9900)", "x-note: a\\0b", &raw_get(b"/orders", &[&ta, b"x-note: a\0b"]), 400, None).envoy_reply(),
        Case::raw("NUL after the token", "CR/LF/NUL in headers (CVE-2019-9900)", "authorization: Bearer <trader>\\0admin", &raw_get(b"/orders", &[&[ta.as_slice(), b"\0admin"].concat()]), 400, None).envoy_reply(),
        Case::raw("bare LF header injection", "CR/LF/NUL in headers", "x-note: a\\nx-role: admin (LF only)", &raw_get(b"/admin/stats", &[&ta, b"x-note: a\nx-role: admin"]), 403, Some("permission_denied")),
        // Envoy's codec drops a bare CR and unfolds obs-fold into one value (RFC 9112 allows
        // replacing them; measured): no header is injected, nothing for a filter to see.
        Case::raw("bare CR inside a value", "CR/LF/NUL in headers", "trader GET /orders, x-note: a\\rx-role: admin", &raw_get(b"/orders", &[&ta, b"x-note: a\rx-role: admin"]), 200, None)
            .check(no_injected_role),
        Case::raw("obs-fold continuation", "CR/LF/NUL in headers (RFC 9112 5.2)", "trader GET /orders, x-note: a\\r\\n  x-role: admin", &raw_get(b"/orders", &[&ta, b"x-note: a\r\n  x-role: admin"]), 200, None)
            .check(no_injected_role),
        Case::raw("space before colon", "CR/LF/NUL in headers (RFC 9112 5.1)", "\"x-role : admin\"", &raw_get(b"/admin/stats", &[&ta, b"x-role : admin"]), 400, None).envoy_reply(),
        Case::raw("NUL in the path", "CR/LF/NUL in path", "GET /orders\\0/../admin/stats", &raw_get(b"/orders\0/../admin/stats", &[&ta]), 400, None).envoy_reply(),
        Case::req("encoded CRLF in the path", "CR/LF/NUL in path", "GET /orders%0d%0ax-role:%20admin", tr("/orders%0d%0ax-role:%20admin"), 400, Some("path_control_character")),
        Case::req("encoded NUL in the path", "CR/LF/NUL in path", "GET /admin%00/stats", tr("/admin%00/stats"), 400, Some("path_control_character")),
        // Path confusion (CVE-2019-9901, CVE-2021-29492).
        Case::req("dot-dot into allowed", "path confusion (CVE-2019-9901)", "trader GET /admin/../orders", tr("/admin/../orders"), 400, Some("path_dot_segment")),
        Case::req("dot-dot into admin", "path confusion (CVE-2019-9901)", "trader GET /orders/../admin/stats", tr("/orders/../admin/stats"), 400, Some("path_dot_segment")),
        Case::req("single dot segment", "path confusion", "trader GET /./admin/stats", tr("/./admin/stats"), 400, Some("path_dot_segment")),
        Case::req("%2e%2e", "path confusion (CVE-2019-9901)", "trader GET /orders/%2e%2e/admin/stats", tr("/orders/%2e%2e/admin/stats"), 400, Some("path_encoded_dot_segment")),
        Case::req("%2E%2E upper case", "path confusion", "trader GET /orders/%2E%2E/admin/stats", tr("/orders/%2E%2E/admin/stats"), 400, Some("path_encoded_dot_segment")),
        Case::req(".%2e mixed", "path confusion", "trader GET /orders/.%2e/admin/stats", tr("/orders/.%2e/admin/stats"), 400, Some("path_encoded_dot_segment")),
        Case::req("%2F encoded slash", "path confusion (CVE-2021-29492)", "trader GET /admin%2fstats", tr("/admin%2fstats"), 400, Some("path_encoded_slash")),
        Case::req("%2F traversal", "path confusion (CVE-2021-29492)", "trader GET /orders%2F..%2Fadmin%2Fstats", tr("/orders%2F..%2Fadmin%2Fstats"), 400, Some("path_encoded_slash")),
        Case::req("%5C encoded backslash", "path confusion", "trader GET /orders%5c..%5cadmin", tr("/orders%5c..%5cadmin"), 400, Some("path_encoded_slash")),
        Case::raw("raw backslash", "path confusion", "trader GET /orders\\..\\admin\\stats", &raw_get(b"/orders\\..\\admin\\stats", &[&ta]), 400, Some("path_backslash")),
        Case::req("double slash", "path confusion", "trader GET //admin//stats (merged, still admin)", tr("//admin//stats"), 403, Some("permission_denied")),
        Case::req("overlong UTF-8 slash", "path confusion (overlong UTF-8, CVE-2000-0884 class)", "anonymous GET /products/x%c0%af..%c0%af..%c0%afadmin%c0%afstats", Request::get("/products/x%c0%af..%c0%af..%c0%afadmin%c0%afstats"), 400, Some("path_bad_percent_encoding")),
        Case::req("overlong UTF-8 dots", "path confusion (overlong UTF-8)", "anonymous GET /products/%c0%ae%c0%ae/%c0%ae%c0%ae/admin/stats", Request::get("/products/%c0%ae%c0%ae/%c0%ae%c0%ae/admin/stats"), 400, Some("path_bad_percent_encoding")),
        Case::req("%u unicode escape", "path confusion (IIS %u)", "trader GET /orders/%u002e%u002e/admin", tr("/orders/%u002e%u002e/admin"), 400, Some("path_bad_percent_encoding")),
        Case::raw("raw non-ASCII in path", "path confusion (unicode)", "trader GET /admin/ſtats (raw UTF-8)", &raw_get("/admin/ſtats".as_bytes(), &[&ta]), 400, None).envoy_reply(),
        Case::req("fullwidth solidus encoded", "path confusion (unicode)", "anonymous GET /products/x%ef%bc%8f..%ef%bc%8fadmin (U+FF0F)", Request::get("/products/x%ef%bc%8f..%ef%bc%8fadmin"), 200, None),
        Case::req("case change", "path confusion", "trader GET /ADMIN/stats", tr("/ADMIN/stats"), 403, Some("no_matching_rule")),
        Case::req("encoded unreserved", "path confusion", "trader GET /%61dmin/stats (%61 = a)", tr("/%61dmin/stats"), 403, Some("permission_denied")),
        Case::req("matrix parameter", "path confusion (;)", "trader GET /orders;/../admin/stats", tr("/orders;/../admin/stats"), 400, Some("path_dot_segment")),
        Case::req("trailing slash", "path confusion", "trader GET /admin/stats/", tr("/admin/stats/"), 403, Some("permission_denied")),
        Case::raw("absolute-form target", "path confusion", "trader GET http://localhost/admin/stats", &raw_get(b"http://localhost/admin/stats", &[&ta]), 403, Some("permission_denied")),
        Case::raw("relative target", "path confusion", "GET admin/stats", &raw_get(b"admin/stats", &[&ta]), 400, None).envoy_reply(),
        // Fragments and queries used for matching (CVE-2021-32779, CVE-2020-8595).
        Case::raw("fragment after admin path", "fragment (CVE-2021-32779)", "trader GET /admin/stats#/../../orders", &raw_get(b"/admin/stats#/../../orders", &[&ta]), 400, None).envoy_reply(),
        Case::raw("fragment on allowed path", "fragment (CVE-2021-32779)", "trader GET /orders#admin", &raw_get(b"/orders#admin", &[&ta]), 400, None).envoy_reply(),
        Case::req("encoded #", "fragment", "trader GET /admin/stats%23/../../orders", tr("/admin/stats%23/../../orders"), 400, Some("path_dot_segment")),
        Case::req("query ignored for rules", "query in matching (CVE-2020-8595)", "trader GET /admin/stats?/orders", tr("/admin/stats?/orders"), 403, Some("permission_denied")),
        Case::req("query on a protected prefix", "query in matching (CVE-2020-8595)", "anonymous GET /admin?/products/1", Request::get("/admin?/products/1"), 401, Some("authentication_required")),
        Case::req("traversal in the query", "query in matching", "anonymous GET /products/1?x=/../../admin/stats (query is not a path)", Request::get("/products/1?x=/../../admin/stats"), 200, None),
        // Host (CVE-2021-39155).
        Case::req("host in upper case", "Host case (CVE-2021-39155)", "trader GET /admin/stats, Host: API.EXAMPLE.COM", tr("/admin/stats").header("host", "API.EXAMPLE.COM"), 403, Some("permission_denied")),
        // Envoy joins the two lines into `:authority: localhost,admin.internal`; header_hardening
        // refuses it (RFC 9112 3.2). Found by this row.
        Case::raw("two Host headers", "repeated headers (RFC 9112 3.2)", "trader GET /orders, host: localhost + host: admin.internal", &raw_get(b"/orders", &[&ta, b"host: admin.internal"]), 400, Some("invalid_header_value")),
        Case::req("userinfo in Host", "Host confusion", "trader GET /orders, Host: localhost@admin.internal", tr("/orders").header("host", "localhost@admin.internal"), 400, Some("invalid_header_value")),
        // x-envoy-* (CVE-2024-45806).
        Case::req("x-envoy-original-path", "client x-envoy-* (CVE-2024-45806)", "anonymous GET /admin/stats, x-envoy-original-path: /products/1", Request::get("/admin/stats").header("x-envoy-original-path", "/products/1"), 401, Some("authentication_required")),
        Case::req("x-envoy-internal", "client x-envoy-* (CVE-2024-45806)", "anonymous GET /orders, x-envoy-internal: true", Request::get("/orders").header("x-envoy-internal", "true"), 401, Some("authentication_required")),
        Case::req("x-envoy-* routing headers", "client x-envoy-* (CVE-2024-45806)", "trader GET /orders, x-envoy-internal, x-envoy-upstream-rq-timeout-ms: 1, x-envoy-retry-on", tr("/orders").header("x-envoy-internal", "true").header("x-envoy-upstream-rq-timeout-ms", "1").header("x-envoy-retry-on", "5xx"), 200, None)
            .check(upstream_lacks(&["x-envoy-internal", "x-envoy-upstream-rq-timeout-ms", "x-envoy-retry-on"])),
        // Method override.
        Case::req("override on a POST-only route", "method override", "anonymous GET /auth/login, X-HTTP-Method-Override: POST", Request::get("/auth/login").header("x-http-method-override", "POST"), 403, Some("no_matching_rule")),
        Case::req("override to write", "method override", "viewer GET /orders, X-HTTP-Method-Override: POST (header stripped)", bearer(Request::get("/orders"), &viewer).header("x-http-method-override", "POST").header("x-http-method", "DELETE").header("x-method-override", "PUT"), 200, None)
            .check(|_, seen| {
                let seen = seen.ok_or("nothing reached upstream")?;
                if seen.method != "GET" {
                    return Err(format!("upstream method {}", seen.method));
                }
                match ["x-http-method-override", "x-http-method", "x-method-override"].iter().find(|n| seen.header(n).is_some()) {
                    Some(n) => Err(format!("upstream saw {n}")),
                    None => Ok(()),
                }
            }),
        Case::req("override on admin", "method override", "viewer GET /admin/stats, X-HTTP-Method: DELETE", bearer(Request::get("/admin/stats"), &viewer).header("x-http-method", "DELETE"), 403, Some("permission_denied")),
        Case::req("TRACE", "method", "TRACE /orders", tr("/orders").header("x-m", "1").clone_method("TRACE"), 405, Some("method_not_allowed")),
        Case::req("unknown method", "method", "PROPFIND /admin/stats", tr("/admin/stats").clone_method("PROPFIND"), 405, Some("method_not_allowed")),
        Case::raw("lower-case method", "method", "get /admin/stats", &[b"get /admin/stats HTTP/1.1\r\nhost: localhost\r\n".as_slice(), &ta, b"\r\nconnection: close\r\n\r\n"].concat(), 400, None).envoy_reply(),
        // Sizes.
        Case::req("content-length over the limit", "oversized body", "POST /orders, content-length 2 MiB (limit 1 MiB)", bearer(Request::post("/orders"), &trader).header("content-type", "application/json").header("content-length", "2097152"), 413, Some("body_too_large")),
        Case::req("chunked body over the limit", "oversized body", "POST /orders, 1.5 MiB chunked in 3 pieces", bearer(Request::post("/orders"), &trader).header("content-type", "application/json").chunked(vec![vec![b' '; 512 * 1024]; 3], Duration::from_millis(10)), 413, Some("body_too_large")),
        Case::req("headers over 16 KiB", "oversized headers", "one 17 KB header", tr("/orders").header("x-pad", &"a".repeat(17 * 1024)), 431, Some("headers_too_large")),
        // Envoy's own max_headers_count (100) answers before header_hardening's.
        Case::req("101 headers", "oversized headers", "101 small headers", (0..101).fold(tr("/orders"), |r, i| r.header(&format!("x-h{i}"), "1")), 431, None).envoy_reply(),
        Case::req("header over Envoy's limit", "oversized headers", "one 70 KB header", tr("/orders").header("x-pad", &"a".repeat(70 * 1024)), 431, None).envoy_reply(),
        Case::raw("content-length + chunked", "request smuggling (CL.TE)", "content-length: 4 and transfer-encoding: chunked", &[b"POST /orders HTTP/1.1\r\nhost: localhost\r\n".as_slice(), &ta, b"\r\ncontent-type: application/json\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n0\r\n\r\n"].concat(), 400, None).envoy_reply(),
        Case::raw("two content-lengths", "request smuggling (CL.CL)", "content-length: 2 and content-length: 10", &[b"POST /orders HTTP/1.1\r\nhost: localhost\r\n".as_slice(), &ta, b"\r\ncontent-type: application/json\r\ncontent-length: 2\r\ncontent-length: 10\r\nconnection: close\r\n\r\n{}"].concat(), 400, None).envoy_reply(),
    ]
}

trait CloneMethod {
    fn clone_method(self, m: &str) -> Self;
}

impl CloneMethod for Request {
    fn clone_method(mut self, m: &str) -> Self {
        self.method = m.into();
        self
    }
}

/// RFC 9421 signed webhooks: signatures made by the independent peer just before sending.
fn hmac_rows() -> Vec<Case> {
    let body = r#"{"order": "ORD-1", "status": "shipped"}"#;
    let nonce = format!("n-{}-{}", std::process::id(), now_s());
    let job = |extra: Value| {
        let mut j = json!({
            "method": "POST", "url": "http://api.example.com/webhooks/orders",
            "headers": {"content-type": "application/json", "host": "api.example.com"},
            "body": body, "keyid": "partner-a", "secret_b64": PARTNER_SECRET,
            "components": ["@method", "@target-uri", "content-type"], "digest": "sha-256",
        });
        if let (Some(o), Some(x)) = (j.as_object_mut(), extra.as_object()) {
            o.extend(x.clone());
        }
        j
    };
    let jobs = json!([
        job(json!({"nonce": nonce})),
        job(json!({})),
        job(json!({"created_in": -400})),
        job(json!({"created_in": 300})),
    ]);
    let out: Value = serde_json::from_str(&python(&peer("hmac_sign.py"), &["sign", &jobs.to_string()])).expect("signed");
    let headers = |i: usize| -> Vec<(String, String)> {
        out[i].as_object().map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect()).unwrap_or_default()
    };
    let signed = move |i: usize, method: &str, path: &str| headers(i).into_iter().fold(Request::new(method, path), |r, (k, v)| r.header(&k, &v));
    let body_is = |want: &'static str| move |_: &Response, seen: Option<&UpRequest>| -> Result<(), String> {
        match seen {
            Some(s) if s.body == want.as_bytes() => Ok(()),
            Some(s) => Err(format!("upstream body {:?}", String::from_utf8_lossy(&s.body))),
            None => Err("nothing reached upstream".into()),
        }
    };
    const BODY: &str = r#"{"order": "ORD-1", "status": "shipped"}"#;
    let pieces = |b: &str| b.as_bytes().chunks(8).map(<[u8]>::to_vec).collect::<Vec<_>>();
    vec![
        Case::req("signed webhook with nonce (control)", "control", "POST /webhooks/orders, RFC 9421 hmac-sha256 + Content-Digest + nonce", signed(0, "POST", "/webhooks/orders").body(body), 200, None).check(body_is(BODY)),
        Case::req("nonce replayed", "HMAC replay", "the same signed request again", signed(0, "POST", "/webhooks/orders").body(body), 401, Some("replay")),
        Case::req("signature created 400 s ago", "HMAC replay (created window)", "created = now-400 (max_age_s 300 + skew 30)", signed(2, "POST", "/webhooks/orders").body(body), 401, Some("signature_expired")),
        Case::req("signature created in the future", "HMAC replay (created window)", "created = now+300", signed(3, "POST", "/webhooks/orders").body(body), 401, Some("signature_not_yet_valid")),
        Case::req("signature lifted to another path", "HMAC replay (re-targeted)", "valid signature for /webhooks/orders sent to /webhooks/refunds", signed(1, "POST", "/webhooks/refunds").body(body), 401, Some("signature_invalid")),
        Case::req("signature lifted to another method", "HMAC replay (re-targeted)", "valid POST signature sent as PUT", signed(1, "PUT", "/webhooks/orders").body(body), 401, Some("signature_invalid")),
        Case::req("slow chunked body", "HMAC slow/chunked body", "signed, body in 8-byte chunks 40 ms apart", signed(1, "POST", "/webhooks/orders").chunked(pieces(body), Duration::from_millis(40)), 200, None).check(body_is(BODY)),
        Case::req("chunked body tampered mid-stream", "HMAC slow/chunked body", "signed, last chunk changed (shipped -> refund!)", signed(1, "POST", "/webhooks/orders").chunked(pieces(&body.replace("shipped", "refund!")), Duration::from_millis(10)), 400, Some("digest_mismatch")),
        Case::req("chunked body with an extra chunk", "HMAC slow/chunked body", "signed, valid body + one more chunk", signed(1, "POST", "/webhooks/orders").chunked([pieces(body), vec![b" ".to_vec()]].concat(), Duration::from_millis(10)), 400, Some("digest_mismatch")),
        // Without a nonce the chain accepts a replay inside max_age_s (require_nonce: false in
        // envoy.yaml): documented limit, asserted so that a change is noticed.
        Case::req("replay without nonce, inside window", "HMAC replay (documented limit)", "a nonce-less signed request sent a second time", signed(1, "POST", "/webhooks/orders").body(body), 200, None),
        Case::req("oversized chunked body to HMAC route", "oversized body", "signed, 1.5 MiB chunked", signed(1, "POST", "/webhooks/orders").chunked(vec![vec![b' '; 512 * 1024]; 3], Duration::from_millis(10)), 413, Some("body_too_large")),
    ]
}

/// Rate-limit keys from forged client-address headers. The chain keys anonymous callers by
/// the TCP peer (use_remote_address: true): 10 requests/min per IP on public routes.
fn rate_rows() -> Vec<Case> {
    let forged = ["x-forwarded-for", "x-real-ip", "forwarded", "true-client-ip", "x-client-ip", "x-envoy-external-address", "cf-connecting-ip"];
    let mut rows = vec![Case::custom(
        "XFF rotation cannot split the bucket",
        "forged x-forwarded-for (rate-limit evasion)",
        "anonymous GET /products/1 x15, each with its own x-forwarded-for 203.0.113.i",
        "429 rate_limited by request 11",
        |ctx| {
            for i in 1..=15 {
                let r = match ctx.send(Request::get("/products/1").header("x-forwarded-for", &format!("203.0.113.{i}"))) {
                    Ok(r) => r,
                    Err(m) => return (m, false),
                };
                match r.status {
                    200 => continue,
                    429 => {
                        let policy = r.header("ratelimit-policy").unwrap_or_default().to_string();
                        return (format!("429 {} at request {i} ({policy})", code_of(&r).unwrap_or_default()), i <= 11 && code_of(&r).as_deref() == Some("rate_limited"));
                    }
                    _ => return (format!("{} at request {i}", describe(&r)), false),
                }
            }
            ("15 x 200: every forged address got a fresh bucket".into(), false)
        },
    )];
    for h in forged {
        let value = if h == "forwarded" { "for=198.51.100.7".to_string() } else { "198.51.100.7".to_string() };
        rows.push(Case::req(
            &format!("{h} after 429"),
            "forged client address (bucket reset)",
            &format!("anonymous GET /products/1, {h}: {value}"),
            Request::get("/products/1").header(h, &value),
            429,
            Some("rate_limited"),
        ));
    }
    rows
}

// ---------------------------------------------------------------------------------------

fn markdown(rows: &[Outcome]) -> String {
    let esc = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut out = String::from("| # | attack | class / CVE | request | expected | observed | |\n|---|---|---|---|---|---|---|\n");
    for (i, r) in rows.iter().enumerate() {
        let _ = writeln!(out, "| {} | {} | {} | {} | {} | {} | {} |", i + 1, esc(&r.name), esc(r.class), esc(&r.summary), esc(&r.expected), esc(&r.observed), if r.ok { "pass" } else { "**FAIL**" });
    }
    out
}

fn write_table(name: &str, text: &str) -> PathBuf {
    let path = root().join("target").join(name);
    let _ = std::fs::write(&path, text);
    path
}

/// Run rows against a fresh chain, then prove it is still alive. Returns the outcomes and the
/// tail of Envoy's log.
fn run_on_chain(peer: &Peer, label: &str, build: impl FnOnce() -> Vec<Case>) -> (Vec<Outcome>, String) {
    let (e, _idp) = chain(&peer.jwks);
    let mut outcomes: Vec<Outcome> = build().into_iter().map(|c| run_case(&e, c)).collect();
    // After the rows: a valid request still gets 200 (no VM died or got stuck), and the log
    // shows no panic or trap (FAIL_RELOAD would otherwise have hidden one behind a reload).
    let valid = bearer(Request::get("/admin/stats"), &peer.tokens["admin_valid"]);
    outcomes.push(run_case(&e, Case::req(&format!("valid request after the rows ({label})"), "liveness", "GET /admin/stats, valid admin token", valid, 200, None)));
    let logs = e.logs();
    let panics: Vec<&str> = logs.lines().filter(|l| l.contains("panicked") || l.contains("wasm trap") || l.contains("Function: proxy_on_")).collect();
    outcomes.push(Outcome {
        name: format!("no VM panicked ({label})"),
        class: "liveness",
        summary: "Envoy log after the rows".into(),
        expected: "no panic or trap line".into(),
        observed: if panics.is_empty() { "none".into() } else { panics.join(" / ") },
        ok: panics.is_empty(),
    });
    (outcomes, e2e::tail(&logs, 20))
}

/// The catalog on two chains started from the same file (each has its own shared data): the
/// per-IP flood limit of envoy.yaml (burst 100 per client address, and every row comes from
/// 127.0.0.1) must not turn the catalog's own rows into 429s.
#[test]
fn attack_catalog_through_the_chain() {
    let peer = peer_tokens();
    let peer = &peer;
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(move || run_on_chain(peer, "chain A", || jwt_rows(&peer.tokens)));
        let b = s.spawn(move || {
            run_on_chain(peer, "chain B", || {
                let mut rows = header_rows(&peer.tokens);
                rows.extend(hmac_rows());
                rows.extend(rate_rows());
                rows
            })
        });
        (a.join().expect("chain A"), b.join().expect("chain B"))
    });
    let outcomes: Vec<Outcome> = a.0.into_iter().chain(b.0).collect();
    let path = write_table("attack-table.md", &markdown(&outcomes));
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.ok).collect();
    assert!(
        failed.is_empty(),
        "{} of {} rows failed (table in {}):\n{}\nchain A log tail:\n{}\nchain B log tail:\n{}",
        failed.len(),
        outcomes.len(),
        path.display(),
        failed.iter().map(|o| format!("  {}: expected {}, observed {}", o.name, o.expected, o.observed)).collect::<Vec<_>>().join("\n"),
        a.1,
        b.1
    );
}

// ---------------------------------------------------------------------------------------
// Unsupported configuration: refused at load, with a log line naming the field.

/// envoy-config/envoy.yaml as a JSON value.
fn chain_config() -> Value {
    let text = std::fs::read_to_string(root().join("envoy-config/envoy.yaml")).expect("envoy.yaml");
    serde_norway::from_str(&text).expect("envoy.yaml parses")
}

/// The chain reduced to the filter named `name` (its entry exactly as in envoy.yaml, VM and
/// environment included) and the router, with its plugin configuration replaced by
/// `edit(config)`. One module per validation keeps each run short.
fn with_plugin_config(mut v: Value, name: &str, edit: impl Fn(&mut Value)) -> Value {
    let filters = &mut v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"];
    let Some(list) = filters.as_array_mut() else { panic!("no http_filters") };
    list.retain(|f| f["typed_config"]["config"]["name"] == name || f["name"] == "envoy.filters.http.router");
    let f = list.iter_mut().find(|f| f["typed_config"]["config"]["name"] == name).unwrap_or_else(|| panic!("no filter {name}"));
    let value = &mut f["typed_config"]["config"]["configuration"]["value"];
    let mut cfg: Value = serde_json::from_str(value.as_str().unwrap_or_default()).expect("plugin config is JSON");
    edit(&mut cfg);
    *value = Value::String(cfg.to_string());
    v
}

/// `envoy --mode validate` (runs every plugin's on_configure); Ok(log) when accepted.
fn validate(config: &Value, dir: &Path) -> Result<String, String> {
    let path = dir.join("envoy.json");
    std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap_or_default()).expect("write config");
    let out = Command::new(e2e::envoy_bin())
        .args(["--mode", "validate", "-l", "error", "--disable-hot-restart", "-c"])
        .arg(&path)
        .env("PARTNER_A_SECRET", PARTNER_SECRET)
        .current_dir(root())
        .output()
        .expect("run envoy");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() && log.contains("OK") {
        Ok(log)
    } else {
        Err(log)
    }
}

#[test]
fn unsupported_configuration_is_refused_at_load() {
    let dir = root().join("target/e2e").join(format!("attacks-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let base = chain_config();
    type Edit = fn(&mut Value);
    // (name, filter, edit, what the edit does, the log must contain)
    let cases: Vec<(&str, &str, Edit, &str, &str)> = vec![
        ("unknown field", "header_hardening", |c| c["request"]["max_body"] = json!(10), "request.max_body: 10", "header_hardening: invalid configuration at 'request.max_body'"),
        ("unknown field", "rate_limit_ip", |c| c["tiers"]["anonymous"]["window"] = json!("1m"), "tiers.anonymous.window: \"1m\" (per_ip instance)", "rate_limit: invalid configuration at 'tiers.anonymous.window'"),
        ("unsupported period", "rate_limit_user", |c| c["tiers"]["anonymous"]["per"] = json!("fortnight"), "tiers.anonymous.per: \"fortnight\" (per_user instance)", "rate_limit: invalid configuration at 'tiers.anonymous.per'"),
        ("unknown field (algorithms)", "jwt_verify", |c| c["providers"]["demo"]["algorithms"] = json!(["none"]), "providers.demo.algorithms: [\"none\"]", "jwt_verify: invalid configuration at 'providers.demo.algorithms'"),
        ("unsupported alg none in a JWK", "jwt_verify", |c| {
            let p = &mut c["providers"]["demo"];
            if let Some(o) = p.as_object_mut() {
                o.remove("remote_jwks");
            }
            p["local_jwks"] = json!({"keys": [{"kty": "oct", "kid": "k", "alg": "none", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0xMjM0NTY3ODkw"}]});
        }, "local_jwks with an oct key whose alg is \"none\"", "jwt_verify: invalid configuration at 'providers.demo.local_jwks.keys[0].alg'"),
        ("unsupported alg in hmac key", "hmac_signing", |c| c["keys"]["partner-a"]["alg"] = json!("hmac-sha1"), "keys.partner-a.alg: \"hmac-sha1\"", "hmac_signing: invalid configuration at 'keys.partner-a.alg'"),
        ("unsupported required component", "hmac_signing", |c| c["required_components"] = json!(["@method", "@status"]), "required_components: [\"@method\", \"@status\"]", "hmac_signing: invalid configuration at 'required_components[1]'"),
        ("unknown field", "rbac", |c| c["rules"][0]["host"] = json!("admin.example"), "rules[0].host: \"admin.example\"", "rbac: invalid configuration at 'rules[0].host'"),
        ("unknown detector", "pii_masking", |c| c["detectors"] = json!(["email", "passport"]), "detectors: [\"email\", \"passport\"]", "pii_masking: invalid configuration at 'detectors"),
    ];
    // Control: the chain as shipped is accepted.
    let control = validate(&base, &dir);
    let mut outcomes = vec![Outcome {
        name: "shipped chain (control)".into(),
        class: "config",
        summary: "envoy-config/envoy.yaml, envoy --mode validate".into(),
        expected: "accepted".into(),
        observed: if control.is_ok() { "accepted".into() } else { "refused".into() },
        ok: control.is_ok(),
    }];
    let mut failures = Vec::new();
    if let Err(log) = &control {
        failures.push(format!("control refused:\n{}", e2e::tail(log, 20)));
    }
    for (name, filter, edit, what, want) in cases {
        let cfg = with_plugin_config(base.clone(), filter, edit);
        let (observed, ok) = match validate(&cfg, &dir) {
            Ok(_) => ("accepted".to_string(), false),
            Err(log) => match log.lines().find(|l| l.contains(want)) {
                Some(line) => {
                    // From "<filter>: invalid configuration at ..." up to serde's position note.
                    let msg = line.get(line.find(want).unwrap_or(0)..).unwrap_or(line);
                    let msg = msg.split(" at line ").next().unwrap_or(msg);
                    let mut short: String = msg.chars().take(140).collect::<String>().replace('`', "'");
                    if short.len() < msg.len() {
                        short.push('…');
                    }
                    (format!("refused: {short}"), true)
                }
                None => {
                    failures.push(format!("{filter} {name}: no line with {want:?}:\n{}", e2e::tail(&log, 15)));
                    ("refused, field not named".to_string(), false)
                }
            },
        };
        outcomes.push(Outcome { name: format!("{filter}: {name}"), class: "unsupported config", summary: format!("{filter} entry of envoy.yaml with {what}"), expected: "refused at load, field named".into(), observed, ok });
    }
    let path = write_table("attack-config-table.md", &markdown(&outcomes));
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.ok).collect();
    assert!(failed.is_empty(), "{} rows failed (table in {}):\n{}", failed.len(), path.display(), failures.join("\n"));
}

