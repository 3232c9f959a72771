//! What the sync host remembers for password hash sync, per connector: for each user the
//! password time and flags last acknowledged by the endpoint (never the NT hash, nor
//! anything derived from it), the hash pass's own content-sync cookie, and the last pass's
//! outcome for `causeway sync status`.
//!
//! Why the source's password time and not a keyed fingerprint of the hash: a fingerprint
//! (an HMAC of the NT hash) beside its key on this host is one fast HMAC per guess for
//! whoever copies the two files — a weaker copy of every password than the endpoint's
//! PBKDF2 verifier. pwdLastSet (AD) and sambaPwdLastSet (Samba's LDAP schema) change with
//! every password set; a source without one is pushed whenever its entry changes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{db, ConnectorSpace, SpaceError};
use crate::ad::dirsync::Cookie;
use crate::ad::entry::Guid;

/// The tables (migration 7).
pub(super) const SCHEMA: &str = "
CREATE TABLE hash_marks (
    connector    TEXT NOT NULL,
    anchor       BLOB NOT NULL,
    pwd_last_set INTEGER,
    flags        TEXT NOT NULL,
    synced_at    INTEGER NOT NULL,
    PRIMARY KEY (connector, anchor)
) WITHOUT ROWID;
CREATE TABLE hash_watermarks (
    connector TEXT PRIMARY KEY,
    cookie    BLOB NOT NULL
);
CREATE TABLE hash_status (
    connector      TEXT PRIMARY KEY,
    last_pass_at   INTEGER NOT NULL,
    last_ok_at     INTEGER,
    pending        INTEGER NOT NULL,
    oldest_pending INTEGER,
    errors         INTEGER NOT NULL,
    last_error     TEXT
);
";

/// Attribute names whose values are password hashes: never written to the connector
/// space (lower-case, options such as `;binary` ignored).
const SECRET_ATTRIBUTES: [&str; 9] = [
    "sambantpassword",
    "sambalmpassword",
    "userpassword",
    "unicodepwd",
    "dbcspwd",
    "ntpwdhistory",
    "lmpwdhistory",
    "supplementalcredentials",
    "sambapasswordhistory",
];

/// Whether `name` holds password hashes (see [`SECRET_ATTRIBUTES`]).
pub fn is_secret_attribute(name: &str) -> bool {
    let base = name.split(';').next().unwrap_or(name);
    SECRET_ATTRIBUTES
        .iter()
        .any(|s| base.eq_ignore_ascii_case(s))
}

/// What the endpoint last acknowledged for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashMark {
    /// The source's password time (FILETIME for AD, as given), if it has one.
    pub pwd_last_set: Option<i64>,
    /// The flags as [`crate::hashsync::HashRecord::flags_text`] writes them.
    pub flags: String,
}

/// The last hash pass of a connector, for `causeway sync status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HashStatus {
    /// When the last pass ended.
    pub last_pass_at: Option<SystemTime>,
    /// When the last pass that pushed everything it had ended.
    pub last_ok_at: Option<SystemTime>,
    /// Changes seen but not acknowledged by the endpoint.
    pub pending: u64,
    /// When the oldest of them was first seen.
    pub oldest_pending: Option<SystemTime>,
    /// Users the last pass could not read or push.
    pub errors: u64,
    /// The last pass's error as a whole, if it failed.
    pub last_error: Option<String>,
}

fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn time(s: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

impl ConnectorSpace {
    /// The marks of `connector`'s users, by anchor.
    pub fn hash_marks(
        &self,
        connector: &str,
    ) -> Result<std::collections::BTreeMap<Guid, HashMark>, SpaceError> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT anchor, pwd_last_set, flags FROM hash_marks WHERE connector = ?1")
            .map_err(db("read the hash marks"))?;
        let rows = st
            .query_map([connector], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(db("read the hash marks"))?;
        let mut out = std::collections::BTreeMap::new();
        for row in rows {
            let (a, pwd_last_set, flags) = row.map_err(db("read the hash marks"))?;
            let g = Guid::from_bytes(&a).map_err(|e| SpaceError {
                action: "read the hash marks",
                detail: e,
            })?;
            out.insert(
                g,
                HashMark {
                    pwd_last_set,
                    flags,
                },
            );
        }
        Ok(out)
    }

    /// Records what the endpoint acknowledged, in one transaction.
    pub fn record_hash_marks(
        &self,
        connector: &str,
        marks: &[(Guid, HashMark)],
        now: SystemTime,
    ) -> Result<(), SpaceError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("start a transaction"))?;
        for (g, m) in marks {
            tx.execute(
                "INSERT INTO hash_marks (connector, anchor, pwd_last_set, flags, synced_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (connector, anchor) DO UPDATE SET pwd_last_set = ?3, flags = ?4, synced_at = ?5",
                params![connector, &g.as_bytes()[..], m.pwd_last_set, m.flags, secs(now)],
            )
            .map_err(db("write a hash mark"))?;
        }
        tx.commit().map_err(db("commit the hash marks"))
    }

    /// The hash pass's content-sync cookie (empty: read every user).
    pub fn hash_cookie(&self, connector: &str) -> Result<Cookie, SpaceError> {
        let bytes: Option<Vec<u8>> = self
            .conn()
            .query_row(
                "SELECT cookie FROM hash_watermarks WHERE connector = ?1",
                [connector],
                |r| r.get(0),
            )
            .optional()
            .map_err(db("read the hash watermark"))?;
        Cookie::new(bytes.unwrap_or_default()).map_err(|e| SpaceError {
            action: "read the hash watermark",
            detail: e.to_string(),
        })
    }

    /// Stores the hash pass's cookie (only once everything it read was acknowledged).
    pub fn set_hash_cookie(&self, connector: &str, cookie: &Cookie) -> Result<(), SpaceError> {
        self.conn()
            .execute(
                "INSERT INTO hash_watermarks (connector, cookie) VALUES (?1, ?2)
                 ON CONFLICT (connector) DO UPDATE SET cookie = ?2",
                params![connector, cookie.as_bytes()],
            )
            .map(|_| ())
            .map_err(db("write the hash watermark"))
    }

    /// The last hash pass of `connector`, if one ran.
    pub fn hash_status(&self, connector: &str) -> Result<Option<HashStatus>, SpaceError> {
        self.conn()
            .query_row(
                "SELECT last_pass_at, last_ok_at, pending, oldest_pending, errors, last_error
                 FROM hash_status WHERE connector = ?1",
                [connector],
                |r| {
                    Ok(HashStatus {
                        last_pass_at: Some(time(r.get(0)?)),
                        last_ok_at: r.get::<_, Option<i64>>(1)?.map(time),
                        pending: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                        oldest_pending: r.get::<_, Option<i64>>(3)?.map(time),
                        errors: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                        last_error: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(db("read the hash status"))
    }

    /// Records the end of a hash pass. The oldest pending change keeps its first-seen
    /// time while changes stay pending, so the lag it shows grows until they are pushed.
    pub fn record_hash_pass(
        &self,
        connector: &str,
        s: &HashStatus,
        now: SystemTime,
    ) -> Result<(), SpaceError> {
        let before = self.hash_status(connector)?;
        let oldest = if s.pending == 0 {
            None
        } else {
            before
                .and_then(|b| b.oldest_pending)
                .or(s.oldest_pending)
                .or(Some(now))
        };
        let ok = if s.pending == 0 && s.last_error.is_none() {
            Some(secs(now))
        } else {
            self.hash_status(connector)?
                .and_then(|b| b.last_ok_at)
                .map(secs)
        };
        self.conn()
            .execute(
                "INSERT INTO hash_status (connector, last_pass_at, last_ok_at, pending, oldest_pending, errors, last_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (connector) DO UPDATE SET last_pass_at = ?2, last_ok_at = ?3, pending = ?4,
                   oldest_pending = ?5, errors = ?6, last_error = ?7",
                params![
                    connector,
                    secs(now),
                    ok,
                    i64::try_from(s.pending).unwrap_or(i64::MAX),
                    oldest.map(secs),
                    i64::try_from(s.errors).unwrap_or(i64::MAX),
                    s.last_error,
                ],
            )
            .map(|_| ())
            .map_err(db("write the hash status"))
    }
}
