//! Field-aware JSON masking that keeps the document valid and its formatting intact.
//!
//! A single-pass validating rewriter (no `Value` tree): bytes are copied as they are except
//! * members whose name is a configured JSON field: the value (every string and number in
//!   it, at any depth) is masked with the field's mode, or the member is removed;
//! * any other string or number (and member names) in which a detector finds a value: the
//!   value is masked, and a masked number becomes a string.
//!
//! Strings are decoded before detection, so `john\u0040example.com` is found too. Input
//! that is not valid JSON (or nested deeper than [`MAX_DEPTH`]) gives `None`; the caller
//! then masks it as text.

use crate::mask;
use crate::policy::{Field, Mode, Plan};
use crate::text::{self, Counts};
use std::borrow::Cow;

/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 128;

/// Mask a JSON document; `None` if it is not valid JSON. `counts` is only updated on success.
pub fn mask(src: &[u8], plan: &Plan, counts: &mut Counts) -> Option<Vec<u8>> {
    let mut r = Rewriter { src, pos: 0, out: Vec::with_capacity(src.len() + src.len() / 16), plan, counts: Counts::default() };
    if src.starts_with(b"\xEF\xBB\xBF") {
        r.out.extend_from_slice(b"\xEF\xBB\xBF");
        r.pos = 3;
    }
    r.copy_ws();
    r.value(None, 0)?;
    r.copy_ws();
    if r.pos != src.len() {
        return None;
    }
    counts.add(&r.counts);
    Some(r.out)
}

struct Rewriter<'a> {
    src: &'a [u8],
    pos: usize,
    out: Vec<u8>,
    plan: &'a Plan,
    counts: Counts,
}

impl<'a> Rewriter<'a> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn copy_ws(&mut self) {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
        self.out.extend_from_slice(self.src.get(start..self.pos).unwrap_or_default());
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| {
            self.out.push(b);
            self.pos += 1;
        })
    }

    /// `field`: the JSON field rule in force for this value (from its member name or an
    /// enclosing one).
    fn value(&mut self, field: Option<&Field>, depth: usize) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(field, depth + 1),
            b'[' => self.array(field, depth + 1),
            b'"' => {
                let (start, end, decoded) = self.string()?;
                self.scalar(start, end, &decoded, field);
                Some(())
            }
            b'-' | b'0'..=b'9' => {
                let (start, end) = self.number()?;
                let raw = self.src.get(start..end)?;
                // A JSON number is ASCII.
                let text = std::str::from_utf8(raw).ok()?;
                self.scalar(start, end, text, field);
                Some(())
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => None,
        }
    }

    /// Write a string or number token `src[start..end]` whose value is `value`.
    fn scalar(&mut self, start: usize, end: usize, value: &str, field: Option<&Field>) {
        let raw = self.src.get(start..end).unwrap_or_default();
        match field {
            // The member is dropped after parsing; nothing to mask or count inside it.
            Some(f) if f.mode == Mode::Remove => self.out.extend_from_slice(raw),
            Some(_) if value.is_empty() => self.out.extend_from_slice(raw),
            Some(f) => {
                let masked = mask::field_value(value, f, self.plan.key.as_deref());
                write_string(&mut self.out, &masked);
                self.counts.fields += 1;
            }
            None => match text::mask_if_any(value.as_bytes(), self.plan, &mut self.counts) {
                Some(masked) => write_string(&mut self.out, &masked),
                None => self.out.extend_from_slice(raw),
            },
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos.checked_add(word.len())?;
        (self.src.get(self.pos..end)? == word).then(|| {
            self.out.extend_from_slice(word);
            self.pos = end;
        })
    }

    fn array(&mut self, field: Option<&Field>, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.expect(b'[')?;
        self.copy_ws();
        if self.peek()? == b']' {
            return self.expect(b']');
        }
        loop {
            self.value(field, depth)?;
            self.copy_ws();
            match self.peek()? {
                b',' => {
                    self.expect(b',')?;
                    self.copy_ws();
                }
                b']' => return self.expect(b']'),
                _ => return None,
            }
        }
    }

    fn object(&mut self, field: Option<&Field>, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.expect(b'{')?;
        let mut lead = self.pos;
        self.skip_ws();
        if self.peek()? == b'}' {
            self.out.extend_from_slice(self.src.get(lead..self.pos)?);
            return self.expect(b'}');
        }
        let mut kept = 0usize;
        loop {
            let mark = self.out.len();
            if kept > 0 {
                self.out.push(b',');
            }
            self.out.extend_from_slice(self.src.get(lead..self.pos)?);
            if self.peek()? != b'"' {
                return None;
            }
            let (start, end, name) = self.string()?;
            // Inside a member that is being removed nothing is masked (it is dropped whole).
            let inherited_remove = field.is_some_and(|f| f.mode == Mode::Remove);
            let own = if inherited_remove { None } else { self.plan.field(&name).cloned() };
            // Member names are masked by value (an e-mail used as a key), never by field rule.
            let raw_name = self.src.get(start..end)?;
            match text::mask_if_any(name.as_bytes(), self.plan, &mut self.counts) {
                Some(masked) if !inherited_remove => write_string(&mut self.out, &masked),
                _ => self.out.extend_from_slice(raw_name),
            }
            self.copy_ws();
            self.expect(b':')?;
            self.copy_ws();
            let child = own.as_ref().or(field);
            self.value(child, depth)?;
            self.copy_ws();
            if own.as_ref().is_some_and(|f| f.mode == Mode::Remove) {
                self.out.truncate(mark);
                self.counts.fields += 1;
            } else {
                kept += 1;
            }
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    lead = self.pos;
                    self.skip_ws();
                }
                b'}' => return self.expect(b'}'),
                _ => return None,
            }
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Parse and validate a number; returns its token range.
    fn number(&mut self) -> Option<(usize, usize)> {
        let start = self.pos;
        let digits = |r: &mut Self| -> usize {
            let s = r.pos;
            while r.peek().is_some_and(|b| b.is_ascii_digit()) {
                r.pos += 1;
            }
            r.pos - s
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => {
                digits(self);
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if digits(self) == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return None;
            }
        }
        Some((start, self.pos))
    }

    /// Parse and validate a string; returns its token range (quotes included) and its value.
    fn string(&mut self) -> Option<(usize, usize, Cow<'a, str>)> {
        let src: &'a [u8] = self.src;
        let start = self.pos;
        if src.get(start) != Some(&b'"') {
            return None;
        }
        let mut i = start + 1;
        // Fast path: no escapes.
        while let Some(&b) = src.get(i) {
            match b {
                b'"' => {
                    let s = std::str::from_utf8(src.get(start + 1..i)?).ok()?;
                    self.pos = i + 1;
                    return Some((start, i + 1, Cow::Borrowed(s)));
                }
                b'\\' => break,
                0..=0x1f => return None,
                _ => i += 1,
            }
        }
        let mut buf: Vec<u8> = src.get(start + 1..i)?.to_vec();
        loop {
            let b = *src.get(i)?;
            match b {
                b'"' => {
                    let s = String::from_utf8(buf).ok()?;
                    self.pos = i + 1;
                    return Some((start, i + 1, Cow::Owned(s)));
                }
                b'\\' => {
                    let e = *src.get(i + 1)?;
                    i += 2;
                    match e {
                        b'"' => buf.push(b'"'),
                        b'\\' => buf.push(b'\\'),
                        b'/' => buf.push(b'/'),
                        b'b' => buf.push(8),
                        b'f' => buf.push(12),
                        b'n' => buf.push(b'\n'),
                        b'r' => buf.push(b'\r'),
                        b't' => buf.push(b'\t'),
                        b'u' => {
                            let hi = hex4(src.get(i..i + 4)?)?;
                            i += 4;
                            let c = if (0xD800..0xDC00).contains(&hi) {
                                if src.get(i..i + 2)? != b"\\u" {
                                    return None;
                                }
                                let lo = hex4(src.get(i + 2..i + 6)?)?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return None;
                                }
                                i += 6;
                                char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
                            } else {
                                char::from_u32(hi)?
                            };
                            let mut tmp = [0u8; 4];
                            buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                        }
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => {
                    buf.push(b);
                    i += 1;
                }
            }
        }
    }
}

fn hex4(h: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &b in h {
        v = v * 16 + char::from(b).to_digit(16)?;
    }
    Some(v)
}

/// Write `value` (UTF-8) as a JSON string.
fn write_string(out: &mut Vec<u8>, value: &[u8]) {
    out.push(b'"');
    for &b in value {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'));
                out.push(HEX.get(usize::from(b & 15)).copied().unwrap_or(b'0'));
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::DetectorSet;
    use crate::mask::HashKey;
    use crate::policy::field_key;
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn plan() -> Plan {
        let mut fields = std::collections::BTreeMap::new();
        for (name, mode) in [("password", Mode::Remove), ("ssn", Mode::Redact), ("card_number", Mode::Partial), ("secret", Mode::Hash), ("name", Mode::Partial)] {
            fields.insert(field_key(name), Field { label: name.into(), mode });
        }
        Plan { detectors: DetectorSet::all(), modes: [Mode::Partial; 6], fields, key: Some(Arc::new(HashKey::new(b"0123456789abcdef").unwrap())) }
    }

    fn run(input: &str) -> (String, Counts) {
        let mut c = Counts::default();
        let out = mask(input.as_bytes(), &plan(), &mut c).expect("valid JSON");
        (String::from_utf8(out).unwrap(), c)
    }

    #[test]
    fn fields_at_any_depth_and_values_anywhere() {
        let input = json!({
            "user": {"name": "John Smith", "password": "hunter2", "contact": {"email": "john.doe@example.com", "Phone": "+1 415 555 2671"}},
            "payments": [{"cardNumber": "4111 1111 1111 1111", "note": "backup card 5555-5555-5555-4444"}, {"card_number": 4111111111111111u64}],
            "SSN": "123-45-6789",
            "secret": {"a": "x", "b": [1, null, true]},
            "ok": [1, 2.5, -3e2, true, false, null, "plain"],
            "order": "4111111111111112",
        })
        .to_string();
        let (out, c) = run(&input);
        let v: Value = serde_json::from_str(&out).expect("output is JSON");
        assert_eq!(v["user"]["name"], "**** *mith");
        assert!(v["user"].get("password").is_none());
        assert_eq!(v["user"]["contact"]["email"], "j***@example.com");
        assert_eq!(v["user"]["contact"]["Phone"], "+* *** *** 2671");
        assert_eq!(v["payments"][0]["cardNumber"], "**** **** **** 1111");
        assert_eq!(v["payments"][0]["note"], "backup card ****-****-****-4444");
        assert_eq!(v["payments"][1]["card_number"], "************1111");
        assert_eq!(v["SSN"], "[REDACTED:ssn]");
        assert!(v["secret"]["a"].as_str().unwrap().starts_with("[HASH:secret:"));
        assert!(v["secret"]["b"][0].as_str().unwrap().starts_with("[HASH:secret:"));
        assert_eq!(v["secret"]["b"][1], Value::Null);
        assert_eq!(v["ok"], json!([1, 2.5, -3e2, true, false, null, "plain"]));
        assert_eq!(v["order"], "4111111111111112");
        assert_eq!(c.fields, 7, "name, password, cardNumber, card_number, SSN, secret.a, secret.b[0]");
        assert_eq!(c.detected[0], 1);
    }

    #[test]
    fn formatting_is_kept_when_nothing_changes() {
        let input = "{\n  \"a\" : [1 , 2],\n  \"b\": {\"c\":\"d\"} ,\"e\":\"\\u00e9\\n\"\n}\n";
        assert_eq!(run(input).0, input);
    }

    #[test]
    fn removal_keeps_commas_right() {
        for (input, want) in [
            (r#"{"password":"x"}"#, r#"{}"#),
            (r#"{"password":"x","a":1}"#, r#"{"a":1}"#),
            (r#"{"a":1,"password":"x"}"#, r#"{"a":1}"#),
            (r#"{"a":1,"password":"x","b":2}"#, r#"{"a":1,"b":2}"#),
            (r#"{ "password" : {"ssn": "123-45-6789"} , "b" : 2 }"#, r#"{ "b" : 2 }"#),
            (r#"[{"password":1},{"x":{"password":[1,2]}}]"#, r#"[{},{"x":{}}]"#),
        ] {
            let (out, _) = run(input);
            assert_eq!(out, want);
            serde_json::from_str::<Value>(&out).unwrap();
        }
    }

    #[test]
    fn escaped_values_are_found_and_reencoded() {
        let (out, _) = run(r#"{"m":"mail john\u0040example.com \"quoted\"\ttab"}"#);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["m"], "mail j***@example.com \"quoted\"\ttab");
    }

    #[test]
    fn pii_in_member_names_is_masked() {
        let (out, _) = run(r#"{"john@example.com": {"visits": 3}}"#);
        assert_eq!(out, r#"{"j***@example.com": {"visits": 3}}"#);
    }

    #[test]
    fn invalid_json_is_refused() {
        for bad in [
            "", "{", "{\"a\":}", "[1,]", "{\"a\":1,}", "01", "1.", "-", "\"\\x\"", "\"\u{1}\"", "{\"a\" 1}", "[1] [2]",
            "tru", "\"\\ud800\"", "{'a':1}", "\"\\u12\"", "[\"\\udc00\"]",
        ] {
            assert!(mask(bad.as_bytes(), &plan(), &mut Counts::default()).is_none(), "{bad:?}");
        }
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(mask(deep.as_bytes(), &plan(), &mut Counts::default()).is_none());
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(mask(ok.as_bytes(), &plan(), &mut Counts::default()).is_some());
        // invalid UTF-8 inside a string
        assert!(mask(b"\"\xff\"", &plan(), &mut Counts::default()).is_none());
        // counts untouched on failure
        let mut c = Counts::default();
        assert!(mask(br#"{"e":"a@b.co","x":}"#, &plan(), &mut c).is_none());
        assert_eq!(c, Counts::default());
    }

    #[test]
    fn agrees_with_serde_json_on_validity() {
        // Every prefix of a valid document: valid iff serde_json says so.
        let doc = r#"{"a":[1,2.5e-3,"x\u00e9\"",{"b":null,"c":true}],"d":-0.0,"e":"4111 1111 1111 1111"}"#;
        for cut in 0..=doc.len() {
            let s = &doc[..cut];
            let ours = mask(s.as_bytes(), &plan(), &mut Counts::default()).is_some();
            let theirs = serde_json::from_str::<Value>(s).is_ok();
            assert_eq!(ours, theirs, "{s:?}");
        }
    }

    #[test]
    fn output_is_always_valid_json() {
        let docs = [
            json!({"card": "4111 1111 1111 1111", "arr": ["x@y.io", 378282246310005u64, "ctrl\u{1}chars"], "n": 5555555555554444u64}),
            json!(["123-45-6789", {"password": {"nested": ["a", {"b": "c"}]}}, "DE89370400440532013000"]),
            json!("just a string with +44 20 7946 0958"),
            json!(4111111111111111u64),
        ];
        for d in docs {
            let (out, _) = run(&d.to_string());
            serde_json::from_str::<Value>(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
            let (pretty, _) = run(&serde_json::to_string_pretty(&d).unwrap());
            serde_json::from_str::<Value>(&pretty).unwrap();
        }
    }

    #[test]
    fn bom_is_kept() {
        let (out, _) = run("\u{feff}{\"e\":\"a@b.co\"}");
        assert_eq!(out, "\u{feff}{\"e\":\"a***@b.co\"}");
    }
}
