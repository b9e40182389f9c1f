//! Validated PII detectors, hand-written byte scanners (no regex engine).
//!
//! Every detector answers one question: "does a value of my kind start at byte `p` of this
//! window, and where does it end?". A detector only reads `win[p - LEFT_CONTEXT .. p + LOOKAHEAD]`
//! (a little left context, a bounded look-ahead), so the streaming masker can decide
//! position `p` as soon as `LOOKAHEAD` bytes after it are known, and the decision is the same
//! as when the whole text is in memory. The end of `win` is the end of the text.
//!
//! Precision comes from validation, not from patterns alone: Luhn + issuer ranges for cards,
//! the SSA's invalid areas/groups/serials for SSNs, country length + ISO 7064 mod-97 for
//! IBANs, structured formats for phones, label rules for e-mail domains, octet ranges for
//! IPv4, plus word boundaries that keep digits glued to letters, dots or dashes (order ids,
//! versions, dates, UUIDs, prices) out.

use serde::Deserialize;

/// The kinds of personal data the filter recognizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    CreditCard,
    Iban,
    Ssn,
    Phone,
    Email,
    Ipv4,
}

impl Detector {
    /// All detectors, in tie-break priority order (a longer match always wins first).
    pub const ALL: [Detector; 6] = [Detector::CreditCard, Detector::Iban, Detector::Ssn, Detector::Phone, Detector::Email, Detector::Ipv4];

    /// Stable name (config, redaction tokens, metrics).
    pub fn name(self) -> &'static str {
        match self {
            Detector::CreditCard => "credit_card",
            Detector::Iban => "iban",
            Detector::Ssn => "ssn",
            Detector::Phone => "phone",
            Detector::Email => "email",
            Detector::Ipv4 => "ipv4",
        }
    }

    /// Index into per-detector arrays.
    pub fn index(self) -> usize {
        match self {
            Detector::CreditCard => 0,
            Detector::Iban => 1,
            Detector::Ssn => 2,
            Detector::Phone => 3,
            Detector::Email => 4,
            Detector::Ipv4 => 5,
        }
    }

    fn bit(self) -> u8 {
        1 << self.index()
    }
}

/// A set of detectors (bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DetectorSet(u8);

impl DetectorSet {
    pub fn all() -> Self {
        Self(0b11_1111)
    }
    pub fn none() -> Self {
        Self(0)
    }
    pub fn with(self, d: Detector) -> Self {
        Self(self.0 | d.bit())
    }
    pub fn contains(self, d: Detector) -> bool {
        self.0 & d.bit() != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Detector> {
        Detector::ALL.into_iter().filter(move |d| self.contains(*d))
    }
}

/// Bytes of left context a detector may look at before `p` (the IPv4 detector looks for a
/// preceding `version`/`build` word: 2 separators + 8 letters + 1 boundary).
pub const LEFT_CONTEXT: usize = 12;
/// Bytes after `p` a detector may read (longest e-mail 64 + 1 + 253, plus boundary checks).
pub const LOOKAHEAD: usize = 330;

const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 253;

#[inline]
fn at(win: &[u8], i: usize) -> Option<u8> {
    win.get(i).copied()
}

#[inline]
fn is_digit(b: Option<u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_digit())
}

#[inline]
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Characters of an e-mail local part (practical subset of RFC 5322 `dot-atom`).
#[inline]
fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// Bytes at which some detector (or the UUID skip) can start.
#[inline]
pub fn is_trigger(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'(' | b'_' | b'%' | b'-')
}

fn prev(win: &[u8], p: usize, back: usize) -> Option<u8> {
    p.checked_sub(back).and_then(|i| at(win, i))
}

/// A number may start at `p`: not glued to a word, nor continuing `1.`, `1-`, `1:` or `1/`
/// (versions, dates, times, ranges).
fn numeric_left_ok(win: &[u8], p: usize) -> bool {
    match prev(win, p, 1) {
        None => true,
        Some(b) if is_word(b) => false,
        Some(b'.' | b'-' | b':' | b'/') => !is_digit(prev(win, p, 2)),
        Some(_) => true,
    }
}

/// A number may end at `e`: not glued to a word, nor continued by `.5`, `-5`, `:5` or `/5`.
fn numeric_right_ok(win: &[u8], e: usize) -> bool {
    match at(win, e) {
        None => true,
        Some(b) if is_word(b) => false,
        Some(b'.' | b'-' | b':' | b'/') => !is_digit(at(win, e + 1)),
        Some(_) => true,
    }
}

/// `p` continues a token that a reader starting further left crosses into, so no value
/// starts here: the token is one value or none. Otherwise masking a value here would shorten
/// the token for that reader, and its head could become a value in the masked output
/// (`x@y.io.[REDACTED:credit_card]`), which the filter would mask if it saw it again.
/// - a dotted name (`a.b`): the e-mail domain reader crosses `.` + letter or digit;
/// - a number continued by `.`, `-`, `:` or `/` and a digit (`1:5`, see `numeric_left_ok`),
///   also for what is not a number (an e-mail's local part).
///
/// Runs of digit groups are the phone reader's, see [`inside_digit_run`]. A value right
/// after a masked value starts afresh (see `text::walk`'s floor).
fn glued(win: &[u8], p: usize, b: u8) -> bool {
    let dotted = b.is_ascii_alphanumeric() && prev(win, p, 1) == Some(b'.') && prev(win, p, 2).is_some_and(|c| c.is_ascii_alphanumeric());
    dotted || (b.is_ascii_digit() && !numeric_left_ok(win, p))
}

/// `p` is inside a run of digit groups as the phone reader reads it (it crosses ` `, `-`, `.`
/// after a digit, ` `/`-` after `)`, `(`/`)` between digits): `0958 00 415…`, `2671-(415)…`.
/// Read from its start such a run is one number, which the phone reader rejects when it is
/// too long; a phone starting inside it would, once masked, leave a head that is a phone
/// (`0044 0532 0130 [REDACTED:phone]`). So a phone does not start inside a run. (Other values
/// may: the phone reader stops before them, see [`phone_groups`].)
fn inside_digit_run(win: &[u8], p: usize) -> bool {
    let joins = |k: usize| match prev(win, p, k) {
        Some(b' ' | b'-') => matches!(prev(win, p, k + 1), Some(b'0'..=b'9' | b')')).then_some(k + 1),
        Some(b'.' | b'(' | b')') => is_digit(prev(win, p, k + 1)).then_some(k + 1),
        _ => None,
    };
    let from = match joins(1) {
        // `0958-(5555…`: the `(` itself continues the run.
        None if at(win, p) != Some(b'(') && prev(win, p, 1) == Some(b'(') => match prev(win, p, 2) {
            Some(b' ' | b'-' | b'.') => joins(2),
            _ => None,
        },
        j => j,
    };
    let Some(mut k) = from else { return false };
    if prev(win, p, k) == Some(b')') {
        return true;
    }
    // A digit group glued to a word (`mc2 2223…`) starts no number: no reader crosses it.
    while k < LEFT_CONTEXT && is_digit(prev(win, p, k)) {
        k += 1;
    }
    !prev(win, p, k).is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
}

/// A value other than a phone starts at `p` (the phone reader stops before it).
fn other_value_at(win: &[u8], p: usize) -> bool {
    let Some(b) = at(win, p) else { return false };
    !glued(win, p, b) && (card(win, p).is_some() || ssn(win, p).is_some() || ipv4(win, p).is_some() || email(win, p).is_some())
}

/// The longest value of any enabled detector starting at `p` (ties: [`Detector::ALL`] order).
pub fn find(win: &[u8], p: usize, set: DetectorSet) -> Option<(Detector, usize)> {
    let b = at(win, p)?;
    if prev(win, p, 1).is_some_and(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    if glued(win, p, b) {
        return None;
    }
    let mut best: Option<(Detector, usize)> = None;
    let mut consider = |d: Detector, end: Option<usize>| {
        if let Some(e) = end {
            if best.is_none_or(|(_, be)| e > be) {
                best = Some((d, e));
            }
        }
    };
    if b.is_ascii_digit() {
        if set.contains(Detector::CreditCard) {
            consider(Detector::CreditCard, card(win, p));
        }
        if set.contains(Detector::Ssn) {
            consider(Detector::Ssn, ssn(win, p));
        }
        if set.contains(Detector::Phone) {
            consider(Detector::Phone, phone(win, p));
        }
        if set.contains(Detector::Email) {
            consider(Detector::Email, email(win, p));
        }
        if set.contains(Detector::Ipv4) {
            consider(Detector::Ipv4, ipv4(win, p));
        }
    } else if b.is_ascii_alphabetic() {
        if set.contains(Detector::Iban) {
            consider(Detector::Iban, iban(win, p));
        }
        if set.contains(Detector::Email) {
            consider(Detector::Email, email(win, p));
        }
    } else if b == b'+' || b == b'(' {
        if set.contains(Detector::Phone) {
            consider(Detector::Phone, phone(win, p));
        }
        if b == b'+' && set.contains(Detector::Email) {
            consider(Detector::Email, email(win, p));
        }
    } else if set.contains(Detector::Email) {
        consider(Detector::Email, email(win, p));
    }
    best
}

/// The whole of `s` is one value of some detector (any detector, enabled or not).
pub fn whole(s: &[u8]) -> Option<Detector> {
    match find(s, 0, DetectorSet::all()) {
        Some((d, e)) if e == s.len() => Some(d),
        _ => None,
    }
}

/// A token at `p` that must never be masked nor scanned inside: a UUID. Returns its end.
pub fn skip(win: &[u8], p: usize) -> Option<usize> {
    if prev(win, p, 1).is_some_and(|c| is_word(c) || c == b'-') {
        return None;
    }
    let mut i = p;
    for (n, len) in [8usize, 4, 4, 4, 12].into_iter().enumerate() {
        if n > 0 {
            if at(win, i) != Some(b'-') {
                return None;
            }
            i += 1;
        }
        for _ in 0..len {
            if !at(win, i).is_some_and(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            i += 1;
        }
    }
    match at(win, i) {
        Some(b) if is_word(b) || b == b'-' => None,
        _ => Some(i),
    }
}

// ---------------------------------------------------------------- credit cards

/// Issuer (IIN) ranges and the lengths each issuer uses.
fn card_issuer_ok(d: &[u8]) -> bool {
    let n = d.len();
    let prefix = |k: usize| -> u32 { d.iter().take(k).fold(0u32, |a, &x| a * 10 + u32::from(x)) };
    let p1 = prefix(1);
    let p2 = prefix(2);
    let p3 = prefix(3);
    let p4 = prefix(4);
    let p6 = prefix(6);
    // Visa
    (p1 == 4 && matches!(n, 13 | 16 | 19))
        // Mastercard
        || ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && n == 16
        // American Express
        || (p2 == 34 || p2 == 37) && n == 15
        // Discover, incl. China UnionPay co-branded range
        || (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || (622_126..=622_925).contains(&p6)) && (16..=19).contains(&n)
        // UnionPay
        || p2 == 62 && (16..=19).contains(&n)
        // JCB (and its legacy 15-digit ranges)
        || (3528..=3589).contains(&p4) && (16..=19).contains(&n)
        || (p4 == 2131 || p4 == 1800) && n == 15
        // Diners Club
        || ((300..=305).contains(&p3) || p4 == 3095 || p2 == 36 || p2 == 38 || p2 == 39) && (14..=19).contains(&n)
        // Maestro (16-19; the old 12-13 digit cards collide with UPC/EAN product codes)
        || matches!(p2, 50 | 56 | 57 | 58 | 63 | 67) && (16..=19).contains(&n)
        // Mir
        || (2200..=2204).contains(&p4) && (16..=19).contains(&n)
        // RuPay
        || matches!(p2, 60 | 81 | 82) && n == 16
}

/// Luhn (mod 10) checksum.
pub fn luhn_ok(d: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &x) in d.iter().rev().enumerate() {
        let x = u32::from(x);
        sum += if !i.is_multiple_of(2) {
            let y = x * 2;
            if y > 9 {
                y - 9
            } else {
                y
            }
        } else {
            x
        };
    }
    !d.is_empty() && sum.is_multiple_of(10)
}

/// Card layouts printed with separators: groups of four (the last one may be shorter:
/// `4-4-4-1`, `4-4-4-4-3`), American Express `4-6-5` and Diners `4-6-4`.
fn card_layout_ok(groups: &[usize]) -> bool {
    match groups {
        [_] => true,
        [4, 6, 5] | [4, 6, 4] => true,
        [init @ .., last] => init.iter().all(|&g| g == 4) && (1..=4).contains(last),
        [] => false,
    }
}

/// 13 to 19 digits, compact or in a card layout (see [`card_layout_ok`]) separated by
/// single spaces or dashes (one kind per number), issuer range + Luhn valid. When more digit
/// groups follow, the longest valid prefix ending at a group boundary is taken
/// (`4111 1111 1111 1111 2024`).
fn card(win: &[u8], p: usize) -> Option<usize> {
    if !numeric_left_ok(win, p) {
        return None;
    }
    let mut digits = [0u8; 19];
    let mut n = 0usize;
    let mut i = p;
    let mut sep: Option<u8> = None;
    // Group ends: (byte end, digit count so far); group lengths in `lens`.
    let mut ends = [(0usize, 0usize); 19];
    let mut lens = [0usize; 19];
    let mut n_ends = 0usize;
    let mut overflow = false;
    loop {
        let g0 = n;
        while let Some(b) = at(win, i).filter(u8::is_ascii_digit) {
            if n == 19 {
                overflow = true;
                break;
            }
            if let Some(slot) = digits.get_mut(n) {
                *slot = b - b'0';
            }
            n += 1;
            i += 1;
        }
        if overflow {
            break;
        }
        let glen = n - g0;
        if let (Some(e), Some(l)) = (ends.get_mut(n_ends), lens.get_mut(n_ends)) {
            *e = (i, n);
            *l = glen;
            n_ends += 1;
        }
        // No card layout continues past a group that is not 4 long (except Amex/Diners'
        // middle 6): stop reading instead of trying hopeless longer candidates.
        let continues = match n_ends {
            1 => glen == 4,
            2 => glen == 4 || glen == 6,
            _ => glen == 4 && lens.get(1) == Some(&4),
        };
        if !continues {
            break;
        }
        match at(win, i) {
            Some(s @ (b' ' | b'-')) if sep.is_none_or(|x| x == s) && is_digit(at(win, i + 1)) => {
                sep = Some(s);
                i += 1;
            }
            _ => break,
        }
    }
    for k in (0..n_ends).rev() {
        let (end, count) = ends.get(k).copied()?;
        if !(13..=19).contains(&count) || !card_layout_ok(lens.get(..=k)?) {
            continue;
        }
        // Followed by another group of the same number: a boundary, not a glued digit run.
        let at_group_boundary = k + 1 < n_ends || overflow && k + 1 == n_ends && sep.is_some() && at(win, end) == sep;
        if !at_group_boundary && !numeric_right_ok(win, end) {
            continue;
        }
        let d = digits.get(..count)?;
        if card_issuer_ok(d) && luhn_ok(d) {
            return Some(end);
        }
    }
    None
}

// ---------------------------------------------------------------- SSN

/// US Social Security Number `AAA-GG-SSSS` (or with spaces), excluding numbers the SSA never
/// issues: area 000, 666, 900-999; group 00; serial 0000; and the famous sample numbers.
fn ssn(win: &[u8], p: usize) -> Option<usize> {
    if !numeric_left_ok(win, p) {
        return None;
    }
    let num = |from: usize, len: usize| -> Option<u32> {
        let mut v = 0u32;
        for k in 0..len {
            let b = at(win, from + k).filter(u8::is_ascii_digit)?;
            v = v * 10 + u32::from(b - b'0');
        }
        Some(v)
    };
    let area = num(p, 3)?;
    let s = at(win, p + 3).filter(|b| *b == b'-' || *b == b' ')?;
    let group = num(p + 4, 2)?;
    if at(win, p + 6) != Some(s) {
        return None;
    }
    let serial = num(p + 7, 4)?;
    let end = p + 11;
    if !numeric_right_ok(win, end) {
        return None;
    }
    let invalid_area = area == 0 || area == 666 || area >= 900;
    let sample = matches!((area, group, serial), (78, 5, 1120) | (219, 9, 9999) | (457, 55, 5462));
    (!invalid_area && group != 0 && serial != 0 && !sample).then_some(end)
}

// ---------------------------------------------------------------- IBAN

/// ISO 13616 IBAN length per country (SWIFT registry).
fn iban_length(cc: [u8; 2]) -> Option<usize> {
    Some(match &cc {
        b"AD" => 24, b"AE" => 23, b"AL" => 28, b"AT" => 20, b"AZ" => 28, b"BA" => 20, b"BE" => 16,
        b"BG" => 22, b"BH" => 22, b"BI" => 27, b"BR" => 29, b"BY" => 28, b"CH" => 21, b"CR" => 22,
        b"CY" => 28, b"CZ" => 24, b"DE" => 22, b"DJ" => 27, b"DK" => 18, b"DO" => 28, b"EE" => 20,
        b"EG" => 29, b"ES" => 24, b"FI" => 18, b"FK" => 18, b"FO" => 18, b"FR" => 27, b"GB" => 22,
        b"GE" => 22, b"GI" => 23, b"GL" => 18, b"GR" => 27, b"GT" => 28, b"HN" => 28, b"HR" => 21,
        b"HU" => 28, b"IE" => 22, b"IL" => 23, b"IQ" => 23, b"IS" => 26, b"IT" => 27, b"JO" => 30,
        b"KW" => 30, b"KZ" => 20, b"LB" => 28, b"LC" => 32, b"LI" => 21, b"LT" => 20, b"LU" => 20,
        b"LV" => 21, b"LY" => 25, b"MC" => 27, b"MD" => 24, b"ME" => 22, b"MK" => 19, b"MN" => 20,
        b"MR" => 27, b"MT" => 31, b"MU" => 30, b"NI" => 28, b"NL" => 18, b"NO" => 15, b"OM" => 23,
        b"PK" => 24, b"PL" => 28, b"PS" => 29, b"PT" => 25, b"QA" => 29, b"RO" => 24, b"RS" => 22,
        b"RU" => 33, b"SA" => 24, b"SC" => 31, b"SD" => 18, b"SE" => 24, b"SI" => 19, b"SK" => 24,
        b"SM" => 27, b"SO" => 23, b"ST" => 25, b"SV" => 28, b"TL" => 23, b"TN" => 24, b"TR" => 26,
        b"UA" => 29, b"VA" => 22, b"VG" => 24, b"XK" => 20, b"YE" => 30,
        _ => return None,
    })
}

/// ISO 7064 MOD 97-10 over the rearranged IBAN (country and check digits moved to the end).
pub fn iban_mod97_ok(chars: &[u8]) -> bool {
    if chars.len() < 5 {
        return false;
    }
    let mut rem = 0u32;
    let mut feed = |c: u8| -> bool {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
        true
    };
    let (head, tail) = chars.split_at(4);
    tail.iter().chain(head.iter()).all(|&c| feed(c)) && rem == 1
}

/// Country code, two check digits, the BBAN; compact or printed in groups of four
/// separated by single spaces. Letters may be lower-case.
fn iban(win: &[u8], p: usize) -> Option<usize> {
    if prev(win, p, 1).is_some_and(is_word) {
        return None;
    }
    let up = |i: usize| at(win, i).map(|b| b.to_ascii_uppercase());
    let c0 = up(p).filter(u8::is_ascii_uppercase)?;
    let c1 = up(p + 1).filter(u8::is_ascii_uppercase)?;
    if !is_digit(at(win, p + 2)) || !is_digit(at(win, p + 3)) {
        return None;
    }
    let len = iban_length([c0, c1])?;
    let mut chars = [0u8; 34];
    let mut n = 0usize;
    let mut i = p;
    let mut spaced: Option<bool> = None;
    while n < len {
        if n > 0 && n.is_multiple_of(4) {
            let is_space = at(win, i) == Some(b' ');
            match spaced {
                None => spaced = Some(is_space),
                Some(s) if s != is_space => return None,
                _ => {}
            }
            if is_space {
                i += 1;
            }
        }
        let c = up(i).filter(|b| b.is_ascii_uppercase() || b.is_ascii_digit())?;
        *chars.get_mut(n)? = c;
        n += 1;
        i += 1;
    }
    if at(win, i).is_some_and(is_word) {
        return None;
    }
    iban_mod97_ok(chars.get(..len)?).then_some(i)
}

// ---------------------------------------------------------------- phones

/// The shape of a run of digit groups: `+1 (415) 555-2671`, `020 7946 0958`, ...
#[derive(Debug, Default, Clone, Copy)]
struct Groups {
    end: usize,
    digits: usize,
    lens: [usize; 8],
    count: usize,
    /// Index of the group written in parentheses, if any.
    paren: Option<usize>,
    /// Separator kinds used (bit 0 space, 1 dash, 2 dot); a `)` followed directly by a digit
    /// counts as no separator.
    seps: u8,
    first_digit: u8,
}

impl Groups {
    fn len(&self, k: usize) -> usize {
        self.lens.get(k).copied().unwrap_or(0)
    }
}

/// Read one group at `i` (`415` or `(415)`) into `g`; returns the position after it.
/// `Err(true)` when the number would pass 15 digits (a long digit run, not a phone).
fn phone_group(win: &[u8], mut i: usize, g: &mut Groups) -> Result<usize, bool> {
    let paren = at(win, i) == Some(b'(');
    if paren {
        if g.paren.is_some() {
            return Err(false);
        }
        g.paren = Some(g.count);
        i += 1;
    }
    let start = i;
    while let Some(b) = at(win, i).filter(u8::is_ascii_digit) {
        if g.first_digit == 255 {
            g.first_digit = b - b'0';
        }
        i += 1;
        g.digits += 1;
        if g.digits > 15 {
            return Err(true);
        }
    }
    let len = i - start;
    if len == 0 || (paren && at(win, i) != Some(b')')) {
        return Err(false);
    }
    if paren {
        i += 1;
    }
    *g.lens.get_mut(g.count).ok_or(false)? = len;
    g.count += 1;
    g.end = i;
    Ok(i)
}

/// Read digit groups from `i` (just after a `+` or a `00` prefix, or at a national number).
/// Stops before anything that does not continue the number; `None` past 15 digits or 8
/// groups.
fn phone_groups(win: &[u8], i: usize) -> Option<Groups> {
    let mut g = Groups { first_digit: 255, ..Groups::default() };
    let mut i = phone_group(win, i, &mut g).ok()?;
    loop {
        let after_paren = g.paren.is_some_and(|k| k + 1 == g.count);
        let next = at(win, i);
        // A separator, `(` right after digits (`+49(0)30`), or digits right after `)`.
        let (skip, bit) = match next {
            Some(b' ') => (1, 1),
            Some(b'-') => (1, 2),
            Some(b'.') if !after_paren => (1, 4),
            Some(b'(') if g.paren.is_none() => (0, 0),
            _ if after_paren && is_digit(next) => (0, 0),
            _ => break,
        };
        if g.count >= 8 {
            return None;
        }
        // A card, SSN, address or e-mail starts the next group: the number ends here (it is
        // masked on its own, and what is left must be judged without it).
        let digits_at = if at(win, i + skip) == Some(b'(') { i + skip + 1 } else { i + skip };
        if other_value_at(win, digits_at) {
            break;
        }
        let mut trial = g;
        match phone_group(win, i + skip, &mut trial) {
            Ok(j) => {
                trial.seps |= bit;
                g = trial;
                i = j;
            }
            Err(true) => return None,
            Err(false) => break,
        }
    }
    Some(g)
}

/// The number may end at `e`; an extension (`x123`, `ext. 12`) may follow.
fn phone_right_ok(win: &[u8], e: usize) -> bool {
    if at(win, e) == Some(b'x') && is_digit(at(win, e + 1)) {
        return true;
    }
    numeric_right_ok(win, e)
}

/// Phone numbers: E.164 (`+` and 8-15 digits, any grouping), `00` international prefix,
/// NANP (`(415) 555-2671`, `415-555-2671`, `415.555.2671`, `1-415-555-2671`) and national
/// numbers with a trunk `0` in two or more groups (`020 7946 0958`, `01 23 45 67 89`).
/// Bare digit runs without `+` are never phones (order ids, timestamps).
fn phone(win: &[u8], p: usize) -> Option<usize> {
    let first = at(win, p)?;
    if first == b'+' {
        if prev(win, p, 1).is_some_and(|b| is_word(b) || b == b'+') {
            return None;
        }
        let g = phone_groups(win, p + 1)?;
        // The country code is never written in parentheses and never starts with 0.
        if g.paren == Some(0) || g.first_digit == 0 || !(8..=15).contains(&g.digits) {
            return None;
        }
        return phone_right_ok(win, g.end).then_some(g.end);
    }
    if inside_digit_run(win, p) {
        return None;
    }
    if first == b'(' {
        if prev(win, p, 1).is_some_and(is_word) {
            return None;
        }
    } else if !numeric_left_ok(win, p) {
        return None;
    } else {
        // Without `+`, a one-digit first group is only NANP's country code `1`.
        let run = (p..p + 2).take_while(|&i| is_digit(at(win, i))).count();
        if run == 1 && first != b'1' {
            return None;
        }
    }
    let g = phone_groups(win, p)?;
    if !phone_right_ok(win, g.end) || g.count < 2 {
        return None;
    }
    // International prefix `00`: `0044 20 7946 0958`, `001-415-555-2671`.
    if first == b'0' && at(win, p + 1) == Some(b'0') && g.paren.is_none() {
        let cc_digits = g.digits.checked_sub(2)?;
        let third = at(win, p + 2)?;
        return (third != b'0' && (8..=15).contains(&cc_digits) && g.len(0) <= 5).then_some(g.end);
    }
    if nanp(&g, win, p) {
        return Some(g.end);
    }
    // National number with trunk prefix 0 (UK, DE, FR, ...).
    let trunk = g.first_digit == 0 && !(first == b'0' && at(win, p + 1) == Some(b'0'));
    let one_sep_kind = g.seps.count_ones() <= 1 && g.seps & 4 == 0;
    let lens_ok = (0..g.count).all(|k| if k == 0 { (2..=5).contains(&g.len(k)) } else { (2..=8).contains(&g.len(k)) });
    (trunk && one_sep_kind && lens_ok && (10..=11).contains(&g.digits) && g.paren.is_none_or(|k| k == 0)).then_some(g.end)
}

/// North American Numbering Plan: `[1 ]AAA EEE NNNN` with A and E starting 2-9.
fn nanp(g: &Groups, win: &[u8], p: usize) -> bool {
    let lens = g.lens.get(..g.count).unwrap_or_default();
    // Optional leading country code 1 as its own group.
    let (offset, body) = match lens {
        [1, rest @ ..] if at(win, p) == Some(b'1') => (1, rest),
        all => (0, all),
    };
    if body != [3, 3, 4] {
        return false;
    }
    // Digits of the area code and the exchange: find them by walking the window.
    let digit = |n: usize| win.get(p..g.end).unwrap_or_default().iter().filter(|b| b.is_ascii_digit()).nth(n).map_or(0, |b| b - b'0');
    let area = digit(offset);
    let exchange = digit(offset + 3);
    if area < 2 || exchange < 2 {
        return false;
    }
    // Parentheses only around the area code; separators between exchange and subscriber
    // must exist (a bare `4155552671` is not taken).
    let paren_ok = g.paren.is_none_or(|k| k == offset);
    // Dots only in the all-dots form `415.555.2671`.
    let dots = g.seps & 4 != 0;
    let dots_ok = !dots || (g.seps == 4 && g.paren.is_none());
    paren_ok && dots_ok
}

// ---------------------------------------------------------------- e-mail

/// `local@domain` with a practical RFC 5322 subset: local part of `A-Za-z0-9._%+-` (no
/// leading, trailing or double dot, at most 64), domain of two or more LDH labels (1-63,
/// no leading/trailing hyphen, at most 253) ending in an alphabetic or `xn--` TLD.
/// Quoted local parts, IP-literal and non-ASCII domains are not recognized.
fn email(win: &[u8], p: usize) -> Option<usize> {
    if prev(win, p, 1).is_some_and(is_local) {
        return None;
    }
    let mut i = p;
    while at(win, i).is_some_and(is_local) {
        i += 1;
        if i - p > MAX_LOCAL {
            return None;
        }
    }
    if at(win, i) != Some(b'@') || i == p {
        return None;
    }
    let local = win.get(p..i)?;
    if local.first() == Some(&b'.') || local.last() == Some(&b'.') || local.windows(2).any(|w| w == b"..") {
        return None;
    }
    let d0 = i + 1;
    let mut j = d0;
    let mut labels = 0usize;
    let mut last_label;
    loop {
        let ls = j;
        while at(win, j).is_some_and(|b| b.is_ascii_alphanumeric() || b == b'-') {
            j += 1;
            if j - d0 > MAX_DOMAIN {
                return None;
            }
        }
        let label = win.get(ls..j)?;
        if label.is_empty() || label.len() > 63 || label.first() == Some(&b'-') || label.last() == Some(&b'-') {
            return None;
        }
        labels += 1;
        last_label = (ls, j);
        if at(win, j) == Some(b'.') && at(win, j + 1).is_some_and(|b| b.is_ascii_alphanumeric()) {
            j += 1;
            continue;
        }
        break;
    }
    if labels < 2 {
        return None;
    }
    let tld = win.get(last_label.0..last_label.1)?;
    let tld_ok = (tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic)) || (tld.len() > 4 && tld.get(..4).is_some_and(|x| x.eq_ignore_ascii_case(b"xn--")));
    if !tld_ok || at(win, j).is_some_and(|b| is_word(b) || b == b'@') {
        return None;
    }
    Some(j)
}

// ---------------------------------------------------------------- IPv4

/// The word right before `p` (through at most two of ` :=#`) names a version:
/// `version 1.2.3.4`, `build: 10.0.0.1`, `rev=4.3.2.1`.
fn after_version_word(win: &[u8], p: usize) -> bool {
    let mut i = p;
    let mut seps = 0;
    while seps < 2 && i > 0 && matches!(at(win, i - 1), Some(b' ' | b':' | b'=' | b'#')) {
        i -= 1;
        seps += 1;
    }
    if seps == 0 {
        return false;
    }
    let end = i;
    while end - i < 8 && i > 0 && at(win, i - 1).is_some_and(|b| b.is_ascii_alphabetic()) {
        i -= 1;
    }
    if i > 0 && at(win, i - 1).is_some_and(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let word = win.get(i..end).unwrap_or_default().to_ascii_lowercase();
    matches!(word.as_slice(), b"v" | b"ver" | b"version" | b"build" | b"release" | b"rev" | b"revision" | b"firmware" | b"fw")
}

/// Dotted-quad IPv4 address, octets 0-255 without leading zeros. Not glued to a dot or a
/// word on either side (`1.2.3.4.5`, `v1.2.3.4` are not addresses), not right after a
/// version word (`version 1.2.3.4`); a `:port` may follow.
fn ipv4(win: &[u8], p: usize) -> Option<usize> {
    if prev(win, p, 1).is_some_and(|b| is_word(b) || b == b'.') || after_version_word(win, p) {
        return None;
    }
    let mut i = p;
    for k in 0..4 {
        if k > 0 {
            if at(win, i) != Some(b'.') {
                return None;
            }
            i += 1;
        }
        let s = i;
        let mut v = 0u32;
        while is_digit(at(win, i)) && i - s < 3 {
            v = v * 10 + u32::from(at(win, i)? - b'0');
            i += 1;
        }
        let len = i - s;
        if len == 0 || v > 255 || (len > 1 && at(win, s) == Some(b'0')) || is_digit(at(win, i)) {
            return None;
        }
    }
    match at(win, i) {
        Some(b) if is_word(b) => None,
        Some(b'.') if is_digit(at(win, i + 1)) => None,
        _ => Some(i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(d: Detector, s: &str) -> Option<String> {
        let set = DetectorSet::none().with(d);
        let b = s.as_bytes();
        let mut p = 0;
        while p < b.len() {
            if let Some(e) = skip(b, p) {
                p = e;
                continue;
            }
            if let Some((_, e)) = find(b, p, set) {
                return Some(s[p..e].to_string());
            }
            p += 1;
        }
        None
    }

    fn hits(d: Detector, cases: &[(&str, Option<&str>)]) {
        for (text, want) in cases {
            assert_eq!(one(d, text).as_deref(), *want, "{d:?} in {text:?}");
        }
    }

    #[test]
    fn luhn_and_mod97() {
        assert!(luhn_ok(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]));
        assert!(!luhn_ok(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]));
        assert!(iban_mod97_ok(b"DE89370400440532013000"));
        assert!(!iban_mod97_ok(b"DE89370400440532013001"));
        assert!(iban_mod97_ok(b"GB82WEST12345698765432"));
    }

    #[test]
    fn credit_cards() {
        hits(
            Detector::CreditCard,
            &[
                ("card 4111 1111 1111 1111 ok", Some("4111 1111 1111 1111")),
                ("4111-1111-1111-1111", Some("4111-1111-1111-1111")),
                ("pan=4111111111111111&x", Some("4111111111111111")),
                ("amex 3782 822463 10005.", Some("3782 822463 10005")),
                ("mc 5555555555554444", Some("5555555555554444")),
                ("mc2 2223003122003222", Some("2223003122003222")),
                ("disc 6011111111111117", Some("6011111111111117")),
                ("diners 30569309025904", Some("30569309025904")),
                ("jcb 3530111333300000", Some("3530111333300000")),
                ("visa13 4222222222222", Some("4222222222222")),
                ("then a year 4111 1111 1111 1111 2024", Some("4111 1111 1111 1111")),
                ("\"4111111111111111\"", Some("4111111111111111")),
                // Luhn fails
                ("4111 1111 1111 1112", None),
                // unknown issuer
                ("1234 5678 9012 3452", None),
                // glued to letters / longer runs / decimals
                ("order4111111111111111", None),
                ("41111111111111112", None),
                ("4111111111111111.50", None),
                ("ORD-4111111111111112-X", None),
                // a valid card number inside a dashed token is still a card number
                ("ORD-4111111111111111-X", Some("4111111111111111")),
                // mixed separators
                ("4111 1111-1111 1111", None),
                // tiny groups, odd groupings are not a card layout
                ("4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1", None),
                ("627-8349179-8446310", None),
                ("41111 11111 111111", None),
                // short last group of a 4-grouped number, Diners 4-6-4 and 4-4-4-2
                ("visa13 4222 2222 2222 2.", Some("4222 2222 2222 2")),
                ("3056 930902 5904", Some("3056 930902 5904")),
                ("3056-9309-0259-04", Some("3056-9309-0259-04")),
                // milliseconds timestamp, unix timestamp
                ("ts 1700000000123", None),
            ],
        );
    }

    #[test]
    fn ssns() {
        hits(
            Detector::Ssn,
            &[
                ("ssn: 123-45-6789.", Some("123-45-6789")),
                ("ssn 123 45 6789", Some("123 45 6789")),
                ("000-12-3456", None),
                ("666-12-3456", None),
                ("900-12-3456", None),
                ("123-00-4567", None),
                ("123-45-0000", None),
                ("078-05-1120", None),
                ("123-45-67890", None),
                ("123-45-6789-1", None),
                ("123-456789", None),
                ("123456789", None),
                ("123-45 6789", None),
                ("x123-45-6789", None),
                ("2024-12-3456", None),
            ],
        );
    }

    #[test]
    fn ibans() {
        hits(
            Detector::Iban,
            &[
                ("IBAN DE89370400440532013000 end", Some("DE89370400440532013000")),
                ("DE89 3704 0044 0532 0130 00", Some("DE89 3704 0044 0532 0130 00")),
                ("gb82 west 1234 5698 7654 32", Some("gb82 west 1234 5698 7654 32")),
                ("FR1420041010050500013M02606", Some("FR1420041010050500013M02606")),
                ("NO9386011117947", Some("NO9386011117947")),
                ("DE89370400440532013001", None),
                ("DE8937040044053201300", None),
                ("DE893704004405320130001", None),
                ("XX89370400440532013000", None),
                ("DE89 37040044 0532 0130 00", None),
                ("ID DE89370400440532013000X", None),
            ],
        );
    }

    #[test]
    fn phones() {
        hits(
            Detector::Phone,
            &[
                ("call +1 415 555 2671 now", Some("+1 415 555 2671")),
                ("+14155552671", Some("+14155552671")),
                ("+1 (415) 555-2671", Some("+1 (415) 555-2671")),
                ("+44 20 7946 0958", Some("+44 20 7946 0958")),
                ("+33 1 23 45 67 89", Some("+33 1 23 45 67 89")),
                ("+49-30-1234567", Some("+49-30-1234567")),
                ("+49(0)30 1234567", Some("+49(0)30 1234567")),
                ("or +34 972 141 241 (ticket 1.2)", Some("+34 972 141 241")),
                ("+34636659657 (x)", Some("+34636659657")),
                ("+1 415 555 2671 1234567890", None),
                ("(415) 555-2671", Some("(415) 555-2671")),
                ("(415)555-2671", Some("(415)555-2671")),
                ("415-555-2671", Some("415-555-2671")),
                ("415.555.2671", Some("415.555.2671")),
                ("415 555 2671", Some("415 555 2671")),
                ("1-800-555-0199", Some("1-800-555-0199")),
                ("415-555-2671x123", Some("415-555-2671")),
                ("001-415-555-2671", Some("001-415-555-2671")),
                ("0044 20 7946 0958", Some("0044 20 7946 0958")),
                ("020 7946 0958", Some("020 7946 0958")),
                ("01 23 45 67 89", Some("01 23 45 67 89")),
                ("07700 900123", Some("07700 900123")),
                // not phones
                ("4155552671", None),
                ("order 12345678901", None),
                ("2024-01-15 10:30:00", None),
                ("1700000000", None),
                ("192.168.100.200", None),
                ("10.0.19041.1", None),
                ("$1,234.56", None),
                ("+1.50", None),
                ("+123", None),
                ("2024-01-15T10:30:00+05:30", None),
                ("115-555-2671", None),
                ("415-155-2671", None),
                ("415-555-26710", None),
                ("415.555-2671", None),
                ("v415-555-2671", None),
                ("123-45-6789", None),
                ("0123 4567", None),
            ],
        );
    }

    #[test]
    fn emails() {
        hits(
            Detector::Email,
            &[
                ("mail john.doe@example.com.", Some("john.doe@example.com")),
                ("<a href=\"mailto:j_d+tag@mail.example.co.uk\">", Some("j_d+tag@mail.example.co.uk")),
                ("x@y.io", Some("x@y.io")),
                ("email=jane@example.org&x", Some("jane@example.org")),
                ("user@xn--bcher-kva.example", Some("user@xn--bcher-kva.example")),
                ("a..b@example.com", None),
                ("john@localhost", None),
                ("john@example.c", None),
                ("john@-example.com", None),
                ("john@example.com_x", None),
                ("@example.com", None),
                ("john.@example.com", None),
                ("user@1.2.3.4", None),
                ("john@example..com", None),
            ],
        );
    }

    #[test]
    fn ipv4s() {
        hits(
            Detector::Ipv4,
            &[
                ("from 192.168.1.10 ok", Some("192.168.1.10")),
                ("10.0.0.1:8080", Some("10.0.0.1")),
                ("255.255.255.255", Some("255.255.255.255")),
                ("0.0.0.0", Some("0.0.0.0")),
                ("256.1.1.1", None),
                ("1.2.3", None),
                ("1.2.3.4.5", None),
                ("v1.2.3.4", None),
                ("01.2.3.4", None),
                ("10.0.19041.1", None),
                ("1.2.3.4a", None),
                ("3.14159", None),
                ("version 1.2.3.4", None),
                ("Build: 10.0.0.1", None),
                ("rev=4.3.2.1", None),
                ("server 10.0.0.1", Some("10.0.0.1")),
                ("subversion 10.0.0.1", Some("10.0.0.1")),
                ("v 1.2.3.4;", None),
            ],
        );
    }

    #[test]
    fn uuids_are_skipped_whole() {
        let s = b"id 123e4567-e89b-12d3-a456-426614174000 x";
        assert_eq!(skip(s, 3), Some(39));
        // an all-digit UUID would otherwise look like numbers
        let s = b"41111111-1111-1111-1111-111111111111";
        assert_eq!(skip(s, 0), Some(36));
        assert_eq!(skip(b"123e4567-e89b-12d3-a456-42661417400", 0), None);
    }

    #[test]
    fn longest_match_wins() {
        let s = b"4111111111111111@example.com";
        assert_eq!(find(s, 0, DetectorSet::all()), Some((Detector::Email, s.len())));
        assert_eq!(whole(b"123-45-6789"), Some(Detector::Ssn));
        assert_eq!(whole(b"123-45-6789 "), None);
    }

    #[test]
    fn detectors_never_read_past_the_lookahead() {
        // A value that ends exactly at the look-ahead limit must be decided the same way
        // whether more text follows or not.
        let local = "a".repeat(64);
        let domain = format!("{}.{}.{}.{}.com", "b".repeat(63), "c".repeat(63), "d".repeat(63), "e".repeat(57));
        let email = format!("{local}@{domain}");
        assert_eq!(email.len(), 64 + 1 + 253);
        assert!(email.len() < LOOKAHEAD);
        assert_eq!(find(email.as_bytes(), 0, DetectorSet::all()), Some((Detector::Email, email.len())));
        let longer = format!("{email}f");
        assert_eq!(find(longer.as_bytes(), 0, DetectorSet::all()), None);
    }
}
