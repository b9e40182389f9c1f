//! Plugin configuration: parse JSON strictly, then validate and report *every* error with
//! the JSON path of the field, so an operator fixes a config in one round trip.
//! A filter refuses to load on any error; nothing is discovered per request.

use serde::de::DeserializeOwned;
use std::fmt;

/// One problem in a configuration, located by its JSON path (`rules[2].path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// All the problems found in one configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// True when some error is reported at exactly this path.
    pub fn has(&self, path: &str) -> bool {
        self.0.iter().any(|e| e.path == path)
    }
}

/// Collects validation errors while a config is compiled.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<ConfigError>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError { path: path.into(), message: message.into() });
    }
    /// Record `message` at `path` unless `ok`.
    pub fn check(&mut self, ok: bool, path: impl Into<String>, message: impl Into<String>) {
        if !ok {
            self.error(path, message);
        }
    }
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
    /// `Ok(value)` when nothing was reported, else every error.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.errors))
        }
    }
}

/// Parse a plugin configuration. Empty (or all-whitespace) input means `{}`, i.e. the
/// documented secure defaults. Types should use `#[serde(deny_unknown_fields)]`.
pub fn parse_json<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ConfigErrors> {
    let trimmed = raw.trim_ascii();
    let input: &[u8] = if trimmed.is_empty() { b"{}" } else { trimmed };
    let mut de = serde_json::Deserializer::from_slice(input);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        ConfigErrors(vec![ConfigError { path, message: e.into_inner().to_string() }])
    })?;
    de.end().map_err(|e| {
        ConfigErrors(vec![ConfigError { path: ".".into(), message: e.to_string() }])
    })?;
    Ok(value)
}

/// Join a JSON path and a child: `join("rules[1]", "path")`.
pub fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() || parent == "." {
        child.to_string()
    } else {
        format!("{parent}.{child}")
    }
}

/// `index("rules", 2)` gives `rules[2]`.
pub fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// A lower-case HTTP header name token (RFC 9110 `token`); Envoy presents names lower-cased.
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.!#$%&'*+^`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        #[serde(default)]
        name: String,
        #[serde(default)]
        #[allow(dead_code)]
        inner: Option<Inner>,
    }
    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[allow(dead_code)]
        n: u32,
    }

    #[test]
    fn empty_means_defaults() {
        let c: Cfg = parse_json(b"  \n").unwrap();
        assert_eq!(c.name, "");
    }

    #[test]
    fn unknown_field_is_named_with_its_path() {
        let e = parse_json::<Cfg>(br#"{"inner": {"n": 1, "m": 2}}"#).unwrap_err();
        assert_eq!(e.0[0].path, "inner.m");
        assert!(e.0[0].message.contains("unknown field `m`"), "{e}");
    }

    #[test]
    fn wrong_type_is_named_with_its_path() {
        let e = parse_json::<Cfg>(br#"{"inner": {"n": "x"}}"#).unwrap_err();
        assert_eq!(e.0[0].path, "inner.n");
    }

    #[test]
    fn trailing_garbage_is_refused() {
        assert!(parse_json::<Cfg>(br#"{} {}"#).is_err());
    }

    #[test]
    fn validator_collects_all() {
        let mut v = Validator::new();
        v.check(false, "a", "bad");
        v.check(true, "b", "fine");
        v.error("c", "bad too");
        let e = v.finish(()).unwrap_err();
        assert_eq!(e.0.len(), 2);
        assert_eq!(e.to_string(), "a: bad; c: bad too");
    }

    #[test]
    fn header_names() {
        assert!(is_header_name("x-api-key"));
        assert!(!is_header_name("X-Api-Key"));
        assert!(!is_header_name("bad name"));
        assert!(!is_header_name(""));
    }
}
