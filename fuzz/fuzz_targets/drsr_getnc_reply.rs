//! Any bytes as an `IDL_DRSGetNCChanges` reply (a DC's answer, read by the hash sync):
//! never a panic, and bounded work — under tight caps too, so the depth and element
//! limits are exercised, not only the byte checks.
#![no_main]

use causeway_drsr::msg::{decode_getnc_reply, decode_getnc_reply_with};
use causeway_drsr::ndr::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_getnc_reply(data);
    let _ = decode_getnc_reply_with(
        data,
        Limits {
            max_elements: 64,
            max_depth: 4,
        },
    );
});
