//! Any bytes as an agent-protocol frame (both the hub and the agent read these from the
//! network): never a panic, bounded work, and whatever decodes re-encodes to the same bytes.
#![no_main]

use causeway_proto::agent::{frame_len, Frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 4 {
        let _ = frame_len([data[0], data[1], data[2], data[3]]);
    }
    if let Ok(f) = Frame::decode(data) {
        let bytes = f.to_bytes();
        assert_eq!(&bytes[4..], data, "decode then encode must round-trip");
    }
});
