//! Any bytes as the query string of `/wsfed?…`: never a panic, and what parses keeps the
//! bounds the parser promises (a sign-in's `wctx` is checked the way the portal does).
#![no_main]

use causeway_saml::wsfed::query::{check_wctx, parse_query, WsFedRequest, MAX_QUERY};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_query(text) {
        Ok(WsFedRequest::SignIn { wctx, .. }) => {
            assert!(text.len() <= MAX_QUERY);
            let _ = check_wctx(wctx.as_deref());
        }
        Ok(WsFedRequest::SignOut { .. }) => assert!(text.len() <= MAX_QUERY),
        Err(_) => {}
    }
});
