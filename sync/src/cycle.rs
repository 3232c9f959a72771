//! One sync cycle for one connector, and the loop `causeway sync run` keeps: take (or
//! renew) the connector's lease, import the directory's changes into the connector space,
//! plan, and — unless staging, stopped by the deletion threshold or another host holds
//! the lease — export and record the run at the endpoint. A host without the lease keeps
//! importing, so it is warm when the lease passes to it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_proto::sync::{Counts, ObjectError, RunKind, RunReport, RunStatus, MAX_ERRORS};
use tokio::sync::Notify;

use crate::ad::entry::Guid;
use crate::config::{Connector, ConnectorKind, SyncConfig};
use crate::export::channel::{Channel, ChannelError};
use crate::export::{self, anchor_id, ExportError, ExportReport};
use crate::plan::stream::{Planner, Stopped, Summary};
use crate::plan::{self, Change, Plan, Verdict};
use crate::run::{self, ImportReport, RunError};
use crate::space::{ConnectorSpace, SpaceError};

/// What a cycle did for one connector.
#[derive(Debug)]
pub enum Outcome {
    /// Another host holds the lease: imported only.
    Standby {
        /// The holder.
        holder: String,
        /// The import.
        import: ImportReport,
    },
    /// Staging mode: imported and planned, never exported.
    Staged {
        /// The import.
        import: ImportReport,
        /// What an export would do.
        plan: Plan,
    },
    /// The deletion threshold stopped the run before anything was exported.
    Stopped {
        /// The run's number (for `causeway sync approve`).
        run: u64,
        /// The deletions it would have made.
        deletes: u64,
        /// The limit in words.
        limit: String,
    },
    /// Exported.
    Exported {
        /// The run's number.
        run: u64,
        /// What the endpoint changed.
        counts: Counts,
        /// Objects not exported, with why.
        errors: Vec<ObjectError>,
    },
}

/// Why a cycle failed. What was imported and acknowledged before it is kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CycleError {
    /// The import failed.
    #[error("import: {0}")]
    Import(RunError),
    /// The connector space failed.
    #[error(transparent)]
    Space(#[from] SpaceError),
    /// The endpoint failed or refused.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The export stopped.
    #[error(transparent)]
    Export(#[from] ExportError),
}

/// The deletions a plan holds.
fn deletions(plan: &Plan) -> BTreeSet<Guid> {
    plan.changes
        .iter()
        .filter_map(|c| match c {
            Change::Delete { anchor, .. } => Some(*anchor),
            _ => None,
        })
        .collect()
}

/// The plan's errors and quarantines, as the run's report carries them (at most
/// [`MAX_ERRORS`]).
fn plan_errors(plan: &Summary) -> Vec<ObjectError> {
    let errors = plan.errors.iter().map(|e| ObjectError {
        anchor: None,
        dn: Some(e.dn.clone()),
        error: e.error.to_string(),
    });
    let quarantined = plan.quarantined.iter().map(|q| ObjectError {
        anchor: Some(anchor_id(&q.anchor)),
        dn: Some(q.dn.clone()),
        error: format!(
            "quarantined: {} {:?} is already claimed by {} ({})",
            q.attribute, q.value, q.holder_dn, q.holder_anchor
        ),
    });
    errors.chain(quarantined).take(MAX_ERRORS).collect()
}

/// Imports `c` (the whole directory when the space holds nothing for it).
pub async fn import(
    c: &Connector,
    space: &ConnectorSpace,
    progress: impl FnMut(u64),
) -> Result<ImportReport, CycleError> {
    run::import(c, space, progress)
        .await
        .map_err(CycleError::Import)
}

/// Plans `c`'s export; a plan the threshold stopped goes ahead when every deletion in it
/// was approved (`causeway sync approve`).
pub fn plan_with_approvals(
    cfg: &SyncConfig,
    c: &Connector,
    space: &ConnectorSpace,
) -> Result<Plan, SpaceError> {
    let mut p = plan::plan(space, c, cfg.delete_threshold)?;
    if matches!(p.verdict, Verdict::Stop { .. }) {
        let approved = space.approved_deletions(&c.name)?;
        if !approved.is_empty() && deletions(&p).is_subset(&approved) {
            tracing::info!(connector = %c.name, deletions = approved.len(), "deletions over the threshold were approved; exporting them");
            p.verdict = Verdict::Go;
        }
    }
    Ok(p)
}

/// One cycle for `c`: import, plan, and export through `ch` (none: staging). `progress`
/// is told what stage it is in and how far ("import", n) / ("export", n of total).
pub async fn cycle(
    cfg: &SyncConfig,
    c: &Connector,
    space: &ConnectorSpace,
    ch: Option<&mut Channel>,
    mut progress: impl FnMut(&str, u64, Option<u64>),
) -> Result<Outcome, CycleError> {
    let Some(ch) = ch else {
        let import = import(c, space, |n| progress("import", n, None)).await?;
        let plan = plan_with_approvals(cfg, c, space)?;
        return Ok(Outcome::Staged { import, plan });
    };
    let lease = ch.lease(&c.name).await?;
    // The first full import sends its users while it reads (`export::early`).
    let (import, early) = if lease.granted && export::early::applies(c, space)? {
        let (import, run, sent) = import_exporting(ch, space, c, cfg.batch_size, |n| {
            progress("import", n, None)
        })
        .await?;
        (import, Some((run, sent)))
    } else {
        (
            import(c, space, |n| progress("import", n, None)).await?,
            None,
        )
    };
    if !lease.granted {
        return Ok(Outcome::Standby {
            holder: lease.holder.unwrap_or_else(|| "another host".into()),
            import,
        });
    }
    // The streaming planner: pass 1 settles scope and the threshold's verdict, then each
    // batch is planned as it is sent, so memory holds an index and a batch, not the plan.
    let approved = space.approved_deletions(&c.name)?;
    let pass1 = Instant::now();
    let planner = Planner::new(space, c, cfg.delete_threshold, &approved)?;
    tracing::debug!(connector = %c.name, import_ms = import.elapsed.as_millis() as u64, pass1_ms = pass1.elapsed().as_millis() as u64, "timing: import and plan pass 1");
    let kind = if import.full {
        RunKind::Full
    } else {
        RunKind::Delta
    };
    let (run, before) = match early {
        Some(early) => early,
        None => (
            ch.start_run(&c.name, kind, c.soft_match).await?,
            Default::default(),
        ),
    };
    let mut changes = match planner.into_changes() {
        Ok(changes) => changes,
        Err(stopped) => return stop(ch, space, c, run, stopped).await,
    };
    let exported = export::export_stream(
        ch,
        space,
        &c.name,
        run,
        &mut changes,
        cfg.batch_size,
        before,
        |n, total| progress("export", n, Some(total)),
    )
    .await;
    let plan = changes.into_summary();
    let mut errors = plan_errors(&plan);
    match exported {
        Ok(report) => {
            errors.extend(report.errors.iter().cloned());
            if c.write_consistency_guid && c.kind == ConnectorKind::ActiveDirectory {
                match crate::ad::consistency::write_missing(c, space).await {
                    Ok(w) => {
                        if w.written > 0 {
                            tracing::info!(connector = %c.name, written = w.written, "objectGUID written into ms-DS-ConsistencyGuid");
                        }
                        errors.extend(w.refused.into_iter().map(|(dn, error)| ObjectError {
                            anchor: None,
                            dn: Some(dn),
                            error,
                        }));
                    }
                    Err(error) => errors.push(ObjectError {
                        anchor: None,
                        dn: None,
                        error,
                    }),
                }
            }
            errors.truncate(MAX_ERRORS);
            let finishing = Instant::now();
            let mut counts = report.counts;
            counts.quarantined = plan.quarantined.len() as u64;
            counts.errors = (plan.errors.len() + report.errors.len()) as u64;
            ch.finish_run(
                run,
                RunReport {
                    status: RunStatus::Succeeded,
                    counts,
                    errors: errors.clone(),
                    detail: None,
                },
            )
            .await?;
            space.clear_approvals(&c.name)?;
            tracing::debug!(connector = %c.name, ms = finishing.elapsed().as_millis() as u64, "timing: finish run");
            Ok(Outcome::Exported {
                run,
                counts: report.counts,
                errors,
            })
        }
        Err(e) => {
            // Best effort: the channel may be what failed.
            let _ = ch
                .finish_run(
                    run,
                    RunReport {
                        status: RunStatus::Failed,
                        counts: Counts::default(),
                        errors,
                        detail: Some(e.to_string()),
                    },
                )
                .await;
            Err(e.into())
        }
    }
}

/// A run the deletion threshold stopped: hold its deletions for approval and report it
/// with the first of them listed.
async fn stop(
    ch: &mut Channel,
    space: &ConnectorSpace,
    c: &Connector,
    run: u64,
    stopped: Box<Stopped<'_>>,
) -> Result<Outcome, CycleError> {
    let Stopped {
        planner,
        deletes,
        limit,
    } = *stopped;
    space.hold_for_approval(&c.name, run, &planner.deletions())?;
    let listed: Vec<ObjectError> = planner
        .listed_deletions(MAX_ERRORS)?
        .into_iter()
        .filter_map(|ch| match ch {
            Change::Delete { anchor, was, why } => Some(ObjectError {
                anchor: Some(anchor_id(&anchor)),
                dn: Some(was.dn),
                error: format!("would delete: {why}"),
            }),
            _ => None,
        })
        .collect();
    let detail = format!(
        "stopped: {deletes} deletions exceed the deletion threshold ({limit}); nothing was exported. Check the list, then approve with: causeway sync approve {run}"
    );
    ch.finish_run(
        run,
        RunReport {
            status: RunStatus::Stopped,
            counts: Counts::default(),
            errors: listed,
            detail: Some(detail),
        },
    )
    .await?;
    Ok(Outcome::Stopped {
        run,
        deletes,
        limit,
    })
}

/// On-demand export of one planned change (`causeway sync object`): under the lease, as a
/// run of kind `object`. Returns the run's number, what the endpoint changed and the
/// object's error if it was not applied.
pub async fn export_one(
    cfg: &SyncConfig,
    c: &Connector,
    space: &ConnectorSpace,
    ch: &mut Channel,
    change: &Change,
) -> Result<(u64, Counts, Vec<ObjectError>), CycleError> {
    let lease = ch.lease(&c.name).await?;
    if !lease.granted {
        return Err(CycleError::Export(ExportError::LeaseLost {
            connector: c.name.clone(),
            holder: lease.holder.unwrap_or_else(|| "another host".into()),
        }));
    }
    let run = ch.start_run(&c.name, RunKind::Object, c.soft_match).await?;
    let one = Plan {
        changes: vec![change.clone()],
        errors: Vec::new(),
        quarantined: Vec::new(),
        decisions: Default::default(),
        exported_before: 0,
        verdict: Verdict::Go,
    };
    let report = export::export(ch, space, &c.name, run, &one, cfg.batch_size, |_, _| {}).await?;
    let mut counts = report.counts;
    counts.errors = report.errors.len() as u64;
    ch.finish_run(
        run,
        RunReport {
            status: RunStatus::Succeeded,
            counts,
            errors: report.errors.clone(),
            detail: None,
        },
    )
    .await?;
    Ok((run, report.counts, report.errors))
}

/// How `causeway sync run` loops.
#[derive(Debug, Clone, Copy)]
pub struct LoopOptions {
    /// One cycle per connector, then return.
    pub once: bool,
}

/// The loop of `causeway sync run`: a cycle per connector, then wait for a change
/// notification, the poll interval, or (holding or waiting for a lease) a third of the
/// lease, whichever comes first. Keeps going through errors (logged); returns after one
/// round with `once`, or when `stop` is notified (the leases are then released, so that a
/// standby takes over at once). `report` is given each connector's outcome.
pub async fn run_loop(
    cfg: &SyncConfig,
    space: &ConnectorSpace,
    identity: Option<&crate::export::identity::Identity>,
    opts: LoopOptions,
    stop: Arc<Notify>,
    mut report: impl FnMut(&Connector, &Result<Outcome, CycleError>),
    mut progress: impl FnMut(&Connector, &str, u64, Option<u64>),
) -> bool {
    let wake = Arc::new(Notify::new());
    let mut watchers = Vec::new();
    if !opts.once {
        for c in &cfg.connectors {
            if c.kind == ConnectorKind::ActiveDirectory && c.change_notification {
                watchers.push(tokio::spawn(crate::ad::notify::watch(
                    Arc::new(c.clone()),
                    wake.clone(),
                )));
            }
            // OpenLDAP's content sync in refreshAndPersist mode wakes the loop the same way.
            if c.kind == ConnectorKind::OpenLdap && c.change_notification {
                watchers.push(tokio::spawn(crate::openldap::persist::watch(
                    Arc::new(c.clone()),
                    wake.clone(),
                )));
            }
        }
    }
    let mut ch: Option<Channel> = None;
    let mut renewed: Option<crate::export::identity::Identity> = None;
    let mut renew_retry = None;
    let mut all_ok = true;
    let mut next_poll = Instant::now();
    let mut next_hash = Instant::now();
    let mut holding: BTreeSet<String> = BTreeSet::new();
    // Connectors whose last round found another host holding the lease.
    let mut standby: BTreeSet<String> = BTreeSet::new();
    loop {
        let due = Instant::now() >= next_poll;
        if ch.is_none() && !cfg.staging {
            // A certificate renewed on an earlier connection replaces the loaded one.
            if let Some(id) = renewed.as_ref().or(identity) {
                let now = std::time::SystemTime::now();
                let opened = crate::export::channel::open_renewing(
                    &cfg.endpoints,
                    id,
                    &cfg.state_dir,
                    now,
                    &mut renew_retry,
                );
                match opened.await {
                    Ok((c, new)) => {
                        renewed = new.or(renewed);
                        ch = Some(c);
                    }
                    Err(e) => {
                        all_ok = false;
                        tracing::warn!(error = %e, "cannot open the ingestion channel; importing only until it opens");
                    }
                }
            }
        }
        let lease_len = ch.as_ref().map_or(Duration::from_secs(60), |c| c.lease);
        if due {
            next_poll = Instant::now() + cfg.poll_interval;
            for c in &cfg.connectors {
                let result = if cfg.staging {
                    cycle(cfg, c, space, None, |s, n, t| progress(c, s, n, t)).await
                } else if let Some(channel) = ch.as_mut() {
                    cycle(cfg, c, space, Some(channel), |s, n, t| progress(c, s, n, t)).await
                } else {
                    import(c, space, |n| progress(c, "import", n, None))
                        .await
                        .map(|import| Outcome::Standby {
                            holder: "unknown (the endpoint is unreachable)".into(),
                            import,
                        })
                };
                match &result {
                    Ok(Outcome::Exported { .. } | Outcome::Stopped { .. }) => {
                        if standby.remove(&c.name) {
                            tracing::info!(connector = %c.name, "lease granted; taking over");
                        }
                        holding.insert(c.name.clone());
                    }
                    Ok(Outcome::Standby { .. }) => {
                        holding.remove(&c.name);
                        standby.insert(c.name.clone());
                    }
                    Ok(_) => {
                        holding.remove(&c.name);
                    }
                    Err(CycleError::Channel(_) | CycleError::Export(_)) => {
                        all_ok = false;
                        holding.remove(&c.name);
                        ch = None;
                    }
                    Err(_) => all_ok = false,
                }
                report(c, &result);
            }
        } else if let Some(channel) = ch.as_mut() {
            // Between polls: renew what we hold, and try for what we wait for; a lease
            // newly granted starts a cycle at once.
            for c in &cfg.connectors {
                match channel.lease(&c.name).await {
                    Ok(l) if l.granted && !holding.contains(&c.name) => {
                        // The round that now starts exports, and says it took over.
                        next_poll = Instant::now();
                    }
                    Ok(l) if !l.granted && holding.remove(&c.name) => {
                        tracing::warn!(connector = %c.name, holder = ?l.holder, "lease lost to another host");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "lease renewal failed; reconnecting");
                        ch = None;
                        break;
                    }
                }
            }
        }
        // Password hash sync: after every round (a change notification starts one), and
        // every hash interval between rounds, for the connectors whose lease we hold.
        if (due || Instant::now() >= next_hash) && !cfg.staging {
            next_hash = Instant::now() + cfg.hash_interval;
            if let Some(channel) = ch.as_mut() {
                if !hash_passes(cfg, space, channel, &holding).await {
                    all_ok = false;
                    ch = None;
                }
            }
        }
        if opts.once {
            break;
        }
        let renew = if cfg.staging {
            cfg.poll_interval
        } else {
            (lease_len / 3).max(Duration::from_millis(200))
        };
        let until_poll = next_poll
            .min(next_hash)
            .saturating_duration_since(Instant::now());
        tokio::select! {
            _ = wake.notified() => {
                // Let a burst of changes settle into one delta.
                tokio::time::sleep(Duration::from_millis(200)).await;
                next_poll = Instant::now();
            }
            _ = tokio::time::sleep(until_poll.min(renew)) => {}
            _ = stop.notified() => break,
        }
    }
    for w in watchers {
        w.abort();
    }
    if let Some(channel) = ch.as_mut() {
        for c in &holding {
            let _ = channel.release(c).await;
        }
    }
    all_ok
}

/// One hash pass per connector that syncs password hashes and whose lease is held.
/// `false` when the channel failed (the caller reopens it; the pass is retried then).
async fn hash_passes(
    cfg: &SyncConfig,
    space: &ConnectorSpace,
    ch: &mut Channel,
    holding: &BTreeSet<String>,
) -> bool {
    for c in cfg
        .connectors
        .iter()
        .filter(|c| c.password_hash_sync && holding.contains(&c.name))
    {
        let now = std::time::SystemTime::now();
        match crate::hashsync::pass(c, space, ch, cfg.batch_size, now).await {
            Ok(r) => {
                for e in &r.errors {
                    tracing::warn!(connector = %c.name, anchor = ?e.anchor, dn = ?e.dn, error = %e.error, "password hash not synchronised");
                }
                // Derivation and push times apart, so a slow pass says where its time went
                // (the rest of the pass is the source's read).
                tracing::info!(connector = %c.name, read = r.read, verifiers = r.counts.verifiers, flags = r.counts.flags, errors = r.errors.len(), derive_ms = r.derive.as_millis() as u64, derive_push_ms = r.elapsed.as_millis() as u64, "{r}");
            }
            Err(crate::hashsync::HashSyncError::Channel(e)) => {
                tracing::warn!(connector = %c.name, error = %e, "hash sync push failed; retrying on the next pass");
                return false;
            }
            Err(e) => {
                tracing::warn!(connector = %c.name, error = %e, "hash sync pass failed; retrying on the next pass");
            }
        }
    }
    true
}
/// Starts a full run and imports into it while sending users early
/// ([`export::early::import`]). A failure of either side ends the run as
/// failed (best effort: the channel may be what failed) with what the early batches
/// applied; those stay recorded, so the next run's plan sends only the rest.
pub async fn import_exporting(
    ch: &mut Channel,
    space: &ConnectorSpace,
    c: &Connector,
    batch: usize,
    progress: impl FnMut(u64),
) -> Result<(ImportReport, u64, ExportReport), CycleError> {
    let run = ch.start_run(&c.name, RunKind::Full, c.soft_match).await?;
    let (imported, sent) = export::early::import(ch, space, c, run, batch, progress).await;
    let (error, sent) = match (imported, sent) {
        (Ok(imported), Ok(mut sent)) => {
            // A user the endpoint refused was not recorded, so the plan sends it again and
            // reports it then if it is refused again: listed here too, it would be twice.
            sent.errors.clear();
            return Ok((imported, run, sent));
        }
        (Err(e), sent) => (CycleError::Import(e), sent.ok()),
        (Ok(_), Err(e)) => (CycleError::Export(e), None),
    };
    let (counts, errors) = sent.map(|r| (r.counts, r.errors)).unwrap_or_default();
    let _ = ch
        .finish_run(
            run,
            RunReport {
                status: RunStatus::Failed,
                counts,
                errors,
                detail: Some(error.to_string()),
            },
        )
        .await;
    Err(error)
}
