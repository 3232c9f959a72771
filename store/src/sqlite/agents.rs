//! [`Agents`] on one SQLite file (the agent registry, `registry.sqlite` beside the CA),
//! shared by the running endpoint and by `causeway certs ...` commands run from other
//! processes. The file's path, schema and contents are those `causeway-certs` wrote before
//! the registry moved here, so existing installs keep working.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use causeway_certs::{AgentId, CertsError, DbError, TokenError};
use causeway_credential::Secret;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::open::{blocking, open, FileStep, Migration, OpenError, Schema};
use crate::agents::{
    check_fingerprint, check_host_name, from_unix_secs, mint_token, parse_token, unix_secs,
    AgentRecord, AgentRegistration, AgentStatus, Agents, HostRole, TokenPurpose,
    TOKEN_RETENTION_SECS,
};

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

/// Version 2: the registry holds sync hosts too. Existing rows are agents.
const SCHEMA_V2: &str = "
ALTER TABLE agents ADD COLUMN role TEXT NOT NULL DEFAULT 'agent' CHECK (role IN ('agent', 'sync'));
";

/// Migrations in order; a later change appends one, never edits these.
static SCHEMA: Schema = Schema {
    migrations: &[
        Migration {
            action: "create the tables",
            sql: SCHEMA_V1,
        },
        Migration {
            action: "add the host role",
            sql: SCHEMA_V2,
        },
    ],
};

const AGENT_COLUMNS: &str = "id, host_name, status, cert_sha256, previous_cert_sha256, \
                             cert_not_after, first_seen, last_seen, hpke_public_key, role";

/// The registry: a handle on one SQLite file (WAL mode, 5 s busy timeout, mode 0600).
/// Any number of handles, in any number of processes, may use the same file; each
/// operation is one transaction. A handle is `Send + Sync` (calls are serialised) and
/// cheap to clone (clones share the connection).
///
/// The inherent methods block on SQLite: call them from blocking code (the CLI, the
/// hub's authority, which runs on the blocking pool). Async code uses [`Agents`], whose
/// methods move the same work onto the blocking pool.
#[derive(Clone)]
pub struct SqliteAgents(Arc<Db>);

struct Db {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl fmt::Debug for SqliteAgents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteAgents")
            .field("path", &self.0.path)
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
    role: String,
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
            role: r.get(9)?,
        })
    }
}

impl SqliteAgents {
    /// Opens the registry at `path`, creating it (mode 0600) and its tables on first use.
    /// The parent directory must exist. A file accessible to group or others is refused:
    /// whoever can write it can approve agents.
    pub fn open(path: &Path) -> Result<SqliteAgents, CertsError> {
        let (conn, journal) = open(path, &SCHEMA).map_err(|e| match e {
            OpenError::File(step, e) => {
                let action = match step {
                    FileStep::Create => "create",
                    FileStep::SetMode => "set permissions on",
                    FileStep::Open => "open",
                    FileStep::Inspect => "inspect",
                };
                CertsError::Io {
                    action,
                    path: path.to_owned(),
                    source: e,
                }
            }
            OpenError::Insecure { mode } => CertsError::InsecureFile {
                path: path.to_owned(),
                mode,
            },
            OpenError::Db { action, source } => CertsError::Database {
                path: path.to_owned(),
                action,
                source: DbError::new(source),
            },
            OpenError::TooNew { found, known } => CertsError::CorruptRegistry {
                path: path.to_owned(),
                problem: format!(
                    "its schema version is {found}, and this build knows version {known}"
                ),
            },
        })?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(CertsError::CorruptRegistry {
                path: path.to_owned(),
                problem: format!("SQLite refused WAL mode (journal mode is {journal:?}); is the file on a network file system?"),
            });
        }
        Ok(SqliteAgents(Arc::new(Db {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        })))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.0.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction open (rusqlite rolls
        // back on drop), so the connection stays usable.
        self.0.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn db(&self, action: &'static str) -> impl FnOnce(rusqlite::Error) -> CertsError + '_ {
        move |e| CertsError::Database {
            path: self.0.path.clone(),
            action,
            source: DbError::new(e),
        }
    }

    fn corrupt(&self, problem: String) -> CertsError {
        CertsError::CorruptRegistry {
            path: self.0.path.clone(),
            problem,
        }
    }

    // ---- enrollment tokens ------------------------------------------------------------

    /// See [`Agents::create_token`].
    pub fn create_token(
        &self,
        purpose: TokenPurpose,
        ca_fingerprint: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Secret<String>, CertsError> {
        let minted = mint_token(ca_fingerprint, ttl)?;
        let now_s = unix_secs(now);
        let expires = now_s.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.db("store an enrollment token"))?;
        tx.execute(
            "INSERT INTO enrollment_tokens (secret_sha256, purpose, ca_prefix, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                minted.secret_sha256.as_slice(),
                purpose.as_str(),
                minted.ca_prefix,
                now_s,
                expires
            ],
        )
        .map_err(self.db("store an enrollment token"))?;
        tx.execute(
            "DELETE FROM enrollment_tokens WHERE expires_at < ?1",
            params![now_s.saturating_sub(TOKEN_RETENTION_SECS)],
        )
        .map_err(self.db("delete long-expired tokens"))?;
        tx.commit().map_err(self.db("store an enrollment token"))?;
        Ok(minted.token)
    }

    /// See [`Agents::consume_token`] (single-use across processes too: the check and the
    /// use are one IMMEDIATE transaction).
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
             cert_not_after, hpke_public_key, first_seen, last_seen, role) \
             VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6, ?7, ?7, ?8)",
            params![
                reg.agent_id.as_str(),
                reg.host_name,
                status.as_str(),
                reg.cert_fingerprint,
                not_after,
                reg.hpke_public_key.as_slice(),
                now_s,
                reg.role.as_str()
            ],
        )
        .map_err(self.db("register an agent"))?;
        bump_generation(&tx).map_err(self.db("register an agent"))?;
        tx.commit().map_err(self.db("register an agent"))?;
        Ok(AgentRecord {
            id: reg.agent_id,
            host_name: reg.host_name,
            role: reg.role,
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
    /// see [`SqliteAgents::generation`]). Revoking a revoked agent does nothing.
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
        let role = HostRole::parse(&r.role)
            .ok_or_else(|| self.corrupt(format!("agent {id} has role {:?}", r.role)))?;
        let hpke_public_key: [u8; 32] = r
            .hpke
            .as_slice()
            .try_into()
            .map_err(|_| self.corrupt(format!("agent {id} has a malformed HPKE key")))?;
        Ok(AgentRecord {
            id,
            host_name: r.host_name,
            role,
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

/// Each call runs the inherent (blocking) method on tokio's blocking pool.
#[async_trait]
impl Agents for SqliteAgents {
    async fn create_token(
        &self,
        purpose: TokenPurpose,
        ca_fingerprint: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Secret<String>, CertsError> {
        let (me, fp) = (self.clone(), ca_fingerprint.to_owned());
        blocking(move || me.create_token(purpose, &fp, ttl, now)).await
    }

    async fn consume_token(
        &self,
        token: &str,
        purpose: TokenPurpose,
        now: SystemTime,
    ) -> Result<(), CertsError> {
        let (me, token) = (self.clone(), Secret::new(token.to_owned()));
        blocking(move || me.consume_token(token.expose_secret(), purpose, now)).await
    }

    async fn register_agent(
        &self,
        reg: AgentRegistration,
        require_approval: bool,
        now: SystemTime,
    ) -> Result<AgentRecord, CertsError> {
        let me = self.clone();
        blocking(move || me.register_agent(reg, require_approval, now)).await
    }

    async fn list_agents(&self) -> Result<Vec<AgentRecord>, CertsError> {
        let me = self.clone();
        blocking(move || me.list_agents()).await
    }

    async fn agent(&self, agent_id: &AgentId) -> Result<Option<AgentRecord>, CertsError> {
        let (me, id) = (self.clone(), agent_id.clone());
        blocking(move || me.agent(&id)).await
    }

    async fn lookup_by_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Option<AgentRecord>, CertsError> {
        let (me, fp) = (self.clone(), fingerprint.to_owned());
        blocking(move || me.lookup_by_fingerprint(&fp)).await
    }

    async fn approve(&self, agent_id: &AgentId) -> Result<(), CertsError> {
        let (me, id) = (self.clone(), agent_id.clone());
        blocking(move || me.approve(&id)).await
    }

    async fn revoke(&self, agent_id: &AgentId) -> Result<(), CertsError> {
        let (me, id) = (self.clone(), agent_id.clone());
        blocking(move || me.revoke(&id)).await
    }

    async fn touch(&self, agent_id: &AgentId, now: SystemTime) -> Result<(), CertsError> {
        let (me, id) = (self.clone(), agent_id.clone());
        blocking(move || me.touch(&id, now)).await
    }

    async fn record_renewal(
        &self,
        agent_id: &AgentId,
        new_fingerprint: &str,
        new_not_after: SystemTime,
    ) -> Result<(), CertsError> {
        let (me, id, fp) = (self.clone(), agent_id.clone(), new_fingerprint.to_owned());
        blocking(move || me.record_renewal(&id, &fp, new_not_after)).await
    }

    async fn generation(&self) -> Result<u64, CertsError> {
        let me = self.clone();
        blocking(move || me.generation()).await
    }

    async fn revoked_ids(&self) -> Result<Vec<AgentId>, CertsError> {
        let me = self.clone();
        blocking(move || me.revoked_ids()).await
    }
}

#[cfg(test)]
mod tests;
