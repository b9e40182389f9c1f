//! One request through the member streams: the order, where the request stopped, and the
//! body bytes Envoy holds for us. No host calls here (the glue makes them), so the
//! ordering rules are unit-tested with fake members.
//!
//! Request callbacks go to the members in request order and stop at the first `Pause`
//! (that member sent a local reply, or waits for a callout and will resume later).
//! Response callbacks go to every member in reverse order, as Envoy runs encoders, so
//! header_hardening sees the headers rate_limit added and every local reply of the chain.

use proxy_wasm::traits::HttpContext;
use proxy_wasm::types::Action;

/// The request and response callbacks of one member stream.
pub trait Member {
    fn request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action;
    fn request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action;
    fn request_trailers(&mut self, num_trailers: usize) -> Action;
    fn response_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action;
    fn response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action;
    fn response_trailers(&mut self, num_trailers: usize) -> Action;
}

/// A member's own proxy-wasm stream context.
impl Member for Box<dyn HttpContext> {
    fn request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        self.on_http_request_headers(num_headers, end_of_stream)
    }
    fn request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_http_request_body(body_size, end_of_stream)
    }
    fn request_trailers(&mut self, num_trailers: usize) -> Action {
        self.on_http_request_trailers(num_trailers)
    }
    fn response_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        self.on_http_response_headers(num_headers, end_of_stream)
    }
    fn response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_http_response_body(body_size, end_of_stream)
    }
    fn response_trailers(&mut self, num_trailers: usize) -> Action {
        self.on_http_response_trailers(num_trailers)
    }
}

pub struct Chain<M: Member = Box<dyn HttpContext>> {
    members: Vec<M>,
    /// The first member that has not let the request headers through (`len()`: all did).
    next: usize,
    /// The arguments of the request-headers callback, for members run after a resume.
    num_headers: usize,
    end_of_stream: bool,
    /// Body bytes Envoy buffers for us because our last body callback paused: its next body
    /// callback reports them again (go-sdk #414), the members are given only the new bytes.
    buffered: usize,
}

impl<M: Member> Chain<M> {
    pub fn new(members: Vec<M>) -> Self {
        Self { members, next: 0, num_headers: 0, end_of_stream: false, buffered: 0 }
    }

    /// True once every member let the request headers through.
    pub fn passed(&self) -> bool {
        self.next >= self.members.len()
    }

    /// The request headers arrived: run the members from the first one.
    pub fn request_headers(&mut self, num_headers: usize, end_of_stream: bool, resumed: &dyn Fn() -> bool) -> Action {
        self.num_headers = num_headers;
        self.end_of_stream = end_of_stream;
        self.next = 0;
        self.run(resumed)
    }

    /// The member that paused resumed the request: run the members after it. `Continue`:
    /// every member passed, the caller resumes the request in Envoy.
    pub fn resume(&mut self, resumed: &dyn Fn() -> bool) -> Action {
        if self.passed() {
            return Action::Pause; // nothing paused: a stray resume changes nothing
        }
        // Envoy passes what it buffered on; later body callbacks report new bytes only.
        self.buffered = 0;
        self.next += 1;
        self.run(resumed)
    }

    /// `resumed()` reports (and clears) a resume a member asked for during its callback.
    fn run(&mut self, resumed: &dyn Fn() -> bool) -> Action {
        while let Some(m) = self.members.get_mut(self.next) {
            let action = m.request_headers(self.num_headers, self.end_of_stream);
            let resumed_now = resumed();
            if action != Action::Continue && !resumed_now {
                return Action::Pause;
            }
            self.next += 1;
        }
        Action::Continue
    }

    /// The members that have seen the request headers and wait for nothing else (every
    /// member before `next`) plus the one that paused: body and trailers go to them in order.
    fn reached(&mut self) -> impl Iterator<Item = &mut M> {
        let n = self.next.saturating_add(1);
        self.members.iter_mut().take(n)
    }

    pub fn request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let fresh = body_size.saturating_sub(self.buffered);
        let mut action = Action::Continue;
        for m in self.reached() {
            if m.request_body(fresh, end_of_stream) != Action::Continue {
                action = Action::Pause;
                break;
            }
        }
        if !self.passed() {
            action = Action::Pause; // a returned Continue would resume the whole request
        }
        self.buffered = if action == Action::Continue { 0 } else { body_size };
        action
    }

    pub fn request_trailers(&mut self, num_trailers: usize) -> Action {
        let mut action = Action::Continue;
        for m in self.reached() {
            if m.request_trailers(num_trailers) != Action::Continue {
                action = Action::Pause;
                break;
            }
        }
        if self.passed() {
            action
        } else {
            Action::Pause
        }
    }

    pub fn response_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        each_reversed(&mut self.members, |m| m.response_headers(num_headers, end_of_stream))
    }

    pub fn response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        each_reversed(&mut self.members, |m| m.response_body(body_size, end_of_stream))
    }

    pub fn response_trailers(&mut self, num_trailers: usize) -> Action {
        each_reversed(&mut self.members, |m| m.response_trailers(num_trailers))
    }

    /// Callbacks every member gets (outgoing call replies are matched by token inside it).
    pub fn each(&mut self, f: impl FnMut(&mut M)) {
        self.members.iter_mut().for_each(f);
    }
}

fn each_reversed<M>(members: &mut [M], mut f: impl FnMut(&mut M) -> Action) -> Action {
    for m in members.iter_mut().rev() {
        if f(m) != Action::Continue {
            return Action::Pause;
        }
    }
    Action::Continue
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    type Log = Rc<RefCell<Vec<String>>>;

    /// A member that records its callbacks and answers as scripted.
    struct Fake {
        name: &'static str,
        log: Log,
        headers: Action,
        body: Action,
        /// Calls "resume" from inside its request-headers callback.
        resume_inline: Option<Rc<Cell<bool>>>,
    }

    impl Member for Fake {
        fn request_headers(&mut self, n: usize, eos: bool) -> Action {
            self.log.borrow_mut().push(format!("{}:req:{n}:{eos}", self.name));
            if let Some(flag) = &self.resume_inline {
                flag.set(true);
            }
            self.headers
        }
        fn request_body(&mut self, size: usize, _eos: bool) -> Action {
            self.log.borrow_mut().push(format!("{}:body:{size}", self.name));
            self.body
        }
        fn request_trailers(&mut self, _n: usize) -> Action {
            self.log.borrow_mut().push(format!("{}:trailers", self.name));
            Action::Continue
        }
        fn response_headers(&mut self, _n: usize, _eos: bool) -> Action {
            self.log.borrow_mut().push(format!("{}:resp", self.name));
            Action::Continue
        }
        fn response_body(&mut self, _size: usize, _eos: bool) -> Action {
            Action::Continue
        }
        fn response_trailers(&mut self, _n: usize) -> Action {
            Action::Continue
        }
    }

    fn fake(name: &'static str, log: &Log, headers: Action) -> Fake {
        Fake { name, log: log.clone(), headers, body: Action::Continue, resume_inline: None }
    }

    fn never() -> impl Fn() -> bool {
        || false
    }

    fn take(log: &Log) -> Vec<String> {
        std::mem::take(&mut *log.borrow_mut())
    }

    #[test]
    fn all_continue_runs_every_member_in_order() {
        let log = Log::default();
        let mut c = Chain::new(vec![fake("a", &log, Action::Continue), fake("b", &log, Action::Continue), fake("c", &log, Action::Continue)]);
        assert_eq!(c.request_headers(7, true, &never()), Action::Continue);
        assert!(c.passed());
        assert_eq!(take(&log), ["a:req:7:true", "b:req:7:true", "c:req:7:true"]);
        assert_eq!(c.response_headers(3, false), Action::Continue);
        assert_eq!(take(&log), ["c:resp", "b:resp", "a:resp"], "responses in reverse, like Envoy's encoders");
    }

    #[test]
    fn a_pause_stops_the_later_members() {
        let log = Log::default();
        let mut c = Chain::new(vec![fake("a", &log, Action::Continue), fake("b", &log, Action::Pause), fake("c", &log, Action::Continue)]);
        assert_eq!(c.request_headers(1, false, &never()), Action::Pause);
        assert!(!c.passed());
        assert_eq!(take(&log), ["a:req:1:false", "b:req:1:false"]);
        // A local reply still passes every member's response hook (header_hardening hardens it).
        c.response_headers(1, false);
        assert_eq!(take(&log), ["c:resp", "b:resp", "a:resp"]);
    }

    #[test]
    fn a_resume_runs_the_members_after_the_one_that_paused() {
        let log = Log::default();
        let mut c = Chain::new(vec![fake("a", &log, Action::Pause), fake("b", &log, Action::Continue), fake("c", &log, Action::Continue)]);
        assert_eq!(c.request_headers(2, false, &never()), Action::Pause);
        take(&log);
        assert_eq!(c.resume(&never()), Action::Continue);
        assert_eq!(take(&log), ["b:req:2:false", "c:req:2:false"], "later members get the original arguments");
        // A second (stray) resume runs nothing twice.
        assert_eq!(c.resume(&never()), Action::Pause);
        assert!(take(&log).is_empty());
    }

    #[test]
    fn a_resume_can_stop_at_a_later_pause() {
        let log = Log::default();
        let mut c = Chain::new(vec![fake("a", &log, Action::Pause), fake("b", &log, Action::Pause), fake("c", &log, Action::Continue)]);
        c.request_headers(0, true, &never());
        assert_eq!(c.resume(&never()), Action::Pause);
        assert_eq!(c.resume(&never()), Action::Continue);
        assert_eq!(take(&log), ["a:req:0:true", "b:req:0:true", "c:req:0:true"]);
    }

    #[test]
    fn a_resume_asked_inside_the_callback_counts_as_continue() {
        let log = Log::default();
        let flag = Rc::new(Cell::new(false));
        let a = Fake { name: "a", log: log.clone(), headers: Action::Pause, body: Action::Continue, resume_inline: Some(flag.clone()) };
        let mut c = Chain::new(vec![a, fake("b", &log, Action::Continue)]);
        let f = flag.clone();
        assert_eq!(c.request_headers(0, true, &move || f.replace(false)), Action::Continue);
        assert_eq!(take(&log), ["a:req:0:true", "b:req:0:true"]);
    }

    #[test]
    fn body_goes_to_the_reached_members_and_holds_until_all_passed() {
        let log = Log::default();
        let mut c = Chain::new(vec![fake("a", &log, Action::Continue), fake("b", &log, Action::Pause), fake("c", &log, Action::Continue)]);
        c.request_headers(1, false, &never());
        take(&log);
        // b is waiting: a (passed) and b (paused) see the body, c does not; the chain holds it.
        assert_eq!(c.request_body(100, false), Action::Pause);
        assert_eq!(take(&log), ["a:body:100", "b:body:100"]);
        // Envoy buffered the first 100 bytes and reports 250 in total: members get the new 150.
        assert_eq!(c.request_body(250, false), Action::Pause);
        assert_eq!(take(&log), ["a:body:150", "b:body:150"]);
        assert_eq!(c.request_trailers(1), Action::Pause);
        assert_eq!(take(&log), ["a:trailers", "b:trailers"]);
        // b resumes: c runs, Envoy flushes the buffer; the next chunk is new bytes only.
        assert_eq!(c.resume(&never()), Action::Continue);
        take(&log);
        assert_eq!(c.request_body(40, true), Action::Continue);
        assert_eq!(take(&log), ["a:body:40", "b:body:40", "c:body:40"]);
    }

    #[test]
    fn a_body_pause_stops_at_that_member() {
        let log = Log::default();
        let a = Fake { name: "a", log: log.clone(), headers: Action::Continue, body: Action::Pause, resume_inline: None };
        let mut c = Chain::new(vec![a, fake("b", &log, Action::Continue)]);
        assert_eq!(c.request_headers(1, false, &never()), Action::Continue);
        take(&log);
        assert_eq!(c.request_body(10, false), Action::Pause);
        assert_eq!(take(&log), ["a:body:10"]);
    }
}
