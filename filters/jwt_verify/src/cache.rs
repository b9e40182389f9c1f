//! Verification cache shared by every worker through Envoy shared data.
//!
//! Key: SHA-256 of the whole token (any size; [`SlotTable`] fingerprints the key with
//! SHA-256). Value: a small record with what a hit needs and nothing more: the provider, a
//! fingerprint binding the record to the configuration and the key set in force, `exp`,
//! `jti` (so revocation still applies on a hit), the claim header values and the encoded
//! identity. A record is served only while `now < exp`, the fingerprint matches the
//! provider's current key set, and the `jti` is not revoked. The table has a fixed key
//! space (`sets x ways`); a full set evicts the entry that expires first.

use shared::slots::{SharedStore, SlotTable, StoreError, Write};

/// Largest record stored; a token with larger claims is verified every time.
pub const MAX_RECORD: usize = 32 * 1024;

const VERSION: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub provider: u16,
    /// [`binding`] of the configuration and key set the token was verified with.
    pub binding: [u8; 16],
    pub exp: u64,
    pub jti: Option<String>,
    /// `(index into the provider's claim_to_headers, value)`.
    pub headers: Vec<(u8, Vec<u8>)>,
    /// [`shared::identity::Identity::encode`] output.
    pub identity: Vec<u8>,
}

/// Binds a record to one configuration and one key set: both fingerprints side by side
/// (compared byte for byte on a hit; no hashing on the hot path).
pub fn binding(config_hash: &[u8; 8], keyset: &[u8; 8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, i) in out.iter_mut().zip(config_hash.iter().chain(keyset.iter())) {
        *o = *i;
    }
    out
}

impl Record {
    /// `None` when the record would exceed [`MAX_RECORD`].
    pub fn encode(&self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(64 + self.identity.len());
        out.push(VERSION);
        out.extend_from_slice(&self.provider.to_le_bytes());
        out.extend_from_slice(&self.binding);
        out.extend_from_slice(&self.exp.to_le_bytes());
        match &self.jti {
            None => out.push(0),
            Some(j) => {
                out.push(1);
                out.extend_from_slice(&u16::try_from(j.len()).ok()?.to_le_bytes());
                out.extend_from_slice(j.as_bytes());
            }
        }
        out.push(u8::try_from(self.headers.len()).ok()?);
        for (i, v) in &self.headers {
            out.push(*i);
            out.extend_from_slice(&u16::try_from(v.len()).ok()?.to_le_bytes());
            out.extend_from_slice(v);
        }
        out.extend_from_slice(&self.identity);
        (out.len() <= MAX_RECORD).then_some(out)
    }

    pub fn decode(raw: &[u8]) -> Option<Record> {
        let mut r = Reader(raw);
        if r.u8()? != VERSION {
            return None;
        }
        let provider = u16::from_le_bytes(r.array()?);
        let binding = r.array()?;
        let exp = u64::from_le_bytes(r.array()?);
        let jti = match r.u8()? {
            0 => None,
            1 => {
                let n = usize::from(u16::from_le_bytes(r.array()?));
                Some(String::from_utf8(r.take(n)?.to_vec()).ok()?)
            }
            _ => return None,
        };
        let nh = r.u8()?;
        let mut headers = Vec::with_capacity(usize::from(nh));
        for _ in 0..nh {
            let i = r.u8()?;
            let n = usize::from(u16::from_le_bytes(r.array()?));
            headers.push((i, r.take(n)?.to_vec()));
        }
        Some(Record { provider, binding, exp, jti, headers, identity: r.0.to_vec() })
    }
}

/// A cursor that cannot over-read.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let head = self.0.get(..n)?;
        self.0 = self.0.get(n..)?;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

/// The cache over a [`SharedStore`].
#[derive(Debug, Clone)]
pub struct Cache {
    table: SlotTable,
}

pub const PREFIX: &str = "edgesec.jwt_verify.cache";

impl Cache {
    pub fn new(sets: u32, ways: usize) -> Self {
        Self { table: SlotTable::new(PREFIX, sets, ways) }
    }

    /// Create the cache's sets before traffic (see [`SlotTable::prepare`]).
    pub fn prepare(&self, store: &dyn SharedStore) -> Result<u32, StoreError> {
        self.table.prepare(store)
    }

    /// The record stored for `token` (one shared-data read), if any and well-formed.
    pub fn get(&self, store: &dyn SharedStore, token: &[u8]) -> Result<Option<Record>, StoreError> {
        Ok(self.table.get(store, token)?.and_then(|raw| Record::decode(&raw)))
    }

    /// Store `record` for `token`; a full set evicts the entry that expires first.
    pub fn put(&self, store: &dyn SharedStore, token: &[u8], record: &Record) -> Result<bool, StoreError> {
        let Some(bytes) = record.encode() else { return Ok(false) };
        self.table.update(store, token, |_| (Write::Put(bytes.clone()), true), |p| Record::decode(p).map(|r| r.exp).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::slots::MemoryStore;

    fn rec(exp: u64) -> Record {
        Record {
            provider: 3,
            binding: [9; 16],
            exp,
            jti: Some("j-1".into()),
            headers: vec![(0, b"user-1".to_vec()), (2, b"a,b".to_vec())],
            identity: br#"{"source":"jwt"}"#.to_vec(),
        }
    }

    #[test]
    fn record_round_trip_and_truncation() {
        let r = rec(77);
        let raw = r.encode().unwrap();
        assert_eq!(Record::decode(&raw), Some(r.clone()));
        for cut in 0..raw.len() - r.identity.len() {
            assert_eq!(Record::decode(&raw[..cut]), None, "cut {cut}");
        }
        let mut other = raw.clone();
        other[0] = 1;
        assert_eq!(Record::decode(&other), None);
        let none = Record { jti: None, headers: vec![], ..rec(1) };
        assert_eq!(Record::decode(&none.encode().unwrap()), Some(none));
        let huge = Record { identity: vec![b'x'; MAX_RECORD], ..rec(1) };
        assert_eq!(huge.encode(), None);
    }

    #[test]
    fn binding_depends_on_both() {
        assert_ne!(binding(&[1; 8], &[2; 8]), binding(&[1; 8], &[3; 8]));
        assert_ne!(binding(&[1; 8], &[2; 8]), binding(&[4; 8], &[2; 8]));
        assert_eq!(binding(&[1; 8], &[2; 8]), binding(&[1; 8], &[2; 8]));
    }

    #[test]
    fn put_get_and_eviction_by_expiry() {
        let s = MemoryStore::new();
        let c = Cache::new(1, 2);
        assert_eq!(c.get(&s, b"t1").unwrap(), None);
        assert!(c.put(&s, b"t1", &rec(100)).unwrap());
        assert!(c.put(&s, b"t2", &rec(50)).unwrap());
        assert_eq!(c.get(&s, b"t1").unwrap().unwrap().exp, 100);
        // Full set: the entry expiring first (t2) goes.
        assert!(c.put(&s, b"t3", &rec(200)).unwrap());
        assert!(c.get(&s, b"t2").unwrap().is_none());
        assert!(c.get(&s, b"t1").unwrap().is_some());
        assert_eq!(s.keys(), 1);
        // Tokens of any size are keys like any other.
        let big = vec![b'a'; 100_000];
        assert!(c.put(&s, &big, &rec(300)).unwrap());
        assert_eq!(c.get(&s, &big).unwrap().unwrap().exp, 300);
    }
}
