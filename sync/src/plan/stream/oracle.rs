//! The planner as it was before streaming (one pass over `ConnectorSpace::objects`, every
//! change in memory), kept only as the tests' reference: the streaming planner must agree
//! with it on every fixture.

use std::collections::{BTreeMap, HashMap};

use crate::ad::entry::Guid;
use crate::ad::map::{self, Field, Kind};
use crate::config::{Connector, DeleteThreshold};
use crate::plan::{diff, Change, Exported, Plan, PlanError, Quarantined};
use crate::scope::{self, Decision};
use crate::space::{ConnectorSpace, SpaceError};

/// Plans one connector's next export from its space.
pub(super) fn old_plan(
    space: &ConnectorSpace,
    c: &Connector,
    threshold: DeleteThreshold,
) -> Result<Plan, SpaceError> {
    let held = space.objects(&c.name)?;
    let before = space.exported(&c.name)?;
    let mut mapped = Vec::with_capacity(held.len());
    let mut errors = Vec::new();
    let mut tombstones = std::collections::BTreeSet::new();
    for h in &held {
        if h.deleted {
            tombstones.insert(h.guid);
            continue;
        }
        match map::map(h.guid, &h.dn, &h.attrs, &c.mapping) {
            Ok(Some(m)) => {
                let decision = scope::decide(c, &h.dn, &h.attrs);
                mapped.push((m, decision));
            }
            Ok(None) => {}
            Err(error) => errors.push(PlanError {
                dn: h.dn.clone(),
                error,
            }),
        }
    }
    if let Some(group) = &c.member_of {
        scope_to_members(&mut mapped, group);
    }
    let quarantined = quarantine(&mut mapped, &before);
    let decisions: BTreeMap<Guid, Decision> =
        mapped.iter().map(|(m, d)| (m.anchor, d.clone())).collect();
    // References are DNs in the source; the endpoint knows objects by anchor, and only
    // those in scope (a member out of scope is left out of the group).
    let in_scope = || {
        mapped
            .iter()
            .filter(|(_, d)| *d == Decision::In)
            .map(|(m, _)| m)
    };
    let by_dn: HashMap<String, Guid> = in_scope()
        .map(|m| (m.dn.to_ascii_lowercase(), m.anchor))
        .collect();
    let by_guid: HashMap<Guid, Guid> = in_scope().map(|m| (m.guid, m.anchor)).collect();
    // A reference in AD's extended form (`<GUID=…>;CN=…`) is resolved by objectGUID, so
    // it survives the target's rename or move (AD does not re-send the group then); a
    // plain DN is resolved by DN.
    let resolve = |r: &str| {
        match r.strip_prefix("<GUID=").and_then(|t| t.split_once('>')) {
            Some((g, _)) => Guid::parse(g).ok().and_then(|g| by_guid.get(&g)),
            None => by_dn.get(&r.to_ascii_lowercase()),
        }
        .map(Guid::to_string)
    };
    let mut desired: BTreeMap<Guid, Exported> = BTreeMap::new();
    let mut out_of_scope: BTreeMap<Guid, Decision> = BTreeMap::new();
    for (m, decision) in mapped {
        if decision != Decision::In {
            out_of_scope.insert(m.anchor, decision);
            continue;
        }
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
        }
        if let Some(a) = m.manager.as_deref().and_then(resolve) {
            attrs.insert("manager".into(), vec![a]);
        }
        if m.kind == Kind::Group {
            let mut members: Vec<String> = m.members.iter().filter_map(|d| resolve(d)).collect();
            members.sort();
            if !members.is_empty() {
                attrs.insert("members".into(), members);
            }
        }
        desired.insert(
            m.anchor,
            Exported {
                kind: m.kind.as_str().to_owned(),
                dn: m.dn,
                attrs,
            },
        );
    }

    let mut adds = Vec::new();
    let mut updates = Vec::new();
    let mut deletes = Vec::new();
    for (anchor, object) in &desired {
        match before
            .get(anchor)
            .and_then(|b| serde_json::from_str::<Exported>(b).ok())
        {
            None => adds.push(Change::Add {
                anchor: *anchor,
                object: object.clone(),
            }),
            Some(was) if was == *object => {}
            Some(was) => updates.push(Change::Update {
                anchor: *anchor,
                diff: diff(&was, object),
                object: object.clone(),
            }),
        }
    }
    let unmappable: Vec<&str> = errors
        .iter()
        .map(|e| e.dn.as_str())
        .chain(quarantined.iter().map(|q| q.dn.as_str()))
        .collect();
    for (anchor, body) in &before {
        if desired.contains_key(anchor) {
            continue;
        }
        let Ok(was) = serde_json::from_str::<Exported>(body) else {
            continue;
        };
        // An object we cannot map now stays as it was exported: an error, not a deletion.
        if unmappable.contains(&was.dn.as_str()) {
            continue;
        }
        let why = match out_of_scope.get(anchor) {
            Some(d) => d.to_string(),
            None if tombstones.contains(anchor) => "deleted in the source".into(),
            None => {
                "no longer in the source (deleted, or no longer a kind that is imported)".into()
            }
        };
        deletes.push(Change::Delete {
            anchor: *anchor,
            was,
            why,
        });
    }
    let n = deletes.len() as u64;
    let exported_before = before.len() as u64;
    // The threshold rule itself is the streaming planner's; what the oracle checks is
    // that both count the same deletions against the same exported set.
    let verdict = super::verdict(n, exported_before, threshold);
    let mut changes = adds;
    changes.extend(updates);
    changes.extend(deletes);
    Ok(Plan {
        changes,
        errors,
        quarantined,
        decisions,
        exported_before,
        verdict,
    })
}

/// The objectGUID a reference names: AD's extended form by its GUID, a plain DN by the
/// object that has it.
fn ref_guid(r: &str, by_dn: &HashMap<String, Guid>) -> Option<Guid> {
    match r.strip_prefix("<GUID=").and_then(|t| t.split_once('>')) {
        Some((g, _)) => Guid::parse(g).ok(),
        None => by_dn.get(&r.to_ascii_lowercase()).copied(),
    }
}

/// `member_of`: objects that are not members of the group, directly or through nested
/// groups, leave scope (the group itself stays). Nesting is followed breadth-first with a
/// visited set, so a membership cycle ends.
fn scope_to_members(mapped: &mut [(map::Mapped, Decision)], group: &str) {
    let by_dn: HashMap<String, Guid> = mapped
        .iter()
        .map(|(m, _)| (m.dn.to_ascii_lowercase(), m.guid))
        .collect();
    let members_of: HashMap<Guid, Vec<Guid>> = mapped
        .iter()
        .filter(|(m, _)| m.kind == Kind::Group)
        .map(|(m, _)| {
            (
                m.guid,
                m.members
                    .iter()
                    .filter_map(|r| ref_guid(r, &by_dn))
                    .collect(),
            )
        })
        .collect();
    let root = ref_guid(group, &by_dn);
    let mut inside = std::collections::HashSet::new();
    let mut queue: std::collections::VecDeque<Guid> = root.into_iter().collect();
    while let Some(g) = queue.pop_front() {
        if !inside.insert(g) {
            continue;
        }
        if let Some(ms) = members_of.get(&g) {
            queue.extend(ms.iter().copied());
        }
    }
    for (m, d) in mapped.iter_mut() {
        if *d == Decision::In && !inside.contains(&m.guid) {
            *d = Decision::NotMember(group.to_owned());
        }
    }
}

/// Two in-scope objects that claim the same UPN or mail address: the one already exported
/// with it keeps it (else the one whose anchor sorts first) and the other is quarantined —
/// not exported, not deleted, reported with both objects — until the conflict is fixed;
/// the next plan then exports it by itself.
fn quarantine(
    mapped: &mut [(map::Mapped, Decision)],
    before: &BTreeMap<Guid, String>,
) -> Vec<Quarantined> {
    let exported_with = |anchor: &Guid, field: &str, value: &str| {
        before
            .get(anchor)
            .and_then(|b| serde_json::from_str::<Exported>(b).ok())
            .is_some_and(|e| {
                e.attrs
                    .get(field)
                    .is_some_and(|v| v.iter().any(|x| x.eq_ignore_ascii_case(value)))
            })
    };
    let mut out = Vec::new();
    for field in [Field::Upn, Field::Mail] {
        let mut claims: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, (m, d)) in mapped.iter().enumerate() {
            if *d != Decision::In {
                continue;
            }
            if let Some(v) = m.fields.get(&field).and_then(|v| v.first()) {
                claims.entry(v.to_ascii_lowercase()).or_default().push(i);
            }
        }
        for (value, mut who) in claims.into_iter().filter(|(_, w)| w.len() > 1) {
            who.sort_by_key(|&i| {
                let m = &mapped[i].0;
                (
                    !exported_with(&m.anchor, field.config_name(), &value),
                    m.anchor,
                )
            });
            let holder = who[0];
            for &i in &who[1..] {
                out.push(Quarantined {
                    dn: mapped[i].0.dn.clone(),
                    anchor: mapped[i].0.anchor,
                    attribute: field.config_name(),
                    value: value.clone(),
                    holder_dn: mapped[holder].0.dn.clone(),
                    holder_anchor: mapped[holder].0.anchor,
                });
            }
        }
    }
    for q in &out {
        if let Some((_, d)) = mapped.iter_mut().find(|(m, _)| m.anchor == q.anchor) {
            *d = Decision::Quarantined;
        }
    }
    out
}
