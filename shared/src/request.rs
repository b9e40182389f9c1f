//! A host-independent view of a request's (or response's) headers, read once from Envoy
//! as bytes (one host call), so rules see exactly what upstream will see, including
//! non-UTF-8 values and repeated headers.

/// Header list as Envoy gives it: lower-case names, raw byte values, repeats kept in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    pairs: Vec<(String, Vec<u8>)>,
}

/// A header that must appear at most once appeared more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeated;

impl Headers {
    pub fn new(pairs: Vec<(String, Vec<u8>)>) -> Self {
        Self { pairs }
    }

    /// Convenience for tests and builders.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self { pairs: pairs.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec())).collect() }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// First value of `name` (lower-case).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
    }

    /// First value as UTF-8, if it is.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.pairs.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_slice())
    }

    /// The value of a header that must not repeat (credentials, identity-bearing headers):
    /// two `authorization` headers are refused, never read as the first or the last one.
    /// Note: Envoy's HTTP/1 codec already joins repeated headers into one value separated by
    /// `,` (measured in 1.40), so callers must also refuse a `,` where a single value is
    /// expected; this check catches repeats that arrive as separate entries (HTTP/2, filters).
    pub fn get_unique(&self, name: &str) -> Result<Option<&[u8]>, Repeated> {
        let mut it = self.pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_slice());
        let first = it.next();
        if it.next().is_some() {
            return Err(Repeated);
        }
        Ok(first)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == name)
    }

    pub fn method(&self) -> &[u8] {
        self.get(":method").unwrap_or_default()
    }

    /// The raw `:path`, query included.
    pub fn path(&self) -> &[u8] {
        self.get(":path").unwrap_or_default()
    }

    pub fn authority(&self) -> &[u8] {
        self.get(":authority").unwrap_or_default()
    }

    pub fn scheme(&self) -> &[u8] {
        self.get(":scheme").unwrap_or_default()
    }

    /// Sum of name and value lengths, the measure Envoy's `max_request_headers_kb` uses.
    pub fn byte_size(&self) -> usize {
        self.pairs.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// The media type of `content-type`, lower-cased, without parameters.
    pub fn media_type(&self) -> Option<String> {
        let v = self.get_str("content-type")?;
        let mt = v.split(';').next().unwrap_or_default().trim();
        Some(mt.to_ascii_lowercase())
    }

    /// `content-length`, if present and a plain decimal number.
    pub fn content_length(&self) -> Option<u64> {
        let v = self.get_str("content-length")?.trim();
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        v.parse().ok()
    }

    /// Remove every `name` entry (as Envoy's `remove_header_map_value` does).
    pub fn remove(&mut self, name: &str) {
        let name = name.to_ascii_lowercase();
        self.pairs.retain(|(k, _)| *k != name);
    }

    /// Append one `name` entry (as Envoy's `add_header_map_value` does).
    pub fn append(&mut self, name: &str, value: &[u8]) {
        self.pairs.push((name.to_ascii_lowercase(), value.to_vec()));
    }

    /// Replace every `name` entry by one (as Envoy's `replace_header_map_value` does: it
    /// removes the entries and adds one).
    pub fn replace(&mut self, name: &str, value: &[u8]) {
        self.remove(name);
        self.append(name, value);
    }
}

/// Split a raw `:path` into the path and the query (without the `?`).
pub fn split_query(raw: &[u8]) -> (&[u8], Option<&[u8]>) {
    match raw.iter().position(|&b| b == b'?') {
        Some(i) => (raw.get(..i).unwrap_or_default(), raw.get(i + 1..)),
        None => (raw, None),
    }
}

/// Value of a cookie in the `cookie` header(s), exact name match.
pub fn cookie<'a>(headers: &'a Headers, name: &str) -> Option<&'a [u8]> {
    for h in headers.get_all("cookie") {
        for part in h.split(|&b| b == b';') {
            let part = part.trim_ascii();
            if let Some(eq) = part.iter().position(|&b| b == b'=') {
                let (k, v) = part.split_at(eq);
                if k == name.as_bytes() {
                    return v.get(1..);
                }
            }
        }
    }
    None
}

/// First value of query parameter `name` (raw, still percent-encoded).
pub fn query_param<'a>(query: &'a [u8], name: &str) -> Option<&'a [u8]> {
    query.split(|&b| b == b'&').find_map(|kv| {
        let (k, v) = match kv.iter().position(|&b| b == b'=') {
            Some(i) => (kv.get(..i)?, kv.get(i + 1..)?),
            None => (kv, &[][..]),
        };
        (k == name.as_bytes()).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_as_the_host_applies_them() {
        let mut h = Headers::from_pairs([("a", "1"), ("b", "2"), ("a", "3")]);
        h.replace("A", b"4");
        assert_eq!(h, Headers::from_pairs([("b", "2"), ("a", "4")]), "every entry replaced by one");
        h.append("C", b"5");
        assert_eq!(h.get("c"), Some(&b"5"[..]));
        h.append("c", b"6");
        h.remove("C");
        assert_eq!(h, Headers::from_pairs([("b", "2"), ("a", "4")]), "every entry removed");
    }

    #[test]
    fn repeated_credentials_are_refused() {
        let h = Headers::from_pairs([("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert_eq!(h.get_unique("authorization"), Err(Repeated));
        let h = Headers::from_pairs([("authorization", "Bearer a")]);
        assert_eq!(h.get_unique("authorization"), Ok(Some(&b"Bearer a"[..])));
        assert_eq!(h.get_unique("x"), Ok(None));
    }

    #[test]
    fn media_type_and_length() {
        let h = Headers::from_pairs([("content-type", "Application/JSON; charset=utf-8"), ("content-length", "12")]);
        assert_eq!(h.media_type().as_deref(), Some("application/json"));
        assert_eq!(h.content_length(), Some(12));
        let h = Headers::from_pairs([("content-length", "-1")]);
        assert_eq!(h.content_length(), None);
    }

    #[test]
    fn query_and_cookies() {
        assert_eq!(split_query(b"/a?b=1"), (&b"/a"[..], Some(&b"b=1"[..])));
        assert_eq!(split_query(b"/a"), (&b"/a"[..], None));
        assert_eq!(query_param(b"x=1&access_token=abc&y", "access_token"), Some(&b"abc"[..]));
        assert_eq!(query_param(b"y", "y"), Some(&b""[..]));
        let h = Headers::from_pairs([("cookie", "a=1; access_token=tok; b=2")]);
        assert_eq!(cookie(&h, "access_token"), Some(&b"tok"[..]));
        assert_eq!(cookie(&h, "access"), None);
    }
}
