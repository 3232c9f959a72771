//! What the connector space keeps beside the objects: the runs the deletion threshold
//! stopped and their approvals, the `uSNChanged` mark of the DC last read, the attribute
//! set the copy was imported with, the domain's password policy — and the two ways a
//! full import or a sweep changes held objects without a DirSync entry (moves, and what a
//! full import no longer finds).

use std::collections::BTreeSet;

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{db, ConnectorSpace, SpaceError};
use crate::ad::entry::Guid;

impl ConnectorSpace {
    /// Remembers that run `run` of `connector` was stopped by the deletion threshold
    /// before deleting `anchors`.
    pub fn hold_for_approval(
        &self,
        connector: &str,
        run: u64,
        anchors: &BTreeSet<Guid>,
    ) -> Result<(), SpaceError> {
        let list: Vec<String> = anchors.iter().map(Guid::to_string).collect();
        self.conn()
            .execute(
                "INSERT INTO approvals (run, connector, anchors) VALUES (?1, ?2, ?3)
                 ON CONFLICT (run) DO UPDATE SET anchors = ?3",
                params![
                    i64::try_from(run).unwrap_or(i64::MAX),
                    connector,
                    serde_json::to_string(&list).unwrap_or_default()
                ],
            )
            .map_err(db("record the stopped run"))?;
        Ok(())
    }

    /// Approves stopped run `run`: returns its connector and how many deletions it held,
    /// or `None` when no stopped run has that number here.
    pub fn approve(&self, run: u64) -> Result<Option<(String, usize)>, SpaceError> {
        let conn = self.conn();
        let row: Option<(String, String)> = conn
            .query_row(
                "SELECT connector, anchors FROM approvals WHERE run = ?1",
                [i64::try_from(run).unwrap_or(i64::MAX)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db("find the stopped run"))?;
        let Some((connector, anchors)) = row else {
            return Ok(None);
        };
        conn.execute(
            "UPDATE approvals SET approved = 1 WHERE run = ?1",
            [i64::try_from(run).unwrap_or(i64::MAX)],
        )
        .map_err(db("approve the run"))?;
        let n = serde_json::from_str::<Vec<String>>(&anchors).map_or(0, |v| v.len());
        Ok(Some((connector, n)))
    }

    /// The deletions approved for `connector` (from every approved stopped run).
    pub fn approved_deletions(&self, connector: &str) -> Result<BTreeSet<Guid>, SpaceError> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT anchors FROM approvals WHERE connector = ?1 AND approved = 1")
            .map_err(db("read the approvals"))?;
        let rows = st
            .query_map([connector], |r| r.get::<_, String>(0))
            .map_err(db("read the approvals"))?;
        let mut out = BTreeSet::new();
        for row in rows {
            let list: Vec<String> =
                serde_json::from_str(&row.map_err(db("read the approvals"))?).unwrap_or_default();
            out.extend(list.iter().filter_map(|g| Guid::parse(g).ok()));
        }
        Ok(out)
    }

    /// Forgets `connector`'s stopped runs once a run has exported (approved or not, they
    /// are settled: a new stop needs a new approval).
    pub fn clear_approvals(&self, connector: &str) -> Result<(), SpaceError> {
        self.conn()
            .execute("DELETE FROM approvals WHERE connector = ?1", [connector])
            .map_err(db("clear the approvals"))?;
        Ok(())
    }

    /// The connector's uSNChanged mark: the DC and its USN when the last delta started.
    pub fn usn_mark(&self, connector: &str) -> Result<Option<(String, u64)>, SpaceError> {
        self.conn()
            .query_row(
                "SELECT dc, usn FROM usn_marks WHERE connector = ?1",
                [connector],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()
            .map(|o| o.map(|(dc, usn)| (dc, u64::try_from(usn).unwrap_or(0))))
            .map_err(db("read the uSNChanged mark"))
    }

    /// Records the connector's uSNChanged mark.
    pub fn set_usn_mark(&self, connector: &str, dc: &str, usn: u64) -> Result<(), SpaceError> {
        self.conn()
            .execute(
                "INSERT INTO usn_marks (connector, dc, usn) VALUES (?1, ?2, ?3)
                 ON CONFLICT (connector) DO UPDATE SET dc = ?2, usn = ?3",
                params![connector, dc, i64::try_from(usn).unwrap_or(i64::MAX)],
            )
            .map_err(db("write the uSNChanged mark"))?;
        Ok(())
    }

    /// Gives held objects the DNs a uSNChanged sweep found, in one transaction; returns
    /// how many moved (an object not held, or held under the same DN, is left alone).
    pub fn move_objects(
        &self,
        connector: &str,
        seen: &[(Guid, String)],
    ) -> Result<u64, SpaceError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("start a transaction"))?;
        let mut moved = 0;
        for (guid, dn) in seen {
            moved += tx
                .execute(
                    "UPDATE objects SET dn = ?3 WHERE connector = ?1 AND guid = ?2 AND deleted = 0 AND dn != ?3 COLLATE NOCASE",
                    params![connector, &guid.as_bytes()[..], dn],
                )
                .map_err(db("record a move"))? as u64;
        }
        tx.commit().map_err(db("commit the moves"))?;
        Ok(moved)
    }

    /// Whether the connector's copy was imported with at least `attrs` (compared
    /// case-insensitively). A copy made with fewer (the mapping or the filter changed
    /// since) lacks values the plan would read: the caller imports everything again.
    pub fn holds_attributes(&self, connector: &str, attrs: &[String]) -> Result<bool, SpaceError> {
        let stored: Option<String> = self
            .conn()
            .query_row(
                "SELECT attributes FROM attribute_sets WHERE connector = ?1",
                [connector],
                |r| r.get(0),
            )
            .optional()
            .map_err(db("read the attribute set"))?;
        let Some(stored) = stored else {
            // A copy from before attribute sets were kept, or none: only an empty copy
            // is known to be complete.
            return self.is_empty(connector);
        };
        let held: BTreeSet<String> = stored.split('\n').map(str::to_ascii_lowercase).collect();
        Ok(attrs.iter().all(|a| held.contains(&a.to_ascii_lowercase())))
    }

    /// Records the attribute set the connector's copy is imported with.
    pub fn set_attributes(&self, connector: &str, attrs: &[String]) -> Result<(), SpaceError> {
        self.conn()
            .execute(
                "INSERT INTO attribute_sets (connector, attributes) VALUES (?1, ?2)
                 ON CONFLICT (connector) DO UPDATE SET attributes = ?2",
                params![connector, attrs.join("\n")],
            )
            .map_err(db("write the attribute set"))?;
        Ok(())
    }

    /// Forgets the connector's watermark, so that its next import is a full one (its
    /// objects stay, and are merged over).
    pub fn reset_cookie(&self, connector: &str) -> Result<(), SpaceError> {
        self.conn()
            .execute("DELETE FROM watermarks WHERE connector = ?1", [connector])
            .map_err(db("reset the watermark"))?;
        Ok(())
    }

    /// Marks held objects deleted (a full import did not find them any more); returns how
    /// many were live.
    pub fn mark_deleted(&self, connector: &str, guids: &[Guid]) -> Result<u64, SpaceError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("start a transaction"))?;
        let mut n = 0;
        for g in guids {
            n += tx
                .execute(
                    "UPDATE objects SET deleted = 1 WHERE connector = ?1 AND guid = ?2 AND deleted = 0",
                    params![connector, &g.as_bytes()[..]],
                )
                .map_err(db("mark an object deleted"))? as u64;
        }
        tx.commit().map_err(db("commit the deletions"))?;
        Ok(n)
    }

    /// The connector's domain's maximum password age in seconds (`None`: never, or not
    /// read yet).
    pub fn max_password_age(&self, connector: &str) -> Result<Option<i64>, SpaceError> {
        self.conn()
            .query_row(
                "SELECT max_age FROM password_policy WHERE connector = ?1",
                [connector],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(db("read the password policy"))
    }

    /// Records the connector's domain's maximum password age.
    pub fn set_max_password_age(
        &self,
        connector: &str,
        secs: Option<i64>,
    ) -> Result<(), SpaceError> {
        self.conn()
            .execute(
                "INSERT INTO password_policy (connector, max_age) VALUES (?1, ?2)
                 ON CONFLICT (connector) DO UPDATE SET max_age = ?2",
                params![connector, secs],
            )
            .map_err(db("write the password policy"))?;
        Ok(())
    }
}
