use super::*;

fn all_kinds() -> Vec<Frame> {
    vec![
        Frame::Hello {
            version: 1,
            agent_id: "agent-7f3a".into(),
            agent_version: "0.1.0".into(),
            max_in_flight: 64,
        },
        Frame::Welcome {
            endpoint_id: "endpoint-1".into(),
            heartbeat_ms: 5000,
        },
        Frame::ChannelKey {
            key: ChannelKey([0x5a; 32]),
        },
        Frame::Check {
            request_id: RequestId([3; 16]),
            deadline_ms: 4000,
            envelope: SealedEnvelope::from_bytes(vec![9; 180]),
        },
        Frame::Verdict {
            request_id: RequestId([3; 16]),
            outcome: SignInOutcome::PasswordMustChange,
            directory_us: 2900,
        },
        Frame::Ping(42),
        Frame::Pong(42),
        Frame::GoAway {
            reason: GoAwayReason::Revoked,
            detail: "certificate revoked".into(),
        },
        Frame::GoAway {
            reason: GoAwayReason::ShuttingDown,
            detail: String::new(),
        },
        Frame::Enroll {
            token: Secret::new("cwt1.s3cr3t.ab12".into()),
            host_name: "dc01".into(),
            hpke_public_key: [7; 32],
            csr_pem: "PEM".into(),
        },
    ]
}

#[test]
fn every_kind_round_trips() {
    for f in all_kinds() {
        let bytes = f.to_bytes();
        let len = frame_len(bytes[..4].try_into().expect("4 bytes")).expect("length ok");
        assert_eq!(len, bytes.len() - 4);
        // Frames are not `PartialEq` (an Enroll holds a secret): compare the bytes
        // the decoded frame encodes back to.
        let back = Frame::decode(&bytes[4..]).expect("decodes");
        assert_eq!(back.to_bytes(), bytes, "{f:?}");
    }
}

/// The token is a `Secret` once decoded (redacted in `Debug`, read only on purpose),
/// and turning it into one did not change a byte of the Enroll frame on the wire:
/// agents and endpoints of either side of this change still enroll with each other.
#[test]
fn enroll_token_is_a_secret_and_its_encoding_is_unchanged() {
    let golden: Vec<u8> = [
        &b"\x00\x00\x00\x3e\x08\x00\x10cwt1.s3cr3t.ab12\x00\x04dc01"[..],
        &[7; 32],
        b"\x00\x03PEM",
    ]
    .concat();
    let f = Frame::Enroll {
        token: Secret::new("cwt1.s3cr3t.ab12".into()),
        host_name: "dc01".into(),
        hpke_public_key: [7; 32],
        csr_pem: "PEM".into(),
    };
    assert_eq!(f.to_bytes(), golden);
    let Frame::Enroll { token, .. } = Frame::decode(&golden[4..]).expect("decodes") else {
        panic!("kind")
    };
    assert_eq!(format!("{token:?}"), causeway_credential::REDACTED);
    assert_eq!(format!("{token}"), causeway_credential::REDACTED);
    assert_eq!(token.expose_secret(), "cwt1.s3cr3t.ab12");
}

#[test]
fn every_truncation_and_extension_is_refused() {
    for f in all_kinds() {
        let bytes = f.to_bytes();
        for n in 4..bytes.len() {
            assert!(Frame::decode(&bytes[4..n]).is_err(), "{f:?} cut at {n}");
        }
        let mut longer = bytes[4..].to_vec();
        longer.push(0);
        assert_eq!(
            Frame::decode(&longer).err(),
            Some(FrameError::TrailingBytes(1))
        );
    }
}

#[test]
fn debug_never_shows_a_token_and_long_text_is_cut_not_fatal() {
    let f = Frame::Enroll {
        token: Secret::new("cwt1.SECRETSECRET.abc".into()),
        host_name: "h".into(),
        hpke_public_key: [0; 32],
        csr_pem: "X".into(),
    };
    assert!(!format!("{f:?}").contains("SECRETSECRET"));
    let long = Frame::EnrollRefused {
        reason: format!("{}\u{7}é", "x".repeat(MAX_TEXT_LEN - 1)),
    };
    let back = Frame::decode(&long.to_bytes()[4..]).expect("decodes");
    let Frame::EnrollRefused { reason } = back else {
        panic!("kind")
    };
    assert_eq!(
        reason.len(),
        MAX_TEXT_LEN,
        "cut to the limit at a character boundary"
    );
    assert!(!reason.contains('\u{7}'));
}

#[test]
fn lengths_and_codes_are_checked() {
    assert_eq!(
        frame_len([0, 0, 0, 0]).err(),
        Some(FrameError::BadLength {
            len: 0,
            max: MAX_FRAME_LEN
        })
    );
    assert!(frame_len(u32::MAX.to_be_bytes()).is_err());
    assert!(frame_len((MAX_FRAME_LEN as u32 + 1).to_be_bytes()).is_err());
    assert_eq!(
        Frame::decode(&[0x7f]).err(),
        Some(FrameError::UnknownKind(0x7f))
    );
    let mut v = Frame::Verdict {
        request_id: RequestId([0; 16]),
        outcome: SignInOutcome::Success,
        directory_us: 1,
    }
    .to_bytes();
    v[4 + 1 + 16] = 200;
    assert_eq!(
        Frame::decode(&v[4..]).err(),
        Some(FrameError::UnknownCode {
            what: "outcome",
            code: 200
        })
    );
    // An envelope length beyond the envelope limit is refused before reading it.
    let mut c = vec![K_CHECK];
    c.extend_from_slice(&[0; 20]);
    c.extend_from_slice(&u16::MAX.to_be_bytes());
    assert_eq!(
        Frame::decode(&c).err(),
        Some(FrameError::EnvelopeTooLarge(65535))
    );
    // Control characters in ids are refused.
    let mut h = vec![K_HELLO, 0, 1, 0, 3];
    h.extend_from_slice(b"a\nb");
    assert_eq!(
        Frame::decode(&h).err(),
        Some(FrameError::BadText("agent id"))
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Frame::decode(&body);
        }
    }
}
