//! Host table tests of the whole decision, with keys and tokens made by PyJWT
//! (`testdata/vectors.json`, regenerate with `testdata/make_vectors.py`) and HS256 tokens
//! minted here for claim variations.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use hmac::{Hmac, Mac};
use jwt_verify::cache::Cache;
use jwt_verify::config::{Config, Policy, RemoteKind};
use jwt_verify::decide::{decide, Allowed, CacheUse, Ctx, Decision, Outcome, Wait};
use jwt_verify::error::JwtError;
use jwt_verify::extract::Edit;
use jwt_verify::remote::Remote;
use jwt_verify::token::{b64url, b64url_encode};
use serde_json::{json, Value};
use sha2::Sha256;
use shared::config::{parse_json, ConfigErrors};
use shared::identity::Identity;
use shared::request::Headers;
use shared::slots::MemoryStore;

const NOW: u64 = 1_700_000_100;
const ISS: &str = "https://issuer.example";

fn vectors() -> Value {
    serde_json::from_str(include_str!("../testdata/vectors.json")).unwrap()
}

fn compile(v: Value) -> Result<Policy, ConfigErrors> {
    parse_json::<Config>(v.to_string().as_bytes()).and_then(Config::compile)
}

fn hs_secret() -> Vec<u8> {
    let v = vectors();
    let k = v["jwks"]["keys"].as_array().unwrap().iter().find(|k| k["kty"] == "oct").unwrap()["k"].as_str().unwrap().to_string();
    b64url(k.as_bytes()).unwrap()
}

/// An HS256 token over `claims` with the vectors' secret (kid "hs-HS256").
fn hs(claims: Value) -> String {
    hs_with_header(json!({"alg": "HS256", "kid": "hs-HS256"}), claims)
}

fn hs_with_header(header: Value, claims: Value) -> String {
    let h = b64url_encode(header.to_string().as_bytes());
    let p = b64url_encode(claims.to_string().as_bytes());
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&hs_secret()).unwrap();
    m.update(format!("{h}.{p}").as_bytes());
    format!("{h}.{p}.{}", b64url_encode(&m.finalize().into_bytes()))
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"iss": ISS, "sub": "user-1", "exp": NOW + 600, "iat": NOW - 10});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn provider(extra: Value) -> Value {
    let mut p = json!({"issuer": ISS, "local_jwks": vectors()["jwks"]});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

fn main_policy(extra: Value) -> Policy {
    compile(json!({"providers": {"main": provider(extra)}})).unwrap()
}

struct Env {
    policy: Policy,
    remotes: Vec<Remote>,
    cache: Option<Cache>,
    store: MemoryStore,
}

impl Env {
    fn new(policy: Policy) -> Self {
        let remotes = policy.remotes.iter().cloned().map(Remote::new).collect();
        let cache = policy.cache.as_ref().map(|c| Cache::new(c.sets, c.ways));
        Self { policy, remotes, cache, store: MemoryStore::new() }
    }

    fn run_at(&self, headers: &Headers, now_s: u64, allow_wait: bool) -> Outcome {
        let cx = Ctx {
            policy: &self.policy,
            remotes: &self.remotes,
            cache: self.cache.as_ref().map(|c| (c, &self.store as &dyn shared::slots::SharedStore)),
            now_s,
            allow_wait,
        };
        decide(headers, &cx)
    }

    fn run(&self, headers: &Headers) -> Decision {
        self.run_at(headers, NOW, true).decision
    }

    fn bearer(&self, token: &str) -> Decision {
        self.run(&get("/api", &[("authorization", &format!("Bearer {token}"))]))
    }
}

fn get(path: &str, extra: &[(&str, &str)]) -> Headers {
    let mut pairs = vec![(":method", "GET"), (":path", path), (":authority", "example")];
    pairs.extend_from_slice(extra);
    Headers::from_pairs(pairs)
}

fn allowed(d: Decision) -> Allowed {
    match d {
        Decision::Allow(a) => a,
        other => panic!("expected allow, got {other:?}"),
    }
}

fn identity(a: &Allowed) -> Identity {
    Identity::decode(a.identity.as_ref().unwrap()).unwrap()
}

#[test]
fn every_algorithm_made_by_pyjwt_verifies() {
    let v = vectors();
    let env = Env::new(main_policy(json!({"audiences": ["orders-api"]})));
    let tokens = v["tokens"].as_object().unwrap();
    assert_eq!(tokens.len(), 13);
    for (alg, t) in tokens {
        let a = allowed(env.bearer(t.as_str().unwrap()));
        let id = identity(&a);
        assert_eq!(id.subject, "user-1", "{alg}");
        assert_eq!(id.provider, "main");
        assert_eq!(id.claims["jti"], "j-1");
        assert!(a.edits.contains(&Edit::Remove("authorization".into())), "{alg}: token removed");
    }
}

#[test]
fn no_kid_tries_keys_of_the_matching_type() {
    let v = vectors();
    let p = compile(json!({"providers": {"main": {"issuer": ISS, "local_jwks": {"keys": [v["rsa_nokid_jwk"]]}}}})).unwrap();
    let env = Env::new(p);
    assert!(matches!(env.bearer(v["tokens"]["RS256_nokid"].as_str().unwrap()), Decision::Allow(_)));
    // A kid that the set does not have is unknown, even if a kid-less key would verify.
    assert_eq!(env.bearer(v["tokens"]["RS256"].as_str().unwrap()), Decision::Deny(JwtError::UnknownKid));
}

#[test]
fn hostile_tokens_are_refused_with_their_code() {
    let v = vectors();
    let env = Env::new(main_policy(json!({})));
    let h = &v["hostile"];
    for (name, want) in [
        ("alg_none", JwtError::AlgUnsupported),
        ("hs_with_rsa_kid", JwtError::AlgMismatch),
        ("alg_differs_from_jwk", JwtError::AlgMismatch),
        ("rsa1024", JwtError::UnknownKid),
        ("tampered", JwtError::SignatureInvalid),
        ("duplicate_claim", JwtError::DuplicateKey),
        ("crit", JwtError::CritUnsupported),
        ("unknown_kid", JwtError::UnknownKid),
    ] {
        assert_eq!(env.bearer(h[name].as_str().unwrap()), Decision::Deny(want), "{name}");
    }
    // Key confusion without kid, against a set of RSA keys only.
    let rsa_only = compile(json!({"providers": {"main": {"issuer": ISS, "local_jwks": {"keys": [v["rsa_nokid_jwk"]]}}}})).unwrap();
    assert_eq!(Env::new(rsa_only).bearer(h["hs_with_rsa_nokid"].as_str().unwrap()), Decision::Deny(JwtError::AlgMismatch));
    // The 1024-bit key itself is refused at load.
    let e = compile(json!({"providers": {"main": {"issuer": ISS, "local_jwks": {"keys": [v["small_jwk"]]}}}})).unwrap_err();
    assert!(e.has("providers.main.local_jwks.keys[0].n"), "{e}");
}

#[test]
fn malformed_input_of_every_kind_is_401() {
    let env = Env::new(main_policy(json!({})));
    let good = hs(claims(json!({})));
    let parts: Vec<&str> = good.split('.').collect();
    let huge = format!("{}.{}.{}", parts[0], "A".repeat(20_000), parts[2]);
    for (t, want) in [
        ("abc".to_string(), JwtError::Malformed),
        (format!("{}.{}", parts[0], parts[1]), JwtError::Malformed),
        (format!("{good}.x.y"), JwtError::Malformed),
        (format!("{}.{}=.{}", parts[0], parts[1], parts[2]), JwtError::Malformed),
        (format!("{}.{}.{}", parts[0], b64url_encode(b"not json"), parts[2]), JwtError::Malformed),
        (huge, JwtError::TooLarge),
        (format!("{}.{}.{}{}", parts[0], parts[1], if parts[2].starts_with('A') { "B" } else { "A" }, &parts[2][1..]), JwtError::SignatureInvalid),
        (format!("{}.{}.", parts[0], parts[1]), JwtError::SignatureInvalid),
    ] {
        assert_eq!(env.bearer(&t), Decision::Deny(want), "{t:.60}");
    }
    // A duplicate written by hand (serde_json's json! macro would have merged it).
    let h = b64url_encode(br#"{"alg":"HS256","kid":"hs-HS256"}"#);
    let p = b64url_encode(format!(r#"{{"iss":"{ISS}","exp":{},"exp":1}}"#, NOW + 60).as_bytes());
    assert_eq!(env.bearer(&format!("{h}.{p}.{}", parts[2])), Decision::Deny(JwtError::DuplicateKey));
    assert_eq!(env.run(&get("/", &[("authorization", "Bearer ")])), Decision::Deny(JwtError::Malformed));
}

#[test]
fn claims_rules_apply() {
    let env = Env::new(main_policy(json!({
        "audiences": ["orders-api"], "clock_skew_s": 30, "max_lifetime_s": 900, "typ": "at+jwt",
        "required_claims": {"token_use": "access"}, "require_jti": true, "revoked_jtis": ["gone"]
    })));
    let base = json!({"aud": "orders-api", "token_use": "access", "jti": "j"});
    let with = |extra: Value| {
        let mut c = claims(base.clone());
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        hs_with_header(json!({"alg": "HS256", "kid": "hs-HS256", "typ": "at+jwt"}), c)
    };
    assert!(matches!(env.bearer(&with(json!({}))), Decision::Allow(_)));
    for (extra, want) in [
        (json!({"exp": NOW - 31}), JwtError::Expired),
        (json!({"exp": Value::Null}), JwtError::ClaimInvalid),
        (json!({"nbf": NOW + 31}), JwtError::NotYetValid),
        (json!({"iat": NOW + 31}), JwtError::IssuedInFuture),
        (json!({"iat": NOW - 1000}), JwtError::LifetimeTooLong),
        (json!({"aud": ["other"]}), JwtError::AudienceMismatch),
        (json!({"token_use": "refresh"}), JwtError::ClaimMismatch),
        (json!({"jti": "gone"}), JwtError::Revoked),
        (json!({"iss": "https://evil.example"}), JwtError::IssuerNotAllowed),
        (json!({"iss": 5}), JwtError::ClaimInvalid),
    ] {
        assert_eq!(env.bearer(&with(extra.clone())), Decision::Deny(want), "{extra}");
    }
    let mut no_exp = claims(base.clone());
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(env.bearer(&hs_with_header(json!({"alg": "HS256", "kid": "hs-HS256", "typ": "at+jwt"}), no_exp)), Decision::Deny(JwtError::ExpMissing));
    let mut no_jti = claims(base.clone());
    no_jti.as_object_mut().unwrap().remove("jti");
    assert_eq!(env.bearer(&hs_with_header(json!({"alg": "HS256", "kid": "hs-HS256", "typ": "at+jwt"}), no_jti)), Decision::Deny(JwtError::JtiMissing));
    assert_eq!(env.bearer(&hs(claims(base))), Decision::Deny(JwtError::TypMismatch));
}

#[test]
fn refresh_token_never_passes_as_access_token() {
    // Seeds: 15-minute access tokens, 30-day refresh tokens from the same issuer and key.
    let env = Env::new(main_policy(json!({"max_lifetime_s": 900, "required_claims": {"token_use": "access"}})));
    let access = hs(claims(json!({"token_use": "access", "iat": NOW, "exp": NOW + 900})));
    let refresh = hs(claims(json!({"token_use": "refresh", "iat": NOW, "exp": NOW + 30 * 86400})));
    assert!(matches!(env.bearer(&access), Decision::Allow(_)));
    assert_eq!(env.bearer(&refresh), Decision::Deny(JwtError::LifetimeTooLong));
}

#[test]
fn rules_default_deny_allow_missing_and_requires() {
    let p = compile(json!({
        "providers": {"main": provider(json!({})), "other": {"issuer": "https://other.example", "local_jwks": vectors()["jwks"]}},
        "rules": [
            {"prefix": "/auth/", "allow_missing": true},
            {"prefix": "/api/", "requires": "main"},
            {"prefix": "/both/", "requires": ["main", "other"]},
            {"path": "/orders/{id}", "methods": ["GET"], "requires": "other"}
        ]
    }))
    .unwrap();
    let env = Env::new(p);
    let main_tok = hs(claims(json!({})));
    let other_tok = hs(claims(json!({"iss": "https://other.example"})));
    let bearer = |t: &str| format!("Bearer {t}");
    // Default deny.
    assert_eq!(env.run(&get("/elsewhere", &[])), Decision::Deny(JwtError::NoRule));
    assert_eq!(env.run(&get("/elsewhere", &[("authorization", &bearer(&main_tok))])), Decision::Deny(JwtError::NoRule));
    assert_eq!(env.run(&Headers::from_pairs([(":method", "POST"), (":path", "/orders/1")])), Decision::Deny(JwtError::NoRule));
    // Ambiguous paths never reach a rule.
    assert_eq!(env.run(&get("/api/../auth/x", &[])), Decision::Deny(JwtError::BadPath(shared::pathmatch::PathError::DotSegment)));
    // allow_missing: anonymous without token, but a bad token is still refused.
    let a = allowed(env.run(&get("/auth/login", &[])));
    assert_eq!(a.identity, None);
    assert_eq!(env.run(&get("/auth/login", &[("authorization", "Bearer x.y.z")])), Decision::Deny(JwtError::Malformed));
    assert!(matches!(env.run(&get("/auth/login", &[("authorization", &bearer(&other_tok))])), Decision::Allow(_)));
    // requires: one provider.
    assert_eq!(env.run(&get("/api/x", &[])), Decision::Deny(JwtError::Missing));
    assert!(matches!(env.run(&get("/api/x", &[("authorization", &bearer(&main_tok))])), Decision::Allow(_)));
    assert_eq!(env.run(&get("/api/x", &[("authorization", &bearer(&other_tok))])), Decision::Deny(JwtError::IssuerNotAllowed));
    // requires: any of a list.
    let a = allowed(env.run(&get("/both/x", &[("authorization", &bearer(&other_tok))])));
    assert_eq!(identity(&a).provider, "other");
    let a = allowed(env.run(&get("/orders/7", &[("authorization", &bearer(&other_tok))])));
    assert_eq!(identity(&a).provider, "other");
}

#[test]
fn two_authorization_headers_are_refused() {
    let env = Env::new(main_policy(json!({})));
    let t = hs(claims(json!({})));
    let b = format!("Bearer {t}");
    assert_eq!(env.run(&get("/", &[("authorization", &b), ("authorization", &b)])), Decision::Deny(JwtError::Ambiguous));
}

#[test]
fn cookies_params_claim_headers_and_forwarding() {
    let p = compile(json!({"providers": {"main": provider(json!({
        "from_cookies": ["access_token"], "from_params": ["access_token"],
        "claim_to_headers": [{"claim": "sub", "header": "x-jwt-sub"}, {"claim": "roles", "header": "x-jwt-roles"}, {"claim": "org.id", "header": "x-jwt-org"}, {"claim": "evil", "header": "x-jwt-evil"}]
    }))}}))
    .unwrap();
    let env = Env::new(p);
    let t = hs(claims(json!({"roles": ["a", "b"], "org": {"id": 42}, "evil": "x\r\ninjected: 1"})));
    let a = allowed(env.run(&get(&format!("/x?a=1&access_token={t}"), &[("x-jwt-sub", "admin"), ("x-jwt-evil", "client")])));
    assert_eq!(
        a.edits,
        vec![
            Edit::Remove("x-jwt-sub".into()),
            Edit::Remove("x-jwt-roles".into()),
            Edit::Remove("x-jwt-org".into()),
            Edit::Remove("x-jwt-evil".into()),
            Edit::Set(":path".into(), b"/x?a=1".to_vec()),
            Edit::Set("x-jwt-sub".into(), b"user-1".to_vec()),
            Edit::Set("x-jwt-roles".into(), b"a,b".to_vec()),
            Edit::Set("x-jwt-org".into(), b"42".to_vec()),
        ]
    );
    let a = allowed(env.run(&get("/x", &[("cookie", &format!("theme=dark; access_token={t}"))])));
    assert!(a.edits.contains(&Edit::Add("cookie".into(), b"theme=dark".to_vec())));
    // The default header source is gone once sources are configured explicitly.
    assert_eq!(env.run(&get("/x", &[("authorization", &format!("Bearer {t}"))])), Decision::Deny(JwtError::Missing));

    // forward: true keeps the token, still strips injected claim headers.
    let env = Env::new(main_policy(json!({"forward": true, "claim_to_headers": [{"claim": "sub", "header": "x-jwt-sub"}]})));
    let a = allowed(env.bearer(&t));
    assert_eq!(a.edits, vec![Edit::Remove("x-jwt-sub".into()), Edit::Set("x-jwt-sub".into(), b"user-1".to_vec())]);
    // Anonymous requests are stripped too.
    let p = compile(json!({"providers": {"main": provider(json!({"claim_to_headers": [{"claim": "sub", "header": "x-jwt-sub"}]}))}, "rules": [{"prefix": "/", "allow_missing": true}]})).unwrap();
    let a = allowed(Env::new(p).run(&get("/", &[("x-jwt-sub", "admin")])));
    assert_eq!(a.edits, vec![Edit::Remove("x-jwt-sub".into())]);
}

#[test]
fn provider_is_chosen_by_issuer_among_many() {
    let mut providers = serde_json::Map::new();
    for i in 0..60 {
        providers.insert(format!("p{i}"), json!({"issuer": format!("https://issuer{i}.example"), "local_jwks": vectors()["jwks"]}));
    }
    let env = Env::new(compile(json!({"providers": providers})).unwrap());
    let t = hs(claims(json!({"iss": "https://issuer42.example"})));
    let a = allowed(env.bearer(&t));
    assert_eq!(identity(&a).provider, "p42");
    assert_eq!(env.bearer(&hs(claims(json!({"iss": "https://nobody.example"})))), Decision::Deny(JwtError::IssuerNotAllowed));
}

#[test]
fn cache_hits_and_its_limits() {
    let env = Env::new(main_policy(json!({"claim_to_headers": [{"claim": "sub", "header": "x-jwt-sub"}], "revoked_jtis": []})));
    let t = hs(claims(json!({"jti": "j-7", "exp": NOW + 100})));
    let h = get("/", &[("authorization", &format!("Bearer {t}"))]);
    let miss = env.run_at(&h, NOW, true);
    assert_eq!(miss.cache, CacheUse::Miss { stored: true });
    let hit = env.run_at(&h, NOW + 1, true);
    assert_eq!(hit.cache, CacheUse::Hit);
    assert_eq!(hit.decision, miss.decision, "a hit gives exactly what verification gave");
    // Never served at or past exp; the skew window is verified again, not served.
    let late = env.run_at(&h, NOW + 100, true);
    assert_eq!(late.cache, CacheUse::Miss { stored: false });
    assert!(matches!(late.decision, Decision::Allow(_)), "within clock skew");
    assert_eq!(env.run_at(&h, NOW + 160, true).decision, Decision::Deny(JwtError::Expired));

    // The same store under another key set: the record is not served.
    let other_keys = compile(json!({"providers": {"main": {"issuer": ISS, "local_jwks": {"keys": [{"kty": "oct", "k": b64url_encode(&hs_secret()), "kid": "hs-HS256"}]},
        "claim_to_headers": [{"claim": "sub", "header": "x-jwt-sub"}], "revoked_jtis": []}}})).unwrap();
    let env2 = Env { policy: other_keys, store: env.store, remotes: vec![], cache: env.cache.clone() };
    assert_eq!(env2.run_at(&h, NOW + 2, true).cache, CacheUse::Miss { stored: true });
    assert_eq!(env2.run_at(&h, NOW + 3, true).cache, CacheUse::Hit);

    // Revoked after caching: still refused on a hit.
    let revoked = main_policy(json!({"claim_to_headers": [{"claim": "sub", "header": "x-jwt-sub"}], "revoked_jtis": ["j-7"]}));
    let mut env3 = Env::new(main_policy(json!({"claim_to_headers": [{"claim": "sub", "header": "x-jwt-sub"}], "revoked_jtis": ["j-7"]})));
    // Same config hash as `revoked`, so a record written under it would be served but for the jti.
    let rec_env = Env { policy: revoked.clone(), store: MemoryStore::new(), remotes: vec![], cache: env3.cache.clone() };
    assert_eq!(rec_env.run_at(&h, NOW, true).decision, Decision::Deny(JwtError::Revoked));
    env3.policy.providers[0].revoked.clear();
    assert_eq!(env3.run_at(&h, NOW, true).cache, CacheUse::Miss { stored: true });
    env3.policy.providers[0].revoked.insert("j-7".into());
    let o = env3.run_at(&h, NOW + 1, true);
    assert_eq!((o.cache, o.decision), (CacheUse::Hit, Decision::Deny(JwtError::Revoked)));
}

#[test]
fn cache_hit_respects_the_rule() {
    let p = compile(json!({
        "providers": {"main": provider(json!({})), "other": {"issuer": "https://other.example", "local_jwks": vectors()["jwks"]}},
        "rules": [{"prefix": "/main/", "requires": "main"}, {"prefix": "/", "requires": "other"}]
    }))
    .unwrap();
    let env = Env::new(p);
    let t = hs(claims(json!({})));
    let b = format!("Bearer {t}");
    assert_eq!(env.run_at(&get("/main/x", &[("authorization", &b)]), NOW, true).cache, CacheUse::Miss { stored: true });
    let o = env.run_at(&get("/other", &[("authorization", &b)]), NOW, true);
    assert_eq!(o.decision, Decision::Deny(JwtError::IssuerNotAllowed));
    assert_eq!(o.cache, CacheUse::Miss { stored: false });
}

#[test]
fn large_tokens_are_cached_too() {
    let env = Env::new(compile(json!({"providers": {"main": provider(json!({}))}, "max_token_bytes": 65536})).unwrap());
    let t = hs(claims(json!({"blob": "x".repeat(10_000)})));
    assert!(t.len() > 10_000);
    let h = get("/", &[("authorization", &format!("Bearer {t}"))]);
    assert_eq!(env.run_at(&h, NOW, true).cache, CacheUse::Miss { stored: true });
    assert_eq!(env.run_at(&h, NOW, true).cache, CacheUse::Hit);
}

#[test]
fn remote_keys_wait_then_decide() {
    let v = vectors();
    let p = compile(json!({"providers": {"main": {"issuer": ISS, "remote_jwks": {"cluster": "idp", "authority": "idp", "path": "/jwks", "unknown_kid_refresh_s": 30},
        "remote_revocations": {"cluster": "idp", "authority": "idp", "path": "/revoked"}}}}))
    .unwrap();
    assert_eq!(p.remotes[0].kind, RemoteKind::Jwks);
    assert_eq!(p.remotes[1].kind, RemoteKind::Revocations);
    let mut env = Env::new(p);
    let t = v["tokens"]["ES256"].as_str().unwrap();
    // Before the first fetch: wait.
    assert_eq!(env.bearer(t), Decision::Wait(Wait::Remote(0)));
    assert_eq!(env.run_at(&get("/", &[("authorization", &format!("Bearer {t}"))]), NOW, false).decision, Decision::Deny(JwtError::JwksUnavailable));
    // Keys arrive (without the ES256 key); revocation list not yet: wait for it.
    let keys: Vec<Value> = v["jwks"]["keys"].as_array().unwrap().iter().filter(|k| k["kty"] == "RSA").cloned().collect();
    let body = json!({"keys": keys}).to_string();
    env.remotes[0].dispatched(true, NOW * 1000);
    env.remotes[0].on_response(Some(200), body.as_bytes(), NOW * 1000).unwrap();
    assert_eq!(env.bearer(t), Decision::Wait(Wait::Remote(1)));
    env.remotes[1].dispatched(true, NOW * 1000);
    env.remotes[1].on_response(Some(200), br#"["revoked-1"]"#, NOW * 1000).unwrap();
    // Unknown kid: wait for an early refresh, once per interval.
    assert_eq!(env.bearer(t), Decision::Wait(Wait::EarlyRefresh(0)));
    env.remotes[0].want_early();
    env.remotes[0].dispatched(true, NOW * 1000);
    env.remotes[0].on_response(Some(200), body.as_bytes(), NOW * 1000).unwrap();
    assert_eq!(env.bearer(t), Decision::Deny(JwtError::UnknownKid), "rate limited");
    assert!(matches!(env.bearer(v["tokens"]["RS256"].as_str().unwrap()), Decision::Allow(_)));
    // The remote revocation list applies (PyJWT's tokens carry jti "j-1").
    env.remotes[1].dispatched(true, NOW * 1000);
    env.remotes[1].on_response(Some(200), br#"["revoked-1", "j-1"]"#, NOW * 1000).unwrap();
    assert_eq!(env.bearer(v["tokens"]["RS256"].as_str().unwrap()), Decision::Deny(JwtError::Revoked));
    // A failed first revocation fetch makes the provider unavailable (fail closed).
    env.remotes[1] = Remote::new(env.policy.remotes[1].clone());
    env.remotes[1].dispatched(false, NOW * 1000);
    assert_eq!(env.bearer(v["tokens"]["RS256"].as_str().unwrap()), Decision::Deny(JwtError::JwksUnavailable));
}

#[test]
fn key_rotation_invalidates_cached_tokens() {
    let v = vectors();
    let p = compile(json!({"providers": {"main": {"issuer": ISS, "remote_jwks": {"cluster": "idp", "authority": "idp", "path": "/jwks"}}}})).unwrap();
    let mut env = Env::new(p);
    let all = v["jwks"]["keys"].as_array().unwrap().clone();
    let without_rsa: Vec<Value> = all.iter().filter(|k| k["kty"] != "RSA").cloned().collect();
    env.remotes[0].dispatched(true, 0);
    env.remotes[0].on_response(Some(200), json!({"keys": all}).to_string().as_bytes(), 0).unwrap();
    let t = v["tokens"]["RS256"].as_str().unwrap();
    let h = get("/", &[("authorization", &format!("Bearer {t}"))]);
    assert_eq!(env.run_at(&h, NOW, true).cache, CacheUse::Miss { stored: true });
    assert_eq!(env.run_at(&h, NOW, true).cache, CacheUse::Hit);
    // The RSA key is withdrawn: the cached verification is no longer served.
    env.remotes[0].dispatched(true, 1);
    env.remotes[0].on_response(Some(200), json!({"keys": without_rsa}).to_string().as_bytes(), 1).unwrap();
    let o = env.run_at(&h, NOW, false);
    assert_eq!(o.cache, CacheUse::Miss { stored: false });
    assert_eq!(o.decision, Decision::Deny(JwtError::UnknownKid));
}

#[test]
fn identity_carries_the_payload() {
    let env = Env::new(main_policy(json!({})));
    let a = allowed(env.bearer(&hs(claims(json!({"roles": ["admin"], "tenant": "t1"})))));
    let id = identity(&a);
    assert_eq!(id.source, shared::identity::Source::Jwt);
    assert_eq!(id.claim_strings("roles"), vec!["admin"]);
    assert_eq!(id.claims["iss"], ISS);
    assert_eq!(a.provider, Some(0));
}

#[test]
fn providers_sharing_an_issuer_are_tried_in_turn() {
    let p = compile(json!({"providers": {
        "a_orders": provider(json!({"audiences": ["orders"]})),
        "b_billing": provider(json!({"audiences": ["billing"]}))
    }}))
    .unwrap();
    let env = Env::new(p);
    let a = allowed(env.bearer(&hs(claims(json!({"aud": "billing"})))));
    assert_eq!(identity(&a).provider, "b_billing");
    // Neither: the first provider's reason is reported.
    assert_eq!(env.bearer(&hs(claims(json!({"aud": "other"})))), Decision::Deny(JwtError::AudienceMismatch));
}

#[test]
fn hostile_requests_never_panic() {
    let env = Env::new(main_policy(json!({"from_cookies": ["t"], "from_params": ["t"]})));
    let good = hs(claims(json!({})));
    let mut seed = 0x9e37_79b9_u32;
    for i in 0..2000 {
        let mut t = good.clone().into_bytes();
        for _ in 0..(i % 4 + 1) {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let pos = (seed as usize) % t.len();
            t[pos] = b"A.-_=+/ {\"\\\x00\xff"[(seed >> 8) as usize % 13];
        }
        let s = String::from_utf8_lossy(&t).into_owned();
        let d = env.run(&get(&format!("/x?t={}", s.replace(['&', '#', ' '], "")), &[("cookie", &format!("t={}", s.replace([';', ' '], "")))]));
        assert!(!matches!(d, Decision::Wait(_)));
    }
}
