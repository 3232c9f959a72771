//! One TCP connection carrying one presentation context: bind (with or without a security
//! context), then calls that are fragmented to the server's max_recv_frag, sealed per
//! fragment, and whose answers are read fragment by fragment under a timeout, each
//! fragment's length checked before it is read and the reassembled stub capped.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::auth::{
    Security, AUTH_CONTEXT_ID, AUTH_LEVEL_PRIVACY, AUTH_TYPE_NTLM, NTLM_SIGNATURE_LEN,
};
use super::pdu::{
    self, AuthVerifier, Context, Header, PType, ServerPdu, HEADER_LEN, PFC_FIRST_FRAG,
    PFC_LAST_FRAG, REQUEST_HEADER_LEN, SEC_TRAILER_LEN,
};
use super::{Interface, Limits, RpcError};

/// The fragment size this client offers: Windows' default for ncacn_ip_tcp, which Samba
/// accepts as it is.
pub(crate) const OUR_MAX_FRAG: u16 = 5840;

/// The presentation context id of the one context this client binds.
const CONTEXT_ID: u16 = 0;

/// A bound connection.
#[derive(Debug)]
pub(crate) struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    security: Option<Security>,
    next_call_id: u32,
    /// What we may send in one fragment: the server's max_recv_frag.
    max_send: usize,
    /// What the server may send us in one fragment: the server's max_xmit_frag, at most ours.
    max_recv: usize,
    call_timeout: Duration,
    max_response: usize,
}

impl Connection {
    /// Connects to `peer` within the connect timeout.
    pub(crate) async fn open(peer: SocketAddr, limits: &Limits) -> Result<TcpStream, RpcError> {
        match tokio::time::timeout(limits.connect_timeout, TcpStream::connect(peer)).await {
            Err(_) => Err(RpcError::ConnectTimeout {
                addr: peer,
                after: limits.connect_timeout,
            }),
            Ok(Err(source)) => Err(RpcError::Connect { addr: peer, source }),
            Ok(Ok(s)) => {
                // Small PDUs (auth3, short requests) should not wait for Nagle.
                let _ = s.set_nodelay(true);
                Ok(s)
            }
        }
    }

    /// Binds `iface` on `stream`. With `security`, the bind carries its first token, the
    /// bind_ack the server's challenge, and an auth3 our answer ([MS-RPCE] 3.3.1.5.2).
    pub(crate) async fn bind(
        stream: TcpStream,
        peer: SocketAddr,
        iface: &Interface,
        security: Option<(Security, Vec<u8>)>,
        limits: &Limits,
    ) -> Result<Self, RpcError> {
        let mut conn = Self {
            stream,
            peer,
            security: None,
            next_call_id: 1,
            max_send: usize::from(OUR_MAX_FRAG),
            max_recv: usize::from(OUR_MAX_FRAG),
            call_timeout: limits.call_timeout,
            max_response: limits.max_response,
        };
        let ctx = Context {
            id: CONTEXT_ID,
            uuid: iface.uuid,
            version: iface.version,
        };
        let call_id = conn.call_id();
        let (security, token) = match security {
            Some((s, t)) => (Some(s), Some(t)),
            None => (None, None),
        };
        let first = token.as_deref().map(verifier);
        let bind = pdu::encode_bind(
            PType::Bind,
            call_id,
            OUR_MAX_FRAG,
            OUR_MAX_FRAG,
            &ctx,
            first.as_ref(),
        );
        conn.write(&bind, "sending the bind").await?;
        let frag = conn.read_fragment("waiting for the bind_ack").await?;
        let (h, answer) = pdu::decode_server_pdu(&frag, conn.max_recv)?;
        check_call_id(&h, call_id)?;
        let challenge = match answer {
            ServerPdu::BindAck {
                max_xmit,
                max_recv,
                result,
                auth,
            } => {
                if result.result != 0 {
                    return Err(RpcError::ContextRejected {
                        result: result.result,
                        reason: pdu::context_reason_name(result.reason),
                    });
                }
                // Never read bigger fragments than we offered, whatever the server says.
                conn.max_recv = usize::from(max_xmit.min(OUR_MAX_FRAG));
                conn.max_send = usize::from(max_recv.min(OUR_MAX_FRAG));
                if conn.max_send < REQUEST_HEADER_LEN + SEC_TRAILER_LEN + NTLM_SIGNATURE_LEN + 16 {
                    return Err(RpcError::Protocol(pdu::PduError::FragLength {
                        len: conn.max_send,
                        min: REQUEST_HEADER_LEN + SEC_TRAILER_LEN + NTLM_SIGNATURE_LEN + 16,
                        max: usize::from(OUR_MAX_FRAG),
                    }));
                }
                auth.map(|a| a.value.to_vec())
            }
            ServerPdu::BindNak { reason } => {
                return Err(RpcError::BindRejected {
                    reason: pdu::bind_nak_reason_name(reason),
                    code: reason,
                })
            }
            ServerPdu::Fault { status } => return Err(RpcError::fault(status)),
            ServerPdu::Response { .. } => {
                return Err(RpcError::Protocol(pdu::PduError::UnexpectedType(
                    PType::Response as u8,
                )))
            }
        };
        if let Some(mut sec) = security {
            let challenge = challenge.ok_or(RpcError::Auth(super::auth::AuthError {
                step: "bind_ack",
                kind: "Server".into(),
                description: "the server accepted the bind but sent no NTLM challenge".into(),
            }))?;
            let answer = sec.step(Some(&challenge)).map_err(RpcError::Auth)?;
            let call_id = conn.call_id();
            let auth3 = pdu::encode_auth3(call_id, &verifier(&answer));
            conn.write(&auth3, "sending the auth3").await?;
            conn.security = Some(sec);
        }
        Ok(conn)
    }

    /// The server's address.
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The established security context, if this connection has one.
    pub(crate) fn security(&self) -> Option<&Security> {
        self.security.as_ref()
    }

    fn call_id(&mut self) -> u32 {
        let id = self.next_call_id;
        self.next_call_id = self.next_call_id.wrapping_add(1).max(1);
        id
    }

    /// One call: the request is split into fragments, each sealed; the response's
    /// fragments are unsealed and joined, at most `max_response` bytes.
    pub(crate) async fn call(&mut self, opnum: u16, stub: &[u8]) -> Result<Vec<u8>, RpcError> {
        let call_id = self.call_id();
        let sealed = self.security.is_some();
        let overhead = REQUEST_HEADER_LEN
            + if sealed {
                SEC_TRAILER_LEN + NTLM_SIGNATURE_LEN
            } else {
                0
            };
        // Round the chunk down to the pad alignment so only the last fragment is padded.
        let chunk = (self.max_send - overhead) / pdu::AUTH_PAD_ALIGN * pdu::AUTH_PAD_ALIGN;
        let alloc_hint =
            u32::try_from(stub.len()).map_err(|_| RpcError::RequestTooLarge { len: stub.len() })?;
        // An empty stub is still one fragment.
        let parts: Vec<&[u8]> = if stub.is_empty() {
            vec![&[]]
        } else {
            stub.chunks(chunk).collect()
        };
        let last = parts.len() - 1;
        for (i, part) in parts.into_iter().enumerate() {
            let mut flags = 0;
            if i == 0 {
                flags |= PFC_FIRST_FRAG;
            }
            if i == last {
                flags |= PFC_LAST_FRAG;
            }
            let auth = sealed.then_some((
                AUTH_TYPE_NTLM,
                AUTH_LEVEL_PRIVACY,
                AUTH_CONTEXT_ID,
                NTLM_SIGNATURE_LEN,
            ));
            let (mut frag, range) =
                pdu::encode_request(call_id, flags, CONTEXT_ID, opnum, alloc_hint, part, auth);
            if let Some(sec) = self.security.as_mut() {
                sec.seal(&mut frag, range).map_err(RpcError::Auth)?;
            }
            self.write(&frag, "sending a request").await?;
        }
        self.read_response(call_id).await
    }

    async fn read_response(&mut self, call_id: u32) -> Result<Vec<u8>, RpcError> {
        let mut out = Vec::new();
        let mut first = true;
        loop {
            let mut frag = self
                .read_fragment(if first {
                    "waiting for the response"
                } else {
                    "reading a response fragment"
                })
                .await?;
            first = false;
            let (h, range, pad) = {
                let (h, answer) = pdu::decode_server_pdu(&frag, self.max_recv)?;
                check_call_id(&h, call_id)?;
                match answer {
                    ServerPdu::Response { stub, auth } => {
                        let start = REQUEST_HEADER_LEN;
                        let range = start..start + stub.len();
                        match (&self.security, auth) {
                            (Some(_), Some(a)) => {
                                if a.auth_type != AUTH_TYPE_NTLM
                                    || a.auth_level != AUTH_LEVEL_PRIVACY
                                    || a.value.len() != NTLM_SIGNATURE_LEN
                                {
                                    return Err(RpcError::Unsealed { what: "a response fragment with a different auth type, level or signature size" });
                                }
                                (h, range, usize::from(a.pad_length))
                            }
                            (Some(_), None) => {
                                return Err(RpcError::Unsealed {
                                    what: "an unsealed response fragment",
                                })
                            }
                            (None, _) => (h, range, 0),
                        }
                    }
                    ServerPdu::Fault { status } => return Err(RpcError::fault(status)),
                    ServerPdu::BindAck { .. } | ServerPdu::BindNak { .. } => {
                        return Err(RpcError::Protocol(pdu::PduError::UnexpectedType(h.ptype)))
                    }
                }
            };
            if let Some(sec) = self.security.as_mut() {
                sec.unseal(&mut frag, range.clone())
                    .map_err(RpcError::Auth)?;
            }
            let stub = &frag[range.start..range.end - pad];
            if out.len() + stub.len() > self.max_response {
                return Err(RpcError::ResponseTooLarge {
                    limit: self.max_response,
                });
            }
            out.extend_from_slice(stub);
            if h.is_last() {
                return Ok(out);
            }
        }
    }

    async fn write(&mut self, bytes: &[u8], during: &'static str) -> Result<(), RpcError> {
        match tokio::time::timeout(self.call_timeout, self.stream.write_all(bytes)).await {
            Err(_) => Err(RpcError::Timeout {
                during,
                after: self.call_timeout,
            }),
            Ok(Err(source)) => Err(RpcError::Io {
                during,
                peer: self.peer,
                source,
            }),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Reads one fragment: the header first, its frag_length checked against the
    /// negotiated maximum, then the rest. Each read is under the call timeout.
    async fn read_fragment(&mut self, during: &'static str) -> Result<Vec<u8>, RpcError> {
        let mut head = [0u8; HEADER_LEN];
        self.read_exact(&mut head, during, false).await?;
        let h = Header::decode(&head, self.max_recv)?;
        let mut frag = vec![0u8; usize::from(h.frag_length)];
        frag[..HEADER_LEN].copy_from_slice(&head);
        self.read_exact(&mut frag[HEADER_LEN..], during, true)
            .await?;
        Ok(frag)
    }

    async fn read_exact(
        &mut self,
        buf: &mut [u8],
        during: &'static str,
        mid_pdu: bool,
    ) -> Result<(), RpcError> {
        let mut got = 0;
        while got < buf.len() {
            let n = match tokio::time::timeout(self.call_timeout, self.stream.read(&mut buf[got..]))
                .await
            {
                Err(_) => {
                    return Err(RpcError::Timeout {
                        during,
                        after: self.call_timeout,
                    })
                }
                Ok(Err(source)) => {
                    return Err(RpcError::Io {
                        during,
                        peer: self.peer,
                        source,
                    })
                }
                Ok(Ok(n)) => n,
            };
            if n == 0 {
                return Err(RpcError::Closed {
                    during,
                    mid_pdu: mid_pdu || got > 0,
                    peer: self.peer,
                });
            }
            got += n;
        }
        Ok(())
    }
}

fn verifier(token: &[u8]) -> AuthVerifier<'_> {
    AuthVerifier {
        auth_type: AUTH_TYPE_NTLM,
        auth_level: AUTH_LEVEL_PRIVACY,
        pad_length: 0,
        context_id: AUTH_CONTEXT_ID,
        value: token,
    }
}

fn check_call_id(h: &Header, expected: u32) -> Result<(), RpcError> {
    if h.call_id != expected {
        return Err(RpcError::CallIdMismatch {
            expected,
            got: h.call_id,
        });
    }
    Ok(())
}
