//! Replay protection: each (keyid, nonce) pair is remembered in Envoy shared data, visible
//! to every worker, until the signature that carried it could no longer be accepted anyway
//! (`created + max_age_s + clock_skew_s`, or `expires + clock_skew_s`). A second use within
//! that window is a replay.
//!
//! Shared-data keys can never be deleted, so the pairs live in a fixed-size
//! [`SlotTable`]: `sets x ways` entries. A full set evicts the entry that expires first;
//! when that entry has not expired yet (more distinct nonces in the window than the table
//! holds) the eviction is reported, so operators can size the table from the metric.

use shared::slots::{SharedStore, SlotTable, StoreError, Write};
use std::cell::Cell;

/// A nonce to claim once the request is otherwise accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceClaim {
    pub keyid: String,
    pub nonce: String,
    /// Remember it until this Unix time.
    pub until: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// The pair was seen within its window.
    Replay,
    /// Shared data refused or stayed contended: fail closed.
    Unavailable,
}

/// What a successful claim did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Claimed {
    /// An entry still inside its window was evicted to make room.
    pub evicted_live: bool,
}

#[derive(Debug, Clone)]
pub struct ReplayGuard {
    table: SlotTable,
}

fn key(claim: &NonceClaim) -> Vec<u8> {
    // keyids cannot contain NUL (config validation), so the pair is unambiguous.
    let mut k = Vec::with_capacity(claim.keyid.len() + claim.nonce.len() + 1);
    k.extend_from_slice(claim.keyid.as_bytes());
    k.push(0);
    k.extend_from_slice(claim.nonce.as_bytes());
    k
}

fn until_of(payload: &[u8]) -> u64 {
    payload.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes).unwrap_or(0)
}

impl ReplayGuard {
    pub fn new(sets: u32, ways: usize) -> Self {
        Self { table: SlotTable::new("edgesec.hmac_signing.nonce", sets, ways) }
    }

    /// Create the nonce table's sets before traffic (see [`SlotTable::prepare`]).
    pub fn prepare(&self, store: &dyn SharedStore) -> Result<u32, StoreError> {
        self.table.prepare(store)
    }

    /// Record the pair, or report that it was already used within its window.
    pub fn claim(&self, store: &dyn SharedStore, claim: &NonceClaim, now: u64) -> Result<Claimed, ReplayError> {
        let oldest_victim = Cell::new(u64::MAX);
        let result = self.table.update(
            store,
            &key(claim),
            |current| match current {
                Some(p) if until_of(p) >= now => (Write::Keep, Err(ReplayError::Replay)),
                _ => (Write::Put(claim.until.to_le_bytes().to_vec()), Ok(())),
            },
            |p| {
                let u = until_of(p);
                oldest_victim.set(oldest_victim.get().min(u));
                u
            },
        );
        match result {
            Ok(Ok(())) => {
                let v = oldest_victim.get();
                Ok(Claimed { evicted_live: v != u64::MAX && v >= now })
            }
            Ok(Err(e)) => Err(e),
            Err(StoreError::CasMismatch | StoreError::Unavailable) => Err(ReplayError::Unavailable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::slots::MemoryStore;

    fn claim(keyid: &str, nonce: &str, until: u64) -> NonceClaim {
        NonceClaim { keyid: keyid.into(), nonce: nonce.into(), until }
    }

    #[test]
    fn second_use_is_a_replay_until_the_window_ends() {
        let s = MemoryStore::new();
        let g = ReplayGuard::new(16, 4);
        assert!(g.claim(&s, &claim("k", "n1", 1330), 1000).is_ok());
        assert_eq!(g.claim(&s, &claim("k", "n1", 1330), 1001), Err(ReplayError::Replay));
        assert_eq!(g.claim(&s, &claim("k", "n1", 1400), 1330), Err(ReplayError::Replay));
        // Other key, same nonce: independent.
        assert!(g.claim(&s, &claim("other", "n1", 1330), 1001).is_ok());
        // After the window the signature is refused as expired anyway; the slot is reusable.
        assert!(g.claim(&s, &claim("k", "n1", 1700), 1331).is_ok());
    }

    #[test]
    fn keyid_and_nonce_do_not_run_together() {
        let s = MemoryStore::new();
        let g = ReplayGuard::new(16, 4);
        assert!(g.claim(&s, &claim("ab", "c", 2000), 1000).is_ok());
        assert!(g.claim(&s, &claim("a", "bc", 2000), 1000).is_ok());
    }

    #[test]
    fn bounded_memory_and_live_eviction_is_reported() {
        let s = MemoryStore::new();
        let g = ReplayGuard::new(1, 2);
        assert_eq!(g.claim(&s, &claim("k", "a", 2000), 1000), Ok(Claimed { evicted_live: false }));
        assert_eq!(g.claim(&s, &claim("k", "b", 2001), 1000), Ok(Claimed { evicted_live: false }));
        // Full set, both live: the one expiring first goes, and that is reported.
        assert_eq!(g.claim(&s, &claim("k", "c", 2002), 1000), Ok(Claimed { evicted_live: true }));
        assert_eq!(g.claim(&s, &claim("k", "b", 2001), 1000), Err(ReplayError::Replay));
        // At its `until` second an entry is still live.
        assert_eq!(g.claim(&s, &claim("k", "d", 9000), 2001), Ok(Claimed { evicted_live: true }));
        // Expired entries are evicted silently.
        assert_eq!(g.claim(&s, &claim("k", "e", 9000), 5000), Ok(Claimed { evicted_live: false }));
        assert_eq!(s.keys(), 1);
    }

    // WASI has no threads: this one runs on the host only.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn concurrent_claims_of_one_nonce_admit_exactly_one() {
        use std::sync::Arc;
        let s = Arc::new(MemoryStore::new());
        let g = ReplayGuard::new(8, 4);
        let wins: usize = (0..8)
            .map(|_| {
                let s = s.clone();
                let g = g.clone();
                std::thread::spawn(move || g.claim(&*s, &claim("k", "same", 2000), 1000).is_ok())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| usize::from(t.join().unwrap()))
            .sum();
        assert_eq!(wins, 1);
    }

    #[test]
    fn store_failure_fails_closed() {
        struct Broken;
        impl SharedStore for Broken {
            fn get(&self, _: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
                Err(StoreError::Unavailable)
            }
            fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), StoreError> {
                Err(StoreError::Unavailable)
            }
        }
        let g = ReplayGuard::new(8, 4);
        assert_eq!(g.claim(&Broken, &claim("k", "n", 2000), 1000), Err(ReplayError::Unavailable));
    }
}
