//! The import stage of a sync run: for one connector, connect, run a DirSync pass (AD) or an
//! RFC 4533 content-sync pass (OpenLDAP) from the connector space's watermark (none: a full
//! import) and merge it into the space. The planner (threshold, staging, dry-run) and export to the endpoint come after it
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
    /// The OpenLDAP content-sync pass failed.
    ContentSync(crate::openldap::PassError),
    /// The connector space failed.
    Space(SpaceError),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotBuilt(what) => write!(f, "{what} is not built yet"),
            Self::Connect(e) => e.fmt(f),
            Self::Import(e) => e.fmt(f),
            Self::ContentSync(e) => e.fmt(f),
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
        return import_openldap(c, space, progress).await;
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

/// Imports an OpenLDAP connector: one refreshOnly content-sync pass from the stored cookie,
/// merged with its cookie in one transaction (a present phase is only complete at its end,
/// so deletions can only be inferred once the whole answer is read).
async fn import_openldap(
    c: &Connector,
    space: &ConnectorSpace,
    mut progress: impl FnMut(u64),
) -> Result<ImportReport, RunError> {
    use crate::openldap::{self, PassError};
    let started = Instant::now();
    let mut session = connect(c).await.map_err(RunError::Connect)?;
    if !session.root.supports(openldap::SYNC_REQUEST_OID) {
        let _ = session.ldap.unbind().await;
        return Err(RunError::ContentSync(PassError::NoContentSync));
    }
    // Every user attribute: the AD mapping's names (sAMAccountName, …) are not slapd's.
    let attrs: Vec<String> = Vec::new();
    let mut report = ImportReport::default();
    let mut from = space.cookie(&c.name).map_err(RunError::Space)?;
    let held = space.live(&c.name).map_err(RunError::Space)?;
    let pass = loop {
        report.full = from.is_empty();
        match openldap::pass(
            &mut session.ldap,
            &c.base_dn,
            &attrs,
            &from,
            &held,
            c.timeout,
        )
        .await
        {
            Ok(p) => break p,
            // slapd answers e-syncRefreshRequired (4096) to a cookie it cannot continue
            // from: start over from nothing, once, and say so.
            Err(PassError::Refused { rc: 4096, .. })
                if !from.is_empty() && !report.cookie_refused =>
            {
                report.cookie_refused = true;
                from = Cookie::default();
            }
            Err(e) => return Err(RunError::ContentSync(e)),
        }
    };
    let _ = session.ldap.unbind().await;
    report.pages = 1;
    report.entries = pass.messages;
    let mut ok = Vec::with_capacity(pass.entries.len());
    for e in pass.entries {
        match e {
            Ok(e) => ok.push(e),
            Err(e) => report.errors.push(e),
        }
    }
    report.merged = space
        .merge_page(&c.name, &ok, &pass.cookie)
        .map_err(RunError::Space)?;
    progress(report.entries);
    report.elapsed = started.elapsed();
    Ok(report)
}
