use super::ber::*;
use super::*;

#[test]
fn entry_uuid_is_read_in_plain_big_endian_order() {
    let b = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff,
    ];
    let g = uuid_anchor(&b).expect("valid");
    assert_eq!(g.to_string(), "00112233-4455-6677-8899-aabbccddeeff");
    // Not AD's text form: Guid::parse of the same text gives other bytes than the wire's.
    assert_eq!(Guid::parse(&g.to_string()).expect("valid"), g);
    assert_ne!(g.as_bytes(), &b);
    assert!(uuid_anchor(&b[..15]).is_err());
}

#[test]
fn sync_state_and_done_are_read() {
    let mut v = vec![0x30, 0x15, 0x0a, 0x01, 0x03, 0x04, 0x10];
    v.extend([7u8; 16]);
    assert_eq!(
        sync_state(&v).expect("valid"),
        SyncState {
            state: State::Delete,
            uuid: vec![7; 16]
        }
    );
    let d = sync_done(&[0x30, 0x06, 0x04, 0x01, b'c', 0x01, 0x01, 0xff]).expect("valid");
    assert_eq!(d.cookie.as_deref(), Some(&b"c"[..]));
    assert!(d.refresh_deletes);
}

#[test]
fn malformed_values_are_errors_not_panics() {
    for bad in [
        &[][..],
        &[0x30],
        &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
        &[0x30, 0x05, 0x0a, 0x01],
        &[0x30, 0x03, 0x0a, 0x01, 0x09],
        &[0x30, 0x03, 0x0a, 0x01, 0x01],
    ] {
        assert!(sync_state(bad).is_err(), "{bad:?}");
        assert!(sync_done(bad).is_err(), "{bad:?}");
        assert!(sync_info(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn sync_id_set_lists_its_uuids() {
    let mut v = vec![0xa3, 0x29, 0x01, 0x01, 0xff, 0x31, 0x24, 0x04, 0x10];
    v.extend([1u8; 16]);
    v.extend([0x04, 0x10]);
    v.extend([2u8; 16]);
    assert_eq!(
        sync_info(&v).expect("valid"),
        SyncInfo::IdSet {
            uuids: vec![vec![1; 16], vec![2; 16]],
            deletes: true
        }
    );
}

#[test]
fn sync_request_carries_the_cookie() {
    assert_eq!(sync_request(b""), vec![0x30, 0x03, 0x0a, 0x01, 0x01]);
    let long = vec![b'x'; 200];
    let r = sync_request(&long);
    assert_eq!(&r[..3], &[0x30, 0x81, 206]);
    assert_eq!(&r[6..9], &[0x04, 0x81, 200]);
}

#[test]
fn a_server_without_content_sync_is_named_with_the_missing_control() {
    let m = PassError::NoContentSync.to_string();
    assert!(
        m.contains(SYNC_REQUEST_OID) && m.contains("RFC 4533"),
        "{m}"
    );
}
