//! The IETF rate-limit header fields, draft-ietf-httpapi-ratelimit-headers-11 (May 2026):
//! both are structured-field Lists (RFC 9651) of String items with parameters.
//!
//! ```text
//! RateLimit-Policy: "anonymous";q=10;w=60, "login";q=10;w=60
//! RateLimit: "anonymous";r=4;t=6, "login";r=0;t=30
//! ```
//! `q` is the quota per window `w` (seconds), `r` the requests still available, `t` the
//! seconds within which the client can use no more than `r`: for a token bucket, the time
//! until the next request becomes available (omitted when the bucket is full). On a 429
//! `Retry-After` is at least the `t` of every exhausted policy (draft section 6).

use crate::bucket::Outcome;
use crate::policy::Limit;

/// One policy's state for the headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub name: String,
    /// `q`: requests per window.
    pub quota: u64,
    /// `w`: window in seconds.
    pub window_s: u64,
    /// `r`.
    pub remaining: u64,
    /// `t`, seconds.
    pub reset_s: Option<u64>,
}

impl Item {
    pub fn from_outcome(limit: &Limit, o: &Outcome) -> Self {
        Self { name: limit.name.clone(), quota: limit.requests, window_s: limit.window_s, remaining: o.remaining, reset_s: o.next_s() }
    }
}

/// A structured-field String. Names are validated at load to need no escaping; escape anyway.
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {}
        }
    }
    out.push('"');
    out
}

/// `RateLimit-Policy` value.
pub fn policy(items: &[Item]) -> String {
    items.iter().map(|i| format!("{};q={};w={}", sf_string(&i.name), i.quota, i.window_s)).collect::<Vec<_>>().join(", ")
}

/// `RateLimit` value.
pub fn ratelimit(items: &[Item]) -> String {
    items
        .iter()
        .map(|i| match i.reset_s {
            Some(t) => format!("{};r={};t={t}", sf_string(&i.name), i.remaining),
            None => format!("{};r={}", sf_string(&i.name), i.remaining),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, q: u64, w: u64, r: u64, t: Option<u64>) -> Item {
        Item { name: name.into(), quota: q, window_s: w, remaining: r, reset_s: t }
    }

    #[test]
    fn draft_syntax() {
        let items = [item("anonymous", 10, 60, 4, Some(6)), item("login", 10, 60, 0, Some(30))];
        assert_eq!(policy(&items), r#""anonymous";q=10;w=60, "login";q=10;w=60"#);
        assert_eq!(ratelimit(&items), r#""anonymous";r=4;t=6, "login";r=0;t=30"#);
        assert_eq!(ratelimit(&[item("a", 1, 1, 1, None)]), r#""a";r=1"#);
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(sf_string("a\"b\\c\u{1}é"), r#""a\"b\\c""#);
    }
}
