//! The compiled policy: roles with their grants, rules with their routes and access, the rule
//! index that keeps the per-request cost flat as rules grow, and the service rules.

use crate::permission::{Grant, Permission};
use shared::pathmatch::{Methods, RouteMatch};
use std::collections::HashMap;

/// Position of a role in [`Policy::roles`].
pub type RoleId = usize;

#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    pub grants: Vec<Grant>,
    /// The role grants nothing unless the identity proves multi-factor authentication.
    pub mfa_required: bool,
}

/// Who may pass a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anyone, with or without an identity.
    Public,
    /// Holders of any of these roles (sorted).
    Roles(Vec<RoleId>),
    /// Holders of `permission`: through a role in `granted_by` (sorted; precomputed at load)
    /// or an identity scope that grants it.
    Permission { permission: Permission, granted_by: Vec<RoleId> },
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub route: RouteMatch,
    pub access: Access,
}

/// Service-to-service rules for one SPIFFE ID.
#[derive(Debug, Clone, Default)]
pub struct ServicePolicy {
    pub allow: Vec<RouteMatch>,
    pub deny: Vec<RouteMatch>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub roles: Vec<Role>,
    pub(crate) role_ids: HashMap<String, RoleId>,
    pub role_claim: String,
    pub mfa_claim: String,
    pub mfa_values: Vec<String>,
    pub rules: Vec<Rule>,
    pub(crate) index: RuleIndex,
    pub services: HashMap<String, ServicePolicy>,
    pub shadow: bool,
}

impl Policy {
    pub fn role_id(&self, name: &str) -> Option<RoleId> {
        self.role_ids.get(name).copied()
    }

    /// Service rules apply only when some are configured (see README: "services").
    pub fn has_services(&self) -> bool {
        !self.services.is_empty()
    }

    /// The first rule (in config order) matching a normalized path and a method.
    pub fn first_match(&self, normalized: &str, method: &[u8]) -> Option<usize> {
        self.first_match_counted(normalized, method).0
    }

    /// [`Self::first_match`] plus how many rules were examined: the per-request cost.
    pub fn first_match_counted(&self, normalized: &str, method: &[u8]) -> (Option<usize>, usize) {
        let mut examined = 0;
        for i in self.index.candidates(normalized, method) {
            examined += 1;
            if self.rules.get(i).is_some_and(|r| r.route.matches(normalized, method)) {
                return (Some(i), examined);
            }
        }
        (None, examined)
    }
}

/// The literal first segment every path a route matches starts with, if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstSegment {
    Literal(String),
    Any,
}

impl FirstSegment {
    /// For a path template (already validated): `/orders/{id}` -> `orders`; `/` -> the empty
    /// segment (it only matches `/`); `/{id}` and `/**` -> any.
    pub fn of_template(template: &str) -> Self {
        let body = template.get(1..).unwrap_or_default();
        let first = body.split('/').next().unwrap_or_default();
        if first == "**" || first.starts_with('{') {
            FirstSegment::Any
        } else {
            FirstSegment::Literal(first.to_string())
        }
    }

    /// For a prefix: `/orders/` and `/orders/x` -> `orders`; `/orders` (which also matches
    /// `/ordersX`) and `/` -> any.
    pub fn of_prefix(prefix: &str) -> Self {
        match prefix.get(1..).unwrap_or_default().split_once('/') {
            Some((seg, _)) if !seg.is_empty() => FirstSegment::Literal(seg.to_string()),
            _ => FirstSegment::Any,
        }
    }

    /// The first segment of a normalized path (`""` for `/`).
    pub fn of_path(normalized: &str) -> &str {
        normalized.get(1..).unwrap_or_default().split('/').next().unwrap_or_default()
    }

    /// Two routes can only match a common path if their first segments can be equal.
    pub fn may_overlap(&self, other: &FirstSegment) -> bool {
        match (self, other) {
            (FirstSegment::Literal(a), FirstSegment::Literal(b)) => a == b,
            _ => true,
        }
    }
}

/// Rules bucketed by method and first literal segment. A request looks at four sorted
/// buckets (its method or any method, times its first segment or any segment) and merges
/// them in rule order, so "first matching rule wins" holds while only rules that could match
/// are examined.
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleIndex {
    by_method: HashMap<Vec<u8>, SegmentBuckets>,
    any_method: SegmentBuckets,
}

#[derive(Debug, Clone, Default)]
struct SegmentBuckets {
    by_segment: HashMap<String, Vec<usize>>,
    any_segment: Vec<usize>,
}

impl SegmentBuckets {
    fn insert(&mut self, rule: usize, first: &FirstSegment) {
        match first {
            FirstSegment::Literal(s) => self.by_segment.entry(s.clone()).or_default().push(rule),
            FirstSegment::Any => self.any_segment.push(rule),
        }
    }

    fn lists<'a>(&'a self, segment: &str) -> [&'a [usize]; 2] {
        [self.by_segment.get(segment).map(Vec::as_slice).unwrap_or_default(), &self.any_segment]
    }
}

impl RuleIndex {
    /// Rules must be inserted in increasing order.
    pub(crate) fn insert(&mut self, rule: usize, methods: &Methods, first: &FirstSegment) {
        if methods.is_any() {
            self.any_method.insert(rule, first);
        } else {
            for m in methods.as_slice() {
                self.by_method.entry(m.as_bytes().to_vec()).or_default().insert(rule, first);
            }
        }
    }

    pub(crate) fn candidates<'a>(&'a self, normalized: &str, method: &[u8]) -> Candidates<'a> {
        let segment = FirstSegment::of_path(normalized);
        let [a, b] = self.any_method.lists(segment);
        let [c, d] = match self.by_method.get(method) {
            Some(buckets) => buckets.lists(segment),
            None => [&[][..], &[][..]],
        };
        Candidates { lists: [a, b, c, d] }
    }
}

/// Rule positions from up to four sorted, disjoint lists, in increasing order.
pub(crate) struct Candidates<'a> {
    lists: [&'a [usize]; 4],
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        for (k, list) in self.lists.iter().enumerate() {
            if let Some(&head) = list.first() {
                if best.is_none_or(|(_, b)| head < b) {
                    best = Some((k, head));
                }
            }
        }
        let (k, head) = best?;
        if let Some(list) = self.lists.get_mut(k) {
            *list = list.get(1..).unwrap_or_default();
        }
        Some(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_segments() {
        assert_eq!(FirstSegment::of_template("/orders/{id}"), FirstSegment::Literal("orders".into()));
        assert_eq!(FirstSegment::of_template("/orders"), FirstSegment::Literal("orders".into()));
        assert_eq!(FirstSegment::of_template("/"), FirstSegment::Literal(String::new()));
        assert_eq!(FirstSegment::of_template("/{id}/x"), FirstSegment::Any);
        assert_eq!(FirstSegment::of_template("/**"), FirstSegment::Any);
        assert_eq!(FirstSegment::of_prefix("/orders/"), FirstSegment::Literal("orders".into()));
        assert_eq!(FirstSegment::of_prefix("/orders/x"), FirstSegment::Literal("orders".into()));
        assert_eq!(FirstSegment::of_prefix("/orders"), FirstSegment::Any);
        assert_eq!(FirstSegment::of_prefix("/"), FirstSegment::Any);
        assert_eq!(FirstSegment::of_path("/"), "");
        assert_eq!(FirstSegment::of_path("/orders"), "orders");
        assert_eq!(FirstSegment::of_path("/orders/1"), "orders");
        assert_eq!(FirstSegment::of_path("/orders/"), "orders");
    }

    #[test]
    fn candidates_merge_in_rule_order() {
        let mut idx = RuleIndex::default();
        let get = Methods::compile(&["GET".into()], "m", &mut shared::config::Validator::new());
        let lit = FirstSegment::Literal("orders".into());
        idx.insert(0, &Methods::any(), &FirstSegment::Any);
        idx.insert(1, &get, &lit);
        idx.insert(2, &Methods::any(), &lit);
        idx.insert(3, &get, &FirstSegment::Any);
        idx.insert(4, &get, &FirstSegment::Literal("users".into()));
        idx.insert(5, &Methods::any(), &FirstSegment::Literal("users".into()));
        assert_eq!(idx.candidates("/orders/1", b"GET").collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        assert_eq!(idx.candidates("/orders/1", b"POST").collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(idx.candidates("/users", b"GET").collect::<Vec<_>>(), vec![0, 3, 4, 5]);
        assert_eq!(idx.candidates("/other", b"DELETE").collect::<Vec<_>>(), vec![0]);
    }
}
