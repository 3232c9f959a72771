//! The security provider of an association: NTLMv2 through the `sspi` crate, at packet
//! privacy ([MS-RPCE] 2.2.1.1.8 level 6), with the DCE/RPC buffer layout
//! ([MS-RPCE] 3.3.1.5.2.2): the stub is encrypted; the PDU header, the request header and
//! the `sec_trailer` are signed but not encrypted.
//!
//! Checked against Samba 4.17 (the lab DC): sspi 0.23.1's `encrypt_message` MACs every
//! `Data` buffer in order and encrypts only the one without flags, and `decrypt_message`
//! does the same with `SECBUFFER_READONLY_WITH_CHECKSUM` buffers, which is exactly the
//! layout DCE/RPC needs, so no NTLMSSP of our own was written.
//!
//! What sspi does not give: `sspi::Ntlm` derives `Debug` with its session key and signing
//! and sealing keys in clear, and does not zeroize them on drop. So the context lives only
//! inside [`Security`], whose `Debug` prints nothing of it, and is never logged.

use std::fmt;

use causeway_credential::Password;
use sspi::{
    AuthIdentity, AuthIdentityBuffers, BufferType, ClientRequestFlags, CredentialUse,
    DataRepresentation, EncryptionFlags, Ntlm, SecurityBuffer, SecurityBufferFlags,
    SecurityBufferRef, SecurityStatus, Sspi, SspiImpl, Username,
};

use super::SessionKey;

/// `RPC_C_AUTHN_WINNT`: NTLM ([MS-RPCE] 2.2.1.1.7).
pub(crate) const AUTH_TYPE_NTLM: u8 = 10;
/// `RPC_C_AUTHN_LEVEL_PKT_PRIVACY` ([MS-RPCE] 2.2.1.1.8): Samba refuses DRSUAPI at less.
pub(crate) const AUTH_LEVEL_PRIVACY: u8 = 6;
/// An NTLM signature (`NTLMSSP_MESSAGE_SIGNATURE`, [MS-NLMP] 2.2.2.9.1) is 16 bytes.
pub(crate) const NTLM_SIGNATURE_LEN: usize = 16;
/// The `auth_context_id` of our one security context on the association. Any value does,
/// as long as every PDU of the association carries the same one.
pub(crate) const AUTH_CONTEXT_ID: u32 = 1;

/// Why the security provider failed. Carries sspi's description, which never contains
/// the password or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{step}: {kind:?}: {description}")]
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

/// An NTLM client security context being established or established.
pub(crate) struct Security {
    ntlm: Ntlm,
    creds: Option<AuthIdentityBuffers>,
    target: String,
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Security")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

fn flags() -> ClientRequestFlags {
    ClientRequestFlags::CONFIDENTIALITY
        | ClientRequestFlags::INTEGRITY
        | ClientRequestFlags::ALLOCATE_MEMORY
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
            ntlm,
            creds: acquired.credentials_handle,
            target: format!("host/{server_name}"),
        };
        let token = this.step(None)?;
        Ok((this, token))
    }

    /// Feeds the server's token (`None` at the start) and returns ours.
    pub(crate) fn step(&mut self, input: Option<&[u8]>) -> Result<Vec<u8>, AuthError> {
        let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
        let mut input_buf = input.map(|i| vec![SecurityBuffer::new(i.to_vec(), BufferType::Token)]);
        let mut builder = self
            .ntlm
            .initialize_security_context()
            .with_credentials_handle(&mut self.creds)
            .with_context_requirements(flags())
            .with_target_data_representation(DataRepresentation::Native)
            .with_target_name(&self.target)
            .with_output(&mut output);
        if let Some(i) = input_buf.as_mut() {
            builder = builder.with_input(i);
        }
        let step = if input.is_some() {
            "NTLM AUTHENTICATE"
        } else {
            "NTLM NEGOTIATE"
        };
        let result = self
            .ntlm
            .initialize_security_context_impl(&mut builder)
            .map_err(|e| AuthError::sspi(step, e))?
            .resolve_to_result()
            .map_err(|e| AuthError::sspi(step, e))?;
        if matches!(
            result.status,
            SecurityStatus::CompleteNeeded | SecurityStatus::CompleteAndContinue
        ) {
            self.ntlm
                .complete_auth_token(&mut output)
                .map_err(|e| AuthError::sspi(step, e))?;
        }
        Ok(output.pop().map(|b| b.buffer).unwrap_or_default())
    }

    /// Seals one request fragment in place: `pdu` is the whole fragment, `stub` the range
    /// of its padded stub, and the last [`NTLM_SIGNATURE_LEN`] bytes receive the signature.
    pub(crate) fn seal(
        &mut self,
        pdu: &mut [u8],
        stub: std::ops::Range<usize>,
    ) -> Result<(), AuthError> {
        let (signed, sig) = split_signature(pdu)?;
        let (head, rest) = signed.split_at_mut(stub.start);
        let (data, trailer) = rest.split_at_mut(stub.end - stub.start);
        let mut bufs = [
            SecurityBufferRef::data_buf(head)
                .with_flags(SecurityBufferFlags::SECBUFFER_READONLY_WITH_CHECKSUM),
            SecurityBufferRef::data_buf(data),
            SecurityBufferRef::data_buf(trailer)
                .with_flags(SecurityBufferFlags::SECBUFFER_READONLY_WITH_CHECKSUM),
            SecurityBufferRef::token_buf(sig),
        ];
        self.ntlm
            .encrypt_message(EncryptionFlags::empty(), &mut bufs)
            .map_err(|e| AuthError::sspi("sealing a request", e))?;
        Ok(())
    }

    /// Checks and unseals one response fragment in place (same layout as [`Self::seal`]).
    pub(crate) fn unseal(
        &mut self,
        pdu: &mut [u8],
        stub: std::ops::Range<usize>,
    ) -> Result<(), AuthError> {
        let (signed, sig) = split_signature(pdu)?;
        let (head, rest) = signed.split_at_mut(stub.start);
        let (data, trailer) = rest.split_at_mut(stub.end - stub.start);
        let mut bufs = [
            SecurityBufferRef::data_buf(head)
                .with_flags(SecurityBufferFlags::SECBUFFER_READONLY_WITH_CHECKSUM),
            SecurityBufferRef::data_buf(data),
            SecurityBufferRef::data_buf(trailer)
                .with_flags(SecurityBufferFlags::SECBUFFER_READONLY_WITH_CHECKSUM),
            SecurityBufferRef::token_buf(sig),
        ];
        self.ntlm
            .decrypt_message(&mut bufs)
            .map_err(|e| AuthError::sspi("unsealing a response", e))?;
        Ok(())
    }

    /// The exported session key ([MS-NLMP] 3.1.5.1.2: the random session key of
    /// NTLMSSP_NEGOTIATE_KEY_EXCH), which DRSR uses to decrypt secret attributes.
    pub(crate) fn session_key(&self) -> Result<SessionKey, AuthError> {
        let keys = self
            .ntlm
            .query_context_session_key()
            .map_err(|e| AuthError::sspi("reading the session key", e))?;
        Ok(SessionKey::new(keys.session_key.as_ref().clone()))
    }
}

fn split_signature(pdu: &mut [u8]) -> Result<(&mut [u8], &mut [u8]), AuthError> {
    let at = pdu
        .len()
        .checked_sub(NTLM_SIGNATURE_LEN)
        .ok_or(AuthError::local(
            "signature",
            "fragment shorter than a signature",
        ))?;
    Ok(pdu.split_at_mut(at))
}
