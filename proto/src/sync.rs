//! The sync ingestion channel: what `causeway sync` (on premises, dialling out) and the
//! endpoint's ingestion API say to each other over TLS. A sync host enrolls once on
//! [`ENROLL_ALPN`] with a one-time token and from then on opens [`ALPN`] with its client
//! certificate; over one connection it asks, one request at a time, for a lease on a
//! connector, starts a run, sends batches of object changes (each applied atomically at
//! the endpoint with its history rows, and acknowledged), and finishes the run with its
//! report.
//!
//! Each message is a 4-byte big-endian length and a JSON body. JSON, not the agent's
//! binary frames: a batch is a tree of named attributes, versions add fields, and serde's
//! parser is linear in the input. Lengths are checked before anything is allocated: an
//! unauthenticated enrolling client gets [`MAX_ENROLL_LEN`], an authenticated sync host
//! [`MAX_MESSAGE_LEN`]; [`Request::check`] bounds every count and string after parsing.
//! It must never log, and never show the enrollment token in `Debug`.

use std::collections::BTreeMap;
use std::fmt;

use causeway_credential::Secret;
use serde::{Deserialize, Serialize};

mod debug;
pub mod hash;
pub use hash::{HashCounts, VerifierChange, MAX_HASH_BATCH};

/// ALPN of an enrolled sync host's channel (client certificate required).
pub const ALPN: &[u8] = b"causeway-sync/1";
/// ALPN of a new sync host's enrollment (one request, no certificate yet).
pub const ENROLL_ALPN: &[u8] = b"causeway-sync-enroll/1";
/// The protocol version this build speaks.
pub const VERSION: u16 = 1;
/// Longest message from an authenticated peer, in bytes.
pub const MAX_MESSAGE_LEN: usize = 8 << 20;
/// Longest enrollment request (the peer is not authenticated yet), in bytes.
pub const MAX_ENROLL_LEN: usize = 16 << 10;
/// Most object changes in one batch.
pub const MAX_BATCH: usize = 1_000;
/// Most attributes one object carries.
pub const MAX_ATTRS: usize = 64;
/// Most values one attribute carries (a group's members).
pub const MAX_VALUES: usize = 5_000;
/// Longest attribute value, DN or name, in bytes.
pub const MAX_TEXT: usize = 4_096;
/// Most per-object errors one report or answer carries (the rest are counted).
pub const MAX_ERRORS: usize = 1_000;

/// The kind of a synchronised object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// A user account.
    User,
    /// A group (its members are anchors).
    Group,
    /// A mail contact.
    Contact,
    /// A computer account.
    Device,
    /// An organisational unit (scoping and display).
    Ou,
}

impl ObjectKind {
    /// The lowercase name used in messages, the store and output.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::User => "user",
            ObjectKind::Group => "group",
            ObjectKind::Contact => "contact",
            ObjectKind::Device => "device",
            ObjectKind::Ou => "ou",
        }
    }

    /// The kind named `s` ([`Self::as_str`]).
    pub fn parse(s: &str) -> Option<Self> {
        [
            ObjectKind::User,
            ObjectKind::Group,
            ObjectKind::Contact,
            ObjectKind::Device,
            ObjectKind::Ou,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One object as exported: its anchor (base64 of the source anchor's 16 bytes, the form
/// Entra calls the immutable id), kind, source DN, and flat attributes whose references
/// (`members`, `manager`) are anchors too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Object {
    /// The anchor.
    pub anchor: String,
    /// Its kind.
    pub kind: ObjectKind,
    /// Its DN in the source (display only: not an identity).
    pub dn: String,
    /// Attribute name → values.
    pub attrs: BTreeMap<String, Vec<String>>,
}

/// One change in a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ObjectChange {
    /// Create or update (idempotent: an object already as given is left alone).
    Upsert {
        /// The object as it should be.
        object: Object,
    },
    /// Move to the recycle bin (idempotent: an object already gone is left alone).
    Delete {
        /// The anchor.
        anchor: String,
        /// Its kind.
        kind: ObjectKind,
        /// Why, for the history row ("deleted in the source", "out of scope: …").
        why: String,
    },
}

impl ObjectChange {
    /// The anchor the change is about.
    pub fn anchor(&self) -> &str {
        match self {
            ObjectChange::Upsert { object } => &object.anchor,
            ObjectChange::Delete { anchor, .. } => anchor,
        }
    }
}

/// What kind of run a sync host starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// A full import (first run, or after a refused cookie).
    Full,
    /// A delta from the stored watermark.
    Delta,
    /// `causeway sync object`: one object on demand.
    Object,
}

impl RunKind {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Full => "full",
            RunKind::Delta => "delta",
            RunKind::Object => "object",
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Still running (or its host died before finishing it).
    Running,
    /// Everything planned was exported (objects that failed are in its errors).
    Succeeded,
    /// Stopped by the deletion threshold before exporting anything; waits for approval.
    Stopped,
    /// The run failed (a directory or endpoint error); the next resumes from the last
    /// acknowledged batch.
    Failed,
}

impl RunStatus {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Stopped => "stopped",
            RunStatus::Failed => "failed",
        }
    }
}

/// Object counts of a batch or a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// Objects created at the endpoint.
    pub added: u64,
    /// Objects changed.
    pub updated: u64,
    /// Objects moved to the recycle bin.
    pub deleted: u64,
    /// Objects sent that were already as given (a batch resent after a crash).
    pub unchanged: u64,
    /// Objects left out because another object claims their UPN or mail.
    pub quarantined: u64,
    /// Objects that could not be applied.
    pub errors: u64,
}

impl Counts {
    /// Adds `o` to `self`.
    pub fn add(&mut self, o: &Counts) {
        self.added += o.added;
        self.updated += o.updated;
        self.deleted += o.deleted;
        self.unchanged += o.unchanged;
        self.quarantined += o.quarantined;
        self.errors += o.errors;
    }
}

/// One object that could not be applied, or was quarantined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectError {
    /// Its anchor, when known.
    pub anchor: Option<String>,
    /// Its DN in the source, when known.
    pub dn: Option<String>,
    /// What is wrong, for an operator.
    pub error: String,
}

/// What a sync host reports at the end of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunReport {
    /// How it ended.
    pub status: RunStatus,
    /// Its counts (the endpoint adds those of the batches it applied).
    pub counts: Counts,
    /// Per-object errors and quarantines, at most [`MAX_ERRORS`].
    pub errors: Vec<ObjectError>,
    /// A sentence on the run as a whole (why it failed or stopped), if any.
    pub detail: Option<String>,
}

/// A run as the endpoint recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    /// Its number, increasing.
    pub run: u64,
    /// The connector.
    pub connector: String,
    /// The sync host that ran it.
    pub host: String,
    /// Its kind.
    pub kind: RunKind,
    /// How it ended.
    pub status: RunStatus,
    /// Started, seconds since the Unix epoch.
    pub started_at: u64,
    /// Finished, if it did.
    pub finished_at: Option<u64>,
    /// What it changed at the endpoint, and what it left out.
    pub counts: Counts,
    /// Per-object errors.
    pub errors: Vec<ObjectError>,
    /// Why it failed or stopped.
    pub detail: Option<String>,
}

/// Sync host → endpoint.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// On [`ENROLL_ALPN`], the only request: a one-time token and a CSR.
    Enroll {
        /// The token an administrator made with `causeway certs token --for sync`.
        #[serde(with = "secret_text")]
        token: Secret<String>,
        /// The sync host's name, for `causeway certs list`.
        host_name: String,
        /// PKCS#10 request for its client certificate (PEM).
        csr_pem: String,
    },
    /// First request on [`ALPN`].
    Hello {
        /// Protocol version spoken.
        version: u16,
        /// The host's software version.
        software_version: String,
    },
    /// Take or renew the lease on a connector: only its holder may export for it.
    Lease {
        /// The connector's name.
        connector: String,
    },
    /// Give the lease up (a clean shutdown), so that another host takes over at once.
    Release {
        /// The connector's name.
        connector: String,
    },
    /// Record the start of a run (the lease must be held).
    StartRun {
        /// The connector.
        connector: String,
        /// Its kind.
        kind: RunKind,
        /// Whether the connector's config allows soft match: a new user whose UPN or
        /// primary SMTP address belongs to an existing cloud-only account (not marked
        /// protected) takes that account over instead of clashing with it.
        #[serde(default)]
        soft_match: bool,
    },
    /// Apply these changes, all or none, with their history rows (the lease must be held).
    Batch {
        /// The run they belong to.
        run: u64,
        /// Their number within the run, from 1.
        seq: u32,
        /// The changes.
        changes: Vec<ObjectChange>,
    },
    /// Record the end of a run.
    FinishRun {
        /// The run.
        run: u64,
        /// Its report.
        report: RunReport,
    },
    /// A new certificate for this host's new key (the host is the certificate's, never
    /// named here); the current one stays valid until it expires.
    Renew {
        /// PKCS#10 request for the new key (PEM), bounded as at enrollment.
        csr_pem: String,
    },
    /// The latest runs, newest first.
    Runs {
        /// Only this connector's.
        connector: Option<String>,
        /// At most this many (capped at 100).
        limit: u32,
    },
    /// Password hash sync: apply these verifier changes to the connector's synced users,
    /// all or none (the lease must be held).
    HashBatch {
        /// The connector the users were exported by.
        connector: String,
        /// The changes, at most [`MAX_HASH_BATCH`].
        changes: Vec<VerifierChange>,
    },
}

/// Endpoint → sync host: one answer per request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    /// Enrollment succeeded.
    Enrolled {
        /// The sync host's id (its certificate's subject).
        host_id: String,
        /// Its client certificate (PEM).
        cert_pem: String,
        /// The CA to pin (PEM).
        ca_pem: String,
        /// Whether it may export at once (else it waits for `causeway certs approve`).
        approved: bool,
    },
    /// Answer to Hello.
    Welcome {
        /// The endpoint's id.
        endpoint_id: String,
        /// How long a lease lasts unless renewed, in milliseconds.
        lease_ms: u64,
    },
    /// Answer to Lease (and Release, with `granted = false`).
    Lease {
        /// The connector.
        connector: String,
        /// Whether this host holds it now.
        granted: bool,
        /// Who holds it (this host, another one, or nobody).
        holder: Option<String>,
        /// How long the holder's lease has left, in milliseconds.
        expires_in_ms: u64,
    },
    /// Answer to StartRun.
    RunStarted {
        /// The run's number.
        run: u64,
    },
    /// Answer to Batch: applied (with the objects that could not be).
    Applied {
        /// The batch's number.
        seq: u32,
        /// What it changed.
        counts: Counts,
        /// The objects not applied, with why (the others were).
        errors: Vec<ObjectError>,
    },
    /// Answer to FinishRun.
    RunFinished {
        /// The run as recorded.
        record: RunRecord,
    },
    /// Answer to Renew: the new certificate (PEM).
    Renewed {
        /// For the key whose CSR was sent.
        cert_pem: String,
    },
    /// Answer to Runs.
    Runs {
        /// The runs, newest first.
        runs: Vec<RunRecord>,
    },
    /// Answer to HashBatch: applied (with the users that could not be).
    HashApplied {
        /// What it changed.
        counts: HashCounts,
        /// The users not applied, with why (the others were).
        errors: Vec<ObjectError>,
    },
    /// The request was refused (not applied at all): the lease is held by another host,
    /// the run is unknown, the message is malformed, or the store failed.
    Refused {
        /// Why, for an operator (never a path or a secret).
        reason: String,
    },
    /// Answer to Enroll when it is refused.
    EnrollRefused {
        /// Why.
        reason: String,
    },
}

/// Why a message could not be read or is not acceptable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The declared length is zero or above the limit.
    #[error("message length {len} is outside 1..={max}")]
    BadLength {
        /// The declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not a message of this protocol.
    #[error("malformed message at line {line} column {column}: {what}")]
    Malformed {
        /// Where in the JSON.
        line: usize,
        /// Where in the JSON.
        column: usize,
        /// What serde said (it quotes no values for these types beyond a variant name).
        what: String,
    },
    /// A count or string is over its bound, or a field holds control characters.
    #[error("{0}")]
    OutOfBounds(String),
    /// The stream failed or ended.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn check_text(what: &str, s: &str) -> Result<(), MessageError> {
    if s.len() > MAX_TEXT || s.chars().any(|c| c.is_control() && c != '\n') {
        Err(MessageError::OutOfBounds(format!(
            "{what} is longer than {MAX_TEXT} bytes or holds control characters"
        )))
    } else {
        Ok(())
    }
}

fn check_name(what: &str, s: &str) -> Result<(), MessageError> {
    check_text(what, s)?;
    if s.is_empty() || s.len() > 256 {
        return Err(MessageError::OutOfBounds(format!(
            "{what} must be 1 to 256 bytes"
        )));
    }
    Ok(())
}

fn check_csr(csr_pem: &str) -> Result<(), MessageError> {
    if csr_pem.len() > MAX_ENROLL_LEN {
        return Err(MessageError::OutOfBounds("csr_pem is too long".into()));
    }
    Ok(())
}

/// Checks an anchor's shape: base64 of 16 bytes (24 characters with padding).
pub fn check_anchor(a: &str) -> Result<(), MessageError> {
    let ok = a.len() == 24
        && a.ends_with("==")
        && a[..22]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if ok {
        Ok(())
    } else {
        Err(MessageError::OutOfBounds(format!(
            "anchor {:?} is not base64 of 16 bytes",
            a.chars().take(40).collect::<String>()
        )))
    }
}

impl Object {
    /// Checks the object's bounds and its anchor's shape.
    pub fn check(&self) -> Result<(), MessageError> {
        check_anchor(&self.anchor)?;
        check_text("dn", &self.dn)?;
        if self.attrs.len() > MAX_ATTRS {
            return Err(MessageError::OutOfBounds(format!(
                "object {} has {} attributes (at most {MAX_ATTRS})",
                self.anchor,
                self.attrs.len()
            )));
        }
        for (name, values) in &self.attrs {
            check_name("attribute name", name)?;
            if values.len() > MAX_VALUES {
                return Err(MessageError::OutOfBounds(format!(
                    "attribute {name} of {} has {} values (at most {MAX_VALUES})",
                    self.anchor,
                    values.len()
                )));
            }
            for v in values {
                check_text("attribute value", v)?;
            }
        }
        Ok(())
    }
}

impl Request {
    /// Checks every bound a parsed request must keep.
    pub fn check(&self) -> Result<(), MessageError> {
        match self {
            Request::Enroll {
                host_name, csr_pem, ..
            } => {
                check_name("host_name", host_name)?;
                check_csr(csr_pem)
            }
            Request::Renew { csr_pem } => check_csr(csr_pem),
            Request::Hello {
                software_version, ..
            } => check_name("software_version", software_version),
            Request::Lease { connector }
            | Request::Release { connector }
            | Request::StartRun { connector, .. } => check_name("connector", connector),
            Request::Batch { changes, .. } => {
                if changes.len() > MAX_BATCH {
                    return Err(MessageError::OutOfBounds(format!(
                        "a batch holds {} changes (at most {MAX_BATCH})",
                        changes.len()
                    )));
                }
                for c in changes {
                    match c {
                        ObjectChange::Upsert { object } => object.check()?,
                        ObjectChange::Delete { anchor, why, .. } => {
                            check_anchor(anchor)?;
                            check_text("why", why)?;
                        }
                    }
                }
                Ok(())
            }
            Request::FinishRun { report, .. } => {
                if report.errors.len() > MAX_ERRORS {
                    return Err(MessageError::OutOfBounds(format!(
                        "a report holds {} errors (at most {MAX_ERRORS})",
                        report.errors.len()
                    )));
                }
                for e in &report.errors {
                    check_text("error", &e.error)?;
                    if let Some(d) = &e.dn {
                        check_text("dn", d)?;
                    }
                }
                if let Some(d) = &report.detail {
                    check_text("detail", d)?;
                }
                Ok(())
            }
            Request::Runs { connector, .. } => match connector {
                Some(c) => check_name("connector", c),
                None => Ok(()),
            },
            Request::HashBatch { connector, changes } => hash::check(connector, changes),
        }
    }
}

/// The body of a message: `value` as JSON.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Parses one message body (without its length prefix).
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, MessageError> {
    serde_json::from_slice(body).map_err(|e| MessageError::Malformed {
        line: e.line(),
        column: e.column(),
        what: match e.classify() {
            serde_json::error::Category::Data => "not a message this endpoint knows".into(),
            serde_json::error::Category::Syntax => "not JSON".into(),
            serde_json::error::Category::Eof => "the message ends early".into(),
            serde_json::error::Category::Io => "unreadable".into(),
        },
    })
}

/// The length a message header declares, if it is within `1..=max`.
pub fn message_len(header: [u8; 4], max: usize) -> Result<usize, MessageError> {
    let len = u32::from_be_bytes(header) as usize;
    if len == 0 || len > max {
        Err(MessageError::BadLength { len, max })
    } else {
        Ok(len)
    }
}

/// Async reading and writing of messages (feature `tokio`).
#[cfg(feature = "tokio")]
pub mod io;

/// Serde for the enrollment token: read straight into a [`Secret`].
mod secret_text {
    use causeway_credential::Secret;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &Secret<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(t.expose_secret())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret<String>, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

#[cfg(test)]
mod tests;
