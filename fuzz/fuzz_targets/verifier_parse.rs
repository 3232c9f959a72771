//! Any text fed to the PHS verifier parser: never a panic, never more than bounded work,
//! and whatever parses must re-encode to a string that parses to the same verifier.
#![no_main]

use causeway_credential::PhsVerifier;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(v) = PhsVerifier::parse(text) {
        let again = PhsVerifier::parse(&v.expose_encoded()).expect("own encoding parses");
        assert_eq!(again.expose_encoded(), v.expose_encoded());
        assert_eq!(text.to_ascii_lowercase(), v.expose_encoded().to_ascii_lowercase());
    }
});
