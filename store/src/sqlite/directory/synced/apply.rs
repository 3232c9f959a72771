//! Applying one batch of a run: one `IMMEDIATE` transaction, checked against the run and
//! its lease before anything is written, and a savepoint per object so that an object
//! that cannot be applied leaves nothing of itself behind while the rest are applied.

use std::time::SystemTime;

use causeway_proto::sync::{check_anchor, MAX_BATCH, MAX_ERRORS, MAX_TEXT};
use rusqlite::{params, Connection, OptionalExtension, Params, Row};

use super::super::{check_text, row_to_user, secs, user_json, Db, COLUMNS};
use crate::directory::{check_upn, StoreError, UserRecord};
use crate::synced::{BatchResult, Object, ObjectChange, ObjectError, ObjectKind, RunStatus};

/// Why one object was not applied: its own fault (reported, the batch goes on) or the
/// store's (the whole batch fails and nothing is applied).
enum Fail {
    Object(String),
    Store(StoreError),
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

fn object(why: impl std::fmt::Display) -> Fail {
    Fail::Object(why.to_string())
}

/// What applying one change did.
#[derive(Clone, Copy)]
enum Outcome {
    Added,
    Updated,
    Deleted,
    Unchanged,
}

/// The run a batch belongs to, once checked.
struct Run<'a> {
    connector: &'a str,
    actor: String,
    soft_match: bool,
    now: SystemTime,
}

/// An object's stored row.
struct Stored {
    connector: String,
    kind: String,
    dn: String,
    attrs: String,
    deleted: bool,
}

/// A value shortened for an error message (input is bounded, but a message need not
/// quote 4 KiB of it).
fn shown(s: &str) -> String {
    s.chars().take(120).collect()
}

fn first<'o>(o: &'o Object, name: &str) -> Option<&'o String> {
    o.attrs.get(name).and_then(|v| v.first())
}

/// The primary SMTP address: the `SMTP:` (upper case) proxy address, else `mail`.
fn primary_smtp(o: &Object) -> Option<&str> {
    o.attrs
        .get("proxy_addresses")
        .and_then(|v| v.iter().find_map(|a| a.strip_prefix("SMTP:")))
        .or_else(|| first(o, "mail").map(String::as_str))
        .filter(|m| !m.is_empty())
}

impl Db {
    pub(crate) fn apply_batch(
        &self,
        run: u64,
        holder: &str,
        changes: &[ObjectChange],
        now: SystemTime,
    ) -> Result<BatchResult, StoreError> {
        if changes.len() > MAX_BATCH {
            return Err(StoreError::WrongState(format!(
                "a batch holds {} changes (at most {MAX_BATCH}); nothing was applied",
                changes.len()
            )));
        }
        let mut conn = self.lock();
        let mut tx = self.begin(&mut conn)?;
        let super::RunRow {
            record: row,
            policy,
        } = self.read_run(&tx, run)?;
        let refuse = |why: String| {
            Err(StoreError::WrongState(format!(
                "{why}; nothing was applied"
            )))
        };
        if row.host != holder {
            return refuse(format!(
                "run {run} belongs to sync host {}, not {holder}",
                row.host
            ));
        }
        if row.status != RunStatus::Running {
            return refuse(format!("run {run} has finished ({})", row.status.as_str()));
        }
        match self.require_lease(&tx, &row.connector, holder, now) {
            Ok(()) => {}
            Err(StoreError::WrongState(why)) => return refuse(why),
            Err(e) => return Err(e),
        }
        let ctx = Run {
            connector: &row.connector,
            actor: format!("sync:{}", row.connector),
            soft_match: policy.soft_match,
            now,
        };
        let mut result = BatchResult::default();
        for change in changes {
            let sp = tx.savepoint().map_err(self.err("begin an object"))?;
            match self.apply_one(&sp, &ctx, change) {
                Ok(done) => {
                    sp.commit().map_err(self.err("apply an object"))?;
                    let c = &mut result.counts;
                    match done {
                        Outcome::Added => c.added += 1,
                        Outcome::Updated => c.updated += 1,
                        Outcome::Deleted => c.deleted += 1,
                        Outcome::Unchanged => c.unchanged += 1,
                    }
                }
                // Dropping the savepoint rolls the object's writes back.
                Err(Fail::Object(error)) => {
                    drop(sp);
                    result.counts.errors += 1;
                    if result.errors.len() < MAX_ERRORS {
                        result.errors.push(ObjectError {
                            anchor: Some(shown(change.anchor())),
                            dn: match change {
                                ObjectChange::Upsert { object } => {
                                    Some(object.dn.chars().take(MAX_TEXT).collect())
                                }
                                ObjectChange::Delete { .. } => None,
                            },
                            error,
                        });
                    }
                }
                Err(Fail::Store(e)) => return Err(e),
            }
        }
        self.add_to_run(&tx, run, &result.counts, &result.errors)?;
        tx.commit().map_err(self.err("commit"))?;
        Ok(result)
    }

    fn apply_one(
        &self,
        c: &Connection,
        run: &Run<'_>,
        change: &ObjectChange,
    ) -> Result<Outcome, Fail> {
        match change {
            ObjectChange::Upsert { object } => self.upsert(c, run, object),
            ObjectChange::Delete { anchor, kind, why } => self.delete(c, run, anchor, *kind, why),
        }
    }

    fn stored(&self, c: &Connection, anchor: &str) -> Result<Option<Stored>, StoreError> {
        row(c,
            "SELECT connector, kind, dn, attrs, deleted_at IS NOT NULL FROM synced WHERE anchor = ?1",
            [anchor],
            |r| {
                Ok(Stored {
                    connector: r.get(0)?,
                    kind: r.get(1)?,
                    dn: r.get(2)?,
                    attrs: r.get(3)?,
                    deleted: r.get(4)?,
                })
            },
        )
        .optional()
        .map_err(self.err("read the object"))
    }

    /// An anchor names one object of one kind from one connector: anything else is the
    /// sender's mistake (or another connector's object), never a takeover.
    fn claim(run: &Run<'_>, s: &Stored, anchor: &str, kind: ObjectKind) -> Result<(), Fail> {
        if s.kind != kind.as_str() {
            return Err(object(format!(
                "anchor {anchor} is a {} here, not a {kind}; the object was not applied",
                s.kind
            )));
        }
        if s.connector != run.connector {
            return Err(object(format!(
                "anchor {anchor} belongs to connector {}, not {}; the object was not applied",
                s.connector, run.connector
            )));
        }
        Ok(())
    }

    fn record(
        &self,
        c: &Connection,
        run: &Run<'_>,
        anchor: &str,
        action: &str,
        snapshot: serde_json::Value,
    ) -> Result<(), StoreError> {
        exec(c,
            "INSERT INTO history (object_id, at, actor, action, snapshot) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![anchor, secs(run.now), run.actor, action, snapshot.to_string()],
        )
        .map(drop)
        .map_err(self.err("record history"))
    }

    fn upsert(&self, c: &Connection, run: &Run<'_>, o: &Object) -> Result<Outcome, Fail> {
        o.check().map_err(object)?;
        let stored = self.stored(c, &o.anchor)?;
        if let Some(s) = &stored {
            Self::claim(run, s, &o.anchor, o.kind)?;
        }
        let attrs = serde_json::to_string(&o.attrs).map_err(|e| StoreError::Database {
            path: self.path.display().to_string(),
            action: "encode the attributes",
            detail: e.to_string(),
        })?;
        if let Some(s) = &stored {
            if !s.deleted && s.dn == o.dn && s.attrs == attrs {
                return Ok(Outcome::Unchanged);
            }
        }
        let mut action = match &stored {
            None => "create",
            Some(s) if s.deleted => "restore",
            Some(_) => "update",
        };
        let user = if o.kind == ObjectKind::User {
            let (user, soft_matched) = self.upsert_user(c, run, o)?;
            if soft_matched {
                action = "soft-match";
            }
            Some(user)
        } else {
            None
        };
        let now = secs(run.now);
        exec(
            c,
            "INSERT INTO synced (anchor, connector, kind, dn, attrs, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT(anchor) DO UPDATE SET dn = excluded.dn, attrs = excluded.attrs,
             deleted_at = NULL, updated_at = excluded.updated_at",
            params![o.anchor, run.connector, o.kind.as_str(), o.dn, attrs, now],
        )
        .map_err(self.err("write the object"))?;
        if o.kind == ObjectKind::Group {
            self.set_members(c, o)?;
        }
        let mut snap = serde_json::json!({
            "anchor": o.anchor,
            "kind": o.kind.as_str(),
            "connector": run.connector,
            "dn": o.dn,
            "attrs": o.attrs,
            "deleted": false,
        });
        if let (Some(u), Some(map)) = (&user, snap.as_object_mut()) {
            if let serde_json::Value::Object(fields) = user_json(u, false) {
                map.extend(fields);
            }
        }
        self.record(c, run, &o.anchor, action, snap)?;
        Ok(match action {
            "create" => Outcome::Added,
            _ => Outcome::Updated,
        })
    }

    /// Replaces group `o`'s membership edges with its `members` attribute (anchors).
    fn set_members(&self, c: &Connection, o: &Object) -> Result<(), Fail> {
        let members = o
            .attrs
            .get("members")
            .map(Vec::as_slice)
            .unwrap_or_default();
        if let Some(bad) = members.iter().find(|m| check_anchor(m).is_err()) {
            return Err(object(format!(
                "member {:?} of group {} is not an anchor; the group was not applied",
                shown(bad),
                o.anchor
            )));
        }
        exec(
            c,
            "DELETE FROM memberships WHERE group_anchor = ?1",
            [&o.anchor],
        )
        .map_err(self.err("write memberships"))?;
        let mut insert = c
            .prepare_cached(
                "INSERT OR IGNORE INTO memberships (group_anchor, member_anchor) VALUES (?1, ?2)",
            )
            .map_err(self.err("write memberships"))?;
        for m in members {
            insert
                .execute(params![o.anchor, m])
                .map_err(self.err("write memberships"))?;
        }
        Ok(())
    }

    /// The cloud-only user soft match would take over for new user `o`, if the run
    /// allows it: the live cloud-only user holding its UPN, else the one whose mail is
    /// its primary SMTP address. A protected or ambiguous match is `o`'s error.
    fn soft_match_target(
        &self,
        c: &Connection,
        o: &Object,
        upn: &str,
        upn_holder: Option<(String, String, bool)>,
    ) -> Result<Option<String>, Fail> {
        let protected = |id: &str, by: &str| {
            object(format!(
                "{by} of {} ({}) is cloud-only user {id}'s, which is protected from soft match; the object was not applied",
                o.anchor,
                shown(&o.dn)
            ))
        };
        if let Some((id, source, is_protected)) = upn_holder {
            return match (source.as_str(), is_protected) {
                ("cloud", false) => Ok(Some(id)),
                ("cloud", true) => Err(protected(&id, &format!("UPN {upn}"))),
                _ => Err(self.upn_clash(c, o, upn, &id)),
            };
        }
        let Some(smtp) = primary_smtp(o) else {
            return Ok(None);
        };
        let mut stmt = c
            .prepare_cached(
                "SELECT id, protected FROM users WHERE source = 'cloud' AND deleted_at IS NULL
                 AND mail = ?1 COLLATE NOCASE ORDER BY id LIMIT 2",
            )
            .map_err(self.err("look for a soft match"))?;
        let found = stmt
            .query_map([smtp], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? != 0))
            })
            .map_err(self.err("look for a soft match"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err("look for a soft match"))?;
        match found.as_slice() {
            [] => Ok(None),
            [(id, false)] => Ok(Some(id.clone())),
            [(id, true)] => Err(protected(id, &format!("mail {}", shown(smtp)))),
            [(a, _), (b, _), ..] => Err(object(format!(
                "mail {} of {} matches several cloud-only users ({a}, {b}); soft match needs exactly one, the object was not applied",
                shown(smtp),
                o.anchor
            ))),
        }
    }

    /// The error for `o` claiming the UPN live user `holder` has: it names both objects
    /// (anchor, DN and connector when the holder was synchronised; a cloud-only holder
    /// says so) and the attribute, so that the administrator can fix one of them in AD.
    fn upn_clash(&self, c: &Connection, o: &Object, upn: &str, holder: &str) -> Fail {
        let held_by: Option<(String, String)> = row(
            c,
            "SELECT dn, connector FROM synced WHERE anchor = ?1",
            [holder],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .ok()
        .flatten();
        let holder = match held_by {
            Some((dn, connector)) => format!("{holder} ({}, connector {connector})", shown(&dn)),
            None => format!("cloud-only user {holder}"),
        };
        object(format!(
            "quarantined: upn {upn:?} of {} ({}) is already held by {holder}; the object was not applied and is retried on every run until one of them changes",
            o.anchor,
            shown(&o.dn)
        ))
    }

    /// Creates, updates or reanimates the sign-in user of synchronised user `o` (id =
    /// anchor), or takes a cloud-only user over by soft match; returns it and whether it
    /// was a soft match. The verifier is never touched: password hash sync sets it.
    fn upsert_user(
        &self,
        c: &Connection,
        run: &Run<'_>,
        o: &Object,
    ) -> Result<(UserRecord, bool), Fail> {
        let upn = first(o, "upn").ok_or_else(|| {
            object(format!(
                "user {} ({}) has no upn attribute; the object was not applied",
                o.anchor,
                shown(&o.dn)
            ))
        })?;
        check_upn(upn).map_err(object)?;
        let display_name = first(o, "display_name").cloned();
        let mail = first(o, "mail").cloned();
        check_text("display name", &display_name).map_err(object)?;
        check_text("mail", &mail).map_err(object)?;
        let disabled = !matches!(
            o.attrs.get("enabled").map(Vec::as_slice),
            Some([v]) if v == "true"
        );
        let own: Option<String> = row(
            c,
            "SELECT source FROM users WHERE id = ?1",
            [&o.anchor],
            |r| r.get(0),
        )
        .optional()
        .map_err(self.err("find the user"))?;
        // Sync only ever touches what sync made (or soft match handed it): an anchor equal
        // to a cloud-only account's id must not take it over.
        if own.as_deref().is_some_and(|s| s != "ad") {
            return Err(object(format!(
                "anchor {} is the id of a cloud-only user; the object was not applied",
                o.anchor
            )));
        }
        let upn_holder: Option<(String, String, bool)> = row(c,
                "SELECT id, source, protected FROM users WHERE upn = ?1 AND deleted_at IS NULL AND id != ?2",
                params![upn, o.anchor],
                |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0)),
            )
            .optional()
            .map_err(self.err("look for duplicates"))?;
        let taken = if own.is_none() && run.soft_match {
            self.soft_match_target(c, o, upn, upn_holder)?
        } else if let Some((id, _, _)) = upn_holder {
            return Err(self.upn_clash(c, o, upn, &id));
        } else {
            None
        };
        let now = secs(run.now);
        if let Some(old) = &taken {
            // The account keeps its row, verifier and history; only its id becomes the
            // anchor (the persistent NameID a service provider sees changes with it).
            exec(
                c,
                "UPDATE users SET id = ?1 WHERE id = ?2",
                params![o.anchor, old],
            )
            .map_err(self.err("take the user over"))?;
            exec(
                c,
                "UPDATE history SET object_id = ?1 WHERE object_id = ?2",
                params![o.anchor, old],
            )
            .map_err(self.err("take the user's history over"))?;
        }
        let written = if own.is_some() || taken.is_some() {
            exec(
                c,
                "UPDATE users SET upn = ?2, display_name = ?3, mail = ?4, disabled = ?5,
                 source = 'ad', connector = ?6, deleted_at = NULL, updated_at = ?7 WHERE id = ?1",
                params![
                    o.anchor,
                    upn,
                    display_name,
                    mail,
                    i64::from(disabled),
                    run.connector,
                    now
                ],
            )
        } else {
            exec(c,
                "INSERT INTO users (id, upn, display_name, mail, source, disabled, connector, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 'ad', ?5, ?6, ?7, ?7)",
                params![o.anchor, upn, display_name, mail, i64::from(disabled), run.connector, now],
            )
        };
        written.map_err(self.err("write the user"))?;
        let user = row(
            c,
            &format!("SELECT {COLUMNS} FROM users WHERE id = ?1"),
            [&o.anchor],
            row_to_user,
        )
        .map_err(self.err("read the user back"))?;
        Ok((user, taken.is_some()))
    }

    fn delete(
        &self,
        c: &Connection,
        run: &Run<'_>,
        anchor: &str,
        kind: ObjectKind,
        why: &str,
    ) -> Result<Outcome, Fail> {
        check_anchor(anchor).map_err(object)?;
        let Some(s) = self.stored(c, anchor)? else {
            return Ok(Outcome::Unchanged);
        };
        Self::claim(run, &s, anchor, kind)?;
        if s.deleted {
            return Ok(Outcome::Unchanged);
        }
        let now = secs(run.now);
        exec(
            c,
            "UPDATE synced SET deleted_at = ?2, updated_at = ?2 WHERE anchor = ?1",
            params![anchor, now],
        )
        .map_err(self.err("delete the object"))?;
        if kind == ObjectKind::Group {
            exec(
                c,
                "DELETE FROM memberships WHERE group_anchor = ?1",
                [anchor],
            )
            .map_err(self.err("write memberships"))?;
        }
        let mut snap = serde_json::json!({
            "anchor": anchor,
            "kind": kind.as_str(),
            "connector": run.connector,
            "dn": s.dn,
            "attrs": serde_json::from_str::<serde_json::Value>(&s.attrs).unwrap_or_default(),
            "why": why.chars().take(MAX_TEXT).collect::<String>(),
        });
        if kind == ObjectKind::User {
            // The recycle bin, as `delete_user` does it: the row stays, restorable.
            exec(
                c,
                "UPDATE users SET deleted_at = ?2, updated_at = ?2
                 WHERE id = ?1 AND source = 'ad' AND deleted_at IS NULL",
                params![anchor, now],
            )
            .map_err(self.err("delete the user"))?;
            let user = row(
                c,
                &format!("SELECT {COLUMNS} FROM users WHERE id = ?1"),
                [anchor],
                row_to_user,
            )
            .optional()
            .map_err(self.err("read the user back"))?;
            if let (Some(u), Some(map)) = (user, snap.as_object_mut()) {
                if let serde_json::Value::Object(fields) = user_json(&u, false) {
                    map.extend(fields);
                }
            }
        }
        if let Some(map) = snap.as_object_mut() {
            map.insert("deleted".into(), true.into());
        }
        self.record(c, run, anchor, "delete", snap)?;
        Ok(Outcome::Deleted)
    }
}

/// `Connection::execute` through the connection's statement cache: a batch runs the same
/// few statements for each of its objects, and preparing them again for every object cost
/// more than running them.
fn exec(c: &Connection, sql: &str, p: impl Params) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(p)
}

/// `Connection::query_row` through the statement cache (see [`exec`]).
fn row<T>(
    c: &Connection,
    sql: &str,
    p: impl Params,
    f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    c.prepare_cached(sql)?.query_row(p, f)
}
