//! Local replies. Every filter maps its own precise error enum to a [`Rejection`] once;
//! this module turns it into the wire form shared by all filters: the status, a stable
//! machine-readable `code`, an RFC 9457 problem+json body and, for 401, `WWW-Authenticate`.
//! Bodies never carry internals (keys, claims, config).

use std::borrow::Cow;

/// A request (or response) the filter refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    /// Stable error code, part of the public contract (documented per filter).
    pub code: &'static str,
    /// Human-readable explanation, safe to show a client.
    pub detail: Cow<'static, str>,
    /// Extra response headers (`WWW-Authenticate`, `Allow`, `Retry-After`, ...).
    pub headers: Vec<(Cow<'static, str>, String)>,
}

impl Rejection {
    pub fn new(status: u16, code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self { status, code, detail: detail.into(), headers: Vec::new() }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((Cow::Borrowed(name), value.into()));
        self
    }

    /// 401 with an RFC 6750 challenge. `error` is `invalid_token` or `invalid_request`;
    /// a request with no credentials at all gets a bare challenge (RFC 6750 section 3.1).
    pub fn unauthorized_bearer(code: &'static str, detail: &'static str, error: Option<&str>) -> Self {
        let challenge = match error {
            Some(e) => format!("Bearer error=\"{e}\", error_description=\"{detail}\""),
            None => "Bearer".to_string(),
        };
        Self::new(401, code, detail).with_header("www-authenticate", challenge)
    }

    /// RFC 9457 body.
    pub fn body(&self, request_id: Option<&str>) -> String {
        let mut body = serde_json::json!({
            "type": "about:blank",
            "title": status_title(self.status),
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
        });
        if let (Some(id), Some(obj)) = (request_id, body.as_object_mut()) {
            obj.insert("request_id".into(), serde_json::Value::String(id.to_string()));
        }
        body.to_string()
    }

    /// Headers to send with the reply: content type, no caching, plus the rejection's own.
    pub fn response_headers(&self) -> Vec<(&str, &str)> {
        let mut h: Vec<(&str, &str)> = vec![
            ("content-type", "application/problem+json"),
            ("cache-control", "no-store"),
        ];
        h.extend(self.headers.iter().map(|(k, v)| (k.as_ref(), v.as_str())));
        h
    }
}

/// Reason phrase for the statuses the filters use.
pub fn status_title(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_problem_json_with_code() {
        let r = Rejection::new(405, "method_not_allowed", "method not allowed");
        let v: serde_json::Value = serde_json::from_str(&r.body(Some("abc"))).unwrap();
        assert_eq!(v["status"], 405);
        assert_eq!(v["code"], "method_not_allowed");
        assert_eq!(v["title"], "Method Not Allowed");
        assert_eq!(v["request_id"], "abc");
    }

    #[test]
    fn detail_is_escaped() {
        let r = Rejection::new(400, "x", "quote \" and \\ backslash");
        let v: serde_json::Value = serde_json::from_str(&r.body(None)).unwrap();
        assert_eq!(v["detail"], "quote \" and \\ backslash");
        assert!(v.get("request_id").is_none());
    }

    #[test]
    fn bearer_challenge() {
        let r = Rejection::unauthorized_bearer("token_expired", "the token has expired", Some("invalid_token"));
        assert_eq!(r.status, 401);
        let h = r.response_headers();
        assert!(h.contains(&("www-authenticate", "Bearer error=\"invalid_token\", error_description=\"the token has expired\"")));
        let bare = Rejection::unauthorized_bearer("token_missing", "no token", None);
        assert!(bare.response_headers().contains(&("www-authenticate", "Bearer")));
    }
}
