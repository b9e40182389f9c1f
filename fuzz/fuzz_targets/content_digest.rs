//! RFC 9530 Content-Digest: parsing and verifying never panic; the digest we compute for a
//! body verifies against that body.
#![no_main]
use hmac_signing::digest::{sha256_field, ContentDigest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&[u8], &[u8])| {
    let (header, body) = input;
    if let Ok(d) = ContentDigest::parse(header) {
        let _ = d.verify(body);
    }
    let ours = ContentDigest::parse(sha256_field(body).as_bytes()).expect("own digest parses");
    assert!(ours.verify(body).is_ok());
});
