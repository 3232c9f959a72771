//! The streaming planner: a run's changes in memory that grows with a compact index per
//! object (GUID, anchor, scope), not with the objects. Pass 1 reads every object once and
//! settles scope, `member_of`, quarantine and the deletions — so the threshold's verdict —
//! before anything is emitted; pass 2 reads them again a page at a time and yields each
//! addition and update as it is found, then the deletions.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::{Hash, Hasher};

use super::{Change, Exported, PlanError, Quarantined, Verdict};
use crate::ad::entry::Guid;
use crate::ad::map::{self, Field, Kind};
use crate::config::{Connector, DeleteThreshold};
use crate::scope::{self, Decision};
use crate::space::{ConnectorSpace, SpaceError};

/// How many objects pass 2 reads from the space at a time.
const PAGE: usize = 128;

/// A scope decision in a few bytes: the index holds one per object, and the strings a
/// [`Decision`] carries are the connector's own (`exclude_ous`, `member_of`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    In,
    OutsideBase,
    SystemObject,
    NotIncluded,
    /// The position in `exclude_ous`.
    Excluded(u32),
    Filtered,
    NotMember,
    Quarantined,
}

impl Scope {
    fn of(c: &Connector, d: Decision) -> Self {
        match d {
            Decision::In => Self::In,
            Decision::OutsideBase => Self::OutsideBase,
            Decision::SystemObject => Self::SystemObject,
            Decision::NotIncluded => Self::NotIncluded,
            // `scope::decide` names one of `exclude_ous`, so the position is found.
            Decision::Excluded(ou) => Self::Excluded(
                c.exclude_ous
                    .iter()
                    .position(|o| *o == ou)
                    .unwrap_or_default() as u32,
            ),
            Decision::Filtered => Self::Filtered,
            Decision::NotMember(_) => Self::NotMember,
            Decision::Quarantined => Self::Quarantined,
        }
    }

    fn decision(self, c: &Connector) -> Decision {
        match self {
            Self::In => Decision::In,
            Self::OutsideBase => Decision::OutsideBase,
            Self::SystemObject => Decision::SystemObject,
            Self::NotIncluded => Decision::NotIncluded,
            Self::Excluded(i) => {
                Decision::Excluded(c.exclude_ous.get(i as usize).cloned().unwrap_or_default())
            }
            Self::Filtered => Decision::Filtered,
            Self::NotMember => Decision::NotMember(c.member_of.clone().unwrap_or_default()),
            Self::Quarantined => Decision::Quarantined,
        }
    }
}

/// What pass 1 keeps of one mapped object.
#[derive(Debug, Clone, Copy)]
struct Entry {
    guid: Guid,
    anchor: Guid,
    scope: Scope,
}

/// Why an exported object is to be deleted.
#[derive(Debug, Clone, Copy)]
enum Why {
    Scope(Scope),
    Tombstone,
    Gone,
}

/// A reference as written in the source: AD's extended form names a GUID, else a DN.
enum Ref<'a> {
    Guid(Option<Guid>),
    Dn(&'a str),
}

fn parse_ref(r: &str) -> Ref<'_> {
    match r.strip_prefix("<GUID=").and_then(|t| t.split_once('>')) {
        Some((g, _)) => Ref::Guid(Guid::parse(g).ok()),
        None => Ref::Dn(r),
    }
}

/// A group's member reference kept for `member_of` until every object is indexed.
enum Member {
    Guid(Guid),
    Dn(Box<str>),
}

/// The two attributes no two exported objects may share.
pub(crate) const CLAIMED: [Field; 2] = [Field::Upn, Field::Mail];

pub(crate) fn claimed(m: &map::Mapped, f: Field) -> Option<String> {
    m.fields
        .get(&f)
        .and_then(|v| v.first())
        .map(|v| v.to_ascii_lowercase())
}

/// Claims are indexed by a hash of the value, not the value; a shared hash is checked
/// against the objects themselves, so a collision costs a lookup, never a wrong verdict.
fn hash(v: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// What a plan holds besides its changes. The counts of additions and updates grow as
/// pass 2 finds them; the deletions are known once pass 1 is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Additions emitted so far.
    pub adds: u64,
    /// Updates emitted so far.
    pub updates: u64,
    /// Deletions the plan holds.
    pub deletes: u64,
    /// Objects left out because they could not be mapped.
    pub errors: Vec<PlanError>,
    /// Objects left out because another object claims their UPN or mail.
    pub quarantined: Vec<Quarantined>,
    /// How many objects were exported before this plan.
    pub exported_before: u64,
    /// The deletion threshold's verdict (after approvals).
    pub verdict: Verdict,
}

/// A plan the deletion threshold stopped: nothing of it may be exported.
#[derive(Debug)]
pub struct Stopped<'a> {
    /// The plan (its deletions, to hold for approval and list).
    pub planner: Planner<'a>,
    /// The deletions it holds.
    pub deletes: u64,
    /// The limit they exceed, in words.
    pub limit: String,
}

/// A connector's plan after pass 1: scope, quarantine, deletions and verdict settled.
pub struct Planner<'a> {
    space: &'a ConnectorSpace,
    c: &'a Connector,
    /// The connector's mapping with its domain's password policy as last imported.
    pub(super) mapping: map::Mapping,
    /// Every mapped object, in GUID order.
    entries: Vec<Entry>,
    /// Positions in `entries`, by (anchor, position).
    by_anchor: Vec<u32>,
    /// The deletions, in anchor order.
    deletes: Vec<(Guid, Why)>,
    /// Objects pass 2 exports (in scope, one per anchor).
    in_scope: u64,
    summary: Summary,
}

impl fmt::Debug for Planner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Planner")
            .field("connector", &self.c.name)
            .field("objects", &self.entries.len())
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

impl<'a> Planner<'a> {
    /// Pass 1 over `c`'s space. A verdict of stop becomes go when every deletion is in
    /// `approved` (and there are approvals: `causeway sync approve`).
    pub fn new(
        space: &'a ConnectorSpace,
        c: &'a Connector,
        threshold: DeleteThreshold,
        approved: &BTreeSet<Guid>,
    ) -> Result<Self, SpaceError> {
        let mapping = c
            .mapping
            .clone()
            .with_max_password_age(space.max_password_age(&c.name)?);
        let mut entries: Vec<Entry> = Vec::new();
        let mut errors = Vec::new();
        let mut tombstones: Vec<Guid> = Vec::new();
        let mut claims: [Vec<(u64, u32)>; 2] = Default::default();
        let mut groups: HashMap<Guid, Vec<Member>> = HashMap::new();
        space.for_each_object(&c.name, |h| {
            if h.deleted {
                tombstones.push(h.guid);
                return Ok::<(), SpaceError>(());
            }
            match map::map(h.guid, &h.dn, &h.attrs, &mapping) {
                Ok(Some(m)) => {
                    let scope = Scope::of(c, scope::decide(c, &h.dn, &h.attrs));
                    let pos = entries.len() as u32;
                    if scope == Scope::In {
                        for (list, f) in claims.iter_mut().zip(CLAIMED) {
                            if let Some(v) = claimed(&m, f) {
                                list.push((hash(&v), pos));
                            }
                        }
                    }
                    if c.member_of.is_some() && m.kind == Kind::Group {
                        let refs = m.members.iter().filter_map(|r| match parse_ref(r) {
                            Ref::Guid(g) => g.map(Member::Guid),
                            Ref::Dn(d) => Some(Member::Dn(d.into())),
                        });
                        groups.insert(m.guid, refs.collect());
                    }
                    entries.push(Entry {
                        guid: m.guid,
                        anchor: m.anchor,
                        scope,
                    });
                }
                Ok(None) => {}
                Err(error) => errors.push(PlanError { dn: h.dn, error }),
            }
            Ok(())
        })?;
        let mut by_anchor: Vec<u32> = (0..entries.len() as u32).collect();
        by_anchor.sort_unstable_by_key(|&p| (entries[p as usize].anchor, p));
        let mut p = Self {
            space,
            c,
            mapping,
            entries,
            by_anchor,
            deletes: Vec::new(),
            in_scope: 0,
            summary: Summary {
                adds: 0,
                updates: 0,
                deletes: 0,
                errors,
                quarantined: Vec::new(),
                exported_before: 0,
                verdict: Verdict::Go,
            },
        };
        if let Some(group) = &c.member_of {
            p.scope_to_members(group, &groups)?;
        }
        drop(groups);
        p.quarantine(claims)?;
        p.in_scope = (0..p.entries.len()).filter(|&i| p.exported_here(i)).count() as u64;
        p.find_deletions(&tombstones)?;
        p.summary.verdict = verdict(p.summary.deletes, p.summary.exported_before, threshold);
        if matches!(p.summary.verdict, Verdict::Stop { .. })
            && !approved.is_empty()
            && p.deletions().is_subset(approved)
        {
            tracing::info!(connector = %c.name, deletions = approved.len(), "deletions over the threshold were approved; exporting them");
            p.summary.verdict = Verdict::Go;
        }
        Ok(p)
    }

    /// What the plan holds besides its changes.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// The scope decision for each mapped object, by export anchor.
    pub fn decisions(&self) -> BTreeMap<Guid, Decision> {
        self.entries
            .iter()
            .map(|e| (e.anchor, e.scope.decision(self.c)))
            .collect()
    }

    /// The anchors the plan deletes.
    pub fn deletions(&self) -> BTreeSet<Guid> {
        self.deletes.iter().map(|(a, _)| *a).collect()
    }

    /// The first `limit` deletions, with what was exported (to list a stopped run).
    pub fn listed_deletions(&self, limit: usize) -> Result<Vec<Change>, SpaceError> {
        let mut out = Vec::new();
        for (a, why) in self.deletes.iter().take(limit) {
            out.extend(self.deletion(a, *why)?);
        }
        Ok(out)
    }

    /// Pass 2, for export; refused when the threshold stopped the plan.
    pub fn into_changes(self) -> Result<Changes<'a>, Box<Stopped<'a>>> {
        match self.summary.verdict.clone() {
            Verdict::Go => Ok(self.review()),
            Verdict::Stop { deletes, limit } => Err(Box::new(Stopped {
                planner: self,
                deletes,
                limit,
            })),
        }
    }

    /// Pass 2 whatever the verdict, to show a plan (`causeway sync plan`).
    pub fn review(self) -> Changes<'a> {
        Changes::new(self)
    }

    fn entry(&self, guid: &Guid) -> Option<(usize, &Entry)> {
        let i = self.entries.binary_search_by(|e| e.guid.cmp(guid)).ok()?;
        Some((i, &self.entries[i]))
    }

    /// The positions of the objects that have `anchor`, in order.
    fn with_anchor(&self, anchor: &Guid) -> &[u32] {
        let key = |p: &u32| self.entries[*p as usize].anchor;
        let lo = self.by_anchor.partition_point(|p| key(p) < *anchor);
        let hi = self.by_anchor.partition_point(|p| key(p) <= *anchor);
        &self.by_anchor[lo..hi]
    }

    /// Whether object `i` is exported: in scope, and the last in-scope object with its
    /// anchor (two objects with one anchor export once, as the later one).
    fn exported_here(&self, i: usize) -> bool {
        let e = &self.entries[i];
        e.scope == Scope::In
            && self
                .with_anchor(&e.anchor)
                .iter()
                .rev()
                .find(|&&p| self.entries[p as usize].scope == Scope::In)
                == Some(&(i as u32))
    }

    /// The last mapped object whose DN is `dn` (ASCII case-insensitive) and that `keep`
    /// accepts.
    fn by_dn(&self, dn: &str, keep: impl Fn(&Entry) -> bool) -> Result<Option<Entry>, SpaceError> {
        Ok(self
            .space
            .guids_by_dn(&self.c.name, dn)?
            .iter()
            .rev()
            .filter_map(|g| self.entry(g).map(|(_, e)| *e))
            .find(|e| keep(e)))
    }

    /// `member_of`: objects that are not members of the group, directly or through nested
    /// groups, leave scope (the group itself stays). Breadth-first with a visited set, so a
    /// membership cycle ends.
    fn scope_to_members(
        &mut self,
        group: &str,
        groups: &HashMap<Guid, Vec<Member>>,
    ) -> Result<(), SpaceError> {
        let root = match parse_ref(group) {
            Ref::Guid(g) => g,
            Ref::Dn(d) => self.by_dn(d, |_| true)?.map(|e| e.guid),
        };
        let mut inside = HashSet::new();
        let mut queue: VecDeque<Guid> = root.into_iter().collect();
        while let Some(g) = queue.pop_front() {
            if !inside.insert(g) {
                continue;
            }
            for m in groups.get(&g).into_iter().flatten() {
                match m {
                    Member::Guid(x) => queue.push_back(*x),
                    Member::Dn(d) => queue.extend(self.by_dn(d, |_| true)?.map(|e| e.guid)),
                }
            }
        }
        for e in &mut self.entries {
            if e.scope == Scope::In && !inside.contains(&e.guid) {
                e.scope = Scope::NotMember;
            }
        }
        Ok(())
    }

    /// Two in-scope objects that claim the same UPN or mail address: the one already
    /// exported with it keeps it (else the one whose anchor sorts first); the other is
    /// quarantined — not exported, not deleted — until the conflict is fixed.
    fn quarantine(&mut self, claims: [Vec<(u64, u32)>; 2]) -> Result<(), SpaceError> {
        let mut out = Vec::new();
        for (mut list, field) in claims.into_iter().zip(CLAIMED) {
            list.retain(|&(_, p)| self.entries[p as usize].scope == Scope::In);
            list.sort_unstable();
            // Only objects that share a hash are read again, for their value and DN.
            let mut values: BTreeMap<String, Vec<(Guid, String)>> = BTreeMap::new();
            for run in list.chunk_by(|a, b| a.0 == b.0).filter(|r| r.len() > 1) {
                for &(_, p) in run {
                    let e = self.entries[p as usize];
                    let Some(h) = self.space.object(&self.c.name, &e.guid)? else {
                        continue;
                    };
                    if let Ok(Some(m)) = map::map(h.guid, &h.dn, &h.attrs, &self.mapping) {
                        if let Some(v) = claimed(&m, field) {
                            values.entry(v).or_default().push((e.anchor, h.dn));
                        }
                    }
                }
            }
            for (value, who) in values.into_iter().filter(|(_, w)| w.len() > 1) {
                let mut keyed = Vec::with_capacity(who.len());
                for (anchor, dn) in who {
                    let with = self.exported_with(&anchor, field.config_name(), &value)?;
                    keyed.push(((!with, anchor), dn));
                }
                keyed.sort_by_key(|(k, _)| *k);
                let ((_, holder_anchor), holder_dn) = &keyed[0];
                for ((_, anchor), dn) in &keyed[1..] {
                    out.push(Quarantined {
                        dn: dn.clone(),
                        anchor: *anchor,
                        attribute: field.config_name(),
                        value: value.clone(),
                        holder_dn: holder_dn.clone(),
                        holder_anchor: *holder_anchor,
                    });
                }
            }
        }
        for q in &out {
            if let Some(&p) = self.with_anchor(&q.anchor).first() {
                self.entries[p as usize].scope = Scope::Quarantined;
            }
        }
        self.summary.quarantined = out;
        Ok(())
    }

    fn exported_with(&self, anchor: &Guid, field: &str, value: &str) -> Result<bool, SpaceError> {
        Ok(self
            .space
            .exported_body(&self.c.name, anchor)?
            .and_then(|b| serde_json::from_str::<Exported>(&b).ok())
            .is_some_and(|e| {
                e.attrs
                    .get(field)
                    .is_some_and(|v| v.iter().any(|x| x.eq_ignore_ascii_case(value)))
            }))
    }

    /// Exported anchors that no in-scope object has: tombstones, objects out of scope, and
    /// objects no longer held. An object that cannot be mapped (or is quarantined) stays
    /// as it was exported: an error, not a deletion.
    fn find_deletions(&mut self, tombstones: &[Guid]) -> Result<(), SpaceError> {
        let anchors = self.space.exported_anchors(&self.c.name)?;
        self.summary.exported_before = anchors.len() as u64;
        let unmappable: HashSet<&str> = self
            .summary
            .errors
            .iter()
            .map(|e| e.dn.as_str())
            .chain(self.summary.quarantined.iter().map(|q| q.dn.as_str()))
            .collect();
        let mut deletes = Vec::new();
        for a in &anchors {
            let held = self.with_anchor(a);
            if held
                .iter()
                .any(|&p| self.entries[p as usize].scope == Scope::In)
            {
                continue;
            }
            let Some(was) = self
                .space
                .exported_body(&self.c.name, a)?
                .and_then(|b| serde_json::from_str::<Exported>(&b).ok())
            else {
                continue;
            };
            if unmappable.contains(was.dn.as_str()) {
                continue;
            }
            let why = match held.last() {
                Some(&p) => Why::Scope(self.entries[p as usize].scope),
                None if tombstones.binary_search(a).is_ok() => Why::Tombstone,
                None => Why::Gone,
            };
            deletes.push((*a, why));
        }
        self.summary.deletes = deletes.len() as u64;
        self.deletes = deletes;
        Ok(())
    }

    fn deletion(&self, anchor: &Guid, why: Why) -> Result<Option<Change>, SpaceError> {
        let Some(was) = self
            .space
            .exported_body(&self.c.name, anchor)?
            .and_then(|b| serde_json::from_str::<Exported>(&b).ok())
        else {
            return Ok(None);
        };
        let why = match why {
            Why::Scope(s) => s.decision(self.c).to_string(),
            Why::Tombstone => "deleted in the source".into(),
            Why::Gone => {
                "no longer in the source (deleted, or no longer a kind that is imported)".into()
            }
        };
        Ok(Some(Change::Delete {
            anchor: *anchor,
            was,
            why,
        }))
    }

    /// A reference as the anchor of the in-scope object it names. AD's extended form
    /// (`<GUID=…>;CN=…`) is resolved by objectGUID, so it survives the target's rename or
    /// move; a plain DN by DN. A member out of scope is left out of the group.
    fn resolve(&self, r: &str) -> Result<Option<String>, SpaceError> {
        let e = match parse_ref(r) {
            Ref::Guid(g) => g
                .and_then(|g| self.entry(&g).map(|(_, e)| *e))
                .filter(|e| e.scope == Scope::In),
            Ref::Dn(d) => self.by_dn(d, |e| e.scope == Scope::In)?,
        };
        Ok(e.map(|e| e.anchor.to_string()))
    }

    /// The exported form of an in-scope object: flat attributes, references as anchors.
    fn exported(&self, m: map::Mapped) -> Result<Exported, SpaceError> {
        let mut attrs = flat_attributes(&m);
        if let Some(r) = m.manager.as_deref() {
            if let Some(a) = self.resolve(r)? {
                attrs.insert("manager".into(), vec![a]);
            }
        }
        if m.kind == Kind::Group {
            let mut members = Vec::new();
            for r in &m.members {
                members.extend(self.resolve(r)?);
            }
            members.sort();
            if !members.is_empty() {
                attrs.insert("members".into(), members);
            }
        }
        Ok(Exported {
            kind: m.kind.as_str().to_owned(),
            dn: m.dn,
            attrs,
        })
    }
}

/// An object's exported attributes without its references (`manager`, `members`): what
/// needs no other object to be known. The first full import's early export
/// (`export::early`) sends users in this form as they are read.
pub(crate) fn flat_attributes(m: &map::Mapped) -> BTreeMap<String, Vec<String>> {
    let mut attrs: BTreeMap<String, Vec<String>> = m
        .fields
        .iter()
        .map(|(f, v)| (f.config_name().to_owned(), v.clone()))
        .collect();
    if matches!(m.kind, Kind::User | Kind::Device) {
        attrs.insert("enabled".into(), vec![m.enabled.to_string()]);
        if let Some(t) = m.account_expires {
            attrs.insert("account_expires".into(), vec![t.to_string()]);
        }
        if m.must_change_password {
            attrs.insert("must_change_password".into(), vec!["true".into()]);
        }
        if m.password_expired {
            attrs.insert("password_expired".into(), vec!["true".into()]);
        }
    }
    attrs
}

/// The deletion threshold's verdict on `n` deletions out of `exported_before`.
pub(super) fn verdict(n: u64, exported_before: u64, threshold: DeleteThreshold) -> Verdict {
    if threshold.count > 0 && n > u64::from(threshold.count) {
        Verdict::Stop {
            deletes: n,
            limit: format!("delete_threshold = {}", threshold.count),
        }
    } else if threshold.percent > 0
        && exported_before > 0
        && n * 100 > u64::from(threshold.percent) * exported_before
    {
        Verdict::Stop {
            deletes: n,
            limit: format!(
                "delete_threshold_percent = {} of {exported_before}",
                threshold.percent
            ),
        }
    } else {
        Verdict::Go
    }
}

mod changes;

pub use changes::{plan_streaming, Changes, PlanStreamError};

#[cfg(test)]
mod oracle;
#[cfg(test)]
mod tests;
