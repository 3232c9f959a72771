//! The connector space: the sync host's own copy of every object each connector imported,
//! with its whole current attribute set, and the DirSync cookie that copy is current to.
//!
//! A DirSync delta carries only what changed (and linked attributes as values added and
//! removed), so mapping, scoping and filtering need the object as it stands: it is merged
//! here. Each page of a pass is merged *with its cookie* in one transaction, so a crash at
//! any moment leaves a copy and a cookie that agree, and the next pass resumes from there
//! with nothing lost or applied twice. What the endpoint has acknowledged is tracked
//! separately (export, in the sync issue): importing never waits for the endpoint.
//!
//! The file is opened with the store's one SQLite opener (private, WAL, migrations).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::Mutex;

use base64::Engine;
use causeway_store::sqlite_file::{open, Migration, OpenError, Schema};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::ad::dirsync::Cookie;
use crate::ad::entry::{Entry, Guid, Values};

const SCHEMA: Schema = Schema {
    migrations: &[
        Migration {
            action: "create the connector space",
            sql: "CREATE TABLE objects (
                connector TEXT NOT NULL,
                guid BLOB NOT NULL,
                dn TEXT NOT NULL,
                deleted INTEGER NOT NULL,
                attrs TEXT NOT NULL,
                PRIMARY KEY (connector, guid)
              ) WITHOUT ROWID;
              CREATE TABLE watermarks (
                connector TEXT PRIMARY KEY,
                cookie BLOB NOT NULL
              );",
        },
        Migration {
            action: "add the exported state",
            sql: "CREATE TABLE exported (
                connector TEXT NOT NULL,
                anchor BLOB NOT NULL,
                body TEXT NOT NULL,
                PRIMARY KEY (connector, anchor)
              ) WITHOUT ROWID;",
        },
        Migration {
            action: "add the deletion approvals",
            // A run the deletion threshold stopped, with the anchors it would have deleted;
            // `causeway sync approve RUN` sets `approved`, and the next run may then delete
            // those objects (and no others beyond the threshold).
            sql: "CREATE TABLE approvals (
                run INTEGER PRIMARY KEY,
                connector TEXT NOT NULL,
                anchors TEXT NOT NULL,
                approved INTEGER NOT NULL DEFAULT 0
              );",
        },
        Migration {
            action: "add the uSNChanged marks and the imported attribute sets",
            // Per connector: the DC (its dnsHostName) and the highestCommittedUSN it had
            // when the last delta started; the next sweep reads what changed since.
            sql: "CREATE TABLE usn_marks (
                connector TEXT PRIMARY KEY,
                dc TEXT NOT NULL,
                usn INTEGER NOT NULL
              );
              CREATE TABLE attribute_sets (
                connector TEXT PRIMARY KEY,
                attributes TEXT NOT NULL
              );",
        },
        Migration {
            action: "index the objects by DN",
            // The streaming planner resolves plain-DN references (`member`, `manager`)
            // against the file instead of holding every DN in memory. `lower()` folds
            // ASCII only, as the planner's DN comparison (`to_ascii_lowercase`) does.
            sql: "CREATE INDEX objects_by_dn ON objects (connector, lower(dn));",
        },
        Migration {
            action: "add the domains' password policy",
            // AD's maxPwdAge (seconds; NULL: passwords never expire), read at each import,
            // from which the planner tells which users' passwords have expired.
            sql: "CREATE TABLE password_policy (
                connector TEXT PRIMARY KEY,
                max_age INTEGER
              );",
        },
        Migration {
            action: "add the password hash sync state",
            sql: hash::SCHEMA,
        },
    ],
};

/// Why the connector space could not be read or written. Nothing was changed by the call
/// that failed.
#[derive(Debug)]
pub struct SpaceError {
    /// What was being done.
    pub action: &'static str,
    /// What went wrong.
    pub detail: String,
}

impl fmt::Display for SpaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connector space: cannot {}: {}",
            self.action, self.detail
        )
    }
}

impl std::error::Error for SpaceError {}

fn db(action: &'static str) -> impl Fn(rusqlite::Error) -> SpaceError {
    move |e| SpaceError {
        action,
        detail: e.to_string(),
    }
}

/// One object as the connector space holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Its anchor GUID in the source.
    pub guid: Guid,
    /// Its current DN.
    pub dn: String,
    /// A tombstone in the source.
    pub deleted: bool,
    /// Its whole attribute set (lower-case names; `values` only — increments are merged).
    pub attrs: BTreeMap<String, Values>,
}

/// What merging one page did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Merged {
    /// Objects seen for the first time.
    pub added: u64,
    /// Objects already held that changed (including renames and moves).
    pub changed: u64,
    /// Objects that became tombstones.
    pub deleted: u64,
}

/// The sync host's connector space.
pub struct ConnectorSpace {
    conn: Mutex<Connection>,
}

impl fmt::Debug for ConnectorSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectorSpace").finish_non_exhaustive()
    }
}

impl ConnectorSpace {
    /// Opens (or creates, 0600) the connector space at `path`.
    pub fn open(path: &Path) -> Result<Self, SpaceError> {
        let shown = path.display().to_string();
        let (conn, _journal) = open(path, &SCHEMA).map_err(|e| SpaceError {
            action: "open the file",
            detail: match e {
                OpenError::File(step, e) => format!("{shown}: {step:?}: {e}"),
                OpenError::Insecure { mode } => format!(
                    "{shown} is readable by others (mode {:03o}); chmod 600 it",
                    mode & 0o777
                ),
                OpenError::Db { action, source } => format!("{shown}: {action}: {source}"),
                OpenError::TooNew { found, known } => {
                    format!("{shown}: schema version {found}; this build knows {known}")
                }
            },
        })?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cookie the connector's copy is current to (empty: import everything).
    pub fn cookie(&self, connector: &str) -> Result<Cookie, SpaceError> {
        let bytes: Option<Vec<u8>> = self
            .conn()
            .query_row(
                "SELECT cookie FROM watermarks WHERE connector = ?1",
                [connector],
                |r| r.get(0),
            )
            .optional()
            .map_err(db("read the watermark"))?;
        Cookie::new(bytes.unwrap_or_default()).map_err(|e| SpaceError {
            action: "read the watermark",
            detail: e.to_string(),
        })
    }

    /// Merges one page of a pass and records `cookie` as the connector's watermark, in one
    /// transaction: either both happen or neither does.
    pub fn merge_page(
        &self,
        connector: &str,
        entries: &[Entry],
        cookie: &Cookie,
    ) -> Result<Merged, SpaceError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("start a transaction"))?;
        let mut m = Merged::default();
        for e in entries {
            let old = held(&tx, connector, &e.guid)?;
            let was_deleted = old.as_ref().is_some_and(|o| o.deleted);
            let mut attrs = old.as_ref().map(|o| o.attrs.clone()).unwrap_or_default();
            merge(&mut attrs, &e.attrs);
            let new = Held {
                guid: e.guid,
                dn: e.dn.clone(),
                deleted: e.deleted,
                attrs,
            };
            match &old {
                // A tombstone of an object never held: nothing to delete downstream.
                None if e.deleted => {}
                None => m.added += 1,
                Some(o) if *o == new => {}
                Some(_) if e.deleted && !was_deleted => m.deleted += 1,
                Some(_) => m.changed += 1,
            }
            tx.execute(
                "INSERT INTO objects (connector, guid, dn, deleted, attrs) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (connector, guid) DO UPDATE SET dn = ?3, deleted = ?4, attrs = ?5",
                params![
                    connector,
                    &e.guid.as_bytes()[..],
                    new.dn,
                    new.deleted,
                    encode(&new.attrs)
                ],
            )
            .map_err(db("write an object"))?;
        }
        tx.execute(
            "INSERT INTO watermarks (connector, cookie) VALUES (?1, ?2)
             ON CONFLICT (connector) DO UPDATE SET cookie = ?2",
            params![connector, cookie.as_bytes()],
        )
        .map_err(db("write the watermark"))?;
        tx.commit().map_err(db("commit the page"))?;
        Ok(m)
    }

    /// Replaces one held object with a whole, freshly read copy (on-demand sync), leaving
    /// the watermark alone: the next delta still starts where the last pass ended.
    pub fn put_object(&self, connector: &str, e: &Entry) -> Result<(), SpaceError> {
        let attrs: BTreeMap<String, Values> = e
            .attrs
            .iter()
            .filter(|(k, v)| !v.values.is_empty() && !hash::is_secret_attribute(k))
            .map(|(k, v)| {
                (
                    k.clone(),
                    Values {
                        values: v.values.clone(),
                        ..Values::default()
                    },
                )
            })
            .collect();
        self.conn()
            .execute(
                "INSERT INTO objects (connector, guid, dn, deleted, attrs) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (connector, guid) DO UPDATE SET dn = ?3, deleted = ?4, attrs = ?5",
                params![connector, &e.guid.as_bytes()[..], e.dn, e.deleted, encode(&attrs)],
            )
            .map(|_| ())
            .map_err(db("write an object"))
    }

    /// One held object.
    pub fn object(&self, connector: &str, guid: &Guid) -> Result<Option<Held>, SpaceError> {
        held(&self.conn(), connector, guid)
    }

    /// How many objects the connector's copy holds (tombstones included).
    pub fn len(&self, connector: &str) -> Result<u64, SpaceError> {
        self.conn()
            .query_row(
                "SELECT COUNT(*) FROM objects WHERE connector = ?1",
                [connector],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(db("count the objects"))
    }

    /// Every object the connector's copy holds, tombstones included, in GUID order, as one
    /// `Vec` (the planner streams them instead: [`Self::for_each_object`], in `stream.rs`).
    pub fn objects(&self, connector: &str) -> Result<Vec<Held>, SpaceError> {
        let mut out = Vec::new();
        self.for_each_object(connector, |h| {
            out.push(h);
            Ok::<(), SpaceError>(())
        })?;
        Ok(out)
    }

    /// What was last exported for the connector, by export anchor: each object's exported
    /// form, as the planner wrote it.
    pub fn exported(&self, connector: &str) -> Result<BTreeMap<Guid, String>, SpaceError> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT anchor, body FROM exported WHERE connector = ?1")
            .map_err(db("read the exported state"))?;
        let rows = st
            .query_map([connector], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(db("read the exported state"))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (anchor, body) = row.map_err(db("read the exported state"))?;
            let anchor = Guid::from_bytes(&anchor).map_err(|detail| SpaceError {
                action: "read the exported state",
                detail,
            })?;
            out.insert(anchor, body);
        }
        Ok(out)
    }

    /// Records what the endpoint acknowledged, in one transaction: `Some(body)` is an
    /// object's exported form now, `None` a deletion.
    pub fn record_exported(
        &self,
        connector: &str,
        acknowledged: &[(Guid, Option<String>)],
    ) -> Result<(), SpaceError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("start a transaction"))?;
        for (anchor, body) in acknowledged {
            match body {
                Some(b) => tx.execute(
                    "INSERT INTO exported (connector, anchor, body) VALUES (?1, ?2, ?3)
                     ON CONFLICT (connector, anchor) DO UPDATE SET body = ?3",
                    params![connector, &anchor.as_bytes()[..], b],
                ),
                None => tx.execute(
                    "DELETE FROM exported WHERE connector = ?1 AND anchor = ?2",
                    params![connector, &anchor.as_bytes()[..]],
                ),
            }
            .map_err(db("write the exported state"))?;
        }
        tx.commit().map_err(db("commit the exported state"))
    }

    /// The connector's live objects (not tombstones), anchor to DN: what a content-sync
    /// present phase must name for them to stay.
    pub fn live(&self, connector: &str) -> Result<BTreeMap<Guid, String>, SpaceError> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT guid, dn FROM objects WHERE connector = ?1 AND deleted = 0")
            .map_err(db("list the live objects"))?;
        let rows = st
            .query_map([connector], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(db("list the live objects"))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (g, dn) = row.map_err(db("list the live objects"))?;
            let g = Guid::from_bytes(&g).map_err(|detail| SpaceError {
                action: "list the live objects",
                detail,
            })?;
            out.insert(g, dn);
        }
        Ok(out)
    }

    /// Whether the connector's copy is empty.
    pub fn is_empty(&self, connector: &str) -> Result<bool, SpaceError> {
        self.len(connector).map(|n| n == 0)
    }
}

fn held(conn: &Connection, connector: &str, guid: &Guid) -> Result<Option<Held>, SpaceError> {
    let row: Option<(String, bool, String)> = conn
        .query_row(
            "SELECT dn, deleted, attrs FROM objects WHERE connector = ?1 AND guid = ?2",
            params![connector, &guid.as_bytes()[..]],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(db("read an object"))?;
    row.map(|(dn, deleted, attrs)| {
        Ok(Held {
            guid: *guid,
            dn,
            deleted,
            attrs: decode(&attrs).map_err(|detail| SpaceError {
                action: "read an object",
                detail: format!("{guid}: {detail}"),
            })?,
        })
    })
    .transpose()
}

/// Applies a delta's attributes to the held set: an attribute sent whole replaces what was
/// held (no values: it was cleared); linked-value increments add and remove single values.
fn merge(held: &mut BTreeMap<String, Values>, delta: &BTreeMap<String, Values>) {
    for (name, d) in delta {
        // Password hashes never reach the file, whatever a search read (`*` returns
        // slapd's sambaNTPassword to an account allowed to read it).
        if hash::is_secret_attribute(name) {
            held.remove(name);
            continue;
        }
        let incremental = !d.added.is_empty() || !d.removed.is_empty();
        if !incremental {
            if d.values.is_empty() {
                held.remove(name);
            } else {
                held.insert(
                    name.clone(),
                    Values {
                        values: d.values.clone(),
                        ..Values::default()
                    },
                );
            }
            continue;
        }
        let slot = held.entry(name.clone()).or_default();
        // A linked value names its target by GUID (`<GUID=…>;<SID=…>;DN`): the DN part is
        // the target's DN when the value was sent, so a value removed after the target was
        // renamed or moved matches the held one by GUID, not byte for byte.
        let removed: BTreeSet<Vec<u8>> = d.removed.iter().map(|v| value_key(v)).collect();
        let added: BTreeSet<Vec<u8>> = d.added.iter().map(|v| value_key(v)).collect();
        slot.values
            .retain(|v| !removed.contains(&value_key(v)) && !added.contains(&value_key(v)));
        for a in &d.added {
            slot.values.push(a.clone());
        }
        if slot.values.is_empty() {
            held.remove(name);
        }
    }
}

/// What identifies a linked value: its `<GUID=…>` part when it has one (extended DN
/// form), else the whole value compared case-insensitively (a DN).
fn value_key(v: &[u8]) -> Vec<u8> {
    if v.starts_with(b"<GUID=") {
        if let Some(end) = v.iter().position(|&b| b == b'>') {
            return v[..=end].to_ascii_lowercase();
        }
    }
    v.to_ascii_lowercase()
}

fn encode(attrs: &BTreeMap<String, Values>) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let map: BTreeMap<&str, Vec<String>> = attrs
        .iter()
        .map(|(k, v)| (k.as_str(), v.values.iter().map(|x| b64.encode(x)).collect()))
        .collect();
    serde_json::to_string(&map).unwrap_or_else(|_| "{}".into())
}

fn decode(text: &str) -> Result<BTreeMap<String, Values>, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let map: BTreeMap<String, Vec<String>> =
        serde_json::from_str(text).map_err(|e| format!("stored attributes unreadable: {e}"))?;
    map.into_iter()
        .map(|(k, vs)| {
            let values = vs
                .iter()
                .map(|v| b64.decode(v).map_err(|e| format!("attribute {k}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((
                k,
                Values {
                    values,
                    ..Values::default()
                },
            ))
        })
        .collect()
}

pub mod hash;
mod marks;
mod stream;

#[cfg(test)]
mod tests;
