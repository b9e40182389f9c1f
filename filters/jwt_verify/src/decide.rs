//! The decision for one request, as data: allow (with header edits and the identity),
//! deny (with the reason), or wait for a remote document. No host calls: the shared-data
//! cache comes in as a [`SharedStore`], the clock as `now_s`.
//!
//! Order: path normalized, first matching rule, claim headers always stripped, token
//! extracted (ambiguity refused), cache looked up (hit served only if still bound to the
//! provider's current keys, not expired, not revoked), token parsed strictly, provider
//! chosen by `iss` among those the rule allows (before any signature check), claims
//! checked, key chosen by `kid` and algorithm, signature verified.

use crate::cache::{binding, Cache, Record};
use crate::claims::{self, lookup};
use crate::config::{Keys, Policy, Provider, Rule};
use crate::error::JwtError;
use crate::extract::{extract, removal, Edit, Found};
use crate::jwk::{Alg, KeySet};
use crate::remote::{Availability, Remote};
use crate::token::{self, Token};
use crate::verify::verify_signature;
use serde_json::Value;
use shared::identity::{Identity, Source as IdSource};
use shared::pathmatch::normalize;
use shared::request::Headers;
use shared::slots::SharedStore;

/// Everything a decision reads besides the request.
pub struct Ctx<'a> {
    pub policy: &'a Policy,
    /// Remote documents, indexed like [`Policy::remotes`].
    pub remotes: &'a [Remote],
    pub cache: Option<(&'a Cache, &'a dyn SharedStore)>,
    pub now_s: u64,
    /// May the request wait for a fetch (false once it has waited enough).
    pub allow_wait: bool,
}

/// An allowed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// Header changes to apply, in order.
    pub edits: Vec<Edit>,
    /// Encoded [`Identity`] to record; `None` for an anonymous request (`allow_missing`).
    pub identity: Option<Vec<u8>>,
    /// The provider that verified the token.
    pub provider: Option<usize>,
}

/// What the request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The first fetch of remote document `n` (index into `Policy::remotes`).
    Remote(usize),
    /// An early refresh of remote key set `n`: the token's `kid` is unknown.
    EarlyRefresh(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(Allowed),
    Deny(JwtError),
    Wait(Wait),
}

/// How the cache took part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    /// Cache disabled, or the request had no token or failed before the lookup.
    NotUsed,
    Hit,
    /// Missed; `stored` tells whether the verified result was written.
    Miss { stored: bool },
    /// The shared-data read failed (treated as a miss).
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub decision: Decision,
    pub cache: CacheUse,
}

pub fn decide(headers: &Headers, cx: &Ctx<'_>) -> Outcome {
    let mut cache = CacheUse::NotUsed;
    let decision = decide_inner(headers, cx, &mut cache);
    Outcome { decision, cache }
}

enum Step {
    Deny(JwtError),
    Wait(Wait),
}

/// The key set of a provider, or why it cannot be used now.
fn provider_keys<'a>(p: &'a Provider, cx: &'a Ctx<'_>) -> Result<&'a KeySet, Step> {
    match &p.keys {
        Keys::Local(k) => Ok(k),
        Keys::Remote(i) => remote_ready(*i, cx).and_then(|r| r.keys().ok_or(Step::Deny(JwtError::JwksUnavailable))),
    }
}

fn remote_ready<'a>(i: usize, cx: &'a Ctx<'_>) -> Result<&'a Remote, Step> {
    let r = cx.remotes.get(i).ok_or(Step::Deny(JwtError::Internal))?;
    match r.availability() {
        Availability::Ready => Ok(r),
        Availability::Loading if cx.allow_wait => Err(Step::Wait(Wait::Remote(i))),
        Availability::Loading | Availability::Unavailable => Err(Step::Deny(JwtError::JwksUnavailable)),
    }
}

fn remote_revoked(p: &Provider, cx: &Ctx<'_>, jti: &str) -> bool {
    p.revocations.and_then(|i| cx.remotes.get(i)).is_some_and(|r| r.is_revoked(jti))
}

/// A claim as a header value: strings as they are, numbers and booleans as JSON text,
/// arrays of those joined with `,`. Anything else, or a value with control characters,
/// is not written.
pub fn header_value(v: &Value) -> Option<Vec<u8>> {
    let scalar = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    };
    let s = match v {
        Value::Array(items) => items.iter().map(scalar).collect::<Option<Vec<String>>>()?.join(","),
        other => scalar(other)?,
    };
    let ok = s.len() <= 8192 && !s.bytes().any(|b| b.is_ascii_control() && b != b'\t');
    ok.then(|| s.into_bytes())
}

fn located(p: &Provider, found: &Found) -> bool {
    p.sources.iter().any(|s| found.sources.contains(s))
}

fn finish(p: &Provider, headers: &Headers, cx: &Ctx<'_>, found: &Found, mut edits: Vec<Edit>, claim_values: &[(u8, Vec<u8>)]) -> Vec<Edit> {
    if !p.forward {
        edits.extend(removal(headers, &cx.policy.sources, found));
    }
    for (i, v) in claim_values {
        if let Some((_, h)) = p.claim_to_headers.get(usize::from(*i)) {
            edits.push(Edit::Set(h.clone(), v.clone()));
        }
    }
    edits
}

fn serve_hit(rec: Record, rule: &Rule, headers: &Headers, cx: &Ctx<'_>, found: &Found, edits: &[Edit]) -> Option<Decision> {
    let pi = usize::from(rec.provider);
    let p = cx.policy.providers.get(pi)?;
    if !rule.providers.contains(&pi) || !located(p, found) || cx.now_s >= rec.exp {
        return None;
    }
    let keys = provider_keys(p, cx).ok()?;
    if binding(&cx.policy.config_hash, &keys.fingerprint) != rec.binding {
        return None;
    }
    if let Some(ri) = p.revocations {
        remote_ready(ri, cx).ok()?;
    }
    if let Some(j) = &rec.jti {
        if p.revoked.contains(j) || remote_revoked(p, cx, j) {
            return Some(Decision::Deny(JwtError::Revoked));
        }
    }
    let edits = finish(p, headers, cx, found, edits.to_vec(), &rec.headers);
    Some(Decision::Allow(Allowed { edits, identity: Some(rec.identity), provider: Some(pi) }))
}

fn verify_with(pi: usize, token: &Token<'_>, headers: &Headers, cx: &Ctx<'_>, found: &Found, edits: &[Edit]) -> Result<(Allowed, Option<Record>), Step> {
    let p = cx.policy.providers.get(pi).ok_or(Step::Deny(JwtError::Internal))?;
    let keys = provider_keys(p, cx)?;
    if let Some(ri) = p.revocations {
        remote_ready(ri, cx)?;
    }
    if Alg::parse(&token.header.alg).is_none() {
        return Err(Step::Deny(JwtError::AlgUnsupported));
    }
    let checked = claims::check(p, &token.header, &token.claims, cx.now_s, &|j| remote_revoked(p, cx, j)).map_err(Step::Deny)?;
    match verify_signature(token, keys) {
        Ok(()) => {}
        Err(JwtError::UnknownKid) => {
            if let Keys::Remote(i) = p.keys {
                if cx.allow_wait && cx.remotes.get(i).is_some_and(|r| r.may_refresh_early(cx.now_s)) {
                    return Err(Step::Wait(Wait::EarlyRefresh(i)));
                }
            }
            return Err(Step::Deny(JwtError::UnknownKid));
        }
        Err(e) => return Err(Step::Deny(e)),
    }
    let identity = Identity {
        source: IdSource::Jwt,
        provider: p.name.clone(),
        subject: checked.subject.clone(),
        scopes: Vec::new(),
        claims: token.claims.clone(),
    }
    .encode();
    let claim_values: Vec<(u8, Vec<u8>)> = p
        .claim_to_headers
        .iter()
        .enumerate()
        .filter_map(|(i, (claim, _))| Some((u8::try_from(i).ok()?, header_value(lookup(&token.claims, claim)?)?)))
        .collect();
    let record = (cx.now_s < checked.exp).then(|| Record {
        provider: u16::try_from(pi).unwrap_or(u16::MAX),
        binding: binding(&cx.policy.config_hash, &keys.fingerprint),
        exp: checked.exp,
        jti: checked.jti.clone(),
        headers: claim_values.clone(),
        identity: identity.clone(),
    });
    let edits = finish(p, headers, cx, found, edits.to_vec(), &claim_values);
    Ok((Allowed { edits, identity: Some(identity), provider: Some(pi) }, record))
}

fn decide_inner(headers: &Headers, cx: &Ctx<'_>, cache_use: &mut CacheUse) -> Decision {
    let policy = cx.policy;
    let path = match normalize(headers.path()) {
        Ok(p) => p,
        Err(e) => return Decision::Deny(JwtError::BadPath(e)),
    };
    let Some(rule) = policy.rules.iter().find(|r| r.route.matches(&path, headers.method())) else {
        return Decision::Deny(JwtError::NoRule);
    };
    // A client can never inject a claim header, whoever verifies the token (or none).
    let edits: Vec<Edit> = policy.claim_headers.iter().map(|h| Edit::Remove(h.clone())).collect();
    let found = match extract(headers, &policy.sources, &rule.sources) {
        Ok(Some(f)) => f,
        Ok(None) if rule.allow_missing => return Decision::Allow(Allowed { edits, identity: None, provider: None }),
        Ok(None) => return Decision::Deny(JwtError::Missing),
        Err(e) => return Decision::Deny(e),
    };
    if found.token.len() > policy.max_token_bytes {
        return Decision::Deny(JwtError::TooLarge);
    }
    let cache = cx.cache;
    if let Some((c, store)) = cache {
        *cache_use = match c.get(store, &found.token) {
            Ok(Some(rec)) => match serve_hit(rec, rule, headers, cx, &found, &edits) {
                Some(d) => {
                    *cache_use = CacheUse::Hit;
                    return d;
                }
                None => CacheUse::Miss { stored: false },
            },
            Ok(None) => CacheUse::Miss { stored: false },
            Err(_) => CacheUse::Error,
        };
    }
    let token = match token::parse(&found.token, policy.max_token_bytes) {
        Ok(t) => t,
        Err(e) => return Decision::Deny(e),
    };
    let iss = match token.claims.get("iss") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Decision::Deny(JwtError::ClaimInvalid),
        None => return Decision::Deny(JwtError::IssuerNotAllowed),
    };
    let candidates: Vec<usize> = policy
        .by_issuer
        .get(iss)
        .into_iter()
        .flatten()
        .copied()
        .filter(|pi| rule.providers.contains(pi) && policy.providers.get(*pi).is_some_and(|p| located(p, &found)))
        .collect();
    let mut first_error = None;
    for pi in candidates {
        match verify_with(pi, &token, headers, cx, &found, &edits) {
            Ok((allowed, record)) => {
                if let (Some((c, store)), Some(rec)) = (cache, record) {
                    let stored = matches!(c.put(store, &found.token, &rec), Ok(true));
                    *cache_use = CacheUse::Miss { stored };
                }
                return Decision::Allow(allowed);
            }
            Err(Step::Wait(w)) => return Decision::Wait(w),
            Err(Step::Deny(e)) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Decision::Deny(first_error.unwrap_or(JwtError::IssuerNotAllowed))
}
