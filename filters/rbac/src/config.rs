//! The plugin configuration (JSON) and its compilation into a [`Policy`]. Every problem is
//! reported with its JSON path; the plugin refuses to load on any of them.

use crate::permission::{Grant, Permission};
use crate::policy::{Access, FirstSegment, Policy, Role, RoleId, Rule, RuleIndex, ServicePolicy};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use shared::config::{index, join, ConfigErrors, Validator};
use shared::pathmatch::{normalize, RouteMatch};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::marker::PhantomData;

/// The `amr` values (RFC 8176) that prove multi-factor authentication by default.
pub const DEFAULT_MFA_VALUES: &[&str] = &["mfa", "otp", "hwk", "swk"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Role name -> what the role grants.
    #[serde(default)]
    pub roles: Entries<RoleConfig>,
    /// Identity claim (dotted paths allowed: `realm_access.roles`) holding the caller's
    /// roles, a string or an array of strings. Default `role`.
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// Identity claim listing the authentication methods (RFC 8176). Default `amr`.
    #[serde(default = "default_mfa_claim")]
    pub mfa_claim: String,
    /// Values of `mfa_claim` that count as multi-factor. Default `mfa`, `otp`, `hwk`, `swk`.
    #[serde(default = "default_mfa_values")]
    pub mfa_values: Vec<String>,
    /// Ordered rules; the first matching one decides; none matching: 403.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// SPIFFE ID -> service-to-service rules for mTLS callers.
    #[serde(default)]
    pub services: Entries<ServiceConfig>,
    /// Decide and record, never block.
    #[serde(default)]
    pub shadow: bool,
}

fn default_role_claim() -> String {
    "role".into()
}
fn default_mfa_claim() -> String {
    "amr".into()
}
fn default_mfa_values() -> Vec<String> {
    DEFAULT_MFA_VALUES.iter().map(|s| (*s).to_string()).collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// Granted patterns: `*`, `*:read`, `orders:*`, `orders:read`.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// The role counts only when the identity proves MFA (`mfa_claim`).
    #[serde(default)]
    pub mfa_required: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Path template: literal segments, `{name}` for one segment, trailing `**`.
    #[serde(default)]
    pub path: Option<String>,
    /// Plain prefix of the normalized path (instead of `path`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Upper-case methods; absent means all.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Anyone may pass, with or without an identity.
    #[serde(default)]
    pub public: bool,
    /// The permission (`resource:action`) the caller needs.
    #[serde(default)]
    pub permission: Option<String>,
    /// Any of these roles lets the caller pass.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub methods: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Routes this service may call.
    #[serde(default)]
    pub allow: Vec<RouteConfig>,
    /// Routes this service may never call; deny wins over allow.
    #[serde(default)]
    pub deny: Vec<RouteConfig>,
}

/// A JSON object kept in order, refusing duplicate keys (which serde maps would silently
/// collapse to the last one).
#[derive(Debug)]
pub struct Entries<V>(pub Vec<(String, V)>);

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Entries(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Visit<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut seen = HashSet::new();
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    if !seen.insert(k.clone()) {
                        return Err(de::Error::custom(format!("duplicate key `{k}`")));
                    }
                    let v = map.next_value()?;
                    out.push((k, v));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(Visit(PhantomData))
    }
}

fn check_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// `spiffe://trust-domain/path` as the SPIFFE ID spec defines it.
fn check_spiffe_id(id: &str) -> Result<(), &'static str> {
    let rest = id.strip_prefix("spiffe://").ok_or("a SPIFFE ID starts with 'spiffe://'")?;
    let (domain, path) = match rest.split_once('/') {
        Some((d, p)) => (d, Some(p)),
        None => (rest, None),
    };
    if domain.is_empty() || !domain.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')) {
        return Err("the trust domain must be non-empty and use only a-z, 0-9, '.', '-', '_'");
    }
    if let Some(path) = path {
        let ok = path.split('/').all(|s| {
            !s.is_empty() && s != "." && s != ".." && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        });
        if !ok {
            return Err("the path must be non-empty segments of A-Z, a-z, 0-9, '.', '-', '_' (no '.', '..', empty segments or trailing '/')");
        }
    }
    Ok(())
}

/// A route plus what the index and the overlap checks need to know about it.
struct CompiledRoute {
    route: RouteMatch,
    first: FirstSegment,
}

fn compile_route(path: Option<&str>, prefix: Option<&str>, methods: Option<&[String]>, at: &str, v: &mut Validator) -> Option<CompiledRoute> {
    if methods.is_some_and(<[String]>::is_empty) {
        v.error(join(at, "methods"), "an empty list matches no method; omit 'methods' to match all methods");
    }
    if let Some(p) = prefix.filter(|p| p.starts_with('/')) {
        v.check(
            normalize(p.as_bytes()).as_deref() == Ok(p),
            join(at, "prefix"),
            format!("'{p}' is not in normalized form, so no normalized request path can start with it"),
        );
    }
    let route = RouteMatch::compile(path, prefix, methods, at, v)?;
    let first = match (path, prefix) {
        (Some(t), _) => FirstSegment::of_template(t),
        (_, Some(p)) => FirstSegment::of_prefix(p),
        _ => FirstSegment::Any,
    };
    Some(CompiledRoute { route, first })
}

/// The first route of `routes` that matches every request `r` matches.
fn covering<'a>(routes: &'a [Option<CompiledRoute>], r: &CompiledRoute) -> Option<(usize, &'a CompiledRoute)> {
    routes.iter().enumerate().find_map(|(j, e)| {
        let e = e.as_ref()?;
        (e.first.may_overlap(&r.first) && r.route.shadowed_by(&e.route)).then_some((j, e))
    })
}

/// Report each route of `list` that an earlier route of the same list already covers
/// (duplicate or shadowed), or, for service `allow` lists, that a `deny` route covers.
fn check_shadowing(routes: &[Option<CompiledRoute>], list: &str, deny: Option<(&[Option<CompiledRoute>], &str)>, v: &mut Validator) {
    for (i, r) in routes.iter().enumerate() {
        let Some(r) = r else { continue };
        if let Some((j, e)) = covering(routes.get(..i).unwrap_or_default(), r) {
            v.error(
                index(list, i),
                format!("can never match: {} ({}) comes first and matches every request this one does", index(list, j), e.route.describe()),
            );
        } else if let Some((j, e)) = deny.and_then(|(d, name)| covering(d, r).map(|(j, e)| ((name, j), e))) {
            v.error(index(list, i), format!("can never allow anything: {} ({}) denies every request it matches", index(j.0, j.1), e.route.describe()));
        }
    }
}

impl Config {
    pub fn compile(self) -> Result<Policy, ConfigErrors> {
        let mut v = Validator::new();

        // Roles.
        let mut roles = Vec::with_capacity(self.roles.0.len());
        let mut role_ids: HashMap<String, RoleId> = HashMap::new();
        for (name, rc) in self.roles.0 {
            let at = join("roles", &name);
            v.check(check_name(&name), &at, "a role name must be non-empty, without spaces or control characters");
            let mut grants = Vec::with_capacity(rc.permissions.len());
            let mut seen = HashSet::new();
            for (i, g) in rc.permissions.iter().enumerate() {
                let pat = index(&join(&at, "permissions"), i);
                match Grant::parse(g) {
                    Ok(grant) => grants.push(grant),
                    Err(e) => v.error(&pat, format!("'{g}': {e}")),
                }
                v.check(seen.insert(g.as_str()), pat, format!("'{g}' is listed twice"));
            }
            role_ids.insert(name.clone(), roles.len());
            roles.push(Role { name, grants, mfa_required: rc.mfa_required });
        }

        v.check(check_name(&self.role_claim), "role_claim", "must be a non-empty claim name");
        v.check(check_name(&self.mfa_claim), "mfa_claim", "must be a non-empty claim name");
        v.check(!self.mfa_values.is_empty(), "mfa_values", "at least one value is required");
        let mut seen = HashSet::new();
        for (i, m) in self.mfa_values.iter().enumerate() {
            v.check(!m.is_empty(), index("mfa_values", i), "must not be empty");
            v.check(seen.insert(m.as_str()), index("mfa_values", i), format!("'{m}' is listed twice"));
        }

        // Rules.
        if self.rules.is_empty() && self.services.0.is_empty() {
            v.error("rules", "at least one rule is required: without rules every request would be denied");
        }
        let mut routes: Vec<Option<CompiledRoute>> = Vec::with_capacity(self.rules.len());
        let mut accesses: Vec<Option<Access>> = Vec::with_capacity(self.rules.len());
        for (i, r) in self.rules.iter().enumerate() {
            let at = index("rules", i);
            routes.push(compile_route(r.path.as_deref(), r.prefix.as_deref(), r.methods.as_deref(), &at, &mut v));
            accesses.push(compile_access(r, &at, &roles, &role_ids, &mut v));
        }
        check_shadowing(&routes, "rules", None, &mut v);

        // Services.
        let mut services = HashMap::with_capacity(self.services.0.len());
        for (id, sc) in self.services.0 {
            let at = join("services", &id);
            if let Err(e) = check_spiffe_id(&id) {
                v.error(&at, format!("'{id}' is not a SPIFFE ID: {e}"));
            }
            v.check(!sc.allow.is_empty(), join(&at, "allow"), "at least one allowed route is required (a caller without an entry is denied anyway)");
            let compile_list = |list: &[RouteConfig], name: &str, v: &mut Validator| -> Vec<Option<CompiledRoute>> {
                list.iter()
                    .enumerate()
                    .map(|(i, r)| compile_route(r.path.as_deref(), r.prefix.as_deref(), r.methods.as_deref(), &index(&join(&at, name), i), v))
                    .collect()
            };
            let allow = compile_list(&sc.allow, "allow", &mut v);
            let deny = compile_list(&sc.deny, "deny", &mut v);
            check_shadowing(&deny, &join(&at, "deny"), None, &mut v);
            check_shadowing(&allow, &join(&at, "allow"), Some((&deny, &join(&at, "deny"))), &mut v);
            let routes_of = |l: Vec<Option<CompiledRoute>>| l.into_iter().flatten().map(|c| c.route).collect();
            services.insert(id, ServicePolicy { allow: routes_of(allow), deny: routes_of(deny) });
        }

        let mut index = RuleIndex::default();
        let mut rules = Vec::with_capacity(routes.len());
        for (route, access) in routes.into_iter().zip(accesses) {
            if let (Some(c), Some(access)) = (route, access) {
                index.insert(rules.len(), c.route.methods(), &c.first);
                rules.push(Rule { route: c.route, access });
            }
        }
        v.finish(Policy {
            roles,
            role_ids,
            role_claim: self.role_claim,
            mfa_claim: self.mfa_claim,
            mfa_values: self.mfa_values,
            rules,
            index,
            services,
            shadow: self.shadow,
        })
    }
}

fn compile_access(r: &RuleConfig, at: &str, roles: &[Role], role_ids: &HashMap<String, RoleId>, v: &mut Validator) -> Option<Access> {
    let set = usize::from(r.public) + usize::from(r.permission.is_some()) + usize::from(r.roles.is_some());
    if set == 0 {
        v.error(at, "one of 'public': true, 'permission' or 'roles' is required");
        return None;
    }
    if set > 1 {
        v.error(at, "set only one of 'public', 'permission' and 'roles'");
        return None;
    }
    if r.public {
        return Some(Access::Public);
    }
    if let Some(p) = &r.permission {
        let at = join(at, "permission");
        let permission = match Permission::parse(p) {
            Ok(p) => p,
            Err(e) => {
                v.error(at, format!("'{p}': {e}"));
                return None;
            }
        };
        let granted_by: Vec<RoleId> = roles
            .iter()
            .enumerate()
            .filter(|(_, role)| role.grants.iter().any(|g| g.grants(&permission)))
            .map(|(id, _)| id)
            .collect();
        if granted_by.is_empty() {
            v.error(at, format!("no role grants '{p}', so only an identity scope could ever pass this rule; add it to a role"));
            return None;
        }
        return Some(Access::Permission { permission, granted_by });
    }
    let names = r.roles.as_deref().unwrap_or_default();
    let at = join(at, "roles");
    if names.is_empty() {
        v.error(&at, "at least one role is required (an empty list can never match)");
        return None;
    }
    let mut ids = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        match role_ids.get(name) {
            Some(&id) if ids.contains(&id) => v.error(index(&at, i), format!("role '{name}' is listed twice")),
            Some(&id) => ids.push(id),
            None => v.error(index(&at, i), format!("unknown role '{name}' (not defined under 'roles')")),
        }
    }
    ids.sort_unstable();
    (ids.len() == names.len()).then_some(Access::Roles(ids))
}
