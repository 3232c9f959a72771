//! Sealed credential envelopes: a password in flight from the endpoint to one agent, over
//! one agent channel.
//!
//! HPKE (RFC 9180) in base mode with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and
//! ChaCha20-Poly1305 (suite 0x0020/0x0001/0x0003, RFC 9180 appendix A.2.1 has its known
//! answers). The hub encapsulates **once per channel** to the agent's enrolled key and sends
//! the encapsulated key once ([`ChannelKey`], in the channel's `ChannelKey` frame); each
//! request then gets its own ChaCha20-Poly1305 key from the HPKE exporter (RFC 9180 §5.3),
//! `Export("causeway pta request v2" || seq, 32)`, where `seq` is the channel's request
//! counter. A full encapsulation costs the hub and the agent a scalar multiplication each
//! (about 180 µs together); an export and a small AEAD cost about 2 µs on each side
//! (`causeway bench pta` prints both).
//!
//! Why this is as safe as one encapsulation per request:
//! - *Confidentiality* is that of base-mode HPKE against the agent's enrolled key: the
//!   exporter secret comes out of the same key schedule as HPKE's own AEAD key, so only the
//!   holder of the agent's private key (or of this channel's sender context, i.e. the hub
//!   that made it) can derive it, and from it every request key. Keys for different `seq`
//!   are independent outputs of HKDF-Expand under distinct labels.
//! - *Uniqueness*: the sealer's counter only moves forward and sealing refuses once it would
//!   wrap, so no key is used twice; each key seals exactly one password, so the fixed-layout
//!   nonce (the counter again) can never repeat under one key either.
//! - *Forward secrecy* is per channel instead of per request: whoever reads one channel's
//!   exporter secret out of the hub's or the agent's memory can open every envelope of that
//!   channel, not just one. Request keys are zeroized after use, the secret dies with the
//!   channel, and every new channel (reconnect, certificate renewal) encapsulates afresh.
//!   Against a later theft of the agent's private key nothing changes: base mode never had
//!   forward secrecy against the recipient's key.
//! - *Replays* are refused twice: per channel, `seq` must be strictly greater than the last
//!   one opened (a replayed or reordered envelope is refused before any decryption), and the
//!   agent-wide cache of request ids, kept until each envelope's expiry, refuses a request id
//!   opened before even on another channel (say, a recorded channel key and its envelopes
//!   played back on a new connection by someone who broke the TLS around it).
//!
//! The request id, the user name, the endpoint id, the expiry and `seq` travel in clear but
//! are the ciphertext's associated data, so changing any of them makes opening fail. The
//! opener also refuses expired envelopes, and an envelope before its channel's key.
//!
//! Envelope wire format, version 2 (all integers big-endian):
//! ```text
//! "CWE2" | kem u16 | kdf u16 | aead u16 | seq u64 | request id [16] | expires_at u64
//!        | user name len u16 | user name | endpoint id len u16 | endpoint id
//!        | ciphertext len u16 | ciphertext
//! ```
//! The associated data is every byte before the ciphertext length.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::Mutex;

use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as KemTrait, OpModeR, OpModeS, Serializable};

mod keys;
mod wire;

pub use keys::{AgentKeyPair, AgentPublicKey, AgentSecretKey};
use wire::{check_text, parse, put_text};

use crate::password::Password;
use crate::secret::Secret;

type Kem = X25519HkdfSha256;
type Kdf = HkdfSha256;
type Aead = ChaCha20Poly1305;

const MAGIC: &[u8; 4] = b"CWE2";
const SUITE: [u16; 3] = [0x0020, 0x0001, 0x0003];
/// HPKE `info`: separates these channels from any other use of the same agent key (and from
/// version 1's one-envelope-per-encapsulation use of it).
const INFO: &[u8] = b"causeway pta channel v2";
/// Exporter context prefix for a request key; the request's `seq` follows (8 bytes BE).
const REQUEST_KEY_LABEL: &[u8] = b"causeway pta request v2";
/// Length of an encapsulated key (an X25519 public key).
pub const CHANNEL_KEY_LEN: usize = 32;
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
    /// Decryption failed: sealed on another channel or to another agent's key, or any
    /// byte of the ciphertext or of the associated data (sequence number, request id, user
    /// name, endpoint, expiry) was changed.
    #[error(
        "envelope does not open with this channel's key (another channel or agent, or tampered)"
    )]
    DecryptionFailed,
    /// Sealing failed inside HPKE.
    #[error("sealing the envelope failed")]
    SealFailed,
    /// The channel's sequence numbers are used up; the hub must open a new channel.
    #[error("this channel has sealed its last envelope; a new channel is needed")]
    SequenceExhausted,
    /// The envelope's sequence number is not after the last one opened on this channel:
    /// the hub replayed or reordered it. Refused before any decryption.
    #[error("envelope sequence number {seq} is not after {last}, the last opened on this channel (replayed or reordered)")]
    OutOfOrder {
        /// The envelope's sequence number.
        seq: u64,
        /// The last sequence number opened on the channel.
        last: u64,
    },
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

/// The encapsulated key that opens one channel's envelopes (an ephemeral X25519 public
/// key): sent once per channel, hub → agent. Not secret, but useless without the agent's
/// private key.
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelKey(pub [u8; CHANNEL_KEY_LEN]);

impl fmt::Debug for ChannelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Enough to tell two channels apart in a log, no more.
        write!(f, "ChannelKey({}…)", hex::encode(&self.0[..4]))
    }
}

/// The sender side of an HPKE setup: what [`ChannelSealer::new`] gets from the OS
/// generator, and what the known-answer test gets from a pinned ephemeral key.
type SenderSetup = (
    <Kem as KemTrait>::EncappedKey,
    hpke::aead::AeadCtxS<Aead, Kdf, Kem>,
);

/// A request key: one ChaCha20-Poly1305 key per envelope, from the channel's exporter.
fn request_cipher(
    export: impl FnOnce(&[u8], &mut [u8]) -> Result<(), hpke::HpkeError>,
    seq: u64,
) -> Result<chacha20poly1305::ChaCha20Poly1305, hpke::HpkeError> {
    let mut label = [0u8; REQUEST_KEY_LABEL.len() + 8];
    label[..REQUEST_KEY_LABEL.len()].copy_from_slice(REQUEST_KEY_LABEL);
    label[REQUEST_KEY_LABEL.len()..].copy_from_slice(&seq.to_be_bytes());
    let mut key = Secret::new([0u8; 32]);
    export(&label, key.expose_secret_mut())?;
    // The cipher keeps its own copy of the key and zeroizes it on drop (chacha20poly1305's
    // `zeroize` feature, on in the workspace); `key` is zeroized when this returns.
    Ok(chacha20poly1305::ChaCha20Poly1305::new(
        key.expose_secret().into(),
    ))
}

/// Each key seals one message, so the nonce only has to be fixed; the counter is in it
/// anyway, so that even a key reused by a bug could not repeat a nonce.
fn request_nonce(seq: u64) -> chacha20poly1305::Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&seq.to_be_bytes());
    n.into()
}

/// The hub's side of one channel: seals every request's password with a fresh key from the
/// channel's single encapsulation. Sequence numbers go up by one per envelope; seal and
/// send under one lock so envelopes reach the agent in the order they were sealed (the
/// agent refuses any that goes back).
pub struct ChannelSealer {
    ctx: hpke::aead::AeadCtxS<Aead, Kdf, Kem>,
    next_seq: u64,
}

impl fmt::Debug for ChannelSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelSealer")
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl ChannelSealer {
    /// Encapsulates once to `recipient`: the sealer for a new channel, and the key to send
    /// the agent before the channel's first envelope.
    pub fn new(recipient: &AgentPublicKey) -> Result<(Self, ChannelKey), EnvelopeError> {
        Self::with_setup(|| {
            hpke::setup_sender::<Aead, Kdf, Kem>(&OpModeS::Base, &recipient.0, INFO)
        })
    }

    fn with_setup(
        setup: impl FnOnce() -> Result<SenderSetup, hpke::HpkeError>,
    ) -> Result<(Self, ChannelKey), EnvelopeError> {
        let (enc, ctx) = setup().map_err(|_| EnvelopeError::SealFailed)?;
        let mut key = [0u8; CHANNEL_KEY_LEN];
        key.copy_from_slice(&enc.to_bytes());
        Ok((Self { ctx, next_seq: 0 }, ChannelKey(key)))
    }

    /// Seals `password` with `context` bound as associated data, under the channel's next
    /// sequence number.
    pub fn seal(
        &mut self,
        context: &EnvelopeContext,
        password: &Password,
    ) -> Result<SealedEnvelope, EnvelopeError> {
        check_text("user name", &context.user_name, MAX_USER_NAME_LEN)?;
        check_text("endpoint id", &context.endpoint_id, MAX_ENDPOINT_ID_LEN)?;
        let seq = self.next_seq;
        // u64::MAX is never used, so `last + 1` on the agent's side cannot overflow either.
        let next = seq
            .checked_add(1)
            .filter(|&n| n < u64::MAX)
            .ok_or(EnvelopeError::SequenceExhausted)?;

        let mut out = Vec::with_capacity(64 + context.user_name.len() + context.endpoint_id.len());
        out.extend_from_slice(MAGIC);
        for id in SUITE {
            out.extend_from_slice(&id.to_be_bytes());
        }
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&context.request_id.0);
        out.extend_from_slice(&context.expires_at.to_be_bytes());
        put_text(&mut out, &context.user_name);
        put_text(&mut out, &context.endpoint_id);
        let aad_len = out.len();
        let cipher = request_cipher(|c, o| self.ctx.export(c, o), seq)
            .map_err(|_| EnvelopeError::SealFailed)?;
        let ciphertext = cipher
            .encrypt(
                &request_nonce(seq),
                Payload {
                    msg: password.expose_secret().as_bytes(),
                    aad: &out[..aad_len],
                },
            )
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
        // Consumed only once the envelope exists: a refused password does not leave a gap
        // (gaps would be harmless, the agent only wants the numbers to go up).
        self.next_seq = next;
        Ok(SealedEnvelope(out))
    }
}

/// What an opened envelope yields.
#[derive(Debug)]
pub struct OpenedCredential {
    /// The authenticated clear fields.
    pub context: EnvelopeContext,
    /// The password, for the bind only.
    pub password: Password,
}

/// An agent's envelope keys and its replay cache, shared by all of its channels (it is
/// `Sync`). Envelopes are opened through the [`ChannelOpener`] of the channel they came on.
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

    /// Decapsulates a channel's key: the one expensive step, once per channel. Fails only
    /// for a key that is not a valid X25519 point.
    pub fn accept_channel(&self, key: &ChannelKey) -> Result<ChannelOpener<'_>, EnvelopeError> {
        let enc = <Kem as KemTrait>::EncappedKey::from_bytes(&key.0)
            .map_err(|_| EnvelopeError::InvalidKey)?;
        let ctx = hpke::setup_receiver::<Aead, Kdf, Kem>(
            &OpModeR::Base,
            &self.keys.secret().0,
            &enc,
            INFO,
        )
        .map_err(|_| EnvelopeError::InvalidKey)?;
        Ok(ChannelOpener {
            opener: self,
            ctx,
            last_seq: None,
        })
    }
}

/// The agent's side of one channel: opens that channel's envelopes in strictly increasing
/// sequence order, each with its own key from the channel's exporter.
pub struct ChannelOpener<'a> {
    opener: &'a EnvelopeOpener,
    ctx: hpke::aead::AeadCtxR<Aead, Kdf, Kem>,
    last_seq: Option<u64>,
}

impl fmt::Debug for ChannelOpener<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelOpener")
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

impl ChannelOpener<'_> {
    /// Opens an envelope that arrived on this channel from `expected_endpoint` at `now`
    /// (Unix seconds).
    ///
    /// Order matters: the sequence number is checked first (cheap, and a replay costs no
    /// decryption), then the ciphertext is authenticated before any clear field is trusted,
    /// so a forged envelope can neither be reported as expired, nor move the sequence
    /// forward, nor poison the replay cache.
    pub fn open(
        &mut self,
        envelope: &SealedEnvelope,
        expected_endpoint: &str,
        now: u64,
    ) -> Result<OpenedCredential, EnvelopeError> {
        let parsed = parse(&envelope.0)?;
        if let Some(last) = self.last_seq.filter(|&last| parsed.seq <= last) {
            return Err(EnvelopeError::OutOfOrder {
                seq: parsed.seq,
                last,
            });
        }
        let cipher = request_cipher(|c, o| self.ctx.export(c, o), parsed.seq)
            .map_err(|_| EnvelopeError::DecryptionFailed)?;
        let plaintext = Secret::new(
            cipher
                .decrypt(
                    &request_nonce(parsed.seq),
                    Payload {
                        msg: parsed.ciphertext,
                        aad: parsed.aad,
                    },
                )
                .map_err(|_| EnvelopeError::DecryptionFailed)?,
        );
        // Authentic: this number is spent whatever the checks below say.
        self.last_seq = Some(parsed.seq);
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
        self.opener
            .replay
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
