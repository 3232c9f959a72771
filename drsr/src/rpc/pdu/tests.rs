use super::*;

const MAX: usize = 5840;

/// A bind_ack as Samba sends it: secondary address "49153\0", one accepted result with NDR 2.0, and optionally an
/// NTLM verifier.
pub(crate) fn bind_ack(call_id: u32, result: u16, auth: Option<&[u8]>) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&5840u16.to_le_bytes());
    body.extend_from_slice(&5840u16.to_le_bytes());
    body.extend_from_slice(&0x1234u32.to_le_bytes());
    body.extend_from_slice(&6u16.to_le_bytes());
    body.extend_from_slice(b"49153\0"); // ends at offset 32: no padding needed
    body.extend_from_slice(&[1, 0, 0, 0]);
    body.extend_from_slice(&result.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&NDR20.0);
    body.extend_from_slice(&NDR20.1.to_le_bytes());
    let v = auth.map(|value| AuthVerifier {
        auth_type: 10,
        auth_level: 6,
        pad_length: 0,
        context_id: 1,
        value,
    });
    finish(PType::BindAck, 3, call_id, body, v.as_ref())
}

/// A response fragment with `stub` and no verifier.
pub(crate) fn response(call_id: u32, flags: u8, stub: &[u8]) -> Vec<u8> {
    let mut body = vec![0; 8];
    body[..4].copy_from_slice(&u32::try_from(stub.len()).unwrap_or(0).to_le_bytes());
    body.extend_from_slice(stub);
    finish(PType::Response, flags, call_id, body, None)
}

/// A fault with `status`.
pub(crate) fn fault(call_id: u32, status: u32) -> Vec<u8> {
    let mut body = vec![0; 8];
    body.extend_from_slice(&status.to_le_bytes());
    body.extend_from_slice(&[0; 4]);
    finish(PType::Fault, 3, call_id, body, None)
}

#[test]
fn an_unauthenticated_bind_is_the_72_bytes_of_c706() {
    let ctx = Context {
        id: 0,
        uuid: crate::rpc::DRSUAPI.uuid,
        version: (4, 0),
    };
    let b = encode_bind(PType::Bind, 1, 5840, 5840, &ctx, None);
    // Independently written out from [C706] 12.6.4.3 (the lab test sends these bytes with
    // flags 0x03 to show that Samba refuses calls on an unsealed bind).
    let want = "05000b07100000004800000001000000d016d01600000000010000000000010035\
                4251e3064bd111ab0400c04fc2dcd204000000045d888aeb1cc9119fe808002b10486002000000";
    let want: Vec<u8> = (0..want.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&want[i..i + 2], 16).ok())
        .collect();
    // Flags 0x07: first + last fragment + PFC_SUPPORT_HEADER_SIGN.
    assert_eq!(b, want);
}

#[test]
fn an_alter_context_differs_from_a_bind_only_in_its_type() {
    let ctx = Context {
        id: 0,
        uuid: [7; 16],
        version: (1, 2),
    };
    let mut a = encode_bind(PType::AlterContext, 9, 4280, 4280, &ctx, None);
    let b = encode_bind(PType::Bind, 9, 4280, 4280, &ctx, None);
    assert_eq!(a[2], 14);
    a[2] = 11;
    assert_eq!(a, b);
}

#[test]
fn a_bind_with_a_verifier_counts_it_in_frag_and_auth_length() {
    let ctx = Context {
        id: 0,
        uuid: [7; 16],
        version: (4, 0),
    };
    let token = [0xaa; 40];
    let v = AuthVerifier {
        auth_type: 10,
        auth_level: 6,
        pad_length: 0,
        context_id: 1,
        value: &token,
    };
    let b = encode_bind(PType::Bind, 1, 5840, 5840, &ctx, Some(&v));
    assert_eq!(usize::from(u16::from_le_bytes([b[8], b[9]])), b.len());
    assert_eq!(u16::from_le_bytes([b[10], b[11]]), 40);
    assert_eq!(&b[72..80], &[10, 6, 0, 0, 1, 0, 0, 0]);
    assert_eq!(&b[80..], &token);
}

#[test]
fn a_sealed_request_pads_the_stub_to_16_and_leaves_room_for_the_signature() {
    let stub = [1u8; 37];
    let (f, range) = encode_request(5, 3, 0, 12, 37, &stub, Some((10, 6, 1, 16)));
    assert_eq!(range, 24..24 + 48);
    assert_eq!(f.len(), 24 + 48 + 8 + 16);
    assert_eq!(usize::from(u16::from_le_bytes([f[8], f[9]])), f.len());
    assert_eq!(u16::from_le_bytes([f[10], f[11]]), 16);
    assert_eq!(u32::from_le_bytes([f[16], f[17], f[18], f[19]]), 37); // alloc_hint
    assert_eq!(u16::from_le_bytes([f[22], f[23]]), 12); // opnum
    assert_eq!(&f[72..80], &[10, 6, 11, 0, 1, 0, 0, 0]); // pad_length 11
                                                         // The sec_trailer is 4-byte aligned from the start of the PDU ([MS-RPCE] 2.2.2.11).
    assert_eq!(72 % 4, 0);
}

#[test]
fn an_unsealed_request_is_not_padded() {
    let (f, range) = encode_request(5, 3, 0, 3, 5, &[9; 5], None);
    assert_eq!(range, 24..29);
    assert_eq!(f.len(), 29);
    assert_eq!(&f[10..12], &[0, 0]);
}

#[test]
fn a_bind_ack_decodes_with_its_sizes_result_and_verifier() {
    let token = [0x55u8; 30];
    let ack = bind_ack(1, 0, Some(&token));
    let (h, pdu) = decode_server_pdu(&ack, MAX).expect("valid bind_ack");
    assert_eq!(h.call_id, 1);
    match pdu {
        ServerPdu::BindAck {
            max_xmit,
            max_recv,
            result,
            auth,
        } => {
            assert_eq!((max_xmit, max_recv), (5840, 5840));
            assert_eq!(
                result,
                ContextResult {
                    result: 0,
                    reason: 0
                }
            );
            assert_eq!(auth.map(|a| a.value), Some(&token[..]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_response_decodes_to_its_stub_and_a_fault_to_its_status() {
    let r = response(4, 3, b"stub!");
    let (h, pdu) = decode_server_pdu(&r, MAX).expect("response");
    assert!(h.is_last());
    assert_eq!(
        pdu,
        ServerPdu::Response {
            stub: b"stub!",
            auth: None
        }
    );
    let f = fault(4, 0x1c01_0002);
    let (_, pdu) = decode_server_pdu(&f, MAX).expect("fault");
    assert_eq!(
        pdu,
        ServerPdu::Fault {
            status: 0x1c01_0002
        }
    );
    assert_eq!(fault_name(0x1c01_0002), Some("nca_s_op_rng_error"));
    assert_eq!(fault_name(5), Some("access denied (ERROR_ACCESS_DENIED)"));
}

#[test]
fn a_bind_nak_decodes_to_its_named_reason() {
    let n = finish(PType::BindNak, 3, 1, vec![8, 0, 0, 0], None);
    let (_, pdu) = decode_server_pdu(&n, MAX).expect("bind_nak");
    assert_eq!(pdu, ServerPdu::BindNak { reason: 8 });
    assert_eq!(
        bind_nak_reason_name(8),
        "authentication_type_not_recognized"
    );
}

#[test]
fn every_truncation_of_every_server_pdu_is_an_error_not_a_panic() {
    for pdu in [
        bind_ack(1, 0, Some(&[1; 20])),
        response(1, 3, &[2; 40]),
        fault(1, 5),
    ] {
        for cut in 0..pdu.len() {
            assert!(decode_server_pdu(&pdu[..cut], MAX).is_err(), "cut at {cut}");
        }
    }
}

#[test]
fn a_frag_length_beyond_the_negotiated_maximum_is_refused_from_the_header_alone() {
    let mut r = response(1, 3, &[0; 16]);
    r[8..10].copy_from_slice(&6000u16.to_le_bytes());
    let head: [u8; HEADER_LEN] = r[..HEADER_LEN].try_into().expect("16 bytes");
    assert_eq!(
        Header::decode(&head, MAX),
        Err(PduError::FragLength {
            len: 6000,
            min: 16,
            max: MAX
        })
    );
    // Shorter than a header.
    r[8..10].copy_from_slice(&10u16.to_le_bytes());
    let head: [u8; HEADER_LEN] = r[..HEADER_LEN].try_into().expect("16 bytes");
    assert!(matches!(
        Header::decode(&head, MAX),
        Err(PduError::FragLength { len: 10, .. })
    ));
}

#[test]
fn a_frag_length_that_disagrees_with_the_fragment_is_refused() {
    let mut r = response(1, 3, &[0; 16]);
    r.push(0);
    assert!(matches!(
        decode_server_pdu(&r, MAX),
        Err(PduError::FragLength { .. })
    ));
}

#[test]
fn an_auth_length_beyond_the_fragment_is_refused() {
    let mut r = response(1, 3, &[0; 16]);
    r[10..12].copy_from_slice(&100u16.to_le_bytes());
    assert!(matches!(
        decode_server_pdu(&r, MAX),
        Err(PduError::AuthLength {
            auth_length: 100,
            ..
        })
    ));
    // Just fits the header check but leaves no room for the response header.
    let mut r = response(1, 3, &[]);
    r[10..12].copy_from_slice(&0u16.to_le_bytes());
    let v = AuthVerifier {
        auth_type: 10,
        auth_level: 6,
        pad_length: 0,
        context_id: 1,
        value: &[0; 16],
    };
    let f = finish(PType::Response, 3, 1, vec![0; 4], Some(&v));
    assert!(matches!(
        decode_server_pdu(&f, MAX),
        Err(PduError::Truncated { .. })
    ));
}

#[test]
fn an_auth_pad_longer_than_the_stub_is_refused() {
    let v = AuthVerifier {
        auth_type: 10,
        auth_level: 6,
        pad_length: 200,
        context_id: 1,
        value: &[0; 16],
    };
    let mut body = vec![0; 8];
    body.extend_from_slice(&[0; 16]);
    let f = finish(PType::Response, 3, 1, body, Some(&v));
    assert_eq!(
        decode_server_pdu(&f, MAX),
        Err(PduError::AuthPad { pad: 200, stub: 16 })
    );
}

#[test]
fn other_versions_byte_orders_and_types_are_refused() {
    let mut r = response(1, 3, &[0; 4]);
    r[0] = 4;
    assert!(matches!(
        decode_server_pdu(&r, MAX),
        Err(PduError::Version { major: 4, minor: 0 })
    ));
    let mut r = response(1, 3, &[0; 4]);
    r[4] = 0x00; // big-endian integers
    assert!(matches!(
        decode_server_pdu(&r, MAX),
        Err(PduError::DataRepresentation(_))
    ));
    let mut r = response(1, 3, &[0; 4]);
    r[2] = PType::Request as u8;
    assert_eq!(decode_server_pdu(&r, MAX), Err(PduError::UnexpectedType(0)));
}

#[test]
fn a_bind_ack_with_other_than_one_result_is_refused() {
    let mut ack = bind_ack(1, 0, None);
    ack[HEADER_LEN + 16] = 2; // n_results after max_xmit, max_recv, group, "49153\0", pad
    assert_eq!(decode_server_pdu(&ack, MAX), Err(PduError::ResultCount(2)));
}

#[test]
fn a_verifier_debug_shows_its_length_not_its_bytes() {
    let v = AuthVerifier {
        auth_type: 10,
        auth_level: 6,
        pad_length: 0,
        context_id: 1,
        value: &[0xde; 16],
    };
    let s = format!("{v:?}");
    assert!(s.contains("value_len: 16") && !s.contains("222"), "{s}");
}
