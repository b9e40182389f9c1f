//! Process-wide state in a fixed key space.
//!
//! Envoy's shared data is the only state all worker threads see, and its keys can never be
//! deleted (proxy-wasm has no call for it, envoyproxy/envoy#28339): one key per client would
//! grow memory until restart. A [`SlotTable`] therefore hashes client keys into a fixed number
//! of shared-data keys ("sets"), each holding up to `ways` entries tagged with a 128-bit
//! fingerprint of the full client key. Updates are read + compare-and-swap on one key
//! (two host calls), retried a bounded number of times, then reported as contention so the
//! caller can fail closed. Memory is bounded by `sets x ways x entry size`, whatever the
//! number of distinct clients.
//!
//! Envoy treats a compare-and-swap token of 0 as "no check" (proxy-wasm-cpp-host
//! `SharedData::set`), and 0 is the token a read of a missing key returns: the first write to
//! a key is unconditional, so two workers racing on it lose an update. Filters therefore call
//! [`SlotTable::prepare`] at configure time, creating every set before traffic, so that each
//! later write is a real compare-and-swap.

use crate::hash::sha256;

/// Error from a [`SharedStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The value changed between read and write.
    CasMismatch,
    /// The host refused the call.
    Unavailable,
}

/// The shared-data operations of the host (Envoy), or an in-memory stand-in for tests.
pub trait SharedStore {
    /// Value and CAS token of `key`; `None` when never set.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError>;
    /// Write `key`; with `cas`, only if it is unchanged since the read that returned `cas`.
    /// As in Envoy, `None` or `Some(0)` writes unconditionally.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// In-memory [`SharedStore`] with Envoy's CAS semantics (token 0 = no check), for tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: std::sync::Mutex<std::collections::HashMap<String, (Vec<u8>, u32)>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn keys(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
    pub fn bytes(&self) -> usize {
        self.map.lock().map(|m| m.iter().map(|(k, (v, _))| k.len() + v.len()).sum()).unwrap_or(0)
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        let m = self.map.lock().map_err(|_| StoreError::Unavailable)?;
        Ok(m.get(key).cloned())
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let mut m = self.map.lock().map_err(|_| StoreError::Unavailable)?;
        let current = m.get(key).map(|(_, c)| *c).unwrap_or(0);
        if let Some(c) = cas {
            if c != 0 && c != current {
                return Err(StoreError::CasMismatch);
            }
        }
        m.insert(key.to_string(), (value.to_vec(), current.wrapping_add(1).max(1)));
        Ok(())
    }
}

/// 128-bit fingerprint of a client key: collisions are not a practical attack.
pub type Fingerprint = [u8; 16];

pub fn fingerprint(key: &[u8]) -> Fingerprint {
    let d = sha256(key);
    let mut f = [0u8; 16];
    f.copy_from_slice(d.get(..16).unwrap_or(&[0u8; 16]));
    f
}

/// What an update does to the entry it looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Leave the set untouched (no write, one host call).
    Keep,
    /// Store this payload for the key.
    Put(Vec<u8>),
    /// Drop the key's entry.
    Remove,
}

/// How many times an update retries a lost compare-and-swap before giving up.
pub const CAS_RETRIES: usize = 16;

/// A fixed table of `sets` shared-data keys named `{prefix}.{n}`, each with up to `ways`
/// entries.
#[derive(Debug, Clone)]
pub struct SlotTable {
    prefix: String,
    sets: u32,
    ways: usize,
}

impl SlotTable {
    pub fn new(prefix: impl Into<String>, sets: u32, ways: usize) -> Self {
        Self { prefix: prefix.into(), sets: sets.max(1), ways: ways.max(1) }
    }

    pub fn capacity(&self) -> usize {
        self.sets as usize * self.ways
    }

    fn set_key(&self, fp: &Fingerprint) -> String {
        let n = u32::from_le_bytes([fp[0], fp[1], fp[2], fp[3]]) % self.sets;
        format!("{}.{}", self.prefix, n)
    }

    /// Create every set that does not exist yet (a one-byte placeholder that decodes as an
    /// empty set; the host reports an empty value as absent). Call at configure time, before
    /// traffic: sets another worker created already are left alone. Returns how many it made.
    pub fn prepare(&self, store: &dyn SharedStore) -> Result<u32, StoreError> {
        let mut created = 0;
        for n in 0..self.sets {
            let key = format!("{}.{}", self.prefix, n);
            if store.get(&key)?.is_none() {
                store.set(&key, &[0], None)?;
                created += 1;
            }
        }
        Ok(created)
    }

    /// Read the payload stored for `key` (one host call).
    pub fn get(&self, store: &dyn SharedStore, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let fp = fingerprint(key);
        let Some((raw, _)) = store.get(&self.set_key(&fp))? else {
            return Ok(None);
        };
        Ok(decode(&raw).into_iter().find(|(f, _)| *f == fp).map(|(_, p)| p.to_vec()))
    }

    /// Read-modify-write the entry for `key`. `f` sees the current payload (`None` if the
    /// key has no entry) and returns the write and a result. When a new entry must go into a
    /// full set, the entry with the lowest `rank` is evicted (callers rank idle or expired
    /// entries lowest). `f` may run several times if another worker wins the race.
    pub fn update<R>(
        &self,
        store: &dyn SharedStore,
        key: &[u8],
        mut f: impl FnMut(Option<&[u8]>) -> (Write, R),
        rank: impl Fn(&[u8]) -> u64,
    ) -> Result<R, StoreError> {
        let fp = fingerprint(key);
        let skey = self.set_key(&fp);
        for _ in 0..CAS_RETRIES {
            let Some((raw, cas)) = store.get(&skey)? else {
                // Not prepared: create the set, then compare-and-swap against it (see module doc).
                store.set(&skey, &[0], None)?;
                continue;
            };
            let mut entries = decode(&raw);
            let pos = entries.iter().position(|(f, _)| *f == fp);
            let (write, result) = f(pos.and_then(|i| entries.get(i)).map(|(_, p)| *p));
            let new_raw = match (write, pos) {
                (Write::Keep, _) => return Ok(result),
                (Write::Remove, None) => return Ok(result),
                (Write::Remove, Some(i)) => {
                    entries.remove(i);
                    encode(&entries)
                }
                (Write::Put(p), Some(i)) => {
                    let mut owned: Vec<(Fingerprint, Vec<u8>)> = entries.iter().map(|(f, p)| (*f, p.to_vec())).collect();
                    if let Some(e) = owned.get_mut(i) {
                        e.1 = p;
                    }
                    encode_owned(&owned)
                }
                (Write::Put(p), None) => {
                    if entries.len() >= self.ways {
                        if let Some((victim, _)) = entries.iter().enumerate().min_by_key(|(_, (_, p))| rank(p)) {
                            entries.remove(victim);
                        }
                    }
                    let mut owned: Vec<(Fingerprint, Vec<u8>)> = entries.iter().map(|(f, p)| (*f, p.to_vec())).collect();
                    owned.push((fp, p));
                    encode_owned(&owned)
                }
            };
            match store.set(&skey, &new_raw, Some(cas)) {
                Ok(()) => return Ok(result),
                Err(StoreError::CasMismatch) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::CasMismatch)
    }
}

// Set encoding: repeated [fingerprint 16][len u16 le][payload len].
fn decode(raw: &[u8]) -> Vec<(Fingerprint, &[u8])> {
    let mut out = Vec::new();
    let mut rest = raw;
    while rest.len() >= 18 {
        let (head, tail) = rest.split_at(18);
        let mut fp = [0u8; 16];
        fp.copy_from_slice(head.get(..16).unwrap_or(&[0u8; 16]));
        let len_bytes: [u8; 2] = head.get(16..18).and_then(|b| b.try_into().ok()).unwrap_or([0, 0]);
        let len = usize::from(u16::from_le_bytes(len_bytes));
        let Some(payload) = tail.get(..len) else { break };
        out.push((fp, payload));
        rest = tail.get(len..).unwrap_or_default();
    }
    out
}

fn encode(entries: &[(Fingerprint, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (fp, p) in entries {
        let len = u16::try_from(p.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(fp);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(p.get(..usize::from(len)).unwrap_or(p));
    }
    out
}

fn encode_owned(entries: &[(Fingerprint, Vec<u8>)]) -> Vec<u8> {
    let refs: Vec<(Fingerprint, &[u8])> = entries.iter().map(|(f, p)| (*f, p.as_slice())).collect();
    encode(&refs)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(not(target_family = "wasm"))]
    use std::sync::Arc;

    fn counter(table: &SlotTable, store: &dyn SharedStore, key: &[u8]) -> u64 {
        table
            .update(
                store,
                key,
                |cur| {
                    let n = cur.map(|p| u64::from_le_bytes(p.try_into().unwrap())).unwrap_or(0) + 1;
                    (Write::Put(n.to_le_bytes().to_vec()), n)
                },
                |p| u64::from_le_bytes(p.try_into().unwrap()),
            )
            .unwrap()
    }

    #[test]
    fn counts_per_key() {
        let s = MemoryStore::new();
        let t = SlotTable::new("t", 4, 4);
        assert_eq!(counter(&t, &s, b"a"), 1);
        assert_eq!(counter(&t, &s, b"a"), 2);
        assert_eq!(counter(&t, &s, b"b"), 1);
        assert_eq!(t.get(&s, b"a").unwrap(), Some(2u64.to_le_bytes().to_vec()));
        assert_eq!(t.get(&s, b"zz").unwrap(), None);
    }

    #[test]
    fn key_space_is_fixed_under_a_flood() {
        let s = MemoryStore::new();
        let t = SlotTable::new("t", 64, 4);
        for i in 0..100_000u32 {
            counter(&t, &s, &i.to_le_bytes());
        }
        assert!(s.keys() <= 64);
        assert!(s.bytes() <= 64 * (4 * (18 + 8) + 8));
    }

    #[test]
    fn eviction_takes_lowest_rank() {
        let s = MemoryStore::new();
        let t = SlotTable::new("t", 1, 2);
        for _ in 0..5 {
            counter(&t, &s, b"busy");
        }
        counter(&t, &s, b"idle");
        counter(&t, &s, b"new"); // evicts "idle" (rank 1) not "busy" (rank 5)
        assert!(t.get(&s, b"busy").unwrap().is_some());
        assert!(t.get(&s, b"idle").unwrap().is_none());
        assert!(t.get(&s, b"new").unwrap().is_some());
    }

    #[test]
    fn prepare_creates_every_set_once() {
        let s = MemoryStore::new();
        let t = SlotTable::new("p", 8, 2);
        assert_eq!(t.prepare(&s).unwrap(), 8);
        assert_eq!(t.prepare(&s).unwrap(), 0);
        assert_eq!(s.keys(), 8);
        assert_eq!(counter(&t, &s, b"a"), 1);
        assert_eq!(t.prepare(&s).unwrap(), 0, "prepare leaves existing sets alone");
        assert_eq!(counter(&t, &s, b"a"), 2);
    }

    #[test]
    fn memory_store_has_envoy_cas_semantics() {
        let s = MemoryStore::new();
        s.set("k", b"1", None).unwrap();
        let (_, cas) = s.get("k").unwrap().unwrap();
        s.set("k", b"2", Some(0)).unwrap(); // token 0: no check, like Envoy
        assert_eq!(s.set("k", b"3", Some(cas)), Err(StoreError::CasMismatch));
    }

    #[test]
    fn remove_and_keep() {
        let s = MemoryStore::new();
        let t = SlotTable::new("t", 1, 2);
        counter(&t, &s, b"a");
        t.update(&s, b"a", |_| (Write::Remove, ()), |_| 0).unwrap();
        assert!(t.get(&s, b"a").unwrap().is_none());
        t.update(&s, b"a", |_| (Write::Keep, ()), |_| 0).unwrap();
        assert!(t.get(&s, b"a").unwrap().is_none());
    }

    // Threads do not exist on wasm32-wasip1; the wasm run of this suite skips it.
    #[cfg(not(target_family = "wasm"))]
    #[test]
    fn exact_under_concurrency() {
        let s = Arc::new(MemoryStore::new());
        let t = SlotTable::new("t", 1, 4);
        t.prepare(&*s).unwrap();
        let landed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                let t = t.clone();
                let landed = landed.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        // Retries are bounded; under heavy contention an update can give up,
                        // so count only the ones that landed.
                        let r = t.update(
                            &*s,
                            b"k",
                            |cur| {
                                let n = cur.map(|p| u64::from_le_bytes(p.try_into().unwrap())).unwrap_or(0) + 1;
                                (Write::Put(n.to_le_bytes().to_vec()), ())
                            },
                            |_| 0,
                        );
                        if r.is_ok() {
                            landed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        let v = t.get(&*s, b"k").unwrap().unwrap();
        let n = u64::from_le_bytes(v.try_into().unwrap());
        assert_eq!(n, landed.load(std::sync::atomic::Ordering::SeqCst));
        assert!(n > 0);
    }

    #[test]
    fn corrupt_set_is_read_as_empty_prefix() {
        assert!(decode(&[1, 2, 3]).is_empty());
        let mut raw = encode(&[([7u8; 16], &b"abc"[..])]);
        raw.push(9);
        assert_eq!(decode(&raw).len(), 1);
    }
}
