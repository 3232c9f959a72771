//! Pass 2 of the streaming planner: the changes a batch at a time, and the sink form.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;

use super::{Planner, Summary, PAGE};
use crate::ad::entry::Guid;
use crate::ad::map;
use crate::config::{Connector, DeleteThreshold};
use crate::plan::{diff, Change, Exported};
use crate::space::{ConnectorSpace, Held, SpaceError};

/// Pass 2: the plan's changes a batch at a time — additions and updates in the objects'
/// GUID order, then the deletions in anchor order. Memory holds one page of objects and
/// the batch being built.
pub struct Changes<'a> {
    p: Planner<'a>,
    /// The last object read from the space.
    cursor: Option<Guid>,
    page: VecDeque<Held>,
    objects_done: bool,
    next_delete: usize,
    /// Objects planned so far (in scope, and deletions).
    done: u64,
}

impl fmt::Debug for Changes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changes")
            .field("planner", &self.p)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<'a> Changes<'a> {
    pub(super) fn new(p: Planner<'a>) -> Self {
        Self {
            p,
            cursor: None,
            page: VecDeque::new(),
            objects_done: false,
            next_delete: 0,
            done: 0,
        }
    }

    /// Up to `n` more changes (at least one is asked for); empty when the plan is done.
    pub fn next_batch(&mut self, n: usize) -> Result<Vec<Change>, SpaceError> {
        let n = n.max(1);
        let mut out = Vec::new();
        while out.len() < n {
            if let Some(h) = self.page.pop_front() {
                out.extend(self.change(h)?);
                continue;
            }
            if !self.objects_done {
                let page =
                    self.p
                        .space
                        .objects_after(&self.p.c.name, self.cursor.as_ref(), PAGE)?;
                self.objects_done = page.len() < PAGE;
                if let Some(last) = page.last() {
                    self.cursor = Some(last.guid);
                }
                self.page = page.into();
                continue;
            }
            let Some(&(anchor, why)) = self.p.deletes.get(self.next_delete) else {
                break;
            };
            self.next_delete += 1;
            self.done += 1;
            out.extend(self.p.deletion(&anchor, why)?);
        }
        Ok(out)
    }

    /// Objects planned so far and in all (in scope, and deletions): for a progress line.
    pub fn progress(&self) -> (u64, u64) {
        (self.done, self.p.in_scope + self.p.deletes.len() as u64)
    }

    /// What the plan holds besides its changes (additions and updates so far).
    pub fn summary(&self) -> &Summary {
        &self.p.summary
    }

    /// The summary, once the changes are all taken.
    pub fn into_summary(self) -> Summary {
        self.p.summary
    }

    fn change(&mut self, h: Held) -> Result<Option<Change>, SpaceError> {
        if h.deleted {
            return Ok(None);
        }
        let Some((i, e)) = self.p.entry(&h.guid).map(|(i, e)| (i, *e)) else {
            return Ok(None);
        };
        if !self.p.exported_here(i) {
            return Ok(None);
        }
        self.done += 1;
        let Ok(Some(m)) = map::map(h.guid, &h.dn, &h.attrs, &self.p.mapping) else {
            return Ok(None);
        };
        drop(h);
        let object = self.p.exported(m)?;
        let anchor = e.anchor;
        let was = self
            .p
            .space
            .exported_body(&self.p.c.name, &anchor)?
            .and_then(|b| serde_json::from_str::<Exported>(&b).ok());
        Ok(match was {
            None => {
                self.p.summary.adds += 1;
                Some(Change::Add { anchor, object })
            }
            Some(was) if was == object => None,
            Some(was) => {
                self.p.summary.updates += 1;
                Some(Change::Update {
                    anchor,
                    diff: diff(&was, &object),
                    object,
                })
            }
        })
    }
}

/// Why a streamed plan stopped: the space failed, or the sink did.
#[derive(Debug, thiserror::Error)]
pub enum PlanStreamError<E> {
    /// The connector space failed.
    #[error(transparent)]
    Space(#[from] SpaceError),
    /// The sink refused a change.
    #[error("{0}")]
    Sink(E),
}

/// Plans `c`'s export and hands each change to `sink` as it is found (additions and updates
/// in GUID order, then deletions). When the threshold stops the plan (and not every
/// deletion is in `approved`) the sink is not called at all.
pub fn plan_streaming<E: fmt::Display>(
    space: &ConnectorSpace,
    c: &Connector,
    threshold: DeleteThreshold,
    approved: &BTreeSet<Guid>,
    mut sink: impl FnMut(Change) -> Result<(), E>,
) -> Result<Summary, PlanStreamError<E>> {
    let mut changes = match Planner::new(space, c, threshold, approved)?.into_changes() {
        Ok(changes) => changes,
        Err(stopped) => return Ok(stopped.planner.summary),
    };
    loop {
        let batch = changes.next_batch(PAGE)?;
        if batch.is_empty() {
            return Ok(changes.into_summary());
        }
        for ch in batch {
            sink(ch).map_err(PlanStreamError::Sink)?;
        }
    }
}
