//! The commands of `causeway sync` that talk to the endpoint: `register` (enroll with a
//! one-time token), `run` (the job itself), `status`, `runs` and `approve`.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use causeway_credential::Secret;
use causeway_sync::config::{Connector, SyncConfig};
use causeway_sync::cycle::{self, CycleError, LoopOptions, Outcome};
use causeway_sync::export::channel::{self, Channel};
use causeway_sync::export::identity::Identity;
use causeway_sync::plan::Verdict;

use super::{open_space, runtime, Outcome as CmdOutcome};

#[allow(clippy::print_stdout)] // the result is the command's output
pub(super) fn register(path: &Path, token: &str, host_name: Option<String>) -> CmdOutcome {
    let cfg = SyncConfig::load(path).map_err(|e| e.to_string())?;
    if Identity::exists(&cfg.state_dir) {
        return Err(format!(
            "{} already holds a registered sync host; remove {} to register again",
            cfg.state_dir.display(),
            Identity::dir(&cfg.state_dir).display()
        ));
    }
    let host = host_name.unwrap_or_else(causeway_certs::host_name);
    let token = Secret::new(token.to_owned());
    let id = runtime()?
        .block_on(channel::register(&cfg.endpoints, &token, &host))
        .map_err(|e| e.to_string())?;
    causeway_config::files::create_private_dir(&cfg.state_dir).map_err(|e| e.to_string())?;
    id.save(&cfg.state_dir).map_err(|e| e.to_string())?;
    println!(
        "registered as {} (identity in {}); start it with: causeway sync run -c {}",
        id.host_id,
        Identity::dir(&cfg.state_dir).display(),
        path.display()
    );
    Ok(true)
}

fn describe(c: &Connector, r: &Result<Outcome, CycleError>) -> String {
    match r {
        Ok(Outcome::Standby { holder, import }) => {
            format!("{}: standby ({holder} holds the lease); {import}", c.name)
        }
        Ok(Outcome::Staged { import, plan }) => {
            let (a, u, d) = plan.counts();
            format!(
                "{}: staging, nothing exported; {import}; the next export would add {a}, update {u}, delete {d}{}",
                c.name,
                if matches!(plan.verdict, Verdict::Stop { .. }) {
                    " (over the deletion threshold)"
                } else {
                    ""
                }
            )
        }
        Ok(Outcome::Stopped { run, deletes, limit }) => format!(
            "{}: run {run} STOPPED: {deletes} deletions exceed the deletion threshold ({limit}); nothing was exported. See `causeway sync runs`, then `causeway sync approve {run}`",
            c.name
        ),
        Ok(Outcome::Exported { run, counts, errors }) => format!(
            "{}: run {run} exported: {} added, {} updated, {} deleted, {} unchanged, {} errors",
            c.name,
            counts.added,
            counts.updated,
            counts.deleted,
            counts.unchanged,
            errors.len()
        ),
        Err(e) => format!("{}: run failed: {e}", c.name),
    }
}

#[allow(clippy::print_stdout)] // the per-connector lines are the command's output
pub(super) fn run(path: &Path, once: bool, dry_run: bool) -> CmdOutcome {
    let mut cfg = SyncConfig::load(path).map_err(|e| e.to_string())?;
    if dry_run {
        // A dry run is a staging round: import and plan, never export.
        cfg.staging = true;
    }
    let space = open_space(&cfg, path, true)?;
    let identity = if cfg.staging {
        None
    } else {
        Some(Identity::load(&cfg.state_dir).map_err(|e| e.to_string())?)
    };
    let rt = runtime()?;
    let tty = std::io::stderr().is_terminal();
    let stop = Arc::new(tokio::sync::Notify::new());
    let started = Instant::now();
    let ok = rt.block_on(async {
        let s = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                s.notify_one();
            }
        });
        #[cfg(unix)]
        {
            let s = stop.clone();
            if let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                tokio::spawn(async move {
                    term.recv().await;
                    s.notify_one();
                });
            }
        }
        tracing::info!(
            connectors = cfg.connectors.len(),
            staging = cfg.staging,
            once = once || dry_run,
            "sync started"
        );
        cycle::run_loop(
            &cfg,
            &space,
            identity.as_ref(),
            LoopOptions {
                once: once || dry_run,
            },
            stop,
            |c, r| {
                if tty {
                    eprint!("\r\x1b[K");
                }
                let line = describe(c, r);
                match r {
                    Ok(_) => tracing::info!(connector = %c.name, "{line}"),
                    Err(_) => tracing::warn!(connector = %c.name, "{line}"),
                }
                if once || dry_run {
                    println!("{line}");
                    if let Ok(Outcome::Staged { plan, .. }) = r {
                        if dry_run {
                            print!("{plan}");
                        }
                    }
                }
            },
            |c, stage, n, total| {
                if !tty {
                    return;
                }
                let secs = started.elapsed().as_secs_f64().max(0.001);
                let rate = n as f64 / secs;
                match total {
                    Some(t) if t > 0 => {
                        let eta = (t.saturating_sub(n)) as f64 / rate.max(0.001);
                        eprint!(
                            "\r\x1b[K{}: {stage} {n}/{t} ({:.0}%), {rate:.0}/s, ETA {eta:.0} s",
                            c.name,
                            n as f64 * 100.0 / t as f64
                        );
                    }
                    _ => eprint!("\r\x1b[K{}: {stage} {n} objects, {rate:.0}/s", c.name),
                }
            },
        )
        .await
    });
    if tty {
        eprintln!();
    }
    Ok(ok)
}

#[allow(clippy::print_stdout)] // the status is the command's output
pub(super) fn status(path: &Path) -> CmdOutcome {
    let cfg = SyncConfig::load(path).map_err(|e| e.to_string())?;
    let space = open_space(&cfg, path, false)?;
    println!(
        "{}{}",
        path.display(),
        if cfg.staging {
            ": staging mode (imports and plans, never exports)"
        } else {
            ""
        }
    );
    let registered = Identity::load(&cfg.state_dir).ok();
    match &registered {
        Some(id) => println!("registered as {}", id.host_id),
        None => println!(
            "not registered: run `causeway sync register -c {} --token …`",
            path.display()
        ),
    }
    let rt = runtime()?;
    let mut ch = match &registered {
        Some(id) => match rt.block_on(Channel::open(&cfg.endpoints, id)) {
            Ok(ch) => Some(ch),
            Err(e) => {
                println!("endpoint: {e}");
                None
            }
        },
        None => None,
    };
    for c in &cfg.connectors {
        let held = space.len(&c.name).map_err(|e| e.to_string())?;
        let exported = space.exported(&c.name).map_err(|e| e.to_string())?.len();
        println!("{}: {held} objects held, {exported} exported", c.name);
        if c.password_hash_sync {
            println!("  {}", hash_status_line(&space, &c.name)?);
        }
        let plan = cycle::plan_with_approvals(&cfg, c, &space).map_err(|e| e.to_string())?;
        let (a, u, d) = plan.counts();
        println!(
            "  next export (from what is held now): {a} to add, {u} to update, {d} to delete, {} quarantined, {} unmappable{}",
            plan.quarantined.len(),
            plan.errors.len(),
            match &plan.verdict {
                Verdict::Stop { limit, .. } => format!("; STOPPED by the deletion threshold ({limit})"),
                Verdict::Go => String::new(),
            }
        );
        if let Some(ch) = ch.as_mut() {
            match rt.block_on(ch.runs(Some(&c.name), 1)) {
                Ok(runs) => match runs.first() {
                    Some(r) => println!(
                        "  last run {} ({}, {}) by {}: {} added, {} updated, {} deleted, {} errors{}",
                        r.run,
                        r.kind.as_str(),
                        r.status.as_str(),
                        r.host,
                        r.counts.added,
                        r.counts.updated,
                        r.counts.deleted,
                        r.counts.errors,
                        r.detail.as_deref().map(|d| format!(" — {d}")).unwrap_or_default()
                    ),
                    None => println!("  no run recorded at the endpoint yet"),
                },
                Err(e) => println!("  endpoint: {e}"),
            }
        }
    }
    Ok(true)
}

/// `password hash sync: …`: when the last pass ran and succeeded, the lag (the oldest
/// change not yet pushed, else the time since the last successful pass) and errors.
fn hash_status_line(
    space: &causeway_sync::space::ConnectorSpace,
    connector: &str,
) -> Result<String, String> {
    let now = std::time::SystemTime::now();
    let ago = |t: std::time::SystemTime| now.duration_since(t).map_or(0, |d| d.as_secs());
    let Some(s) = space.hash_status(connector).map_err(|e| e.to_string())? else {
        return Ok("password hash sync: no pass yet".into());
    };
    let lag = match (s.oldest_pending, s.last_ok_at) {
        (Some(t), _) => format!("lag {} s ({} changes not pushed yet)", ago(t), s.pending),
        (None, Some(t)) => format!(
            "lag {} s (everything pushed at the last successful pass)",
            ago(t)
        ),
        (None, None) => "lag unknown (no successful pass yet)".into(),
    };
    Ok(format!(
        "password hash sync: last pass {} s ago, {lag}, {} errors{}",
        s.last_pass_at.map_or(0, ago),
        s.errors,
        s.last_error
            .map(|e| format!(" — last pass failed: {e}"))
            .unwrap_or_default()
    ))
}

#[allow(clippy::print_stdout)] // the runs are the command's output
pub(super) fn runs(path: &Path, connector: Option<String>, limit: u32) -> CmdOutcome {
    let cfg = SyncConfig::load(path).map_err(|e| e.to_string())?;
    let id = Identity::load(&cfg.state_dir).map_err(|e| e.to_string())?;
    let rt = runtime()?;
    let runs = rt
        .block_on(async {
            let mut ch = Channel::open(&cfg.endpoints, &id).await?;
            ch.runs(connector.as_deref(), limit).await
        })
        .map_err(|e| e.to_string())?;
    if runs.is_empty() {
        println!("no runs recorded");
    }
    for r in runs {
        println!(
            "run {} {} {} {} by {} started {}{}: {} added, {} updated, {} deleted, {} unchanged, {} quarantined, {} errors",
            r.run,
            r.connector,
            r.kind.as_str(),
            r.status.as_str(),
            r.host,
            r.started_at,
            r.finished_at.map(|f| format!(", took {} s", f.saturating_sub(r.started_at))).unwrap_or_default(),
            r.counts.added,
            r.counts.updated,
            r.counts.deleted,
            r.counts.unchanged,
            r.counts.quarantined,
            r.counts.errors
        );
        if let Some(d) = &r.detail {
            println!("  {d}");
        }
        for e in r.errors.iter().take(50) {
            println!(
                "  ! {}{}: {}",
                e.dn.as_deref().unwrap_or("?"),
                e.anchor
                    .as_deref()
                    .map(|a| format!(" ({a})"))
                    .unwrap_or_default(),
                e.error
            );
        }
        if r.errors.len() > 50 {
            println!("  … and {} more", r.errors.len() - 50);
        }
    }
    Ok(true)
}

#[allow(clippy::print_stdout)] // the result is the command's output
pub(super) fn approve(path: &Path, run: u64) -> CmdOutcome {
    let cfg = SyncConfig::load(path).map_err(|e| e.to_string())?;
    let space = open_space(&cfg, path, false)?;
    match space.approve(run).map_err(|e| e.to_string())? {
        Some((connector, n)) => {
            println!("run {run} approved: the next run of {connector} may delete those {n} objects");
            Ok(true)
        }
        None => Err(format!(
            "no run {run} stopped by the deletion threshold on this sync host (see `causeway sync runs -c {}`)",
            path.display()
        )),
    }
}

/// Exports `change` for `sync object`, when this host is registered and not staging;
/// returns what to print on the report's export line.
pub(super) fn export_object(
    cfg: &SyncConfig,
    c: &Connector,
    space: &causeway_sync::space::ConnectorSpace,
    change: Option<&causeway_sync::plan::Change>,
    rt: &tokio::runtime::Runtime,
) -> String {
    let Some(change) = change else {
        return "not sent (nothing to change)".into();
    };
    if cfg.staging {
        return "not sent (staging mode)".into();
    }
    let id = match Identity::load(&cfg.state_dir) {
        Ok(id) => id,
        Err(e) => return format!("not sent: {e}"),
    };
    let r = rt.block_on(async {
        let mut ch = Channel::open(&cfg.endpoints, &id).await?;
        cycle::export_one(cfg, c, space, &mut ch, change)
            .await
            .map_err(|e| match e {
                CycleError::Channel(e) => e,
                other => channel::ChannelError::Refused(other.to_string()),
            })
    });
    match r {
        Ok((run, counts, errors)) if errors.is_empty() => format!(
            "sent as run {run}: {} added, {} updated, {} deleted, {} unchanged",
            counts.added, counts.updated, counts.deleted, counts.unchanged
        ),
        Ok((run, _, errors)) => format!(
            "sent as run {run}, refused by the endpoint: {}",
            errors
                .iter()
                .map(|e| e.error.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ),
        Err(e) => format!("not sent: {e}"),
    }
}

/// With hash sync on, refreshes the one user's password hash after its export (the
/// endpoint needs the user before it takes a verifier for it): the line `sync object`
/// prints after `export:`.
pub(super) fn hash_object(
    cfg: &SyncConfig,
    c: &Connector,
    space: &causeway_sync::space::ConnectorSpace,
    anchor: causeway_sync::ad::entry::Guid,
    rt: &tokio::runtime::Runtime,
) -> String {
    if cfg.staging {
        return "not sent (staging mode)".into();
    }
    let id = match Identity::load(&cfg.state_dir) {
        Ok(id) => id,
        Err(e) => return format!("not sent: {e}"),
    };
    let r = rt.block_on(async {
        let mut ch = Channel::open(&cfg.endpoints, &id).await?;
        causeway_sync::hashsync::one::refresh_user(
            c,
            space,
            &mut ch,
            anchor,
            std::time::SystemTime::now(),
        )
        .await
        .map_err(|e| channel::ChannelError::Refused(e.to_string()))
    });
    match r {
        Ok(one) => one.to_string(),
        Err(e) => format!("not sent: {e}"),
    }
}
