//! The per-VM registry of live requests, installed as `shared::host`'s [`Combined`] hooks:
//! which request the VM is working on, its identity kept in memory, and the resumes the
//! members asked for (run later members first, then resume Envoy's filter chain).

use crate::chain::Chain;
use shared::host::{Combined, HostError};
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
        Self { chain: RefCell::new(chain), identity: RefCell::new(Kept::Unknown), resumed: Cell::new(false), export_identity }
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
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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
}
