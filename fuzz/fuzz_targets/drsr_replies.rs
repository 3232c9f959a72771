//! Any bytes as the other DRSUAPI replies the client reads (`IDL_DRSBind`,
//! `IDL_DRSUnbind`, `IDL_DRSCrackNames`, `IDL_DRSDomainControllerInfo`): never a panic.
#![no_main]

use causeway_drsr::msg::{
    decode_bind_reply, decode_crack_reply, decode_dcinfo_reply, decode_unbind_reply,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_bind_reply(data);
    let _ = decode_unbind_reply(data);
    let _ = decode_crack_reply(data);
    let _ = decode_dcinfo_reply(data);
});
