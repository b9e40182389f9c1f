//! Permissions are `resource:action`. A rule requires one concrete permission; a role (or an
//! API-key scope) grants patterns in which either part may be `*`, and `*` alone grants all.

use std::fmt;

/// Why a permission or grant string is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionError {
    /// Not of the form `resource:action`.
    Shape,
    /// A part is empty or contains a character outside `[A-Za-z0-9_.-]`.
    Name,
    /// A wildcard where a concrete permission is needed (a rule's `permission`).
    Wildcard,
}

impl fmt::Display for PermissionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PermissionError::Shape => "must be of the form 'resource:action'",
            PermissionError::Name => "resource and action must be non-empty and use only letters, digits, '_', '-' and '.'",
            PermissionError::Wildcard => "a rule requires a concrete permission; wildcards belong in role grants",
        })
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A concrete permission a rule requires: `orders:read`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    resource: String,
    action: String,
}

impl Permission {
    pub fn parse(s: &str) -> Result<Self, PermissionError> {
        let (resource, action) = s.split_once(':').ok_or(PermissionError::Shape)?;
        if resource == "*" || action == "*" {
            return Err(PermissionError::Wildcard);
        }
        if action.contains(':') {
            return Err(PermissionError::Shape);
        }
        if !is_name(resource) || !is_name(action) {
            return Err(PermissionError::Name);
        }
        Ok(Self { resource: resource.to_string(), action: action.to_string() })
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.resource, self.action)
    }
}

/// A granted pattern: `*`, `*:read`, `orders:*`, `orders:read` (`*:*` is the same as `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `None` is the wildcard.
    resource: Option<String>,
    action: Option<String>,
}

impl Grant {
    pub fn parse(s: &str) -> Result<Self, PermissionError> {
        if s == "*" {
            return Ok(Self { resource: None, action: None });
        }
        let (resource, action) = s.split_once(':').ok_or(PermissionError::Shape)?;
        if action.contains(':') {
            return Err(PermissionError::Shape);
        }
        let part = |p: &str| -> Result<Option<String>, PermissionError> {
            if p == "*" {
                Ok(None)
            } else if is_name(p) {
                Ok(Some(p.to_string()))
            } else {
                Err(PermissionError::Name)
            }
        };
        Ok(Self { resource: part(resource)?, action: part(action)? })
    }

    pub fn grants(&self, p: &Permission) -> bool {
        self.resource.as_deref().is_none_or(|r| r == p.resource) && self.action.as_deref().is_none_or(|a| a == p.action)
    }
}

/// True when the scope string (an API key's or signing key's scope) grants `p`. Scopes that
/// are not well-formed grants grant nothing.
pub fn scope_grants(scope: &str, p: &Permission) -> bool {
    Grant::parse(scope).is_ok_and(|g| g.grants(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Permission {
        Permission::parse(s).unwrap()
    }

    #[test]
    fn wildcard_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "orders:read", true),
            ("*", "admin:manage", true),
            ("*:*", "admin:manage", true),
            ("*:read", "orders:read", true),
            ("*:read", "users:read", true),
            ("*:read", "orders:write", false),
            ("orders:*", "orders:read", true),
            ("orders:*", "orders:write", true),
            ("orders:*", "positions:read", false),
            ("orders:read", "orders:read", true),
            ("orders:read", "orders:write", false),
            ("orders:read", "order:read", false),
            ("orders:read", "ordersx:read", false),
        ];
        for (grant, perm, want) in cases {
            assert_eq!(Grant::parse(grant).unwrap().grants(&p(perm)), *want, "{grant} grants {perm}");
        }
    }

    #[test]
    fn malformed() {
        assert_eq!(Permission::parse("orders"), Err(PermissionError::Shape));
        assert_eq!(Permission::parse("orders:read:x"), Err(PermissionError::Shape));
        assert_eq!(Permission::parse("orders:*"), Err(PermissionError::Wildcard));
        assert_eq!(Permission::parse("*:read"), Err(PermissionError::Wildcard));
        assert_eq!(Permission::parse(":read"), Err(PermissionError::Name));
        assert_eq!(Permission::parse("or ders:read"), Err(PermissionError::Name));
        assert_eq!(Grant::parse("orders"), Err(PermissionError::Shape));
        assert_eq!(Grant::parse("**"), Err(PermissionError::Shape));
        assert_eq!(Grant::parse("or*:read"), Err(PermissionError::Name));
        assert_eq!(Grant::parse("a:b:c"), Err(PermissionError::Shape));
        assert_eq!(Grant::parse(""), Err(PermissionError::Shape));
        assert_eq!(p("orders.v2:read-all").to_string(), "orders.v2:read-all");
    }

    #[test]
    fn scopes() {
        assert!(scope_grants("orders:read", &p("orders:read")));
        assert!(scope_grants("orders:*", &p("orders:write")));
        assert!(!scope_grants("orders", &p("orders:read")));
        assert!(!scope_grants("read:orders", &p("orders:read")));
    }
}
