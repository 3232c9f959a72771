//! The security provider of an association, through the `sspi` crate: NTLMv2 (auth type
//! 10) or Kerberos in DCE style (auth type 16), at packet privacy ([MS-RPCE] 2.2.1.1.8
//! level 6), with the DCE/RPC buffer layout ([MS-RPCE] 3.3.1.5.2.2): the stub is
//! encrypted; the PDU header, the request header and the `sec_trailer` are signed but not
//! encrypted (`SECBUFFER_READONLY_WITH_CHECKSUM`).
//!
//! Checked against Samba 4.17 (the lab DC), so no NTLMSSP or GSS code of our own: sspi
//! 0.23.1's NTLM `encrypt_message` MACs every `Data` buffer in order and encrypts only the
//! one without flags, and `decrypt_message` does the same; its Kerberos client does the
//! three DCE legs (`USE_DCE_STYLE`: raw AP-REQ, AP-REP, AP-REP) and RFC 4121 wrap tokens
//! with [MS-KILE]'s RRC+EC rotation. Both session keys decrypt replicated secrets.
//!
//! What sspi does not give: `sspi::Ntlm` derives `Debug` with its session key and signing
//! and sealing keys in clear, and neither package zeroizes its keys on drop. So contexts
//! live only inside [`Security`], whose `Debug` prints nothing of them, and are never
//! logged. Its KDC traffic goes through [`KdcClient`] (sspi's `network_client` feature
//! would pull a second reqwest).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use causeway_credential::Password;
use sspi::{
    AuthIdentity, AuthIdentityBuffers, BufferType, ClientRequestFlags, CredentialUse,
    CredentialsBuffers, DataRepresentation, EncryptionFlags, Kerberos, KerberosConfig, Ntlm,
    SecurityBuffer, SecurityBufferFlags, SecurityBufferRef, SecurityStatus, Sspi, SspiImpl,
    Username,
};

use super::SessionKey;

/// `RPC_C_AUTHN_WINNT`: NTLM ([MS-RPCE] 2.2.1.1.7).
pub(crate) const AUTH_TYPE_NTLM: u8 = 10;
/// `RPC_C_AUTHN_GSS_KERBEROS`: Kerberos, DCE style ([MS-RPCE] 2.2.1.1.7, [MS-KILE] 3.4.5).
pub(crate) const AUTH_TYPE_KERBEROS: u8 = 16;
/// `RPC_C_AUTHN_LEVEL_PKT_PRIVACY` ([MS-RPCE] 2.2.1.1.8): Samba refuses DRSUAPI at less.
pub(crate) const AUTH_LEVEL_PRIVACY: u8 = 6;
/// An NTLM signature (`NTLMSSP_MESSAGE_SIGNATURE`, [MS-NLMP] 2.2.2.9.1) is 16 bytes.
pub(crate) const NTLM_SIGNATURE_LEN: usize = 16;
/// The `auth_context_id` of our one security context on the association. Any value does,
/// as long as every PDU of the association carries the same one.
pub(crate) const AUTH_CONTEXT_ID: u32 = 1;
/// The largest KDC reply read (AS-REP/TGS-REP with a PAC are a few KB).
const MAX_KDC_REPLY: usize = 256 * 1024;

/// Why the security provider failed. Carries sspi's description, which never contains
/// the password or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{step}: {kind}: {description}")]
pub struct AuthError {
    /// What this client was doing.
    pub step: &'static str,
    /// sspi's error kind.
    pub kind: String,
    /// sspi's description.
    pub description: String,
}

impl AuthError {
    fn sspi(step: &'static str, e: sspi::Error) -> Self {
        Self {
            step,
            kind: format!("{:?}", e.error_type),
            description: e.description,
        }
    }
    fn local(step: &'static str, description: &str) -> Self {
        Self {
            step,
            kind: "Local".into(),
            description: description.into(),
        }
    }
}

/// The sspi package behind a [`Security`], with its credentials handle.
enum Provider {
    Ntlm(Box<Ntlm>, Option<AuthIdentityBuffers>),
    Kerberos(Box<Kerberos>, Option<CredentialsBuffers>, KdcClient),
}

/// Runs `$body` with `$p` bound to the sspi context, whichever package it is.
macro_rules! with_context {
    ($self:expr, $p:ident => $body:expr) => {
        match &mut $self.provider {
            Provider::Ntlm(n, ..) => {
                let $p = &mut **n;
                $body
            }
            Provider::Kerberos(k, ..) => {
                let $p = &mut **k;
                $body
            }
        }
    };
}

/// A client security context being established or established.
pub(crate) struct Security {
    provider: Provider,
    target: String,
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Security")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

fn flags(dce_style: bool) -> ClientRequestFlags {
    let f = ClientRequestFlags::CONFIDENTIALITY
        | ClientRequestFlags::INTEGRITY
        | ClientRequestFlags::ALLOCATE_MEMORY;
    if dce_style {
        // Three legs (AP-REQ, AP-REP, AP-REP) and raw, unwrapped tokens ([MS-KILE] 3.4.5.1),
        // as DCE/RPC over TCP does it; also mutual authentication.
        f | ClientRequestFlags::USE_DCE_STYLE | ClientRequestFlags::MUTUAL_AUTH
    } else {
        f
    }
}

impl Security {
    /// Starts NTLM as `domain\user` and returns the NEGOTIATE message for the bind.
    pub(crate) fn ntlm(
        domain: &str,
        user: &str,
        password: &Password,
        server_name: &str,
    ) -> Result<(Self, Vec<u8>), AuthError> {
        let mut ntlm = Ntlm::new();
        let username = Username::new_down_level_logon_name(user, domain)
            .map_err(|_| AuthError::local("user name", "not a valid NTLM user or domain name"))?;
        let identity = AuthIdentity {
            username,
            password: password.expose_secret().to_owned().into(),
        };
        let acquired = ntlm
            .acquire_credentials_handle()
            .with_credential_use(CredentialUse::Outbound)
            .with_auth_data(&identity)
            .execute(&mut ntlm)
            .map_err(|e| AuthError::sspi("acquiring NTLM credentials", e))?;
        let mut this = Self {
            provider: Provider::Ntlm(Box::new(ntlm), acquired.credentials_handle),
            target: format!("host/{server_name}"),
        };
        let token = this.step(None)?;
        Ok((this, token))
    }

    /// Gets a ticket for `host/server_name` from `kdc` (AS and TGS exchanges over TCP,
    /// each read and write under `timeout`) and returns the AP-REQ for the bind. Blocks
    /// on the KDC: call it off the async runtime.
    pub(crate) fn kerberos(
        realm: &str,
        user: &str,
        password: &Password,
        server_name: &str,
        kdc: SocketAddr,
        timeout: Duration,
    ) -> Result<(Self, Vec<u8>), AuthError> {
        let config =
            KerberosConfig::new_with_kdc_url(&format!("tcp://{kdc}"), "causeway".to_owned());
        let mut krb = Kerberos::new_client_from_config(config)
            .map_err(|e| AuthError::sspi("starting Kerberos", e))?;
        let username = Username::new_down_level_logon_name(user, realm).map_err(|_| {
            AuthError::local("user name", "not a valid Kerberos user or realm name")
        })?;
        let identity = sspi::Credentials::AuthIdentity(AuthIdentity {
            username,
            password: password.expose_secret().to_owned().into(),
        });
        let acquired = krb
            .acquire_credentials_handle()
            .with_credential_use(CredentialUse::Outbound)
            .with_auth_data(&identity)
            .execute(&mut krb)
            .map_err(|e| AuthError::sspi("acquiring Kerberos credentials", e))?;
        let mut this = Self {
            provider: Provider::Kerberos(
                Box::new(krb),
                acquired.credentials_handle,
                KdcClient { kdc, timeout },
            ),
            target: format!("host/{server_name}"),
        };
        let token = this.step(None)?;
        Ok((this, token))
    }

    /// The RPC auth type of this context.
    pub(crate) fn auth_type(&self) -> u8 {
        match self.provider {
            Provider::Ntlm(..) => AUTH_TYPE_NTLM,
            Provider::Kerberos(..) => AUTH_TYPE_KERBEROS,
        }
    }

    /// The length of the auth value of a sealed PDU (an NTLM signature, or a Kerberos
    /// wrap token's header and trailer).
    pub(crate) fn signature_len(&mut self) -> Result<usize, AuthError> {
        match &mut self.provider {
            Provider::Ntlm(..) => Ok(NTLM_SIGNATURE_LEN),
            Provider::Kerberos(k, ..) => k
                .query_context_sizes()
                .map(|s| s.security_trailer as usize)
                .map_err(|e| AuthError::sspi("reading the Kerberos trailer size", e)),
        }
    }

    /// Feeds the server's token (`None` at the start) and returns ours.
    pub(crate) fn step(&mut self, input: Option<&[u8]>) -> Result<Vec<u8>, AuthError> {
        let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
        let mut input_buf = vec![SecurityBuffer::new(
            input.unwrap_or_default().to_vec(),
            BufferType::Token,
        )];
        let step = match (&self.provider, input.is_some()) {
            (Provider::Ntlm(..), false) => "NTLM NEGOTIATE",
            (Provider::Ntlm(..), true) => "NTLM AUTHENTICATE",
            (Provider::Kerberos(..), false) => "Kerberos AS/TGS exchange and AP-REQ",
            (Provider::Kerberos(..), true) => "Kerberos AP-REP",
        };
        let target = self.target.clone();
        let result = match &mut self.provider {
            Provider::Ntlm(ntlm, creds) => {
                let mut builder = ntlm
                    .initialize_security_context()
                    .with_credentials_handle(creds)
                    .with_context_requirements(flags(false))
                    .with_target_data_representation(DataRepresentation::Native)
                    .with_target_name(&target)
                    .with_output(&mut output);
                if input.is_some() {
                    builder = builder.with_input(&mut input_buf);
                }
                let mut generator = ntlm
                    .initialize_security_context_impl(&mut builder)
                    .map_err(|e| AuthError::sspi(step, e))?;
                generator.resolve_to_result()
            }
            Provider::Kerberos(krb, creds, kdc) => {
                // sspi wants an input buffer even for the first Kerberos leg.
                let mut builder = krb
                    .initialize_security_context()
                    .with_credentials_handle(creds)
                    .with_context_requirements(flags(true))
                    .with_target_data_representation(DataRepresentation::Native)
                    .with_target_name(&target)
                    .with_input(&mut input_buf)
                    .with_output(&mut output);
                let kdc = kdc.clone();
                let mut generator = krb
                    .initialize_security_context_impl(&mut builder)
                    .map_err(|e| AuthError::sspi(step, e))?;
                generator.resolve_with_client(&kdc)
            }
        }
        .map_err(|e| AuthError::sspi(step, e))?;
        if matches!(
            result.status,
            SecurityStatus::CompleteNeeded | SecurityStatus::CompleteAndContinue
        ) {
            with_context!(self, c => c.complete_auth_token(&mut output))
                .map_err(|e| AuthError::sspi(step, e))?;
        }
        Ok(output.pop().map(|b| b.buffer).unwrap_or_default())
    }

    /// Seals one request fragment in place: `pdu` is the whole fragment, `stub` the range
    /// of its padded stub, and the last [`Self::signature_len`] bytes receive the auth value.
    pub(crate) fn seal(
        &mut self,
        pdu: &mut [u8],
        stub: std::ops::Range<usize>,
    ) -> Result<(), AuthError> {
        let mut bufs = buffers(pdu, stub, self.signature_len()?)?;
        with_context!(self, c => c.encrypt_message(EncryptionFlags::empty(), &mut bufs))
            .map_err(|e| AuthError::sspi("sealing a request", e))?;
        Ok(())
    }

    /// Checks and unseals one response fragment in place (same layout as [`Self::seal`]).
    pub(crate) fn unseal(
        &mut self,
        pdu: &mut [u8],
        stub: std::ops::Range<usize>,
    ) -> Result<(), AuthError> {
        let mut bufs = buffers(pdu, stub, self.signature_len()?)?;
        with_context!(self, c => c.decrypt_message(&mut bufs))
            .map_err(|e| AuthError::sspi("unsealing a response", e))?;
        Ok(())
    }

    /// The context's session key: for NTLM the exported session key ([MS-NLMP] 3.1.5.1.2,
    /// the random session key of NTLMSSP_NEGOTIATE_KEY_EXCH), for Kerberos the subkey of
    /// the AP exchange; DRSR decrypts secret attributes with it.
    pub(crate) fn session_key(&mut self) -> Result<SessionKey, AuthError> {
        let keys = with_context!(self, c => c.query_context_session_key())
            .map_err(|e| AuthError::sspi("reading the session key", e))?;
        Ok(SessionKey::new(keys.session_key.as_ref().clone()))
    }
}

/// sspi's network hook for the KDC: blocking TCP, one exchange per connection, every
/// read and write under a timeout, the reply's length prefix bounded before reading.
#[derive(Clone, Debug)]
struct KdcClient {
    kdc: SocketAddr,
    timeout: Duration,
}

impl sspi::network_client::NetworkClient for KdcClient {
    fn send(&self, request: &sspi::NetworkRequest) -> sspi::Result<Vec<u8>> {
        use std::io::{Read, Write};
        let err = |what: &str, e: std::io::Error| {
            sspi::Error::new(
                sspi::ErrorKind::NoAuthenticatingAuthority,
                format!("KDC {}: {what}: {e}", self.kdc),
            )
        };
        if request.protocol != sspi::NetworkProtocol::Tcp {
            return Err(sspi::Error::new(
                sspi::ErrorKind::NoAuthenticatingAuthority,
                "only TCP to the KDC",
            ));
        }
        let mut s = std::net::TcpStream::connect_timeout(&self.kdc, self.timeout)
            .map_err(|e| err("connect", e))?;
        s.set_read_timeout(Some(self.timeout))
            .map_err(|e| err("socket", e))?;
        s.set_write_timeout(Some(self.timeout))
            .map_err(|e| err("socket", e))?;
        // The request already starts with its 4-byte length (RFC 4120 7.2.2); so must the reply.
        s.write_all(&request.data).map_err(|e| err("send", e))?;
        let mut len = [0u8; 4];
        s.read_exact(&mut len).map_err(|e| err("reply length", e))?;
        let n = u32::from_be_bytes(len) as usize;
        if n > MAX_KDC_REPLY {
            return Err(sspi::Error::new(
                sspi::ErrorKind::NoAuthenticatingAuthority,
                "KDC reply too large",
            ));
        }
        let mut reply = vec![0u8; 4 + n];
        reply[..4].copy_from_slice(&len);
        s.read_exact(&mut reply[4..]).map_err(|e| err("reply", e))?;
        Ok(reply)
    }
}

/// A fragment as the security provider sees it, the layout packet privacy needs: the header and
/// request header, then the sec_trailer, signed but not encrypted; the padded stub
/// encrypted; the auth value (the last `sig_len` bytes) as the token.
fn buffers(
    pdu: &mut [u8],
    stub: std::ops::Range<usize>,
    sig_len: usize,
) -> Result<[SecurityBufferRef<'_>; 4], AuthError> {
    let (signed, sig) = split_signature(pdu, sig_len)?;
    let (head, rest) = signed.split_at_mut(stub.start);
    let (data, trailer) = rest.split_at_mut(stub.end - stub.start);
    let ro = SecurityBufferFlags::SECBUFFER_READONLY_WITH_CHECKSUM;
    Ok([
        SecurityBufferRef::data_buf(head).with_flags(ro),
        SecurityBufferRef::data_buf(data),
        SecurityBufferRef::data_buf(trailer).with_flags(ro),
        SecurityBufferRef::token_buf(sig),
    ])
}

fn split_signature(pdu: &mut [u8], sig_len: usize) -> Result<(&mut [u8], &mut [u8]), AuthError> {
    let at = pdu.len().checked_sub(sig_len).ok_or(AuthError::local(
        "signature",
        "fragment shorter than a signature",
    ))?;
    Ok(pdu.split_at_mut(at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::pdu;
    use sspi::ServerRequestFlags;

    /// An in-memory sspi NTLM acceptor for `LAB\svc-sync`: the other end of the layout.
    struct Server {
        ntlm: Ntlm,
        creds: Option<AuthIdentityBuffers>,
    }

    impl Server {
        fn new(password: &str) -> Self {
            let mut ntlm = Ntlm::new();
            let identity = AuthIdentity {
                username: Username::new_down_level_logon_name("svc-sync", "LAB").expect("name"),
                password: password.to_owned().into(),
            };
            let acquired = ntlm
                .acquire_credentials_handle()
                .with_credential_use(CredentialUse::Inbound)
                .with_auth_data(&identity)
                .execute(&mut ntlm)
                .expect("server credentials");
            Self {
                ntlm,
                creds: acquired.credentials_handle,
            }
        }

        fn step(&mut self, token: &[u8]) -> sspi::Result<Vec<u8>> {
            let mut input = vec![SecurityBuffer::new(token.to_vec(), BufferType::Token)];
            let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
            let builder = self
                .ntlm
                .accept_security_context()
                .with_credentials_handle(&mut self.creds)
                .with_context_requirements(ServerRequestFlags::ALLOCATE_MEMORY)
                .with_target_data_representation(DataRepresentation::Native)
                .with_input(&mut input)
                .with_output(&mut output);
            let result = self
                .ntlm
                .accept_security_context_impl(builder)?
                .resolve_to_result()?;
            if matches!(
                result.status,
                SecurityStatus::CompleteNeeded | SecurityStatus::CompleteAndContinue
            ) {
                self.ntlm.complete_auth_token(&mut output)?;
            }
            Ok(output.pop().map(|b| b.buffer).unwrap_or_default())
        }
    }

    fn pair() -> (Security, Server) {
        let password = Password::new("Sync-Svc-Pw-51".into()).expect("password");
        let (mut client, negotiate) =
            Security::ntlm("LAB", "svc-sync", &password, "dc1").expect("client");
        let mut server = Server::new("Sync-Svc-Pw-51");
        let challenge = server.step(&negotiate).expect("challenge");
        let authenticate = client.step(Some(&challenge)).expect("authenticate");
        server.step(&authenticate).expect("server accepts");
        (client, server)
    }

    fn sealed_request(client: &mut Security, stub: &[u8]) -> (Vec<u8>, std::ops::Range<usize>) {
        let auth = Some((
            AUTH_TYPE_NTLM,
            AUTH_LEVEL_PRIVACY,
            AUTH_CONTEXT_ID,
            NTLM_SIGNATURE_LEN,
        ));
        let (mut f, range) = pdu::encode_request(1, 3, 0, 3, 0, stub, auth);
        client.seal(&mut f, range.clone()).expect("seal");
        (f, range)
    }

    /// What Samba's side does with a sealed fragment, done by sspi's acceptor.
    fn server_unseal(
        server: &mut Server,
        f: &mut [u8],
        range: std::ops::Range<usize>,
    ) -> sspi::Result<()> {
        let at = f.len() - NTLM_SIGNATURE_LEN;
        let (signed, sig) = f.split_at_mut(at);
        let (head, rest) = signed.split_at_mut(range.start);
        let (data, trailer) = rest.split_at_mut(range.end - range.start);
        let ro = SecurityBufferFlags::SECBUFFER_READONLY_WITH_CHECKSUM;
        let mut bufs = [
            SecurityBufferRef::data_buf(head).with_flags(ro),
            SecurityBufferRef::data_buf(data),
            SecurityBufferRef::data_buf(trailer).with_flags(ro),
            SecurityBufferRef::token_buf(sig),
        ];
        server.ntlm.decrypt_message(&mut bufs).map(|_| ())
    }

    #[test]
    fn sealing_encrypts_the_stub_only_and_the_acceptor_unseals_it() {
        let (mut client, mut server) = pair();
        let stub = b"an NDR stub of some 40 bytes, padded..";
        let (mut f, range) = sealed_request(&mut client, stub);
        let (plain, _) = pdu::encode_request(1, 3, 0, 3, 0, stub, Some((10, 6, 1, 16)));
        // Header, request header and sec_trailer go in clear; the stub does not.
        assert_eq!(&f[..range.start], &plain[..range.start]);
        assert_eq!(
            &f[range.end..f.len() - 16],
            &plain[range.end..plain.len() - 16]
        );
        assert_ne!(&f[range.clone()], &plain[range.clone()]);
        server_unseal(&mut server, &mut f, range.clone()).expect("acceptor unseals");
        assert_eq!(&f[range.start..range.start + stub.len()], stub);
    }

    #[test]
    fn the_header_and_the_trailer_are_covered_by_the_signature() {
        for at in [3, 12, 22] {
            let (mut client, mut server) = pair();
            let (mut f, range) = sealed_request(&mut client, b"0123456789abcdef");
            f[at] ^= 1; // flags, call id, opnum: not encrypted, but signed
            assert!(
                server_unseal(&mut server, &mut f, range).is_err(),
                "byte {at} tampered"
            );
        }
        let (mut client, mut server) = pair();
        let (mut f, range) = sealed_request(&mut client, b"0123456789abcdef");
        let trailer = range.end + 2; // auth_pad_length
        f[trailer] ^= 1;
        assert!(
            server_unseal(&mut server, &mut f, range).is_err(),
            "sec_trailer tampered"
        );
    }

    #[test]
    fn a_wrong_password_is_refused_by_the_acceptor_and_the_session_key_is_16_bytes() {
        let password = Password::new("Wrong-Pw-1".into()).expect("password");
        let (mut client, negotiate) =
            Security::ntlm("LAB", "svc-sync", &password, "dc1").expect("client");
        let mut server = Server::new("Sync-Svc-Pw-51");
        let challenge = server.step(&negotiate).expect("challenge");
        let authenticate = client.step(Some(&challenge)).expect("authenticate");
        assert!(server.step(&authenticate).is_err());
        let (mut client, _) = pair();
        assert_eq!(client.session_key().expect("key").expose_secret().len(), 16);
    }

    #[test]
    fn security_debug_shows_no_key_material() {
        let (mut client, _) = pair();
        let key = client.session_key().expect("key");
        let s = format!("{client:?}");
        assert!(
            !s.contains(
                &format!("{:?}", &key.expose_secret()[..4])
                    .trim_end_matches(']')
                    .to_owned()
            ),
            "{s}"
        );
        assert!(!s.contains("session_key"), "{s}");
    }
}
