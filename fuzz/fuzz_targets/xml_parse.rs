//! Any bytes as an XML document from outside (AuthnRequests, logout messages, metadata):
//! never a panic, and a document that parses canonicalises within the bounds. Run with
//! the memory and time limits of `scripts/fuzz.sh`: exceeding them is a finding.
#![no_main]

use causeway_saml::xml::{exclusive_c14n, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(node) = parse(text) {
        let _ = exclusive_c14n(&node, "");
    }
});
