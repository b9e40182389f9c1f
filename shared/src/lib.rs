//! Core crate of the edge security filters.
//!
//! Everything here except [`host`] is plain Rust with no proxy-wasm dependency, so the
//! decisions each filter makes can be unit-tested on the host with `cargo test`.
//! [`host`] is the only module that talks to Envoy; it returns `Result`s instead of
//! panicking, because a panic in a wasm filter takes down the whole VM (see docs/security.md).

pub mod audit;
pub mod config;
pub mod hash;
pub mod host;
pub mod identity;
pub mod pathmatch;
pub mod reply;
pub mod request;
pub mod slots;
