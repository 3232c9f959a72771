//! The OpenLDAP connector: an RFC 4533 content-sync pass in refreshOnly mode. The anchor is
//! `entryUUID` (RFC 4530), the cookie is the server's `csn` cookie, stored like DirSync's.
//! Its entries are mapped by [`map`] (standard classes and attributes, ppolicy locks).
//!
//! ldap3 0.12 has parsers for the Sync State, Sync Done and Sync Info values, but they
//! `panic!`/`expect` on any malformed value. A server's answer is outside input, so the
//! values are read here with bounds by [`ber`] instead, and a bad one is an error.
//!
//! Deletions: the lab's slapd (scripts/lab/slapd.sh) runs `syncprov` without a session log,
//! so a pass from a cookie after a deletion does a *present* phase: changed entries come
//! back whole and every unchanged entry comes back as "present" (one by one or as a
//! syncIdSet), and Sync Done says `refreshDeletes = FALSE`. Then every held object not named
//! is gone and becomes a tombstone. With no deletion since the cookie, slapd sends only the
//! changed entries (still `refreshDeletes = FALSE`, nothing present): nothing is inferred. A server with a session log answers with a delete phase instead
//! (`refreshDeletes = TRUE`, deletions as delete states or a syncIdSet): both are handled.
//!
//! A server without `syncprov` is read by [`mts`] instead (`modifyTimestamp` deltas and an
//! entryUUID comparison for deletions); [`tombstones`] serves both.

pub(crate) mod ber;
pub(crate) mod import;
pub mod map;
pub mod mts;
pub mod persist;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use ldap3::controls::RawControl;
use ldap3::{Ldap, Scope, SearchEntry};

use crate::ad::dirsync::Cookie;
use crate::ad::entry::{Entry, EntryError, Guid, Values, MAX_DN, MAX_VALUE, MAX_VALUES};
use ber::{State, SyncInfo, SyncState};

/// The Sync Request control (RFC 4533 §2.2).
pub const SYNC_REQUEST_OID: &str = "1.3.6.1.4.1.4203.1.9.1.1";
/// The Sync State control on each entry.
pub const SYNC_STATE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.2";
/// The Sync Done control on the search result.
pub const SYNC_DONE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.3";
/// The Sync Info intermediate response.
pub const SYNC_INFO_OID: &str = "1.3.6.1.4.1.4203.1.9.1.4";

/// An anchor from an RFC 4530 `entryUUID`: 16 bytes in plain (big-endian) UUID order.
/// [`Guid`] holds AD's mixed-endian order (its text form swaps the first three groups), so
/// the first three groups are swapped here, and the anchor prints as the UUID's usual text.
pub fn uuid_anchor(b: &[u8]) -> Result<Guid, String> {
    let mut a = <[u8; 16]>::try_from(b)
        .map_err(|_| format!("an entryUUID is 16 bytes, this one is {}", b.len()))?;
    a[..4].reverse();
    a[4..6].reverse();
    a[6..8].reverse();
    Guid::from_bytes(&a)
}

/// What one pass read.
#[derive(Debug)]
pub struct Pass {
    /// Entries added or changed, and tombstones, to merge.
    pub entries: Vec<Result<Entry, EntryError>>,
    /// The cookie to store with them.
    pub cookie: Cookie,
    /// Search result entries and intermediate messages read.
    pub messages: u64,
}

/// Why a pass failed.
#[derive(Debug)]
pub enum PassError {
    /// The server does not advertise the content-sync control.
    NoContentSync,
    /// The search did not answer in time.
    Timeout(Duration),
    /// The connection failed.
    Ldap(String),
    /// The server refused the search (a cookie it will not continue from, or rights).
    Refused {
        /// The LDAP result code.
        rc: u32,
        /// The server's message.
        text: String,
    },
    /// A control or message of the answer is malformed: the server is at fault.
    Malformed(String),
}

impl fmt::Display for PassError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoContentSync => write!(
                f,
                "the server does not advertise the content-sync control \
                 ({SYNC_REQUEST_OID}, RFC 4533) and the connector says delta = \"content_sync\": \
                 enable the syncprov overlay on its database, or set delta = \"auto\" for the \
                 modifyTimestamp fallback"
            ),
            Self::Timeout(t) => write!(f, "the server did not answer the sync search within {t:?}"),
            Self::Ldap(e) => write!(f, "the sync search failed: {e}"),
            Self::Refused { rc, text } => {
                write!(
                    f,
                    "the server refused the sync search (result {rc}): {text}"
                )
            }
            Self::Malformed(e) => write!(f, "the server's sync answer is malformed: {e}"),
        }
    }
}

impl std::error::Error for PassError {}

/// Runs one refreshOnly pass from `cookie` (empty: everything). `held` is the connector
/// space's live objects (anchor → DN), to infer deletions from a present phase.
pub async fn pass(
    ldap: &mut Ldap,
    base_dn: &str,
    attributes: &[String],
    cookie: &Cookie,
    held: &BTreeMap<Guid, String>,
    timeout: Duration,
) -> Result<Pass, PassError> {
    let req = ber::sync_request(cookie.as_bytes());
    let ctrl = RawControl {
        ctype: SYNC_REQUEST_OID.to_owned(),
        crit: true,
        val: Some(req),
    };
    let mut attrs: Vec<&str> = attributes.iter().map(String::as_str).collect();
    if attrs.is_empty() {
        attrs.push("*");
    }
    // A streaming search: the plain `search` drops intermediate messages, and slapd sends
    // a present phase's entryUUIDs as syncIdSet intermediates.
    let read = async {
        let mut stream = ldap
            .with_controls(vec![ctrl])
            .streaming_search(base_dn, Scope::Subtree, "(objectClass=*)", attrs)
            .await?;
        let mut results = Vec::new();
        while let Some(r) = stream.next().await? {
            results.push(r);
        }
        Ok::<_, ldap3::LdapError>((results, stream.finish().await))
    };
    let (results, res) = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| PassError::Timeout(timeout))?
        .map_err(|e| PassError::Ldap(e.to_string()))?;
    let res = res.success().map_err(|e| match e {
        ldap3::LdapError::LdapResult { result } => PassError::Refused {
            rc: result.rc,
            text: result.text,
        },
        e => PassError::Ldap(e.to_string()),
    })?;
    let done = res
        .ctrls
        .iter()
        .find(|c| c.1.ctype == SYNC_DONE_OID)
        .ok_or_else(|| PassError::Malformed("the result has no Sync Done control".into()))?;
    let done =
        ber::sync_done(done.1.val.as_deref().unwrap_or_default()).map_err(PassError::Malformed)?;
    let mut out = Pass {
        entries: Vec::new(),
        cookie: cookie.clone(),
        messages: results.len() as u64,
    };
    let mut seen: BTreeSet<Guid> = BTreeSet::new();
    let mut gone: BTreeSet<Guid> = BTreeSet::new();
    let mut refresh_deletes = done.refresh_deletes;
    let mut changed = 0usize;
    for r in results {
        if r.is_intermediate() {
            let info = ber::intermediate(&r.0).map_err(PassError::Malformed)?;
            match info {
                SyncInfo::IdSet { uuids, deletes } => {
                    for u in uuids {
                        let g = uuid_anchor(&u).map_err(PassError::Malformed)?;
                        if deletes {
                            gone.insert(g);
                        } else {
                            seen.insert(g);
                        }
                    }
                }
                SyncInfo::Phase { present } => refresh_deletes = !present,
                SyncInfo::NewCookie | SyncInfo::Other => {}
            }
            continue;
        }
        if r.is_ref() {
            continue;
        }
        let state =
            r.1.iter()
                .find(|c| c.1.ctype == SYNC_STATE_OID)
                .map(|c| ber::sync_state(c.1.val.as_deref().unwrap_or_default()));
        let e = SearchEntry::construct(r);
        let state: SyncState = match state {
            Some(Ok(s)) => s,
            Some(Err(m)) => {
                out.entries.push(Err(err(&e.dn, None, m)));
                continue;
            }
            None => {
                let m = "an entry without a Sync State control".to_owned();
                out.entries.push(Err(err(&e.dn, None, m)));
                continue;
            }
        };
        let guid = match uuid_anchor(&state.uuid) {
            Ok(g) => g,
            Err(m) => {
                out.entries.push(Err(err(&e.dn, Some("entryUUID"), m)));
                continue;
            }
        };
        match state.state {
            State::Present => {
                seen.insert(guid);
            }
            State::Delete => {
                gone.insert(guid);
            }
            State::Add | State::Modify => {
                seen.insert(guid);
                changed += 1;
                out.entries.push(entry(guid, &e));
            }
        }
    }
    // slapd without a session log sends a present phase only when something may have been
    // deleted since the cookie (its contextCSN is newer than any entry's): otherwise just
    // the changed entries, still with refreshDeletes FALSE. So deletions are inferred only
    // from a present phase that named something (the base entry is always named), or a
    // pass without a cookie.
    let named_present = seen.len() > changed;
    if !refresh_deletes && (cookie.is_empty() || named_present) {
        // A present phase: whatever is held and was not named is gone.
        gone.extend(held.keys().filter(|g| !seen.contains(g)).copied());
    }
    out.entries.extend(tombstones(held, gone.iter()).map(Ok));
    if let Some(c) = done.cookie {
        out.cookie = Cookie::new(c).map_err(|e| PassError::Malformed(e.to_string()))?;
    }
    Ok(out)
}

/// A tombstone for each of `gone` that is held live (the others were never seen, or are
/// tombstones already): what a present phase, or the entryUUID comparison of the
/// `modifyTimestamp` fallback, infers.
pub fn tombstones<'a>(
    held: &'a BTreeMap<Guid, String>,
    gone: impl Iterator<Item = &'a Guid> + 'a,
) -> impl Iterator<Item = Entry> + 'a {
    gone.filter_map(|g| {
        held.get(g).map(|dn| Entry {
            guid: *g,
            sid: None,
            dn: dn.clone(),
            deleted: true,
            attrs: BTreeMap::new(),
        })
    })
}

fn err(dn: &str, attribute: Option<&str>, message: String) -> EntryError {
    EntryError {
        dn: dn.chars().take(MAX_DN).collect(),
        attribute: attribute.map(str::to_owned),
        message,
    }
}

/// One added or changed entry, checked and bounded like an AD entry: attribute names
/// lower-cased, at most [`MAX_VALUES`] values of at most [`MAX_VALUE`] bytes each.
pub fn entry(guid: Guid, e: &SearchEntry) -> Result<Entry, EntryError> {
    if e.dn.len() > MAX_DN {
        return Err(err(&e.dn, None, format!("the DN is over {MAX_DN} bytes")));
    }
    let mut attrs: BTreeMap<String, Values> = BTreeMap::new();
    let text = e.attrs.iter().map(|(k, v)| {
        (
            k,
            v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>(),
        )
    });
    let bin = e.bin_attrs.iter().map(|(k, v)| (k, v.clone()));
    for (name, values) in text.chain(bin) {
        let lower = name.to_ascii_lowercase();
        if values.len() > MAX_VALUES {
            let m = format!("{} values; at most {MAX_VALUES} are read", values.len());
            return Err(err(&e.dn, Some(name), m));
        }
        if let Some(v) = values.iter().find(|v| v.len() > MAX_VALUE) {
            let m = format!("a value of {} bytes; at most {MAX_VALUE} are read", v.len());
            return Err(err(&e.dn, Some(name), m));
        }
        attrs.entry(lower).or_default().values.extend(values);
    }
    Ok(Entry {
        guid,
        sid: None,
        dn: e.dn.clone(),
        deleted: false,
        attrs,
    })
}

#[cfg(test)]
mod tests;
