//! Key material. A [`Secret`] never prints its bytes: `Debug` shows only its length, so a
//! stray `{:?}` of the policy cannot leak a key into a log.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Best effort: overwrite the key before the allocator reuses the memory.
        for b in self.0.iter_mut() {
            // black_box keeps the compiler from eliding stores to memory about to be freed.
            *b = std::hint::black_box(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_bytes() {
        let s = Secret::new(b"super-secret-key".to_vec());
        let d = format!("{s:?}");
        assert_eq!(d, "Secret(<16 bytes redacted>)");
        assert!(!d.contains("super"));
        assert_eq!(s.expose(), b"super-secret-key");
    }
}
