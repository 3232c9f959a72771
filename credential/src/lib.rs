//! Causeway's hardened credential core: secret types, the NT hash, Entra-compatible
//! password-hash-sync verifiers, sealed credential envelopes and the sign-in outcome
//! vocabulary. It must never log, print, serialise or keep a secret longer than needed,
//! and it does no I/O of its own: the agent protocol that carries its envelopes is in
//! `causeway-proto`.
#![forbid(unsafe_code)]

pub mod envelope;
mod nt;
mod outcome;
mod password;
mod phs;
mod random;
mod secret;

pub use envelope::{
    AgentKeyPair, AgentPublicKey, AgentSecretKey, ChannelKey, ChannelOpener, ChannelSealer,
    EnvelopeContext, EnvelopeError, EnvelopeOpener, OpenedCredential, RequestId, SealedEnvelope,
};
pub use nt::{NtHash, NtHashError};
pub use outcome::SignInOutcome;
pub use password::{Password, PasswordError, MAX_PASSWORD_UTF16_UNITS};
pub use phs::{pbkdf2_sha256, PhsVerifier, VerifierParseError, DEFAULT_ITERATIONS};
pub use secret::{Secret, REDACTED};

/// The verifier's limits and lengths, for callers that validate input before parsing.
pub mod phs_limits {
    pub use crate::phs::{KEY_LEN, MAX_ENCODED_LEN, MAX_ITERATIONS, MIN_ITERATIONS, SALT_LEN};
}

/// Every error this crate returns, for callers that want one type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A password was refused.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// An NT hash was refused.
    #[error(transparent)]
    NtHash(#[from] NtHashError),
    /// A verifier string was refused.
    #[error(transparent)]
    Verifier(#[from] VerifierParseError),
    /// An envelope could not be sealed or opened.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}
