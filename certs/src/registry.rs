//! The agent registry and enrollment tokens, in one SQLite file shared by the running
//! endpoint and by `causeway certs ...` commands run from other processes.
//!
//! It holds no secret: a token is stored as the SHA-256 of its random part only, and
//! agents are known by public data (certificate fingerprints, HPKE public keys).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use causeway_credential::Secret;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{DbError, TokenError};
use crate::util::{check_private, from_unix_secs, is_fingerprint, random_bytes, unix_secs};
use crate::{AgentId, CertsError};

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
const TOKEN_RETENTION_SECS: i64 = 30 * 24 * 60 * 60;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const SCHEMA_VERSION: i64 = 1;

const SCHEMA_V1: &str = "
CREATE TABLE meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (name, value) VALUES ('generation', 0);

CREATE TABLE enrollment_tokens (
    secret_sha256 BLOB PRIMARY KEY NOT NULL CHECK (length(secret_sha256) = 32),
    purpose       TEXT NOT NULL,
    ca_prefix     TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER
) WITHOUT ROWID;

CREATE TABLE agents (
    id                   TEXT PRIMARY KEY NOT NULL,
    host_name            TEXT NOT NULL,
    status               TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'revoked')),
    cert_sha256          TEXT NOT NULL UNIQUE,
    previous_cert_sha256 TEXT,
    cert_not_after       INTEGER NOT NULL,
    hpke_public_key      BLOB NOT NULL CHECK (length(hpke_public_key) = 32),
    first_seen           INTEGER NOT NULL,
    last_seen            INTEGER NOT NULL
);
CREATE INDEX agents_previous_cert ON agents (previous_cert_sha256);
";

const AGENT_COLUMNS: &str = "id, host_name, status, cert_sha256, previous_cert_sha256, \
                             cert_not_after, first_seen, last_seen, hpke_public_key";

/// What an enrollment token may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenPurpose {
    /// Registering a pass-through-authentication agent.
    Agent,
}

impl TokenPurpose {
    fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::Agent => "agent",
        }
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

    fn parse(s: &str) -> Option<Self> {
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
    /// Its HPKE (X25519) public key: credentials for it are sealed to this key.
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
    /// When it last connected (see [`Registry::touch`]).
    pub last_seen: SystemTime,
    /// Its HPKE public key.
    pub hpke_public_key: [u8; 32],
}

/// The registry: a handle on one SQLite file (WAL mode, 5 s busy timeout, mode 0600).
/// Any number of handles, in any number of processes, may use the same file; each
/// operation is one transaction. A handle is `Send + Sync` (calls are serialised).
pub struct Registry {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A row as stored, before validation.
struct RawAgent {
    id: String,
    host_name: String,
    status: String,
    cert: String,
    previous: Option<String>,
    not_after: i64,
    first_seen: i64,
    last_seen: i64,
    hpke: Vec<u8>,
}

impl RawAgent {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawAgent {
            id: r.get(0)?,
            host_name: r.get(1)?,
            status: r.get(2)?,
            cert: r.get(3)?,
            previous: r.get(4)?,
            not_after: r.get(5)?,
            first_seen: r.get(6)?,
            last_seen: r.get(7)?,
            hpke: r.get(8)?,
        })
    }
}

impl Registry {
    /// Opens the registry at `path`, creating it (mode 0600) and its tables on first use.
    /// The parent directory must exist. A file accessible to group or others is refused:
    /// whoever can write it can approve agents.
    pub fn open(path: &Path) -> Result<Registry, CertsError> {
        // Create the file ourselves, private from the first byte; SQLite would create it
        // 0644. SQLite gives its -wal and -shm files the database file's mode.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(f) => f
                .set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| CertsError::io("set permissions on", path, e))?,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(CertsError::io("create", path, e)),
        }
        let file = File::open(path).map_err(|e| CertsError::io("open", path, e))?;
        check_private(&file, path)?;
        drop(file);

        let db = |action: &'static str| {
            let path = path.to_owned();
            move |e: rusqlite::Error| CertsError::Database {
                path,
                action,
                source: DbError(e),
            }
        };
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db("open the database"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(db("set the busy timeout"))?;
        let mode = enable_wal(&conn).map_err(db("switch to WAL mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(CertsError::CorruptRegistry {
                path: path.to_owned(),
                problem: format!("SQLite refused WAL mode (journal mode is {mode:?}); is the file on a network file system?"),
            });
        }

        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("begin the schema check"))?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db("read the schema version"))?;
        match version {
            0 => {
                tx.execute_batch(SCHEMA_V1)
                    .map_err(db("create the tables"))?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(db("record the schema version"))?;
            }
            SCHEMA_VERSION => {}
            other => {
                return Err(CertsError::CorruptRegistry {
                    path: path.to_owned(),
                    problem: format!(
                    "its schema version is {other}, and this build knows version {SCHEMA_VERSION}"
                ),
                })
            }
        }
        tx.commit().map_err(db("commit the schema"))?;
        Ok(Registry {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction open (rusqlite rolls
        // back on drop), so the connection stays usable.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn db(&self, action: &'static str) -> impl FnOnce(rusqlite::Error) -> CertsError + '_ {
        move |e| CertsError::Database {
            path: self.path.clone(),
            action,
            source: DbError(e),
        }
    }

    fn corrupt(&self, problem: String) -> CertsError {
        CertsError::CorruptRegistry {
            path: self.path.clone(),
            problem,
        }
    }

    // ---- enrollment tokens ------------------------------------------------------------

    /// Creates a one-time enrollment token valid for `ttl`, to be shown once to the
    /// administrator: `cwt1.<32 random bytes, base64url>.<first 16 hex digits of
    /// ca_fingerprint>`. The tail lets the new agent pin the CA it meets at enrollment.
    /// Only the SHA-256 of the random part is stored.
    pub fn create_token(
        &self,
        purpose: TokenPurpose,
        ca_fingerprint: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Secret<String>, CertsError> {
        if !is_fingerprint(ca_fingerprint) {
            return Err(CertsError::MalformedFingerprint(crate::error::excerpt(
                ca_fingerprint,
                80,
            )));
        }
        if ttl < MIN_TOKEN_TTL || ttl > MAX_TOKEN_TTL {
            return Err(CertsError::InvalidLifetime {
                what: "an enrollment token",
                min_secs: MIN_TOKEN_TTL.as_secs(),
                max_secs: MAX_TOKEN_TTL.as_secs(),
                got_secs: ttl.as_secs(),
            });
        }
        let secret: Zeroizing<[u8; TOKEN_SECRET_LEN]> = Zeroizing::new(random_bytes()?);
        let hash: [u8; 32] = Sha256::digest(secret.as_slice()).into();
        let ca_prefix = &ca_fingerprint[..TOKEN_CA_PREFIX_LEN];
        // Built in place, with its final capacity, so no stray copy is left to free.
        let mut token = String::with_capacity(
            TOKEN_VERSION.len() + 1 + TOKEN_SECRET_B64_LEN + 1 + TOKEN_CA_PREFIX_LEN,
        );
        token.push_str(TOKEN_VERSION);
        token.push('.');
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode_string(secret.as_slice(), &mut token);
        token.push('.');
        token.push_str(ca_prefix);
        let token = Secret::new(token);

        let now_s = unix_secs(now);
        let expires = now_s.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.db("store an enrollment token"))?;
        tx.execute(
            "INSERT INTO enrollment_tokens (secret_sha256, purpose, ca_prefix, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![hash.as_slice(), purpose.as_str(), ca_prefix, now_s, expires],
        )
        .map_err(self.db("store an enrollment token"))?;
        tx.execute(
            "DELETE FROM enrollment_tokens WHERE expires_at < ?1",
            params![now_s.saturating_sub(TOKEN_RETENTION_SECS)],
        )
        .map_err(self.db("delete long-expired tokens"))?;
        tx.commit().map_err(self.db("store an enrollment token"))?;
        Ok(token)
    }

    /// Uses up an enrollment token for `purpose`. Single-use and atomic: of any number of
    /// concurrent calls with the same token, in any processes, exactly one succeeds.
    /// Errors, checked in this order: [`TokenError::Malformed`], [`TokenError::Unknown`]
    /// (also for a token made for another purpose or CA), [`TokenError::AlreadyUsed`],
    /// [`TokenError::Expired`].
    pub fn consume_token(
        &self,
        token: &str,
        purpose: TokenPurpose,
        now: SystemTime,
    ) -> Result<(), CertsError> {
        let (hash, ca_prefix) = parse_token(token)?;
        let now_s = unix_secs(now);
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.db("check an enrollment token"))?;
        let row: Option<(String, String, i64, Option<i64>)> = tx
            .query_row(
                "SELECT purpose, ca_prefix, expires_at, used_at FROM enrollment_tokens \
                 WHERE secret_sha256 = ?1",
                params![hash.as_slice()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(self.db("check an enrollment token"))?;
        let Some((stored_purpose, stored_prefix, expires_at, used_at)) = row else {
            return Err(TokenError::Unknown.into());
        };
        if stored_purpose != purpose.as_str() || stored_prefix != ca_prefix {
            return Err(TokenError::Unknown.into());
        }
        if used_at.is_some() {
            return Err(TokenError::AlreadyUsed.into());
        }
        if now_s >= expires_at {
            return Err(TokenError::Expired.into());
        }
        let changed = tx
            .execute(
                "UPDATE enrollment_tokens SET used_at = ?2 \
                 WHERE secret_sha256 = ?1 AND used_at IS NULL",
                params![hash.as_slice(), now_s],
            )
            .map_err(self.db("use up an enrollment token"))?;
        if changed != 1 {
            // Cannot happen inside an IMMEDIATE transaction; refuse rather than assume.
            return Err(TokenError::AlreadyUsed.into());
        }
        tx.commit().map_err(self.db("use up an enrollment token"))?;
        Ok(())
    }

    // ---- agents -----------------------------------------------------------------------

    /// Registers a newly enrolled agent, `Pending` if `require_approval`, else `Approved`.
    pub fn register_agent(
        &self,
        reg: AgentRegistration,
        require_approval: bool,
        now: SystemTime,
    ) -> Result<AgentRecord, CertsError> {
        check_host_name(&reg.host_name)?;
        check_fingerprint(&reg.cert_fingerprint)?;
        let status = if require_approval {
            AgentStatus::Pending
        } else {
            AgentStatus::Approved
        };
        let now_s = unix_secs(now);
        let not_after = unix_secs(reg.cert_not_after);
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.db("register an agent"))?;
        let id_taken: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM agents WHERE id = ?1)",
                params![reg.agent_id.as_str()],
                |r| r.get(0),
            )
            .map_err(self.db("register an agent"))?;
        if id_taken {
            return Err(CertsError::DuplicateAgent(reg.agent_id));
        }
        if fingerprint_taken(&tx, &reg.cert_fingerprint).map_err(self.db("register an agent"))? {
            return Err(CertsError::DuplicateCertificate(reg.cert_fingerprint));
        }
        tx.execute(
            "INSERT INTO agents (id, host_name, status, cert_sha256, previous_cert_sha256, \
             cert_not_after, hpke_public_key, first_seen, last_seen) \
             VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6, ?7, ?7)",
            params![
                reg.agent_id.as_str(),
                reg.host_name,
                status.as_str(),
                reg.cert_fingerprint,
                not_after,
                reg.hpke_public_key.as_slice(),
                now_s
            ],
        )
        .map_err(self.db("register an agent"))?;
        bump_generation(&tx).map_err(self.db("register an agent"))?;
        tx.commit().map_err(self.db("register an agent"))?;
        Ok(AgentRecord {
            id: reg.agent_id,
            host_name: reg.host_name,
            status,
            cert_fingerprint: reg.cert_fingerprint,
            previous_cert_fingerprint: None,
            cert_not_after: from_unix_secs(not_after),
            first_seen: from_unix_secs(now_s),
            last_seen: from_unix_secs(now_s),
            hpke_public_key: reg.hpke_public_key,
        })
    }

    /// Every registered agent, oldest first.
    pub fn list_agents(&self) -> Result<Vec<AgentRecord>, CertsError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {AGENT_COLUMNS} FROM agents ORDER BY first_seen, id"
            ))
            .map_err(self.db("list agents"))?;
        let raw = stmt
            .query_map([], RawAgent::from_row)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(self.db("list agents"))?;
        drop(stmt);
        drop(conn);
        raw.into_iter().map(|r| self.record(r)).collect()
    }

    /// One agent, if registered.
    pub fn agent(&self, agent_id: &AgentId) -> Result<Option<AgentRecord>, CertsError> {
        let raw = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare_cached(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?1"))
                .map_err(self.db("read an agent"))?;
            stmt.query_row(params![agent_id.as_str()], RawAgent::from_row)
                .optional()
                .map_err(self.db("read an agent"))?
        };
        raw.map(|r| self.record(r)).transpose()
    }

    /// The agent whose current or previous certificate has this fingerprint (SHA-256 of
    /// the DER, lowercase hex), whatever its status: the caller decides what a `Pending`
    /// or `Revoked` agent may do. Called by the hub on every new connection.
    pub fn lookup_by_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Option<AgentRecord>, CertsError> {
        check_fingerprint(fingerprint)?;
        let raw = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {AGENT_COLUMNS} FROM agents \
                     WHERE cert_sha256 = ?1 OR previous_cert_sha256 = ?1"
                ))
                .map_err(self.db("look up a certificate"))?;
            stmt.query_row(params![fingerprint], RawAgent::from_row)
                .optional()
                .map_err(self.db("look up a certificate"))?
        };
        raw.map(|r| self.record(r)).transpose()
    }

    /// Lets a pending agent receive traffic. Approving an approved agent does nothing; a
    /// revoked agent cannot be approved again.
    pub fn approve(&self, agent_id: &AgentId) -> Result<(), CertsError> {
        self.set_status(agent_id, AgentStatus::Approved, "approve an agent")
    }

    /// Cuts an agent off for good (connected hubs notice within their polling interval,
    /// see [`Registry::generation`]). Revoking a revoked agent does nothing.
    pub fn revoke(&self, agent_id: &AgentId) -> Result<(), CertsError> {
        self.set_status(agent_id, AgentStatus::Revoked, "revoke an agent")
    }

    fn set_status(
        &self,
        agent_id: &AgentId,
        to: AgentStatus,
        action: &'static str,
    ) -> Result<(), CertsError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.db(action))?;
        let current: Option<String> = tx
            .query_row(
                "SELECT status FROM agents WHERE id = ?1",
                params![agent_id.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.db(action))?;
        let Some(current) = current else {
            return Err(CertsError::UnknownAgent(agent_id.clone()));
        };
        let current = AgentStatus::parse(&current)
            .ok_or_else(|| self.corrupt(format!("agent {agent_id} has status {current:?}")))?;
        if current == to {
            return Ok(());
        }
        if current == AgentStatus::Revoked {
            return Err(CertsError::AgentRevoked(agent_id.clone()));
        }
        tx.execute(
            "UPDATE agents SET status = ?2 WHERE id = ?1",
            params![agent_id.as_str(), to.as_str()],
        )
        .map_err(self.db(action))?;
        bump_generation(&tx).map_err(self.db(action))?;
        tx.commit().map_err(self.db(action))
    }

    /// Notes that the agent connected at `now` (`last_seen` never moves backwards).
    pub fn touch(&self, agent_id: &AgentId, now: SystemTime) -> Result<(), CertsError> {
        let changed = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare_cached("UPDATE agents SET last_seen = max(last_seen, ?2) WHERE id = ?1")
                .map_err(self.db("record an agent's visit"))?;
            stmt.execute(params![agent_id.as_str(), unix_secs(now)])
                .map_err(self.db("record an agent's visit"))?
        };
        if changed == 0 {
            return Err(CertsError::UnknownAgent(agent_id.clone()));
        }
        Ok(())
    }

    /// Records a renewed certificate: the current one becomes the previous one (still
    /// accepted, for connections made before the renewal) and `new_fingerprint` becomes
    /// current. Recording the current fingerprint again does nothing, so a retried
    /// renewal is harmless. A revoked agent cannot renew.
    pub fn record_renewal(
        &self,
        agent_id: &AgentId,
        new_fingerprint: &str,
        new_not_after: SystemTime,
    ) -> Result<(), CertsError> {
        check_fingerprint(new_fingerprint)?;
        const ACTION: &str = "record a renewed certificate";
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.db(ACTION))?;
        let row: Option<(String, String)> = tx
            .query_row(
                "SELECT status, cert_sha256 FROM agents WHERE id = ?1",
                params![agent_id.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.db(ACTION))?;
        let Some((status, current)) = row else {
            return Err(CertsError::UnknownAgent(agent_id.clone()));
        };
        if AgentStatus::parse(&status) == Some(AgentStatus::Revoked) {
            return Err(CertsError::AgentRevoked(agent_id.clone()));
        }
        if current == new_fingerprint {
            return Ok(());
        }
        if fingerprint_taken(&tx, new_fingerprint).map_err(self.db(ACTION))? {
            return Err(CertsError::DuplicateCertificate(new_fingerprint.to_owned()));
        }
        tx.execute(
            "UPDATE agents SET previous_cert_sha256 = cert_sha256, cert_sha256 = ?2, \
             cert_not_after = ?3 WHERE id = ?1",
            params![agent_id.as_str(), new_fingerprint, unix_secs(new_not_after)],
        )
        .map_err(self.db(ACTION))?;
        bump_generation(&tx).map_err(self.db(ACTION))?;
        tx.commit().map_err(self.db(ACTION))
    }

    /// A counter that grows whenever an agent is registered, approved, revoked or renewed,
    /// by any process. A hub polls it (one indexed read) every second and re-checks its
    /// connected agents only when it moved.
    pub fn generation(&self) -> Result<u64, CertsError> {
        let value: i64 = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare_cached("SELECT value FROM meta WHERE name = 'generation'")
                .map_err(self.db("read the registry generation"))?;
            stmt.query_row([], |r| r.get(0))
                .map_err(self.db("read the registry generation"))?
        };
        u64::try_from(value).map_err(|_| self.corrupt(format!("negative generation {value}")))
    }

    /// The ids of every revoked agent.
    pub fn revoked_ids(&self) -> Result<Vec<AgentId>, CertsError> {
        let ids: Vec<String> = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare_cached("SELECT id FROM agents WHERE status = 'revoked' ORDER BY id")
                .map_err(self.db("list revoked agents"))?;
            stmt.query_map([], |r| r.get(0))
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(self.db("list revoked agents"))?
        };
        ids.iter()
            .map(|s| AgentId::parse(s).map_err(|_| self.corrupt(format!("bad agent id {s:?}"))))
            .collect()
    }

    fn record(&self, r: RawAgent) -> Result<AgentRecord, CertsError> {
        let id = AgentId::parse(&r.id)
            .map_err(|_| self.corrupt(format!("an agent has the malformed id {:?}", r.id)))?;
        let status = AgentStatus::parse(&r.status)
            .ok_or_else(|| self.corrupt(format!("agent {id} has status {:?}", r.status)))?;
        let hpke_public_key: [u8; 32] = r
            .hpke
            .as_slice()
            .try_into()
            .map_err(|_| self.corrupt(format!("agent {id} has a malformed HPKE key")))?;
        Ok(AgentRecord {
            id,
            host_name: r.host_name,
            status,
            cert_fingerprint: r.cert,
            previous_cert_fingerprint: r.previous,
            cert_not_after: from_unix_secs(r.not_after),
            first_seen: from_unix_secs(r.first_seen),
            last_seen: from_unix_secs(r.last_seen),
            hpke_public_key,
        })
    }
}

/// Switches the file to WAL mode (a persistent property of the file, so only the first
/// open does any work). SQLite answers `SQLITE_BUSY` at once, without consulting the busy
/// handler, when two connections try the switch together: retry until the busy timeout.
fn enable_wal(conn: &Connection) -> rusqlite::Result<String> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
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
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn bump_generation(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE meta SET value = value + 1 WHERE name = 'generation'",
        [],
    )
    .map(|_| ())
}

fn fingerprint_taken(tx: &rusqlite::Transaction<'_>, fp: &str) -> rusqlite::Result<bool> {
    tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM agents WHERE cert_sha256 = ?1 OR previous_cert_sha256 = ?1)",
        params![fp],
        |r| r.get(0),
    )
}

fn check_fingerprint(fp: &str) -> Result<(), CertsError> {
    if is_fingerprint(fp) {
        Ok(())
    } else {
        Err(CertsError::MalformedFingerprint(crate::error::excerpt(
            fp, 80,
        )))
    }
}

fn check_host_name(name: &str) -> Result<(), CertsError> {
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

/// Splits a token into the SHA-256 of its secret part and its CA fingerprint prefix,
/// checking its form strictly (lengths, alphabet, canonical base64).
fn parse_token(token: &str) -> Result<([u8; 32], &str), TokenError> {
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

#[cfg(test)]
mod tests;
