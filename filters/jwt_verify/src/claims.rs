//! Claim checks (RFC 7519 section 4.1, RFC 8725, RFC 9068): time window with clock skew,
//! audience, lifetime, token type, required claims, `jti` and revocation.

use crate::config::{normalize_typ, Provider};
use crate::error::JwtError;
use crate::token::Header;
use serde_json::{Map, Value};

/// A NumericDate (seconds, may be fractional) rounded towards the stricter side.
#[derive(Debug, Clone, Copy)]
enum Round {
    Down,
    Up,
}

fn numeric_date(v: &Value, round: Round) -> Result<u64, JwtError> {
    let Value::Number(n) = v else { return Err(JwtError::ClaimInvalid) };
    if let Some(u) = n.as_u64() {
        return Ok(u);
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f >= 0.0 => {
            let r = match round {
                Round::Down => f.floor(),
                Round::Up => f.ceil(),
            };
            // `as` saturates for floats beyond u64.
            Ok(r as u64)
        }
        _ => Err(JwtError::ClaimInvalid),
    }
}

fn date(claims: &Map<String, Value>, name: &str, round: Round) -> Result<Option<u64>, JwtError> {
    claims.get(name).map(|v| numeric_date(v, round)).transpose()
}

/// A claim by exact name, else by dotted path into nested objects.
pub fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

fn matches_expected(actual: &Value, expected: &Value) -> bool {
    actual == expected || actual.as_array().is_some_and(|a| a.contains(expected))
}

fn optional_str<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(JwtError::ClaimInvalid),
    }
}

/// What the checks established, for the identity and the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub exp: u64,
    pub subject: String,
    pub jti: Option<String>,
}

/// Check every claim rule of `provider` at time `now` (seconds). `revoked` answers for the
/// remote revocation list; the provider's own `revoked_jtis` are checked here too.
pub fn check(
    provider: &Provider,
    header: &Header,
    claims: &Map<String, Value>,
    now: u64,
    revoked: &dyn Fn(&str) -> bool,
) -> Result<Checked, JwtError> {
    let skew = provider.clock_skew_s;
    if let Some(expected) = &provider.typ {
        match &header.typ {
            Some(t) if normalize_typ(t) == *expected => {}
            _ => return Err(JwtError::TypMismatch),
        }
    }
    let exp = date(claims, "exp", Round::Down)?.ok_or(JwtError::ExpMissing)?;
    let nbf = date(claims, "nbf", Round::Up)?;
    let iat = date(claims, "iat", Round::Up)?;
    if now >= exp.saturating_add(skew) {
        return Err(JwtError::Expired);
    }
    if nbf.is_some_and(|nbf| now.saturating_add(skew) < nbf) {
        return Err(JwtError::NotYetValid);
    }
    if iat.is_some_and(|iat| iat > now.saturating_add(skew)) {
        return Err(JwtError::IssuedInFuture);
    }
    if let Some(max) = provider.max_lifetime_s {
        let iat = iat.ok_or(JwtError::IatMissing)?;
        if exp.saturating_sub(iat) > max {
            return Err(JwtError::LifetimeTooLong);
        }
    }
    if !provider.audiences.is_empty() {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => provider.audiences.iter().any(|x| x == a),
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(|a| provider.audiences.iter().any(|x| x == a)),
            _ => false,
        };
        if !ok {
            return Err(JwtError::AudienceMismatch);
        }
    }
    for (name, expected) in &provider.required_claims {
        if !lookup(claims, name).is_some_and(|v| matches_expected(v, expected)) {
            return Err(JwtError::ClaimMismatch);
        }
    }
    let subject = optional_str(claims, "sub")?.unwrap_or_default().to_string();
    let jti = optional_str(claims, "jti")?;
    match jti {
        None if provider.require_jti => return Err(JwtError::JtiMissing),
        Some(j) if provider.revoked.contains(j) || revoked(j) => return Err(JwtError::Revoked),
        _ => {}
    }
    Ok(Checked { exp, subject, jti: jti.map(str::to_string) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::compile;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;

    fn provider(extra: Value) -> Provider {
        let mut p = json!({"issuer": "i", "local_jwks": {"keys": [{"kty": "oct", "k": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}});
        if let (Some(o), Some(e)) = (p.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        compile(json!({"providers": {"p": p}})).unwrap().providers.remove(0)
    }

    fn hdr(typ: Option<&str>) -> Header {
        Header { alg: "HS256".into(), kid: None, typ: typ.map(str::to_string) }
    }

    fn run(p: &Provider, claims: Value) -> Result<Checked, JwtError> {
        check(p, &hdr(None), claims.as_object().unwrap(), NOW, &|j| j == "remote-revoked")
    }

    #[test]
    fn time_window_with_skew() {
        let p = provider(json!({"clock_skew_s": 60}));
        assert_eq!(run(&p, json!({"sub": "u", "exp": NOW + 10})).unwrap(), Checked { exp: NOW + 10, subject: "u".into(), jti: None });
        assert_eq!(run(&p, json!({})), Err(JwtError::ExpMissing));
        assert_eq!(run(&p, json!({"exp": "soon"})), Err(JwtError::ClaimInvalid));
        assert_eq!(run(&p, json!({"exp": -1})), Err(JwtError::ClaimInvalid));
        assert!(run(&p, json!({"exp": NOW - 59})).is_ok());
        assert_eq!(run(&p, json!({"exp": NOW - 60})), Err(JwtError::Expired));
        assert_eq!(run(&p, json!({"exp": (NOW - 60) as f64 + 0.5})), Err(JwtError::Expired));
        assert!(run(&p, json!({"exp": NOW + 100, "nbf": NOW + 60})).is_ok());
        assert_eq!(run(&p, json!({"exp": NOW + 100, "nbf": NOW + 61})), Err(JwtError::NotYetValid));
        assert_eq!(run(&p, json!({"exp": NOW + 100, "nbf": (NOW + 60) as f64 + 0.1})), Err(JwtError::NotYetValid));
        assert_eq!(run(&p, json!({"exp": NOW + 100, "nbf": "x"})), Err(JwtError::ClaimInvalid));
        assert!(run(&p, json!({"exp": NOW + 100, "iat": NOW + 60})).is_ok());
        assert_eq!(run(&p, json!({"exp": NOW + 100, "iat": NOW + 61})), Err(JwtError::IssuedInFuture));
        assert_eq!(run(&p, json!({"exp": 1e300})).unwrap().exp, u64::MAX);
        let strict = provider(json!({"clock_skew_s": 0}));
        assert_eq!(run(&strict, json!({"exp": NOW})), Err(JwtError::Expired));
        assert!(run(&strict, json!({"exp": NOW + 1})).is_ok());
    }

    #[test]
    fn lifetime() {
        let p = provider(json!({"max_lifetime_s": 900}));
        assert!(run(&p, json!({"exp": NOW + 900, "iat": NOW})).is_ok());
        assert_eq!(run(&p, json!({"exp": NOW + 901, "iat": NOW})), Err(JwtError::LifetimeTooLong));
        assert_eq!(run(&p, json!({"exp": NOW + 30 * 86400, "iat": NOW})), Err(JwtError::LifetimeTooLong));
        assert_eq!(run(&p, json!({"exp": NOW + 10})), Err(JwtError::IatMissing));
    }

    #[test]
    fn audience() {
        let p = provider(json!({"audiences": ["orders", "billing"]}));
        assert!(run(&p, json!({"exp": NOW + 1, "aud": "orders"})).is_ok());
        assert!(run(&p, json!({"exp": NOW + 1, "aud": ["x", "billing"]})).is_ok());
        assert_eq!(run(&p, json!({"exp": NOW + 1, "aud": ["x", 5]})), Err(JwtError::AudienceMismatch));
        assert_eq!(run(&p, json!({"exp": NOW + 1, "aud": "Orders"})), Err(JwtError::AudienceMismatch));
        assert_eq!(run(&p, json!({"exp": NOW + 1})), Err(JwtError::AudienceMismatch));
        assert_eq!(run(&p, json!({"exp": NOW + 1, "aud": {"orders": 1}})), Err(JwtError::AudienceMismatch));
        // No audiences configured: aud is not checked.
        assert!(run(&provider(json!({})), json!({"exp": NOW + 1, "aud": "anything"})).is_ok());
    }

    #[test]
    fn typ_and_required_claims() {
        let p = provider(json!({"typ": "at+jwt", "required_claims": {"token_use": "access", "realm.roles": "admin", "v": 2}}));
        let good = json!({"exp": NOW + 1, "token_use": "access", "realm": {"roles": ["user", "admin"]}, "v": 2});
        let c = good.as_object().unwrap();
        assert!(check(&p, &hdr(Some("at+jwt")), c, NOW, &|_| false).is_ok());
        assert!(check(&p, &hdr(Some("application/AT+JWT")), c, NOW, &|_| false).is_ok());
        assert_eq!(check(&p, &hdr(Some("JWT")), c, NOW, &|_| false), Err(JwtError::TypMismatch));
        assert_eq!(check(&p, &hdr(None), c, NOW, &|_| false), Err(JwtError::TypMismatch));
        for bad in [
            json!({"exp": NOW + 1, "token_use": "refresh", "realm": {"roles": ["admin"]}, "v": 2}),
            json!({"exp": NOW + 1, "realm": {"roles": ["admin"]}, "v": 2}),
            json!({"exp": NOW + 1, "token_use": "access", "realm": {"roles": ["user"]}, "v": 2}),
            json!({"exp": NOW + 1, "token_use": "access", "realm": {"roles": "admin"}, "v": "2"}),
        ] {
            assert_eq!(check(&p, &hdr(Some("at+jwt")), bad.as_object().unwrap(), NOW, &|_| false), Err(JwtError::ClaimMismatch), "{bad}");
        }
    }

    #[test]
    fn jti_and_revocation() {
        let p = provider(json!({"require_jti": true, "revoked_jtis": ["bad"]}));
        assert_eq!(run(&p, json!({"exp": NOW + 1})), Err(JwtError::JtiMissing));
        assert_eq!(run(&p, json!({"exp": NOW + 1, "jti": 5})), Err(JwtError::ClaimInvalid));
        assert_eq!(run(&p, json!({"exp": NOW + 1, "jti": "bad"})), Err(JwtError::Revoked));
        assert_eq!(run(&p, json!({"exp": NOW + 1, "jti": "remote-revoked"})), Err(JwtError::Revoked));
        assert_eq!(run(&p, json!({"exp": NOW + 1, "jti": "ok"})).unwrap().jti.as_deref(), Some("ok"));
        assert_eq!(run(&p, json!({"exp": NOW + 1, "jti": "ok", "sub": 7})), Err(JwtError::ClaimInvalid));
        let lax = provider(json!({}));
        assert!(run(&lax, json!({"exp": NOW + 1})).is_ok());
    }
}
