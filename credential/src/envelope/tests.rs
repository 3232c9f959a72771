use std::collections::HashMap;

use super::*;

const KAT: &str = include_str!("../../testdata/rfc9180-a2-1.txt");

/// One RFC encryption: sequence number, plaintext, associated data, ciphertext.
type KatEncryption = (u64, Vec<u8>, Vec<u8>, Vec<u8>);

fn kat() -> (HashMap<&'static str, Vec<u8>>, Vec<KatEncryption>) {
    let mut fields = HashMap::new();
    let mut encs = Vec::new();
    for line in KAT.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let parts: Vec<&str> = line.split(' ').collect();
        if parts[0].starts_with("enc.") {
            let h = |i: usize| hex::decode(parts[i]).expect("hex");
            encs.push((parts[1].parse().expect("seq"), h(2), h(3), h(5)));
        } else if let Ok(v) = hex::decode(parts[1]) {
            fields.insert(parts[0], v);
        }
    }
    (fields, encs)
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
    let (f, encs) = kat();
    assert_eq!(encs.len(), 6);
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

#[test]
fn round_trip() {
    let agent = EnvelopeOpener::new(AgentKeyPair::generate());
    let c = ctx(NOW);
    let sealed = seal(agent.keys().public(), &c, &pw("Blue-Harbor-41")).expect("seal");
    assert!(sealed.as_bytes().len() < 200);
    let opened = agent.open(&sealed, "endpoint-1", NOW).expect("open");
    assert_eq!(opened.context, c);
    assert_eq!(opened.password.expose_secret(), "Blue-Harbor-41");
}

#[test]
fn payload_is_not_readable_in_the_clear() {
    let agent = AgentKeyPair::generate();
    let sealed = seal(agent.public(), &ctx(NOW), &pw("Unique-Clear-Text-77")).expect("seal");
    let wire = sealed.as_bytes();
    assert!(!wire.windows(6).any(|w| w == b"Unique"));
}

#[test]
fn wrong_key_is_refused() {
    let a = AgentKeyPair::generate();
    let b = EnvelopeOpener::new(AgentKeyPair::generate());
    let sealed = seal(a.public(), &ctx(NOW), &pw("x-Secret-1")).expect("seal");
    assert_eq!(
        b.open(&sealed, "endpoint-1", NOW).err(),
        Some(EnvelopeError::DecryptionFailed)
    );
}

#[test]
fn every_flipped_bit_is_refused() {
    let agent = EnvelopeOpener::new(AgentKeyPair::generate());
    let sealed = seal(agent.keys().public(), &ctx(NOW), &pw("Flip-Me-1234")).expect("seal");
    let bytes = sealed.as_bytes().to_vec();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            let r = agent.open(&SealedEnvelope::from_bytes(b), "endpoint-1", NOW);
            assert!(r.is_err(), "flipping bit {bit} of byte {i} was accepted");
        }
    }
    // The untouched envelope still opens: none of the failures above reached the replay cache.
    assert!(agent.open(&sealed, "endpoint-1", NOW).is_ok());
}

#[test]
fn changed_associated_data_is_refused_as_tampering() {
    let agent = EnvelopeOpener::new(AgentKeyPair::generate());
    let c = ctx(NOW);
    let sealed = seal(agent.keys().public(), &c, &pw("Tamper-Proof-1")).expect("seal");
    // Re-encode the same ciphertext with a different user name of the same length.
    let mut b = sealed.as_bytes().to_vec();
    let at = b
        .windows(5)
        .position(|w| w == b"alice")
        .expect("user name in clear");
    b[at..at + 5].copy_from_slice(b"admin");
    assert_eq!(
        agent
            .open(&SealedEnvelope::from_bytes(b), "endpoint-1", NOW)
            .err(),
        Some(EnvelopeError::DecryptionFailed)
    );
    // Push the expiry out by a minute.
    let mut b = sealed.as_bytes().to_vec();
    let exp_at = 4 + 6 + 32 + 16;
    b[exp_at..exp_at + 8].copy_from_slice(&(c.expires_at + 60).to_be_bytes());
    assert_eq!(
        agent
            .open(&SealedEnvelope::from_bytes(b), "endpoint-1", NOW)
            .err(),
        Some(EnvelopeError::DecryptionFailed)
    );
}

#[test]
fn expiry_and_lifetime() {
    let agent = EnvelopeOpener::new(AgentKeyPair::generate());
    let c = ctx(NOW);
    let sealed = seal(agent.keys().public(), &c, &pw("Expire-Me-1")).expect("seal");
    assert_eq!(
        agent.open(&sealed, "endpoint-1", c.expires_at).err(),
        Some(EnvelopeError::Expired {
            expires_at: c.expires_at,
            now: c.expires_at
        })
    );
    let mut long = ctx(NOW);
    long.expires_at = NOW + MAX_LIFETIME_SECS + 1;
    let sealed = seal(agent.keys().public(), &long, &pw("Expire-Me-1")).expect("seal");
    assert!(matches!(
        agent.open(&sealed, "endpoint-1", NOW),
        Err(EnvelopeError::LifetimeTooLong { .. })
    ));
}

#[test]
fn replay_is_refused() {
    let agent = EnvelopeOpener::new(AgentKeyPair::generate());
    let c = ctx(NOW);
    let sealed = seal(agent.keys().public(), &c, &pw("Replay-Me-1")).expect("seal");
    assert!(agent.open(&sealed, "endpoint-1", NOW).is_ok());
    assert_eq!(
        agent.open(&sealed, "endpoint-1", NOW + 1).err(),
        Some(EnvelopeError::Replayed {
            request_id: c.request_id
        })
    );
    // A second envelope reusing the request id is a replay too, even with new ciphertext.
    let again = seal(agent.keys().public(), &c, &pw("Replay-Me-1")).expect("seal");
    assert!(matches!(
        agent.open(&again, "endpoint-1", NOW + 2),
        Err(EnvelopeError::Replayed { .. })
    ));
}

#[test]
fn wrong_endpoint_is_refused() {
    let agent = EnvelopeOpener::new(AgentKeyPair::generate());
    let sealed = seal(agent.keys().public(), &ctx(NOW), &pw("Endpoint-1a")).expect("seal");
    assert_eq!(
        agent.open(&sealed, "endpoint-2", NOW).err(),
        Some(EnvelopeError::WrongEndpoint)
    );
}

#[test]
fn replay_cache_memory_is_bounded() {
    let agent = EnvelopeOpener::with_replay_capacity(AgentKeyPair::generate(), 2);
    let open = |now: u64| {
        let sealed = seal(agent.keys().public(), &ctx(now), &pw("Bounded-1")).expect("seal");
        agent.open(&sealed, "endpoint-1", now)
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
    let sealed = seal(agent.keys().public(), &ctx(NOW), &pw("Malformed-1")).expect("seal");
    let good = sealed.as_bytes();
    let open = |b: Vec<u8>| agent.open(&SealedEnvelope::from_bytes(b), "endpoint-1", NOW);
    assert_eq!(
        open(vec![0; MAX_ENVELOPE_LEN + 1]).err(),
        Some(EnvelopeError::TooLarge {
            len: 4097,
            max: 4096
        })
    );
    assert_eq!(
        open(b"CWE2rest".to_vec()).err(),
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
    let mut b = good[..66].to_vec();
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
    let mut c = ctx(NOW);
    c.user_name = "a".repeat(MAX_USER_NAME_LEN + 1);
    assert!(matches!(
        seal(k.public(), &c, &pw("x-Secret-1")),
        Err(EnvelopeError::FieldTooLong { .. })
    ));
    c.user_name = "alice\nadmin".into();
    assert_eq!(
        seal(k.public(), &c, &pw("x-Secret-1")).err(),
        Some(EnvelopeError::BadText { field: "user name" })
    );
    c.user_name = "alice".into();
    c.endpoint_id = String::new();
    assert_eq!(
        seal(k.public(), &c, &pw("x-Secret-1")).err(),
        Some(EnvelopeError::BadText {
            field: "endpoint id"
        })
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
    let sealed = seal(k.public(), &ctx(NOW), &pw("Never-Printed-55")).expect("seal");
    let opened = agent.open(&sealed, "endpoint-1", NOW).expect("open");
    assert!(!format!("{opened:?} {agent:?}").contains("Never-Printed"));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_open(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let agent = EnvelopeOpener::new(AgentKeyPair::derive(&[7; 32]));
            prop_assert!(agent.open(&SealedEnvelope::from_bytes(bytes), "endpoint-1", NOW).is_err());
        }

        #[test]
        fn any_mutation_of_a_real_envelope_is_refused(at in any::<proptest::sample::Index>(), val in any::<u8>(), cut in any::<bool>()) {
            let agent = EnvelopeOpener::new(AgentKeyPair::derive(&[9; 32]));
            let sealed = seal(agent.keys().public(), &ctx(NOW), &pw("Prop-Test-9")).expect("seal");
            let mut b = sealed.as_bytes().to_vec();
            let i = at.index(b.len());
            if cut { b.truncate(i) } else { prop_assume!(b[i] != val); b[i] = val; }
            prop_assert!(agent.open(&SealedEnvelope::from_bytes(b), "endpoint-1", NOW).is_err());
        }
    }
}
