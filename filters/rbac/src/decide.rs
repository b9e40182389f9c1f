//! The pure decision: given the request, the verified identity (if any), the mTLS peer (if
//! any) and the policy, allow or deny, naming the rule and the reason.

use crate::permission::scope_grants;
use crate::policy::{Access, Policy, RoleId};
use shared::identity::Identity;
use shared::pathmatch::{normalize, PathError};
use shared::reply::Rejection;
use shared::request::Headers;

/// What the decision needs from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestView<'a> {
    pub method: &'a [u8],
    /// The raw `:path`, query included.
    pub path: &'a [u8],
}

impl<'a> RequestView<'a> {
    pub fn new(method: &'a [u8], path: &'a [u8]) -> Self {
        Self { method, path }
    }

    pub fn from_headers(h: &'a Headers) -> Self {
        Self { method: h.method(), path: h.path() }
    }
}

/// The downstream peer of an mTLS connection (a client certificate was presented and
/// validated by the listener).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// The certificate's URI SAN (the SPIFFE ID), if it has one.
    pub uri_san: Option<String>,
}

impl PeerCert {
    /// From Envoy's `connection.mtls` (a serialized bool: one byte) and, read only when that
    /// is true, `connection.uri_san_peer_certificate`. `None`: not an mTLS connection.
    pub fn from_properties(mtls: Option<&[u8]>, uri_san: impl FnOnce() -> Option<Vec<u8>>) -> Option<Self> {
        if !matches!(mtls, Some([1]) | Some(b"true")) {
            return None;
        }
        let uri_san = uri_san().and_then(|b| String::from_utf8(b).ok()).filter(|s| !s.is_empty());
        Some(Self { uri_san })
    }
}

/// Which configured rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleRef {
    /// `rules[i]`.
    Rule(usize),
    /// `services[<peer>].allow[i]`.
    ServiceAllow(usize),
    /// `services[<peer>].deny[i]`.
    ServiceDeny(usize),
}

impl RuleRef {
    /// The JSON path of the rule, for logs: `rules[3]`, `services.allow[0]`.
    pub fn label(self) -> String {
        match self {
            RuleRef::Rule(i) => format!("rules[{i}]"),
            RuleRef::ServiceAllow(i) => format!("services.allow[{i}]"),
            RuleRef::ServiceDeny(i) => format!("services.deny[{i}]"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowReason {
    /// A `public` rule.
    Public,
    /// A role of the identity grants the rule's permission.
    Permission,
    /// An identity scope (API key, signing key) grants the rule's permission.
    Scope,
    /// The identity holds one of the rule's roles.
    Role,
    /// A service rule allows the mTLS peer.
    Service,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// The path is ambiguous and is refused rather than guessed at.
    BadPath(PathError),
    /// No rule matches (default deny).
    NoRule,
    /// A protected rule matched and there is no verified identity.
    Unauthenticated,
    /// The identity lacks the rule's permission.
    PermissionDenied,
    /// The identity holds none of the rule's roles.
    RoleRequired,
    /// Only a role that requires MFA would allow it, and the identity has no MFA proof.
    MfaRequired,
    /// A `deny` service rule matches the mTLS peer.
    ServiceDenied,
    /// The mTLS peer has an entry, but no `allow` rule matches.
    ServiceNotAllowed,
    /// The mTLS peer's SPIFFE ID has no entry.
    ServiceUnknown,
    /// The mTLS peer's certificate has no URI SAN (no SPIFFE ID).
    ServiceIdentityMissing,
}

impl DenyReason {
    /// Every metric suffix, for defining the counters once.
    pub const METRICS: &'static [&'static str] = &[
        "bad_path",
        "no_rule",
        "unauthenticated",
        "permission_denied",
        "role_required",
        "mfa_required",
        "service_denied",
        "service_not_allowed",
        "service_unknown",
        "service_identity_missing",
    ];

    /// Stable metric suffix (`edgesec.rbac.denied.<metric>`).
    pub fn metric(self) -> &'static str {
        match self {
            DenyReason::BadPath(_) => "bad_path",
            DenyReason::NoRule => "no_rule",
            DenyReason::Unauthenticated => "unauthenticated",
            DenyReason::PermissionDenied => "permission_denied",
            DenyReason::RoleRequired => "role_required",
            DenyReason::MfaRequired => "mfa_required",
            DenyReason::ServiceDenied => "service_denied",
            DenyReason::ServiceNotAllowed => "service_not_allowed",
            DenyReason::ServiceUnknown => "service_unknown",
            DenyReason::ServiceIdentityMissing => "service_identity_missing",
        }
    }
}

/// The one place a denial becomes a wire reply.
impl From<DenyReason> for Rejection {
    fn from(r: DenyReason) -> Self {
        match r {
            DenyReason::BadPath(e) => Rejection::new(400, e.code(), e.to_string()),
            DenyReason::NoRule => Rejection::new(403, "no_matching_rule", "no access rule allows this request"),
            DenyReason::Unauthenticated => Rejection::unauthorized_bearer("authentication_required", "this resource requires authentication", None),
            DenyReason::PermissionDenied => Rejection::new(403, "permission_denied", "the caller lacks the permission this resource requires"),
            DenyReason::RoleRequired => Rejection::new(403, "role_required", "the caller lacks a role this resource requires"),
            DenyReason::MfaRequired => Rejection::new(403, "mfa_required", "multi-factor authentication is required for this resource")
                .with_header("www-authenticate", "Bearer error=\"insufficient_user_authentication\", error_description=\"multi-factor authentication is required\""),
            DenyReason::ServiceDenied => Rejection::new(403, "service_denied", "this service may not call this resource"),
            DenyReason::ServiceNotAllowed => Rejection::new(403, "service_not_allowed", "no service rule allows this call"),
            DenyReason::ServiceUnknown => Rejection::new(403, "service_unknown", "the calling service is not known"),
            DenyReason::ServiceIdentityMissing => Rejection::new(403, "service_identity_missing", "the client certificate carries no SPIFFE ID"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow { rule: RuleRef, reason: AllowReason },
    Deny { rule: Option<RuleRef>, reason: DenyReason },
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    pub fn rule(&self) -> Option<RuleRef> {
        match self {
            Decision::Allow { rule, .. } => Some(*rule),
            Decision::Deny { rule, .. } => *rule,
        }
    }
}

fn deny(rule: Option<RuleRef>, reason: DenyReason) -> Decision {
    Decision::Deny { rule, reason }
}

/// Decide one request. First matching rule decides; no rule: deny. An mTLS peer is decided
/// by the service rules alone when any are configured.
pub fn decide(req: &RequestView<'_>, identity: Option<&Identity>, peer: Option<&PeerCert>, policy: &Policy) -> Decision {
    let path = match normalize(req.path) {
        Ok(p) => p,
        Err(e) => return deny(None, DenyReason::BadPath(e)),
    };
    if let Some(peer) = peer.filter(|_| policy.has_services()) {
        return decide_service(&path, req.method, peer, policy);
    }
    let Some(i) = policy.first_match(&path, req.method) else {
        return deny(None, DenyReason::NoRule);
    };
    let rule = RuleRef::Rule(i);
    let Some(access) = policy.rules.get(i).map(|r| &r.access) else {
        return deny(None, DenyReason::NoRule);
    };
    if *access == Access::Public {
        return Decision::Allow { rule, reason: AllowReason::Public };
    }
    let Some(identity) = identity else {
        return deny(Some(rule), DenyReason::Unauthenticated);
    };
    match check_access(access, identity, policy) {
        Ok(reason) => Decision::Allow { rule, reason },
        Err(reason) => deny(Some(rule), reason),
    }
}

fn has_mfa(identity: &Identity, policy: &Policy) -> bool {
    identity.claim_strings(&policy.mfa_claim).iter().any(|m| policy.mfa_values.iter().any(|v| v == m))
}

/// The configured roles the identity holds (unknown role names are ignored).
pub fn held_roles(identity: &Identity, policy: &Policy) -> Vec<RoleId> {
    identity.claim_strings(&policy.role_claim).into_iter().filter_map(|r| policy.role_id(r)).collect()
}

fn check_access(access: &Access, identity: &Identity, policy: &Policy) -> Result<AllowReason, DenyReason> {
    let (allowed, permission) = match access {
        Access::Public => return Ok(AllowReason::Public),
        Access::Roles(ids) => (ids, None),
        Access::Permission { permission, granted_by } => (granted_by, Some(permission)),
    };
    let mut mfa: Option<bool> = None;
    let mut blocked_by_mfa = false;
    for id in held_roles(identity, policy) {
        if allowed.binary_search(&id).is_err() {
            continue;
        }
        let needs_mfa = policy.roles.get(id).is_none_or(|r| r.mfa_required);
        if !needs_mfa || *mfa.get_or_insert_with(|| has_mfa(identity, policy)) {
            return Ok(if permission.is_some() { AllowReason::Permission } else { AllowReason::Role });
        }
        blocked_by_mfa = true;
    }
    if let Some(p) = permission {
        if identity.scopes.iter().any(|s| scope_grants(s, p)) {
            return Ok(AllowReason::Scope);
        }
    }
    Err(match (blocked_by_mfa, permission) {
        (true, _) => DenyReason::MfaRequired,
        (false, Some(_)) => DenyReason::PermissionDenied,
        (false, None) => DenyReason::RoleRequired,
    })
}

fn decide_service(path: &str, method: &[u8], peer: &PeerCert, policy: &Policy) -> Decision {
    let Some(id) = peer.uri_san.as_deref().filter(|s| !s.is_empty()) else {
        return deny(None, DenyReason::ServiceIdentityMissing);
    };
    let Some(service) = policy.services.get(id) else {
        return deny(None, DenyReason::ServiceUnknown);
    };
    if let Some(i) = service.deny.iter().position(|r| r.matches(path, method)) {
        return deny(Some(RuleRef::ServiceDeny(i)), DenyReason::ServiceDenied);
    }
    match service.allow.iter().position(|r| r.matches(path, method)) {
        Some(i) => Decision::Allow { rule: RuleRef::ServiceAllow(i), reason: AllowReason::Service },
        None => deny(None, DenyReason::ServiceNotAllowed),
    }
}
