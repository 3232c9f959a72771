//! Connection-oriented DCE/RPC 5.0 PDUs ([C706] 12.6, [MS-RPCE] 2.2.2): what this client
//! sends (bind, alter_context, auth3, request) and a bounded decoder of what a server sends
//! (bind_ack, alter_context_resp, bind_nak, response, fault). The decoder only borrows the
//! fragment it is given and never allocates from a length the server chose.

use std::fmt;

/// Length of the common header every PDU starts with ([C706] 12.6.3.1).
pub(crate) const HEADER_LEN: usize = 16;
/// Length of a request or response header: the common header, alloc_hint, p_cont_id and
/// opnum (request) or cancel_count + reserved (response).
pub(crate) const REQUEST_HEADER_LEN: usize = 24;
/// Length of the `sec_trailer` in front of the auth value ([MS-RPCE] 2.2.2.11).
pub(crate) const SEC_TRAILER_LEN: usize = 8;
/// Stub data is padded to this multiple before the `sec_trailer` ([MS-RPCE] 2.2.2.11;
/// Windows and Samba both pad to 16 when sealing).
pub(crate) const AUTH_PAD_ALIGN: usize = 16;

/// `PFC_FIRST_FRAG`.
pub(crate) const PFC_FIRST_FRAG: u8 = 0x01;
/// `PFC_LAST_FRAG`.
pub(crate) const PFC_LAST_FRAG: u8 = 0x02;
/// `PFC_SUPPORT_HEADER_SIGN` in bind/alter_context ([MS-RPCE] 2.2.2.3): the header is
/// covered by the signature. NTLM always signs it; the flag tells the server we know.
pub(crate) const PFC_SUPPORT_HEADER_SIGN: u8 = 0x04;

/// Little-endian integers, ASCII characters, IEEE floats ([C706] 14.2.5).
const DREP_LE: [u8; 4] = [0x10, 0x00, 0x00, 0x00];

/// The NDR 2.0 transfer syntax, 8a885d04-1ceb-11c9-9fe8-08002b104860 v2, in wire order.
pub(crate) const NDR20: ([u8; 16], u32) = (
    [
        0x04, 0x5d, 0x88, 0x8a, 0xeb, 0x1c, 0xc9, 0x11, 0x9f, 0xe8, 0x08, 0x00, 0x2b, 0x10, 0x48,
        0x60,
    ],
    2,
);

/// PDU types this client sends or accepts ([C706] 12.6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum PType {
    Request = 0,
    Response = 2,
    Fault = 3,
    Bind = 11,
    BindAck = 12,
    BindNak = 13,
    // Encoded like a bind (encode_bind); an association binds one context, so only the
    // tests send it today. Kept so that a second context or a Kerberos leg is one call.
    #[allow(dead_code)]
    AlterContext = 14,
    AlterContextResp = 15,
    Auth3 = 16,
}

/// What was wrong with a PDU the server sent. Always the server's fault (or a middlebox's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PduError {
    /// Fewer bytes than the structure needs.
    #[error("the {what} is truncated: it needs {need} bytes, the fragment has {have}")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes there.
        have: usize,
    },
    /// Not DCE/RPC 5.0.
    #[error("the server speaks RPC version {major}.{minor}, not 5.0")]
    Version {
        /// rpc_vers.
        major: u8,
        /// rpc_vers_minor.
        minor: u8,
    },
    /// Not little-endian ASCII NDR.
    #[error("the server uses data representation {0:02x?}; only little-endian ASCII is supported")]
    DataRepresentation([u8; 4]),
    /// frag_length is shorter than a header or longer than negotiated.
    #[error("frag_length {len} is outside {min}..={max}")]
    FragLength {
        /// The frag_length the server sent.
        len: usize,
        /// Smallest possible.
        min: usize,
        /// The negotiated maximum.
        max: usize,
    },
    /// auth_length does not fit in the fragment.
    #[error("auth_length {auth_length} does not fit in a fragment of {frag_length} bytes")]
    AuthLength {
        /// The auth_length the server sent.
        auth_length: usize,
        /// The fragment's length.
        frag_length: usize,
    },
    /// auth_pad_length is longer than the stub it pads.
    #[error("auth_pad_length {pad} is longer than the {stub} stub bytes it pads")]
    AuthPad {
        /// The pad length the server sent.
        pad: usize,
        /// The stub length.
        stub: usize,
    },
    /// A PDU type this client never expects from a server.
    #[error("unexpected PDU type {0}")]
    UnexpectedType(u8),
    /// The bind_ack has no results, or more than the one context this client offered.
    #[error("the bind_ack has {0} presentation results; one was offered")]
    ResultCount(u8),
}

/// The common header ([C706] 12.6.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) ptype: u8,
    pub(crate) flags: u8,
    pub(crate) frag_length: u16,
    pub(crate) auth_length: u16,
    pub(crate) call_id: u32,
}

impl Header {
    /// Decodes and checks a header against the negotiated maximum fragment size, before
    /// the rest of the fragment is read.
    pub(crate) fn decode(b: &[u8; HEADER_LEN], max_frag: usize) -> Result<Self, PduError> {
        if b[0] != 5 || b[1] != 0 {
            return Err(PduError::Version {
                major: b[0],
                minor: b[1],
            });
        }
        let drep = [b[4], b[5], b[6], b[7]];
        // Only the integer (low nibble of byte 0 = 1: little endian) and character (ASCII)
        // formats matter to NDR here; floats are never sent by DRSUAPI.
        if drep[0] & 0xf0 != 0x10 || drep[0] & 0x0f != 0 {
            return Err(PduError::DataRepresentation(drep));
        }
        let h = Self {
            ptype: b[2],
            flags: b[3],
            frag_length: u16::from_le_bytes([b[8], b[9]]),
            auth_length: u16::from_le_bytes([b[10], b[11]]),
            call_id: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        };
        let len = usize::from(h.frag_length);
        if len < HEADER_LEN || len > max_frag {
            return Err(PduError::FragLength {
                len,
                min: HEADER_LEN,
                max: max_frag,
            });
        }
        let auth = usize::from(h.auth_length);
        if auth != 0 && HEADER_LEN + SEC_TRAILER_LEN + auth > len {
            return Err(PduError::AuthLength {
                auth_length: auth,
                frag_length: len,
            });
        }
        Ok(h)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[5, 0, self.ptype, self.flags]);
        out.extend_from_slice(&DREP_LE);
        out.extend_from_slice(&self.frag_length.to_le_bytes());
        out.extend_from_slice(&self.auth_length.to_le_bytes());
        out.extend_from_slice(&self.call_id.to_le_bytes());
    }

    pub(crate) fn is_last(&self) -> bool {
        self.flags & PFC_LAST_FRAG != 0
    }
}

/// The `sec_trailer` ([MS-RPCE] 2.2.2.11) and the auth value after it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct AuthVerifier<'a> {
    pub(crate) auth_type: u8,
    pub(crate) auth_level: u8,
    pub(crate) pad_length: u8,
    pub(crate) context_id: u32,
    pub(crate) value: &'a [u8],
}

impl fmt::Debug for AuthVerifier<'_> {
    // The value is a security token or signature: its length is enough to debug with.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthVerifier")
            .field("auth_type", &self.auth_type)
            .field("auth_level", &self.auth_level)
            .field("pad_length", &self.pad_length)
            .field("context_id", &self.context_id)
            .field("value_len", &self.value.len())
            .finish()
    }
}

impl AuthVerifier<'_> {
    fn encode_trailer(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.auth_type, self.auth_level, self.pad_length, 0]);
        out.extend_from_slice(&self.context_id.to_le_bytes());
    }
}

/// A presentation context offered in a bind: the interface and NDR 2.0.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context {
    pub(crate) id: u16,
    pub(crate) uuid: [u8; 16],
    pub(crate) version: (u16, u16),
}

/// Encodes a bind or alter_context ([C706] 12.6.4.3) with one presentation context.
pub(crate) fn encode_bind(
    ptype: PType,
    call_id: u32,
    max_xmit: u16,
    max_recv: u16,
    ctx: &Context,
    auth: Option<&AuthVerifier<'_>>,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(72);
    body.extend_from_slice(&max_xmit.to_le_bytes());
    body.extend_from_slice(&max_recv.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes()); // assoc_group_id: a new group
    body.extend_from_slice(&[1, 0, 0, 0]); // n_context_elem, reserved, reserved2
    body.extend_from_slice(&ctx.id.to_le_bytes());
    body.extend_from_slice(&[1, 0]); // n_transfer_syn, reserved
    body.extend_from_slice(&ctx.uuid);
    body.extend_from_slice(&ctx.version.0.to_le_bytes());
    body.extend_from_slice(&ctx.version.1.to_le_bytes());
    body.extend_from_slice(&NDR20.0);
    body.extend_from_slice(&NDR20.1.to_le_bytes());
    finish(
        ptype,
        PFC_FIRST_FRAG | PFC_LAST_FRAG | PFC_SUPPORT_HEADER_SIGN,
        call_id,
        body,
        auth,
    )
}

/// Encodes an auth3 ([MS-RPCE] 2.2.2.10): four bytes of padding, then the verifier.
pub(crate) fn encode_auth3(call_id: u32, auth: &AuthVerifier<'_>) -> Vec<u8> {
    finish(
        PType::Auth3,
        PFC_FIRST_FRAG | PFC_LAST_FRAG,
        call_id,
        vec![0; 4],
        Some(auth),
    )
}

fn finish(
    ptype: PType,
    flags: u8,
    call_id: u32,
    body: Vec<u8>,
    auth: Option<&AuthVerifier<'_>>,
) -> Vec<u8> {
    let auth_len = auth.map_or(0, |a| a.value.len());
    let frag = HEADER_LEN + body.len() + auth.map_or(0, |_| SEC_TRAILER_LEN) + auth_len;
    let mut out = Vec::with_capacity(frag);
    Header {
        ptype: ptype as u8,
        flags,
        frag_length: to_u16(frag),
        auth_length: to_u16(auth_len),
        call_id,
    }
    .encode(&mut out);
    out.extend_from_slice(&body);
    if let Some(a) = auth {
        a.encode_trailer(&mut out);
        out.extend_from_slice(a.value);
    }
    out
}

// Every PDU this client builds is bounded by a u16 max_xmit_frag chosen or accepted at
// bind time, and bind/auth3 PDUs are small; a longer one is a bug here, not input.
fn to_u16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// Builds one request fragment ([C706] 12.6.4.9) whose stub is `stub`. With `auth`, the
/// stub is padded to [`AUTH_PAD_ALIGN`] and followed by a `sec_trailer` and room for a
/// signature of `sig_len` zero bytes that the caller fills in after sealing. Returns the
/// fragment and the range of the (padded) stub inside it.
pub(crate) fn encode_request(
    call_id: u32,
    flags: u8,
    ctx_id: u16,
    opnum: u16,
    alloc_hint: u32,
    stub: &[u8],
    auth: Option<(u8, u8, u32, usize)>,
) -> (Vec<u8>, std::ops::Range<usize>) {
    let pad = match auth {
        Some(_) => (AUTH_PAD_ALIGN - stub.len() % AUTH_PAD_ALIGN) % AUTH_PAD_ALIGN,
        None => 0,
    };
    let sig_len = auth.map_or(0, |a| a.3);
    let frag =
        REQUEST_HEADER_LEN + stub.len() + pad + auth.map_or(0, |_| SEC_TRAILER_LEN) + sig_len;
    let mut out = Vec::with_capacity(frag);
    Header {
        ptype: PType::Request as u8,
        flags,
        frag_length: to_u16(frag),
        auth_length: to_u16(sig_len),
        call_id,
    }
    .encode(&mut out);
    out.extend_from_slice(&alloc_hint.to_le_bytes());
    out.extend_from_slice(&ctx_id.to_le_bytes());
    out.extend_from_slice(&opnum.to_le_bytes());
    out.extend_from_slice(stub);
    out.resize(out.len() + pad, 0);
    let stub_range = REQUEST_HEADER_LEN..out.len();
    if let Some((auth_type, auth_level, context_id, _)) = auth {
        AuthVerifier {
            auth_type,
            auth_level,
            pad_length: u8::try_from(pad).unwrap_or(0),
            context_id,
            value: &[],
        }
        .encode_trailer(&mut out);
        out.resize(out.len() + sig_len, 0);
    }
    (out, stub_range)
}

/// The result of one presentation context in a bind_ack ([C706] 12.6.3.1 `p_result_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ContextResult {
    pub(crate) result: u16,
    pub(crate) reason: u16,
}

/// A PDU from the server, decoded from one whole fragment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ServerPdu<'a> {
    /// bind_ack or alter_context_resp ([C706] 12.6.4.4).
    BindAck {
        max_xmit: u16,
        max_recv: u16,
        result: ContextResult,
        auth: Option<AuthVerifier<'a>>,
    },
    /// bind_nak ([C706] 12.6.4.5).
    BindNak { reason: u16 },
    /// A response fragment ([C706] 12.6.4.10). `stub` still includes the auth padding
    /// (it is sealed; the padding is removed after unsealing).
    Response {
        stub: &'a [u8],
        auth: Option<AuthVerifier<'a>>,
    },
    /// A fault ([C706] 12.6.4.7).
    Fault { status: u32 },
}

/// Decodes one whole fragment (header included) that a server sent. The header is checked
/// again here (the connection checked it before reading the rest), so that this function
/// alone is what the fuzz target exercises.
pub(crate) fn decode_server_pdu(
    frag: &[u8],
    max_frag: usize,
) -> Result<(Header, ServerPdu<'_>), PduError> {
    let head: &[u8; HEADER_LEN] = frag
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(PduError::Truncated {
            what: "PDU header",
            need: HEADER_LEN,
            have: frag.len(),
        })?;
    let h = Header::decode(head, max_frag)?;
    let len = usize::from(h.frag_length);
    if frag.len() != len {
        return Err(PduError::FragLength {
            len: frag.len(),
            min: len,
            max: len,
        });
    }
    // Split off the verifier first: the body is what lies between header and sec_trailer.
    let (body, auth) = split_auth(frag, &h)?;
    let mut r = Reader { b: body, at: 0 };
    let pdu = match h.ptype {
        t if t == PType::BindAck as u8 || t == PType::AlterContextResp as u8 => {
            let max_xmit = r.u16("bind_ack")?;
            let max_recv = r.u16("bind_ack")?;
            let _assoc_group = r.u32("bind_ack")?;
            let addr_len = usize::from(r.u16("bind_ack secondary address")?);
            r.take(addr_len, "bind_ack secondary address")?;
            // p_result_list is 4-byte aligned relative to the start of the PDU.
            let abs = HEADER_LEN + r.at;
            r.take((4 - abs % 4) % 4, "bind_ack padding")?;
            let n = r.u8("bind_ack result list")?;
            r.take(3, "bind_ack result list")?;
            if n != 1 {
                return Err(PduError::ResultCount(n));
            }
            let result = r.u16("bind_ack result")?;
            let reason = r.u16("bind_ack result")?;
            r.take(20, "bind_ack transfer syntax")?;
            ServerPdu::BindAck {
                max_xmit,
                max_recv,
                result: ContextResult { result, reason },
                auth,
            }
        }
        t if t == PType::BindNak as u8 => ServerPdu::BindNak {
            reason: r.u16("bind_nak")?,
        },
        t if t == PType::Response as u8 => {
            r.take(8, "response header")?; // alloc_hint, p_cont_id, cancel_count, reserved
            let stub = &body[r.at..];
            if let Some(a) = &auth {
                if usize::from(a.pad_length) > stub.len() {
                    return Err(PduError::AuthPad {
                        pad: a.pad_length.into(),
                        stub: stub.len(),
                    });
                }
            }
            ServerPdu::Response { stub, auth }
        }
        t if t == PType::Fault as u8 => {
            r.take(8, "fault header")?;
            ServerPdu::Fault {
                status: r.u32("fault status")?,
            }
        }
        t => return Err(PduError::UnexpectedType(t)),
    };
    Ok((h, pdu))
}

/// Splits a fragment into its body (after the common header, before the sec_trailer) and
/// its auth verifier, if auth_length says there is one.
fn split_auth<'a>(
    frag: &'a [u8],
    h: &Header,
) -> Result<(&'a [u8], Option<AuthVerifier<'a>>), PduError> {
    let auth_len = usize::from(h.auth_length);
    if auth_len == 0 {
        return Ok((&frag[HEADER_LEN..], None));
    }
    let trailer_at = frag
        .len()
        .checked_sub(auth_len + SEC_TRAILER_LEN)
        .filter(|&at| at >= HEADER_LEN)
        .ok_or(PduError::AuthLength {
            auth_length: auth_len,
            frag_length: frag.len(),
        })?;
    let t = &frag[trailer_at..trailer_at + SEC_TRAILER_LEN];
    let auth = AuthVerifier {
        auth_type: t[0],
        auth_level: t[1],
        pad_length: t[2],
        context_id: u32::from_le_bytes([t[4], t[5], t[6], t[7]]),
        value: &frag[trailer_at + SEC_TRAILER_LEN..],
    };
    Ok((&frag[HEADER_LEN..trailer_at], Some(auth)))
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], PduError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or(PduError::Truncated {
                what,
                need: HEADER_LEN + self.at + n,
                have: HEADER_LEN + self.b.len(),
            })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, PduError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, PduError> {
        let s = self.take(2, what)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, PduError> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
}

/// The name of a bind_nak `provider_reject_reason` ([C706] 12.6.3.1, [MS-RPCE] 2.2.2.5).
pub(crate) fn bind_nak_reason_name(reason: u16) -> &'static str {
    match reason {
        0 => "reason_not_specified",
        1 => "temporary_congestion",
        2 => "local_limit_exceeded",
        3 => "called_paddr_unknown",
        4 => "protocol_version_not_supported",
        5 => "default_context_not_supported",
        6 => "user_data_not_readable",
        7 => "no_psap_available",
        8 => "authentication_type_not_recognized",
        9 => "invalid_checksum",
        _ => "unknown reason",
    }
}

/// The name of a presentation-context rejection reason ([C706] 12.6.3.1 `p_provider_reason_t`).
pub(crate) fn context_reason_name(reason: u16) -> &'static str {
    match reason {
        0 => "reason_not_specified",
        1 => "abstract_syntax_not_supported",
        2 => "proposed_transfer_syntaxes_not_supported",
        3 => "local_limit_exceeded",
        _ => "unknown reason",
    }
}

/// The name of a fault status ([C706] appendix E, [MS-RPCE] 2.2.2.7 and 3.1.1.5.5).
pub(crate) fn fault_name(status: u32) -> Option<&'static str> {
    Some(match status {
        0x0000_0005 => "access denied (ERROR_ACCESS_DENIED)",
        0x0000_0721 => "RPC_S_SEC_PKG_ERROR",
        0x0000_06f7 => "RPC_X_BAD_STUB_DATA",
        0x0000_06d8 => "EPT_S_CANT_PERFORM_OP",
        0x1c01_0001 => "nca_s_comm_failure",
        0x1c01_0002 => "nca_s_op_rng_error",
        0x1c01_0003 => "nca_s_unk_if",
        0x1c01_0006 => "nca_s_wrong_boot_time",
        0x1c01_0009 => "nca_s_you_crashed",
        0x1c01_000b => "nca_s_proto_error",
        0x1c01_0013 => "nca_s_out_args_too_big",
        0x1c01_0014 => "nca_s_server_too_busy",
        0x1c01_0017 => "nca_s_unsupported_type",
        0x1c00_0001 => "nca_s_fault_int_div_by_zero",
        0x1c00_0011 => "nca_s_fault_remote_no_memory",
        0x1c00_0012 => "nca_s_fault_context_mismatch",
        0x1c00_001b => "nca_s_fault_ndr",
        0x1c00_0020 => "nca_s_fault_access_denied",
        0x1c00_0022 => "nca_s_fault_invalid_tag",
        0x1c00_0024 => "nca_s_fault_remote_comm_failure",
        0x1c00_002a => "nca_s_fault_cancel",
        0x1c00_001c => "nca_s_fault_unspec",
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
