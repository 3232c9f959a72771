//! Any query string as an HTTP-Redirect SAML message (base64, inflate, parse): never a
//! panic; a deflate bomb costs at most the inflation limit.
#![no_main]

use causeway_saml::saml2::binding::from_query;
use causeway_saml::saml2::messages::{AuthnRequest, LogoutRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(msg) = from_query(query) {
        let _ = AuthnRequest::parse(&msg.xml);
        let _ = LogoutRequest::parse(&msg.xml);
    }
});
