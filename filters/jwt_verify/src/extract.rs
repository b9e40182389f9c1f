//! Finding the token in a request (configured headers, cookies, query parameters) and
//! removing it before the request goes upstream.
//!
//! Ambiguity is refused, never resolved by picking one: two `authorization` headers, a
//! cookie or parameter given twice with different values, or two different tokens in two
//! places are all [`JwtError::Ambiguous`] (RFC 6750 section 3.1 `invalid_request`).

use crate::config::Source;
use crate::error::JwtError;
use shared::request::{split_query, Headers};

/// The token found in a request and every configured place it was found in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub token: Vec<u8>,
    /// Indices into `Policy::sources`.
    pub sources: Vec<usize>,
}

/// A change to the request headers, applied by the glue in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    Remove(String),
    Set(String, Vec<u8>),
    Add(String, Vec<u8>),
}

fn strip_prefix_ci<'a>(value: &'a [u8], prefix: &str) -> Option<&'a [u8]> {
    let p = prefix.as_bytes();
    let head = value.get(..p.len())?;
    head.eq_ignore_ascii_case(p).then(|| value.get(p.len()..).unwrap_or_default())
}

fn cookie_pairs(headers: &Headers) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers.get_all("cookie").flat_map(|h| {
        h.split(|&b| b == b';').filter_map(|part| {
            let part = part.trim_ascii();
            let eq = part.iter().position(|&b| b == b'=')?;
            Some((part.get(..eq)?.trim_ascii(), part.get(eq + 1..)?.trim_ascii()))
        })
    })
}

fn query_pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    query.split(|&b| b == b'&').map(|kv| match kv.iter().position(|&b| b == b'=') {
        Some(i) => (kv.get(..i).unwrap_or_default(), kv.get(i + 1..).unwrap_or_default()),
        None => (kv, &[][..]),
    })
}

/// At most one value of a repeatable place; different values are ambiguous.
fn single<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Result<Option<&'a [u8]>, JwtError> {
    let Some(first) = values.next() else { return Ok(None) };
    if values.any(|v| v != first) {
        return Err(JwtError::Ambiguous);
    }
    Ok(Some(first))
}

/// Read one source. `Ok(None)` when it holds no token.
fn read<'a>(headers: &'a Headers, source: &Source) -> Result<Option<&'a [u8]>, JwtError> {
    match source {
        Source::Header { name, prefix } => {
            let Some(v) = headers.get_unique(name).map_err(|_| JwtError::Ambiguous)? else { return Ok(None) };
            // Envoy's HTTP/1 codec joins repeated headers with ','; a JWT never contains one.
            if v.contains(&b',') {
                return Err(JwtError::Ambiguous);
            }
            let Some(rest) = strip_prefix_ci(v, prefix) else { return Ok(None) };
            let t = rest.trim_ascii();
            // `Bearer` followed by nothing is a malformed attempt, not an absent token.
            if t.is_empty() {
                return Err(JwtError::Malformed);
            }
            Ok(Some(t))
        }
        Source::Cookie(name) => single(cookie_pairs(headers).filter(|(k, _)| *k == name.as_bytes()).map(|(_, v)| v)),
        Source::Param(name) => {
            let (_, query) = split_query(headers.path());
            let Some(q) = query else { return Ok(None) };
            single(query_pairs(q).filter(|(k, _)| *k == name.as_bytes()).map(|(_, v)| v))
        }
    }
    .and_then(|v| match v {
        Some([]) => Err(JwtError::Malformed),
        other => Ok(other),
    })
}

/// Look for the token in `wanted` (indices into `sources`). `Ok(None)`: no token anywhere.
pub fn extract(headers: &Headers, sources: &[Source], wanted: &[usize]) -> Result<Option<Found>, JwtError> {
    let mut found: Option<Found> = None;
    for &i in wanted {
        let Some(source) = sources.get(i) else { continue };
        let Some(t) = read(headers, source)? else { continue };
        match &mut found {
            None => found = Some(Found { token: t.to_vec(), sources: vec![i] }),
            Some(f) if f.token == t => f.sources.push(i),
            Some(_) => return Err(JwtError::Ambiguous),
        }
    }
    Ok(found)
}

/// Edits that take the token out of every place it was found in.
pub fn removal(headers: &Headers, sources: &[Source], found: &Found) -> Vec<Edit> {
    let mut edits = Vec::new();
    let mut cookies: Vec<&str> = Vec::new();
    let mut params: Vec<&str> = Vec::new();
    for &i in &found.sources {
        match sources.get(i) {
            Some(Source::Header { name, .. }) => edits.push(Edit::Remove(name.clone())),
            Some(Source::Cookie(n)) => cookies.push(n),
            Some(Source::Param(n)) => params.push(n),
            None => {}
        }
    }
    if !cookies.is_empty() {
        let kept: Vec<Vec<u8>> = cookie_pairs(headers)
            .filter(|(k, _)| !cookies.iter().any(|c| c.as_bytes() == *k))
            .map(|(k, v)| [k, b"=", v].concat())
            .collect();
        edits.push(Edit::Remove("cookie".into()));
        if !kept.is_empty() {
            edits.push(Edit::Add("cookie".into(), kept.join(&b"; "[..])));
        }
    }
    if !params.is_empty() {
        let raw = headers.path();
        let (path, query) = split_query(raw);
        if let Some(q) = query {
            let kept: Vec<&[u8]> = q
                .split(|&b| b == b'&')
                .filter(|kv| {
                    let k = kv.iter().position(|&b| b == b'=').and_then(|i| kv.get(..i)).unwrap_or(kv);
                    !params.iter().any(|p| p.as_bytes() == k)
                })
                .collect();
            let mut new_path = path.to_vec();
            if !kept.is_empty() {
                new_path.push(b'?');
                new_path.extend_from_slice(&kept.join(&b"&"[..]));
            }
            edits.push(Edit::Set(":path".into(), new_path));
        }
    }
    edits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources() -> Vec<Source> {
        vec![
            Source::Header { name: "authorization".into(), prefix: "Bearer ".into() },
            Source::Cookie("access_token".into()),
            Source::Param("access_token".into()),
            Source::Header { name: "x-jwt".into(), prefix: String::new() },
        ]
    }

    fn h(pairs: &[(&str, &str)]) -> Headers {
        Headers::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn finds_in_each_place() {
        let s = sources();
        let all = [0, 1, 2, 3];
        let f = extract(&h(&[(":path", "/"), ("authorization", "Bearer abc")]), &s, &all).unwrap().unwrap();
        assert_eq!((f.token.as_slice(), f.sources.as_slice()), (&b"abc"[..], &[0][..]));
        let f = extract(&h(&[(":path", "/"), ("authorization", "bearer abc")]), &s, &all).unwrap().unwrap();
        assert_eq!(f.token, b"abc");
        let f = extract(&h(&[(":path", "/"), ("cookie", "a=1; access_token=tok; b=2")]), &s, &all).unwrap().unwrap();
        assert_eq!((f.token.as_slice(), f.sources.as_slice()), (&b"tok"[..], &[1][..]));
        let f = extract(&h(&[(":path", "/x?a=1&access_token=qq")]), &s, &all).unwrap().unwrap();
        assert_eq!((f.token.as_slice(), f.sources.as_slice()), (&b"qq"[..], &[2][..]));
        let f = extract(&h(&[(":path", "/"), ("x-jwt", "raw")]), &s, &all).unwrap().unwrap();
        assert_eq!(f.token, b"raw");
        // Only the wanted places are read.
        assert_eq!(extract(&h(&[(":path", "/"), ("x-jwt", "raw")]), &s, &[0, 1, 2]).unwrap(), None);
        // Another scheme is not a bearer token.
        assert_eq!(extract(&h(&[(":path", "/"), ("authorization", "Basic abc")]), &s, &all).unwrap(), None);
        assert_eq!(extract(&h(&[(":path", "/")]), &s, &all).unwrap(), None);
    }

    #[test]
    fn ambiguity_is_refused() {
        let s = sources();
        let all = [0, 1, 2, 3];
        let cases: &[&[(&str, &str)]] = &[
            &[(":path", "/"), ("authorization", "Bearer a"), ("authorization", "Bearer a")],
            &[(":path", "/"), ("authorization", "Bearer a"), ("authorization", "Basic x")],
            &[(":path", "/"), ("authorization", "Bearer a,Bearer b")],
            &[(":path", "/"), ("authorization", "Basic x, Bearer b")],
            &[(":path", "/"), ("authorization", "Bearer a"), ("cookie", "access_token=b")],
            &[(":path", "/"), ("cookie", "access_token=a; access_token=b")],
            &[(":path", "/"), ("cookie", "access_token=a"), ("cookie", "access_token=b")],
            &[(":path", "/?access_token=a&access_token=b")],
            &[(":path", "/?access_token=a"), ("x-jwt", "b")],
        ];
        for c in cases {
            assert_eq!(extract(&h(c), &s, &all), Err(JwtError::Ambiguous), "{c:?}");
        }
        // The same token in two places is one token.
        let f = extract(&h(&[(":path", "/?access_token=a"), ("authorization", "Bearer a")]), &s, &all).unwrap().unwrap();
        assert_eq!(f.sources, vec![0, 2]);
    }

    #[test]
    fn empty_token_is_malformed() {
        let s = sources();
        assert_eq!(extract(&h(&[(":path", "/"), ("authorization", "Bearer ")]), &s, &[0]), Err(JwtError::Malformed));
        assert_eq!(extract(&h(&[(":path", "/"), ("authorization", "Bearer    ")]), &s, &[0]), Err(JwtError::Malformed));
        assert_eq!(extract(&h(&[(":path", "/?access_token=")]), &s, &[2]), Err(JwtError::Malformed));
        assert_eq!(extract(&h(&[(":path", "/"), ("cookie", "access_token=")]), &s, &[1]), Err(JwtError::Malformed));
    }

    #[test]
    fn removal_edits() {
        let s = sources();
        let hs = h(&[(":path", "/x?a=1&access_token=t&b=2"), ("authorization", "Bearer t"), ("cookie", "a=1; access_token=t"), ("cookie", "c=3")]);
        let f = Found { token: b"t".to_vec(), sources: vec![0, 1, 2] };
        let e = removal(&hs, &s, &f);
        assert_eq!(
            e,
            vec![
                Edit::Remove("authorization".into()),
                Edit::Remove("cookie".into()),
                Edit::Add("cookie".into(), b"a=1; c=3".to_vec()),
                Edit::Set(":path".into(), b"/x?a=1&b=2".to_vec()),
            ]
        );
        let hs = h(&[(":path", "/x?access_token=t"), ("cookie", "access_token=t")]);
        let e = removal(&hs, &s, &Found { token: b"t".to_vec(), sources: vec![1, 2] });
        assert_eq!(e, vec![Edit::Remove("cookie".into()), Edit::Set(":path".into(), b"/x".to_vec())]);
    }
}
