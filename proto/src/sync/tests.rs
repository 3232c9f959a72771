use super::*;

fn object(anchor: &str) -> Object {
    Object {
        anchor: anchor.into(),
        kind: ObjectKind::User,
        dn: "CN=Alice,OU=Staff,DC=corp,DC=example,DC=com".into(),
        attrs: BTreeMap::from([("upn".into(), vec!["alice@corp.example.com".into()])]),
    }
}

const ANCHOR: &str = "AAECAwQFBgcICQoLDA0ODw==";

#[test]
fn a_batch_round_trips_and_passes_its_checks() {
    let r = Request::Batch {
        run: 7,
        seq: 1,
        changes: vec![
            ObjectChange::Upsert {
                object: object(ANCHOR),
            },
            ObjectChange::Delete {
                anchor: ANCHOR.into(),
                kind: ObjectKind::Group,
                why: "deleted in the source".into(),
            },
        ],
    };
    let bytes = encode(&r);
    let len = message_len(bytes[..4].try_into().expect("ok"), MAX_MESSAGE_LEN).expect("ok");
    let back: Request = decode(&bytes[4..4 + len]).expect("ok");
    back.check().expect("ok");
    assert_eq!(
        serde_json::to_string(&back).expect("ok"),
        serde_json::to_string(&r).expect("ok")
    );
}

#[test]
fn the_token_never_shows_in_debug() {
    let r: Request = decode(
        br#"{"type":"enroll","token":"cwt1.sekrit-token-value","host_name":"h","csr_pem":"x"}"#,
    )
    .expect("ok");
    let shown = format!("{r:?}");
    assert!(!shown.contains("sekrit"), "{shown}");
    match r {
        Request::Enroll { token, .. } => {
            assert_eq!(token.expose_secret(), "cwt1.sekrit-token-value")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_lengths_unknown_fields_and_bad_anchors_are_refused() {
    assert!(matches!(
        message_len([0, 0, 0, 0], 10),
        Err(MessageError::BadLength { len: 0, .. })
    ));
    assert!(matches!(
        message_len((MAX_ENROLL_LEN as u32 + 1).to_be_bytes(), MAX_ENROLL_LEN),
        Err(MessageError::BadLength { .. })
    ));
    let e =
        decode::<Request>(br#"{"type":"lease","connector":"x","extra":1}"#).expect_err("refused");
    assert!(matches!(e, MessageError::Malformed { .. }), "{e}");
    let e = decode::<Request>(b"{\"type\":\"lease\"").expect_err("refused");
    assert!(e.to_string().contains("ends early"), "{e}");
    for bad in [
        "",
        "AAECAwQFBgcICQoLDA0ODw",
        "AAECAwQFBgcICQoLDA0O*w==",
        "x".repeat(5000).as_str(),
    ] {
        assert!(object(bad).check().is_err(), "{bad}");
    }
    let mut o = object(ANCHOR);
    o.attrs.insert("upn".into(), vec!["a\u{0}b".into()]);
    assert!(o.check().is_err());
    let mut o = object(ANCHOR);
    o.attrs
        .insert("members".into(), vec![String::new(); MAX_VALUES + 1]);
    assert!(o
        .check()
        .expect_err("refused")
        .to_string()
        .contains("values"));
    let big = Request::Batch {
        run: 1,
        seq: 1,
        changes: vec![
            ObjectChange::Delete {
                anchor: ANCHOR.into(),
                kind: ObjectKind::User,
                why: String::new()
            };
            MAX_BATCH + 1
        ],
    };
    assert!(big
        .check()
        .expect_err("refused")
        .to_string()
        .contains("changes"));
}

#[test]
fn a_renewal_round_trips_is_bounded_like_enrollment_and_hides_its_pem_in_debug() {
    let csr =
        "-----BEGIN CERTIFICATE REQUEST-----\nMIIBcsr-body\n-----END CERTIFICATE REQUEST-----\n";
    let back: Request = decode(
        &encode(&Request::Renew {
            csr_pem: csr.into(),
        })[4..],
    )
    .expect("ok");
    back.check().expect("ok");
    let shown = format!("{back:?}");
    assert!(!shown.contains("MIIBcsr-body"), "{shown}");
    assert!(matches!(&back, Request::Renew { csr_pem } if csr_pem == csr));
    let big = Request::Renew {
        csr_pem: "x".repeat(MAX_ENROLL_LEN + 1),
    };
    assert!(big
        .check()
        .expect_err("refused")
        .to_string()
        .contains("csr_pem"));
    let e = decode::<Request>(br#"{"type":"renew","csr_pem":"x","host_id":"agt-1"}"#)
        .expect_err("a renewal names no host");
    assert!(matches!(e, MessageError::Malformed { .. }), "{e}");
    let r = Response::Renewed {
        cert_pem: "cert".into(),
    };
    assert_eq!(decode::<Response>(&encode(&r)[4..]).expect("ok"), r);
}

fn verifier_change(verifier: Option<causeway_credential::PhsVerifier>) -> VerifierChange {
    VerifierChange {
        anchor: ANCHOR.into(),
        verifier,
        must_change: true,
        disabled: false,
        account_expires: Some(1_700_000_000),
        changed_at: None,
    }
}

/// A hash batch round-trips with its verifier intact, and neither the request's nor the
/// change's `Debug` shows the verifier's key or salt.
#[test]
fn a_hash_batch_round_trips_and_its_debug_hides_the_verifier() {
    let pw = causeway_credential::Password::new("Blue-Harbor-41".into()).expect("ok");
    let v = causeway_credential::PhsVerifier::derive(&pw);
    let text = v.expose_encoded();
    let r = Request::HashBatch {
        connector: "ldap".into(),
        changes: vec![verifier_change(Some(v)), verifier_change(None)],
    };
    let bytes = encode(&r);
    let back: Request = decode(&bytes[4..]).expect("ok");
    back.check().expect("ok");
    let Request::HashBatch { changes, .. } = &back else {
        panic!("not a hash batch")
    };
    let got = changes[0].verifier.as_ref().expect("a verifier");
    assert!(got.verify(&pw));
    assert!(changes[1].verifier.is_none());
    let key = &text[text.len() - 65..text.len() - 1];
    let salt = &text["v1;PPH1_MD4,".len().."v1;PPH1_MD4,".len() + 20];
    for shown in [format!("{back:?}"), format!("{:?}", changes[0])] {
        assert!(!shown.contains(key) && !shown.contains(salt), "{shown}");
    }
}

/// The verifier field takes only a verifier: an NT hash (hex, as slapd stores it) or
/// anything else there is a malformed message, and so is an unknown field next to it.
#[test]
fn a_hash_batch_carries_no_nt_hash() {
    for body in [
        r#"{"type":"hash_batch","connector":"c","changes":[{"anchor":"AAECAwQFBgcICQoLDA0ODw==","verifier":"9172D29A2718FB749F12DEC01E082C92","must_change":false,"disabled":false,"account_expires":null,"changed_at":null}]}"#,
        r#"{"type":"hash_batch","connector":"c","changes":[{"anchor":"AAECAwQFBgcICQoLDA0ODw==","nt_hash":"9172D29A2718FB749F12DEC01E082C92","must_change":false,"disabled":false,"account_expires":null,"changed_at":null}]}"#,
    ] {
        assert!(
            matches!(
                decode::<Request>(body.as_bytes()),
                Err(MessageError::Malformed { .. })
            ),
            "{body}"
        );
    }
    let too_many = Request::HashBatch {
        connector: "c".into(),
        changes: (0..=MAX_HASH_BATCH)
            .map(|_| verifier_change(None))
            .collect(),
    };
    assert!(matches!(
        too_many.check(),
        Err(MessageError::OutOfBounds(_))
    ));
    let mut late = verifier_change(None);
    late.account_expires = Some(u64::MAX);
    let far = Request::HashBatch {
        connector: "c".into(),
        changes: vec![late],
    };
    assert!(matches!(far.check(), Err(MessageError::OutOfBounds(_))));
}
