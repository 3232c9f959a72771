//! Any bytes offered to an agent as a sealed credential envelope on an established channel:
//! never a panic, and never opened. With a leading 0 byte the rest is XOR-ed onto a real
//! envelope, so the fuzzer also explores envelopes that are nearly valid (past the parser,
//! into the request key derivation and the AEAD).
#![no_main]

use std::sync::{Mutex, OnceLock};

use causeway_credential::{
    AgentKeyPair, ChannelOpener, ChannelSealer, EnvelopeContext, EnvelopeOpener, Password,
    RequestId, SealedEnvelope, Secret,
};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_790_000_000;

fn opener() -> &'static EnvelopeOpener {
    static O: OnceLock<EnvelopeOpener> = OnceLock::new();
    O.get_or_init(|| {
        EnvelopeOpener::new(
            AgentKeyPair::from_secret_bytes(&Secret::new([7u8; 32])).expect("key"),
        )
    })
}

/// The agent's side of one channel and a valid envelope sealed on it. Nothing the fuzzer
/// makes may open, so the channel's sequence number never moves and one channel serves
/// every input.
fn fixture() -> &'static (Mutex<ChannelOpener<'static>>, Vec<u8>) {
    static F: OnceLock<(Mutex<ChannelOpener<'static>>, Vec<u8>)> = OnceLock::new();
    F.get_or_init(|| {
        let opener = opener();
        let (mut sealer, key) = ChannelSealer::new(opener.keys().public()).expect("sealer");
        let ctx = EnvelopeContext {
            request_id: RequestId([1; 16]),
            user_name: "alice@lab.causeway.test".into(),
            endpoint_id: "endpoint-1".into(),
            expires_at: NOW + 30,
        };
        let pw = Password::new("Fuzz-Password-1".into()).expect("password");
        let valid = sealer.seal(&ctx, &pw).expect("seal").as_bytes().to_vec();
        let chan = opener.accept_channel(&key).expect("channel");
        (Mutex::new(chan), valid)
    })
}

fuzz_target!(|data: &[u8]| {
    let (chan, valid) = fixture();
    let bytes = match data.split_first() {
        Some((0, rest)) if !rest.is_empty() && rest.iter().any(|&b| b != 0) => {
            let mut b = valid.clone();
            for (i, x) in rest.iter().enumerate() {
                if i < b.len() {
                    b[i] ^= x;
                } else {
                    b.push(*x);
                }
            }
            b
        }
        _ => data.to_vec(),
    };
    if bytes == *valid {
        return;
    }
    let r = chan
        .lock()
        .expect("lock")
        .open(&SealedEnvelope::from_bytes(bytes), "endpoint-1", NOW);
    assert!(r.is_err(), "a modified envelope opened");
});
