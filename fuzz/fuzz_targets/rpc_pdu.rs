//! Any bytes as one DCE/RPC fragment from a server (bind_ack, bind_nak, response, fault)
//! and as an endpoint-mapper answer: the first decoders a hostile DC or a man in the
//! middle reaches. Never a panic, and work bounded by the input's length.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = causeway_drsr::rpc::fuzz_decode_server_pdu(data);
});
