//! Password hash sync: read each user's NT hash from a source, turn it into the salted
//! PBKDF2 verifier here, on the premises, and push only the verifier (with the flags that
//! change what a right password may do) for the users whose password or flags changed.
//! The NT hash lives only in a [`NtHash`] (zeroized on drop) between the read and the
//! derivation; the sync host keeps only the source's password time and the flags of what
//! the endpoint acknowledged ([`crate::space::hash`] says why not a fingerprint).
//!
//! Sources: OpenLDAP's `sambaNTPassword` through the content-sync connector
//! ([`openldap`]); AD over MS-DRSR fills the same [`HashRecord`]s. [`push_records`] is the
//! derivation-and-ingestion path on its own (for `causeway bench hashsync`).

pub mod ad;
pub mod one;
pub mod openldap;

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use causeway_credential::{NtHash, PhsVerifier};
use causeway_proto::sync::{HashCounts, ObjectError, VerifierChange, MAX_HASH_BATCH};

use crate::ad::entry::Guid;
use crate::config::{Connector, ConnectorKind};
use crate::export::anchor_id;
use crate::export::channel::{Channel, ChannelError};
use crate::run::RunError;
use crate::space::hash::{HashMark, HashStatus};
use crate::space::{ConnectorSpace, SpaceError};

/// Seconds between 1601-01-01 (FILETIME's epoch) and 1970-01-01.
const FILETIME_UNIX_OFFSET: i64 = 11_644_473_600;
/// FILETIME ticks per second (100 ns).
const TICKS: i64 = 10_000_000;

/// One user's password as a source has it. `Debug` shows no hash.
pub struct HashRecord {
    /// The anchor object export names the user by at the endpoint.
    pub anchor: Guid,
    /// The user's DN in the source (for errors only).
    pub dn: String,
    /// The NT hash; `None`: the user has no password.
    pub nt: Option<NtHash>,
    /// When the password was last set (FILETIME); `Some(0)` = must change at next logon
    /// (AD); `None`: the source does not say (then every read of the entry is a change).
    pub pwd_last_set: Option<i64>,
    /// Must change at next logon for another reason than `pwd_last_set = 0` (OpenLDAP
    /// ppolicy's `pwdReset`).
    pub must_change: bool,
    /// The account is disabled.
    pub disabled: bool,
    /// When the account expires, if it does.
    pub account_expires: Option<SystemTime>,
}

impl fmt::Debug for HashRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashRecord")
            .field("anchor", &self.anchor.to_string())
            .field("dn", &self.dn)
            .field("has_password", &self.nt.is_some())
            .field("pwd_last_set", &self.pwd_last_set)
            .field("must_change", &self.must_change)
            .field("disabled", &self.disabled)
            .field("account_expires", &self.account_expires)
            .finish()
    }
}

/// A Unix time (seconds) as FILETIME.
pub fn unix_to_filetime(secs: i64) -> i64 {
    secs.saturating_add(FILETIME_UNIX_OFFSET)
        .saturating_mul(TICKS)
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl HashRecord {
    /// Whether the user must change the password at next logon.
    pub fn must_change(&self) -> bool {
        self.must_change || self.pwd_last_set == Some(0)
    }

    /// The password time as Unix seconds, when it is a real time (not 0 = must change).
    fn changed_at(&self) -> Option<u64> {
        let t = self.pwd_last_set.filter(|t| *t > 0)?;
        u64::try_from(t / TICKS - FILETIME_UNIX_OFFSET).ok()
    }

    /// The flags as the sync host remembers them (compared, never parsed).
    pub fn flags_text(&self) -> String {
        format!(
            "must_change={};disabled={};expires={};password={}",
            u8::from(self.must_change()),
            u8::from(self.disabled),
            self.account_expires
                .map_or_else(|| "-".to_owned(), |t| unix_secs(t).to_string()),
            u8::from(self.nt.is_some()),
        )
    }

    fn mark(&self) -> HashMark {
        HashMark {
            pwd_last_set: self.pwd_last_set,
            flags: self.flags_text(),
        }
    }
}

/// What a record needs, against what the endpoint last acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing changed: push nothing (no history churn at the endpoint).
    Unchanged,
    /// Only the flags changed: push them, keep the endpoint's verifier.
    Flags,
    /// The password changed (or was never pushed): a new verifier, with a fresh salt.
    Verifier,
}

/// Decides what `r` needs given `mark`, what was last acknowledged for it.
pub fn decide(r: &HashRecord, mark: Option<&HashMark>) -> Decision {
    let Some(m) = mark else {
        return if r.nt.is_some() {
            Decision::Verifier
        } else {
            Decision::Flags
        };
    };
    let password_changed = r.pwd_last_set.is_none() || m.pwd_last_set != r.pwd_last_set;
    if r.nt.is_some() && password_changed {
        Decision::Verifier
    } else if m.flags != r.flags_text() {
        Decision::Flags
    } else {
        Decision::Unchanged
    }
}

/// Derives one verifier per NT hash, spread over the cores (PBKDF2 is the whole cost of
/// a full sync), on the blocking pool; each hash is dropped (zeroized) once used.
pub async fn derive_all(hashes: Vec<NtHash>) -> Vec<PhsVerifier> {
    if hashes.is_empty() {
        return Vec::new();
    }
    let run = move || {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per = hashes.len().div_ceil(threads).max(1);
        let mut chunks: Vec<Vec<NtHash>> = Vec::new();
        let mut it = hashes.into_iter().peekable();
        while it.peek().is_some() {
            chunks.push(it.by_ref().take(per).collect());
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    s.spawn(move || {
                        chunk
                            .into_iter()
                            .map(|nt| PhsVerifier::derive_from_nt_hash(&nt))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    };
    match tokio::task::spawn_blocking(run).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// What one hash pass did.
#[derive(Debug, Clone, Default)]
pub struct HashReport {
    /// Users read from the source (in scope and exported).
    pub read: u64,
    /// Users the decision found unchanged (nothing pushed).
    pub unchanged: u64,
    /// What the endpoint did with what was pushed.
    pub counts: HashCounts,
    /// Users that could not be read or were refused by the endpoint.
    pub errors: Vec<ObjectError>,
    /// How long the verifiers took to derive.
    pub derive: Duration,
    /// How long the pass took.
    pub elapsed: Duration,
}

impl fmt::Display for HashReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hash sync: {} users read, {} verifiers and {} flag changes pushed, {} unchanged, {} errors in {:.1} s",
            self.read,
            self.counts.verifiers,
            self.counts.flags,
            self.unchanged + self.counts.unchanged,
            self.errors.len(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// Why a hash pass stopped. Every batch acknowledged before it is remembered; the rest is
/// retried by the next pass (the source's cookie is only advanced after a whole pass).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HashSyncError {
    /// Reading the source failed.
    #[error("reading password hashes: {0}")]
    Source(RunError),
    /// The endpoint refused or the channel failed.
    #[error("pushing verifiers: {0}")]
    Channel(#[from] ChannelError),
    /// The connector space failed.
    #[error(transparent)]
    Space(#[from] SpaceError),
    /// Replicating from AD failed.
    #[error("reading password hashes: {0}")]
    Replication(#[from] ad::AdHashError),
}

/// Decides, derives and pushes `records` for `connector`, `batch` users at a time,
/// remembering after each acknowledged batch what the endpoint now holds. Per-user
/// refusals are counted in the report and retried next pass; a refused or failed batch
/// stops the push (what it carried is not remembered, so it is sent again).
pub async fn push_records(
    ch: &mut Channel,
    space: &ConnectorSpace,
    connector: &str,
    records: Vec<HashRecord>,
    batch: usize,
    now: SystemTime,
) -> Result<HashReport, HashSyncError> {
    let started = Instant::now();
    let marks = space.hash_marks(connector)?;
    let mut report = HashReport {
        read: records.len() as u64,
        ..HashReport::default()
    };
    let mut todo: Vec<(HashRecord, Decision)> = Vec::new();
    for mut r in records {
        match decide(&r, marks.get(&r.anchor)) {
            Decision::Unchanged => report.unchanged += 1,
            Decision::Flags => {
                r.nt = None;
                todo.push((r, Decision::Flags));
            }
            Decision::Verifier => todo.push((r, Decision::Verifier)),
        }
    }
    let hashes: Vec<NtHash> = todo
        .iter_mut()
        .filter_map(|(r, d)| (*d == Decision::Verifier).then(|| r.nt.take()).flatten())
        .collect();
    let derive_started = Instant::now();
    let mut verifiers = derive_all(hashes).await.into_iter();
    report.derive = derive_started.elapsed();
    let outgoing: Vec<(Guid, HashMark, VerifierChange)> = todo
        .into_iter()
        .map(|(r, d)| {
            let verifier = if d == Decision::Verifier {
                verifiers.next()
            } else {
                None
            };
            let mut mark = r.mark();
            // The mark says what the endpoint holds: a flags-only push leaves the password
            // time as it was acknowledged before.
            if d == Decision::Flags {
                mark.pwd_last_set = marks
                    .get(&r.anchor)
                    .map_or(r.pwd_last_set, |m| m.pwd_last_set);
            }
            let change = VerifierChange {
                anchor: anchor_id(&r.anchor),
                verifier,
                must_change: r.must_change(),
                disabled: r.disabled,
                account_expires: r.account_expires.map(unix_secs),
                changed_at: r.changed_at(),
            };
            (r.anchor, mark, change)
        })
        .collect();
    for chunk in outgoing.chunks(batch.clamp(1, MAX_HASH_BATCH)) {
        let changes: Vec<VerifierChange> = chunk.iter().map(|(_, _, c)| c.clone()).collect();
        let (counts, refused) = ch.hash_batch(connector, changes).await?;
        let refused_anchors: BTreeSet<&str> =
            refused.iter().filter_map(|e| e.anchor.as_deref()).collect();
        let acknowledged: Vec<(Guid, HashMark)> = chunk
            .iter()
            .filter(|(_, _, c)| !refused_anchors.contains(c.anchor.as_str()))
            .map(|(g, m, _)| (*g, m.clone()))
            .collect();
        space.record_hash_marks(connector, &acknowledged, now)?;
        report.counts.add(&counts);
        report.errors.extend(refused);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The anchors of the users object export has delivered for `connector`: the only ones
/// the endpoint can take a password for.
fn exported_users(space: &ConnectorSpace, connector: &str) -> Result<BTreeSet<Guid>, SpaceError> {
    Ok(space
        .exported(connector)?
        .into_iter()
        .filter(|(_, body)| {
            serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .is_some_and(|v| v.get("kind").and_then(|k| k.as_str()) == Some("user"))
        })
        .map(|(g, _)| g)
        .collect())
}

/// An error when a pass read users but not one password hash: a bind account that may
/// not read them sees no `sambaNTPassword` at all (slapd leaves a denied attribute out, as
/// if the user had no password), which would otherwise pass for users without passwords.
pub fn unreadable_hashes(c: &Connector, records: &[HashRecord]) -> Option<ObjectError> {
    (!records.is_empty() && records.iter().all(|r| r.nt.is_none())).then(|| ObjectError {
        anchor: None,
        dn: None,
        error: format!(
            "connector {}: {} users read and not one password hash: the bind account {} may \
             not read sambaNTPassword; grant it, e.g. in slapd.conf \
             `access to attrs=sambaNTPassword by dn.exact=\"{}\" read`",
            c.name,
            records.len(),
            c.bind_dn,
            c.bind_dn
        ),
    })
}

/// One hash pass for connector `c` (its lease must be held): read what changed since the
/// hash cookie (everything when an exported user has never been acknowledged, e.g. a
/// newly exported one or one the endpoint refused), push what changed, and advance the
/// cookie only when the whole pass was acknowledged. Records the pass for `sync status`.
pub async fn pass(
    c: &Connector,
    space: &ConnectorSpace,
    ch: &mut Channel,
    batch: usize,
    now: SystemTime,
) -> Result<HashReport, HashSyncError> {
    let r = pass_inner(c, space, ch, batch, now).await;
    let status = match &r {
        Ok(rep) => HashStatus {
            pending: rep.errors.len() as u64,
            errors: rep.errors.len() as u64,
            ..HashStatus::default()
        },
        Err(e) => HashStatus {
            pending: 1,
            errors: 0,
            last_error: Some(e.to_string()),
            ..HashStatus::default()
        },
    };
    space.record_hash_pass(&c.name, &status, now)?;
    r
}

/// Sorts a source's read: the records of exported users into `records`, a user that
/// could not be read (its DN, named by `dn`) into `errors`, the rest dropped — out of
/// scope, or not exported yet (then it has no mark, and the pass after its export reads
/// everything again).
fn keep_exported<E: fmt::Display>(
    read: Vec<Result<HashRecord, E>>,
    dn: impl Fn(&E) -> &String,
    users: &BTreeSet<Guid>,
    records: &mut Vec<HashRecord>,
    errors: &mut Vec<ObjectError>,
) {
    for r in read {
        match r {
            Ok(r) if users.contains(&r.anchor) => records.push(r),
            Ok(_) => {}
            Err(e) => errors.push(ObjectError {
                anchor: None,
                dn: Some(dn(&e).clone()),
                error: e.to_string(),
            }),
        }
    }
}

async fn pass_inner(
    c: &Connector,
    space: &ConnectorSpace,
    ch: &mut Channel,
    batch: usize,
    now: SystemTime,
) -> Result<HashReport, HashSyncError> {
    let users = exported_users(space, &c.name)?;
    let marks = space.hash_marks(&c.name)?;
    let mut cookie = space.hash_cookie(&c.name)?;
    if users.iter().any(|u| !marks.contains_key(u)) {
        cookie = Default::default();
    }
    let mut errors = Vec::new();
    let mut records = Vec::new();
    let next_cookie = match c.kind {
        ConnectorKind::OpenLdap => {
            let read = openldap::read(c, &cookie)
                .await
                .map_err(HashSyncError::Source)?;
            keep_exported(read.records, |e| &e.dn, &users, &mut records, &mut errors);
            read.cookie
        }
        ConnectorKind::ActiveDirectory => {
            let read = ad::read(c, &cookie).await?;
            keep_exported(read.records, |e| &e.dn, &users, &mut records, &mut errors);
            read.cookie
        }
    };
    if c.kind == ConnectorKind::OpenLdap {
        errors.extend(unreadable_hashes(c, &records));
    }
    let mut report = push_records(ch, space, &c.name, records, batch, now).await?;
    report.errors.extend(errors);
    space.set_hash_cookie(&c.name, &next_cookie)?;
    Ok(report)
}

#[cfg(test)]
mod tests;
