//! The crate's one error type. Every message says what to fix; none carries a key, a token
//! or any other secret (messages name files, ids and fingerprints only).

use std::fmt;
use std::path::PathBuf;

use crate::id::AgentId;

/// Everything that can go wrong in `causeway-certs`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertsError {
    /// A token-signing key or its certificate cannot be made or used.
    #[error("token-signing key {}: {problem}", path.display())]
    SigningKey {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A file or directory operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "create", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A private file (CA key, registry) is accessible to group or others.
    #[error(
        "{} is accessible to group or others (mode {mode:04o}); it must be private to the \
         user running Causeway: run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    InsecureFile {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The CA directory is writable by group or others, who could then replace the CA.
    #[error(
        "the directory {} is writable by group or others (mode {mode:04o}), so they could \
         replace the CA: run `chmod 700 {}`",
        path.display(),
        path.display()
    )]
    InsecureDirectory {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A CA file exists but cannot be used.
    #[error(
        "{} is not a usable {what}: {problem}; restore it from a backup, or move the \
         directory aside to create a new CA (every agent must then enroll again)",
        path.display()
    )]
    CorruptCaFile {
        /// The file.
        path: PathBuf,
        /// What the file should hold ("CA private key", "CA certificate").
        what: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The CA key and certificate do not belong together.
    #[error(
        "the CA key {} does not belong to the CA certificate {}; restore the matching pair \
         from a backup, or move the directory aside to create a new CA (every agent must \
         then enroll again)",
        key.display(),
        cert.display()
    )]
    CaKeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// One of the two CA files is missing.
    #[error(
        "{} exists but {} does not (an earlier CA creation was interrupted, or a file was \
         deleted); restore the missing file from a backup, or move the directory aside to \
         create a new CA (every agent must then enroll again)",
        present.display(),
        missing.display()
    )]
    IncompleteCa {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// The CA certificate has expired (or is not yet valid).
    #[error(
        "the CA certificate {} is valid only from {not_before} to {not_after} (Unix \
         seconds), not now ({now}); check the system clock, or move the directory aside to \
         create a new CA (every agent must then enroll again)",
        path.display()
    )]
    CaNotValidNow {
        /// The certificate file.
        path: PathBuf,
        /// Its notBefore, Unix seconds.
        not_before: i64,
        /// Its notAfter, Unix seconds.
        not_after: i64,
        /// The time it was checked at, Unix seconds.
        now: i64,
    },
    /// A certificate signing request was refused.
    #[error(transparent)]
    Csr(#[from] CsrError),
    /// An enrollment token was refused.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// No names were given for the server certificate.
    #[error("a server certificate needs at least one DNS name or IP address (the names agents and browsers use to reach the endpoint)")]
    NoServerNames,
    /// A name for the server certificate is neither a DNS name nor an IP address.
    #[error("{name:?} is neither a valid DNS name nor an IP address; list the names agents and browsers use to reach the endpoint")]
    InvalidServerName {
        /// The name as given (never secret).
        name: String,
    },
    /// A requested certificate or token lifetime is out of range.
    #[error("{what} must last between {min_secs} s and {max_secs} s, not {got_secs} s")]
    InvalidLifetime {
        /// What the lifetime is for.
        what: &'static str,
        /// The shortest allowed, seconds.
        min_secs: u64,
        /// The longest allowed, seconds.
        max_secs: u64,
        /// What was asked for, seconds.
        got_secs: u64,
    },
    /// A string is not an agent id.
    #[error(transparent)]
    MalformedAgentId(#[from] crate::id::MalformedAgentId),
    /// A host name given at registration is not acceptable.
    #[error("the agent's host name is not acceptable: {0}")]
    InvalidHostName(&'static str),
    /// A certificate fingerprint is not 64 lowercase hex digits.
    #[error("{0:?} is not a certificate fingerprint (expected 64 lowercase hex digits: SHA-256 of the DER)")]
    MalformedFingerprint(String),
    /// No agent has this id.
    #[error("no agent {0} is registered; `causeway certs list` shows the registered agents")]
    UnknownAgent(AgentId),
    /// The agent was revoked, which is final.
    #[error("agent {0} was revoked, and revocation is final; enroll the host again with a new token (`causeway certs token --for agent`)")]
    AgentRevoked(AgentId),
    /// An agent with this id already exists.
    #[error("an agent {0} is already registered")]
    DuplicateAgent(AgentId),
    /// A certificate is already registered to an agent.
    #[error("the certificate {0} is already registered to an agent; issue a new certificate")]
    DuplicateCertificate(String),
    /// The registry database failed.
    #[error(
        "the agent registry {} failed while trying to {action}: {source}; check that the \
         disk is not full and the file is writable by this user",
        path.display()
    )]
    Database {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// SQLite's reason.
        #[source]
        source: DbError,
    },
    /// The registry database holds something this build cannot read.
    #[error(
        "the agent registry {} cannot be used: {problem}; restore it from a backup or run \
         the Causeway version that wrote it",
        path.display()
    )]
    CorruptRegistry {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Making a key or signing a certificate failed.
    #[error("cannot {action}: {detail}")]
    Signing {
        /// What was being done.
        action: &'static str,
        /// The library's reason (never key material).
        detail: String,
    },
    /// A PEM input did not contain what it should.
    #[error("{what} is not valid PEM (expected {expected})")]
    BadPem {
        /// Which input.
        what: &'static str,
        /// What PEM block was expected.
        expected: &'static str,
    },
    /// An operator's certificate or key file (`server.tls_cert_file`, `server.tls_key_file`)
    /// cannot be used; the message names the file and what is wrong, never key material.
    #[error("{}: {problem}", path.display())]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// Building a rustls configuration failed.
    #[error("cannot build the TLS configuration ({context}): {detail}")]
    Tls {
        /// Which configuration.
        context: &'static str,
        /// rustls's reason.
        detail: String,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

/// Why a certificate signing request was refused. The CSR comes from outside (an agent):
/// these are the peer's faults, not the operator's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    /// The PEM text is larger than [`crate::MAX_CSR_PEM_LEN`].
    #[error("the certificate signing request is {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// No `CERTIFICATE REQUEST` PEM block was found.
    #[error(
        "the certificate signing request is not PEM (expected -----BEGIN CERTIFICATE REQUEST-----)"
    )]
    NotPem,
    /// The DER inside does not parse as PKCS #10.
    #[error("the certificate signing request is not a valid PKCS #10 structure")]
    Unparsable,
    /// The CSR's signature does not verify with its own public key.
    #[error("the certificate signing request's signature does not verify (tampered or corrupted)")]
    BadSignature,
    /// The key is not ECDSA P-256, ECDSA P-384 or Ed25519.
    #[error("the certificate signing request's key type is not accepted (use ECDSA P-256, ECDSA P-384 or Ed25519)")]
    UnsupportedKey,
}

/// Why an enrollment token was refused. Messages never contain the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The string is not of the form `cwt1.<secret>.<fingerprint>`.
    #[error("the enrollment token is malformed (expected cwt1.<secret>.<CA fingerprint>, exactly as `causeway certs token` printed it)")]
    Malformed,
    /// Well-formed, but this endpoint never issued it.
    #[error("the enrollment token is unknown to this endpoint (mistyped, or created on another endpoint); create one with `causeway certs token --for agent`")]
    Unknown,
    /// It was used already; tokens are single-use.
    #[error("the enrollment token was already used (tokens are single-use); create a new one with `causeway certs token --for agent`")]
    AlreadyUsed,
    /// Its lifetime is over.
    #[error("the enrollment token has expired; create a new one with `causeway certs token --for agent` (and a longer --ttl if needed)")]
    Expired,
}

/// A database failure (the agent registry's, in `causeway-store`), kept opaque so the
/// database library is not part of this crate's API.
pub struct DbError(Box<dyn std::error::Error + Send + Sync>);

impl DbError {
    /// Wraps the database library's error; its `Display` is shown as is.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(e))
    }
}

impl fmt::Debug for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl CertsError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn signing(action: &'static str, e: impl fmt::Display) -> Self {
        Self::Signing {
            action,
            detail: e.to_string(),
        }
    }

    pub(crate) fn tls(context: &'static str, e: impl fmt::Display) -> Self {
        Self::Tls {
            context,
            detail: e.to_string(),
        }
    }
}
