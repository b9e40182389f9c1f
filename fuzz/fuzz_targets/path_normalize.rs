//! Path normalization never panics, is idempotent, and its output has none of the forms it
//! refuses.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shared::pathmatch::normalize;

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = normalize(data) {
        assert_eq!(normalize(n.as_bytes()).as_deref(), Ok(n.as_str()), "not idempotent");
        assert!(n.starts_with('/'));
        assert!(!n.contains("//"));
        assert!(!n.contains('\\') && !n.contains('?') && !n.contains('#'));
        for seg in n.split('/') {
            assert!(seg != "." && seg != "..");
        }
        let lower = n.to_ascii_lowercase();
        assert!(!lower.contains("%2f") && !lower.contains("%5c") && !lower.contains("%00") && !lower.contains("%2e"));
    }
});
