//! Connection-oriented DCE/RPC over TCP ([C706] 12, [MS-RPCE] 2.2): the endpoint mapper,
//! bind, and calls sealed at packet-privacy level (Samba refuses less). Never logs or
//! prints a password, a security token or the session key.

mod auth;
mod conn;
mod epm;
mod pdu;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use causeway_credential::Password;

pub use auth::AuthError;
pub use pdu::PduError;
// One session-key type for the whole crate: the transport hands out what `secret` consumes.
pub use crate::secret::SessionKey;

/// An RPC interface: its UUID in wire order (the first three fields little-endian) and
/// its version (major, minor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interface {
    /// The interface UUID as it goes on the wire.
    pub uuid: [u8; 16],
    /// (major, minor).
    pub version: (u16, u16),
}

/// DRSUAPI, e3514235-4b06-11d1-ab04-00c04fc2dcd2 v4.0 ([MS-DRSR] 4.1).
pub const DRSUAPI: Interface = Interface {
    uuid: [
        0x35, 0x42, 0x51, 0xe3, 0x06, 0x4b, 0xd1, 0x11, 0xab, 0x04, 0x00, 0xc0, 0x4f, 0xc2, 0xdc,
        0xd2,
    ],
    version: (4, 0),
};

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The server's address.
    pub host: IpAddr,
    /// The interface's TCP port; `None`: ask the endpoint mapper on port 135.
    pub port: Option<u16>,
    /// The server's DNS name (`dc1.lab.causeway.test`): the SPN host and NTLM target.
    pub server_name: String,
}

/// Who this client authenticates as.
#[derive(Debug)]
#[non_exhaustive]
pub enum Credentials {
    /// NTLMv2 as `domain\user` (RPC auth type 10, `RPC_C_AUTHN_WINNT`).
    Ntlm {
        /// The NetBIOS domain name (`LAB`).
        domain: String,
        /// The sAMAccountName.
        user: String,
        /// The password (redacted in `Debug`).
        password: Password,
    },
    /// Kerberos, DCE style (RPC auth type 16, `RPC_C_AUTHN_GSS_KERBEROS`): a ticket for
    /// `host/<server_name>` from `kdc` over TCP.
    Kerberos {
        /// The realm (`LAB.CAUSEWAY.TEST`).
        realm: String,
        /// The user principal's name without the realm.
        user: String,
        /// The password (redacted in `Debug`).
        password: Password,
        /// The KDC.
        kdc: SocketAddr,
    },
}

/// Time and size bounds of an association.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a TCP connect may take.
    pub connect_timeout: Duration,
    /// How long any one read or write of a PDU (or of a KDC exchange) may wait. Per
    /// read, not per call: a replication page of many fragments may take longer.
    pub call_timeout: Duration,
    /// The largest reassembled response stub accepted.
    pub max_response: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(120),
            max_response: 64 * 1024 * 1024,
        }
    }
}

/// What went wrong, and whose fault it is. Never contains a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The TCP connection was refused or failed (wrong host or port, DC down, firewall).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TCP connect did not complete in time.
    #[error("connecting to {addr} took longer than {after:?}")]
    ConnectTimeout {
        /// The address.
        addr: SocketAddr,
        /// The connect timeout.
        after: Duration,
    },
    /// The server did not answer in time.
    #[error("the server did not answer within {after:?} while {during}")]
    Timeout {
        /// What this client was doing.
        during: &'static str,
        /// The call timeout.
        after: Duration,
    },
    /// A read or write failed.
    #[error("I/O error with {peer} while {during}: {source}")]
    Io {
        /// What this client was doing.
        during: &'static str,
        /// The server.
        peer: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server closed the connection.
    #[error("{peer} closed the connection {} while {during}", if *.mid_pdu { "in the middle of a PDU" } else { "between PDUs" })]
    Closed {
        /// What this client was doing.
        during: &'static str,
        /// Whether part of a PDU had been read.
        mid_pdu: bool,
        /// The server.
        peer: SocketAddr,
    },
    /// The server sent a malformed PDU.
    #[error("the server sent a malformed PDU: {0}")]
    Protocol(#[from] PduError),
    /// The server answered a different call.
    #[error("the server answered call {got}, not call {expected}")]
    CallIdMismatch {
        /// The call id sent.
        expected: u32,
        /// The call id received.
        got: u32,
    },
    /// The server refused the bind (bind_nak).
    #[error("the server refused the bind: {reason} ({code})")]
    BindRejected {
        /// The reason's name.
        reason: &'static str,
        /// The reason code.
        code: u16,
    },
    /// The server does not offer the interface (or NDR 2.0) on this endpoint.
    #[error("the server rejected the presentation context (result {result}): {reason}")]
    ContextRejected {
        /// The result code (1 user rejection, 2 provider rejection).
        result: u16,
        /// The reason's name.
        reason: &'static str,
    },
    /// The server answered with a fault.
    #[error("the server answered with fault {} (0x{status:08x})", .name.unwrap_or("of unknown status"))]
    Fault {
        /// The fault status.
        status: u32,
        /// Its name, where known.
        name: Option<&'static str>,
    },
    /// The DC rejected the credentials: the first sealed call after authentication was
    /// refused with access denied or a protocol error, or the connection was dropped
    /// (auth3, which carries NTLM's AUTHENTICATE, has no answer of its own).
    #[error("the DC rejected the authentication of {who} (wrong password, or a disabled, locked or expired account): {detail}")]
    AuthRejected {
        /// `DOMAIN\user`.
        who: String,
        /// What the DC answered.
        detail: String,
    },
    /// The security provider failed locally, or the server's token was unusable.
    #[error("authentication failed: {0}")]
    Auth(AuthError),
    /// A sealed association received something not sealed as agreed.
    #[error("the server sent {what}; the association is sealed (packet privacy)")]
    Unsealed {
        /// What arrived.
        what: &'static str,
    },
    /// The reassembled response is larger than [`Limits::max_response`].
    #[error("the response is larger than the limit of {limit} bytes")]
    ResponseTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The request stub does not fit DCE/RPC's 32-bit alloc_hint.
    #[error("the request stub of {len} bytes is too large")]
    RequestTooLarge {
        /// Its length.
        len: usize,
    },
    /// The endpoint mapper sent an answer this client cannot read.
    #[error("the endpoint mapper's answer is malformed: {0}")]
    EndpointMapper(String),
    /// The endpoint mapper knows no TCP endpoint of the interface.
    #[error("the endpoint mapper has no TCP endpoint for the interface (status 0x{status:08x}); is the DC's RPC server running?")]
    NotRegistered {
        /// ept_map's status (0x16c9a0d6 is EPT_S_NOT_REGISTERED).
        status: u32,
    },
    /// Something this client does not implement yet.
    #[error("not supported: {0}")]
    Unsupported(&'static str),
}

impl RpcError {
    fn fault(status: u32) -> Self {
        Self::Fault {
            status,
            name: pdu::fault_name(status),
        }
    }
}

/// Asks the endpoint mapper at `host:135` for the TCP port of `iface` (what
/// [`Association::connect`] does when `target.port` is `None`), for a diagnostic that
/// reports the mapper and the interface's port as separate steps.
pub async fn map_port(host: IpAddr, iface: &Interface, limits: &Limits) -> Result<u16, RpcError> {
    epm::map_tcp_port(host, iface, limits).await
}

/// One TCP connection with one bound, sealed (packet privacy) presentation context.
#[derive(Debug)]
pub struct Association {
    conn: conn::Connection,
    session_key: SessionKey,
    who: String,
    /// Until a sealed call succeeds, a refusal is reported as rejected credentials.
    proven: bool,
}

impl Association {
    /// Finds the interface's port (asking the endpoint mapper unless `target.port` is
    /// set), connects, binds and authenticates at packet privacy.
    #[tracing::instrument(level = "debug", skip_all, fields(host = %target.host, port = ?target.port))]
    pub async fn connect(
        target: &Target,
        iface: &Interface,
        creds: &Credentials,
        limits: &Limits,
    ) -> Result<Self, RpcError> {
        let port = match target.port {
            Some(p) => p,
            None => epm::map_tcp_port(target.host, iface, limits).await?,
        };
        let peer = SocketAddr::new(target.host, port);
        let (security, who) = match creds {
            Credentials::Ntlm {
                domain,
                user,
                password,
            } => (
                auth::Security::ntlm(domain, user, password, &target.server_name)
                    .map_err(RpcError::Auth)?,
                format!("{domain}\\{user}"),
            ),
            Credentials::Kerberos {
                realm,
                user,
                password,
                kdc,
            } => {
                // sspi drives the KDC exchanges through a blocking network hook: run it
                // off the async runtime. The password is copied into a Password of its own
                // (zeroized on drop) because the closure must own what it uses.
                let (realm_c, user_c, server) =
                    (realm.clone(), user.clone(), target.server_name.clone());
                let password = Password::new(password.expose_secret().to_owned())
                    .map_err(|_| RpcError::Unsupported("an invalid password"))?;
                let (kdc, timeout) = (*kdc, limits.call_timeout);
                let who = format!("{user}@{realm}");
                let started = tokio::task::spawn_blocking(move || {
                    auth::Security::kerberos(&realm_c, &user_c, &password, &server, kdc, timeout)
                })
                .await
                .map_err(|_| RpcError::Unsupported("the Kerberos exchange panicked"))?;
                match started {
                    Ok(s) => (s, who),
                    // KDC_ERR_PREAUTH_FAILED (a wrong password) or KDC_ERR_CLIENT_REVOKED
                    // (disabled, locked, expired), as sspi words them: the same refusal
                    // as NTLM's, reported the same way.
                    Err(e)
                        if e.description
                            .contains("pre-authentication information was invalid")
                            || e.description
                                .contains("clients credentials have been revoked") =>
                    {
                        return Err(RpcError::AuthRejected {
                            who,
                            detail: e.to_string(),
                        })
                    }
                    Err(e) => return Err(RpcError::Auth(e)),
                }
            }
        };
        let stream = conn::Connection::open(peer, limits).await?;
        let mut conn = conn::Connection::bind(stream, peer, iface, Some(security), limits).await?;
        let session_key = conn
            .security()
            .ok_or(RpcError::Unsupported(
                "an association without a security context",
            ))?
            .session_key()
            .map_err(RpcError::Auth)?;
        tracing::debug!(%peer, "DCE/RPC association bound and sealed");
        Ok(Self {
            conn,
            session_key,
            who,
            proven: false,
        })
    }

    /// Calls `opnum` with an NDR request stub and returns the response stub: fragmented,
    /// sealed, reassembled (at most [`Limits::max_response`]) and unsealed.
    #[tracing::instrument(level = "debug", skip_all, fields(opnum, request_len = stub.len()))]
    pub async fn call(&mut self, opnum: u16, stub: &[u8]) -> Result<Vec<u8>, RpcError> {
        match self.conn.call(opnum, stub).await {
            Ok(out) => {
                self.proven = true;
                Ok(out)
            }
            // auth3, which carries the AUTHENTICATE, has no answer: a DC that rejects it
            // refuses the first call instead. Samba 4.17 answers nca_s_proto_error
            // (seen in the lab); Windows answers access denied or drops the connection.
            Err(
                e @ (RpcError::Fault {
                    status: 5 | 0x1c01_000b | 0x1c00_0020,
                    ..
                }
                | RpcError::Closed { .. }),
            ) if !self.proven => Err(RpcError::AuthRejected {
                who: self.who.clone(),
                detail: e.to_string(),
            }),
            Err(e) => Err(e),
        }
    }

    /// The server's address and the port the association is bound on.
    pub fn peer(&self) -> SocketAddr {
        self.conn.peer()
    }

    /// The security context's session key (for NTLM the 16-byte exported session key).
    pub fn session_key(&self) -> &SessionKey {
        &self.session_key
    }
}

/// The replication driver ([`crate::replicate`]) calls DRSUAPI through a sealed association.
impl crate::msg::Call for Association {
    async fn call(&mut self, opnum: u16, stub: &[u8]) -> Result<Vec<u8>, crate::msg::CallError> {
        Association::call(self, opnum, stub)
            .await
            .map_err(crate::msg::CallError::new)
    }
}

/// Decodes `bytes` as one server PDU fragment, for the fuzz target only: the decoder a
/// hostile server reaches first.
#[doc(hidden)]
pub fn fuzz_decode_server_pdu(bytes: &[u8]) -> bool {
    let bound = usize::from(conn::OUR_MAX_FRAG);
    let ok = pdu::decode_server_pdu(bytes, bound).is_ok();
    let _ = epm::parse_ept_map_response(bytes);
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_key_debug_is_redacted() {
        let k = SessionKey::new(vec![0xab; 16]);
        let s = format!("{k:?}");
        assert!(!s.contains("ab") && !s.contains("171"), "{s}");
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let c = Credentials::Ntlm {
            domain: "LAB".into(),
            user: "svc-sync".into(),
            password: Password::new("Sync-Svc-Pw-51".into()).expect("valid"),
        };
        assert!(!format!("{c:?}").contains("Sync-Svc-Pw-51"));
    }

    #[test]
    fn associations_and_their_futures_are_send() {
        // ndr's `Call` trait wants `call`'s future to be Send, and callers spawn tasks.
        fn send<T: Send>(_: &T) {}
        fn assoc_is_send<T: Send + Sync>() {}
        assoc_is_send::<Association>();
        let target = Target {
            host: [127, 0, 0, 1].into(),
            port: Some(1),
            server_name: "x".into(),
        };
        let creds = Credentials::Ntlm {
            domain: "LAB".into(),
            user: "u".into(),
            password: Password::new("p".into()).expect("valid"),
        };
        let limits = Limits::default();
        send(&Association::connect(&target, &DRSUAPI, &creds, &limits));
        fn call_is_send(a: &mut Association) {
            send(&a.call(0, &[]));
        }
        let _ = call_is_send;
    }

    #[test]
    fn drsuapi_uuid_is_in_wire_order() {
        // e3514235-4b06-11d1-ab04-00c04fc2dcd2: first three fields little-endian.
        assert_eq!(&DRSUAPI.uuid[..4], &0xe351_4235u32.to_le_bytes());
        assert_eq!(&DRSUAPI.uuid[4..6], &0x4b06u16.to_le_bytes());
        assert_eq!(
            &DRSUAPI.uuid[8..],
            &[0xab, 0x04, 0x00, 0xc0, 0x4f, 0xc2, 0xdc, 0xd2]
        );
    }
}
