//! Masking text by value, whole or as a stream of chunks.
//!
//! The scanner walks the text left to right; at each position that can start a value it
//! asks the detectors (longest match wins) and either copies the byte or writes the masked
//! form and jumps past the value. A decision at position `p` reads at most
//! [`LOOKAHEAD`] bytes after `p` and [`LEFT_CONTEXT`] before it, so the stream masker decides
//! every position that has `LOOKAHEAD` bytes after it, emits the result, and holds back only
//! the undecided tail (plus [`LEFT_CONTEXT`] bytes of context, and where the last masked value
//! ended in it: a masked value is no context for what follows). Splitting a body at any points therefore
//! gives exactly the output of masking it whole (property-tested below), and a match that
//! spans a chunk boundary is caught. Output is never cut inside a UTF-8 character.

use crate::detect::{self, Detector, DetectorSet, LEFT_CONTEXT, LOOKAHEAD};
use crate::mask;
use crate::policy::Plan;

/// What was masked (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Values masked per detector, indexed by [`Detector::index`].
    pub detected: [u64; 6],
    /// JSON members masked or removed because of their name.
    pub fields: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.detected.iter().sum::<u64>() + self.fields
    }
    pub fn of(&self, d: Detector) -> u64 {
        self.detected.get(d.index()).copied().unwrap_or(0)
    }
    pub fn add(&mut self, other: &Counts) {
        for (a, b) in self.detected.iter_mut().zip(other.detected) {
            *a += b;
        }
        self.fields += other.fields;
    }
    fn hit(&mut self, d: Detector) {
        if let Some(c) = self.detected.get_mut(d.index()) {
            *c += 1;
        }
    }
}

/// Walk `buf[from..limit)` (`buf[..from]` is left context) and report every value found,
/// leftmost first, longest at a position, never overlapping. `floor` is where the last
/// value found ended (`<= from`; 0 when none): a value is opaque to what follows it, so
/// positions after it see no context before `floor`. The output replaces the value, so a
/// detector must not decide on bytes the output will not contain; otherwise a neighbour
/// that was "glued" to a value (`5500+55555…`) comes out free-standing after masking and is
/// still detectable there. Returns where the walk stopped (`>= limit` unless
/// `from > limit`) and the new floor.
fn walk(buf: &[u8], from: usize, floor: usize, limit: usize, detectors: DetectorSet, mut on_match: impl FnMut(Detector, usize, usize)) -> (usize, usize) {
    let mut p = from;
    let mut floor = floor.min(from);
    if detectors.is_empty() {
        return (limit.max(from), floor);
    }
    while p < limit {
        let b = buf.get(p).copied().unwrap_or(0);
        if !detect::is_trigger(b) || (p > floor && p.checked_sub(1).and_then(|i| buf.get(i)).is_some_and(u8::is_ascii_alphanumeric)) {
            p += 1;
            continue;
        }
        // The detectors' view: from the floor to the look-ahead limit, `p` rebased on it.
        let win = buf.get(floor..(p + LOOKAHEAD).min(buf.len())).unwrap_or_default();
        let at = p.saturating_sub(floor);
        if let Some(end) = detect::skip(win, at) {
            p = floor + end;
            continue;
        }
        if let Some((d, end)) = detect::find(win, at, detectors) {
            let end = floor + end;
            on_match(d, p, end);
            p = end;
            floor = end;
            continue;
        }
        p += 1;
    }
    (p, floor)
}

/// Scan `buf[from..]` (`buf[..from]` is left context already emitted, in which the last
/// value masked ended at `floor`). Unless `last`, stop at the first position without
/// `LOOKAHEAD` bytes after it. Appends the output to `out` and returns how far the input was
/// consumed (always a UTF-8 character boundary when the input is UTF-8) and the new floor.
fn scan(buf: &[u8], from: usize, floor: usize, last: bool, plan: &Plan, out: &mut Vec<u8>, counts: &mut Counts) -> (usize, usize) {
    let limit = if last { buf.len() } else { buf.len().saturating_sub(LOOKAHEAD) };
    let mut copied = from;
    let (p, floor) = walk(buf, from, floor, limit, plan.detectors, |d, start, end| {
        out.extend_from_slice(buf.get(copied..start).unwrap_or_default());
        mask::write_masked(d, plan.mode(d), buf.get(start..end).unwrap_or_default(), plan.key.as_deref(), out);
        counts.hit(d);
        copied = end;
    });
    let end = if last { buf.len() } else { char_boundary(buf, p.max(copied), copied) };
    out.extend_from_slice(buf.get(copied..end).unwrap_or_default());
    (end, floor)
}

/// Every value the detectors find in a whole text, as `(detector, start, end)` byte ranges
/// (what [`mask`] would replace). Used to measure recall and precision.
pub fn spans(input: &[u8], detectors: DetectorSet) -> Vec<(Detector, usize, usize)> {
    let mut v = Vec::new();
    walk(input, 0, 0, input.len(), detectors, |d, s, e| v.push((d, s, e)));
    v
}

/// The largest UTF-8 character boundary `<= p` and `>= floor`.
fn char_boundary(buf: &[u8], mut p: usize, floor: usize) -> usize {
    while p > floor && buf.get(p).is_some_and(|b| b & 0xC0 == 0x80) {
        p -= 1;
    }
    p
}

/// Mask a whole text.
pub fn mask(input: &[u8], plan: &Plan, counts: &mut Counts) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 16);
    scan(input, 0, 0, true, plan, &mut out, counts);
    out
}

/// Mask a whole text; `None` when nothing was found (the caller keeps the original, and
/// nothing is allocated: the common case for JSON strings).
pub fn mask_if_any(input: &[u8], plan: &Plan, counts: &mut Counts) -> Option<Vec<u8>> {
    let mut found: Vec<(Detector, usize, usize)> = Vec::new();
    walk(input, 0, 0, input.len(), plan.detectors, |d, s, e| found.push((d, s, e)));
    if found.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(input.len() + 16 * found.len());
    let mut copied = 0;
    for (d, start, end) in found {
        out.extend_from_slice(input.get(copied..start).unwrap_or_default());
        mask::write_masked(d, plan.mode(d), input.get(start..end).unwrap_or_default(), plan.key.as_deref(), &mut out);
        counts.hit(d);
        copied = end;
    }
    out.extend_from_slice(input.get(copied..).unwrap_or_default());
    Some(out)
}

/// Masks a body chunk by chunk, holding back only the undecided tail.
#[derive(Debug, Default)]
pub struct StreamMasker {
    /// Left context (`ctx` bytes, already emitted) followed by input not yet emitted.
    pending: Vec<u8>,
    ctx: usize,
    /// Where the last masked value ended in `pending` (0: not inside the kept context).
    floor: usize,
}

impl StreamMasker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed the next chunk; returns the masked bytes that can go out now. With `last`, the
    /// held-back tail is flushed too.
    pub fn push(&mut self, chunk: &[u8], last: bool, plan: &Plan, counts: &mut Counts) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len() + chunk.len() / 16);
        if self.pending.is_empty() {
            // First chunk: scan it in place, keep only its tail.
            let (q, floor) = scan(chunk, 0, 0, last, plan, &mut out, counts);
            self.keep(chunk, q, floor);
            return out;
        }
        self.pending.extend_from_slice(chunk);
        let pending = std::mem::take(&mut self.pending);
        let (q, floor) = scan(&pending, self.ctx, self.floor, last, plan, &mut out, counts);
        self.keep(&pending, q, floor);
        out
    }

    fn keep(&mut self, buf: &[u8], q: usize, floor: usize) {
        let from = q.saturating_sub(LEFT_CONTEXT);
        let mut rest = Vec::with_capacity(buf.len().saturating_sub(from) + LOOKAHEAD);
        rest.extend_from_slice(buf.get(from..).unwrap_or_default());
        self.pending = rest;
        self.ctx = q - from;
        // A value that ended before the kept context no longer hides anything from it.
        self.floor = floor.saturating_sub(from);
    }

    /// Input bytes received but not yet emitted.
    pub fn held(&self) -> usize {
        self.pending.len().saturating_sub(self.ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Mode;

    pub(crate) fn plan(mode: Mode) -> Plan {
        Plan { detectors: DetectorSet::all(), modes: [mode; 6], fields: Default::default(), key: None }
    }

    fn m(s: &str) -> String {
        String::from_utf8(mask(s.as_bytes(), &plan(Mode::Partial), &mut Counts::default())).unwrap()
    }

    #[test]
    fn masks_every_detector_in_text() {
        let input = "Card 4111 1111 1111 1111, SSN 123-45-6789, IBAN DE89 3704 0044 0532 0130 00, \
                     call +1 415 555 2671 or (415) 555-2671, mail john.doe@example.com from 192.168.1.10.";
        let mut c = Counts::default();
        let out = String::from_utf8(mask(input.as_bytes(), &plan(Mode::Partial), &mut c)).unwrap();
        assert_eq!(
            out,
            "Card **** **** **** 1111, SSN ***-**-6789, IBAN **** **** **** **** **30 00, \
             call +* *** *** 2671 or (***) ***-2671, mail j***@example.com from 192.168.*.*."
        );
        assert_eq!(c.detected, [1, 1, 1, 2, 1, 1]);
    }

    #[test]
    fn look_alikes_stay() {
        let text = "order 4111111111111112 ts 1700000000123 id 123e4567-e89b-12d3-a456-426614174000 \
                    price $1,234.56 v1.2.3 version 10.0.19041.1 date 2024-01-15T10:30:00Z \
                    uuid 41111111-1111-1111-1111-111111111111 ref ORD-2024-000123 n=4155552671";
        assert_eq!(m(text), text);
    }

    /// Fuzz crash `pii_stream/crash-d40a17f2d0aef45d7b0ff643a3ca49828f2032b3` (kept in
    /// fuzz/corpus/pii_stream/): `+309999.00.5500+555555555`. The first phone ends before the
    /// `+`; the second was not a phone because its `+` was glued to the digit before it. Once
    /// the first was replaced by `[REDACTED:phone]`, the `+` followed `]` and the masked body
    /// still contained a detectable phone. A masked value is now opaque to what follows it.
    #[test]
    fn fuzz_crash_d40a17f2_value_right_after_a_masked_value() {
        let input: &[u8] = b"%555u\x01\xf9\xd8\n\n+309999.00.5500+555555555\xf5\xce\xcf(g1";
        let p = plan(Mode::Redact);
        let whole = mask(input, &p, &mut Counts::default());
        assert_eq!(whole, b"%555u\x01\xf9\xd8\n\n[REDACTED:phone][REDACTED:phone]\xf5\xce\xcf(g1");
        assert_eq!(spans(&whole, p.detectors), []);
        for a in 0..=input.len() {
            assert_eq!(stream(input, &[a], &p).0, whole, "split at {a}");
        }
        // The same in every mode: the decision does not depend on how the first is masked.
        let partial = mask(b"+309999.00.5500+555555555", &plan(Mode::Partial), &mut Counts::default());
        assert_eq!(String::from_utf8_lossy(&partial), "+******.**.5500+*****5555");
    }

    /// Neighbours of a masked value are judged as the masked output shows them, and runs
    /// that a reader crosses hold one value or none: the masked text never contains a value.
    #[test]
    fn neighbours_of_a_masked_value_are_decided_without_it() {
        let p = plan(Mode::Redact);
        for (input, want) in [
            ("10.0.0.1:4111111111111111", "[REDACTED:ipv4]:[REDACTED:credit_card]"),
            // A version word inside a masked e-mail does not shield the next address.
            ("a@b.rev 10.0.0.1", "[REDACTED:email] [REDACTED:ipv4]"),
            // Unchanged where the glue is real text: `x` + `1.` before the address.
            ("x1.10.0.0.1", "x1.10.0.0.1"),
            // A phone number ends where a card starts; both are masked.
            ("020 7946 0958 4111 1111 1111 1111", "[REDACTED:phone] [REDACTED:credit_card]"),
            ("+1 415 555 2671 (4111111111111111)", "[REDACTED:phone] ([REDACTED:credit_card])"),
            // One run of digit groups too long for a phone holds no phone (before the fix its
            // tail was masked and its head `0044 0532 0130` became a phone).
            ("0044 0532 0130 00 415 555 2671", "0044 0532 0130 00 415 555 2671"),
            ("020 7946 0958 020 7946 0958", "020 7946 0958 020 7946 0958"),
            // A dotted name holds no value (else `x@y.io.[…]` would be an e-mail).
            ("x@y.io.4111111111111111", "x@y.io.4111111111111111"),
            // A number continued by `:` and digits is no e-mail's start.
            ("+123-45-678910.0.0.1:80804111x@y.io", "+123-45-678910.0.0.1:80804111x@y.io"),
        ] {
            let whole = mask(input.as_bytes(), &p, &mut Counts::default());
            assert_eq!(String::from_utf8_lossy(&whole), want, "{input}");
            assert_eq!(spans(&whole, p.detectors), [], "{input}");
            for a in 0..=input.len() {
                assert_eq!(stream(input.as_bytes(), &[a], &p).0, whole, "{input} split at {a}");
            }
        }
    }

    #[test]
    fn redact_mode() {
        let s = String::from_utf8(mask(b"a@b.co and 123-45-6789", &plan(Mode::Redact), &mut Counts::default())).unwrap();
        assert_eq!(s, "[REDACTED:email] and [REDACTED:ssn]");
    }

    /// A tiny deterministic PRNG (xorshift) so the property test needs no extra crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    const PIECES: &[&str] = &[
        "4111 1111 1111 1111", "4111-1111-1111-1111", "5555555555554444", "378282246310005", "123-45-6789",
        "DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "+1 (415) 555-2671", "415.555.2671", "020 7946 0958",
        "jane.doe+tag@mail.example.co.uk", "x@y.io", "10.0.0.1:8080", "255.255.255.255", "123e4567-e89b-12d3-a456-426614174000",
        "4111111111111112", "1700000000123", "v1.2.3.4", " ", "  ", "\n", ", ", ".", "-", "+", "(", "@", "0", "7", "a", "Z",
        "é", "日本語", "🙂", "\"", "x", "ORD-", "tel:", "mailto:", "1.", "2024-01-15", "$12.50", "version ", "build: ",
        "1.2.3.4", "rev=",
    ];

    fn corpus(rng: &mut Rng, n: usize) -> Vec<u8> {
        let mut s = String::new();
        for _ in 0..n {
            s.push_str(PIECES[rng.below(PIECES.len())]);
        }
        s.into_bytes()
    }

    fn stream(input: &[u8], cuts: &[usize], p: &Plan) -> (Vec<u8>, Counts) {
        let mut sm = StreamMasker::new();
        let mut c = Counts::default();
        let mut out = Vec::new();
        let mut prev = 0;
        for &cut in cuts {
            let piece = sm.push(&input[prev..cut], false, p, &mut c);
            assert!(std::str::from_utf8(&piece).is_ok(), "a piece was cut inside a character");
            out.extend(piece);
            prev = cut;
        }
        out.extend(sm.push(&input[prev..], true, p, &mut c));
        (out, c)
    }

    #[test]
    fn property_split_anywhere_equals_whole() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for mode in [Mode::Partial, Mode::Redact] {
            let p = plan(mode);
            for round in 0..300 {
                let n = 5 + rng.below(200);
                let input = corpus(&mut rng, n);
                let mut whole_counts = Counts::default();
                let whole = mask(&input, &p, &mut whole_counts);
                let k = rng.below(12);
                let mut cuts: Vec<usize> = (0..k).map(|_| rng.below(input.len() + 1)).collect();
                if round % 3 == 0 {
                    // many tiny chunks, including empty ones
                    let step = 1 + rng.below(7);
                    cuts.extend((0..input.len()).step_by(step));
                }
                cuts.sort_unstable();
                let (streamed, counts) = stream(&input, &cuts, &p);
                assert_eq!(String::from_utf8_lossy(&streamed), String::from_utf8_lossy(&whole), "cuts {cuts:?}");
                assert_eq!(counts, whole_counts);
                if mode == Mode::Redact {
                    // Redaction tokens keep nothing of the value: nothing detectable is left.
                    let left = spans(&whole, p.detectors);
                    let show = |v: &[u8], s: usize, e: usize| String::from_utf8_lossy(&v[s.saturating_sub(40)..(e + 40).min(v.len())]).into_owned();
                    assert!(left.is_empty(), "{left:?} {:?} in {:?}", left.first().map(|&(_, s, e)| show(&whole, s, e)), String::from_utf8_lossy(&input));
                }
            }
        }
    }

    #[test]
    fn every_single_split_point_of_a_dense_text() {
        let input = "x 4111 1111 1111 1111 y john@example.com z +44 20 7946 0958 w DE89370400440532013000 é 123-45-6789 10.1.2.3".as_bytes();
        let p = plan(Mode::Partial);
        let whole = mask(input, &p, &mut Counts::default());
        for a in 0..=input.len() {
            if std::str::from_utf8(&input[..a]).is_err() {
                // cut inside é: still must work, the piece check is on output only
            }
            let (s, _) = stream(input, &[a], &p);
            assert_eq!(s, whole, "split at {a}");
            for b in (a..=input.len()).step_by(5) {
                let (s, _) = stream(input, &[a, b], &p);
                assert_eq!(s, whole, "split at {a},{b}");
            }
        }
    }

    #[test]
    fn holds_back_only_a_bounded_tail() {
        let p = plan(Mode::Partial);
        let mut sm = StreamMasker::new();
        let mut c = Counts::default();
        let big = vec![b'a'; 100_000];
        let out = sm.push(&big, false, &p, &mut c);
        assert!(sm.held() <= LOOKAHEAD, "held {}", sm.held());
        assert_eq!(out.len() + sm.held(), big.len());
        let out2 = sm.push(b"", true, &p, &mut c);
        assert_eq!(out.len() + out2.len(), big.len());
    }

    #[test]
    fn match_split_across_chunks_is_masked() {
        let p = plan(Mode::Partial);
        let mut sm = StreamMasker::new();
        let mut c = Counts::default();
        let mut out = sm.push(b"pay with 4111 1111 ", false, &p, &mut c);
        out.extend(sm.push(b"1111 1111 today", false, &p, &mut c));
        out.extend(sm.push(b"", true, &p, &mut c));
        assert_eq!(String::from_utf8(out).unwrap(), "pay with **** **** **** 1111 today");
    }
}
