//! The import stage for an OpenLDAP connector (what [`crate::run`] does for AD): a
//! content-sync pass from the space's cookie when the server offers it, else the
//! `modifyTimestamp` fallback, merged into the connector space.

use std::time::Instant;

use crate::ad::dirsync::Cookie;
use crate::config::Connector;
use crate::connect::connect;
use crate::run::outcome::{ImportReport, RunError};
use crate::space::{ConnectorSpace, Merged, SpaceError};

/// Imports an OpenLDAP connector: by content sync when the server offers it (or
/// `delta = "content_sync"`), else (or with `delta = "modify_timestamp"`) by the
/// `modifyTimestamp` fallback. A cookie of the other mode is no watermark for this one: the
/// pass is then a full import.
pub(crate) async fn import(
    c: &Connector,
    space: &ConnectorSpace,
    mut progress: impl FnMut(u64),
) -> Result<ImportReport, RunError> {
    use crate::config::OpenLdapDelta;
    use crate::openldap::{self, PassError};
    let started = Instant::now();
    let mut session = connect(c).await.map_err(RunError::Connect)?;
    let offered = session.root.supports(openldap::SYNC_REQUEST_OID);
    let by_timestamp = match c.delta {
        OpenLdapDelta::ModifyTimestamp => true,
        OpenLdapDelta::Auto => !offered,
        OpenLdapDelta::ContentSync if offered => false,
        OpenLdapDelta::ContentSync => {
            let _ = session.ldap.unbind().await;
            return Err(RunError::ContentSync(PassError::NoContentSync));
        }
    };
    // Every user attribute (`*`), and by name what the mapping and the filter read: some
    // of it is operational (entryUUID, ppolicy's pwdAccountLockedTime), which `*` leaves
    // out; the fallback's watermark is operational too.
    let mut attrs = c.import_attributes();
    attrs.push("*".to_owned());
    if by_timestamp {
        attrs.push("modifyTimestamp".to_owned());
    }
    let mut report = ImportReport::default();
    let mut from = space.cookie(&c.name).map_err(RunError::Space)?;
    let mode_matches = openldap::mts::Watermark::from_cookie(&from).is_some() == by_timestamp;
    if !from.is_empty() && !mode_matches {
        from = Cookie::default();
    } else if !from.is_empty()
        && !space
            .holds_attributes(&c.name, &attrs)
            .map_err(RunError::Space)?
    {
        // A copy imported without some of them (an older release, or a new override): a
        // delta would never bring them for unchanged entries (a lock would stay unseen).
        report.attributes_grew = true;
        from = Cookie::default();
    }
    let r = if by_timestamp {
        by_modify_timestamp(
            c,
            space,
            &mut session.ldap,
            &attrs,
            &from,
            &mut report,
            &mut progress,
        )
        .await
    } else {
        content_sync(c, space, &mut session.ldap, &attrs, from, &mut report).await
    };
    let _ = session.ldap.unbind().await;
    r?;
    if report.full {
        space
            .set_attributes(&c.name, &attrs)
            .map_err(RunError::Space)?;
    }
    progress(report.entries);
    report.elapsed = started.elapsed();
    Ok(report)
}

/// slapd sends a changed entry whole, and merging keeps held attributes a page does not
/// name (DirSync sends only what changed): an attribute the entry no longer has (a lock
/// cleared, a value removed) is named empty.
fn whole(
    c: &Connector,
    space: &ConnectorSpace,
    mut e: crate::ad::entry::Entry,
) -> Result<crate::ad::entry::Entry, SpaceError> {
    if !e.deleted {
        if let Some(h) = space.object(&c.name, &e.guid)? {
            for name in h.attrs.into_keys() {
                e.attrs.entry(name).or_default();
            }
        }
    }
    Ok(e)
}

/// One refreshOnly content-sync pass from `from`, merged with its cookie in one
/// transaction (a present phase is only complete at its end, so deletions can only be
/// inferred once the whole answer is read).
async fn content_sync(
    c: &Connector,
    space: &ConnectorSpace,
    ldap: &mut ldap3::Ldap,
    attrs: &[String],
    mut from: Cookie,
    report: &mut ImportReport,
) -> Result<(), RunError> {
    use crate::openldap::{self, PassError};
    let held = space.live(&c.name).map_err(RunError::Space)?;
    let pass = loop {
        report.full = from.is_empty();
        match openldap::pass(ldap, &c.base_dn, attrs, &from, &held, c.timeout).await {
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
    report.pages = 1;
    report.entries = pass.messages;
    let mut ok = Vec::with_capacity(pass.entries.len());
    for e in pass.entries {
        match e {
            Ok(e) => ok.push(whole(c, space, e).map_err(RunError::Space)?),
            Err(e) => report.errors.push(e),
        }
    }
    report.merged = space
        .merge_page(&c.name, &ok, &pass.cookie)
        .map_err(RunError::Space)?;
    Ok(())
}

/// The fallback without content sync: the entries changed since the watermark (all of
/// them without one), merged page by page with the old cookie (a crash re-reads them; a
/// re-read changes nothing), then the entryUUIDs present now, and last the tombstones of
/// the held entries not among them with the advanced watermark. Memory: one page of
/// entries, and the present and held anchors (16 bytes each, the held ones with their DN).
async fn by_modify_timestamp(
    c: &Connector,
    space: &ConnectorSpace,
    ldap: &mut ldap3::Ldap,
    attrs: &[String],
    from: &Cookie,
    report: &mut ImportReport,
    progress: &mut impl FnMut(u64),
) -> Result<(), RunError> {
    use crate::openldap::mts::{self, ReadError, Watermark};
    let mark = Watermark::from_cookie(from);
    report.full = mark.is_none();
    let filter = mark
        .as_ref()
        .map_or_else(|| "(objectClass=*)".to_owned(), Watermark::filter);
    let mut present = std::collections::BTreeSet::new();
    let mut errors = Vec::new();
    let mut merged = Merged::default();
    let mut read = 0u64;
    let full = report.full;
    let r = mts::read(
        ldap,
        &c.base_dn,
        &filter,
        attrs,
        mts::PAGE,
        c.timeout,
        |page| {
            read += page.entries.len() as u64;
            if full {
                present.extend(page.anchors);
            }
            let mut ok = Vec::with_capacity(page.entries.len());
            for e in page.entries {
                match e {
                    Ok(e) => ok.push(whole(c, space, e)?),
                    Err(e) => errors.push(e),
                }
            }
            let m = space.merge_page(&c.name, &ok, from)?;
            merged.added += m.added;
            merged.changed += m.changed;
            merged.deleted += m.deleted;
            progress(read);
            Ok::<_, SpaceError>(())
        },
    )
    .await;
    report.errors.extend(errors);
    report.merged = merged;
    let r = match r {
        Ok(r) => r,
        Err(ReadError::Pass(e)) => return Err(RunError::ContentSync(e)),
        Err(ReadError::Handler(e)) => return Err(RunError::Space(e)),
    };
    report.pages = r.pages;
    report.entries = r.entries;
    // A full read named every present entry itself; a delta asks for the list. An entry
    // without a readable entryUUID makes a full read's list incomplete: then nothing is
    // inferred gone (the next delta's list decides).
    let infer = if report.full {
        !r.anchorless
    } else {
        present = mts::present(ldap, &c.base_dn, mts::PAGE, c.timeout)
            .await
            .map_err(RunError::ContentSync)?;
        true
    };
    let mut gone = Vec::new();
    if infer {
        let held = space.live(&c.name).map_err(RunError::Space)?;
        gone.extend(crate::openldap::tombstones(
            &held,
            held.keys().filter(|g| !present.contains(g)),
        ));
    }
    let next = mark.unwrap_or(Watermark(None)).advance(r.newest);
    let m = space
        .merge_page(&c.name, &gone, &next.cookie())
        .map_err(RunError::Space)?;
    report.merged.deleted += m.deleted;
    Ok(())
}
