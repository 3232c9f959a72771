//! `write_consistency_guid`: as Entra Connect does, write each exported user's and group's
//! `objectGUID` into its empty `ms-DS-ConsistencyGuid`, so that the anchor survives a move
//! to another forest or a re-creation that restores the attribute. The value written is the
//! anchor already in use, so nothing changes at the endpoint. Opt-in: the sync account
//! needs write access to that one attribute (the DirSync rights do not include it).

use std::collections::{BTreeSet, HashSet};

use ldap3::Mod;

use crate::ad::entry::Guid;
use crate::ad::map::Kind;
use crate::config::Connector;
use crate::connect::connect;
use crate::space::{ConnectorSpace, SpaceError};

/// `attributeOrValueExists`: someone wrote it meanwhile; nothing to do.
const ALREADY_THERE: u32 = 20;

/// What the pass did.
#[derive(Debug, Default)]
pub struct Written {
    /// Objects given their `ms-DS-ConsistencyGuid`.
    pub written: u64,
    /// `(DN, why)` for each object the DC refused.
    pub refused: Vec<(String, String)>,
}

/// The exported users and groups of `c` whose held copy has no `ms-DS-ConsistencyGuid`.
fn missing(c: &Connector, space: &ConnectorSpace) -> Result<Vec<(Guid, String)>, SpaceError> {
    let exported: BTreeSet<Guid> = space.exported_anchors(&c.name)?.into_iter().collect();
    let mut out = Vec::new();
    space.for_each_object(&c.name, |h| {
        let kind = h.attrs.get("objectclass").and_then(|v| Kind::of(&v.values));
        if !h.deleted
            && matches!(kind, Some(Kind::User | Kind::Group))
            && exported.contains(&h.guid)
            && !h.attrs.contains_key("ms-ds-consistencyguid")
        {
            out.push((h.guid, h.dn));
        }
        Ok::<_, SpaceError>(())
    })?;
    Ok(out)
}

/// Writes the missing values; a refusal is reported per object and the rest go on.
pub async fn write_missing(c: &Connector, space: &ConnectorSpace) -> Result<Written, String> {
    let todo = missing(c, space).map_err(|e| e.to_string())?;
    let mut out = Written::default();
    if todo.is_empty() {
        return Ok(out);
    }
    let mut session = connect(c).await.map_err(|e| e.to_string())?;
    for (guid, dn) in todo {
        let value: HashSet<&[u8]> = HashSet::from([&guid.as_bytes()[..]]);
        let r = tokio::time::timeout(
            c.timeout,
            session.ldap.modify(
                dn.as_str(),
                vec![Mod::Add(&b"mS-DS-ConsistencyGuid"[..], value)],
            ),
        )
        .await;
        match r {
            Ok(Ok(res)) if res.rc == 0 => out.written += 1,
            Ok(Ok(res)) if res.rc == ALREADY_THERE => {}
            Ok(Ok(res)) => out.refused.push((
                dn,
                format!(
                    "the DC refused to write ms-DS-ConsistencyGuid (LDAP {}: {}); give the sync account write access to it, or set write_consistency_guid = false",
                    res.rc, res.text
                ),
            )),
            Ok(Err(e)) => return Err(format!("writing ms-DS-ConsistencyGuid: {e}")),
            Err(_) => return Err(format!("writing ms-DS-ConsistencyGuid: no answer within {:?}", c.timeout)),
        }
    }
    let _ = session.ldap.unbind().await;
    Ok(out)
}
