//! RFC 9421 section 2: covered components and the signature base.
//!
//! Derived components (`@method`, `@target-uri`, `@authority`, `@scheme`,
//! `@request-target`, `@path`, `@query`, `@query-param`) are computed from Envoy's
//! pseudo-headers; HTTP fields from the request headers as received. `;sf` and `;key` are
//! supported where they are unambiguous (dictionary fields); `;bs`, `;req`, `;tr` and
//! anything else are refused rather than approximated.

use shared::pathmatch::hex_digit;
use crate::sfv::{self, BareItem, Item, Member, Params};
use shared::request::{split_query, Headers};

/// A component identifier: a lower-case name and its parameters (RFC 9421 section 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentId {
    pub name: String,
    pub params: Params,
}

/// Why a component could not be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentError {
    /// The identifier is not a lower-case sf-string, repeats, or is `@signature-params`.
    Malformed,
    /// A covered header field or query parameter is absent.
    Missing,
    /// A component or parameter this verifier does not implement (`@status`, `;bs`, ...).
    Unsupported,
    /// The value cannot be put in a signature base (non-ASCII bytes, ambiguous query).
    Invalid,
}

/// Derived components this verifier computes for requests.
pub const DERIVED: &[&str] = &["@method", "@target-uri", "@authority", "@scheme", "@request-target", "@path", "@query", "@query-param"];

/// Header fields known to be RFC 8941 dictionaries (`;sf` re-serializes them).
const DICTIONARY_FIELDS: &[&str] = &["content-digest", "repr-digest", "want-content-digest", "want-repr-digest", "signature", "signature-input", "accept-signature"];

impl ComponentId {
    pub fn new(name: &str) -> Self {
        Self { name: name.to_string(), params: Vec::new() }
    }

    /// From one item of a `Signature-Input` inner list.
    pub fn from_item(item: &Item) -> Result<Self, ComponentError> {
        let BareItem::String(name) = &item.bare else {
            return Err(ComponentError::Malformed);
        };
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_uppercase()) || name == "@signature-params" {
            return Err(ComponentError::Malformed);
        }
        Ok(Self { name: name.clone(), params: item.params.clone() })
    }

    /// From a configuration string: a bare name (`@method`, `content-digest`) or a
    /// serialized identifier (`"@query-param";name="id"`).
    pub fn parse_config(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.starts_with('"') {
            let item = sfv::parse_item(s.as_bytes()).map_err(|e| format!("'{s}' is not a component identifier: {}", e.what))?;
            return Self::from_item(&item).map_err(|_| format!("'{s}' must be a lower-case string"));
        }
        if s.is_empty() || !sfv::is_sf_string(s) || s.bytes().any(|b| b.is_ascii_uppercase() || b == b'"' || b == b' ') {
            return Err(format!("'{s}' must be a lower-case component name"));
        }
        Ok(Self::new(s))
    }

    /// Serialized as in the signature base (`"@query-param";name="id"`).
    pub fn serialize(&self) -> String {
        let mut out = String::new();
        sfv::serialize_string(&self.name, &mut out);
        sfv::serialize_params(&self.params, &mut out);
        out
    }

    pub fn to_item(&self) -> Item {
        Item { bare: BareItem::String(self.name.clone()), params: self.params.clone() }
    }

    /// Same component, parameters compared as a set (RFC 9421 section 2).
    pub fn same(&self, other: &ComponentId) -> bool {
        self.name == other.name && self.params.len() == other.params.len() && self.params.iter().all(|p| other.params.contains(p))
    }

    /// Whether this component covers the `content-digest` field (whole or a member).
    pub fn covers_content_digest(&self) -> bool {
        self.name == "content-digest" && self.params.iter().all(|(k, _)| k == "sf" || k == "key")
    }

    /// Whether this verifier can resolve the identifier at all (for load-time checks).
    pub fn check_supported(&self) -> Result<(), ComponentError> {
        if self.name.starts_with('@') {
            if !DERIVED.contains(&self.name.as_str()) {
                return Err(ComponentError::Unsupported);
            }
            return match (self.name.as_str(), self.params.as_slice()) {
                ("@query-param", [(k, BareItem::String(_))]) if k == "name" => Ok(()),
                ("@query-param", _) => Err(ComponentError::Unsupported),
                (_, []) => Ok(()),
                _ => Err(ComponentError::Unsupported),
            };
        }
        field_mode(self).map(|_| ())
    }
}

enum FieldMode<'a> {
    Raw,
    Sf,
    Key(&'a str),
}

fn field_mode(id: &ComponentId) -> Result<FieldMode<'_>, ComponentError> {
    let mut sf = false;
    let mut key = None;
    for (k, v) in &id.params {
        match (k.as_str(), v) {
            ("sf", BareItem::Boolean(true)) => sf = true,
            ("key", BareItem::String(s)) => key = Some(s.as_str()),
            _ => return Err(ComponentError::Unsupported),
        }
    }
    match key {
        Some(k) => Ok(FieldMode::Key(k)),
        None if sf => {
            if DICTIONARY_FIELDS.contains(&id.name.as_str()) {
                Ok(FieldMode::Sf)
            } else {
                Err(ComponentError::Unsupported)
            }
        }
        None => Ok(FieldMode::Raw),
    }
}

/// The request as the signature base sees it.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub headers: &'a Headers,
}

impl<'a> RequestParts<'a> {
    pub fn new(headers: &'a Headers) -> Self {
        Self { headers }
    }

    fn scheme(&self) -> String {
        ascii_str(self.headers.scheme()).to_ascii_lowercase()
    }

    /// `@authority`: lower-cased host, default port removed (RFC 9421 section 2.2.3).
    fn authority(&self) -> String {
        let raw = ascii_str(self.headers.authority()).to_ascii_lowercase();
        let default_port = match self.scheme().as_str() {
            "http" => Some(":80"),
            "https" => Some(":443"),
            _ => None,
        };
        match default_port {
            Some(p) if raw.ends_with(p) => raw.get(..raw.len() - p.len()).unwrap_or_default().to_string(),
            _ => raw,
        }
    }

    fn path(&self) -> String {
        let (path, _) = split_query(self.headers.path());
        let p = ascii_str(path);
        if p.is_empty() {
            "/".into()
        } else {
            p
        }
    }

    fn query(&self) -> String {
        let (_, q) = split_query(self.headers.path());
        format!("?{}", ascii_str(q.unwrap_or_default()))
    }

    /// Resolve one component's value.
    pub fn resolve(&self, id: &ComponentId) -> Result<String, ComponentError> {
        id.check_supported()?;
        let value = match id.name.as_str() {
            "@method" => ascii_str(self.headers.method()),
            "@scheme" => self.scheme(),
            "@authority" => self.authority(),
            "@target-uri" => format!("{}://{}{}", self.scheme(), ascii_str(self.headers.authority()), ascii_str(self.headers.path())),
            "@request-target" => ascii_str(self.headers.path()),
            "@path" => self.path(),
            "@query" => self.query(),
            "@query-param" => {
                let Some(BareItem::String(name)) = sfv::param(&id.params, "name") else {
                    return Err(ComponentError::Unsupported);
                };
                self.query_param(name)?
            }
            _ => return self.field(id),
        };
        check_value(&value)?;
        Ok(value)
    }

    fn query_param(&self, encoded_name: &str) -> Result<String, ComponentError> {
        let name = percent_decode(encoded_name.as_bytes(), false);
        let (_, q) = split_query(self.headers.path());
        let mut found = None;
        for pair in q.unwrap_or_default().split(|&b| b == b'&') {
            if pair.is_empty() {
                continue;
            }
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (pair.get(..i).unwrap_or_default(), pair.get(i + 1..).unwrap_or_default()),
                None => (pair, &[][..]),
            };
            if percent_decode(k, true) == name {
                if found.is_some() {
                    // RFC 9421 section 2.2.8: a repeated parameter must not be covered.
                    return Err(ComponentError::Invalid);
                }
                found = Some(percent_decode(v, true));
            }
        }
        found.map(|v| form_encode(&v)).ok_or(ComponentError::Missing)
    }

    fn field(&self, id: &ComponentId) -> Result<String, ComponentError> {
        let mode = field_mode(id)?;
        let mut lines = self.headers.get_all(&id.name).peekable();
        if lines.peek().is_none() {
            return Err(ComponentError::Missing);
        }
        let mut combined = Vec::new();
        for (i, line) in lines.enumerate() {
            if i > 0 {
                combined.extend_from_slice(b", ");
            }
            combined.extend_from_slice(line.trim_ascii());
        }
        let value = std::str::from_utf8(&combined).map_err(|_| ComponentError::Invalid)?.to_string();
        check_value(&value)?;
        match mode {
            FieldMode::Raw => Ok(value),
            FieldMode::Sf => sfv::parse_dictionary(value.as_bytes()).map(|d| sfv::serialize_dictionary(&d)).map_err(|_| ComponentError::Invalid),
            FieldMode::Key(k) => {
                let d = sfv::parse_dictionary(value.as_bytes()).map_err(|_| ComponentError::Invalid)?;
                d.get(k).map(sfv::member_to_string).ok_or(ComponentError::Missing)
            }
        }
    }
}

/// Values in a signature base must be visible ASCII, space or tab (no line breaks).
fn check_value(v: &str) -> Result<(), ComponentError> {
    if v.bytes().all(|b| (0x20..=0x7e).contains(&b) || b == b'\t') {
        Ok(())
    } else {
        Err(ComponentError::Invalid)
    }
}

/// Bytes as a string, one char per byte; non-ASCII bytes make `check_value` fail later.
fn ascii_str(b: &[u8]) -> String {
    b.iter().map(|&c| if c.is_ascii() { char::from(c) } else { '\u{fffd}' }).collect()
}

/// Percent-decoding as the WHATWG URL standard does it (invalid escapes stay literal);
/// `plus` turns `+` into a space (application/x-www-form-urlencoded).
fn percent_decode(input: &[u8], plus: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if b == b'%' {
            if let (Some(h), Some(l)) = (input.get(i + 1).copied().and_then(hex_digit), input.get(i + 2).copied().and_then(hex_digit)) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(if plus && b == b'+' { b' ' } else { b });
        i += 1;
    }
    out
}

/// RFC 9421 section 2.2.8: the application/x-www-form-urlencoded percent-encode set, with
/// space as `%20`.
fn form_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The covered components of a signature, validated: each a lower-case string, no repeats.
pub fn covered_components(items: &[Item]) -> Result<Vec<ComponentId>, ComponentError> {
    let mut out: Vec<ComponentId> = Vec::with_capacity(items.len());
    for item in items {
        let id = ComponentId::from_item(item)?;
        if out.iter().any(|c| c.same(&id)) {
            return Err(ComponentError::Malformed);
        }
        out.push(id);
    }
    Ok(out)
}

/// The `@signature-params` value: the inner list of components with the signature parameters.
pub fn signature_params_value(components: &[ComponentId], params: &Params) -> String {
    let list = sfv::InnerList { items: components.iter().map(ComponentId::to_item).collect(), params: params.clone() };
    let mut out = String::new();
    sfv::serialize_inner_list(&list, &mut out);
    out
}

/// The signature base (RFC 9421 section 2.5) for a request.
pub fn signature_base(req: &RequestParts<'_>, components: &[ComponentId], params: &Params) -> Result<String, ComponentError> {
    let mut base = String::new();
    for c in components {
        let v = req.resolve(c)?;
        base.push_str(&c.serialize());
        base.push_str(": ");
        base.push_str(&v);
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(&signature_params_value(components, params));
    Ok(base)
}

/// Whether `m` is a dictionary member whose value is an inner list (a signature input).
pub fn as_inner_list(m: &Member) -> Option<&sfv::InnerList> {
    match m {
        Member::InnerList(l) => Some(l),
        Member::Item(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str, extra: &[(&str, &str)]) -> Headers {
        let mut pairs = vec![(":method", method), (":scheme", "https"), (":authority", "www.example.com"), (":path", path)];
        pairs.extend_from_slice(extra);
        Headers::from_pairs(pairs)
    }

    fn value(h: &Headers, id: &str) -> Result<String, ComponentError> {
        RequestParts::new(h).resolve(&ComponentId::parse_config(id).unwrap())
    }

    #[test]
    fn derived_components_rfc_9421_section_2_2() {
        // RFC 9421 2.2.1-2.2.7 example request: POST /path?param=value HTTP/1.1, Host: www.example.com
        let h = req("POST", "/path?param=value", &[]);
        assert_eq!(value(&h, "@method").unwrap(), "POST");
        assert_eq!(value(&h, "@target-uri").unwrap(), "https://www.example.com/path?param=value");
        assert_eq!(value(&h, "@authority").unwrap(), "www.example.com");
        assert_eq!(value(&h, "@scheme").unwrap(), "https");
        assert_eq!(value(&h, "@request-target").unwrap(), "/path?param=value");
        assert_eq!(value(&h, "@path").unwrap(), "/path");
        assert_eq!(value(&h, "@query").unwrap(), "?param=value");
        let h = req("GET", "/path", &[]);
        assert_eq!(value(&h, "@query").unwrap(), "?");
        let h = req("GET", "/path?", &[]);
        assert_eq!(value(&h, "@query").unwrap(), "?");
        let h = req("GET", "/path?queryString", &[]);
        assert_eq!(value(&h, "@query").unwrap(), "?queryString");
    }

    #[test]
    fn authority_is_normalized() {
        let h = Headers::from_pairs([(":scheme", "HTTPS"), (":authority", "WWW.Example.com:443"), (":path", "/")]);
        assert_eq!(value(&h, "@authority").unwrap(), "www.example.com");
        assert_eq!(value(&h, "@scheme").unwrap(), "https");
        let h = Headers::from_pairs([(":scheme", "http"), (":authority", "example.com:8080"), (":path", "/")]);
        assert_eq!(value(&h, "@authority").unwrap(), "example.com:8080");
        let h = Headers::from_pairs([(":scheme", "http"), (":authority", "example.com:80"), (":path", "/")]);
        assert_eq!(value(&h, "@authority").unwrap(), "example.com");
    }

    #[test]
    fn query_params_rfc_9421_section_2_2_8() {
        let h = req("GET", "/path?param=value&foo=bar&baz=bat%2Dman&qux=", &[]);
        assert_eq!(value(&h, r#""@query-param";name="baz""#).unwrap(), "bat-man");
        assert_eq!(value(&h, r#""@query-param";name="qux""#).unwrap(), "");
        assert_eq!(value(&h, r#""@query-param";name="param""#).unwrap(), "value");
        let h = req("GET", "/parameters?var=this%20is%20a%20big%0Amultiline%20value&bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something", &[]);
        assert_eq!(value(&h, r#""@query-param";name="var""#).unwrap(), "this%20is%20a%20big%0Amultiline%20value");
        assert_eq!(value(&h, r#""@query-param";name="bar""#).unwrap(), "with%20plus%20whitespace");
        assert_eq!(value(&h, r#""@query-param";name="fa%C3%A7ade%22%3A%20""#).unwrap(), "something");
        assert_eq!(value(&h, r#""@query-param";name="nope""#), Err(ComponentError::Missing));
        let h = req("GET", "/p?a=1&a=2", &[]);
        assert_eq!(value(&h, r#""@query-param";name="a""#), Err(ComponentError::Invalid));
    }

    #[test]
    fn header_fields_rfc_9421_section_2_1() {
        let h = req("GET", "/", &[("x-empty-header", ""), ("x-ows-header", "  Leading and trailing whitespace.  "), ("x-obs-fold-header", "Obsolete line folding."), ("cache-control", "max-age=60"), ("cache-control", "   must-revalidate")]);
        assert_eq!(value(&h, "x-empty-header").unwrap(), "");
        assert_eq!(value(&h, "x-ows-header").unwrap(), "Leading and trailing whitespace.");
        assert_eq!(value(&h, "cache-control").unwrap(), "max-age=60, must-revalidate");
        assert_eq!(value(&h, "x-missing"), Err(ComponentError::Missing));
    }

    #[test]
    fn dictionary_fields_rfc_9421_section_2_1_2() {
        let h = req("GET", "/", &[("example-dict", " a=1,    b=2;x=1;y=2,   c=(a   b   c)"), ("content-digest", "sha-256=:AAE=:  ,  sha-512=:AAI=:")]);
        assert_eq!(value(&h, r#""example-dict";key="a""#).unwrap(), "1");
        assert_eq!(value(&h, r#""example-dict";key="b""#).unwrap(), "2;x=1;y=2");
        assert_eq!(value(&h, r#""example-dict";key="c""#).unwrap(), "(a b c)");
        assert_eq!(value(&h, r#""example-dict";key="d""#), Err(ComponentError::Missing));
        assert_eq!(value(&h, r#""content-digest";sf"#).unwrap(), "sha-256=:AAE=:, sha-512=:AAI=:");
        // `;sf` on a field of unknown type is refused rather than guessed.
        assert_eq!(value(&h, r#""example-dict";sf"#), Err(ComponentError::Unsupported));
        assert_eq!(value(&h, r#""example-dict";bs"#), Err(ComponentError::Unsupported));
        assert_eq!(value(&h, r#""example-dict";req"#), Err(ComponentError::Unsupported));
        assert_eq!(value(&h, r#""@method";req"#), Err(ComponentError::Unsupported));
        assert_eq!(value(&h, "@status"), Err(ComponentError::Unsupported));
    }

    #[test]
    fn non_ascii_values_are_refused() {
        let h = Headers::new(vec![(":path".into(), b"/".to_vec()), ("x-bin".into(), b"caf\xc3\xa9".to_vec())]);
        assert_eq!(value(&h, "x-bin"), Err(ComponentError::Invalid));
        let h = Headers::new(vec![(":path".into(), b"/caf\xc3\xa9".to_vec())]);
        assert_eq!(value(&h, "@path"), Err(ComponentError::Invalid));
    }

    #[test]
    fn identifiers() {
        assert!(ComponentId::parse_config("@method").is_ok());
        assert!(ComponentId::parse_config("Content-Type").is_err());
        assert!(ComponentId::parse_config("").is_err());
        assert!(ComponentId::parse_config(r#""@query-param";name="x""#).is_ok());
        let a = ComponentId::parse_config(r#""x";sf;key="a""#).unwrap();
        let b = ComponentId::parse_config(r#""x";key="a";sf"#).unwrap();
        assert!(a.same(&b));
        assert_eq!(a.serialize(), r#""x";sf;key="a""#);
        let items = sfv::parse_item(b"\"@method\"").map(|i| vec![i.clone(), i]).unwrap();
        assert_eq!(covered_components(&items), Err(ComponentError::Malformed));
        let upper = sfv::parse_item(b"\"Date\"").unwrap();
        assert_eq!(covered_components(&[upper]), Err(ComponentError::Malformed));
        let token = sfv::parse_item(b"date").unwrap();
        assert_eq!(covered_components(&[token]), Err(ComponentError::Malformed));
        let sp = sfv::parse_item(b"\"@signature-params\"").unwrap();
        assert_eq!(covered_components(&[sp]), Err(ComponentError::Malformed));
    }

    #[test]
    fn base_rfc_9421_appendix_b_2_5() {
        let h = Headers::from_pairs([
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", "example.com"),
            (":path", "/foo?param=Value&Pet=dog"),
            ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
            ("content-type", "application/json"),
        ]);
        let d = sfv::parse_dictionary(br#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#).unwrap();
        let l = as_inner_list(d.get("sig-b25").unwrap()).unwrap();
        let comps = covered_components(&l.items).unwrap();
        let base = signature_base(&RequestParts::new(&h), &comps, &l.params).unwrap();
        assert_eq!(
            base,
            "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@authority\": example.com\n\"content-type\": application/json\n\"@signature-params\": (\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\""
        );
    }
}
