//! One structured JSON log line per denied request: which filter, why (the stable code),
//! the route, the request id and a hash of the client key. Nothing secret: no tokens,
//! no claims beyond what the caller passes in, no raw client keys.

use serde_json::{json, Map, Value};

#[derive(Debug, Default)]
pub struct DenyLog<'a> {
    pub filter: &'a str,
    pub code: &'a str,
    pub status: u16,
    pub method: &'a str,
    pub path: &'a str,
    pub request_id: Option<&'a str>,
    /// Hashed client key (see [`crate::hash::log_tag`]).
    pub client: Option<&'a str>,
    /// Filter-specific, non-secret fields (rule, subject, role, ...).
    pub extra: Map<String, Value>,
    /// True when the decision was only recorded (shadow mode), not enforced.
    pub shadow: bool,
}

impl DenyLog<'_> {
    pub fn line(&self) -> String {
        let mut v = json!({
            "event": if self.shadow { "shadow_deny" } else { "deny" },
            "filter": self.filter,
            "code": self.code,
            "status": self.status,
            "method": self.method,
            "path": self.path,
        });
        if let Some(obj) = v.as_object_mut() {
            if let Some(id) = self.request_id {
                obj.insert("request_id".into(), Value::String(id.into()));
            }
            if let Some(c) = self.client {
                obj.insert("client".into(), Value::String(c.into()));
            }
            for (k, val) in &self.extra {
                obj.insert(k.clone(), val.clone());
            }
        }
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_is_json() {
        let mut extra = Map::new();
        extra.insert("rule".into(), Value::from(3));
        let l = DenyLog { filter: "rbac", code: "forbidden", status: 403, method: "GET", path: "/a\"b", request_id: Some("r1"), client: Some("abc"), extra, shadow: false }.line();
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["event"], "deny");
        assert_eq!(v["path"], "/a\"b");
        assert_eq!(v["rule"], 3);
        assert_eq!(v["client"], "abc");
    }
}
