//! The per-VM registry of live requests, installed as `shared::host`'s [`Combined`] hooks:
//! which request the VM is working on, its identity kept in memory, and the resumes the
//! members asked for (run later members first, then resume Envoy's filter chain), and the
//! request header map the members of one request-headers callback share (one host read).

use crate::chain::Chain;
use shared::host::{Combined, HeaderEdit, HostError};
use shared::request::Headers;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

/// What the VM keeps per request.
pub struct Slot {
    pub chain: RefCell<Chain>,
    identity: RefCell<Kept>,
    /// A member asked to resume the request (it paused for a callout that completed).
    resumed: Cell<bool>,
    /// Also write the identity to the host property (`export_identity`).
    export_identity: bool,
    /// The request header map shared by the members while they run their request-headers
    /// callbacks.
    headers: RefCell<HeaderCache>,
}

/// The request header map kept for the members of one run of request-headers callbacks.
#[derive(Debug)]
enum HeaderCache {
    /// Not running request-headers callbacks: every read goes to the host.
    Off,
    /// Running them, nothing read yet (or a failed edit made the copy unknown): the next
    /// read goes to the host and is kept.
    Open,
    /// The host's map, with every edit the members made since it was read.
    Kept(Headers),
}

/// The identity of one request as far as the VM knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Kept {
    /// Nothing recorded in memory yet: an Envoy filter before edge_chain may have set the
    /// host property, read it once.
    Unknown,
    /// Known (from the property, or set by jwt_verify in memory); `None`: anonymous.
    Known(Option<Vec<u8>>),
}

impl Slot {
    pub fn new(chain: Chain, export_identity: bool) -> Self {
        Self { chain: RefCell::new(chain), identity: RefCell::new(Kept::Unknown), resumed: Cell::new(false), export_identity, headers: RefCell::new(HeaderCache::Off) }
    }

    /// The members are about to run their request-headers callbacks (the headers arrived, or
    /// a resume runs the later members): the first read of the map is kept for the others.
    pub fn open_request_headers(&self) {
        if let Ok(mut h) = self.headers.try_borrow_mut() {
            *h = HeaderCache::Open;
        }
    }

    /// The run is over: drop the copy (a later callback, or a resume after a callout,
    /// reads the host's map again).
    pub fn close_request_headers(&self) {
        if let Ok(mut h) = self.headers.try_borrow_mut() {
            *h = HeaderCache::Off;
        }
    }

    /// Report and clear a resume asked for this request.
    pub fn take_resume(&self) -> bool {
        self.resumed.replace(false)
    }
}

/// How the registry reads and writes the host's identity property (a fake in unit tests).
pub trait Property {
    fn get(&self) -> Option<Vec<u8>>;
    fn set(&self, encoded: &[u8]) -> Result<(), HostError>;
}

/// The real host property (`shared::identity::PROPERTY`).
pub struct HostProperty;

impl Property for HostProperty {
    fn get(&self) -> Option<Vec<u8>> {
        shared::host::get_property(&[shared::identity::PROPERTY]).ok().flatten()
    }
    fn set(&self, encoded: &[u8]) -> Result<(), HostError> {
        shared::host::set_property(&[shared::identity::PROPERTY], encoded)
    }
}

pub struct Registry {
    /// The request the VM works on now (set on every stream callback, and when a root
    /// makes a parked stream effective); `None` in root callbacks.
    current: Cell<Option<u32>>,
    streams: RefCell<HashMap<u32, Rc<Slot>>>,
    /// Requests resumed from a root callback, run when that callback returns.
    pending: RefCell<Vec<u32>>,
    property: Box<dyn Property>,
}

impl Registry {
    /// One per VM, shared by every edge_chain plugin (root context) in it.
    pub fn new(property: Box<dyn Property>) -> Self {
        Self { current: Cell::new(None), streams: RefCell::new(HashMap::new()), pending: RefCell::new(Vec::new()), property }
    }

    pub fn add(&self, id: u32, slot: Rc<Slot>) {
        if let Ok(mut s) = self.streams.try_borrow_mut() {
            s.insert(id, slot);
        }
    }

    pub fn remove(&self, id: u32) {
        if let Ok(mut s) = self.streams.try_borrow_mut() {
            s.remove(&id);
        }
        if self.current.get() == Some(id) {
            self.current.set(None);
        }
    }

    pub fn set_current(&self, id: Option<u32>) {
        self.current.set(id);
    }

    fn slot(&self, id: u32) -> Option<Rc<Slot>> {
        self.streams.try_borrow().ok().and_then(|s| s.get(&id).cloned())
    }

    fn current_slot(&self) -> Option<Rc<Slot>> {
        self.slot(self.current.get()?)
    }

    /// The requests resumed from a root callback whose streams still exist; clears them.
    pub fn take_pending(&self) -> Vec<(u32, Rc<Slot>)> {
        let ids = self.pending.try_borrow_mut().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default();
        ids.into_iter().filter_map(|id| self.slot(id).map(|s| (id, s))).filter(|(_, s)| s.take_resume()).collect()
    }

    #[cfg(test)]
    pub fn live(&self) -> usize {
        self.streams.borrow().len()
    }
}

impl Combined for Registry {
    fn enter(&self, context_id: u32) {
        self.current.set(Some(context_id));
    }

    fn identity(&self) -> Option<Option<Vec<u8>>> {
        let slot = self.current_slot()?;
        let mut kept = slot.identity.try_borrow_mut().ok()?;
        if *kept == Kept::Unknown {
            *kept = Kept::Known(self.property.get());
        }
        match &*kept {
            Kept::Known(v) => Some(v.clone()),
            Kept::Unknown => None,
        }
    }

    fn set_identity(&self, encoded: &[u8]) -> Option<Result<(), HostError>> {
        let slot = self.current_slot()?;
        let Ok(mut kept) = slot.identity.try_borrow_mut() else {
            return Some(Err(HostError { status: 10 })); // re-entered: refuse (the member denies)
        };
        *kept = Kept::Known(Some(encoded.to_vec()));
        Some(if slot.export_identity { self.property.set(encoded) } else { Ok(()) })
    }

    fn resume_request(&self) -> bool {
        let Some(id) = self.current.get() else { return false };
        let Some(slot) = self.slot(id) else { return false };
        slot.resumed.set(true);
        if let Ok(mut p) = self.pending.try_borrow_mut() {
            if !p.contains(&id) {
                p.push(id);
            }
        }
        true
    }

    fn request_headers(&self) -> Option<Headers> {
        let slot = self.current_slot()?;
        let cache = slot.headers.try_borrow().ok()?;
        match &*cache {
            HeaderCache::Kept(h) => Some(h.clone()),
            HeaderCache::Off | HeaderCache::Open => None,
        }
    }

    fn keep_request_headers(&self, headers: &Headers) {
        let Some(slot) = self.current_slot() else { return };
        if let Ok(mut cache) = slot.headers.try_borrow_mut() {
            if matches!(*cache, HeaderCache::Open) {
                *cache = HeaderCache::Kept(headers.clone());
            }
        };
    }

    fn request_headers_edited(&self, edit: &HeaderEdit<'_>, ok: bool) {
        let Some(slot) = self.current_slot() else { return };
        let Ok(mut cache) = slot.headers.try_borrow_mut() else { return };
        if let HeaderCache::Kept(h) = &mut *cache {
            if ok {
                edit.apply(h);
            } else {
                *cache = HeaderCache::Open; // the host's map is unknown now: read it again
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[derive(Default, Clone)]
    struct FakeProperty {
        value: Rc<RefCell<Option<Vec<u8>>>>,
        reads: Rc<Cell<u32>>,
        writes: Rc<Cell<u32>>,
    }

    impl Property for FakeProperty {
        fn get(&self) -> Option<Vec<u8>> {
            self.reads.set(self.reads.get() + 1);
            self.value.borrow().clone()
        }
        fn set(&self, encoded: &[u8]) -> Result<(), HostError> {
            self.writes.set(self.writes.get() + 1);
            *self.value.borrow_mut() = Some(encoded.to_vec());
            Ok(())
        }
    }

    fn registry() -> (Registry, FakeProperty) {
        let p = FakeProperty::default();
        (Registry::new(Box::new(p.clone())), p)
    }

    fn slot() -> Rc<Slot> {
        Rc::new(Slot::new(Chain::new(Vec::new()), false))
    }

    #[test]
    fn outside_a_combined_stream_the_host_property_is_used() {
        let (r, p) = registry();
        assert_eq!(r.identity(), None);
        assert_eq!(r.set_identity(b"x"), None);
        assert!(!r.resume_request());
        r.enter(9); // a context the registry does not know
        assert_eq!(r.identity(), None);
        assert_eq!(p.reads.get() + p.writes.get(), 0);
    }

    #[test]
    fn identity_stays_in_memory_per_request() {
        let (r, p) = registry();
        r.add(1, slot());
        r.add(2, slot());
        r.set_current(Some(1));
        assert_eq!(r.set_identity(b"alice"), Some(Ok(())));
        assert_eq!(r.identity(), Some(Some(b"alice".to_vec())));
        r.set_current(Some(2));
        assert_eq!(r.identity(), Some(None), "another request is anonymous");
        assert_eq!(p.writes.get(), 0, "nothing written to the host");
        assert_eq!(p.reads.get(), 1, "the property is read once for request 2, to see an earlier filter's identity");
        assert_eq!(r.identity(), Some(None));
        assert_eq!(p.reads.get(), 1, "and then remembered");
    }

    #[test]
    fn an_identity_set_before_edge_chain_is_seen() {
        let (r, p) = registry();
        *p.value.borrow_mut() = Some(b"from-an-earlier-filter".to_vec());
        r.add(1, slot());
        r.set_current(Some(1));
        assert_eq!(r.identity(), Some(Some(b"from-an-earlier-filter".to_vec())));
        r.set_identity(b"bob");
        assert_eq!(r.identity(), Some(Some(b"bob".to_vec())), "jwt_verify's identity replaces it, as set_property would");
    }

    #[test]
    fn export_identity_also_writes_the_property() {
        let (r, p) = registry();
        r.add(1, Rc::new(Slot::new(Chain::new(Vec::new()), true)));
        r.add(2, slot());
        r.set_current(Some(1));
        assert_eq!(r.set_identity(b"carol"), Some(Ok(())));
        assert_eq!(p.value.borrow().as_deref(), Some(&b"carol"[..]));
        assert_eq!(r.identity(), Some(Some(b"carol".to_vec())));
        assert_eq!(p.reads.get(), 0);
        // Another plugin in the same VM without export_identity keeps it in memory only.
        r.set_current(Some(2));
        r.set_identity(b"dave");
        assert_eq!(p.writes.get(), 1);
    }

    #[test]
    fn resumes_are_kept_per_request_until_taken() {
        let (r, _) = registry();
        let (a, b) = (slot(), slot());
        r.add(1, a.clone());
        r.add(2, b.clone());
        r.enter(1);
        assert!(r.resume_request());
        assert!(r.resume_request(), "twice: still one pending entry");
        r.enter(2);
        assert!(r.resume_request());
        // Request 2 ends before the root runs the pending resumes.
        r.remove(2);
        let ready: Vec<u32> = r.take_pending().into_iter().map(|(id, _)| id).collect();
        assert_eq!(ready, [1]);
        assert!(!a.take_resume(), "taken");
        assert!(r.take_pending().is_empty());
        assert_eq!(r.live(), 1);
    }

    #[test]
    fn a_resume_taken_by_the_stream_itself_is_not_run_again() {
        let (r, _) = registry();
        let a = slot();
        r.add(1, a.clone());
        r.enter(1);
        assert!(r.resume_request());
        assert!(a.take_resume(), "the stream callback that was running takes it");
        assert!(r.take_pending().is_empty());
    }

    // ---- the request header map shared by the members ----

    use crate::chain::Member;
    use proxy_wasm::types::{Action, MapType};

    /// Envoy's request header map and how often it was read.
    #[derive(Default)]
    struct FakeHost {
        map: RefCell<Headers>,
        reads: Cell<u32>,
    }

    impl FakeHost {
        /// What `shared::host::request_headers` does: the kept copy, else a host read
        /// offered to the registry.
        fn request_headers(&self, r: &Registry) -> Headers {
            if let Some(kept) = r.request_headers() {
                return kept;
            }
            self.reads.set(self.reads.get() + 1);
            let h = self.map.borrow().clone();
            r.keep_request_headers(&h);
            h
        }
        /// What `shared::host::{set,add,remove}_header` do on the request map.
        fn edit(&self, r: &Registry, edit: HeaderEdit<'_>) {
            edit.apply(&mut self.map.borrow_mut());
            r.request_headers_edited(&edit, true);
        }
    }

    /// A member whose request-headers callback is a closure.
    struct Step(Box<dyn FnMut() -> Action>);

    impl Member for Step {
        fn request_headers(&mut self, _n: usize, _eos: bool) -> Action {
            (self.0)()
        }
        fn request_body(&mut self, _size: usize, _eos: bool) -> Action {
            Action::Continue
        }
        fn request_trailers(&mut self, _n: usize) -> Action {
            Action::Continue
        }
        fn response_headers(&mut self, _n: usize, _eos: bool) -> Action {
            Action::Continue
        }
        fn response_body(&mut self, _size: usize, _eos: bool) -> Action {
            Action::Continue
        }
        fn response_trailers(&mut self, _n: usize) -> Action {
            Action::Continue
        }
    }

    /// Run the request-headers callbacks as lib.rs does: the copy lives for one run.
    fn run_headers(slot: &Slot, chain: &mut crate::chain::Chain<Step>) -> Action {
        slot.open_request_headers();
        let a = chain.request_headers(5, true, &|| false);
        slot.close_request_headers();
        a
    }

    fn resume_headers(slot: &Slot, chain: &mut crate::chain::Chain<Step>) -> Action {
        slot.open_request_headers();
        let a = chain.resume(&|| false);
        slot.close_request_headers();
        a
    }

    fn setup() -> (Rc<Registry>, Rc<FakeHost>, Rc<Slot>) {
        let r = Rc::new(registry().0);
        let host = Rc::new(FakeHost::default());
        *host.map.borrow_mut() = Headers::from_pairs([(":method", "GET"), (":path", "/orders"), ("authorization", "Bearer t"), ("x-a", "1")]);
        let s = slot();
        r.add(1, s.clone());
        r.set_current(Some(1));
        (r, host, s)
    }

    #[test]
    fn members_share_one_read_and_see_each_others_edits() {
        let (r, host, s) = setup();
        let seen: Rc<RefCell<Vec<Headers>>> = Rc::default();
        let (r1, h1, seen1) = (r.clone(), host.clone(), seen.clone());
        let (r2, h2, seen2) = (r.clone(), host.clone(), seen.clone());
        let (r3, h3, seen3) = (r.clone(), host.clone(), seen.clone());
        let mut chain = crate::chain::Chain::new(vec![
            // header_hardening-like: reads, adds a header, replaces another.
            Step(Box::new(move || {
                seen1.borrow_mut().push(h1.request_headers(&r1));
                h1.edit(&r1, HeaderEdit::Add("X-Added", b"yes"));
                h1.edit(&r1, HeaderEdit::Replace("x-a", b"2"));
                Action::Continue
            })),
            // jwt_verify-like: reads, consumes the credential.
            Step(Box::new(move || {
                seen2.borrow_mut().push(h2.request_headers(&r2));
                h2.edit(&r2, HeaderEdit::Remove("authorization"));
                Action::Continue
            })),
            // rbac-like: reads.
            Step(Box::new(move || {
                seen3.borrow_mut().push(h3.request_headers(&r3));
                Action::Continue
            })),
        ]);
        assert_eq!(run_headers(&s, &mut chain), Action::Continue);
        assert_eq!(host.reads.get(), 1, "one host read for three members");
        let seen = seen.borrow();
        assert_eq!(seen[0].get("authorization"), Some(&b"Bearer t"[..]));
        assert_eq!(seen[1].get("x-added"), Some(&b"yes"[..]), "an added header is seen by the next member");
        assert_eq!(seen[1].get("x-a"), Some(&b"2"[..]));
        assert_eq!(seen[1].get("authorization"), Some(&b"Bearer t"[..]));
        assert_eq!(seen[2].get("authorization"), None, "a removed credential is not seen by a later member");
        assert_eq!(seen[2].get("x-added"), Some(&b"yes"[..]));
        assert_eq!(seen[2], *host.map.borrow(), "the copy equals the host's map");
        // The run is over: nothing is kept for later callbacks.
        assert_eq!(r.request_headers(), None);
    }

    #[test]
    fn a_resume_after_a_callout_reads_the_map_again() {
        let (r, host, s) = setup();
        let seen: Rc<RefCell<Vec<Headers>>> = Rc::default();
        let (r1, h1) = (r.clone(), host.clone());
        let (r2, h2, seen2) = (r.clone(), host.clone(), seen.clone());
        let mut chain = crate::chain::Chain::new(vec![
            Step(Box::new(move || {
                h1.request_headers(&r1);
                h1.edit(&r1, HeaderEdit::Remove("authorization"));
                Action::Pause // waits for a callout
            })),
            Step(Box::new(move || {
                seen2.borrow_mut().push(h2.request_headers(&r2));
                Action::Continue
            })),
        ]);
        assert_eq!(run_headers(&s, &mut chain), Action::Pause);
        assert_eq!(r.request_headers(), None, "dropped when the callback returned");
        // While the request waits the map changes behind the copy's back (another callback,
        // a member's root).
        host.map.borrow_mut().append("x-later", b"1");
        assert_eq!(resume_headers(&s, &mut chain), Action::Continue);
        assert_eq!(host.reads.get(), 2, "the resumed run read the map once more");
        let seen = seen.borrow();
        assert_eq!(seen[0].get("x-later"), Some(&b"1"[..]));
        assert_eq!(seen[0].get("authorization"), None);
    }

    #[test]
    fn nothing_is_kept_outside_request_headers_or_for_another_request() {
        let (r, host, s) = setup();
        // Not in a request-headers run: every read goes to the host.
        host.request_headers(&r);
        host.request_headers(&r);
        assert_eq!(host.reads.get(), 2);
        // Another request's run does not lend its copy.
        r.add(2, slot());
        s.open_request_headers();
        host.request_headers(&r);
        r.set_current(Some(2));
        assert_eq!(r.request_headers(), None);
        r.request_headers_edited(&HeaderEdit::Remove(":path"), true);
        r.set_current(Some(1));
        assert_eq!(r.request_headers().map(|h| h.contains(":path")), Some(true));
        // Outside any stream (a root callback).
        r.set_current(None);
        assert_eq!(r.request_headers(), None);
    }

    #[test]
    fn a_failed_edit_drops_the_copy() {
        let (r, host, s) = setup();
        s.open_request_headers();
        host.request_headers(&r);
        assert!(r.request_headers().is_some());
        r.request_headers_edited(&HeaderEdit::Remove("authorization"), false);
        assert_eq!(r.request_headers(), None, "unknown host state: read again");
        host.request_headers(&r);
        assert_eq!(host.reads.get(), 2);
        assert!(r.request_headers().is_some(), "kept again for the rest of the run");
    }

    #[test]
    fn set_header_pairs_replaces_the_copy() {
        let (r, host, s) = setup();
        s.open_request_headers();
        host.request_headers(&r);
        let pairs: [(&str, &[u8]); 2] = [(":Path", b"/x"), ("b", b"2")];
        host.edit(&r, HeaderEdit::All(&pairs));
        let kept = r.request_headers().unwrap();
        assert_eq!(kept, Headers::from_pairs([(":path", "/x"), ("b", "2")]));
        assert_eq!(kept, *host.map.borrow());
    }

    /// Through `shared::host` itself (on the host target every real host call fails, which
    /// shows which calls would have reached Envoy). The hook stays installed on this test's
    /// thread only (libtest runs each test on its own thread).
    #[test]
    fn shared_host_answers_from_the_copy_only_inside_edge_chain_runs() {
        let (r, _host, s) = setup();
        assert!(shared::host::request_headers().is_err(), "no hook installed yet: the host is asked");
        shared::host::install_combined(r.clone());
        assert!(shared::host::request_headers().is_err(), "not in a request-headers run: the host is asked");
        s.open_request_headers();
        r.keep_request_headers(&Headers::from_pairs([("authorization", "Bearer t"), ("x-request-id", "abc")]));
        let h = shared::host::request_headers().unwrap();
        assert_eq!(h.get("authorization"), Some(&b"Bearer t"[..]));
        assert_eq!(shared::host::header(MapType::HttpRequestHeaders, "X-Request-Id"), Ok(Some(b"abc".to_vec())));
        assert_eq!(shared::host::request_id().as_deref(), Some("abc"));
        assert_eq!(shared::host::header(MapType::HttpRequestHeaders, "absent"), Ok(None));
        assert!(shared::host::header(MapType::HttpResponseHeaders, "x-request-id").is_err(), "responses are not kept");
        // An edit of the response map leaves the request copy alone.
        let _ = shared::host::set_header(MapType::HttpResponseHeaders, "authorization", b"x");
        assert!(shared::host::request_headers().is_ok());
        // An edit the host refuses (here: no host) drops the copy.
        assert!(shared::host::remove_header(MapType::HttpRequestHeaders, "authorization").is_err());
        assert!(shared::host::request_headers().is_err());
        s.close_request_headers();
    }
}
