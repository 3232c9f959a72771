//! The directory ([`crate::DirectoryStore`]), what sync exports ([`crate::Synced`]) and
//! smart lockout's state ([`crate::LockoutStore`]) on one SQLite file (WAL, mode 0600),
//! shared by the endpoint and the `causeway users` commands running in other processes.
//! This file and `directory/synced.rs` hold the blocking SQL; `directory/traits.rs` puts
//! the capability traits on top of it.

mod hashsync;
mod synced;
mod traits;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use causeway_credential::PhsVerifier;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::open::{open, FileStep, Migration, OpenError, Schema};
use crate::directory::{check_upn, AdUser, HistoryEntry, NewUser, Source, StoreError, UserRecord};
use crate::ids::ImmutableId;

const SCHEMA_V1: &str = "
CREATE TABLE users (
    id           TEXT PRIMARY KEY,
    upn          TEXT NOT NULL COLLATE NOCASE,
    display_name TEXT,
    mail         TEXT,
    source       TEXT NOT NULL,
    disabled     INTEGER NOT NULL DEFAULT 0,
    verifier     TEXT,
    deleted_at   INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
-- One live user per UPN; the recycle bin may hold older ones.
CREATE UNIQUE INDEX users_live_upn ON users(upn) WHERE deleted_at IS NULL;
CREATE TABLE history (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    object_id TEXT NOT NULL,
    at        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    snapshot  TEXT NOT NULL
);
CREATE INDEX history_object ON history(object_id, seq);
";

/// Version 2: smart lockout's counters and familiar places, one row per account (the
/// state is the lockout module's own JSON; no password or fingerprint is ever in it).
const SCHEMA_V2: &str = "
CREATE TABLE lockout (
    account    TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX lockout_updated ON lockout(updated_at);
";

static SCHEMA: Schema = Schema {
    migrations: &[
        Migration {
            action: "create the tables",
            sql: SCHEMA_V1,
        },
        Migration {
            action: "add the lockout table",
            sql: SCHEMA_V2,
        },
        Migration {
            action: "add the synchronised objects, runs and leases",
            sql: synced::SCHEMA_V3,
        },
        Migration {
            action: "add the password hash sync columns",
            sql: hashsync::SCHEMA_V4,
        },
    ],
};

/// What a change is, for its history row.
pub(super) struct Change<'a> {
    pub(super) action: &'a str,
    pub(super) actor: &'a str,
    pub(super) now: SystemTime,
    pub(super) verifier_changed: bool,
}

/// The SQLite directory store: a handle on one file, cheap to clone (clones share the
/// connection). The capability traits run each call on tokio's blocking pool; the
/// [`crate::LockoutStore`] calls block (their caller has a thread of its own).
#[derive(Clone)]
pub struct SqliteStore(Arc<Db>);

/// The file and its connection; every method blocks.
pub(crate) struct Db {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.0.path)
            .finish_non_exhaustive()
    }
}

pub(super) fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

pub(super) fn time(s: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

pub(super) fn check_text(field: &'static str, v: &Option<String>) -> Result<(), StoreError> {
    match v {
        Some(s) if s.chars().count() > 256 || s.chars().any(char::is_control) => {
            Err(StoreError::InvalidAttribute { field })
        }
        _ => Ok(()),
    }
}

/// The user columns [`row_to_user`] reads, in its order; a query that reads more puts them
/// after these (from index [`COLUMNS_LEN`]).
pub(super) const COLUMNS: &str = "id, upn, display_name, mail, source, disabled, verifier IS NOT NULL, deleted_at, created_at, updated_at, protected, pwd_must_change, account_expires, hash_disabled, hash_synced_at";
pub(super) const COLUMNS_LEN: usize = 15;

pub(super) fn row_to_user(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: ImmutableId::from_stored(r.get(0)?),
        upn: r.get(1)?,
        display_name: r.get(2)?,
        mail: r.get(3)?,
        source: Source::parse(&r.get::<_, String>(4)?).unwrap_or(Source::Cloud),
        disabled: r.get::<_, i64>(5)? != 0,
        has_verifier: r.get(6)?,
        deleted_at: r.get::<_, Option<i64>>(7)?.map(time),
        created_at: time(r.get(8)?),
        updated_at: time(r.get(9)?),
        protected: r.get::<_, i64>(10)? != 0,
        password: crate::directory::PasswordState {
            must_change: r.get::<_, i64>(11)? != 0,
            account_expires: r.get::<_, Option<i64>>(12)?.map(time),
            disabled: r.get::<_, i64>(13)? != 0,
            last_hash_sync: r.get::<_, Option<i64>>(14)?.map(time),
        },
    })
}

pub(super) fn snapshot(u: &UserRecord, verifier_changed: bool) -> String {
    user_json(u, verifier_changed).to_string()
}

/// A user's history snapshot (never its verifier: only whether it changed).
pub(super) fn user_json(u: &UserRecord, verifier_changed: bool) -> serde_json::Value {
    serde_json::json!({
        "id": u.id.as_str(),
        "upn": u.upn,
        "display_name": u.display_name,
        "mail": u.mail,
        "source": u.source.as_str(),
        "disabled": u.disabled,
        "deleted": u.deleted_at.is_some(),
        "has_verifier": u.has_verifier,
        "verifier_changed": verifier_changed,
        "protected": u.protected,
    })
}

impl SqliteStore {
    /// Opens (creating, mode 0600) the store at `path`, adding the tables a newer build
    /// needs to a file an older one wrote.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        // The journal mode is not checked: this file has always worked without WAL too.
        let (conn, _journal) = open(path, &SCHEMA).map_err(|e| match e {
            OpenError::File(step, e) => StoreError::Database {
                path: shown.clone(),
                action: match step {
                    FileStep::Create | FileStep::SetMode => "create the file",
                    FileStep::Open | FileStep::Inspect => "read the file's mode",
                },
                detail: e.to_string(),
            },
            OpenError::Insecure { mode } => StoreError::InsecureFile {
                path: shown.clone(),
                mode: mode & 0o777,
            },
            OpenError::Db { action, source } => StoreError::Database {
                path: shown.clone(),
                action,
                detail: source.to_string(),
            },
            OpenError::TooNew { found, known } => StoreError::Database {
                path: shown.clone(),
                action: "check the schema",
                detail: format!("schema version {found}; this build knows {known}"),
            },
        })?;
        Ok(Self(Arc::new(Db {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        })))
    }

    /// The blocking operations, for the trait impls.
    pub(crate) fn db(&self) -> &Arc<Db> {
        &self.0
    }
}

impl Db {
    pub(super) fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn err(&self, action: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |e| StoreError::Database {
            path: self.path.display().to_string(),
            action,
            detail: e.to_string(),
        }
    }

    /// Sets one column of the user `upn` (live, or in the recycle bin when `!live`) and
    /// records the change in history, in one transaction. `assignment` is a constant from
    /// this file, such as `"disabled = ?2"`; `value` binds `?2`.
    fn change(
        &self,
        upn: &str,
        live: bool,
        what: Change<'_>,
        assignment: &str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<UserRecord, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err("begin a change"))?;
        let filter = if live {
            "deleted_at IS NULL"
        } else {
            "deleted_at IS NOT NULL"
        };
        let user = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM users WHERE upn = ?1 AND {filter} ORDER BY deleted_at DESC LIMIT 1"),
                [upn],
                row_to_user,
            )
            .optional()
            .map_err(self.err("find the user"))?
            .ok_or_else(|| StoreError::NotFound(upn.chars().take(300).collect()))?;
        tx.execute(
            &format!("UPDATE users SET {assignment}, updated_at = ?3 WHERE id = ?1"),
            params![user.id.as_str(), value, secs(what.now)],
        )
        .map_err(self.err("update the user"))?;
        let after = self.read_back_and_record(&tx, &user.id, &what)?;
        tx.commit().map_err(self.err("commit"))?;
        Ok(after)
    }

    /// Reads user `id` back and records `what` in its history, inside `tx`: every change
    /// and its history row commit together or not at all.
    pub(super) fn read_back_and_record(
        &self,
        tx: &Connection,
        id: &ImmutableId,
        what: &Change<'_>,
    ) -> Result<UserRecord, StoreError> {
        let after = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM users WHERE id = ?1"),
                [id.as_str()],
                row_to_user,
            )
            .map_err(self.err("read the user back"))?;
        tx.execute(
            "INSERT INTO history (object_id, at, actor, action, snapshot) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![after.id.as_str(), secs(what.now), what.actor, what.action, snapshot(&after, what.verifier_changed)],
        )
        .map_err(self.err("record history"))?;
        Ok(after)
    }
}

impl Db {
    pub(crate) fn add_cloud_user(
        &self,
        new: &NewUser,
        verifier: &PhsVerifier,
        actor: &str,
        now: SystemTime,
    ) -> Result<UserRecord, StoreError> {
        check_upn(&new.upn)?;
        check_text("display name", &new.display_name)?;
        check_text("mail", &new.mail)?;
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err("begin a change"))?;
        let exists: bool = tx
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM users WHERE upn = ?1 AND deleted_at IS NULL)",
                [&new.upn],
                |r| r.get(0),
            )
            .map_err(self.err("look for duplicates"))?;
        if exists {
            return Err(StoreError::Duplicate(new.upn.clone()));
        }
        let id = ImmutableId::random();
        tx.execute(
            "INSERT INTO users (id, upn, display_name, mail, source, disabled, verifier, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'cloud', 0, ?5, ?6, ?6)",
            params![id.as_str(), new.upn, new.display_name, new.mail, verifier.expose_encoded(), secs(now)],
        )
        .map_err(self.err("insert the user"))?;
        let user = self.read_back_and_record(
            &tx,
            &id,
            &Change {
                action: "create",
                actor,
                now,
                verifier_changed: true,
            },
        )?;
        tx.commit().map_err(self.err("commit"))?;
        Ok(user)
    }

    pub(crate) fn upsert_ad_user(
        &self,
        user: &AdUser,
        verifier: Option<&PhsVerifier>,
        actor: &str,
        now: SystemTime,
    ) -> Result<UserRecord, StoreError> {
        check_upn(&user.upn)?;
        check_text("display name", &user.display_name)?;
        check_text("mail", &user.mail)?;
        let encoded = verifier.map(PhsVerifier::expose_encoded);
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err("begin a change"))?;
        let clash: Option<String> = tx
            .query_row(
                "SELECT id FROM users WHERE upn = ?1 AND deleted_at IS NULL AND id != ?2",
                params![user.upn, user.id.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err("look for duplicates"))?;
        if clash.is_some() {
            return Err(StoreError::Duplicate(user.upn.clone()));
        }
        let source: Option<String> = tx
            .query_row(
                "SELECT source FROM users WHERE id = ?1",
                [user.id.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err("find the user"))?;
        // Sync may only ever touch what sync created: a directory object whose id collides
        // with a cloud-only (break-glass) account must not take it over.
        if source.as_deref().is_some_and(|s| s != "ad") {
            return Err(StoreError::WrongState(format!(
                "immutable id {} belongs to a cloud-only user; the synchronised object was not applied",
                user.id
            )));
        }
        let existed = source.is_some();
        if existed {
            tx.execute(
                "UPDATE users SET upn = ?2, display_name = ?3, mail = ?4, disabled = ?5,
                 verifier = COALESCE(?6, verifier), deleted_at = NULL, updated_at = ?7 WHERE id = ?1",
                params![user.id.as_str(), user.upn, user.display_name, user.mail, i64::from(user.disabled), encoded, secs(now)],
            )
        } else {
            tx.execute(
                "INSERT INTO users (id, upn, display_name, mail, source, disabled, verifier, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 'ad', ?5, ?6, ?7, ?7)",
                params![user.id.as_str(), user.upn, user.display_name, user.mail, i64::from(user.disabled), encoded, secs(now)],
            )
        }
        .map_err(self.err("write the user"))?;
        let action = if existed {
            "sync-update"
        } else {
            "sync-create"
        };
        let after = self.read_back_and_record(
            &tx,
            &user.id,
            &Change {
                action,
                actor,
                now,
                verifier_changed: encoded.is_some(),
            },
        )?;
        tx.commit().map_err(self.err("commit"))?;
        Ok(after)
    }

    pub(crate) fn user_by_upn(&self, upn: &str) -> Result<Option<UserRecord>, StoreError> {
        self.lock()
            .query_row(
                &format!("SELECT {COLUMNS} FROM users WHERE upn = ?1 AND deleted_at IS NULL"),
                [upn],
                row_to_user,
            )
            .optional()
            .map_err(self.err("find the user"))
    }

    pub(crate) fn user_by_id(&self, id: &ImmutableId) -> Result<Option<UserRecord>, StoreError> {
        self.lock()
            .query_row(
                &format!("SELECT {COLUMNS} FROM users WHERE id = ?1"),
                [id.as_str()],
                row_to_user,
            )
            .optional()
            .map_err(self.err("find the user"))
    }

    pub(crate) fn list_users(&self, include_deleted: bool) -> Result<Vec<UserRecord>, StoreError> {
        let conn = self.lock();
        let sql = if include_deleted {
            format!("SELECT {COLUMNS} FROM users ORDER BY upn, deleted_at")
        } else {
            format!("SELECT {COLUMNS} FROM users WHERE deleted_at IS NULL ORDER BY upn")
        };
        let mut stmt = conn.prepare(&sql).map_err(self.err("list users"))?;
        let rows = stmt
            .query_map([], row_to_user)
            .map_err(self.err("list users"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("list users"))
    }

    pub(crate) fn set_disabled(
        &self,
        upn: &str,
        disabled: bool,
        actor: &str,
        now: SystemTime,
    ) -> Result<UserRecord, StoreError> {
        let action = if disabled { "disable" } else { "enable" };
        self.change(
            upn,
            true,
            Change {
                action,
                actor,
                now,
                verifier_changed: false,
            },
            "disabled = ?2",
            &i64::from(disabled),
        )
    }

    pub(crate) fn delete_user(
        &self,
        upn: &str,
        actor: &str,
        now: SystemTime,
    ) -> Result<UserRecord, StoreError> {
        self.change(
            upn,
            true,
            Change {
                action: "delete",
                actor,
                now,
                verifier_changed: false,
            },
            "deleted_at = ?2",
            &secs(now),
        )
    }

    pub(crate) fn restore_user(
        &self,
        upn: &str,
        actor: &str,
        now: SystemTime,
    ) -> Result<UserRecord, StoreError> {
        if self.user_by_upn(upn)?.is_some() {
            return Err(StoreError::WrongState(format!(
                "{upn} is live; only a user in the recycle bin can be restored"
            )));
        }
        self.change(
            upn,
            false,
            Change {
                action: "restore",
                actor,
                now,
                verifier_changed: false,
            },
            "deleted_at = ?2",
            &rusqlite::types::Null,
        )
    }

    pub(crate) fn set_verifier(
        &self,
        upn: &str,
        verifier: &PhsVerifier,
        actor: &str,
        now: SystemTime,
    ) -> Result<UserRecord, StoreError> {
        let encoded = verifier.expose_encoded();
        self.change(
            upn,
            true,
            Change {
                action: "set-password",
                actor,
                now,
                verifier_changed: true,
            },
            "verifier = ?2",
            &encoded,
        )
    }

    pub(crate) fn verifier_of(
        &self,
        upn: &str,
    ) -> Result<Option<(UserRecord, Option<PhsVerifier>)>, StoreError> {
        let conn = self.lock();
        let row = conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS}, verifier FROM users WHERE upn = ?1 AND deleted_at IS NULL"
                ),
                [upn],
                |r| Ok((row_to_user(r)?, r.get::<_, Option<String>>(COLUMNS_LEN)?)),
            )
            .optional()
            .map_err(self.err("read the verifier"))?;
        match row {
            None => Ok(None),
            Some((u, None)) => Ok(Some((u, None))),
            Some((u, Some(text))) => match PhsVerifier::parse(&text) {
                Ok(v) => Ok(Some((u, Some(v)))),
                Err(e) => Err(StoreError::Database {
                    path: self.path.display().to_string(),
                    action: "read the verifier",
                    detail: format!("stored verifier of {} is corrupt: {e}", u.upn),
                }),
            },
        }
    }

    pub(crate) fn history(&self, upn: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT h.seq, h.at, h.actor, h.action, h.snapshot FROM history h
                 WHERE h.object_id IN (SELECT id FROM users WHERE upn = ?1) ORDER BY h.seq",
            )
            .map_err(self.err("read history"))?;
        let rows = stmt
            .query_map([upn], |r| {
                Ok(HistoryEntry {
                    seq: r.get(0)?,
                    at: time(r.get(1)?),
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    snapshot: r.get(4)?,
                })
            })
            .map_err(self.err("read history"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("read history"))
    }
}

impl Db {
    pub(crate) fn load_lockout(&self, limit: usize) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT account, state FROM lockout ORDER BY updated_at DESC, account LIMIT ?1",
            )
            .map_err(self.err("read the lockout state"))?;
        let rows = stmt
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(self.err("read the lockout state"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err("read the lockout state"))?;
        Ok(rows)
    }

    pub(crate) fn save_lockout(
        &self,
        account: &str,
        state: Option<&str>,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let conn = self.lock();
        match state {
            Some(s) => conn.execute(
                "INSERT INTO lockout (account, state, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(account) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                params![account, s, secs(now)],
            ),
            None => conn.execute("DELETE FROM lockout WHERE account = ?1", [account]),
        }
        .map(drop)
        .map_err(self.err("write the lockout state"))
    }

    pub(crate) fn prune_lockout(
        &self,
        keep: usize,
        older_than: SystemTime,
    ) -> Result<usize, StoreError> {
        let conn = self.lock();
        let old = conn
            .execute(
                "DELETE FROM lockout WHERE updated_at < ?1",
                [secs(older_than)],
            )
            .map_err(self.err("prune the lockout state"))?;
        let over = conn
            .execute(
                "DELETE FROM lockout WHERE account IN
                 (SELECT account FROM lockout ORDER BY updated_at DESC, account LIMIT -1 OFFSET ?1)",
                [i64::try_from(keep).unwrap_or(i64::MAX)],
            )
            .map_err(self.err("prune the lockout state"))?;
        Ok(old + over)
    }
}

#[cfg(test)]
mod tests;
