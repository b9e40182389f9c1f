//! RFC 8941 Structured Field Values: the subset `Signature-Input`, `Signature` and
//! `Content-Digest` need (dictionaries, lists, inner lists, parameters, integers, decimals,
//! strings, tokens, byte sequences, booleans), parsed strictly with a cursor that cannot
//! over-read, and serialized canonically (RFC 8941 section 4.1) for signature bases.
//!
//! Anything the grammar does not allow is an error; nothing is repaired or guessed.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

/// Byte sequences: RFC 8941 section 4.2.7 says parsers SHOULD NOT fail on missing `=`
/// padding or non-zero pad bits. Only the standard alphabet is accepted.
const SF_BASE64: GeneralPurpose =
    GeneralPurpose::new(&alphabet::STANDARD, GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent).with_decode_allow_trailing_bits(true));

/// Why a structured field could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset where parsing stopped.
    pub at: usize,
    pub what: &'static str,
}

/// An RFC 8941 bare item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BareItem {
    Integer(i64),
    /// A decimal, stored exactly in thousandths (RFC 8941 allows at most three fraction digits).
    Decimal(i64),
    String(String),
    Token(String),
    ByteSeq(Vec<u8>),
    Boolean(bool),
}

/// Ordered parameters; a repeated key overwrites the value in its first position.
pub type Params = Vec<(String, BareItem)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub bare: BareItem,
    pub params: Params,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InnerList {
    pub items: Vec<Item>,
    pub params: Params,
}

/// A list or dictionary member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    Item(Item),
    InnerList(InnerList),
}

/// A parsed dictionary. `duplicate_keys` is set when a key appeared more than once (RFC 8941
/// keeps the last value; callers that must not accept ambiguity refuse such fields).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dictionary {
    pub members: Vec<(String, Member)>,
    pub duplicate_keys: bool,
}

impl Dictionary {
    pub fn get(&self, key: &str) -> Option<&Member> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, m)| m)
    }
    pub fn len(&self) -> usize {
        self.members.len()
    }
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// First value of a parameter.
pub fn param<'a>(params: &'a Params, key: &str) -> Option<&'a BareItem> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn set_param(params: &mut Params, key: String, value: BareItem) {
    match params.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => params.push((key, value)),
    }
}

struct Cursor<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self { input, pos: 0 }
    }
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }
    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }
    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }
    fn err<T>(&self, what: &'static str) -> Result<T, ParseError> {
        Err(ParseError { at: self.pos, what })
    }
    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }
    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_key_start(b: u8) -> bool {
    b.is_ascii_lowercase() || b == b'*'
}

fn is_key_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.' | b'*')
}

/// A structured field value as received: leading and trailing spaces are discarded
/// (RFC 8941 section 4.2) and the whole input must be consumed.
fn top<T>(input: &[u8], f: impl FnOnce(&mut Cursor<'_>) -> Result<T, ParseError>) -> Result<T, ParseError> {
    let mut c = Cursor::new(input);
    c.skip_sp();
    let v = f(&mut c)?;
    c.skip_sp();
    if !c.at_end() {
        return c.err("unexpected characters after the value");
    }
    Ok(v)
}

/// Parse a Dictionary field value (RFC 8941 section 4.2.2).
pub fn parse_dictionary(input: &[u8]) -> Result<Dictionary, ParseError> {
    top(input, |c| {
        let mut dict = Dictionary::default();
        while !c.at_end() {
            let key = parse_key(c)?;
            let member = if c.eat(b'=') {
                parse_member(c)?
            } else {
                Member::Item(Item { bare: BareItem::Boolean(true), params: parse_params(c)? })
            };
            match dict.members.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => {
                    slot.1 = member;
                    dict.duplicate_keys = true;
                }
                None => dict.members.push((key, member)),
            }
            c.skip_ows();
            if c.at_end() {
                break;
            }
            if !c.eat(b',') {
                return c.err("expected ',' between dictionary members");
            }
            c.skip_ows();
            if c.at_end() {
                return c.err("trailing ',' in dictionary");
            }
        }
        Ok(dict)
    })
}

/// Parse a List field value (RFC 8941 section 4.2.1).
pub fn parse_list(input: &[u8]) -> Result<Vec<Member>, ParseError> {
    top(input, |c| {
        let mut list = Vec::new();
        while !c.at_end() {
            list.push(parse_member(c)?);
            c.skip_ows();
            if c.at_end() {
                break;
            }
            if !c.eat(b',') {
                return c.err("expected ',' between list members");
            }
            c.skip_ows();
            if c.at_end() {
                return c.err("trailing ',' in list");
            }
        }
        Ok(list)
    })
}

/// Parse an Item field value (RFC 8941 section 4.2.3).
pub fn parse_item(input: &[u8]) -> Result<Item, ParseError> {
    top(input, parse_item_inner)
}

fn parse_member(c: &mut Cursor<'_>) -> Result<Member, ParseError> {
    if c.peek() == Some(b'(') {
        parse_inner_list(c).map(Member::InnerList)
    } else {
        parse_item_inner(c).map(Member::Item)
    }
}

fn parse_inner_list(c: &mut Cursor<'_>) -> Result<InnerList, ParseError> {
    if !c.eat(b'(') {
        return c.err("expected '('");
    }
    let mut items = Vec::new();
    loop {
        c.skip_sp();
        if c.eat(b')') {
            let params = parse_params(c)?;
            return Ok(InnerList { items, params });
        }
        if c.at_end() {
            return c.err("unterminated inner list");
        }
        items.push(parse_item_inner(c)?);
        match c.peek() {
            Some(b' ' | b')') => {}
            _ => return c.err("expected ' ' or ')' after an inner list item"),
        }
    }
}

fn parse_item_inner(c: &mut Cursor<'_>) -> Result<Item, ParseError> {
    let bare = parse_bare(c)?;
    let params = parse_params(c)?;
    Ok(Item { bare, params })
}

fn parse_params(c: &mut Cursor<'_>) -> Result<Params, ParseError> {
    let mut params = Params::new();
    while c.eat(b';') {
        c.skip_sp();
        let key = parse_key(c)?;
        let value = if c.eat(b'=') { parse_bare(c)? } else { BareItem::Boolean(true) };
        set_param(&mut params, key, value);
    }
    Ok(params)
}

fn parse_key(c: &mut Cursor<'_>) -> Result<String, ParseError> {
    let start = c.pos;
    match c.peek() {
        Some(b) if is_key_start(b) => {}
        _ => return c.err("expected a key (lower-case letter or '*')"),
    }
    while matches!(c.peek(), Some(b) if is_key_char(b)) {
        c.pos += 1;
    }
    Ok(ascii(c.input.get(start..c.pos).unwrap_or_default()))
}

fn ascii(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn parse_bare(c: &mut Cursor<'_>) -> Result<BareItem, ParseError> {
    match c.peek() {
        Some(b'-' | b'0'..=b'9') => parse_number(c),
        Some(b'"') => parse_string(c),
        Some(b':') => parse_bytes(c),
        Some(b'?') => parse_bool(c),
        Some(b) if b.is_ascii_alphabetic() || b == b'*' => parse_token(c),
        _ => c.err("expected an item"),
    }
}

fn parse_number(c: &mut Cursor<'_>) -> Result<BareItem, ParseError> {
    let negative = c.eat(b'-');
    let mut int_part: i64 = 0;
    let mut int_digits = 0usize;
    while let Some(d @ b'0'..=b'9') = c.peek() {
        c.pos += 1;
        int_digits += 1;
        if int_digits > 15 {
            return c.err("integer has more than 15 digits");
        }
        int_part = int_part * 10 + i64::from(d - b'0');
    }
    if int_digits == 0 {
        return c.err("expected a digit");
    }
    if !c.eat(b'.') {
        return Ok(BareItem::Integer(if negative { -int_part } else { int_part }));
    }
    if int_digits > 12 {
        return c.err("decimal has more than 12 integer digits");
    }
    let mut frac: i64 = 0;
    let mut frac_digits = 0u32;
    while let Some(d @ b'0'..=b'9') = c.peek() {
        c.pos += 1;
        frac_digits += 1;
        if frac_digits > 3 {
            return c.err("decimal has more than 3 fraction digits");
        }
        frac = frac * 10 + i64::from(d - b'0');
    }
    if frac_digits == 0 {
        return c.err("decimal ends with '.'");
    }
    let scale = 10i64.pow(3 - frac_digits);
    let thousandths = int_part * 1000 + frac * scale;
    Ok(BareItem::Decimal(if negative { -thousandths } else { thousandths }))
}

fn parse_string(c: &mut Cursor<'_>) -> Result<BareItem, ParseError> {
    if !c.eat(b'"') {
        return c.err("expected '\"'");
    }
    let mut out = String::new();
    loop {
        match c.bump() {
            None => return c.err("unterminated string"),
            Some(b'"') => return Ok(BareItem::String(out)),
            Some(b'\\') => match c.bump() {
                Some(e @ (b'"' | b'\\')) => out.push(char::from(e)),
                _ => return c.err("invalid escape in string"),
            },
            Some(b) if (0x20..=0x7e).contains(&b) => out.push(char::from(b)),
            Some(_) => return c.err("invalid character in string"),
        }
    }
}

fn parse_token(c: &mut Cursor<'_>) -> Result<BareItem, ParseError> {
    let start = c.pos;
    match c.peek() {
        Some(b) if b.is_ascii_alphabetic() || b == b'*' => c.pos += 1,
        _ => return c.err("expected a token"),
    }
    while matches!(c.peek(), Some(b) if is_tchar(b) || b == b':' || b == b'/') {
        c.pos += 1;
    }
    Ok(BareItem::Token(ascii(c.input.get(start..c.pos).unwrap_or_default())))
}

fn parse_bytes(c: &mut Cursor<'_>) -> Result<BareItem, ParseError> {
    if !c.eat(b':') {
        return c.err("expected ':'");
    }
    let start = c.pos;
    loop {
        match c.bump() {
            None => return c.err("unterminated byte sequence"),
            Some(b':') => break,
            Some(b) if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=') => {}
            Some(_) => return c.err("invalid character in byte sequence"),
        }
    }
    let encoded = c.input.get(start..c.pos.saturating_sub(1)).unwrap_or_default();
    match SF_BASE64.decode(encoded) {
        Ok(bytes) => Ok(BareItem::ByteSeq(bytes)),
        Err(_) => c.err("invalid base64 in byte sequence"),
    }
}

fn parse_bool(c: &mut Cursor<'_>) -> Result<BareItem, ParseError> {
    if !c.eat(b'?') {
        return c.err("expected '?'");
    }
    match c.bump() {
        Some(b'1') => Ok(BareItem::Boolean(true)),
        Some(b'0') => Ok(BareItem::Boolean(false)),
        _ => c.err("boolean must be ?0 or ?1"),
    }
}

// ---- serialization (RFC 8941 section 4.1) ----

pub fn serialize_bare(b: &BareItem, out: &mut String) {
    match b {
        BareItem::Integer(i) => out.push_str(&i.to_string()),
        BareItem::Decimal(t) => {
            if *t < 0 {
                out.push('-');
            }
            let a = t.unsigned_abs();
            out.push_str(&(a / 1000).to_string());
            out.push('.');
            let frac = format!("{:03}", a % 1000);
            let trimmed = frac.trim_end_matches('0');
            out.push_str(if trimmed.is_empty() { "0" } else { trimmed });
        }
        BareItem::String(s) => serialize_string(s, out),
        BareItem::Token(t) => out.push_str(t),
        BareItem::ByteSeq(bytes) => {
            out.push(':');
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(bytes));
            out.push(':');
        }
        BareItem::Boolean(v) => out.push_str(if *v { "?1" } else { "?0" }),
    }
}

pub fn serialize_string(s: &str, out: &mut String) {
    out.push('"');
    for ch in s.chars() {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
}

pub fn serialize_params(params: &Params, out: &mut String) {
    for (k, v) in params {
        out.push(';');
        out.push_str(k);
        if *v != BareItem::Boolean(true) {
            out.push('=');
            serialize_bare(v, out);
        }
    }
}

pub fn serialize_item(item: &Item, out: &mut String) {
    serialize_bare(&item.bare, out);
    serialize_params(&item.params, out);
}

pub fn serialize_inner_list(list: &InnerList, out: &mut String) {
    out.push('(');
    for (i, item) in list.items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        serialize_item(item, out);
    }
    out.push(')');
    serialize_params(&list.params, out);
}

pub fn serialize_member(m: &Member, out: &mut String) {
    match m {
        Member::Item(i) => serialize_item(i, out),
        Member::InnerList(l) => serialize_inner_list(l, out),
    }
}

/// A dictionary member value as RFC 9421 section 2.1.2 (`;key=`) serializes it: the value
/// with its parameters (a `true` boolean member is `?1` here, unlike inside a dictionary).
pub fn member_to_string(m: &Member) -> String {
    let mut s = String::new();
    serialize_member(m, &mut s);
    s
}

pub fn serialize_dictionary(d: &Dictionary) -> String {
    let mut out = String::new();
    for (i, (k, m)) in d.members.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(k);
        match m {
            Member::Item(Item { bare: BareItem::Boolean(true), params }) => serialize_params(params, &mut out),
            other => {
                out.push('=');
                serialize_member(other, &mut out);
            }
        }
    }
    out
}

pub fn serialize_list(l: &[Member]) -> String {
    let mut out = String::new();
    for (i, m) in l.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        serialize_member(m, &mut out);
    }
    out
}

/// True if `s` can be serialized as an sf-string (printable ASCII).
pub fn is_sf_string(s: &str) -> bool {
    s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(bare: BareItem) -> Item {
        Item { bare, params: vec![] }
    }

    #[test]
    fn signature_input_from_rfc_9421() {
        let d = parse_dictionary(br#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#).unwrap();
        assert_eq!(d.len(), 1);
        let Some(Member::InnerList(l)) = d.get("sig-b25") else { panic!() };
        assert_eq!(l.items, vec![item(BareItem::String("date".into())), item(BareItem::String("@authority".into())), item(BareItem::String("content-type".into()))]);
        assert_eq!(param(&l.params, "created"), Some(&BareItem::Integer(1618884473)));
        assert_eq!(param(&l.params, "keyid"), Some(&BareItem::String("test-shared-secret".into())));
        let mut s = String::new();
        serialize_inner_list(l, &mut s);
        assert_eq!(s, r#"("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#);
    }

    #[test]
    fn byte_sequences_and_content_digest() {
        let d = parse_dictionary(b"sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:, sha-512=:YMAam51Jz/jOATT6/zvHrLVgOYTGFy1d6GJiOHTohq4yP+pgk4vf2aCsyRZOtw8MjkM7iw7yZ/WkppmM44T3qg==:").unwrap();
        assert_eq!(d.len(), 2);
        let Some(Member::Item(Item { bare: BareItem::ByteSeq(b), .. })) = d.get("sha-256") else { panic!() };
        assert_eq!(b.len(), 32);
        let Some(Member::Item(Item { bare: BareItem::ByteSeq(b), .. })) = d.get("sha-512") else { panic!() };
        assert_eq!(b.len(), 64);
        // Missing padding is tolerated (RFC 8941 4.2.7).
        let d = parse_dictionary(b"a=:AQI:").unwrap();
        assert_eq!(d.get("a"), Some(&Member::Item(item(BareItem::ByteSeq(vec![1, 2])))));
    }

    #[test]
    fn all_item_types_round_trip() {
        let input = r#"a=1, b=-42, c=3.14, d=-0.5, e="x \"y\" \\z", f=tok/en:1, g=:AAE=:, h=?0, i, j;p=1;q, k=(1 "two" three);lp=?0, l=()"#;
        let d = parse_dictionary(input.as_bytes()).unwrap();
        assert_eq!(d.get("c"), Some(&Member::Item(item(BareItem::Decimal(3140)))));
        assert_eq!(d.get("d"), Some(&Member::Item(item(BareItem::Decimal(-500)))));
        assert_eq!(d.get("e"), Some(&Member::Item(item(BareItem::String("x \"y\" \\z".into())))));
        assert_eq!(d.get("f"), Some(&Member::Item(item(BareItem::Token("tok/en:1".into())))));
        assert_eq!(d.get("i"), Some(&Member::Item(item(BareItem::Boolean(true)))));
        assert_eq!(serialize_dictionary(&d), input);
    }

    #[test]
    fn whitespace_rules() {
        assert!(parse_dictionary(b"  a=1 ,\tb=2  ").is_ok());
        assert!(parse_dictionary(b"a=( 1  2 )").is_ok());
        // Tab is not allowed inside an inner list, nor leading tab at top level.
        assert!(parse_dictionary(b"a=(1\t2)").is_err());
        assert!(parse_dictionary(b"\ta=1").is_err());
        assert!(parse_dictionary(b"a=1;  b=2").is_ok());
        assert!(parse_dictionary(b"a=1 ;b=2").is_err());
    }

    #[test]
    fn strictness() {
        let bad: &[&[u8]] = &[
            b"a=1,",
            b"a=1,,b=2",
            b"A=1",
            b"1a=1",
            b"a=1 b=2",
            b"a=\"unterminated",
            b"a=\"bad \\n escape\"",
            b"a=\"tab\tinside\"",
            b"a=:not base64!:",
            b"a=:AAE=",
            b"a=?2",
            b"a=1234567890123456",
            b"a=1234567890123.5",
            b"a=1.2345",
            b"a=1.",
            b"a=-",
            b"a=(1 2",
            b"a=(1,2)",
            b"a=@1",
            b"a=\"\xc3\xa9\"",
        ];
        for b in bad {
            assert!(parse_dictionary(b).is_err(), "{:?} parsed", String::from_utf8_lossy(b));
        }
        assert!(parse_dictionary(b"a=123456789012345").is_ok());
        assert!(parse_dictionary(b"a=-123456789012.123").is_ok());
    }

    #[test]
    fn duplicates_keep_first_position_and_last_value() {
        let d = parse_dictionary(b"a=1, b=2, a=3").unwrap();
        assert!(d.duplicate_keys);
        assert_eq!(serialize_dictionary(&d), "a=3, b=2");
        let i = parse_item(b"x;p=1;q=2;p=3").unwrap();
        let mut s = String::new();
        serialize_item(&i, &mut s);
        assert_eq!(s, "x;p=3;q=2");
    }

    #[test]
    fn lists_and_items() {
        let l = parse_list(b"a, (b c);x, \"d\"").unwrap();
        assert_eq!(serialize_list(&l), "a, (b c);x, \"d\"");
        assert_eq!(parse_item(b"  \"@query-param\";name=\"Pet\"  ").unwrap().params.len(), 1);
        assert!(parse_item(b"\"a\" x").is_err());
        assert_eq!(parse_list(b"").unwrap().len(), 0);
        assert_eq!(parse_dictionary(b"").unwrap().len(), 0);
    }

    #[test]
    fn member_serialization_for_key_parameter() {
        let d = parse_dictionary(b"a=(1 2);p, b, c=:AA==:").unwrap();
        assert_eq!(member_to_string(d.get("a").unwrap()), "(1 2);p");
        assert_eq!(member_to_string(d.get("b").unwrap()), "?1");
        assert_eq!(member_to_string(d.get("c").unwrap()), ":AA==:");
    }

    #[test]
    fn never_panics_on_prefixes_or_noise() {
        let samples: &[&[u8]] = &[
            br#"sig1=("@method" "@target-uri" "content-digest";sf "@query-param";name="a");created=1;keyid="k";alg="hmac-sha256";nonce="n", sig2=:AAAA:"#,
            b"a=-999999999999.999, b=(?1 ?0 :: \"\" *tok);*k=*v",
        ];
        for s in samples {
            for end in 0..=s.len() {
                for start in 0..end.min(8) {
                    let slice = &s[start..end];
                    let _ = parse_dictionary(slice);
                    let _ = parse_list(slice);
                    let _ = parse_item(slice);
                }
            }
        }
        // Every single byte value in every position of a short value.
        for b in 0..=255u8 {
            for pos in 0..6 {
                let mut v = b"a=(1);".to_vec();
                v.insert(pos, b);
                let _ = parse_dictionary(&v);
            }
        }
    }
}
