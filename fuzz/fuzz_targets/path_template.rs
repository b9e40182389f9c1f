//! Compiling any template and matching any path never panics; a compiled template made only
//! of literals matches its own text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shared::config::Validator;
use shared::pathmatch::{normalize, PathTemplate};

fuzz_target!(|input: (&str, &[u8])| {
    let (template, path) = input;
    let mut v = Validator::new();
    if let Some(t) = PathTemplate::compile(template, "t", &mut v) {
        if let Ok(n) = normalize(path) {
            let _ = t.matches(&n);
        }
        if !template.contains('{') && !template.contains("**") {
            if let Ok(n) = normalize(template.as_bytes()) {
                if n == template {
                    assert!(t.matches(&n), "{template} does not match itself");
                }
            }
        }
    }
});
