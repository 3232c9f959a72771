//! The agent protocol's frames: what the hub and an agent say to each other over their
//! mutually authenticated TLS channel. Shared by both sides, so it lives here; the codec is
//! pure (the async [`io`] part is behind feature `tokio`), with every length bounded before
//! anything is allocated.
//!
//! A frame on the wire is `length u32 BE | kind u8 | body`, where `length` counts the kind
//! byte and the body and is at most [`MAX_FRAME_LEN`]. Integers are big-endian; text is
//! `len u16 | UTF-8` without control characters.

use causeway_credential::envelope::{CHANNEL_KEY_LEN, MAX_ENVELOPE_LEN};
use causeway_credential::{ChannelKey, RequestId, SealedEnvelope, Secret, SignInOutcome};

/// The protocol version this build speaks. Version 2 sends one [`Frame::ChannelKey`] per
/// channel and envelopes keyed from it, which a version 1 agent cannot open: the hub
/// answers a Hello of any other version with `GoAway(UnsupportedVersion)` naming its own,
/// instead of letting the agent fail on the first sign-in.
pub const PROTOCOL_VERSION: u16 = 2;
/// The TLS ALPN name of the agent protocol family (the hub shares its port with HTTPS).
/// It stays at `/1` across protocol versions on purpose: an agent of another version still
/// reaches the Hello exchange and is told, in words, which version the hub speaks.
pub const ALPN: &[u8] = b"causeway-agent/1";
/// The TLS ALPN name of enrollment: a new agent, with a one-time token and no client
/// certificate yet, asks for one.
pub const ENROLL_ALPN: &[u8] = b"causeway-enroll/1";
/// Longest PEM document (CSR, certificate) carried in a frame.
pub const MAX_PEM_LEN: usize = 6144;
/// Longest enrollment token.
pub const MAX_TOKEN_LEN: usize = 256;
/// Largest frame accepted (kind + body), in bytes.
pub const MAX_FRAME_LEN: usize = 8192;
/// Longest agent id, agent version or endpoint id.
pub const MAX_ID_LEN: usize = 128;
/// Longest free text (GoAway reason).
pub const MAX_TEXT_LEN: usize = 512;

/// Why a peer is told to go away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GoAwayReason {
    /// The agent's certificate was revoked.
    Revoked,
    /// The agent is registered but not yet approved by an administrator.
    NotApproved,
    /// The peer broke the protocol.
    ProtocolError,
    /// The sender is shutting down (reconnect elsewhere or later).
    ShuttingDown,
    /// The agent speaks a protocol version the hub does not.
    UnsupportedVersion,
}

impl GoAwayReason {
    fn code(self) -> u8 {
        match self {
            Self::Revoked => 1,
            Self::NotApproved => 2,
            Self::ProtocolError => 3,
            Self::ShuttingDown => 4,
            Self::UnsupportedVersion => 5,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => Self::Revoked,
            2 => Self::NotApproved,
            3 => Self::ProtocolError,
            4 => Self::ShuttingDown,
            5 => Self::UnsupportedVersion,
            _ => return None,
        })
    }
}

/// One message of the agent protocol. Its `Debug` never shows an enrollment token.
///
/// Not `Clone` nor `PartialEq`: an `Enroll` frame holds a [`Secret`], which may be copied
/// only by exposing it on purpose and compared only in constant time. Compare frames by
/// their bytes ([`Frame::to_bytes`]) where a test needs to.
#[non_exhaustive]
pub enum Frame {
    /// Agent → hub, first frame: who it is and how much it takes at once.
    Hello {
        /// Protocol version spoken.
        version: u16,
        /// The agent's id (also its certificate's subject; the hub checks they agree).
        agent_id: String,
        /// The agent software version, for `certs list`.
        agent_version: String,
        /// Most checks the agent runs at once on this channel.
        max_in_flight: u16,
    },
    /// Hub → agent, answer to Hello.
    Welcome {
        /// The endpoint replica's id, which envelopes name.
        endpoint_id: String,
        /// How often each side sends a Ping when idle, in milliseconds.
        heartbeat_ms: u32,
    },
    /// Hub → agent, once per channel, right after Welcome and before any Check: the
    /// channel's HPKE encapsulated key, from which every envelope's key is derived.
    ChannelKey {
        /// The encapsulated key (an ephemeral X25519 public key).
        key: ChannelKey,
    },
    /// Hub → agent: check this sealed credential before the deadline.
    Check {
        /// The sign-in request (also bound inside the envelope).
        request_id: RequestId,
        /// Milliseconds the agent has left before the hub gives up on it.
        deadline_ms: u32,
        /// The credential, sealed to this agent's key.
        envelope: SealedEnvelope,
    },
    /// Agent → hub: the verdict on a Check.
    Verdict {
        /// The request answered.
        request_id: RequestId,
        /// What the directory said.
        outcome: SignInOutcome,
        /// How long the directory took, in microseconds (for metrics).
        directory_us: u32,
    },
    /// Either way: are you there?
    Ping(u64),
    /// Either way: yes.
    Pong(u64),
    /// New agent → hub (enrollment ALPN): a one-time token, the agent's keys, its CSR.
    Enroll {
        /// The one-time enrollment token an administrator created: a secret, so it is
        /// zeroized when the frame is dropped and `Debug` prints it as `[redacted]`.
        token: Secret<String>,
        /// The agent host's name, for `certs list`.
        host_name: String,
        /// The HPKE public key credentials will be sealed to.
        hpke_public_key: [u8; 32],
        /// PKCS#10 request for the TLS client certificate (PEM).
        csr_pem: String,
    },
    /// Hub → new agent: its identity and certificate.
    Enrolled {
        /// The id the hub gave the agent.
        agent_id: String,
        /// The client certificate (PEM).
        cert_pem: String,
        /// The CA certificate to pin (PEM).
        ca_pem: String,
        /// Whether the agent may take traffic now, or waits for an administrator.
        approved: bool,
    },
    /// Hub → new agent: enrollment refused, and why.
    EnrollRefused {
        /// Operator-readable reason (never the token).
        reason: String,
    },
    /// Agent → hub, on its channel: a new CSR, to renew its certificate.
    Renew {
        /// PKCS#10 request (PEM).
        csr_pem: String,
    },
    /// Hub → agent: the renewed certificate.
    Renewed {
        /// The new client certificate (PEM).
        cert_pem: String,
    },
    /// Either way: closing, and why.
    GoAway {
        /// The reason.
        reason: GoAwayReason,
        /// Detail for the operator's log.
        detail: String,
    },
}

/// Why bytes are not a valid frame. The connection that sent them is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Declared length is zero or above [`MAX_FRAME_LEN`].
    #[error("frame length {len} is outside 1..={max}")]
    BadLength {
        /// The declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The kind byte is unknown.
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    /// The body ends inside a field.
    #[error("frame truncated inside {0}")]
    Truncated(&'static str),
    /// Bytes remain after the last field.
    #[error("{0} bytes after the end of the frame")]
    TrailingBytes(usize),
    /// A text field is too long, empty, not UTF-8 or holds control characters.
    #[error("frame field {0} is not acceptable text")]
    BadText(&'static str),
    /// An outcome or reason code is unknown.
    #[error("unknown {what} code {code}")]
    UnknownCode {
        /// Which code.
        what: &'static str,
        /// Its value.
        code: u8,
    },
    /// The envelope is larger than an envelope may be.
    #[error("envelope in frame is {0} bytes, above the limit")]
    EnvelopeTooLarge(usize),
}

/// Reading and writing frames on an async stream (feature `tokio`): the one place both the
/// hub and the agent do it, so both bound lengths before allocating the same way.
#[cfg(feature = "tokio")]
pub mod io;

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Frame::Enroll {
                token, host_name, ..
            } => f
                .debug_struct("Enroll")
                .field("token", token)
                .field("host_name", host_name)
                .finish_non_exhaustive(),
            Frame::Hello {
                version,
                agent_id,
                agent_version,
                max_in_flight,
            } => f
                .debug_struct("Hello")
                .field("version", version)
                .field("agent_id", agent_id)
                .field("agent_version", agent_version)
                .field("max_in_flight", max_in_flight)
                .finish(),
            Frame::Welcome {
                endpoint_id,
                heartbeat_ms,
            } => f
                .debug_struct("Welcome")
                .field("endpoint_id", endpoint_id)
                .field("heartbeat_ms", heartbeat_ms)
                .finish(),
            Frame::ChannelKey { key } => f.debug_struct("ChannelKey").field("key", key).finish(),
            Frame::Check {
                request_id,
                deadline_ms,
                envelope,
            } => f
                .debug_struct("Check")
                .field("request_id", request_id)
                .field("deadline_ms", deadline_ms)
                .field("envelope", envelope)
                .finish(),
            Frame::Verdict {
                request_id,
                outcome,
                directory_us,
            } => f
                .debug_struct("Verdict")
                .field("request_id", request_id)
                .field("outcome", outcome)
                .field("directory_us", directory_us)
                .finish(),
            Frame::Ping(n) => f.debug_tuple("Ping").field(n).finish(),
            Frame::Pong(n) => f.debug_tuple("Pong").field(n).finish(),
            Frame::Enrolled {
                agent_id, approved, ..
            } => f
                .debug_struct("Enrolled")
                .field("agent_id", agent_id)
                .field("approved", approved)
                .finish_non_exhaustive(),
            Frame::EnrollRefused { reason } => f
                .debug_struct("EnrollRefused")
                .field("reason", reason)
                .finish(),
            Frame::Renew { .. } => f.debug_struct("Renew").finish_non_exhaustive(),
            Frame::Renewed { .. } => f.debug_struct("Renewed").finish_non_exhaustive(),
            Frame::GoAway { reason, detail } => f
                .debug_struct("GoAway")
                .field("reason", reason)
                .field("detail", detail)
                .finish(),
        }
    }
}

const K_HELLO: u8 = 1;
const K_WELCOME: u8 = 2;
const K_CHECK: u8 = 3;
const K_VERDICT: u8 = 4;
const K_PING: u8 = 5;
const K_PONG: u8 = 6;
const K_GOAWAY: u8 = 7;
const K_ENROLL: u8 = 8;
const K_ENROLLED: u8 = 9;
const K_ENROLL_REFUSED: u8 = 10;
const K_RENEW: u8 = 11;
const K_RENEWED: u8 = 12;
const K_CHANNEL_KEY: u8 = 13;

/// Reads a frame header: the length of the frame that follows, checked against the limit.
pub fn frame_len(header: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len == 0 || len > MAX_FRAME_LEN {
        return Err(FrameError::BadLength {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(len)
}

impl Frame {
    /// Appends the frame, header included, to `out`.
    ///
    /// Panics if a field breaks a limit: frames are built by this program from checked
    /// values, so that would be a bug, not bad input.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        match self {
            Frame::Hello {
                version,
                agent_id,
                agent_version,
                max_in_flight,
            } => {
                out.push(K_HELLO);
                out.extend_from_slice(&version.to_be_bytes());
                put_text(out, agent_id, MAX_ID_LEN);
                put_text(out, agent_version, MAX_ID_LEN);
                out.extend_from_slice(&max_in_flight.to_be_bytes());
            }
            Frame::Welcome {
                endpoint_id,
                heartbeat_ms,
            } => {
                out.push(K_WELCOME);
                put_text(out, endpoint_id, MAX_ID_LEN);
                out.extend_from_slice(&heartbeat_ms.to_be_bytes());
            }
            Frame::ChannelKey { key } => {
                out.push(K_CHANNEL_KEY);
                out.extend_from_slice(&key.0);
            }
            Frame::Check {
                request_id,
                deadline_ms,
                envelope,
            } => {
                out.push(K_CHECK);
                out.extend_from_slice(&request_id.0);
                out.extend_from_slice(&deadline_ms.to_be_bytes());
                let e = envelope.as_bytes();
                assert!(e.len() <= MAX_ENVELOPE_LEN, "envelope above limit");
                out.extend_from_slice(&(e.len() as u16).to_be_bytes());
                out.extend_from_slice(e);
            }
            Frame::Verdict {
                request_id,
                outcome,
                directory_us,
            } => {
                out.push(K_VERDICT);
                out.extend_from_slice(&request_id.0);
                out.push(outcome.wire_code());
                out.extend_from_slice(&directory_us.to_be_bytes());
            }
            Frame::Ping(n) => {
                out.push(K_PING);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Frame::Pong(n) => {
                out.push(K_PONG);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Frame::Enroll {
                token,
                host_name,
                hpke_public_key,
                csr_pem,
            } => {
                out.push(K_ENROLL);
                put_text(out, token.expose_secret(), MAX_TOKEN_LEN);
                put_text(out, host_name, MAX_ID_LEN);
                out.extend_from_slice(hpke_public_key);
                put_text(out, csr_pem, MAX_PEM_LEN);
            }
            Frame::Enrolled {
                agent_id,
                cert_pem,
                ca_pem,
                approved,
            } => {
                out.push(K_ENROLLED);
                put_text(out, agent_id, MAX_ID_LEN);
                put_text(out, cert_pem, MAX_PEM_LEN);
                put_text(out, ca_pem, MAX_PEM_LEN);
                out.push(u8::from(*approved));
            }
            Frame::EnrollRefused { reason } => {
                out.push(K_ENROLL_REFUSED);
                put_text(out, reason, MAX_TEXT_LEN);
            }
            Frame::Renew { csr_pem } => {
                out.push(K_RENEW);
                put_text(out, csr_pem, MAX_PEM_LEN);
            }
            Frame::Renewed { cert_pem } => {
                out.push(K_RENEWED);
                put_text(out, cert_pem, MAX_PEM_LEN);
            }
            Frame::GoAway { reason, detail } => {
                out.push(K_GOAWAY);
                out.push(reason.code());
                put_text(out, detail, MAX_TEXT_LEN);
            }
        }
        let len = out.len() - start - 4;
        assert!(len <= MAX_FRAME_LEN, "frame above limit");
        out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    }

    /// The frame as bytes, header included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// Decodes a frame body (the bytes after the header, `frame_len` of them).
    pub fn decode(body: &[u8]) -> Result<Frame, FrameError> {
        if body.is_empty() || body.len() > MAX_FRAME_LEN {
            return Err(FrameError::BadLength {
                len: body.len(),
                max: MAX_FRAME_LEN,
            });
        }
        let mut r = Reader { b: &body[1..] };
        let f = match body[0] {
            K_HELLO => Frame::Hello {
                version: r.u16("version")?,
                agent_id: r.text("agent id", MAX_ID_LEN)?,
                agent_version: r.text("agent version", MAX_ID_LEN)?,
                max_in_flight: r.u16("max in flight")?,
            },
            K_WELCOME => Frame::Welcome {
                endpoint_id: r.text("endpoint id", MAX_ID_LEN)?,
                heartbeat_ms: r.u32("heartbeat")?,
            },
            K_CHANNEL_KEY => Frame::ChannelKey {
                key: {
                    let mut k = [0u8; CHANNEL_KEY_LEN];
                    k.copy_from_slice(r.take(CHANNEL_KEY_LEN, "channel key")?);
                    ChannelKey(k)
                },
            },
            K_CHECK => {
                let request_id = r.request_id()?;
                let deadline_ms = r.u32("deadline")?;
                let len = usize::from(r.u16("envelope length")?);
                if len > MAX_ENVELOPE_LEN {
                    return Err(FrameError::EnvelopeTooLarge(len));
                }
                Frame::Check {
                    request_id,
                    deadline_ms,
                    envelope: SealedEnvelope::from_bytes(r.take(len, "envelope")?.to_vec()),
                }
            }
            K_VERDICT => {
                let request_id = r.request_id()?;
                let code = r.take(1, "outcome")?[0];
                Frame::Verdict {
                    request_id,
                    outcome: SignInOutcome::from_wire_code(code).ok_or(
                        FrameError::UnknownCode {
                            what: "outcome",
                            code,
                        },
                    )?,
                    directory_us: r.u32("directory time")?,
                }
            }
            K_PING => Frame::Ping(r.u64("ping")?),
            K_PONG => Frame::Pong(r.u64("pong")?),
            K_GOAWAY => {
                let code = r.take(1, "reason")?[0];
                Frame::GoAway {
                    reason: GoAwayReason::from_code(code).ok_or(FrameError::UnknownCode {
                        what: "reason",
                        code,
                    })?,
                    detail: r.text_maybe_empty("detail", MAX_TEXT_LEN)?,
                }
            }
            K_ENROLL => Frame::Enroll {
                token: Secret::new(r.text("token", MAX_TOKEN_LEN)?),
                host_name: r.text("host name", MAX_ID_LEN)?,
                hpke_public_key: {
                    let mut k = [0u8; 32];
                    k.copy_from_slice(r.take(32, "public key")?);
                    k
                },
                csr_pem: r.pem("CSR")?,
            },
            K_ENROLLED => Frame::Enrolled {
                agent_id: r.text("agent id", MAX_ID_LEN)?,
                cert_pem: r.pem("certificate")?,
                ca_pem: r.pem("CA certificate")?,
                approved: match r.take(1, "approved")?[0] {
                    0 => false,
                    1 => true,
                    code => {
                        return Err(FrameError::UnknownCode {
                            what: "approved",
                            code,
                        })
                    }
                },
            },
            K_ENROLL_REFUSED => Frame::EnrollRefused {
                reason: r.text("reason", MAX_TEXT_LEN)?,
            },
            K_RENEW => Frame::Renew {
                csr_pem: r.pem("CSR")?,
            },
            K_RENEWED => Frame::Renewed {
                cert_pem: r.pem("certificate")?,
            },
            k => return Err(FrameError::UnknownKind(k)),
        };
        if !r.b.is_empty() {
            return Err(FrameError::TrailingBytes(r.b.len()));
        }
        Ok(f)
    }
}

/// Writes a text field. Text longer than `max` is cut at a character boundary and control
/// characters become spaces, so that building a frame from, say, an error message can
/// never fail or panic (ids are validated before they get here).
fn put_text(out: &mut Vec<u8>, s: &str, max: usize) {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let clean: String = s[..end]
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\r' {
                ' '
            } else {
                c
            }
        })
        .collect();
    out.extend_from_slice(&(clean.len() as u16).to_be_bytes());
    out.extend_from_slice(clean.as_bytes());
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FrameError> {
        if self.b.len() < n {
            return Err(FrameError::Truncated(what));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, FrameError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, FrameError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, FrameError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_be_bytes(a))
    }
    fn request_id(&mut self) -> Result<RequestId, FrameError> {
        let mut a = [0u8; 16];
        a.copy_from_slice(self.take(16, "request id")?);
        Ok(RequestId(a))
    }
    fn text_maybe_empty(&mut self, what: &'static str, max: usize) -> Result<String, FrameError> {
        let len = usize::from(self.u16(what)?);
        if len > max {
            return Err(FrameError::BadText(what));
        }
        let s =
            std::str::from_utf8(self.take(len, what)?).map_err(|_| FrameError::BadText(what))?;
        if s.chars().any(char::is_control) {
            return Err(FrameError::BadText(what));
        }
        Ok(s.to_owned())
    }
    /// PEM text: printable ASCII plus line breaks only.
    fn pem(&mut self, what: &'static str) -> Result<String, FrameError> {
        let len = usize::from(self.u16(what)?);
        if len == 0 || len > MAX_PEM_LEN {
            return Err(FrameError::BadText(what));
        }
        let b = self.take(len, what)?;
        if !b
            .iter()
            .all(|&c| c == b'\n' || c == b'\r' || (0x20..0x7f).contains(&c))
        {
            return Err(FrameError::BadText(what));
        }
        Ok(String::from_utf8_lossy(b).into_owned())
    }

    fn text(&mut self, what: &'static str, max: usize) -> Result<String, FrameError> {
        let s = self.text_maybe_empty(what, max)?;
        if s.is_empty() {
            return Err(FrameError::BadText(what));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests;
