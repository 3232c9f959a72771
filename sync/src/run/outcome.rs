//! What an import stage reports: how it went ([`ImportReport`]) and why it stopped
//! ([`RunError`]). Apart from [`crate::run`] so that the per-directory import stages
//! (OpenLDAP's in [`crate::openldap`]) report in the same words without importing the
//! stage that calls them.

use std::fmt;
use std::time::Duration;

use crate::ad::entry::EntryError;
use crate::ad::import::ImportError;
use crate::connect::ConnectError;
use crate::space::{Merged, SpaceError};

/// How one connector's import went.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// The pass started without a cookie.
    pub full: bool,
    /// The stored cookie was refused by the DC, so the pass was a full import instead.
    pub cookie_refused: bool,
    /// The configuration now reads attributes the copy was not imported with, so the pass
    /// was a full import instead.
    pub attributes_grew: bool,
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
            } else if self.attributes_grew {
                " (the mapping or filter reads attributes the copy lacked: imported everything again)"
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
    /// On-demand sync found no object (or more than one) for what was asked.
    NotFound(String),
    /// The object read is malformed.
    Entry(EntryError),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotBuilt(what) => write!(f, "{what} is not built yet"),
            Self::Connect(e) => e.fmt(f),
            Self::Import(e) => e.fmt(f),
            Self::ContentSync(e) => e.fmt(f),
            Self::Space(e) => e.fmt(f),
            Self::NotFound(t) => write!(
                f,
                "no single object matches {t:?} (give a DN, an objectGUID or a userPrincipalName)"
            ),
            Self::Entry(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RunError {}
