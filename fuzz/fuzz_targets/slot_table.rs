//! A slot table over shared data that holds arbitrary (corrupt) bytes never panics, and
//! keeps its key space fixed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shared::slots::{MemoryStore, SharedStore, SlotTable, Write};

fuzz_target!(|input: (&[u8], Vec<Vec<u8>>)| {
    let (initial, keys) = input;
    let store = MemoryStore::new();
    let table = SlotTable::new("f", 2, 3);
    let _ = store.set("f.0", initial, None);
    let _ = store.set("f.1", initial, None);
    for k in keys.iter().take(64) {
        let _ = table.update(&store, k, |cur| (Write::Put(cur.map(|c| c.len()).unwrap_or(0).to_le_bytes().to_vec()), ()), |p| p.len() as u64);
        let _ = table.get(&store, k);
    }
    assert!(store.keys() <= 2);
});
