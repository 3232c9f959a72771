//! The connector space read a row or a page at a time, and by index (DN, anchor): what
//! the streaming planner needs so that its memory does not grow with the objects.

use rusqlite::{params, OptionalExtension};

use super::{db, decode, ConnectorSpace, Held, SpaceError};
use crate::ad::entry::Guid;

impl ConnectorSpace {
    /// Calls `f` with each object the connector's copy holds, tombstones included, in GUID
    /// order, reading one row at a time: memory holds one object, not the copy. The space
    /// is locked meanwhile, so `f` must not call back into it (that would deadlock).
    pub fn for_each_object<E: From<SpaceError>>(
        &self,
        connector: &str,
        mut f: impl FnMut(Held) -> Result<(), E>,
    ) -> Result<(), E> {
        let conn = self.conn();
        let mut st = conn
            .prepare(
                "SELECT guid, dn, deleted, attrs FROM objects WHERE connector = ?1 ORDER BY guid",
            )
            .map_err(db("read the objects"))?;
        let mut rows = st.query([connector]).map_err(db("read the objects"))?;
        while let Some(row) = rows.next().map_err(db("read the objects"))? {
            f(held_row(row)?)?;
        }
        Ok(())
    }

    /// At most `limit` objects (tombstones included) whose GUID sorts after `after` (none:
    /// from the first), in GUID order: a page of [`Self::for_each_object`] that does not
    /// keep the space locked between pages.
    pub fn objects_after(
        &self,
        connector: &str,
        after: Option<&Guid>,
        limit: usize,
    ) -> Result<Vec<Held>, SpaceError> {
        let conn = self.conn();
        let mut st = conn
            .prepare(
                "SELECT guid, dn, deleted, attrs FROM objects WHERE connector = ?1 AND guid > ?2
                 ORDER BY guid LIMIT ?3",
            )
            .map_err(db("read the objects"))?;
        // Every GUID (16 bytes) sorts after the empty blob.
        let after: &[u8] = after.map_or(&[][..], |g| &g.as_bytes()[..]);
        let mut rows = st
            .query(params![
                connector,
                after,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ])
            .map_err(db("read the objects"))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(db("read the objects"))? {
            out.push(held_row(row)?);
        }
        Ok(out)
    }

    /// The GUIDs of the held objects (tombstones included) whose DN is `dn`, compared
    /// case-insensitively (ASCII), in GUID order; an index lookup.
    pub fn guids_by_dn(&self, connector: &str, dn: &str) -> Result<Vec<Guid>, SpaceError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(
                "SELECT guid FROM objects WHERE connector = ?1 AND lower(dn) = ?2 ORDER BY guid",
            )
            .map_err(db("find an object by DN"))?;
        let rows = st
            .query_map(params![connector, dn.to_ascii_lowercase()], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .map_err(db("find an object by DN"))?;
        let mut out = Vec::new();
        for row in rows {
            let g = row.map_err(db("find an object by DN"))?;
            out.push(Guid::from_bytes(&g).map_err(|detail| SpaceError {
                action: "find an object by DN",
                detail,
            })?);
        }
        Ok(out)
    }

    /// What was last exported for one anchor (its exported form's JSON), if anything; an
    /// index lookup.
    pub fn exported_body(
        &self,
        connector: &str,
        anchor: &Guid,
    ) -> Result<Option<String>, SpaceError> {
        self.conn()
            .prepare_cached("SELECT body FROM exported WHERE connector = ?1 AND anchor = ?2")
            .and_then(|mut st| {
                st.query_row(params![connector, &anchor.as_bytes()[..]], |r| r.get(0))
                    .optional()
            })
            .map_err(db("read the exported state"))
    }

    /// The anchors exported for the connector, in anchor order, without their bodies.
    pub fn exported_anchors(&self, connector: &str) -> Result<Vec<Guid>, SpaceError> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT anchor FROM exported WHERE connector = ?1 ORDER BY anchor")
            .map_err(db("read the exported state"))?;
        let rows = st
            .query_map([connector], |r| r.get::<_, Vec<u8>>(0))
            .map_err(db("read the exported state"))?;
        let mut out = Vec::new();
        for row in rows {
            let a = row.map_err(db("read the exported state"))?;
            out.push(Guid::from_bytes(&a).map_err(|detail| SpaceError {
                action: "read the exported state",
                detail,
            })?);
        }
        Ok(out)
    }
}

/// One `guid, dn, deleted, attrs` row.
fn held_row(row: &rusqlite::Row<'_>) -> Result<Held, SpaceError> {
    let read = db("read the objects");
    let guid: Vec<u8> = row.get(0).map_err(&read)?;
    let guid = Guid::from_bytes(&guid).map_err(|detail| SpaceError {
        action: "read the objects",
        detail,
    })?;
    let attrs: String = row.get(3).map_err(&read)?;
    Ok(Held {
        guid,
        dn: row.get(1).map_err(&read)?,
        deleted: row.get(2).map_err(&read)?,
        attrs: decode(&attrs).map_err(|detail| SpaceError {
            action: "read the objects",
            detail: format!("{guid}: {detail}"),
        })?,
    })
}
