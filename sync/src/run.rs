//! The import stage of a sync run: for one connector, connect, run a DirSync pass (AD) or an
//! RFC 4533 content-sync pass (OpenLDAP) from the connector space's watermark (none: a full
//! import) and merge it into the space. The planner (`plan`) and export (`export`, driven
//! by `cycle`) read the space this stage keeps current.

use std::fmt;
use std::time::{Duration, Instant};

use crate::ad::dirsync::Cookie;
use crate::ad::entry::EntryError;
use crate::ad::import::{self, ImportError};
use crate::config::{Connector, ConnectorKind};
use crate::connect::connect;
use crate::space::{ConnectorSpace, Merged, SpaceError};

pub(crate) mod outcome;

pub use outcome::{ImportReport, RunError};

/// Imports one connector into the space. `progress` is told the entries read so far after
/// each page.
pub async fn import(
    c: &Connector,
    space: &ConnectorSpace,
    progress: impl FnMut(u64),
) -> Result<ImportReport, RunError> {
    import_with(c, space, progress, |_| Ok(())).await
}

/// [`import`], and `merged` is given each page of an AD import once it is merged (the
/// first full import's early export takes its users from there).
pub(crate) async fn import_with(
    c: &Connector,
    space: &ConnectorSpace,
    mut progress: impl FnMut(u64),
    mut merged_page: impl FnMut(&[crate::ad::entry::Entry]) -> Result<(), SpaceError>,
) -> Result<ImportReport, RunError> {
    if c.kind == ConnectorKind::OpenLdap {
        return crate::openldap::import::import(c, space, progress).await;
    }
    let started = Instant::now();
    let mut session = connect(c).await.map_err(RunError::Connect)?;
    let attrs = c.import_attributes();
    let mut report = ImportReport::default();
    // The DC's USN before the pass: the next sweep starts above it (a change made during
    // the pass is then read twice, never missed).
    let usn_at_start = session.root.highest_committed_usn;
    // The domain's password age limit, for `password_expired` (AD computes it into
    // msDS-User-Account-Control-Computed, which neither DirSync nor a search of many
    // objects returns cheaply).
    let max_age = max_password_age(&mut session.ldap, &c.base_dn, c.timeout).await;
    space
        .set_max_password_age(&c.name, max_age)
        .map_err(RunError::Space)?;
    let mut from = space.cookie(&c.name).map_err(RunError::Space)?;
    if !from.is_empty()
        && !space
            .holds_attributes(&c.name, &attrs)
            .map_err(RunError::Space)?
    {
        // The mapping or the filter reads an attribute the copy was not imported with: a
        // delta would never bring it for unchanged objects.
        report.attributes_grew = true;
        from = Cookie::default();
    }
    loop {
        report.full = from.is_empty();
        // A full import over a copy that already holds objects (a refused cookie, a grown
        // attribute set): what the directory no longer has must not stay held. The live
        // GUIDs held now are kept aside, each one seen crossed off, and the rest marked
        // deleted at the end (16 bytes an object).
        let mut unseen: std::collections::BTreeSet<crate::ad::entry::Guid> = if report.full {
            space
                .live(&c.name)
                .map_err(RunError::Space)?
                .into_keys()
                .collect()
        } else {
            Default::default()
        };
        let mut sweep = true;
        let mut errors = Vec::new();
        let mut merged = Merged::default();
        let mut read = report.entries;
        let mut merging = Duration::ZERO;
        let pass_started = Instant::now();
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
                for e in &ok {
                    unseen.remove(&e.guid);
                }
                // An entry that could not be read is not known to be gone: it is crossed
                // off by the GUID its extended DN names, and without one there is no sweep.
                for e in &errors {
                    match e
                        .dn
                        .strip_prefix("<GUID=")
                        .and_then(|t| t.split_once('>'))
                        .and_then(|(g, _)| crate::ad::entry::Guid::parse(g).ok())
                    {
                        Some(g) => {
                            unseen.remove(&g);
                        }
                        None => sweep = false,
                    }
                }
                let t = Instant::now();
                let m = space.merge_page(&c.name, &ok, cookie)?;
                merging += t.elapsed();
                merged_page(&ok)?;
                merged.added += m.added;
                merged.changed += m.changed;
                merged.deleted += m.deleted;
                progress(read);
                Ok(())
            },
        )
        .await;
        // Where a pass's time goes: reading the directory, or merging into the space.
        tracing::debug!(
            connector = %c.name,
            full = report.full,
            total_ms = pass_started.elapsed().as_millis() as u64,
            merging_ms = merging.as_millis() as u64,
            "timing: import pass"
        );
        if r.is_ok() && sweep && !unseen.is_empty() {
            let gone: Vec<_> = unseen.into_iter().collect();
            merged.deleted += space
                .mark_deleted(&c.name, &gone)
                .map_err(RunError::Space)?;
        }
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
    if report.full {
        space
            .set_attributes(&c.name, &attrs)
            .map_err(RunError::Space)?;
    }
    // Moves DirSync did not report (Samba): what changed since the mark, by DN. After a
    // full pass there is nothing to catch up on; the mark is taken either way.
    if let (Some(usn), Some(dc)) = (
        usn_at_start,
        session
            .root
            .dns_host_name
            .clone()
            .or_else(|| Some(session.server.url.clone())),
    ) {
        if !report.full {
            let from = match space.usn_mark(&c.name).map_err(RunError::Space)? {
                Some((d, u)) if d.eq_ignore_ascii_case(&dc) => u.saturating_add(1),
                // Another DC's numbers (failover), or none yet: sweep everything.
                _ => 1,
            };
            let mut moved = 0;
            crate::ad::usn::sweep(&mut session.ldap, &c.base_dn, from, c.timeout, |page| {
                moved += space.move_objects(&c.name, &page)?;
                Ok::<_, SpaceError>(())
            })
            .await
            .map_err(RunError::Import)?;
            report.merged.changed += moved;
        }
        space
            .set_usn_mark(&c.name, &dc, usn)
            .map_err(RunError::Space)?;
    }
    let _ = session.ldap.unbind().await;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// `maxPwdAge` of the domain object at `base_dn`, in seconds; `None` when passwords never
/// expire (0, or the minimum value AD uses for "never") or it cannot be read.
async fn max_password_age(ldap: &mut ldap3::Ldap, base_dn: &str, timeout: Duration) -> Option<i64> {
    let r = tokio::time::timeout(
        timeout,
        ldap.search(
            base_dn,
            ldap3::Scope::Base,
            "(objectClass=*)",
            vec!["maxPwdAge"],
        ),
    )
    .await
    .ok()?
    .ok()?;
    let (entries, _) = r.success().ok()?;
    let e = ldap3::SearchEntry::construct(entries.into_iter().next()?);
    let v: i64 = e.attrs.get("maxPwdAge")?.first()?.trim().parse().ok()?;
    (v < 0 && v != i64::MIN).then(|| v.unsigned_abs() as i64 / 10_000_000)
}

/// What on-demand sync of one object found at each step.
#[derive(Debug, Clone)]
pub struct ObjectReport {
    /// The object as read now (its whole attribute set).
    pub entry: crate::ad::entry::Entry,
    /// The server it was read from.
    pub server: String,
    /// What mapping made of it (`None`: not a kind that is imported).
    pub mapped: Option<crate::ad::map::Mapped>,
    /// The scope decision.
    pub scope: crate::scope::Decision,
    /// The plan's change for it, if any (`None`: the endpoint is up to date with it).
    pub change: Option<crate::plan::Change>,
    /// If it is quarantined, why.
    pub quarantined: Option<crate::plan::Quarantined>,
    /// What export did with the change (filled in by the caller that exports it).
    pub export: Option<String>,
}

impl fmt::Display for ObjectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::plan::Change;
        writeln!(
            f,
            "object {} (objectGUID {})",
            self.entry.dn, self.entry.guid
        )?;
        writeln!(
            f,
            "  import: read from {} ({} attributes){}",
            self.server,
            self.entry.attrs.len(),
            if self.entry.deleted {
                ", a tombstone"
            } else {
                ""
            }
        )?;
        match &self.mapped {
            None => writeln!(
                f,
                "  map: not a kind that is imported (user, group, contact, computer, OU)"
            )?,
            Some(m) => {
                write!(f, "  map: {} anchored on {}", m.kind, m.anchor)?;
                for (field, v) in &m.fields {
                    write!(f, ", {} {:?}", field.config_name(), v)?;
                }
                writeln!(f, ", enabled {}", m.enabled)?;
            }
        }
        writeln!(f, "  scope: {}", self.scope)?;
        match (&self.quarantined, &self.change) {
            (Some(q), _) => writeln!(
                f,
                "  plan: quarantined: {} {:?} is already claimed by {} ({})",
                q.attribute, q.value, q.holder_dn, q.holder_anchor
            )?,
            (None, None) => writeln!(f, "  plan: nothing to change")?,
            (None, Some(Change::Add { .. })) => writeln!(f, "  plan: add")?,
            (None, Some(Change::Update { diff, .. })) => {
                writeln!(f, "  plan: update")?;
                for (name, before, after) in diff {
                    writeln!(f, "    {name}: {before:?} -> {after:?}")?;
                }
            }
            (None, Some(Change::Delete { why, .. })) => writeln!(f, "  plan: delete ({why})")?,
        }
        match &self.export {
            Some(e) => writeln!(f, "  export: {e}"),
            None => writeln!(f, "  export: not sent (nothing to change)"),
        }
    }
}

/// On-demand sync of one object: reads it now (by DN, by objectGUID, or by UPN), puts its
/// whole current copy in the connector space, and says what each step decides.
pub async fn one_object(
    c: &Connector,
    space: &ConnectorSpace,
    threshold: crate::config::DeleteThreshold,
    target: &str,
) -> Result<ObjectReport, RunError> {
    use ldap3::{Scope, SearchEntry};
    if c.kind == ConnectorKind::OpenLdap {
        return Err(RunError::NotBuilt("on-demand sync for OpenLDAP"));
    }
    let mut session = connect(c).await.map_err(RunError::Connect)?;
    let attrs = c.import_attributes();
    let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
    let (base, scope, filter) = if crate::ad::entry::Guid::parse(target).is_ok() {
        (
            format!("<GUID={target}>"),
            Scope::Base,
            "(objectClass=*)".to_owned(),
        )
    } else if target.contains('=') {
        (target.to_owned(), Scope::Base, "(objectClass=*)".to_owned())
    } else {
        (
            c.base_dn.clone(),
            Scope::Subtree,
            format!("(userPrincipalName={})", ldap3::ldap_escape(target)),
        )
    };
    let found = tokio::time::timeout(
        c.timeout,
        session
            .ldap
            .with_controls(vec![import::extended_dn()])
            .search(&base, scope, &filter, attrs),
    )
    .await
    .map_err(|_| RunError::Import(ImportError::Timeout(c.timeout)))?
    .map_err(|e| RunError::Import(ImportError::Ldap(e.to_string())))?;
    let ldap3::SearchResult(entries, res) = found;
    if res.rc != 0 && res.rc != 32 {
        return Err(RunError::Import(ImportError::Refused {
            rc: res.rc,
            text: res.text,
        }));
    }
    let mut entries = entries.into_iter();
    let (Some(first), None) = (entries.next(), entries.next()) else {
        return Err(RunError::NotFound(target.to_owned()));
    };
    let entry = crate::ad::entry::Entry::from_search(&SearchEntry::construct(first))
        .map_err(RunError::Entry)?;
    let _ = session.ldap.unbind().await;
    space.put_object(&c.name, &entry).map_err(RunError::Space)?;
    let mapped =
        crate::ad::map::map(entry.guid, &entry.dn, &entry.attrs, &c.mapping).map_err(|e| {
            RunError::Entry(EntryError {
                dn: entry.dn.clone(),
                attribute: Some(e.attribute.to_owned()),
                message: e.message,
            })
        })?;
    let plan = crate::plan::plan(space, c, threshold).map_err(RunError::Space)?;
    let anchor = mapped.as_ref().map(|m| m.anchor);
    let change = plan.changes.iter().find(|ch| {
        let a = match ch {
            crate::plan::Change::Add { anchor, .. }
            | crate::plan::Change::Update { anchor, .. }
            | crate::plan::Change::Delete { anchor, .. } => anchor,
        };
        Some(*a) == anchor
    });
    let quarantined = plan
        .quarantined
        .iter()
        .find(|q| Some(q.anchor) == anchor)
        .cloned();
    Ok(ObjectReport {
        scope: anchor
            .and_then(|a| plan.decisions.get(&a).cloned())
            .unwrap_or_else(|| crate::scope::decide(c, &entry.dn, &entry.attrs)),
        server: session.server.url.clone(),
        change: change.cloned(),
        quarantined,
        mapped,
        entry,
        export: None,
    })
}
