//! [`crate::Synced`] on the directory's SQLite file, blocking: the schema, the
//! per-connector lease, runs, the reads (objects, counts, a user's groups) and
//! [`crate::Users::set_protected`]. Applying a batch is `synced/apply.rs`.

mod apply;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use causeway_proto::sync::MAX_ERRORS;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{row_to_user, secs, time, Change, Db, COLUMNS};
use crate::directory::{StoreError, UserRecord};
use crate::synced::{
    Counts, LeaseState, MatchPolicy, Object, ObjectError, ObjectKind, RunKind, RunRecord,
    RunReport, RunStatus, SyncedRecord,
};

/// Version 3: what `causeway sync` exports. `synced` holds every object by anchor (users
/// are also rows of `users`, with id = anchor, so history and sign-in see them);
/// `memberships` is derived from each group's `members` on every upsert, indexed both
/// ways for the `groups` claim; `runs` records each run with its counts; `leases` lets
/// one sync host per connector export. Lease expiry is in milliseconds (a lease lasts
/// seconds); every other time is in seconds, as in `users`.
pub(super) const SCHEMA_V3: &str = "
CREATE TABLE synced (
    anchor     TEXT PRIMARY KEY,
    connector  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    dn         TEXT NOT NULL,
    attrs      TEXT NOT NULL,
    deleted_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX synced_live_kind ON synced(kind) WHERE deleted_at IS NULL;
CREATE TABLE memberships (
    group_anchor  TEXT NOT NULL,
    member_anchor TEXT NOT NULL,
    PRIMARY KEY (group_anchor, member_anchor)
) WITHOUT ROWID;
CREATE INDEX memberships_member ON memberships(member_anchor, group_anchor);
CREATE TABLE runs (
    run         INTEGER PRIMARY KEY AUTOINCREMENT,
    connector   TEXT NOT NULL,
    host        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    soft_match  INTEGER NOT NULL DEFAULT 0,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    added       INTEGER NOT NULL DEFAULT 0,
    updated     INTEGER NOT NULL DEFAULT 0,
    deleted     INTEGER NOT NULL DEFAULT 0,
    unchanged   INTEGER NOT NULL DEFAULT 0,
    quarantined INTEGER NOT NULL DEFAULT 0,
    errors      INTEGER NOT NULL DEFAULT 0,
    error_list  TEXT NOT NULL DEFAULT '[]',
    detail      TEXT
);
CREATE INDEX runs_connector ON runs(connector, run);
CREATE TABLE leases (
    connector  TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
-- A cloud-only account an administrator marked so that soft match never takes it over.
ALTER TABLE users ADD COLUMN protected INTEGER NOT NULL DEFAULT 0;
-- The connector a synchronised user came from (NULL for cloud-only users).
ALTER TABLE users ADD COLUMN connector TEXT;
";

/// Most groups [`Db::groups_of`] returns: the claim must stay bounded even for a
/// directory whose nesting is pathological.
pub(crate) const MAX_GROUPS: usize = 1_000;

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn sql_count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A connector name or sync host id: 1 to 256 bytes, no control characters.
fn check_name(field: &'static str, s: &str) -> Result<(), StoreError> {
    if s.is_empty() || s.len() > 256 || s.chars().any(char::is_control) {
        Err(StoreError::InvalidAttribute { field })
    } else {
        Ok(())
    }
}

fn run_kind(s: &str) -> RunKind {
    match s {
        "delta" => RunKind::Delta,
        "object" => RunKind::Object,
        _ => RunKind::Full,
    }
}

fn run_status(s: &str) -> RunStatus {
    match s {
        "running" => RunStatus::Running,
        "succeeded" => RunStatus::Succeeded,
        "stopped" => RunStatus::Stopped,
        _ => RunStatus::Failed,
    }
}

/// A run's row as read: the record and its connector's match policy.
pub(super) struct RunRow {
    record: RunRecord,
    policy: MatchPolicy,
}

const RUN_COLUMNS: &str = "run, connector, host, kind, status, started_at, finished_at, added, updated, deleted, unchanged, quarantined, errors, error_list, detail, soft_match";

fn row_to_run(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    let list: String = r.get(13)?;
    Ok(RunRow {
        record: RunRecord {
            run: count(r.get(0)?),
            connector: r.get(1)?,
            host: r.get(2)?,
            kind: run_kind(&r.get::<_, String>(3)?),
            status: run_status(&r.get::<_, String>(4)?),
            started_at: count(r.get(5)?),
            finished_at: r.get::<_, Option<i64>>(6)?.map(count),
            counts: Counts {
                added: count(r.get(7)?),
                updated: count(r.get(8)?),
                deleted: count(r.get(9)?),
                unchanged: count(r.get(10)?),
                quarantined: count(r.get(11)?),
                errors: count(r.get(12)?),
            },
            // Written only by this file from a Vec<ObjectError>; unreadable means empty
            // rather than a run list that cannot be shown at all.
            errors: serde_json::from_str(&list).unwrap_or_default(),
            detail: r.get(14)?,
        },
        policy: MatchPolicy {
            soft_match: r.get::<_, i64>(15)? != 0,
        },
    })
}

/// A group's name for the `groups` claim: `name`, else `display_name`, else the first
/// RDN value of its DN, else its anchor.
fn group_name(anchor: &str, dn: &str, attrs: &BTreeMap<String, Vec<String>>) -> String {
    let first = |k: &str| {
        attrs
            .get(k)
            .and_then(|v| v.first())
            .filter(|v| !v.is_empty())
    };
    first("name")
        .or_else(|| first("display_name"))
        .cloned()
        .or_else(|| first_rdn_value(dn))
        .unwrap_or_else(|| anchor.to_owned())
}

/// `Staff` of `CN=Staff,OU=Groups,DC=corp`, with backslash escapes undone (`\,` → `,`).
fn first_rdn_value(dn: &str) -> Option<String> {
    let (_, rest) = dn.split_once('=')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            ',' | '+' => break,
            c => out.push(c),
        }
    }
    let t = out.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

impl Db {
    pub(super) fn begin<'c>(
        &self,
        conn: &'c mut Connection,
    ) -> Result<rusqlite::Transaction<'c>, StoreError> {
        conn.transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err("begin a change"))
    }

    fn read_lease(
        &self,
        conn: &Connection,
        connector: &str,
    ) -> Result<Option<(String, i64)>, StoreError> {
        conn.query_row(
            "SELECT holder, expires_at FROM leases WHERE connector = ?1",
            [connector],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(self.err("read the lease"))
    }

    /// Refuses unless `holder` holds `connector`'s lease, unexpired at `now`.
    pub(super) fn require_lease(
        &self,
        conn: &Connection,
        connector: &str,
        holder: &str,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let refuse = |why: String| Err(StoreError::WrongState(why));
        match self.read_lease(conn, connector)? {
            None => refuse(format!(
                "nobody holds the lease on connector {connector}: sync host {holder} must take it first"
            )),
            Some((h, exp)) if h == holder && exp > millis(now) => Ok(()),
            Some((h, _)) if h == holder => refuse(format!(
                "the lease of sync host {holder} on connector {connector} has lapsed: it must renew it first"
            )),
            Some((h, exp)) if exp > millis(now) => refuse(format!(
                "the lease on connector {connector} is held by sync host {h}, not {holder}"
            )),
            Some((h, _)) => refuse(format!(
                "the lease on connector {connector} (last held by sync host {h}) has lapsed: sync host {holder} must take it first"
            )),
        }
    }

    pub(crate) fn lease(
        &self,
        connector: &str,
        holder: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<LeaseState, StoreError> {
        check_name("connector", connector)?;
        check_name("sync host id", holder)?;
        let mut conn = self.lock();
        let tx = self.begin(&mut conn)?;
        if let Some((h, exp)) = self.read_lease(&tx, connector)? {
            if h != holder && exp > millis(now) {
                return Ok(LeaseState {
                    granted: false,
                    holder: Some(h),
                    expires_at: Some(from_millis(exp)),
                });
            }
        }
        let exp = millis(now.checked_add(ttl).unwrap_or(now));
        tx.execute(
            "INSERT INTO leases (connector, holder, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(connector) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at",
            params![connector, holder, exp],
        )
        .map_err(self.err("write the lease"))?;
        tx.commit().map_err(self.err("commit"))?;
        Ok(LeaseState {
            granted: true,
            holder: Some(holder.to_owned()),
            expires_at: Some(from_millis(exp)),
        })
    }

    pub(crate) fn release(
        &self,
        connector: &str,
        holder: &str,
        now: SystemTime,
    ) -> Result<LeaseState, StoreError> {
        let mut conn = self.lock();
        let tx = self.begin(&mut conn)?;
        let state = match self.read_lease(&tx, connector)? {
            Some((h, _)) if h == holder => {
                tx.execute("DELETE FROM leases WHERE connector = ?1", [connector])
                    .map_err(self.err("release the lease"))?;
                None
            }
            Some((h, exp)) if exp > millis(now) => Some((h, exp)),
            _ => None,
        };
        tx.commit().map_err(self.err("commit"))?;
        Ok(LeaseState {
            granted: false,
            expires_at: state.as_ref().map(|(_, exp)| from_millis(*exp)),
            holder: state.map(|(h, _)| h),
        })
    }

    pub(crate) fn start_run(
        &self,
        connector: &str,
        holder: &str,
        kind: RunKind,
        policy: MatchPolicy,
        now: SystemTime,
    ) -> Result<u64, StoreError> {
        let mut conn = self.lock();
        let tx = self.begin(&mut conn)?;
        self.require_lease(&tx, connector, holder, now)?;
        tx.execute(
            "INSERT INTO runs (connector, host, kind, status, soft_match, started_at)
             VALUES (?1, ?2, ?3, 'running', ?4, ?5)",
            params![
                connector,
                holder,
                kind.as_str(),
                i64::from(policy.soft_match),
                secs(now)
            ],
        )
        .map_err(self.err("record the run"))?;
        let run = count(tx.last_insert_rowid());
        tx.commit().map_err(self.err("commit"))?;
        Ok(run)
    }

    pub(super) fn read_run(&self, conn: &Connection, run: u64) -> Result<RunRow, StoreError> {
        conn.query_row(
            &format!("SELECT {RUN_COLUMNS} FROM runs WHERE run = ?1"),
            [sql_count(run)],
            row_to_run,
        )
        .optional()
        .map_err(self.err("read the run"))?
        .ok_or_else(|| StoreError::WrongState(format!("there is no run {run}")))
    }

    /// Adds `counts` to run `run`'s and appends `errors` to its list (those not in it
    /// already, so a resent batch or a report that repeats the endpoint's answers adds
    /// nothing twice; at most [`MAX_ERRORS`], the rest only counted).
    pub(super) fn add_to_run(
        &self,
        conn: &Connection,
        run: u64,
        counts: &Counts,
        errors: &[ObjectError],
    ) -> Result<(), StoreError> {
        conn.execute(
            "UPDATE runs SET added = added + ?2, updated = updated + ?3, deleted = deleted + ?4,
             unchanged = unchanged + ?5, quarantined = quarantined + ?6, errors = errors + ?7
             WHERE run = ?1",
            params![
                sql_count(run),
                sql_count(counts.added),
                sql_count(counts.updated),
                sql_count(counts.deleted),
                sql_count(counts.unchanged),
                sql_count(counts.quarantined),
                sql_count(counts.errors)
            ],
        )
        .map_err(self.err("count the run"))?;
        if errors.is_empty() {
            return Ok(());
        }
        let mut list = self.read_run(conn, run)?.record.errors;
        let key = |e: &ObjectError| (e.anchor.clone(), e.dn.clone(), e.error.clone());
        let mut seen: HashSet<_> = list.iter().map(key).collect();
        for e in errors {
            if list.len() >= MAX_ERRORS {
                break;
            }
            if seen.insert(key(e)) {
                list.push(e.clone());
            }
        }
        let text = serde_json::to_string(&list).unwrap_or_else(|_| "[]".into());
        conn.execute(
            "UPDATE runs SET error_list = ?2 WHERE run = ?1",
            params![sql_count(run), text],
        )
        .map_err(self.err("record the run's errors"))?;
        Ok(())
    }

    /// Ends run `run`. Of the report's counts only `quarantined` and `errors` are added:
    /// they are the host's own (the planner's quarantines, objects it could not read).
    /// `added`, `updated`, `deleted` and `unchanged` stay those of the batches this store
    /// applied, which it has counted already and which are what happened here (a host
    /// that resent a batch after a lost answer would count it twice).
    pub(crate) fn finish_run(
        &self,
        run: u64,
        holder: &str,
        report: &RunReport,
        now: SystemTime,
    ) -> Result<RunRecord, StoreError> {
        let mut conn = self.lock();
        let tx = self.begin(&mut conn)?;
        let row = self.read_run(&tx, run)?.record;
        if row.host != holder {
            return Err(StoreError::WrongState(format!(
                "run {run} belongs to sync host {}; sync host {holder} cannot finish it",
                row.host
            )));
        }
        if row.status != RunStatus::Running {
            return Err(StoreError::WrongState(format!(
                "run {run} has already finished ({})",
                row.status.as_str()
            )));
        }
        if report.status == RunStatus::Running {
            return Err(StoreError::WrongState(format!(
                "run {run} cannot finish with status running"
            )));
        }
        let detail: Option<String> = report
            .detail
            .as_ref()
            .map(|d| d.chars().take(causeway_proto::sync::MAX_TEXT).collect());
        tx.execute(
            "UPDATE runs SET status = ?2, finished_at = ?3, detail = ?4 WHERE run = ?1",
            params![sql_count(run), report.status.as_str(), secs(now), detail],
        )
        .map_err(self.err("finish the run"))?;
        let own = Counts {
            quarantined: report.counts.quarantined,
            errors: report.counts.errors,
            ..Counts::default()
        };
        self.add_to_run(&tx, run, &own, &report.errors)?;
        let record = self.read_run(&tx, run)?.record;
        tx.commit().map_err(self.err("commit"))?;
        Ok(record)
    }

    pub(crate) fn runs(
        &self,
        connector: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE ?1 IS NULL OR connector = ?1 ORDER BY run DESC LIMIT ?2"
            ))
            .map_err(self.err("list runs"))?;
        let rows = stmt
            .query_map(
                params![connector, i64::try_from(limit).unwrap_or(i64::MAX)],
                row_to_run,
            )
            .map_err(self.err("list runs"))?;
        rows.map(|r| r.map(|r| r.record))
            .collect::<Result<_, _>>()
            .map_err(self.err("list runs"))
    }

    pub(crate) fn synced_object(&self, anchor: &str) -> Result<Option<SyncedRecord>, StoreError> {
        let row = self
            .lock()
            .query_row(
                "SELECT kind, dn, attrs, connector, deleted_at, created_at, updated_at
                 FROM synced WHERE anchor = ?1",
                [anchor],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                },
            )
            .optional()
            .map_err(self.err("read the object"))?;
        let Some((kind, dn, attrs, connector, deleted_at, created_at, updated_at)) = row else {
            return Ok(None);
        };
        let corrupt = |what: &str| StoreError::Database {
            path: self.path.display().to_string(),
            action: "read the object",
            detail: format!("stored {what} of {anchor} is corrupt"),
        };
        Ok(Some(SyncedRecord {
            object: Object {
                anchor: anchor.to_owned(),
                kind: ObjectKind::parse(&kind).ok_or_else(|| corrupt("kind"))?,
                dn,
                attrs: serde_json::from_str(&attrs).map_err(|_| corrupt("attributes"))?,
            },
            connector,
            deleted_at: deleted_at.map(time),
            created_at: time(created_at),
            updated_at: time(updated_at),
        }))
    }

    pub(crate) fn synced_counts(&self) -> Result<Vec<(ObjectKind, u64)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT kind, COUNT(*) FROM synced WHERE deleted_at IS NULL GROUP BY kind")
            .map_err(self.err("count objects"))?;
        let found: BTreeMap<String, i64> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.err("count objects"))?
            .collect::<Result<_, _>>()
            .map_err(self.err("count objects"))?;
        // Every kind, zeros too, so a metric never disappears.
        Ok([
            ObjectKind::User,
            ObjectKind::Group,
            ObjectKind::Contact,
            ObjectKind::Device,
            ObjectKind::Ou,
        ]
        .into_iter()
        .map(|k| (k, found.get(k.as_str()).copied().map_or(0, count)))
        .collect())
    }

    /// Walks the membership edges upwards from `anchor`, breadth first, each group once
    /// (so a cycle ends), through live groups only, and stops at [`MAX_GROUPS`].
    pub(crate) fn groups_of(&self, anchor: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT s.anchor, s.dn, s.attrs FROM memberships m JOIN synced s ON s.anchor = m.group_anchor
                 WHERE m.member_anchor = ?1 AND s.kind = 'group' AND s.deleted_at IS NULL",
            )
            .map_err(self.err("read memberships"))?;
        let mut visited = HashSet::from([anchor.to_owned()]);
        let mut frontier = std::collections::VecDeque::from([anchor.to_owned()]);
        let mut names = BTreeSet::new();
        let mut groups = 0usize;
        'walk: while let Some(member) = frontier.pop_front() {
            let rows = stmt
                .query_map([&member], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .map_err(self.err("read memberships"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(self.err("read memberships"))?;
            for (group, dn, attrs) in rows {
                if !visited.insert(group.clone()) {
                    continue;
                }
                if groups == MAX_GROUPS {
                    tracing::warn!(
                        anchor,
                        limit = MAX_GROUPS,
                        "user is in more groups than the groups claim carries; the rest are left out"
                    );
                    break 'walk;
                }
                groups += 1;
                let attrs = serde_json::from_str(&attrs).unwrap_or_default();
                names.insert(group_name(&group, &dn, &attrs));
                frontier.push_back(group);
            }
        }
        Ok(names.into_iter().collect())
    }

    pub(crate) fn set_protected(
        &self,
        upn: &str,
        protected: bool,
        actor: &str,
        now: SystemTime,
    ) -> Result<UserRecord, StoreError> {
        let mut conn = self.lock();
        let tx = self.begin(&mut conn)?;
        let user = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM users WHERE upn = ?1 AND deleted_at IS NULL"),
                [upn],
                row_to_user,
            )
            .optional()
            .map_err(self.err("find the user"))?
            .ok_or_else(|| StoreError::NotFound(upn.chars().take(300).collect()))?;
        if user.source != crate::Source::Cloud {
            return Err(StoreError::WrongState(format!(
                "{} is synchronised from AD; only a cloud-only user can be protected from soft match",
                user.upn
            )));
        }
        tx.execute(
            "UPDATE users SET protected = ?2, updated_at = ?3 WHERE id = ?1",
            params![user.id.as_str(), i64::from(protected), secs(now)],
        )
        .map_err(self.err("update the user"))?;
        let action = if protected { "protect" } else { "unprotect" };
        let what = Change {
            action,
            actor,
            now,
            verifier_changed: false,
        };
        let after = self.read_back_and_record(&tx, &user.id, &what)?;
        tx.commit().map_err(self.err("commit"))?;
        Ok(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_fall_back_to_the_first_rdn() {
        let none = BTreeMap::new();
        assert_eq!(
            group_name("a", "CN=Sales\\, EMEA,OU=Groups,DC=corp", &none),
            "Sales, EMEA"
        );
        let dn_only = BTreeMap::from([("display_name".to_owned(), vec!["Shown".to_owned()])]);
        assert_eq!(group_name("a", "CN=x,DC=corp", &dn_only), "Shown");
        let both = BTreeMap::from([
            ("name".to_owned(), vec!["Named".to_owned()]),
            ("display_name".to_owned(), vec!["Shown".to_owned()]),
        ]);
        assert_eq!(group_name("a", "CN=x,DC=corp", &both), "Named");
        assert_eq!(group_name("anchor", "", &none), "anchor");
    }
}
