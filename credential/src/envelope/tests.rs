use std::collections::HashMap;

use super::*;
use crate::secret::REDACTED;

const KAT: &str = include_str!("../../testdata/rfc9180-a2-1.txt");

/// One RFC encryption: sequence number, plaintext, associated data, ciphertext.
type KatEncryption = (u64, Vec<u8>, Vec<u8>, Vec<u8>);
/// One RFC export: exporter context, length, exported value.
type KatExport = (Vec<u8>, usize, Vec<u8>);

struct Kat {
    fields: HashMap<&'static str, Vec<u8>>,
    encs: Vec<KatEncryption>,
    exports: Vec<KatExport>,
}

fn kat() -> Kat {
    let mut fields = HashMap::new();
    let mut encs = Vec::new();
    let mut exports = Vec::new();
    for line in KAT.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let parts: Vec<&str> = line.split(' ').collect();
        let h = |i: usize| hex::decode(parts[i]).expect("hex");
        if parts[0].starts_with("enc.") {
            encs.push((parts[1].parse().expect("seq"), h(2), h(3), h(5)));
        } else if parts[0].starts_with("exp.") {
            let context = if parts[1] == "-" { Vec::new() } else { h(1) };
            exports.push((context, parts[2].parse().expect("L"), h(3)));
        } else if let Ok(v) = hex::decode(parts[1]) {
            fields.insert(parts[0], v);
        }
    }
    Kat {
        fields,
        encs,
        exports,
    }
}

/// An RNG that hands out fixed bytes: pins the ephemeral key, which hpke derives as
/// DeriveKeyPair(random bytes), so the sender side can be checked against RFC 9180.
struct FixedRng(Vec<u8>);

impl hpke::rand_core::TryRng for FixedRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        unreachable!("X25519 key generation only fills bytes")
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        unreachable!("X25519 key generation only fills bytes")
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        assert!(dst.len() <= self.0.len(), "FixedRng exhausted");
        let rest = self.0.split_off(dst.len());
        dst.copy_from_slice(&self.0);
        self.0 = rest;
        Ok(())
    }
}
impl hpke::rand_core::TryCryptoRng for FixedRng {}

#[test]
fn rfc9180_a2_1_known_answers() {
    let Kat {
        fields: f,
        encs,
        exports,
    } = kat();
    assert_eq!(encs.len(), 6);
    assert_eq!(exports.len(), 3);
    // Recipient key pair from ikmR.
    let pair = AgentKeyPair::derive(&f["ikmR"]);
    assert_eq!(pair.public().to_bytes().to_vec(), f["pkRm"]);
    // The library keeps the scalar clamped (RFC 7748 §5); the RFC prints it unclamped.
    let mut clamped = f["skRm"].clone();
    clamped[0] &= 248;
    clamped[31] = (clamped[31] & 127) | 64;
    assert_eq!(
        pair.secret().expose_secret_bytes().expose_secret().to_vec(),
        clamped
    );
    let mut sk = [0u8; 32];
    sk.copy_from_slice(&f["skRm"]);
    let from_rfc = AgentKeyPair::from_secret_bytes(&Secret::new(sk)).expect("RFC skRm loads");
    assert_eq!(from_rfc.public().to_bytes().to_vec(), f["pkRm"]);
    // Sender with the ephemeral key pinned to ikmE.
    let (enc, mut sender) = hpke::setup_sender_with_rng::<Aead, Kdf, Kem>(
        &OpModeS::Base,
        &pair.public().0,
        &f["info"],
        &mut FixedRng(f["ikmE"].clone()),
    )
    .expect("setup sender");
    assert_eq!(enc.to_bytes().to_vec(), f["enc"]);
    assert_eq!(f["pkEm"], f["enc"]);
    let mut receiver =
        hpke::setup_receiver::<Aead, Kdf, Kem>(&OpModeR::Base, &pair.secret().0, &enc, &f["info"])
            .expect("setup receiver");
    // The exporter that request keys come from, on both sides (RFC 9180 §5.3, A.2.1.2).
    for (context, len, value) in &exports {
        for side in ["sender", "receiver"] {
            let mut out = vec![0u8; *len];
            if side == "sender" {
                sender.export(context, &mut out).expect("export");
            } else {
                receiver.export(context, &mut out).expect("export");
            }
            assert_eq!(&out, value, "{side} export of {}", hex::encode(context));
        }
    }
    // Walk the sequence numbers 0..=256; the RFC lists 0, 1, 2, 4, 255 and 256.
    let pt = &encs[0].1;
    let mut checked = 0;
    for seq in 0..=256u64 {
        let listed = encs.iter().find(|e| e.0 == seq);
        let aad = listed.map_or_else(|| format!("Count-{seq}").into_bytes(), |e| e.2.clone());
        let ct = sender.seal(pt, &aad).expect("seal");
        if let Some(e) = listed {
            assert_eq!(&e.1, pt);
            assert_eq!(ct, e.3, "ciphertext at sequence {seq}");
            checked += 1;
        }
        assert_eq!(
            &receiver.open(&ct, &aad).expect("open"),
            pt,
            "sequence {seq}"
        );
    }
    assert_eq!(checked, 6);
}

/// The channel key a sealer sends is the HPKE encapsulation itself: with the ephemeral key
/// pinned to the RFC's ikmE it is the RFC's `enc`, and the agent opens what was sealed.
#[test]
fn the_channel_key_is_the_rfc_encapsulation() {
    let Kat { fields: f, .. } = kat();
    let agent = EnvelopeOpener::new(AgentKeyPair::derive(&f["ikmR"]));
    let (mut sealer, key) = ChannelSealer::with_setup(|| {
        hpke::setup_sender_with_rng::<Aead, Kdf, Kem>(
            &OpModeS::Base,
            &agent.keys().public().0,
            INFO,
            &mut FixedRng(f["ikmE"].clone()),
        )
    })
    .expect("sealer");
    assert_eq!(key.0.to_vec(), f["enc"]);
    let mut chan = agent.accept_channel(&key).expect("channel");
    let sealed = sealer.seal(&ctx(NOW), &pw("Pinned-Key-1")).expect("seal");
    let opened = chan.open(&sealed, "endpoint-1", NOW).expect("open");
    assert_eq!(opened.password.expose_secret(), "Pinned-Key-1");
}

fn ctx(now: u64) -> EnvelopeContext {
    EnvelopeContext {
        request_id: RequestId::random(),
        user_name: "alice@lab.causeway.test".into(),
        endpoint_id: "endpoint-1".into(),
        expires_at: now + 30,
    }
}

fn pw(s: &str) -> Password {
    Password::new(s.into()).expect("valid")
}

const NOW: u64 = 1_790_000_000;

/// A channel between a fresh hub-side sealer and `agent`.
fn channel(agent: &EnvelopeOpener) -> (ChannelSealer, ChannelOpener<'_>) {
    let (sealer, key) = ChannelSealer::new(agent.keys().public()).expect("encapsulate");
    (sealer, agent.accept_channel(&key).expect("decapsulate"))
}

/// Where the fields sit in a version 2 envelope.
const SEQ_AT: usize = 4 + 6;
const EXP_AT: usize = SEQ_AT + 8 + 16;
const USER_LEN_AT: usize = EXP_AT + 8;

#[test]
fn many_requests_on_one_channel() {
    let agent = EnvelopeOpener::new(AgentKeyPair::generate());
    let (mut sealer, mut chan) = channel(&agent);
    for i in 0..100u64 {
        let c = ctx(NOW);
        let password = format!("Blue-Harbor-{i}");
        let sealed = sealer.seal(&c, &pw(&password)).expect("seal");
        assert!(
            sealed.as_bytes().len() < 120,
            "no encapsulated key per envelope"
        );
        assert_eq!(
            u64::from_be_bytes(sealed.as_bytes()[SEQ_AT..SEQ_AT + 8].try_into().expect("8")),
            i,
            "sequence numbers count up from 0"
        );
        let opened = chan.open(&sealed, "endpoint-1", NOW).expect("open");
        assert_eq!(opened.context, c);
        assert_eq!(opened.password.expose_secret(), password);
    }
}

#[test]
fn payload_is_not_readable_in_the_clear() {
    let agent = EnvelopeOpener::new(AgentKeyPair::generate());
    let (mut sealer, _) = channel(&agent);
    let sealed = sealer
        .seal(&ctx(NOW), &pw("Unique-Clear-Text-77"))
        .expect("seal");
    let wire = sealed.as_bytes();
    assert!(!wire.windows(6).any(|w| w == b"Unique"));
}

/// Every request of a channel has its own key: the same password sealed 1000 times gives
/// 1000 different ciphertexts (the tag aside, a ciphertext is key stream XOR password, so
/// equal ones would mean a reused key and nonce).
#[test]
fn request_keys_are_unique_per_sequence_number() {
    let agent = EnvelopeOpener::new(AgentKeyPair::generate());
    let (mut sealer, _) = channel(&agent);
    let c = ctx(NOW);
    let mut bodies = std::collections::HashSet::new();
    for _ in 0..1000 {
        let sealed = sealer.seal(&c, &pw("Same-Password-1")).expect("seal");
        let b = sealed.as_bytes();
        bodies.insert(b[b.len() - TAG_LEN - 15..b.len() - TAG_LEN].to_vec());
    }
    assert_eq!(bodies.len(), 1000);
    // And two channels to the same agent never share keys.
    let (mut other, _) = channel(&agent);
    let a = sealer.seal(&c, &pw("Same-Password-1")).expect("seal");
    other.next_seq = sealer.next_seq - 1;
    let b = other.seal(&c, &pw("Same-Password-1")).expect("seal");
    assert_eq!(a.as_bytes()[..EXP_AT], b.as_bytes()[..EXP_AT], "same seq");
    assert_ne!(a.as_bytes(), b.as_bytes());
}

#[test]
fn wrong_agent_or_wrong_channel_is_refused() {
    let a = EnvelopeOpener::new(AgentKeyPair::generate());
    let b = EnvelopeOpener::new(AgentKeyPair::generate());
    let (mut sealer, key) = ChannelSealer::new(a.keys().public()).expect("encapsulate");
    let sealed = sealer.seal(&ctx(NOW), &pw("x-Secret-1")).expect("seal");
    // Any point decapsulates, so B accepts the channel key; nothing sealed to A opens.
    let mut at_b = b.accept_channel(&key).expect("decapsulates");
    assert_eq!(
        at_b.open(&sealed, "endpoint-1", NOW).err(),
        Some(EnvelopeError::DecryptionFailed)
    );
    // A's other channel has other keys.
    let (_, mut other) = channel(&a);
    assert_eq!(
        other.open(&sealed, "endpoint-1", NOW).err(),
        Some(EnvelopeError::DecryptionFailed)
    );
    // The right channel still opens it: the failures spent nothing.
    let mut right = a.accept_channel(&key).expect("decapsulates");
    assert!(right.open(&sealed, "endpoint-1", NOW).is_ok());
}

/// A channel key on which X25519 yields the all-zero secret (a low-order point) is refused
/// at once, as RFC 9180 §7.1.4 requires, instead of giving a channel anyone could read.
#[test]
fn a_low_order_channel_key_is_refused() {
    let agent = EnvelopeOpener::new(AgentKeyPair::generate());
    for point in [[0u8; 32], {
        let mut one = [0u8; 32];
        one[0] = 1;
        one
    }] {
        assert_eq!(
            agent.accept_channel(&ChannelKey(point)).err(),
            Some(EnvelopeError::InvalidKey)
        );
    }
}

#[test]
fn every_flipped_bit_is_refused() {
    let agent = EnvelopeOpener::new(AgentKeyPair::generate());
    let (mut sealer, mut chan) = channel(&agent);
    let sealed = sealer.seal(&ctx(NOW), &pw("Flip-Me-1234")).expect("seal");
    let bytes = sealed.as_bytes().to_vec();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            let r = chan.open(&SealedEnvelope::from_bytes(b), "endpoint-1", NOW);
            assert!(r.is_err(), "flipping bit {bit} of byte {i} was accepted");
        }
    }
    // The untouched envelope still opens: none of the failures above moved the channel's
    // sequence number or reached the replay cache.
    assert!(chan.open(&sealed, "endpoint-1", NOW).is_ok());
}

#[test]
fn changed_associated_data_is_refused_as_tampering() {
    let agent = EnvelopeOpener::new(AgentKeyPair::generate());
    let (mut sealer, mut chan) = channel(&agent);
    let c = ctx(NOW);
    let sealed = sealer.seal(&c, &pw("Tamper-Proof-1")).expect("seal");
    let open = |chan: &mut ChannelOpener<'_>, b: Vec<u8>| {
        chan.open(&SealedEnvelope::from_bytes(b), "endpoint-1", NOW)
            .err()
    };
    // Re-encode the same ciphertext with a different user name of the same length.
    let mut b = sealed.as_bytes().to_vec();
    let at = b
        .windows(5)
        .position(|w| w == b"alice")
        .expect("user name in clear");
    b[at..at + 5].copy_from_slice(b"admin");
    assert_eq!(open(&mut chan, b), Some(EnvelopeError::DecryptionFailed));
    // Push the expiry out by a minute.
    let mut b = sealed.as_bytes().to_vec();
    b[EXP_AT..EXP_AT + 8].copy_from_slice(&(c.expires_at + 60).to_be_bytes());
    assert_eq!(open(&mut chan, b), Some(EnvelopeError::DecryptionFailed));
    // Another request id.
    let mut b = sealed.as_bytes().to_vec();
    b[SEQ_AT + 8] ^= 0x80;
    assert_eq!(open(&mut chan, b), Some(EnvelopeError::DecryptionFailed));
    // A later sequence number: derives another key, so it does not open, and does not
    // move the channel forward either.
    let mut b = sealed.as_bytes().to_vec();
    b[SEQ_AT..SEQ_AT + 8].copy_from_slice(&5u64.to_be_bytes());
    assert_eq!(open(&mut chan, b), Some(EnvelopeError::DecryptionFailed));
    assert!(chan.open(&sealed, "endpoint-1", NOW).is_ok());
}

#[test]
fn expiry_and_lifetime() {
    let agent = EnvelopeOpener::new(AgentKeyPair::generate());
    let (mut sealer, mut chan) = channel(&agent);
    let c = ctx(NOW);
    let sealed = sealer.seal(&c, &pw("Expire-Me-1")).expect("seal");
    assert_eq!(
        chan.open(&sealed, "endpoint-1", c.expires_at).err(),
        Some(EnvelopeError::Expired {
            expires_at: c.expires_at,
            now: c.expires_at
        })
    );
    let mut long = ctx(NOW);
    long.expires_at = NOW + MAX_LIFETIME_SECS + 1;
    let sealed = sealer.seal(&long, &pw("Expire-Me-1")).expect("seal");
    assert!(matches!(
        chan.open(&sealed, "endpoint-1", NOW),
        Err(EnvelopeError::LifetimeTooLong { .. })
    ));
    // One second before expiry it still opens.
    let c = ctx(NOW);
    let sealed = sealer.seal(&c, &pw("Expire-Me-1")).expect("seal");
    assert!(chan.open(&sealed, "endpoint-1", c.expires_at - 1).is_ok());
}

#[test]
fn replay_on_the_same_channel_is_refused_before_decryption() {
    let agent = EnvelopeOpener::new(AgentKeyPair::generate());
    let (mut sealer, mut chan) = channel(&agent);
    let sealed = sealer.seal(&ctx(NOW), &pw("Replay-Me-1")).expect("seal");
    assert!(chan.open(&sealed, "endpoint-1", NOW).is_ok());
    assert_eq!(
        chan.open(&sealed, "endpoint-1", NOW + 1).err(),
        Some(EnvelopeError::OutOfOrder { seq: 0, last: 0 })
    );
    // Even with the ciphertext destroyed, the answer is the sequence: nothing was decrypted.
    let mut b = sealed.as_bytes().to_vec();
    let last = b.len() - 1;
    b[last] ^= 1;
    assert_eq!(
        chan.open(&SealedEnvelope::from_bytes(b), "endpoint-1", NOW)
            .err(),
        Some(EnvelopeError::OutOfOrder { seq: 0, last: 0 })
    );
}

#[test]
fn out_of_order_is_refused_and_gaps_are_not() {
    let agent = EnvelopeOpener::new(AgentKeyPair::generate());
    let (mut sealer, mut chan) = channel(&agent);
    let s0 = sealer.seal(&ctx(NOW), &pw("Order-Me-1")).expect("seal");
    let s1 = sealer.seal(&ctx(NOW), &pw("Order-Me-1")).expect("seal");
    let s2 = sealer.seal(&ctx(NOW), &pw("Order-Me-1")).expect("seal");
    let s3 = sealer.seal(&ctx(NOW), &pw("Order-Me-1")).expect("seal");
    // A gap (0 never arrives, 1 was never sent) is fine: the hub may drop a check it
    // could not queue.
    assert!(chan.open(&s2, "endpoint-1", NOW).is_ok());
    for (s, seq) in [(&s0, 0), (&s1, 1)] {
        assert_eq!(
            chan.open(s, "endpoint-1", NOW).err(),
            Some(EnvelopeError::OutOfOrder { seq, last: 2 })
        );
    }
    assert!(chan.open(&s3, "endpoint-1", NOW).is_ok());
}

#[test]
fn an_authentic_envelope_spends_its_number_even_when_refused() {
    let agent = EnvelopeOpener::new(AgentKeyPair::generate());
    let (mut sealer, mut chan) = channel(&agent);
    let sealed = sealer.seal(&ctx(NOW), &pw("Spent-1")).expect("seal");
    assert_eq!(
        chan.open(&sealed, "endpoint-2", NOW).err(),
        Some(EnvelopeError::WrongEndpoint)
    );
    assert_eq!(
        chan.open(&sealed, "endpoint-1", NOW).err(),
        Some(EnvelopeError::OutOfOrder { seq: 0, last: 0 })
    );
}

/// Someone who could play a recorded channel key and its envelopes back on a new
/// connection gets nothing: the request ids are remembered across channels.
#[test]
fn replay_on_another_channel_is_refused_by_request_id() {
    let agent = EnvelopeOpener::new(AgentKeyPair::generate());
    let (mut sealer, key) = ChannelSealer::new(agent.keys().public()).expect("encapsulate");
    let c = ctx(NOW);
    let sealed = sealer.seal(&c, &pw("Replay-Me-1")).expect("seal");
    let mut first = agent.accept_channel(&key).expect("channel");
    assert!(first.open(&sealed, "endpoint-1", NOW).is_ok());
    let mut replayed = agent.accept_channel(&key).expect("channel");
    assert_eq!(
        replayed.open(&sealed, "endpoint-1", NOW + 1).err(),
        Some(EnvelopeError::Replayed {
            request_id: c.request_id
        })
    );
    // A new envelope reusing the request id on a third channel is a replay too.
    let (mut sealer, mut third) = channel(&agent);
    let again = sealer.seal(&c, &pw("Replay-Me-1")).expect("seal");
    assert!(matches!(
        third.open(&again, "endpoint-1", NOW + 2),
        Err(EnvelopeError::Replayed { .. })
    ));
}

#[test]
fn sequence_numbers_never_wrap() {
    let agent = EnvelopeOpener::new(AgentKeyPair::generate());
    let (mut sealer, mut chan) = channel(&agent);
    sealer.next_seq = u64::MAX - 2;
    let last = sealer.seal(&ctx(NOW), &pw("Last-One-1")).expect("seal");
    assert_eq!(
        sealer.seal(&ctx(NOW), &pw("Last-One-1")).err(),
        Some(EnvelopeError::SequenceExhausted)
    );
    assert_eq!(
        sealer.seal(&ctx(NOW), &pw("Last-One-1")).err(),
        Some(EnvelopeError::SequenceExhausted),
        "a refusal does not move the counter"
    );
    assert!(chan.open(&last, "endpoint-1", NOW).is_ok());
}

#[test]
fn replay_cache_memory_is_bounded() {
    let agent = EnvelopeOpener::with_replay_capacity(AgentKeyPair::generate(), 2);
    let (mut sealer, mut chan) = channel(&agent);
    let mut open = |now: u64| {
        let sealed = sealer.seal(&ctx(now), &pw("Bounded-1")).expect("seal");
        chan.open(&sealed, "endpoint-1", now)
    };
    assert!(open(NOW).is_ok());
    assert!(open(NOW).is_ok());
    assert_eq!(
        open(NOW).err(),
        Some(EnvelopeError::ReplayCacheFull { capacity: 2 })
    );
    // Once the remembered envelopes have expired, their slots are free again.
    assert!(open(NOW + 31).is_ok());
    let cache = agent.replay.lock().expect("lock");
    assert!(cache.seen.len() <= 2 && cache.by_expiry.len() == cache.seen.len());
}

#[test]
fn malformed_envelopes_get_precise_errors() {
    let agent = EnvelopeOpener::new(AgentKeyPair::generate());
    let (mut sealer, mut chan) = channel(&agent);
    let sealed = sealer.seal(&ctx(NOW), &pw("Malformed-1")).expect("seal");
    let good = sealed.as_bytes();
    let mut open = |b: Vec<u8>| chan.open(&SealedEnvelope::from_bytes(b), "endpoint-1", NOW);
    assert_eq!(
        open(vec![0; MAX_ENVELOPE_LEN + 1]).err(),
        Some(EnvelopeError::TooLarge {
            len: 4097,
            max: 4096
        })
    );
    // A version 1 envelope (one encapsulation each) is not accepted any more.
    assert_eq!(
        open(b"CWE1rest".to_vec()).err(),
        Some(EnvelopeError::BadMagic)
    );
    let mut b = good.to_vec();
    b[9] = 1; // AES-128-GCM
    assert_eq!(
        open(b).err(),
        Some(EnvelopeError::UnsupportedSuite {
            kem: 0x20,
            kdf: 1,
            aead: 1
        })
    );
    let mut b = good.to_vec();
    b.push(0);
    assert_eq!(
        open(b).err(),
        Some(EnvelopeError::TrailingBytes { count: 1 })
    );
    // Every truncation is refused as such, none panics.
    for n in 0..good.len() {
        let r = open(good[..n].to_vec());
        assert!(
            matches!(
                r,
                Err(EnvelopeError::Truncated { .. }) | Err(EnvelopeError::BadMagic)
            ),
            "prefix {n}: {r:?}"
        );
    }
    // A user-name length beyond the limit is refused before anything is allocated for it.
    let mut b = good[..USER_LEN_AT].to_vec();
    b.extend_from_slice(&u16::MAX.to_be_bytes());
    assert_eq!(
        open(b).err(),
        Some(EnvelopeError::FieldTooLong {
            field: "user name",
            len: 65535,
            max: 512
        })
    );
}

#[test]
fn sealing_checks_the_clear_fields() {
    let k = AgentKeyPair::generate();
    let (mut sealer, _) = ChannelSealer::new(k.public()).expect("encapsulate");
    let mut c = ctx(NOW);
    c.user_name = "a".repeat(MAX_USER_NAME_LEN + 1);
    assert!(matches!(
        sealer.seal(&c, &pw("x-Secret-1")),
        Err(EnvelopeError::FieldTooLong { .. })
    ));
    c.user_name = "alice\nadmin".into();
    assert_eq!(
        sealer.seal(&c, &pw("x-Secret-1")).err(),
        Some(EnvelopeError::BadText { field: "user name" })
    );
    c.user_name = "alice".into();
    c.endpoint_id = String::new();
    assert_eq!(
        sealer.seal(&c, &pw("x-Secret-1")).err(),
        Some(EnvelopeError::BadText {
            field: "endpoint id"
        })
    );
    assert_eq!(
        sealer.next_seq, 0,
        "refused fields spend no sequence number"
    );
}

#[test]
fn keys_survive_their_file_form_and_never_print() {
    let k = AgentKeyPair::generate();
    let bytes = k.secret().expose_secret_bytes();
    let again = AgentKeyPair::from_secret_bytes(&bytes).expect("valid key");
    assert_eq!(again.public(), k.public());
    let shown = format!("{k:?} {:?}", k.secret());
    assert!(
        !shown.contains(&hex::encode(bytes.expose_secret())),
        "{shown}"
    );
    assert!(shown.contains(REDACTED));
    assert_eq!(
        AgentPublicKey::from_bytes(&[1, 2, 3]).err(),
        Some(EnvelopeError::InvalidKey)
    );

    let agent = EnvelopeOpener::new(again);
    let (mut sealer, key) = ChannelSealer::new(k.public()).expect("encapsulate");
    let mut chan = agent.accept_channel(&key).expect("channel");
    let sealed = sealer
        .seal(&ctx(NOW), &pw("Never-Printed-55"))
        .expect("seal");
    let opened = chan.open(&sealed, "endpoint-1", NOW).expect("open");
    let shown = format!("{opened:?} {agent:?} {sealer:?} {chan:?} {key:?} {sealed:?}");
    assert!(!shown.contains("Never-Printed"), "{shown}");
    // The channel key is public, but a log needs no more than a prefix to tell channels apart.
    assert!(!shown.contains(&hex::encode(key.0)), "{shown}");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_open(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let agent = EnvelopeOpener::new(AgentKeyPair::derive(&[7; 32]));
            let (_, mut chan) = channel(&agent);
            prop_assert!(chan.open(&SealedEnvelope::from_bytes(bytes), "endpoint-1", NOW).is_err());
        }

        #[test]
        fn any_mutation_of_a_real_envelope_is_refused(at in any::<proptest::sample::Index>(), val in any::<u8>(), cut in any::<bool>()) {
            let agent = EnvelopeOpener::new(AgentKeyPair::derive(&[9; 32]));
            let (mut sealer, mut chan) = channel(&agent);
            let sealed = sealer.seal(&ctx(NOW), &pw("Prop-Test-9")).expect("seal");
            let mut b = sealed.as_bytes().to_vec();
            let i = at.index(b.len());
            if cut { b.truncate(i) } else { prop_assume!(b[i] != val); b[i] = val; }
            prop_assert!(chan.open(&SealedEnvelope::from_bytes(b), "endpoint-1", NOW).is_err());
        }
    }
}
