//! Pure decisions on headers: which plan applies to a request, how its request body and its
//! response body are handled, and the errors, outcomes and metrics names that go with them.

use crate::policy::{BodyKind, Overflow, Plan, Policy};
use shared::reply::Rejection;
use shared::request::Headers;
use std::sync::Arc;

/// Which way a body flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

/// Why the filter refuses a request or a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// The body is compressed (`content-encoding`), so it cannot be inspected.
    Compressed(Direction),
    /// The charset is not ASCII-compatible (UTF-16/32), so detectors cannot see the values.
    Charset(Direction),
    /// A JSON body is larger than `max_buffer_bytes` and `on_overflow` is `reject`.
    TooLarge(Direction),
    /// The host refused to hand over the body, or a held-back tail could not be written
    /// (trailers after a streamed body): never pass what was not masked.
    Failed(Direction),
    /// The plugin has no configuration.
    NotConfigured,
}

impl Denial {
    /// The outcome metric this denial counts under.
    pub fn outcome(self) -> Outcome {
        match self {
            Denial::Compressed(_) => Outcome::CompressedRejected,
            Denial::Charset(_) => Outcome::CharsetRejected,
            Denial::TooLarge(_) => Outcome::OverflowRejected,
            Denial::Failed(_) | Denial::NotConfigured => Outcome::Failed,
        }
    }
}

impl From<Denial> for Rejection {
    fn from(d: Denial) -> Self {
        use Direction::{Request, Response};
        match d {
            Denial::Compressed(Response) => Rejection::new(502, "compressed_response", "the upstream response is compressed and cannot be checked for personal data"),
            Denial::Compressed(Request) => Rejection::new(415, "compressed_request", "compressed request bodies cannot be checked for personal data"),
            Denial::Charset(Response) => Rejection::new(502, "unsupported_charset", "the upstream response uses a character set that cannot be checked for personal data"),
            Denial::Charset(Request) => Rejection::new(415, "unsupported_charset", "the request body uses a character set that cannot be checked for personal data"),
            Denial::TooLarge(Response) => Rejection::new(502, "response_too_large", "the upstream response is too large to be checked for personal data"),
            Denial::TooLarge(Request) => Rejection::new(413, "request_too_large", "the request body is too large to be checked for personal data"),
            Denial::Failed(Response) => Rejection::new(502, "response_not_masked", "the upstream response could not be checked for personal data"),
            Denial::Failed(Request) => Rejection::new(500, "request_not_masked", "the request body could not be checked for personal data"),
            Denial::NotConfigured => Rejection::new(500, "filter_not_configured", "the gateway is misconfigured"),
        }
    }
}

/// What happened to one body (one or more per body: `masked` and `json_invalid` can go together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Inspected, at least one value masked.
    Masked,
    /// Inspected, nothing found.
    Clean,
    /// Not inspected: no body, a media type not listed, or a `skip` rule.
    Skipped,
    OverflowRejected,
    /// Larger than `max_buffer_bytes` with `on_overflow: pass`: masked by value only.
    OverflowPassed,
    CompressedRejected,
    CharsetRejected,
    /// Declared JSON but not valid JSON: masked as text.
    JsonInvalid,
    /// Could not be masked (host error, trailers after a held-back tail): refused or reset.
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Masked,
        Outcome::Clean,
        Outcome::Skipped,
        Outcome::OverflowRejected,
        Outcome::OverflowPassed,
        Outcome::CompressedRejected,
        Outcome::CharsetRejected,
        Outcome::JsonInvalid,
        Outcome::Failed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Masked => "masked",
            Outcome::Clean => "clean",
            Outcome::Skipped => "skipped",
            Outcome::OverflowRejected => "overflow_rejected",
            Outcome::OverflowPassed => "overflow_passed",
            Outcome::CompressedRejected => "compressed_rejected",
            Outcome::CharsetRejected => "charset_rejected",
            Outcome::JsonInvalid => "json_invalid",
            Outcome::Failed => "failed",
        }
    }
}

/// How a body is handled, decided on its headers.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyPlan {
    /// Passed as it is (the reason is counted as [`Outcome::Skipped`]).
    Skip,
    /// Streamed and masked by value; `content-length` is removed.
    Text { overflow_passed: bool },
    /// Buffered and masked whole; `content-length` is removed and, with `hold`, the headers
    /// wait for the body (then `content-length` is set to the masked length).
    Json { hold: bool },
    /// Refused before any byte of the body.
    Reject(Denial),
}

/// Headers that describe the exact bytes of a body; a masked body no longer has them.
pub const BODY_HEADERS: [&str; 5] = ["content-length", "content-md5", "digest", "content-digest", "repr-digest"];

/// Header edits on the request before it goes upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestEdits {
    pub remove: Vec<&'static str>,
    pub set: Vec<(&'static str, &'static str)>,
}

/// The decision on request headers.
#[derive(Debug, Clone)]
pub struct RequestDecision {
    /// The masking plan of this request's route (`None`: a `skip` rule).
    pub plan: Option<Arc<Plan>>,
    pub edits: RequestEdits,
    pub body: BodyPlan,
}

/// Decide on request headers. On masked routes the client's `accept-encoding` is replaced by
/// `identity` (so upstream answers uncompressed) and `range`/`if-range` are dropped (a
/// partial body could cut a value in two and hide it from the detectors).
pub fn request(headers: &Headers, end_of_stream: bool, policy: &Policy) -> RequestDecision {
    let plan = policy.plan_for(headers);
    let mut edits = RequestEdits::default();
    if plan.is_some() {
        edits.remove.extend(["accept-encoding", "range", "if-range"]);
        edits.set.push(("accept-encoding", "identity"));
    }
    let body = match &plan {
        Some(_) if policy.mask_request_bodies && !end_of_stream => body(headers, Direction::Request, policy),
        _ => BodyPlan::Skip,
    };
    if matches!(body, BodyPlan::Text { .. } | BodyPlan::Json { .. }) {
        edits.remove.extend(BODY_HEADERS);
    }
    RequestDecision { plan, edits, body }
}

/// Decide on response headers, given the plan chosen for the request.
pub fn response(headers: &Headers, plan: Option<&Plan>, end_of_stream: bool, policy: &Policy) -> BodyPlan {
    if plan.is_none() || end_of_stream {
        return BodyPlan::Skip;
    }
    let status = headers.get_str(":status").and_then(|s| s.parse::<u16>().ok()).unwrap_or(0);
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return BodyPlan::Skip;
    }
    body(headers, Direction::Response, policy)
}

fn body(headers: &Headers, dir: Direction, policy: &Policy) -> BodyPlan {
    let media = headers.media_type();
    let Some(kind) = policy.body_kind(media.as_deref()) else {
        return BodyPlan::Skip;
    };
    if headers.get_all("content-encoding").any(|v| v.split(|&b| b == b',').any(|c| !c.trim_ascii().eq_ignore_ascii_case(b"identity") && !c.trim_ascii().is_empty())) {
        return BodyPlan::Reject(Denial::Compressed(dir));
    }
    if !charset_ok(headers) {
        return BodyPlan::Reject(Denial::Charset(dir));
    }
    match kind {
        BodyKind::Text => BodyPlan::Text { overflow_passed: false },
        BodyKind::Json => {
            let declared = headers.content_length().unwrap_or(0);
            if declared > policy.max_buffer_bytes as u64 {
                return match policy.on_overflow {
                    Overflow::Reject => BodyPlan::Reject(Denial::TooLarge(dir)),
                    Overflow::Pass => BodyPlan::Text { overflow_passed: true },
                };
            }
            BodyPlan::Json { hold: policy.hold_headers }
        }
    }
}

/// The detectors read ASCII; UTF-8 and the single-byte charsets keep ASCII as it is.
fn charset_ok(headers: &Headers) -> bool {
    let Some(ct) = headers.get_str("content-type") else { return true };
    ct.split(';').skip(1).filter_map(|p| p.split_once('=')).all(|(k, v)| {
        if !k.trim().eq_ignore_ascii_case("charset") {
            return true;
        }
        let v = v.trim().trim_matches('"').to_ascii_lowercase();
        !(v.starts_with("utf-16") || v.starts_with("utf-32") || v.starts_with("ucs-") || v == "utf-7")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use shared::config::parse_json;

    fn policy(json: &str) -> Policy {
        parse_json::<Config>(json.as_bytes()).unwrap().compile_with_env(&|_| None).unwrap()
    }

    fn resp(pairs: &[(&str, &str)]) -> Headers {
        let mut v = vec![(":status", "200")];
        v.extend_from_slice(pairs);
        Headers::from_pairs(v)
    }

    #[test]
    fn request_edits_on_masked_routes_only() {
        let p = policy(r#"{"rules": [{"prefix": "/static/", "skip": true}]}"#);
        let h = Headers::from_pairs([(":path", "/api"), (":method", "GET"), ("accept-encoding", "gzip, br"), ("range", "bytes=10-")]);
        let d = request(&h, true, &p);
        assert!(d.plan.is_some());
        assert_eq!(d.edits.remove, vec!["accept-encoding", "range", "if-range"]);
        assert_eq!(d.edits.set, vec![("accept-encoding", "identity")]);
        assert_eq!(d.body, BodyPlan::Skip);
        let h = Headers::from_pairs([(":path", "/static/a.js"), (":method", "GET"), ("accept-encoding", "gzip")]);
        let d = request(&h, true, &p);
        assert!(d.plan.is_none());
        assert_eq!(d.edits, RequestEdits::default());
    }

    #[test]
    fn request_bodies_only_when_enabled() {
        let h = Headers::from_pairs([(":path", "/"), (":method", "POST"), ("content-type", "application/json"), ("content-length", "10")]);
        assert_eq!(request(&h, false, &policy("{}")).body, BodyPlan::Skip);
        let p = policy(r#"{"mask_request_bodies": true}"#);
        let d = request(&h, false, &p);
        assert_eq!(d.body, BodyPlan::Json { hold: true });
        assert!(d.edits.remove.contains(&"content-length"));
        let gz = Headers::from_pairs([(":path", "/"), (":method", "POST"), ("content-type", "text/plain"), ("content-encoding", "gzip")]);
        assert_eq!(request(&gz, false, &p).body, BodyPlan::Reject(Denial::Compressed(Direction::Request)));
        assert_eq!(Rejection::from(Denial::Compressed(Direction::Request)).status, 415);
    }

    #[test]
    fn response_plans() {
        let p = policy(r#"{"max_buffer_bytes": 2048}"#);
        let plan = p.default_plan.clone();
        let r = |pairs: &[(&str, &str)], eos: bool| response(&resp(pairs), Some(&plan), eos, &p);
        assert_eq!(r(&[("content-type", "application/json")], false), BodyPlan::Json { hold: true });
        assert_eq!(r(&[("content-type", "application/json; charset=utf-8")], false), BodyPlan::Json { hold: true });
        assert_eq!(r(&[("content-type", "text/html")], false), BodyPlan::Text { overflow_passed: false });
        assert_eq!(r(&[("content-type", "image/png")], false), BodyPlan::Skip);
        assert_eq!(r(&[], false), BodyPlan::Skip);
        assert_eq!(r(&[("content-type", "application/json")], true), BodyPlan::Skip);
        assert_eq!(r(&[("content-type", "text/plain"), ("content-encoding", "gzip")], false), BodyPlan::Reject(Denial::Compressed(Direction::Response)));
        assert_eq!(r(&[("content-type", "text/plain"), ("content-encoding", "identity")], false), BodyPlan::Text { overflow_passed: false });
        assert_eq!(r(&[("content-type", "text/plain; charset=UTF-16LE")], false), BodyPlan::Reject(Denial::Charset(Direction::Response)));
        assert_eq!(r(&[("content-type", "text/plain; charset=\"iso-8859-1\"")], false), BodyPlan::Text { overflow_passed: false });
        assert_eq!(r(&[("content-type", "application/json"), ("content-length", "4096")], false), BodyPlan::Reject(Denial::TooLarge(Direction::Response)));
        // compressed images are not our business
        assert_eq!(r(&[("content-type", "image/png"), ("content-encoding", "gzip")], false), BodyPlan::Skip);
        let nobody = resp(&[("content-type", "application/json")]);
        let mut h = nobody.clone();
        h = Headers::new(h.iter().map(|(k, v)| (k.to_string(), if k == ":status" { b"304".to_vec() } else { v.to_vec() })).collect());
        assert_eq!(response(&h, Some(&plan), false, &p), BodyPlan::Skip);
        assert_eq!(response(&nobody, None, false, &p), BodyPlan::Skip);

        let pass = policy(r#"{"max_buffer_bytes": 2048, "on_overflow": "pass", "hold_headers": false}"#);
        let big = resp(&[("content-type", "application/json"), ("content-length", "4096")]);
        assert_eq!(response(&big, Some(&plan), false, &pass), BodyPlan::Text { overflow_passed: true });
        let small = resp(&[("content-type", "application/json")]);
        assert_eq!(response(&small, Some(&plan), false, &pass), BodyPlan::Json { hold: false });
    }

    #[test]
    fn rejections_have_stable_codes() {
        use Direction::*;
        let r = |d: Denial| {
            let r = Rejection::from(d);
            (r.status, r.code)
        };
        assert_eq!(r(Denial::Compressed(Response)), (502, "compressed_response"));
        assert_eq!(r(Denial::TooLarge(Response)), (502, "response_too_large"));
        assert_eq!(r(Denial::TooLarge(Request)), (413, "request_too_large"));
        assert_eq!(r(Denial::Charset(Response)), (502, "unsupported_charset"));
        assert_eq!(r(Denial::Failed(Response)), (502, "response_not_masked"));
        assert_eq!(r(Denial::NotConfigured), (500, "filter_not_configured"));
        let body: serde_json::Value = serde_json::from_str(&Rejection::from(Denial::TooLarge(Response)).body(Some("id"))).unwrap();
        assert_eq!(body["code"], "response_too_large");
    }
}
