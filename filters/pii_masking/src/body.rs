//! The per-body state machine the glue drives from the body callbacks (host-independent).
//!
//! How Envoy presents a body to a Wasm filter decides the design:
//! * returning `Continue` from a body callback lets that chunk go; the next callback sees
//!   only the next chunk (`body_size` is the chunk's size). Text is streamed this way: each
//!   chunk is replaced in place by its masked form minus the held-back tail.
//! * returning `Pause` (StopIterationAndBuffer) makes Envoy keep the chunk; the next
//!   callback sees everything buffered so far, current chunk included (`body_size` is
//!   cumulative). JSON is buffered this way and masked once at the end, or when it passes
//!   `max_buffer_bytes`.
//! * with trailers, the last body callback does not see `end_of_stream`; the trailers
//!   callback finishes the body instead.

use crate::decide::{Denial, Direction, Outcome};
use crate::json;
use crate::policy::{Overflow, Plan};
use crate::text::{self, Counts, StreamMasker};
use std::sync::Arc;

/// What the glue does with the body callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Let the presented bytes through unchanged.
    Pass,
    /// Keep buffering (return `Pause`).
    Buffer,
    /// Replace the presented bytes with these and continue. `complete`: this is the whole
    /// body (the glue sets `content-length` if the headers were held).
    Replace { bytes: Vec<u8>, complete: bool },
    /// Refuse (a local reply, or a reset when the headers already went out).
    Reject(Denial),
}

#[derive(Debug)]
enum State {
    Text(StreamMasker),
    Json,
    Done,
}

/// Masks one body.
#[derive(Debug)]
pub struct BodyMasker {
    dir: Direction,
    plan: Arc<Plan>,
    state: State,
    counts: Counts,
    json_invalid: bool,
    overflow_passed: bool,
    /// Callbacks seen (for metrics: proves streaming happened in chunks).
    pub chunks: u64,
}

/// The limits that apply while buffering.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_buffer_bytes: usize,
    pub on_overflow: Overflow,
}

impl BodyMasker {
    pub fn text(dir: Direction, plan: Arc<Plan>, overflow_passed: bool) -> Self {
        Self { dir, plan, state: State::Text(StreamMasker::new()), counts: Counts::default(), json_invalid: false, overflow_passed, chunks: 0 }
    }

    pub fn json(dir: Direction, plan: Arc<Plan>) -> Self {
        Self { dir, plan, state: State::Json, counts: Counts::default(), json_invalid: false, overflow_passed: false, chunks: 0 }
    }

    /// One body callback: `size` as the host reports it, `read` fetches those bytes.
    pub fn on_body(&mut self, size: usize, end: bool, limits: Limits, read: impl FnOnce() -> Option<Vec<u8>>) -> Step {
        self.chunks += 1;
        match &mut self.state {
            State::Done => Step::Pass,
            State::Text(sm) => {
                if size == 0 && !end {
                    return Step::Pass;
                }
                let Some(chunk) = read() else { return self.fail() };
                let bytes = sm.push(&chunk, end, &self.plan, &mut self.counts);
                if end {
                    self.state = State::Done;
                }
                Step::Replace { bytes, complete: false }
            }
            State::Json => {
                if size > limits.max_buffer_bytes {
                    return match limits.on_overflow {
                        Overflow::Reject => {
                            self.state = State::Done;
                            Step::Reject(Denial::TooLarge(self.dir))
                        }
                        Overflow::Pass => {
                            // Field-aware masking is given up; the detectors still run.
                            self.overflow_passed = true;
                            let Some(all) = read() else { return self.fail() };
                            let mut sm = StreamMasker::new();
                            let bytes = sm.push(&all, end, &self.plan, &mut self.counts);
                            self.state = if end { State::Done } else { State::Text(sm) };
                            Step::Replace { bytes, complete: false }
                        }
                    };
                }
                if !end {
                    return Step::Buffer;
                }
                self.finish_json(read)
            }
        }
    }

    /// Trailers arrived: the body callbacks never saw `end_of_stream`.
    pub fn on_trailers(&mut self, read: impl FnOnce() -> Option<Vec<u8>>) -> Step {
        match &self.state {
            State::Done => Step::Pass,
            // Still buffered in the host: mask it now.
            State::Json => self.finish_json(read),
            State::Text(sm) => {
                if sm.held() == 0 {
                    self.state = State::Done;
                    return Step::Pass;
                }
                // The held-back tail can no longer be written before the trailers.
                self.fail()
            }
        }
    }

    fn finish_json(&mut self, read: impl FnOnce() -> Option<Vec<u8>>) -> Step {
        let Some(all) = read() else { return self.fail() };
        self.state = State::Done;
        let bytes = match json::mask(&all, &self.plan, &mut self.counts) {
            Some(out) => out,
            None => {
                self.json_invalid = true;
                text::mask(&all, &self.plan, &mut self.counts)
            }
        };
        Step::Replace { bytes, complete: true }
    }

    fn fail(&mut self) -> Step {
        self.state = State::Done;
        Step::Reject(Denial::Failed(self.dir))
    }

    /// What was masked so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// The outcomes of a finished body.
    pub fn outcomes(&self) -> Vec<Outcome> {
        let mut v = vec![if self.counts.total() > 0 { Outcome::Masked } else { Outcome::Clean }];
        if self.json_invalid {
            v.push(Outcome::JsonInvalid);
        }
        if self.overflow_passed {
            v.push(Outcome::OverflowPassed);
        }
        v
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::DetectorSet;
    use crate::policy::{field_key, Field, Mode};

    fn plan() -> Arc<Plan> {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert(field_key("password"), Field { label: "password".into(), mode: Mode::Remove });
        Arc::new(Plan { detectors: DetectorSet::all(), modes: [Mode::Partial; 6], fields, key: None })
    }

    const LIMITS: Limits = Limits { max_buffer_bytes: 64, on_overflow: Overflow::Reject };

    /// Simulates Envoy: with Continue each callback sees one chunk; after Pause the buffer
    /// keeps growing and each callback sees all of it.
    fn drive(m: &mut BodyMasker, chunks: &[&[u8]], limits: Limits) -> (Vec<u8>, Option<Denial>) {
        let mut delivered = Vec::new();
        let mut buffered: Vec<u8> = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let end = i + 1 == chunks.len();
            buffered.extend_from_slice(c);
            let presented = buffered.clone();
            match m.on_body(presented.len(), end, limits, || Some(presented.clone())) {
                Step::Pass => delivered.append(&mut buffered),
                Step::Buffer => {}
                Step::Replace { bytes, .. } => {
                    delivered.extend(bytes);
                    buffered.clear();
                }
                Step::Reject(d) => return (delivered, Some(d)),
            }
        }
        (delivered, None)
    }

    #[test]
    fn text_streams_and_matches_whole() {
        let mut m = BodyMasker::text(Direction::Response, plan(), false);
        let (out, err) = drive(&mut m, &[b"mail jo", b"hn@exam", b"ple.com now", b""], LIMITS);
        assert_eq!(err, None);
        assert_eq!(String::from_utf8(out).unwrap(), "mail j***@example.com now");
        assert_eq!(m.outcomes(), vec![Outcome::Masked]);
        assert!(m.is_done());
    }

    #[test]
    fn json_buffers_then_masks_whole() {
        let mut m = BodyMasker::json(Direction::Response, plan());
        let (out, err) = drive(&mut m, &[br#"{"password":"x","#, br#""e":"a@b.co"}"#], LIMITS);
        assert_eq!(err, None);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"e":"a***@b.co"}"#);
        assert_eq!(m.counts().fields, 1);
    }

    #[test]
    fn json_overflow_rejects_or_degrades_to_streaming() {
        let big: Vec<u8> = format!("{{\"password\":\"x\",\"e\":\"{}a@b.co\"}}", " ".repeat(100)).into_bytes();
        let (first, rest) = big.split_at(40);
        let mut m = BodyMasker::json(Direction::Response, plan());
        let (_, err) = drive(&mut m, &[first, rest], LIMITS);
        assert_eq!(err, Some(Denial::TooLarge(Direction::Response)));

        let pass = Limits { on_overflow: Overflow::Pass, ..LIMITS };
        let (a, b) = rest.split_at(30);
        let mut m = BodyMasker::json(Direction::Response, plan());
        let (out, err) = drive(&mut m, &[first, a, b], pass);
        assert_eq!(err, None);
        let s = String::from_utf8(out).unwrap();
        assert!(s.ends_with("a***@b.co\"}"), "{s}");
        assert!(s.contains("password"), "field rules are given up past the limit");
        assert_eq!(m.outcomes(), vec![Outcome::Masked, Outcome::OverflowPassed]);
    }

    #[test]
    fn invalid_json_is_masked_as_text() {
        let mut m = BodyMasker::json(Direction::Response, plan());
        let (out, _) = drive(&mut m, &[b"not json: a@b.co"], LIMITS);
        assert_eq!(out, b"not json: a***@b.co");
        assert_eq!(m.outcomes(), vec![Outcome::Masked, Outcome::JsonInvalid]);
    }

    #[test]
    fn trailers_finish_json_and_refuse_a_lost_tail() {
        let mut m = BodyMasker::json(Direction::Response, plan());
        assert_eq!(m.on_body(8, false, LIMITS, || Some(br#"["a@b.co"#.to_vec())), Step::Buffer);
        let step = m.on_trailers(|| Some(br#"["a@b.co"]"#.to_vec()));
        assert_eq!(step, Step::Replace { bytes: br#"["a***@b.co"]"#.to_vec(), complete: true });

        let mut m = BodyMasker::text(Direction::Response, plan(), false);
        let _ = m.on_body(5, false, LIMITS, || Some(b"hello".to_vec()));
        assert_eq!(m.on_trailers(|| None), Step::Reject(Denial::Failed(Direction::Response)));

        let mut m = BodyMasker::text(Direction::Response, plan(), false);
        assert_eq!(m.on_trailers(|| None), Step::Pass);
    }

    #[test]
    fn unreadable_bodies_fail_closed() {
        let mut m = BodyMasker::text(Direction::Request, plan(), false);
        assert_eq!(m.on_body(3, false, LIMITS, || None), Step::Reject(Denial::Failed(Direction::Request)));
        let mut m = BodyMasker::json(Direction::Response, plan());
        assert_eq!(m.on_body(3, true, LIMITS, || None), Step::Reject(Denial::Failed(Direction::Response)));
    }
}
