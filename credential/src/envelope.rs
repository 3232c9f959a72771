//! Sealed credential envelopes: a password in flight from the endpoint to one agent.
//!
//! HPKE (RFC 9180) in base mode with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and
//! ChaCha20-Poly1305 (suite 0x0020/0x0001/0x0003, RFC 9180 appendix A.2 has its known
//! answers). Only the agent holding the private key can open an envelope. The request id,
//! the user name, the endpoint id and the expiry travel in clear but are bound to the
//! ciphertext as associated data, so changing any of them makes opening fail. The opener
//! also refuses expired envelopes and replays (a bounded cache of request ids).
//!
//! Wire format, version 1 (all integers big-endian):
//! ```text
//! "CWE1" | kem u16 | kdf u16 | aead u16 | enc [32] | request id [16] | expires_at u64
//!        | user name len u16 | user name | endpoint id len u16 | endpoint id
//!        | ciphertext len u16 | ciphertext
//! ```
//! The associated data is every byte before the ciphertext length.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::Mutex;

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as KemTrait, OpModeR, OpModeS, Serializable};

use crate::password::Password;
use crate::secret::{Secret, REDACTED};

type Kem = X25519HkdfSha256;
type Kdf = HkdfSha256;
type Aead = ChaCha20Poly1305;

const MAGIC: &[u8; 4] = b"CWE1";
const SUITE: [u16; 3] = [0x0020, 0x0001, 0x0003];
/// HPKE `info`: separates these envelopes from any other use of the same agent key.
const INFO: &[u8] = b"causeway credential envelope v1";
const ENC_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// Longest user name an envelope may carry, in bytes (AD allows 1024-character UPNs, but
/// nothing real comes close to this).
pub const MAX_USER_NAME_LEN: usize = 512;
/// Longest endpoint id, in bytes.
pub const MAX_ENDPOINT_ID_LEN: usize = 128;
/// Largest envelope accepted at all; anything larger is refused before it is parsed.
pub const MAX_ENVELOPE_LEN: usize = 4096;
/// An envelope may not claim to live longer than this: it bounds how long the replay cache
/// must remember a request id.
pub const MAX_LIFETIME_SECS: u64 = 300;
/// Default number of request ids the replay cache holds.
pub const DEFAULT_REPLAY_CAPACITY: usize = 65_536;

/// A per-request identifier, unique for every envelope sealed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub [u8; 16]);

impl RequestId {
    /// A fresh random request id.
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        crate::random::fill(&mut b);
        Self(b)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", hex::encode(self.0))
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// What an envelope says in clear, all of it authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeContext {
    /// The sign-in request this credential belongs to.
    pub request_id: RequestId,
    /// The sign-in name the user typed.
    pub user_name: String,
    /// The endpoint (replica) that sealed the envelope.
    pub endpoint_id: String,
    /// Seconds since the Unix epoch after which the envelope must not be opened.
    pub expires_at: u64,
}

/// An agent's HPKE private key. Redacted when formatted; its bytes leave only through
/// [`AgentSecretKey::expose_secret_bytes`] (for writing the agent's 0600 key file).
pub struct AgentSecretKey(<Kem as KemTrait>::PrivateKey);

/// An agent's HPKE public key, published to the endpoint at enrollment.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentPublicKey(<Kem as KemTrait>::PublicKey);

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
    fn derive(ikm: &[u8]) -> Self {
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

/// Why an envelope could not be sealed or opened. Carries no secret and no user input
/// beyond lengths and times.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Larger than [`MAX_ENVELOPE_LEN`]; refused unread.
    #[error("envelope is {len} bytes; at most {max} are accepted")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Ends before a field is complete.
    #[error("envelope is truncated inside the {field}")]
    Truncated {
        /// Which field was cut.
        field: &'static str,
    },
    /// Does not start with the version 1 magic.
    #[error("not a version 1 credential envelope")]
    BadMagic,
    /// Names an HPKE suite this build does not speak.
    #[error("envelope uses HPKE suite kem={kem:#06x} kdf={kdf:#06x} aead={aead:#06x}; only 0x0020/0x0001/0x0003 is supported")]
    UnsupportedSuite {
        /// KEM id.
        kem: u16,
        /// KDF id.
        kdf: u16,
        /// AEAD id.
        aead: u16,
    },
    /// A text field is longer than allowed.
    #[error("envelope {field} is {len} bytes; at most {max} are allowed")]
    FieldTooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A text field is empty, not UTF-8, or contains control characters.
    #[error("envelope {field} is empty, not UTF-8 or contains control characters")]
    BadText {
        /// Which field.
        field: &'static str,
    },
    /// Bytes follow the ciphertext.
    #[error("envelope has {count} bytes after its ciphertext")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// A key is not a valid X25519 key.
    #[error("invalid X25519 key")]
    InvalidKey,
    /// Decryption failed: sealed to another agent's key, or any byte of the ciphertext or
    /// of the associated data (request id, user name, endpoint, expiry) was changed.
    #[error("envelope does not open with this agent's key (wrong recipient, or tampered)")]
    DecryptionFailed,
    /// Sealing failed inside HPKE.
    #[error("sealing the envelope failed")]
    SealFailed,
    /// Sealed by another endpoint than the one this connection belongs to.
    #[error("envelope was sealed for another endpoint")]
    WrongEndpoint,
    /// Past its expiry.
    #[error("envelope expired at {expires_at} (now {now}, Unix seconds)")]
    Expired {
        /// When it expired.
        expires_at: u64,
        /// The time it was presented.
        now: u64,
    },
    /// Claims a lifetime longer than [`MAX_LIFETIME_SECS`].
    #[error("envelope expiry {expires_at} is more than {max_secs} s after now ({now})")]
    LifetimeTooLong {
        /// The claimed expiry.
        expires_at: u64,
        /// The time it was presented.
        now: u64,
        /// The limit.
        max_secs: u64,
    },
    /// This request id was already opened.
    #[error("envelope for request {request_id} was already opened (replay)")]
    Replayed {
        /// The replayed request id.
        request_id: RequestId,
    },
    /// The replay cache is full of unexpired ids; refusing is the only safe answer.
    #[error(
        "replay cache is full ({capacity} unexpired request ids); refusing until entries expire"
    )]
    ReplayCacheFull {
        /// Its capacity.
        capacity: usize,
    },
    /// The decrypted content is not an acceptable password.
    #[error("envelope content is not a valid password: {0}")]
    BadPassword(#[from] crate::password::PasswordError),
}

/// A sealed envelope's bytes, ready for the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedEnvelope(Vec<u8>);

impl SealedEnvelope {
    /// The wire bytes (ciphertext: safe to send, not to log).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Wraps received bytes; nothing is checked until [`EnvelopeOpener::open`].
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for SealedEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedEnvelope({} bytes)", self.0.len())
    }
}

/// The sender side of an HPKE setup: what [`seal`] gets from the OS generator, and what
/// the known-answer test gets from a pinned ephemeral key.
type SenderSetup = (
    <Kem as KemTrait>::EncappedKey,
    hpke::aead::AeadCtxS<Aead, Kdf, Kem>,
);

/// Seals `password` to `recipient` with `context` bound as associated data.
pub fn seal(
    recipient: &AgentPublicKey,
    context: &EnvelopeContext,
    password: &Password,
) -> Result<SealedEnvelope, EnvelopeError> {
    seal_with(context, password, || {
        hpke::setup_sender::<Aead, Kdf, Kem>(&OpModeS::Base, &recipient.0, INFO)
    })
}

fn seal_with(
    context: &EnvelopeContext,
    password: &Password,
    setup: impl FnOnce() -> Result<SenderSetup, hpke::HpkeError>,
) -> Result<SealedEnvelope, EnvelopeError> {
    check_text("user name", &context.user_name, MAX_USER_NAME_LEN)?;
    check_text("endpoint id", &context.endpoint_id, MAX_ENDPOINT_ID_LEN)?;
    let (enc, mut ctx) = setup().map_err(|_| EnvelopeError::SealFailed)?;

    let mut out = Vec::with_capacity(96 + context.user_name.len() + context.endpoint_id.len());
    out.extend_from_slice(MAGIC);
    for id in SUITE {
        out.extend_from_slice(&id.to_be_bytes());
    }
    out.extend_from_slice(&enc.to_bytes());
    out.extend_from_slice(&context.request_id.0);
    out.extend_from_slice(&context.expires_at.to_be_bytes());
    put_text(&mut out, &context.user_name);
    put_text(&mut out, &context.endpoint_id);
    let aad_len = out.len();
    let ciphertext = ctx
        .seal(password.expose_secret().as_bytes(), &out[..aad_len])
        .map_err(|_| EnvelopeError::SealFailed)?;
    let ct_len = u16::try_from(ciphertext.len()).map_err(|_| EnvelopeError::SealFailed)?;
    out.extend_from_slice(&ct_len.to_be_bytes());
    out.extend_from_slice(&ciphertext);
    if out.len() > MAX_ENVELOPE_LEN {
        return Err(EnvelopeError::TooLarge {
            len: out.len(),
            max: MAX_ENVELOPE_LEN,
        });
    }
    Ok(SealedEnvelope(out))
}

fn put_text(out: &mut Vec<u8>, s: &str) {
    // Lengths were checked by check_text: both fit in u16.
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn check_text(field: &'static str, s: &str, max: usize) -> Result<(), EnvelopeError> {
    if s.len() > max {
        return Err(EnvelopeError::FieldTooLong {
            field,
            len: s.len(),
            max,
        });
    }
    if s.is_empty() || s.chars().any(char::is_control) {
        return Err(EnvelopeError::BadText { field });
    }
    Ok(())
}

/// A bounds-checked reader over envelope bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], EnvelopeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(EnvelopeError::Truncated { field })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, EnvelopeError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn text(&mut self, field: &'static str, max: usize) -> Result<String, EnvelopeError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(EnvelopeError::FieldTooLong { field, len, max });
        }
        let bytes = self.take(len, field)?;
        let s = std::str::from_utf8(bytes).map_err(|_| EnvelopeError::BadText { field })?;
        check_text(field, s, max)?;
        Ok(s.to_owned())
    }
}

struct Parsed<'a> {
    enc: &'a [u8],
    context: EnvelopeContext,
    aad: &'a [u8],
    ciphertext: &'a [u8],
}

fn parse(bytes: &[u8]) -> Result<Parsed<'_>, EnvelopeError> {
    if bytes.len() > MAX_ENVELOPE_LEN {
        return Err(EnvelopeError::TooLarge {
            len: bytes.len(),
            max: MAX_ENVELOPE_LEN,
        });
    }
    let mut r = Reader { buf: bytes, pos: 0 };
    if r.take(4, "magic")? != MAGIC {
        return Err(EnvelopeError::BadMagic);
    }
    let (kem, kdf, aead) = (r.u16("suite")?, r.u16("suite")?, r.u16("suite")?);
    if [kem, kdf, aead] != SUITE {
        return Err(EnvelopeError::UnsupportedSuite { kem, kdf, aead });
    }
    let enc = r.take(ENC_LEN, "encapsulated key")?;
    let mut request_id = [0u8; 16];
    request_id.copy_from_slice(r.take(16, "request id")?);
    let mut exp = [0u8; 8];
    exp.copy_from_slice(r.take(8, "expiry")?);
    let user_name = r.text("user name", MAX_USER_NAME_LEN)?;
    let endpoint_id = r.text("endpoint id", MAX_ENDPOINT_ID_LEN)?;
    let aad_end = r.pos;
    let ct_len = usize::from(r.u16("ciphertext length")?);
    if ct_len < TAG_LEN {
        return Err(EnvelopeError::Truncated {
            field: "ciphertext",
        });
    }
    let ciphertext = r.take(ct_len, "ciphertext")?;
    if r.pos != bytes.len() {
        return Err(EnvelopeError::TrailingBytes {
            count: bytes.len() - r.pos,
        });
    }
    Ok(Parsed {
        enc,
        context: EnvelopeContext {
            request_id: RequestId(request_id),
            user_name,
            endpoint_id,
            expires_at: u64::from_be_bytes(exp),
        },
        aad: &bytes[..aad_end],
        ciphertext,
    })
}

/// What an opened envelope yields.
#[derive(Debug)]
pub struct OpenedCredential {
    /// The authenticated clear fields.
    pub context: EnvelopeContext,
    /// The password, for the bind only.
    pub password: Password,
}

/// Opens envelopes sealed to one agent key, refusing expired ones and replays.
/// Shared by all of an agent's connections (it is `Sync`).
pub struct EnvelopeOpener {
    keys: AgentKeyPair,
    replay: Mutex<ReplayCache>,
}

impl fmt::Debug for EnvelopeOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvelopeOpener")
            .field("public", self.keys.public())
            .finish_non_exhaustive()
    }
}

impl EnvelopeOpener {
    /// An opener with the default replay cache capacity.
    pub fn new(keys: AgentKeyPair) -> Self {
        Self::with_replay_capacity(keys, DEFAULT_REPLAY_CAPACITY)
    }

    /// An opener whose replay cache holds at most `capacity` request ids.
    pub fn with_replay_capacity(keys: AgentKeyPair, capacity: usize) -> Self {
        Self {
            keys,
            replay: Mutex::new(ReplayCache::new(capacity.max(1))),
        }
    }

    /// The key pair envelopes are opened with.
    pub fn keys(&self) -> &AgentKeyPair {
        &self.keys
    }

    /// Opens an envelope that arrived from `expected_endpoint` at `now` (Unix seconds).
    ///
    /// Order matters: the ciphertext is authenticated before any clear field is trusted, so
    /// a forged envelope can neither be reported as expired nor poison the replay cache.
    pub fn open(
        &self,
        envelope: &SealedEnvelope,
        expected_endpoint: &str,
        now: u64,
    ) -> Result<OpenedCredential, EnvelopeError> {
        let parsed = parse(&envelope.0)?;
        let enc = <Kem as KemTrait>::EncappedKey::from_bytes(parsed.enc)
            .map_err(|_| EnvelopeError::DecryptionFailed)?;
        let mut ctx =
            hpke::setup_receiver::<Aead, Kdf, Kem>(&OpModeR::Base, &self.keys.secret.0, &enc, INFO)
                .map_err(|_| EnvelopeError::DecryptionFailed)?;
        let plaintext = Secret::new(
            ctx.open(parsed.ciphertext, parsed.aad)
                .map_err(|_| EnvelopeError::DecryptionFailed)?,
        );
        let context = parsed.context;
        if context.endpoint_id != expected_endpoint {
            return Err(EnvelopeError::WrongEndpoint);
        }
        if now >= context.expires_at {
            return Err(EnvelopeError::Expired {
                expires_at: context.expires_at,
                now,
            });
        }
        if context.expires_at - now > MAX_LIFETIME_SECS {
            return Err(EnvelopeError::LifetimeTooLong {
                expires_at: context.expires_at,
                now,
                max_secs: MAX_LIFETIME_SECS,
            });
        }
        let password = Password::from_utf8(plaintext.expose_secret().clone())?;
        self.replay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(context.request_id, context.expires_at, now)?;
        Ok(OpenedCredential { context, password })
    }
}

/// Remembers opened request ids until their envelopes expire. Memory is bounded by
/// `capacity`; when every slot holds an unexpired id, new envelopes are refused (the hub
/// then retries on another agent) rather than forgetting ids early, which would let
/// replays through.
struct ReplayCache {
    capacity: usize,
    seen: HashSet<RequestId>,
    by_expiry: BTreeSet<(u64, RequestId)>,
}

impl ReplayCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: HashSet::new(),
            by_expiry: BTreeSet::new(),
        }
    }

    fn insert(&mut self, id: RequestId, expires_at: u64, now: u64) -> Result<(), EnvelopeError> {
        // Forget ids whose envelopes can no longer be opened anyway.
        while let Some(&(exp, old)) = self.by_expiry.first() {
            if exp > now {
                break;
            }
            self.by_expiry.pop_first();
            self.seen.remove(&old);
        }
        if self.seen.contains(&id) {
            return Err(EnvelopeError::Replayed { request_id: id });
        }
        if self.seen.len() >= self.capacity {
            return Err(EnvelopeError::ReplayCacheFull {
                capacity: self.capacity,
            });
        }
        self.seen.insert(id);
        self.by_expiry.insert((expires_at, id));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
