//! The agent's HPKE key pair: generated on the agent, its private half redacted when
//! formatted and leaving only through an explicit, greppable call.

use std::fmt;

use hpke::{Deserializable, Kem as KemTrait, Serializable};

use super::{EnvelopeError, Kem};
use crate::secret::{Secret, REDACTED};

/// An agent's HPKE private key. Redacted when formatted; its bytes leave only through
/// [`AgentSecretKey::expose_secret_bytes`] (for writing the agent's 0600 key file).
pub struct AgentSecretKey(pub(super) <Kem as KemTrait>::PrivateKey);

/// An agent's HPKE public key, published to the endpoint at enrollment.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentPublicKey(pub(super) <Kem as KemTrait>::PublicKey);

/// An agent's HPKE key pair.
pub struct AgentKeyPair {
    secret: AgentSecretKey,
    public: AgentPublicKey,
}

impl AgentKeyPair {
    /// A fresh key pair from the OS random generator.
    pub fn generate() -> Self {
        let mut ikm = Secret::new([0u8; 32]);
        crate::random::fill(ikm.expose_secret_mut());
        Self::derive(ikm.expose_secret())
    }

    /// RFC 9180 DeriveKeyPair from input keying material.
    pub(super) fn derive(ikm: &[u8]) -> Self {
        let (sk, pk) = Kem::derive_keypair(ikm);
        Self {
            secret: AgentSecretKey(sk),
            public: AgentPublicKey(pk),
        }
    }

    /// Rebuilds the pair from the 32 private key bytes stored by the agent.
    pub fn from_secret_bytes(bytes: &Secret<[u8; 32]>) -> Result<Self, EnvelopeError> {
        let sk = <Kem as KemTrait>::PrivateKey::from_bytes(bytes.expose_secret())
            .map_err(|_| EnvelopeError::InvalidKey)?;
        let pk = Kem::sk_to_pk(&sk);
        Ok(Self {
            secret: AgentSecretKey(sk),
            public: AgentPublicKey(pk),
        })
    }

    /// The public half.
    pub fn public(&self) -> &AgentPublicKey {
        &self.public
    }

    /// The private half.
    pub fn secret(&self) -> &AgentSecretKey {
        &self.secret
    }
}

impl AgentSecretKey {
    /// The 32 private key bytes, for the agent's own key file. Never log or send them.
    pub fn expose_secret_bytes(&self) -> Secret<[u8; 32]> {
        let mut out = Secret::new([0u8; 32]);
        out.expose_secret_mut().copy_from_slice(&self.0.to_bytes());
        out
    }
}

impl AgentPublicKey {
    /// The 32 public key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.0.to_bytes());
        out
    }

    /// Parses 32 public key bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        <Kem as KemTrait>::PublicKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| EnvelopeError::InvalidKey)
    }
}

impl fmt::Debug for AgentSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgentSecretKey({REDACTED})")
    }
}

impl fmt::Debug for AgentKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentKeyPair")
            .field("public", &self.public)
            .field("secret", &REDACTED)
            .finish()
    }
}

impl fmt::Debug for AgentPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgentPublicKey({})", hex::encode(self.to_bytes()))
    }
}
