//! HMAC request signing filter (work in progress).
