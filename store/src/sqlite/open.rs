//! Opening a SQLite file, for every store that keeps one ([`open`]): created private
//! (0600) from the first byte, refused if others can read it, WAL, a busy timeout, and a
//! `user_version` schema check with ordered migrations.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

/// How long a statement waits for another connection's write lock, and how long the
/// first open retries the switch to WAL.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A file's schema: migration `i` takes `user_version` from `i` to `i + 1`, so the
/// current version is the number of migrations. A new file runs them all, in order.
pub struct Schema {
    /// The steps, oldest first.
    pub migrations: &'static [Migration],
}

/// One step of a [`Schema`].
pub struct Migration {
    /// What it does, for the error if it fails ("create the tables").
    pub action: &'static str,
    /// The SQL, run in the same transaction as the version bump, so a crash leaves the
    /// previous version intact.
    pub sql: &'static str,
}

impl Schema {
    /// The schema's version: its number of migrations.
    pub fn version(&self) -> i64 {
        i64::try_from(self.migrations.len()).unwrap_or(i64::MAX)
    }
}

/// Which file operation of [`open`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStep {
    /// Creating the file.
    Create,
    /// Making its mode exactly 0600 after creation (the umask filters the create mode).
    SetMode,
    /// Opening it to check its mode.
    Open,
    /// Reading its mode.
    Inspect,
}

/// Why [`open`] failed; each backend turns it into its own error with its own wording.
#[derive(Debug)]
pub enum OpenError {
    /// A file operation failed.
    File(FileStep, std::io::Error),
    /// The file is accessible to group or others (`mode` is its permission bits, 0o7777).
    Insecure {
        /// The file's permission bits.
        mode: u32,
    },
    /// SQLite failed while doing `action`.
    Db {
        /// What was being done.
        action: &'static str,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file's schema is newer than this build's.
    TooNew {
        /// The file's version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
}

/// Opens the SQLite file at `path`, creating it (mode 0600) and its schema on first use,
/// and migrating an older schema in place. Returns the connection and the journal mode
/// SQLite ended in (`wal` unless the file system refuses it; the caller decides whether
/// that is fatal). A file accessible to group or others is refused: whoever can read it
/// learns verifiers or agent keys, whoever can write it can approve agents.
pub fn open(path: &Path, schema: &Schema) -> Result<(Connection, String), OpenError> {
    // Create the file ourselves, private from the first byte; SQLite would create it 0644.
    // SQLite gives its -wal and -shm files the database file's mode.
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| OpenError::File(FileStep::SetMode, e))?,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(OpenError::File(FileStep::Create, e)),
    }
    // Checked on an open handle, so the file checked is the file opened below.
    let file = File::open(path).map_err(|e| OpenError::File(FileStep::Open, e))?;
    let mode = file
        .metadata()
        .map_err(|e| OpenError::File(FileStep::Inspect, e))?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        return Err(OpenError::Insecure { mode });
    }
    drop(file);

    let db = |action: &'static str| move |source: rusqlite::Error| OpenError::Db { action, source };
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db("open the database"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(db("set the busy timeout"))?;
    // Room for every statement a sync batch or a sign-in runs (rusqlite keeps 16).
    conn.set_prepared_statement_cache_capacity(64);
    let journal = enable_wal(&conn).map_err(db("switch to WAL mode"))?;

    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db("begin the schema check"))?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db("read the schema version"))?;
    let known = schema.version();
    if version > known || version < 0 {
        return Err(OpenError::TooNew {
            found: version,
            known,
        });
    }
    if version < known {
        let from = usize::try_from(version).unwrap_or(0);
        for m in &schema.migrations[from..] {
            tx.execute_batch(m.sql).map_err(db(m.action))?;
        }
        tx.pragma_update(None, "user_version", known)
            .map_err(db("record the schema version"))?;
    }
    tx.commit().map_err(db("commit the schema"))?;
    Ok((conn, journal))
}

/// Switches the file to WAL mode (a persistent property of the file, so only the first
/// open does any work). SQLite answers `SQLITE_BUSY` at once, without consulting the busy
/// handler, when two connections try the switch together: retry until the busy timeout.
fn enable_wal(conn: &Connection) -> rusqlite::Result<String> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(2);
    loop {
        let attempt = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
            .and_then(|mode| {
                if mode.eq_ignore_ascii_case("wal") {
                    Ok(mode)
                } else {
                    conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))
                }
            });
        match attempt {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Runs blocking SQLite work on tokio's blocking pool, so that async callers never stall
/// a runtime thread on a disk write or a busy lock. A panic in `f` is re-raised here.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static TWO_STEPS: Schema = Schema {
        migrations: &[
            Migration {
                action: "create the tables",
                sql: "CREATE TABLE a (x INTEGER);",
            },
            Migration {
                action: "add b",
                sql: "CREATE TABLE b (y INTEGER);",
            },
        ],
    };

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("causeway-sqlite-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        d.join("db.sqlite")
    }

    /// A file written at version 1 gets only migration 2, in place; a newer file is
    /// refused with both versions named; a loose file is refused before SQLite opens it.
    #[test]
    fn migrations_run_in_order_from_the_files_version() {
        let path = tmp("migrate");
        let one = Schema {
            migrations: &TWO_STEPS.migrations[..1],
        };
        let (conn, journal) = open(&path, &one).expect("create at version 1");
        assert_eq!(journal, "wal");
        conn.execute("INSERT INTO a (x) VALUES (7)", [])
            .expect("a row from before");
        drop(conn);
        let (conn, _) = open(&path, &TWO_STEPS).expect("upgrade");
        let (x, v): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT x FROM a), (SELECT COUNT(*) FROM b)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("both tables");
        assert_eq!((x, v), (7, 0));
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, 2);
        drop(conn);
        assert!(matches!(
            open(&path, &one),
            Err(OpenError::TooNew { found: 2, known: 1 })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(matches!(
            open(&path, &TWO_STEPS),
            Err(OpenError::Insecure { mode: 0o640 })
        ));
    }
}
