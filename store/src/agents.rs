//! The agent registry's capability: one-time enrollment tokens, registered agents
//! (approval, revocation, renewal) and a generation counter hubs poll. The token format
//! and the input checks live here, so every backend mints, parses and refuses alike.
//!
//! It holds no secret: a token is stored as the SHA-256 of its random part only, and
//! agents are known by public data (certificate fingerprints, HPKE public keys).

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine as _;
pub(crate) use causeway_certs::{from_unix_secs, unix_secs};
use causeway_certs::{is_fingerprint, AgentId, CertsError, TokenError};
use causeway_credential::Secret;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The longest enrollment token accepted as input, in bytes.
pub const MAX_TOKEN_LEN: usize = 256;
/// The longest lifetime a token may be given.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// The shortest lifetime a token may be given.
pub const MIN_TOKEN_TTL: Duration = Duration::from_secs(60);
/// The longest host name an agent may register with, in characters.
pub const MAX_HOST_NAME_LEN: usize = 255;

const TOKEN_VERSION: &str = "cwt1";
const TOKEN_SECRET_LEN: usize = 32;
/// base64url without padding of 32 bytes.
const TOKEN_SECRET_B64_LEN: usize = 43;
/// How many hex digits of the CA fingerprint a token carries: all of them. A shorter pin
/// would let an attacker who finds a certificate with the same prefix (a one-time 2^64
/// search for 16 digits) impersonate the endpoint to every enrolling agent.
const TOKEN_CA_PREFIX_LEN: usize = 64;
/// Tokens are kept this long after they expire (for `used_at` forensics), then deleted.
pub(crate) const TOKEN_RETENTION_SECS: i64 = 30 * 24 * 60 * 60;

/// What an enrollment token may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenPurpose {
    /// Registering a pass-through-authentication agent.
    Agent,
    /// Registering a sync host (`causeway sync`, exporting to the ingestion API).
    Sync,
}

impl TokenPurpose {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::Agent => "agent",
            TokenPurpose::Sync => "sync",
        }
    }
}

/// What a registered host is: the registry holds both kinds, and a certificate is only
/// good for its own kind's channel (a sync host's may not take sign-ins, an agent's may
/// not write the directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HostRole {
    /// A pass-through-authentication agent.
    Agent,
    /// A sync host. It has no HPKE key: nothing is sealed to it (the registry stores
    /// 32 zero bytes in that column).
    Sync,
}

impl HostRole {
    /// The lowercase name stored in the database and shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            HostRole::Agent => "agent",
            HostRole::Sync => "sync",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "agent" => Some(HostRole::Agent),
            "sync" => Some(HostRole::Sync),
            _ => None,
        }
    }

    /// The token purpose that enrolls a host of this role.
    pub fn token_purpose(self) -> TokenPurpose {
        match self {
            HostRole::Agent => TokenPurpose::Agent,
            HostRole::Sync => TokenPurpose::Sync,
        }
    }
}

impl fmt::Display for HostRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an agent may receive traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AgentStatus {
    /// Registered; waits for an administrator's approval.
    Pending,
    /// May receive sign-ins.
    Approved,
    /// Cut off for good.
    Revoked,
}

impl AgentStatus {
    /// The lowercase name stored in the database and shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Pending => "pending",
            AgentStatus::Approved => "approved",
            AgentStatus::Revoked => "revoked",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(AgentStatus::Pending),
            "approved" => Some(AgentStatus::Approved),
            "revoked" => Some(AgentStatus::Revoked),
            _ => None,
        }
    }
}

impl fmt::Display for AgentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A new agent, as enrollment learned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRegistration {
    /// The id its certificate names.
    pub agent_id: AgentId,
    /// The host name it reported (at most 255 characters, no control characters).
    pub host_name: String,
    /// What it is (an agent or a sync host).
    pub role: HostRole,
    /// Its HPKE (X25519) public key: credentials for it are sealed to this key. A sync
    /// host has none: zeros.
    pub hpke_public_key: [u8; 32],
    /// SHA-256 of its certificate's DER, lowercase hex.
    pub cert_fingerprint: String,
    /// When that certificate expires.
    pub cert_not_after: SystemTime,
}

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentRecord {
    /// Its id.
    pub id: AgentId,
    /// The host name it reported.
    pub host_name: String,
    /// What it is (an agent or a sync host).
    pub role: HostRole,
    /// Whether it may receive traffic.
    pub status: AgentStatus,
    /// SHA-256 of its current certificate, lowercase hex.
    pub cert_fingerprint: String,
    /// The certificate it had before its last renewal, still accepted until it expires
    /// so that connections opened before the renewal are not refused.
    pub previous_cert_fingerprint: Option<String>,
    /// When the current certificate expires.
    pub cert_not_after: SystemTime,
    /// When it registered.
    pub first_seen: SystemTime,
    /// When it last connected (see [`Agents::touch`]).
    pub last_seen: SystemTime,
    /// Its HPKE public key (zeros for a sync host).
    pub hpke_public_key: [u8; 32],
}

/// The agent registry. Each operation is one transaction; any number of handles, in any
/// number of processes, may share one registry. Errors are `causeway-certs`' (enrollment
/// is the CA's vocabulary: [`TokenError`], unknown and revoked agents).
#[async_trait]
pub trait Agents: Send + Sync {
    /// Creates a one-time enrollment token valid for `ttl`, to be shown once to the
    /// administrator: `cwt1.<32 random bytes, base64url>.<ca_fingerprint>`. The tail lets
    /// the new agent pin the CA it meets at enrollment. Only the SHA-256 of the random part
    /// is stored.
    async fn create_token(
        &self,
        purpose: TokenPurpose,
        ca_fingerprint: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Secret<String>, CertsError>;
    /// Uses up an enrollment token for `purpose`. Single-use and atomic: of any number of
    /// concurrent calls with the same token, exactly one succeeds. Errors, checked in this
    /// order: [`TokenError::Malformed`], [`TokenError::Unknown`] (also for a token made for
    /// another purpose or CA), [`TokenError::AlreadyUsed`], [`TokenError::Expired`].
    async fn consume_token(
        &self,
        token: &str,
        purpose: TokenPurpose,
        now: SystemTime,
    ) -> Result<(), CertsError>;
    /// Registers a newly enrolled agent, `Pending` if `require_approval`, else `Approved`.
    async fn register_agent(
        &self,
        reg: AgentRegistration,
        require_approval: bool,
        now: SystemTime,
    ) -> Result<AgentRecord, CertsError>;
    /// Every registered agent, oldest first.
    async fn list_agents(&self) -> Result<Vec<AgentRecord>, CertsError>;
    /// One agent, if registered.
    async fn agent(&self, agent_id: &AgentId) -> Result<Option<AgentRecord>, CertsError>;
    /// The agent whose current or previous certificate has this fingerprint (SHA-256 of
    /// the DER, lowercase hex), whatever its status: the caller decides what a `Pending`
    /// or `Revoked` agent may do.
    async fn lookup_by_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Option<AgentRecord>, CertsError>;
    /// Lets a pending agent receive traffic. Approving an approved agent does nothing; a
    /// revoked agent cannot be approved again.
    async fn approve(&self, agent_id: &AgentId) -> Result<(), CertsError>;
    /// Cuts an agent off for good. Revoking a revoked agent does nothing.
    async fn revoke(&self, agent_id: &AgentId) -> Result<(), CertsError>;
    /// Notes that the agent connected at `now` (`last_seen` never moves backwards).
    async fn touch(&self, agent_id: &AgentId, now: SystemTime) -> Result<(), CertsError>;
    /// Records a renewed certificate: the current one becomes the previous one (still
    /// accepted) and `new_fingerprint` becomes current. Recording the current fingerprint
    /// again does nothing, so a retried renewal is harmless. A revoked agent cannot renew.
    async fn record_renewal(
        &self,
        agent_id: &AgentId,
        new_fingerprint: &str,
        new_not_after: SystemTime,
    ) -> Result<(), CertsError>;
    /// A counter that grows whenever an agent is registered, approved, revoked or renewed,
    /// by any handle: a hub re-checks its connected agents only when it moved.
    async fn generation(&self) -> Result<u64, CertsError>;
    /// The ids of every revoked agent.
    async fn revoked_ids(&self) -> Result<Vec<AgentId>, CertsError>;
}

/// A freshly minted token: what the administrator is shown, and what a backend stores.
pub(crate) struct MintedToken {
    pub(crate) token: Secret<String>,
    pub(crate) secret_sha256: [u8; 32],
    pub(crate) ca_prefix: String,
}

/// Checks a token request and mints the token (see [`Agents::create_token`]).
pub(crate) fn mint_token(ca_fingerprint: &str, ttl: Duration) -> Result<MintedToken, CertsError> {
    if !is_fingerprint(ca_fingerprint) {
        return Err(CertsError::MalformedFingerprint(excerpt(
            ca_fingerprint,
            80,
        )));
    }
    if !(MIN_TOKEN_TTL..=MAX_TOKEN_TTL).contains(&ttl) {
        return Err(CertsError::InvalidLifetime {
            what: "an enrollment token",
            min_secs: MIN_TOKEN_TTL.as_secs(),
            max_secs: MAX_TOKEN_TTL.as_secs(),
            got_secs: ttl.as_secs(),
        });
    }
    let mut secret: Zeroizing<[u8; TOKEN_SECRET_LEN]> = Zeroizing::new([0; TOKEN_SECRET_LEN]);
    getrandom::fill(secret.as_mut_slice()).map_err(|e| CertsError::Random(e.to_string()))?;
    let secret_sha256: [u8; 32] = Sha256::digest(secret.as_slice()).into();
    let ca_prefix = &ca_fingerprint[..TOKEN_CA_PREFIX_LEN];
    // Built in place, with its final capacity, so no stray copy is left to free.
    let mut token = String::with_capacity(
        TOKEN_VERSION.len() + 1 + TOKEN_SECRET_B64_LEN + 1 + TOKEN_CA_PREFIX_LEN,
    );
    token.push_str(TOKEN_VERSION);
    token.push('.');
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(secret.as_slice(), &mut token);
    token.push('.');
    token.push_str(ca_prefix);
    Ok(MintedToken {
        token: Secret::new(token),
        secret_sha256,
        ca_prefix: ca_prefix.to_owned(),
    })
}

/// Splits a token into the SHA-256 of its secret part and its CA fingerprint prefix,
/// checking its form strictly (lengths, alphabet, canonical base64).
pub(crate) fn parse_token(token: &str) -> Result<([u8; 32], &str), TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(TOKEN_VERSION), Some(secret_b64), Some(ca_prefix), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let prefix_ok = ca_prefix.len() == TOKEN_CA_PREFIX_LEN
        && ca_prefix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !prefix_ok || secret_b64.len() != TOKEN_SECRET_B64_LEN {
        return Err(TokenError::Malformed);
    }
    // Room for the decoder's rounded-up size estimate; the exact length is checked below.
    let mut secret = Zeroizing::new([0u8; TOKEN_SECRET_LEN + 4]);
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode_slice(secret_b64, secret.as_mut_slice())
        .map_err(|_| TokenError::Malformed)?;
    if n != TOKEN_SECRET_LEN {
        return Err(TokenError::Malformed);
    }
    Ok((Sha256::digest(&secret[..n]).into(), ca_prefix))
}

pub(crate) fn check_fingerprint(fp: &str) -> Result<(), CertsError> {
    if is_fingerprint(fp) {
        Ok(())
    } else {
        Err(CertsError::MalformedFingerprint(excerpt(fp, 80)))
    }
}

pub(crate) fn check_host_name(name: &str) -> Result<(), CertsError> {
    if name.is_empty() {
        return Err(CertsError::InvalidHostName("it is empty"));
    }
    if name.chars().count() > MAX_HOST_NAME_LEN {
        return Err(CertsError::InvalidHostName(
            "it is longer than 255 characters",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(CertsError::InvalidHostName(
            "it contains control characters",
        ));
    }
    Ok(())
}

/// Quotes at most `max` characters of untrusted input in an error message.
fn excerpt(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}
