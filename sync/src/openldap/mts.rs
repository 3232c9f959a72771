//! The fallback for an OpenLDAP server without content sync (no `syncprov`): changes are
//! found by `modifyTimestamp`, deletions by comparing the entryUUIDs under the base with
//! the held ones. Every read is a paged search (RFC 2696), one page in memory at a time.
//!
//! The watermark is the highest `modifyTimestamp` seen, in the server's own clock (ours
//! may be skewed), stored as the connector's cookie with the prefix [`PREFIX`], so a
//! content-sync cookie is never read as one (and the reverse): switching modes imports
//! everything again. A delta asks for `modifyTimestamp>=` the watermark's second: an entry
//! changed in that second after the last read is not missed, and re-reading one is a no-op.

use std::collections::BTreeSet;
use std::time::Duration;

use ldap3::{Ldap, SearchEntry};

use super::{entry, err, PassError};
use crate::ad::dirsync::Cookie;
use crate::ad::entry::{Entry, EntryError, Guid};
use crate::ad::paged::{PageError, Pager};

/// What starts a cookie that is a `modifyTimestamp` watermark (version 1).
pub const PREFIX: &[u8] = b"mts1:";

/// Entries per page (OpenLDAP's default size limit is 500).
pub const PAGE: i32 = 500;

/// LDAP's sizeLimitExceeded.
const SIZE_LIMIT_EXCEEDED: u32 = 4;

/// A GeneralizedTime in UTC (`YYYYMMDDHHMMSS[.f]Z`), ordered as time: the whole seconds
/// are fixed-width digits, the fraction is compared without its trailing zeros.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    secs: String,
    frac: String,
}

impl Stamp {
    /// Reads a GeneralizedTime as slapd writes `modifyTimestamp` (UTC, `Z`); a local time
    /// or an offset is refused, as it cannot be compared without a time zone.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a UTC GeneralizedTime (YYYYMMDDHHMMSS[.f]Z)");
        let body = s.strip_suffix(['Z', 'z']).ok_or_else(bad)?;
        let (secs, frac) = match body.split_once(['.', ',']) {
            Some((a, f)) if !f.is_empty() => (a, f),
            Some(_) => return Err(bad()),
            None => (body, ""),
        };
        let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if secs.len() != 14 || !digits(secs) || !digits(frac) || frac.len() > 9 {
            return Err(bad());
        }
        Ok(Self {
            secs: secs.to_owned(),
            frac: frac.trim_end_matches('0').to_owned(),
        })
    }

    /// The filter of a delta from this stamp: the whole second, so nothing in it is missed.
    pub fn filter(&self) -> String {
        format!("(modifyTimestamp>={}Z)", self.secs)
    }

    fn text(&self) -> String {
        if self.frac.is_empty() {
            format!("{}Z", self.secs)
        } else {
            format!("{}.{}Z", self.secs, self.frac)
        }
    }
}

/// A `modifyTimestamp` watermark: `None` after a full import of a directory with no entry
/// (the next delta reads everything again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark(pub Option<Stamp>);

impl Watermark {
    /// The watermark a stored cookie holds; `None` for no cookie, a content-sync cookie or
    /// a damaged one (each means: import everything).
    pub fn from_cookie(c: &Cookie) -> Option<Self> {
        let rest = c.as_bytes().strip_prefix(PREFIX)?;
        if rest.is_empty() {
            return Some(Self(None));
        }
        let s = std::str::from_utf8(rest).ok()?;
        Stamp::parse(s).ok().map(|s| Self(Some(s)))
    }

    /// The cookie to store.
    pub fn cookie(&self) -> Cookie {
        let mut b = PREFIX.to_vec();
        if let Some(s) = &self.0 {
            b.extend_from_slice(s.text().as_bytes());
        }
        // Under 40 bytes: far below the cookie bound.
        Cookie::new(b).unwrap_or_default()
    }

    /// The later of this watermark and `seen`.
    pub fn advance(self, seen: Option<Stamp>) -> Self {
        Self(self.0.max(seen))
    }

    /// What a delta from it searches for.
    pub fn filter(&self) -> String {
        self.0
            .as_ref()
            .map_or_else(|| "(objectClass=*)".to_owned(), Stamp::filter)
    }
}

/// One page of a read: each entry checked on its own, and every anchor named in it (an
/// entry that is readable by anchor but malformed otherwise is still present).
#[derive(Debug, Default)]
pub struct Page {
    /// The entries to merge.
    pub entries: Vec<Result<Entry, EntryError>>,
    /// The entryUUIDs of every entry of the page.
    pub anchors: Vec<Guid>,
}

/// What a read found beyond its pages.
#[derive(Debug, Default)]
pub struct Read {
    /// Pages read.
    pub pages: u64,
    /// Entries read.
    pub entries: u64,
    /// The highest `modifyTimestamp` read.
    pub newest: Option<Stamp>,
    /// Some entry had no readable entryUUID: which anchors are present is not known, so
    /// no deletion may be inferred from this read.
    pub anchorless: bool,
}

/// Why a read stopped: the server, or the caller's page handler.
#[derive(Debug)]
pub enum ReadError<E> {
    /// The server failed or refused.
    Pass(PassError),
    /// The caller's handler failed.
    Handler(E),
}

fn value<'a>(e: &'a SearchEntry, name: &str) -> Option<&'a str> {
    e.attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
}

/// A paged search of `base` for `filter`, each page handed to `on_page` as it arrives.
async fn paged_search<E>(
    ldap: &mut Ldap,
    base: &str,
    filter: &str,
    attrs: &[&str],
    size: i32,
    timeout: Duration,
    mut on_page: impl FnMut(Vec<SearchEntry>) -> Result<(), ReadError<E>>,
) -> Result<u64, ReadError<E>> {
    let mut pager = Pager::new(size);
    let mut pages = 0;
    loop {
        let entries = pager
            .next(ldap, base, filter, attrs, &[], timeout)
            .await
            .map_err(|e| {
                ReadError::Pass(match e {
                    PageError::Timeout(t) => PassError::Timeout(t),
                    PageError::Ldap(e) => PassError::Ldap(e),
                    // slapd counts a paged search's entries as a whole against the hard
                    // size limit unless `size.prtotal` says otherwise.
                    PageError::Refused { rc, text } if rc == SIZE_LIMIT_EXCEEDED => PassError::Refused {
                        rc,
                        text: format!(
                            "{text} (slapd's size limit applies to the whole paged search: give the sync account `limits dn.exact=\"…\" size.prtotal=unlimited` or `size=unlimited`)"
                        ),
                    },
                    PageError::Refused { rc, text } => PassError::Refused { rc, text },
                    PageError::Paging(e) => PassError::Malformed(format!("the paged search: {e}")),
                })
            })?;
        let Some(entries) = entries else {
            return Ok(pages);
        };
        pages += 1;
        let page = entries
            .into_iter()
            .filter(|r| !r.is_ref())
            .map(SearchEntry::construct)
            .collect();
        on_page(page)?;
    }
}

/// Reads every entry under `base` matching `filter` (a full import: `(objectClass=*)`; a
/// delta: [`Watermark::filter`]) with `attributes` (which must name `entryUUID` and
/// `modifyTimestamp`), `size` entries a page ([`PAGE`]), handing each page to `on_page`.
pub async fn read<E>(
    ldap: &mut Ldap,
    base: &str,
    filter: &str,
    attributes: &[String],
    size: i32,
    timeout: Duration,
    mut on_page: impl FnMut(Page) -> Result<(), E>,
) -> Result<Read, ReadError<E>> {
    let attrs: Vec<&str> = attributes.iter().map(String::as_str).collect();
    let mut out = Read::default();
    out.pages = paged_search(ldap, base, filter, &attrs, size, timeout, |page| {
        let mut p = Page::default();
        for e in page {
            out.entries += 1;
            if let Some(s) = value(&e, "modifyTimestamp").and_then(|s| Stamp::parse(s).ok()) {
                out.newest = out.newest.take().max(Some(s));
            }
            match value(&e, "entryUUID").map(Guid::parse) {
                Some(Ok(g)) => {
                    p.anchors.push(g);
                    p.entries.push(entry(g, &e));
                }
                Some(Err(m)) => {
                    out.anchorless = true;
                    p.entries.push(Err(err(&e.dn, Some("entryUUID"), m)));
                }
                None => {
                    out.anchorless = true;
                    let m = "no entryUUID (is the sync account allowed to read it?)".into();
                    p.entries.push(Err(err(&e.dn, Some("entryUUID"), m)));
                }
            }
        }
        on_page(p).map_err(ReadError::Handler)
    })
    .await?;
    Ok(out)
}

/// The entryUUIDs of every entry under `base` now, read page by page (16 bytes each held).
/// An entry without a readable one is the server's fault, and an error: a deletion must
/// never be inferred from an incomplete list.
pub async fn present(
    ldap: &mut Ldap,
    base: &str,
    size: i32,
    timeout: Duration,
) -> Result<BTreeSet<Guid>, PassError> {
    let mut seen = BTreeSet::new();
    let r = paged_search::<PassError>(
        ldap,
        base,
        "(objectClass=*)",
        &["entryUUID"],
        size,
        timeout,
        |page| {
            for e in page {
                let g = value(&e, "entryUUID")
                    .ok_or_else(|| format!("{}: no entryUUID", e.dn))
                    .and_then(|v| Guid::parse(v).map_err(|m| format!("{}: {m}", e.dn)))
                    .map_err(|m| ReadError::Pass(PassError::Malformed(m)))?;
                seen.insert(g);
            }
            Ok(())
        },
    )
    .await;
    match r {
        Ok(_) => Ok(seen),
        Err(ReadError::Pass(e) | ReadError::Handler(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests;
