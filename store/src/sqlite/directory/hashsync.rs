//! Password hash sync on the directory's SQLite file, blocking: the columns that hold
//! each synced user's flags and last hash sync, and applying a batch of verifier changes
//! in one transaction (a failed batch leaves the file exactly as it was).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use causeway_proto::sync::hash::hash_error;
use rusqlite::{params, OptionalExtension};

use super::{row_to_user, secs, time, Change, Db, COLUMNS};
use crate::directory::StoreError;
use crate::ids::ImmutableId;
use crate::synced::{HashCounts, ObjectError, VerifierChange};

/// Version 4: what password hash sync delivers besides the verifier (which lives in
/// `users.verifier` as for cloud-only users): the flags a sign-in honours, the source's
/// password time, and when hash sync last changed the row. Times in seconds.
pub(super) const SCHEMA_V4: &str = "
ALTER TABLE users ADD COLUMN pwd_must_change INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN account_expires INTEGER;
ALTER TABLE users ADD COLUMN hash_disabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN pwd_changed_at INTEGER;
ALTER TABLE users ADD COLUMN hash_synced_at INTEGER;
";

/// The wire bounds times ([`causeway_proto::sync::hash::MAX_TIME`]); a later one (a
/// caller that skipped the check) is clamped there rather than overflowing the clock.
fn unix(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s.min(causeway_proto::sync::hash::MAX_TIME))
}

impl Db {
    pub(crate) fn apply_verifiers(
        &self,
        connector: &str,
        holder: &str,
        changes: &[VerifierChange],
        now: SystemTime,
    ) -> Result<(HashCounts, Vec<ObjectError>), StoreError> {
        let mut conn = self.lock();
        let tx = self.begin(&mut conn)?;
        self.require_lease(&tx, connector, holder, now)?;
        let actor = format!("sync:{connector}");
        let mut counts = HashCounts::default();
        let mut errors = Vec::new();
        for c in changes {
            let found = tx
                .query_row(
                    &format!(
                        "SELECT {COLUMNS} FROM users WHERE id = ?1 AND source = 'ad' \
                         AND connector = ?2 AND deleted_at IS NULL"
                    ),
                    params![c.anchor, connector],
                    row_to_user,
                )
                .optional()
                .map_err(self.err("find the synced user"))?;
            let Some(user) = found else {
                counts.errors += 1;
                errors.push(hash_error(
                    &c.anchor,
                    format!(
                        "no live user of connector {connector} has this anchor: export it before its password"
                    ),
                ));
                continue;
            };
            let p = &user.password;
            let expires = c.account_expires.map(unix);
            let changed_at = c.changed_at.map(unix);
            let flags_same = p.must_change == c.must_change
                && p.disabled == c.disabled
                && p.account_expires.map(secs) == expires.map(secs);
            if c.verifier.is_none() && flags_same {
                counts.unchanged += 1;
                continue;
            }
            let n = secs(now);
            tx.execute(
                "UPDATE users SET pwd_must_change = ?2, hash_disabled = ?3, account_expires = ?4, \
                 pwd_changed_at = ?5, hash_synced_at = ?6, updated_at = ?6, \
                 verifier = COALESCE(?7, verifier) WHERE id = ?1",
                params![
                    c.anchor,
                    i64::from(c.must_change),
                    i64::from(c.disabled),
                    expires.map(secs),
                    changed_at.map(secs),
                    n,
                    c.verifier.as_ref().map(|v| v.expose_encoded()),
                ],
            )
            .map_err(self.err("write the verifier"))?;
            let action = if c.verifier.is_some() {
                counts.verifiers += 1;
                "set-password"
            } else {
                counts.flags += 1;
                "password-flags"
            };
            self.read_back_and_record(
                &tx,
                &ImmutableId::from_stored(c.anchor.clone()),
                &Change {
                    action,
                    actor: &actor,
                    now,
                    verifier_changed: c.verifier.is_some(),
                },
            )?;
        }
        tx.commit().map_err(self.err("commit"))?;
        Ok((counts, errors))
    }

    pub(crate) fn hash_sync_state(
        &self,
        connector: &str,
    ) -> Result<(Option<SystemTime>, u64), StoreError> {
        let conn = self.lock();
        conn.query_row(
            "SELECT MAX(hash_synced_at), COUNT(verifier) FROM users \
             WHERE source = 'ad' AND connector = ?1 AND deleted_at IS NULL",
            [connector],
            |r| {
                Ok((
                    r.get::<_, Option<i64>>(0)?.map(time),
                    u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                ))
            },
        )
        .map_err(self.err("read the hash sync state"))
    }
}
