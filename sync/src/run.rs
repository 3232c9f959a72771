//! The import stage of a sync run: for one connector, connect, run a DirSync pass from the
//! connector space's watermark (none: a full import) and merge it into the space page by
//! page. The planner (threshold, staging, dry-run) and export to the endpoint come after it
//! in the sync issue; they read the space this stage keeps current.

use std::fmt;
use std::time::{Duration, Instant};

use crate::ad::dirsync::Cookie;
use crate::ad::entry::EntryError;
use crate::ad::import::{self, ImportError};
use crate::ad::map::Mapping;
use crate::config::{Connector, ConnectorKind};
use crate::connect::{connect, ConnectError};
use crate::space::{ConnectorSpace, Merged, SpaceError};

/// How one connector's import went.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// The pass started without a cookie.
    pub full: bool,
    /// The stored cookie was refused by the DC, so the pass was a full import instead.
    pub cookie_refused: bool,
    /// Answers read.
    pub pages: u64,
    /// Entries read.
    pub entries: u64,
    /// What merging did, summed over the pages.
    pub merged: Merged,
    /// Entries that could not be read (the others were merged).
    pub errors: Vec<EntryError>,
    /// How long it took.
    pub elapsed: Duration,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}: {} entries in {} page{} ({} added, {} changed, {} deleted, {} unreadable) in {:.1} s",
            if self.full { "full import" } else { "delta" },
            if self.cookie_refused {
                " (the stored cookie was refused by the domain controller: imported everything again)"
            } else {
                ""
            },
            self.entries,
            self.pages,
            if self.pages == 1 { "" } else { "s" },
            self.merged.added,
            self.merged.changed,
            self.merged.deleted,
            self.errors.len(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// Why an import stopped. The connector space keeps every page merged before it, with its
/// cookie, so the next run resumes from there.
#[derive(Debug)]
pub enum RunError {
    /// This kind of connector has no import yet.
    NotBuilt(&'static str),
    /// No server could be used.
    Connect(ConnectError),
    /// The pass failed.
    Import(ImportError<SpaceError>),
    /// The connector space failed.
    Space(SpaceError),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotBuilt(what) => write!(f, "{what} is not built yet"),
            Self::Connect(e) => e.fmt(f),
            Self::Import(e) => e.fmt(f),
            Self::Space(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RunError {}

/// Imports one connector into the space. `progress` is told the entries read so far after
/// each page.
pub async fn import(
    c: &Connector,
    space: &ConnectorSpace,
    mut progress: impl FnMut(u64),
) -> Result<ImportReport, RunError> {
    if c.kind == ConnectorKind::OpenLdap {
        return Err(RunError::NotBuilt("the OpenLDAP connector's import"));
    }
    let started = Instant::now();
    let mut session = connect(c).await.map_err(RunError::Connect)?;
    let attrs = Mapping::attributes(&c.mapping);
    let mut report = ImportReport::default();
    let mut from = space.cookie(&c.name).map_err(RunError::Space)?;
    loop {
        report.full = from.is_empty();
        let mut errors = Vec::new();
        let mut merged = Merged::default();
        let mut read = report.entries;
        let r = import::pass(
            &mut session.ldap,
            &c.base_dn,
            &attrs,
            from.clone(),
            c.timeout,
            |page, cookie| {
                read += page.len() as u64;
                let mut ok = Vec::with_capacity(page.len());
                for e in page {
                    match e {
                        Ok(e) => ok.push(e),
                        Err(e) => errors.push(e),
                    }
                }
                let m = space.merge_page(&c.name, &ok, cookie)?;
                merged.added += m.added;
                merged.changed += m.changed;
                merged.deleted += m.deleted;
                progress(read);
                Ok(())
            },
        )
        .await;
        report.errors.extend(errors);
        report.merged.added += merged.added;
        report.merged.changed += merged.changed;
        report.merged.deleted += merged.deleted;
        match r {
            Ok(p) => {
                report.pages += p.pages;
                report.entries += p.entries;
                break;
            }
            Err(ImportError::Refused { .. }) if !from.is_empty() && !report.cookie_refused => {
                // The DC will not continue from our cookie (it was restored, or the cookie
                // is another DC's): start over from nothing, once, and say so. A refusal
                // for another reason (rights) comes back from the full pass as itself.
                report.cookie_refused = true;
                from = Cookie::default();
            }
            Err(e) => return Err(RunError::Import(e)),
        }
    }
    let _ = session.ldap.unbind().await;
    report.elapsed = started.elapsed();
    Ok(report)
}
