//! One DirSync pass over a domain: search with the cookie of the last acknowledged pass (or
//! none, for a full import), hand each answer's entries to the caller page by page, and
//! search again while the DC says more changes are waiting. Memory is bounded by one chunk
//! of an answer, never by the directory: the answer is read as a stream (Samba ignores the
//! `max_bytes` we ask for and sends a whole domain in one answer).
//!
//! The pass stores nothing: the caller commits each page's last chunk with the cookie it
//! leads to (the connector space does both in one transaction) and the chunks before it
//! with the cookie the page started from, so a crash mid-pass resumes after the last
//! committed page; the chunks merged since are read again, and merging them twice changes
//! nothing.

use std::fmt;
use std::time::Duration;

use ldap3::controls::RawControl;
use ldap3::{Ldap, Scope, SearchEntry};

use super::dirsync::{self, Cookie, DirSyncError};
use super::entry::{Entry, EntryError};
use super::paged::{PageError, Pager};

/// The objects a pass asks for; tombstones keep their `objectClass`, so deletions match too.
pub const OBJECTS: &str =
    "(|(objectClass=user)(objectClass=group)(objectClass=contact)(objectClass=organizationalUnit))";

/// `LDAP_SERVER_EXTENDED_DN_OID` with flag 1 (GUIDs as text): DN-valued attributes such as
/// `member` and `manager` come as `<GUID=…>;<SID=…>;CN=…`, so a reference survives its
/// target's rename or move (AD does not re-send the referring object then).
pub const EXTENDED_DN_OID: &str = "1.2.840.113556.1.4.529";

/// The extended-DN control, as every search of the connector sends it.
pub fn extended_dn() -> RawControl {
    RawControl {
        ctype: EXTENDED_DN_OID.to_owned(),
        crit: false,
        // SEQUENCE { INTEGER 1 }
        val: Some(vec![0x30, 0x03, 0x02, 0x01, 0x01]),
    }
}

/// The most bytes of attributes per answer: about a thousand ordinary users.
pub const PAGE_BYTES: u32 = 1 << 20;

/// How a pass went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    /// The cookie to commit once everything handed out is acknowledged.
    pub cookie: Cookie,
    /// Answers read.
    pub pages: u64,
    /// Entries handed out (checked or not).
    pub entries: u64,
}

/// Why a pass stopped. Nothing it handed out before has been committed by it.
#[derive(Debug)]
pub enum ImportError<E> {
    /// The DC did not answer within the timeout.
    Timeout(Duration),
    /// The connection failed (the DC went away mid-pass).
    Ldap(String),
    /// The DC refused the search (e.g. 50 without replication rights).
    Refused {
        /// The LDAP result code.
        rc: u32,
        /// The DC's diagnostic.
        text: String,
    },
    /// The DC's DirSync control was missing or malformed.
    Control(DirSyncError),
    /// The DC said more changes wait but returned the same cookie: searching again would
    /// loop forever.
    NoProgress,
    /// The caller's page handler failed.
    Handler(E),
}

impl<E: fmt::Display> fmt::Display for ImportError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(t) => write!(f, "the domain controller did not answer within {t:?}"),
            Self::Ldap(e) => write!(f, "the connection to the domain controller failed: {e}"),
            Self::Refused { rc, text } => {
                write!(f, "the domain controller refused the DirSync search (LDAP {rc}: {text})")
            }
            Self::Control(e) => e.fmt(f),
            Self::NoProgress => f.write_str(
                "the domain controller said more changes are waiting but did not advance the cookie",
            ),
            Self::Handler(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for ImportError<E> {}

/// The import's error for a page that could not be read by `what`.
pub(crate) fn from_page<E>(what: &'static str) -> impl FnOnce(PageError) -> ImportError<E> {
    move |e| match e {
        PageError::Timeout(t) => ImportError::Timeout(t),
        PageError::Ldap(e) => ImportError::Ldap(e),
        PageError::Refused { rc, text } => ImportError::Refused { rc, text },
        PageError::Paging(e) => ImportError::Ldap(format!("{what}: {e}")),
    }
}

/// A filter no object matches: a DirSync pass with it reads nothing but still returns the
/// cookie of the DC's state now.
const NOTHING: &str = "(&(objectClass=user)(!(objectClass=user)))";

/// Objects per page of a full import's paged search.
const FULL_PAGE: i32 = 500;

/// A full import without a cookie: first the DirSync cookie of now (a pass that matches
/// nothing), then every object by a paged search (the DC sends one page per request, so
/// memory is one page however big the domain: Samba ignores DirSync's `max_bytes` and
/// would send the whole domain as one answer), each page handed over with an empty
/// cookie (a crash before the end starts the full import again), and last the cookie.
/// Changes made while the pages are read are after the cookie: the next delta has them.
async fn full_read<E>(
    ldap: &mut Ldap,
    base_dn: &str,
    attrs: &[&str],
    timeout: Duration,
    on_page: &mut impl FnMut(Vec<Result<Entry, EntryError>>, &Cookie) -> Result<(), E>,
) -> Result<Pass, ImportError<E>> {
    let mut cookie = Cookie::default();
    loop {
        let req = dirsync::Request {
            flags: dirsync::INCREMENTAL_VALUES,
            max_bytes: PAGE_BYTES,
            cookie: cookie.clone(),
        };
        let res = tokio::time::timeout(
            timeout,
            ldap.with_controls(vec![RawControl::from(&req)]).search(
                base_dn,
                Scope::Subtree,
                NOTHING,
                vec!["objectGUID"],
            ),
        )
        .await
        .map_err(|_| ImportError::Timeout(timeout))?
        .map_err(|e| ImportError::Ldap(e.to_string()))?;
        if res.1.rc != 0 {
            return Err(ImportError::Refused {
                rc: res.1.rc,
                text: res.1.text,
            });
        }
        let response = dirsync::Response::from_controls(res.1.ctrls.iter().map(|c| &c.1))
            .map_err(ImportError::Control)?;
        let advanced = response.cookie != cookie;
        cookie = response.cookie;
        if !response.more {
            break;
        }
        if !advanced {
            return Err(ImportError::NoProgress);
        }
    }
    let mut out = Pass {
        cookie: Cookie::default(),
        pages: 0,
        entries: 0,
    };
    let mut pager = Pager::new(FULL_PAGE);
    let mut previous: Option<Vec<ldap3::ResultEntry>> = None;
    let extended = [extended_dn()];
    // A page's entries are checked and merged while the DC prepares the next one
    // (synchronously, with the request outstanding: the connection is driven by its own
    // task), so the DC never waits on that work between two pages.
    let entries_of = |raw: Vec<ldap3::ResultEntry>| -> Vec<Result<Entry, EntryError>> {
        raw.into_iter()
            .map(|e| Entry::from_search(&SearchEntry::construct(e)))
            .collect()
    };
    loop {
        let (answer, merged) = tokio::join!(
            pager.next(ldap, base_dn, OBJECTS, attrs, &extended, timeout),
            async {
                match previous.take() {
                    Some(raw) => on_page(entries_of(raw), &Cookie::default()),
                    None => Ok(()),
                }
            }
        );
        merged.map_err(ImportError::Handler)?;
        let Some(entries) = answer.map_err(from_page("the full import's paging"))? else {
            break;
        };
        out.pages += 1;
        out.entries += entries.len() as u64;
        previous = Some(entries);
    }
    on_page(entries_of(previous.unwrap_or_default()), &cookie).map_err(ImportError::Handler)?;
    out.cookie = cookie;
    Ok(out)
}

/// Entries handed to the caller at a time within one DirSync answer.
const CHUNK: usize = 500;

/// Runs one pass from `cookie`, calling `on_page` with each answer's entries (each checked
/// on its own: one malformed entry does not stop the others) and the cookie that answer
/// leads to — a valid resume point, so the caller can commit the page and its cookie
/// together (the connector space does).
pub async fn pass<E>(
    ldap: &mut Ldap,
    base_dn: &str,
    attributes: &[String],
    cookie: Cookie,
    timeout: Duration,
    mut on_page: impl FnMut(Vec<Result<Entry, EntryError>>, &Cookie) -> Result<(), E>,
) -> Result<Pass, ImportError<E>> {
    let mut out = Pass {
        cookie,
        pages: 0,
        entries: 0,
    };
    let attrs: Vec<&str> = attributes.iter().map(String::as_str).collect();
    if out.cookie.is_empty() {
        return full_read(ldap, base_dn, &attrs, timeout, &mut on_page).await;
    }
    loop {
        let req = dirsync::Request {
            flags: dirsync::INCREMENTAL_VALUES,
            max_bytes: PAGE_BYTES,
            cookie: out.cookie.clone(),
        };
        // Read as a stream and handed over CHUNK entries at a time: Samba ignores
        // `max_bytes` and answers a full pass of a big domain in one page, which must not
        // be held whole. A chunk goes with the cookie the page started from (merged, the
        // watermark unchanged: re-applying a DirSync delta is idempotent, so a crash
        // mid-page re-reads the page and loses nothing); the last with the new one.
        let mut stream = tokio::time::timeout(
            timeout,
            ldap.with_controls(vec![RawControl::from(&req), extended_dn()])
                .streaming_search(base_dn, Scope::Subtree, OBJECTS, attrs.clone()),
        )
        .await
        .map_err(|_| ImportError::Timeout(timeout))?
        .map_err(|e| ImportError::Ldap(e.to_string()))?;
        let mut chunk = Vec::with_capacity(CHUNK);
        loop {
            let next = tokio::time::timeout(timeout, stream.next())
                .await
                .map_err(|_| ImportError::Timeout(timeout))?
                .map_err(|e| ImportError::Ldap(e.to_string()))?;
            let Some(e) = next else { break };
            out.entries += 1;
            chunk.push(Entry::from_search(&SearchEntry::construct(e)));
            if chunk.len() == CHUNK {
                on_page(std::mem::take(&mut chunk), &out.cookie).map_err(ImportError::Handler)?;
            }
        }
        let res = stream.finish().await;
        if res.rc != 0 {
            return Err(ImportError::Refused {
                rc: res.rc,
                text: res.text,
            });
        }
        let response = dirsync::Response::from_controls(res.ctrls.iter().map(|c| &c.1))
            .map_err(ImportError::Control)?;
        out.pages += 1;
        let page = chunk;
        on_page(page, &response.cookie).map_err(ImportError::Handler)?;
        let advanced = response.cookie != out.cookie;
        out.cookie = response.cookie;
        if !response.more {
            return Ok(out);
        }
        if !advanced {
            return Err(ImportError::NoProgress);
        }
    }
}
