//! Path normalization and matching shared by every filter's rules.
//!
//! Rules match a *normalized* path. Encodings that different servers resolve differently
//! (`%2F`, `%5C`, `%2e%2e`, backslashes, NUL, `#`) are refused rather than guessed at, so a
//! rule cannot be bypassed by a path that upstream reads differently (CVE-2019-9901,
//! CVE-2021-29492, CVE-2021-32779, CVE-2020-8595).

use crate::config::Validator;
use std::fmt;

/// Why a path cannot be matched safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Does not start with `/` (or is empty).
    NotAbsolute,
    /// `.` or `..` segment, literal.
    DotSegment,
    /// `.` or `..` segment spelled with `%2e`.
    EncodedDotSegment,
    /// `%2F` or `%5C`.
    EncodedSlash,
    /// A raw `\`.
    Backslash,
    /// NUL or another control character, raw or encoded.
    ControlCharacter,
    /// `#` in a request target: fragments are never sent to a server.
    Fragment,
    /// `%` not followed by two hex digits, or escapes that do not decode to UTF-8 (overlong
    /// forms like `%c0%af`, which lenient decoders read as `/`).
    BadPercentEncoding,
    /// A byte that must be percent-encoded in a path (space, non-ASCII, ...).
    InvalidCharacter,
}

impl PathError {
    /// Stable code for the error body and metrics.
    pub fn code(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "path_not_absolute",
            PathError::DotSegment => "path_dot_segment",
            PathError::EncodedDotSegment => "path_encoded_dot_segment",
            PathError::EncodedSlash => "path_encoded_slash",
            PathError::Backslash => "path_backslash",
            PathError::ControlCharacter => "path_control_character",
            PathError::Fragment => "path_fragment",
            PathError::BadPercentEncoding => "path_bad_percent_encoding",
            PathError::InvalidCharacter => "path_invalid_character",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "the path must start with '/'",
            PathError::DotSegment => "the path contains a '.' or '..' segment",
            PathError::EncodedDotSegment => "the path contains an encoded '.' or '..' segment",
            PathError::EncodedSlash => "the path contains an encoded slash or backslash",
            PathError::Backslash => "the path contains a backslash",
            PathError::ControlCharacter => "the path contains a control character",
            PathError::Fragment => "the path contains a fragment ('#')",
            PathError::BadPercentEncoding => "the path contains an invalid percent-encoding",
            PathError::InvalidCharacter => "the path contains a character that must be percent-encoded",
        })
    }
}

/// The value of one hex digit (either case).
pub fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 `pchar` minus `%` (handled apart) plus `/`.
fn is_path_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':' | b'@' | b'/')
}

/// Normalize the path part of a raw `:path` (the query is dropped): percent-decode
/// unreserved characters, upper-case remaining escapes, merge repeated slashes, and refuse
/// every ambiguous form. The result is idempotent: `normalize(normalize(p)) == normalize(p)`.
pub fn normalize(raw: &[u8]) -> Result<String, PathError> {
    let path = match raw.iter().position(|&b| b == b'?') {
        Some(i) => raw.get(..i).unwrap_or_default(),
        None => raw,
    };
    if path.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut out = String::with_capacity(path.len());
    // Segment being built, and whether it contained an encoded dot.
    let mut seg = String::new();
    let mut seg_encoded_dot = false;
    // Escapes must decode to UTF-8: a server that decodes overlong forms reads `%c0%af` as
    // `/` and `%c0%ae` as `.` where rules see an opaque segment (CVE-2000-0884 class). Only
    // paths with a non-ASCII escape pay for the check.
    let mut high_escape = false;
    let mut i = 0;
    let flush = |out: &mut String, seg: &mut String, encoded_dot: &mut bool| -> Result<(), PathError> {
        if seg == "." || seg == ".." {
            return Err(if *encoded_dot { PathError::EncodedDotSegment } else { PathError::DotSegment });
        }
        if !seg.is_empty() {
            out.push('/');
            out.push_str(seg);
        }
        seg.clear();
        *encoded_dot = false;
        Ok(())
    };
    while let Some(&b) = path.get(i) {
        match b {
            b'/' => {
                flush(&mut out, &mut seg, &mut seg_encoded_dot)?;
                i += 1;
            }
            b'%' => {
                let hi = path.get(i + 1).copied().and_then(hex_digit);
                let lo = path.get(i + 2).copied().and_then(hex_digit);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::BadPercentEncoding);
                };
                let d = hi * 16 + lo;
                match d {
                    b'/' | b'\\' => return Err(PathError::EncodedSlash),
                    0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
                    _ if is_unreserved(d) => {
                        if d == b'.' {
                            seg_encoded_dot = true;
                        }
                        seg.push(char::from(d));
                    }
                    _ => {
                        high_escape |= d >= 0x80;
                        seg.push_str(&format!("%{d:02X}"));
                    }
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            b'#' => return Err(PathError::Fragment),
            0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            _ if is_path_char(b) => {
                seg.push(char::from(b));
                i += 1;
            }
            _ => return Err(PathError::InvalidCharacter),
        }
    }
    if high_escape && !escapes_decode_to_utf8(path) {
        return Err(PathError::BadPercentEncoding);
    }
    let trailing_slash = path.last() == Some(&b'/') && path.len() > 1;
    flush(&mut out, &mut seg, &mut seg_encoded_dot)?;
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// Whether `path` (already checked to hold only path characters and well-formed escapes)
/// decodes to valid UTF-8.
fn escapes_decode_to_utf8(path: &[u8]) -> bool {
    let mut decoded = Vec::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = path.get(i) {
        let hex = |k: usize| path.get(i + k).copied().and_then(hex_digit);
        match (b, hex(1), hex(2)) {
            (b'%', Some(hi), Some(lo)) => {
                decoded.push(hi * 16 + lo);
                i += 3;
            }
            _ => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&decoded).is_ok()
}

/// HTTP methods as a set; the empty set means "any method".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Methods(Vec<String>);

impl Methods {
    pub fn any() -> Self {
        Self(Vec::new())
    }

    /// Compile a config list; methods must be upper-case tokens.
    pub fn compile(list: &[String], path: &str, v: &mut Validator) -> Self {
        for (i, m) in list.iter().enumerate() {
            v.check(
                !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_'),
                format!("{path}[{i}]"),
                format!("'{m}' is not an upper-case HTTP method"),
            );
        }
        let mut uniq = list.to_vec();
        uniq.sort();
        uniq.dedup();
        v.check(uniq.len() == list.len(), path, "methods listed twice");
        Self(uniq)
    }

    pub fn matches(&self, method: &[u8]) -> bool {
        self.0.is_empty() || self.0.iter().any(|m| m.as_bytes() == method)
    }

    pub fn is_any(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `{name}`: exactly one non-empty segment.
    Param,
    /// Trailing `**`: zero or more segments.
    Rest,
}

/// A path template: literal segments, `{name}` for one segment, trailing `**` for any rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    source: String,
    segments: Vec<Segment>,
    trailing_slash: bool,
}

impl PathTemplate {
    /// Compile a template; errors are recorded at `path` and `None` returned.
    pub fn compile(template: &str, path: &str, v: &mut Validator) -> Option<Self> {
        if !template.starts_with('/') {
            v.error(path, format!("'{template}' must start with '/'"));
            return None;
        }
        let body = template.get(1..).unwrap_or_default();
        let trailing_slash = body.ends_with('/') && !body.is_empty();
        let parts: Vec<&str> = if body.is_empty() { Vec::new() } else { body.trim_end_matches('/').split('/').collect() };
        let mut segments = Vec::with_capacity(parts.len());
        let n = parts.len();
        for (i, p) in parts.into_iter().enumerate() {
            let seg = if p == "**" {
                if i + 1 != n {
                    v.error(path, format!("'{template}': '**' is only allowed as the last segment"));
                    return None;
                }
                Segment::Rest
            } else if p.starts_with('{') && p.ends_with('}') && p.len() > 2 {
                let name = p.get(1..p.len() - 1).unwrap_or_default();
                if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    v.error(path, format!("'{template}': bad parameter name '{name}'"));
                    return None;
                }
                Segment::Param
            } else {
                // A literal must already be in normalized form, or it could never match.
                match normalize(format!("/{p}").as_bytes()) {
                    Ok(norm) if norm.get(1..) == Some(p) && !p.is_empty() => Segment::Literal(p.to_string()),
                    _ => {
                        v.error(path, format!("'{template}': segment '{p}' is not a normalized path segment"));
                        return None;
                    }
                }
            };
            segments.push(seg);
        }
        Some(Self { source: template.to_string(), segments, trailing_slash })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Match a path produced by [`normalize`].
    pub fn matches(&self, normalized: &str) -> bool {
        let body = normalized.get(1..).unwrap_or_default();
        let has_trailing = body.ends_with('/');
        let mut parts = body.split('/').filter(|s| !s.is_empty());
        for seg in &self.segments {
            match seg {
                Segment::Rest => return true,
                Segment::Param => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Segment::Literal(l) => {
                    if parts.next() != Some(l.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none() && has_trailing == self.trailing_slash
    }
}

/// Where a rule applies: a path template or a plain prefix, and a set of methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    kind: RouteKind,
    methods: Methods,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RouteKind {
    Template(PathTemplate),
    Prefix(String),
}

impl RouteMatch {
    /// Compile a rule's `path` (template) or `prefix` (exactly one) and `methods`.
    /// `at` is the JSON path of the rule, for errors.
    pub fn compile(path: Option<&str>, prefix: Option<&str>, methods: Option<&[String]>, at: &str, v: &mut Validator) -> Option<Self> {
        let methods = methods.map(|m| Methods::compile(m, &format!("{at}.methods"), v)).unwrap_or_default();
        let kind = match (path, prefix) {
            (Some(p), None) => RouteKind::Template(PathTemplate::compile(p, &format!("{at}.path"), v)?),
            (None, Some(p)) => {
                if !p.starts_with('/') {
                    v.error(format!("{at}.prefix"), format!("'{p}' must start with '/'"));
                    return None;
                }
                RouteKind::Prefix(p.to_string())
            }
            (Some(_), Some(_)) => {
                v.error(at, "set one of 'path' and 'prefix', not both");
                return None;
            }
            (None, None) => {
                v.error(at, "one of 'path' or 'prefix' is required");
                return None;
            }
        };
        Some(Self { kind, methods })
    }

    pub fn prefix(prefix: &str) -> Self {
        Self { kind: RouteKind::Prefix(prefix.to_string()), methods: Methods::any() }
    }

    /// Match a normalized path and a method.
    pub fn matches(&self, normalized: &str, method: &[u8]) -> bool {
        self.methods.matches(method)
            && match &self.kind {
                RouteKind::Template(t) => t.matches(normalized),
                RouteKind::Prefix(p) => normalized.starts_with(p.as_str()),
            }
    }

    pub fn methods(&self) -> &Methods {
        &self.methods
    }

    /// A readable form for logs and load-time reports: `GET,POST /orders` or `prefix /api/`.
    pub fn describe(&self) -> String {
        let m = if self.methods.is_any() { "*".to_string() } else { self.methods.as_slice().join(",") };
        match &self.kind {
            RouteKind::Template(t) => format!("{m} {}", t.as_str()),
            RouteKind::Prefix(p) => format!("{m} prefix {p}"),
        }
    }

    /// True if every request this matches is also matched by `earlier` (so this rule is
    /// dead when `earlier` comes first). Conservative: only detects identical paths/prefixes.
    pub fn shadowed_by(&self, earlier: &RouteMatch) -> bool {
        let methods_covered = earlier.methods.is_any()
            || (!self.methods.is_any() && self.methods.as_slice().iter().all(|m| earlier.methods.matches(m.as_bytes())));
        if !methods_covered {
            return false;
        }
        match (&earlier.kind, &self.kind) {
            (RouteKind::Template(a), RouteKind::Template(b)) => a.segments == b.segments && a.trailing_slash == b.trailing_slash,
            (RouteKind::Prefix(a), RouteKind::Prefix(b)) => b.starts_with(a.as_str()),
            (RouteKind::Prefix(a), RouteKind::Template(b)) => {
                // A prefix covers a template whose literal head already extends it.
                let head: String = b.segments.iter().map_while(|s| match s {
                    Segment::Literal(l) => Some(format!("/{l}")),
                    _ => None,
                }).collect();
                a == "/" || (!head.is_empty() && head.starts_with(a.as_str()) && b.segments.iter().all(|s| matches!(s, Segment::Literal(_))))
            }
            (RouteKind::Template(_), RouteKind::Prefix(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_table() {
        let cases: &[(&str, Result<&str, PathError>)] = &[
            ("/", Ok("/")),
            ("/orders", Ok("/orders")),
            ("/orders?x=1", Ok("/orders")),
            ("/orders/", Ok("/orders/")),
            ("//orders///1", Ok("/orders/1")),
            ("/%6Frders", Ok("/orders")),
            ("/a%7e", Ok("/a~")),
            ("/a%3a", Ok("/a%3A")),
            ("/caf%C3%A9", Ok("/caf%C3%A9")),
            ("/a.b/..c/...", Ok("/a.b/..c/...")),
            ("/admin/../orders", Err(PathError::DotSegment)),
            ("/./orders", Err(PathError::DotSegment)),
            ("/admin/..", Err(PathError::DotSegment)),
            ("/admin/%2e%2e/orders", Err(PathError::EncodedDotSegment)),
            ("/admin/.%2E/orders", Err(PathError::EncodedDotSegment)),
            ("/admin%2forders", Err(PathError::EncodedSlash)),
            ("/admin%2Forders", Err(PathError::EncodedSlash)),
            ("/admin%5corders", Err(PathError::EncodedSlash)),
            ("/admin\\orders", Err(PathError::Backslash)),
            ("/admin%00", Err(PathError::ControlCharacter)),
            ("/admin%0d%0a", Err(PathError::ControlCharacter)),
            ("/admin\0", Err(PathError::ControlCharacter)),
            ("/admin#frag", Err(PathError::Fragment)),
            ("/a%", Err(PathError::BadPercentEncoding)),
            ("/a%zz", Err(PathError::BadPercentEncoding)),
            // Overlong, surrogate and truncated UTF-8 escapes (found by tests/tests/attacks.rs).
            ("/products/x%c0%af..%c0%afadmin", Err(PathError::BadPercentEncoding)),
            ("/products/%c0%ae%c0%ae/admin", Err(PathError::BadPercentEncoding)),
            ("/a/%e0%80%af", Err(PathError::BadPercentEncoding)),
            ("/a/%ed%a0%80", Err(PathError::BadPercentEncoding)),
            ("/a/%ff", Err(PathError::BadPercentEncoding)),
            ("/a/%c3", Err(PathError::BadPercentEncoding)),
            ("/caf%C3%A9/%ef%bc%8f", Ok("/caf%C3%A9/%EF%BC%8F")),
            ("/a?q=%c0%af%ff", Ok("/a")),
            ("/a b", Err(PathError::InvalidCharacter)),
            ("/caf\u{e9}", Err(PathError::InvalidCharacter)),
            ("orders", Err(PathError::NotAbsolute)),
            ("", Err(PathError::NotAbsolute)),
            ("*", Err(PathError::NotAbsolute)),
            ("/x?#", Ok("/x")),
        ];
        for (raw, want) in cases {
            let got = normalize(raw.as_bytes());
            assert_eq!(got.as_deref().map_err(|e| *e), *want, "normalize({raw:?})");
            if let Ok(n) = got {
                assert_eq!(normalize(n.as_bytes()).as_deref(), Ok(n.as_str()), "idempotent for {raw:?}");
            }
        }
    }

    fn tpl(s: &str) -> PathTemplate {
        let mut v = Validator::new();
        let t = PathTemplate::compile(s, "t", &mut v);
        assert!(v.is_ok(), "{s}");
        t.unwrap()
    }

    #[test]
    fn template_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("/users/me", "/users/me", true),
            ("/users/me", "/users/you", false),
            ("/users/{id}", "/users/42", true),
            ("/users/{id}", "/users", false),
            ("/users/{id}", "/users/42/x", false),
            ("/admin/**", "/admin", true),
            ("/admin/**", "/admin/", true),
            ("/admin/**", "/admin/a/b", true),
            ("/admin/**", "/administrator", false),
            ("/orders", "/orders/", false),
            ("/orders/", "/orders/", true),
            ("/", "/", true),
            ("/", "/x", false),
            ("/**", "/anything/at/all", true),
        ];
        for (t, p, want) in cases {
            assert_eq!(tpl(t).matches(p), *want, "{t} vs {p}");
        }
    }

    #[test]
    fn bad_templates_are_refused() {
        for t in ["orders", "/a/**/b", "/a/{b-c}", "/a/../b", "/a/%2F", "/a b"] {
            let mut v = Validator::new();
            assert!(PathTemplate::compile(t, "rules[0].path", &mut v).is_none(), "{t}");
            assert!(!v.is_ok());
        }
    }

    #[test]
    fn route_match() {
        let mut v = Validator::new();
        let m = RouteMatch::compile(Some("/orders"), None, Some(&["GET".into(), "POST".into()]), "r", &mut v).unwrap();
        assert!(m.matches("/orders", b"GET"));
        assert!(!m.matches("/orders", b"DELETE"));
        assert!(RouteMatch::compile(Some("/a"), Some("/b"), None, "r", &mut v).is_none());
        assert!(RouteMatch::compile(None, None, None, "r", &mut v).is_none());
        assert!(RouteMatch::compile(Some("/a"), None, Some(&["get".into()]), "r", &mut v).is_some());
        let e = v.finish(()).unwrap_err();
        assert_eq!(e.0.len(), 3);
        assert!(e.has("r.methods[0]"));
    }

    #[test]
    fn shadowing() {
        let mut v = Validator::new();
        let all = RouteMatch::compile(None, Some("/"), None, "a", &mut v).unwrap();
        let orders_get = RouteMatch::compile(Some("/orders"), None, Some(&["GET".into()]), "b", &mut v).unwrap();
        let orders_any = RouteMatch::compile(Some("/orders"), None, None, "c", &mut v).unwrap();
        assert!(orders_get.shadowed_by(&all));
        assert!(orders_get.shadowed_by(&orders_any));
        assert!(!orders_any.shadowed_by(&orders_get));
    }
}
