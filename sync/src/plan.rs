//! The run planner: from a connector's space to the changes a run would export. Each held
//! object is mapped, scoped and given its references as anchors (`manager`, `member`), then
//! compared with what was last exported: additions, updates with each attribute's before
//! and after, and deletions (tombstones, objects that left scope, objects no longer held).
//! The deletion threshold is decided here, before anything is exported: a plan over it is
//! stopped and lists the objects it would delete.
//!
//! `causeway sync plan` prints a plan without exporting (the dry run); staging mode will
//! keep computing plans without ever exporting them. A run exports through [`stream`],
//! which plans a batch at a time in memory that holds an index, not the objects.

pub mod stream;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ad::entry::Guid;
use crate::ad::map::MapError;
use crate::config::{Connector, DeleteThreshold};
use crate::scope::Decision;
use crate::space::{ConnectorSpace, SpaceError};

/// An object as exported: flat attributes, references as anchors. Its JSON is what the
/// connector space records as acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exported {
    /// Its kind.
    pub kind: String,
    /// Its DN in the source (display and scoping; not an identity).
    pub dn: String,
    /// Attribute name → values (mapped fields, account state, references as anchors).
    pub attrs: BTreeMap<String, Vec<String>>,
}

/// One change a run would export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new object at the endpoint.
    Add {
        /// Its export anchor.
        anchor: Guid,
        /// What would be exported.
        object: Exported,
    },
    /// An object whose exported form changed.
    Update {
        /// Its export anchor.
        anchor: Guid,
        /// What would be exported now.
        object: Exported,
        /// Each changed attribute: name, before, after.
        diff: Vec<(String, Vec<String>, Vec<String>)>,
    },
    /// An object to delete at the endpoint (to its recycle bin).
    Delete {
        /// Its export anchor.
        anchor: Guid,
        /// What was exported last.
        was: Exported,
        /// Why: deleted in the source, out of scope (which rule), or no longer held.
        why: String,
    },
}

/// An object the planner could not map: it is left as last exported and reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    /// The object's DN.
    pub dn: String,
    /// What is wrong.
    pub error: MapError,
}

/// An object left out of the export because another in-scope object claims the same UPN
/// or mail address. It clears by itself once the conflict is fixed in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// The object left out.
    pub dn: String,
    /// Its anchor.
    pub anchor: Guid,
    /// The attribute both claim (`upn` or `mail`).
    pub attribute: &'static str,
    /// The value (lower-cased).
    pub value: String,
    /// The object that keeps the value.
    pub holder_dn: String,
    /// Its anchor.
    pub holder_anchor: Guid,
}

/// Whether a plan may be exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Within the deletion threshold.
    Go,
    /// Over it: nothing is exported until an administrator approves the run.
    Stop {
        /// Deletions the plan holds.
        deletes: u64,
        /// The limit they exceed, in words.
        limit: String,
    },
}

/// What a run would export for one connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The changes, additions first, then updates, then deletions.
    pub changes: Vec<Change>,
    /// Objects left out because they could not be mapped.
    pub errors: Vec<PlanError>,
    /// Objects left out because another object claims their UPN or mail.
    pub quarantined: Vec<Quarantined>,
    /// The scope decision for each mapped object, by export anchor (what
    /// `causeway sync object` shows).
    pub decisions: BTreeMap<Guid, Decision>,
    /// How many objects were exported before this plan.
    pub exported_before: u64,
    /// The deletion threshold's verdict.
    pub verdict: Verdict,
}

impl Plan {
    /// Counts of additions, updates and deletions.
    pub fn counts(&self) -> (u64, u64, u64) {
        self.changes.iter().fold((0, 0, 0), |(a, u, d), c| match c {
            Change::Add { .. } => (a + 1, u, d),
            Change::Update { .. } => (a, u + 1, d),
            Change::Delete { .. } => (a, u, d + 1),
        })
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, u, d) = self.counts();
        writeln!(
            f,
            "{a} to add, {u} to update, {d} to delete ({} exported before), {} unmappable, {} quarantined",
            self.exported_before,
            self.errors.len(),
            self.quarantined.len()
        )?;
        if let Verdict::Stop { deletes, limit } = &self.verdict {
            writeln!(
                f,
                "STOPPED: {deletes} deletions exceed the deletion threshold ({limit}); nothing will be exported until the run is approved"
            )?;
        }
        for c in &self.changes {
            match c {
                Change::Add { anchor, object } => {
                    writeln!(f, "+ {} {} ({anchor})", object.kind, object.dn)?
                }
                Change::Update {
                    anchor,
                    object,
                    diff,
                } => {
                    writeln!(f, "~ {} {} ({anchor})", object.kind, object.dn)?;
                    for (name, before, after) in diff {
                        writeln!(f, "    {name}: {before:?} -> {after:?}")?;
                    }
                }
                Change::Delete { anchor, was, why } => {
                    writeln!(f, "- {} {} ({anchor}): {why}", was.kind, was.dn)?
                }
            }
        }
        for e in &self.errors {
            writeln!(f, "! {}: {}", e.dn, e.error)?;
        }
        for q in &self.quarantined {
            writeln!(
                f,
                "! quarantined {} ({}): {} {:?} is already claimed by {} ({})",
                q.dn, q.anchor, q.attribute, q.value, q.holder_dn, q.holder_anchor
            )?;
        }
        Ok(())
    }
}

/// Plans one connector's next export from its space, as one [`Plan`] holding every change
/// (to show it: `causeway sync plan`, staging). A run exports through the streaming
/// [`stream::Planner`] instead, whose memory does not grow with the objects.
pub fn plan(
    space: &ConnectorSpace,
    c: &Connector,
    threshold: DeleteThreshold,
) -> Result<Plan, SpaceError> {
    let planner = stream::Planner::new(space, c, threshold, &BTreeSet::new())?;
    let decisions = planner.decisions();
    let mut stream = planner.review();
    let mut changes = Vec::new();
    loop {
        let batch = stream.next_batch(1024)?;
        if batch.is_empty() {
            break;
        }
        changes.extend(batch);
    }
    // Pass 2 finds additions and updates in GUID order; a plan lists additions, then
    // updates, each by anchor, then deletions (already by anchor).
    changes.sort_by_key(|c| match c {
        Change::Add { anchor, .. } => (0, *anchor),
        Change::Update { anchor, .. } => (1, *anchor),
        Change::Delete { anchor, .. } => (2, *anchor),
    });
    let s = stream.into_summary();
    Ok(Plan {
        changes,
        errors: s.errors,
        quarantined: s.quarantined,
        decisions,
        exported_before: s.exported_before,
        verdict: s.verdict,
    })
}

/// The attributes whose values differ, with before and after (the DN counts: a rename or
/// move is an update of the same anchor).
fn diff(was: &Exported, now: &Exported) -> Vec<(String, Vec<String>, Vec<String>)> {
    let mut out = Vec::new();
    if was.dn != now.dn {
        out.push(("dn".into(), vec![was.dn.clone()], vec![now.dn.clone()]));
    }
    let names: std::collections::BTreeSet<&String> =
        was.attrs.keys().chain(now.attrs.keys()).collect();
    for n in names {
        let (b, a) = (
            was.attrs.get(n).cloned().unwrap_or_default(),
            now.attrs.get(n).cloned().unwrap_or_default(),
        );
        if b != a {
            out.push((n.clone(), b, a));
        }
    }
    out
}

/// The exported form's JSON, as the connector space records it once acknowledged.
pub fn body(object: &Exported) -> String {
    serde_json::to_string(object).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests;
