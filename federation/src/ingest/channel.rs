//! One authenticated sync host's channel: `Hello` first, then requests answered one at a
//! time against [`Synced`], with the lease holder always the certificate's host. A
//! malformed or out-of-bounds message is answered `Refused` and ends the channel (the
//! peer's framing can no longer be trusted); a refused store call (lease held elsewhere,
//! unknown run) is answered `Refused` and the channel goes on.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use causeway_proto::sync::io::{read, write};
use causeway_proto::sync::{
    Counts, MessageError, Request, Response, RunStatus, MAX_MESSAGE_LEN, VERSION,
};
use causeway_store::{LeaseState, MatchPolicy, StoreError, Synced};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::{debug, info, warn};

use super::{refusal_reason, SyncAuthority};
use crate::audit;
use crate::hub::listener::Refusal;
use crate::metrics::Metrics;

/// Most runs a channel remembers the connector of (for log lines); a host runs one or
/// two at a time, so a channel that starts more forgets the oldest.
const MAX_RUNS_REMEMBERED: usize = 64;
/// How often a silent channel re-checks that its host is still allowed.
const RECHECK: Duration = Duration::from_secs(1);

/// What a channel works with.
pub(crate) struct Context<'a> {
    pub(crate) store: &'a dyn Synced,
    pub(crate) authority: Arc<dyn SyncAuthority>,
    pub(crate) metrics: &'a Metrics,
    /// The authenticated host: the lease holder of every call.
    pub(crate) host: &'a str,
    pub(crate) endpoint_id: &'a str,
    pub(crate) lease: Duration,
    pub(crate) idle_timeout: Duration,
}

/// Why a channel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The host closed it (or the stream failed).
    Closed,
    /// It was silent for the idle timeout.
    Idle,
    /// The host was revoked or lost its approval.
    CutOff(Refusal),
    /// It sent a message that is not one, or out of bounds, or out of order.
    Malformed(String),
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ended::Closed => f.write_str("closed by the host"),
            Ended::Idle => f.write_str("idle timeout"),
            Ended::CutOff(r) => write!(f, "cut off: {r:?}"),
            Ended::Malformed(e) => write!(f, "malformed message: {e}"),
        }
    }
}

/// Serves the channel on `io` until it ends, and says why.
pub(crate) async fn serve<S>(mut io: S, ctx: &Context<'_>) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut state = State::Greeting(Greeting);
    loop {
        let req = match next_request(&mut io, ctx).await {
            Ok(r) => r,
            Err(ended) => {
                let reason = match &ended {
                    Ended::Malformed(e) => Some(e.clone()),
                    Ended::CutOff(r) => Some(refusal_reason(*r, Some(ctx.host))),
                    Ended::Closed | Ended::Idle => None,
                };
                if let Some(reason) = reason {
                    let _ = write(&mut io, &Response::Refused { reason }).await;
                }
                let _ = io.shutdown().await;
                return ended;
            }
        };
        // Checked per request too, so nothing is applied for a host revoked since the
        // last tick.
        if let Err(r) = still_allowed(ctx).await {
            let reason = refusal_reason(r, Some(ctx.host));
            let _ = write(&mut io, &Response::Refused { reason }).await;
            let _ = io.shutdown().await;
            return Ended::CutOff(r);
        }
        let (next, answer) = state.handle(req, ctx, SystemTime::now()).await;
        if write(&mut io, &answer).await.is_err() {
            return Ended::Closed;
        }
        match next {
            Ok(s) => state = s,
            Err(why) => {
                let _ = io.shutdown().await;
                return Ended::Malformed(why);
            }
        }
    }
}

/// Waits for the next request: bounded by [`MAX_MESSAGE_LEN`] and the idle timeout, and
/// re-checking the host about every second (the pending read is kept, not restarted, so
/// no partial message is lost).
async fn next_request<S>(io: &mut S, ctx: &Context<'_>) -> Result<Request, Ended>
where
    S: AsyncRead + Unpin,
{
    let read = read::<Request, _>(io, MAX_MESSAGE_LEN);
    tokio::pin!(read);
    let idle = tokio::time::sleep(ctx.idle_timeout);
    tokio::pin!(idle);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
    loop {
        tokio::select! {
            r = &mut read => {
                return match r {
                    Ok(req) => match req.check() {
                        Ok(()) => Ok(req),
                        Err(e) => Err(Ended::Malformed(e.to_string())),
                    },
                    Err(MessageError::Io(_)) => Err(Ended::Closed),
                    Err(e) => Err(Ended::Malformed(e.to_string())),
                };
            }
            _ = &mut idle => return Err(Ended::Idle),
            _ = tick.tick() => {
                if let Err(r) = still_allowed(ctx).await {
                    return Err(Ended::CutOff(r));
                }
            }
        }
    }
}

async fn still_allowed(ctx: &Context<'_>) -> Result<(), Refusal> {
    let (a, h) = (ctx.authority.clone(), ctx.host.to_owned());
    tokio::task::spawn_blocking(move || a.sync_still_allowed(&h))
        .await
        .unwrap_or(Err(Refusal::Unknown))
}

/// Where a channel is.
enum State {
    /// Nothing but `Hello` is accepted yet.
    Greeting(Greeting),
    /// Greeted: the export requests.
    Ready(Ready),
}

impl State {
    /// Answers `req`; `Err` (with the answer still to send) ends the channel.
    async fn handle(
        self,
        req: Request,
        ctx: &Context<'_>,
        now: SystemTime,
    ) -> (Result<State, String>, Response) {
        match self {
            State::Greeting(g) => match g.hello(req, ctx) {
                Ok((ready, answer)) => (Ok(State::Ready(ready)), answer),
                Err(why) => refused_and_closed(why),
            },
            State::Ready(mut r) => match r.answer(req, ctx, now).await {
                Ok(answer) => (Ok(State::Ready(r)), answer),
                Err(why) => refused_and_closed(why),
            },
        }
    }
}

fn refused_and_closed(why: String) -> (Result<State, String>, Response) {
    (Err(why.clone()), Response::Refused { reason: why })
}

/// Before `Hello`.
struct Greeting;

impl Greeting {
    /// `Hello` in a version this endpoint speaks moves on; anything else ends the channel.
    fn hello(self, req: Request, ctx: &Context<'_>) -> Result<(Ready, Response), String> {
        match req {
            Request::Hello {
                version,
                software_version,
            } => {
                if version != VERSION {
                    return Err(format!(
                        "protocol version {version} is not spoken here (this endpoint speaks {VERSION}); upgrade the endpoint or the sync host"
                    ));
                }
                info!(host = %ctx.host, %software_version, "sync host greeted");
                audit::record(audit::Event::sync("sync.connected", ctx.host, None, "ok"));
                Ok((
                    Ready {
                        runs: HashMap::new(),
                    },
                    Response::Welcome {
                        endpoint_id: ctx.endpoint_id.to_owned(),
                        lease_ms: millis(ctx.lease),
                    },
                ))
            }
            other => Err(format!(
                "the first request must be hello, not {}",
                name(&other)
            )),
        }
    }
}

/// After `Hello`.
struct Ready {
    /// The connector of each run this channel started, for log lines.
    runs: HashMap<u64, String>,
}

impl Ready {
    /// The answer to one export request; `Err` ends the channel.
    async fn answer(
        &mut self,
        req: Request,
        ctx: &Context<'_>,
        now: SystemTime,
    ) -> Result<Response, String> {
        let host = ctx.host;
        let answer = match req {
            Request::Hello { .. } => return Err("hello was already sent".into()),
            Request::Enroll { .. } => {
                return Err(
                    "enrollment belongs on causeway-sync-enroll/1, not on the channel".into(),
                )
            }
            Request::Lease { connector } => {
                match ctx.store.lease(&connector, host, ctx.lease, now).await {
                    Ok(s) => lease_answer(connector, s, now),
                    Err(e) => refused(e),
                }
            }
            Request::Release { connector } => {
                match ctx.store.release(&connector, host, now).await {
                    Ok(s) => lease_answer(connector, s, now),
                    Err(e) => refused(e),
                }
            }
            Request::StartRun {
                connector,
                kind,
                soft_match,
            } => {
                let policy = MatchPolicy { soft_match };
                match ctx
                    .store
                    .start_run(&connector, host, kind, policy, now)
                    .await
                {
                    Ok(run) => {
                        info!(%host, %connector, run, kind = kind.as_str(), soft_match, "sync run started");
                        audit::record(
                            audit::Event::sync("sync.run_started", host, Some(&connector), "ok")
                                .with_detail(format!("run {run}, {}", kind.as_str())),
                        );
                        if self.runs.len() >= MAX_RUNS_REMEMBERED {
                            self.runs.clear();
                        }
                        self.runs.insert(run, connector);
                        Response::RunStarted { run }
                    }
                    Err(e) => refused(e),
                }
            }
            Request::Batch { run, seq, changes } => {
                let connector = self.runs.get(&run).map_or("", String::as_str);
                match ctx.store.apply_batch(run, host, &changes, now).await {
                    Ok(result) => {
                        let c = &result.counts;
                        info!(
                            %host, %connector, run, seq, objects = changes.len(),
                            added = c.added, updated = c.updated, deleted = c.deleted,
                            unchanged = c.unchanged, errors = c.errors,
                            "sync batch applied"
                        );
                        debug!(%host, run, seq, anchors = ?changes.iter().map(|c| c.anchor()).collect::<Vec<_>>(), "sync batch objects");
                        ctx.metrics.sync_batch("applied");
                        ctx.metrics.sync_objects(&change_counts(c));
                        refresh_held(ctx.store, ctx.metrics).await;
                        Response::Applied {
                            seq,
                            counts: result.counts,
                            errors: result.errors,
                        }
                    }
                    Err(e) => {
                        warn!(%host, %connector, run, seq, error = %e, "sync batch refused");
                        audit::record(
                            audit::Event::sync("sync.batch", host, Some(connector), "refused")
                                .with_detail(format!("run {run}, batch {seq}: {e}")),
                        );
                        ctx.metrics.sync_batch(if is_store_failure(&e) {
                            "failed"
                        } else {
                            "refused"
                        });
                        refused(e)
                    }
                }
            }
            Request::FinishRun { run, report } => {
                match ctx.store.finish_run(run, host, &report, now).await {
                    Ok(record) => {
                        let c = &record.counts;
                        info!(
                            %host, connector = %record.connector, run, status = record.status.as_str(),
                            added = c.added, updated = c.updated, deleted = c.deleted,
                            unchanged = c.unchanged, quarantined = c.quarantined, errors = c.errors,
                            "sync run finished"
                        );
                        audit::record(
                            audit::Event::sync(
                                "sync.run_finished",
                                host,
                                Some(&record.connector),
                                record.status.as_str(),
                            )
                            .with_detail(format!(
                                "run {run}: {} added, {} updated, {} deleted, {} quarantined, {} errors",
                                c.added, c.updated, c.deleted, c.quarantined, c.errors
                            )),
                        );
                        let took = record
                            .finished_at
                            .unwrap_or_else(|| secs(now))
                            .saturating_sub(record.started_at);
                        ctx.metrics.sync_run_finished(
                            &record.connector,
                            record.status == RunStatus::Succeeded,
                            Duration::from_secs(took),
                            secs(now),
                        );
                        self.runs.remove(&run);
                        Response::RunFinished { record }
                    }
                    Err(e) => refused(e),
                }
            }
            Request::Renew { csr_pem } => {
                let (a, h) = (ctx.authority.clone(), host.to_owned());
                let result = tokio::task::spawn_blocking(move || a.renew_sync(&h, &csr_pem))
                    .await
                    .unwrap_or_else(|_| {
                        Err("renewal failed on the endpoint; its log says why".into())
                    });
                match result {
                    Ok(cert_pem) => {
                        info!(%host, "sync host certificate renewed");
                        Response::Renewed { cert_pem }
                    }
                    Err(reason) => {
                        warn!(%host, %reason, "sync host renewal refused");
                        Response::Refused { reason }
                    }
                }
            }
            Request::HashBatch { connector, changes } => {
                match ctx
                    .store
                    .apply_verifiers(&connector, host, &changes, now)
                    .await
                {
                    Ok((counts, errors)) => {
                        // Counts only: a verifier is hash material, never logged.
                        info!(
                            %host, %connector, users = changes.len(),
                            verifiers = counts.verifiers, flags = counts.flags,
                            unchanged = counts.unchanged, errors = counts.errors,
                            "hash sync batch applied"
                        );
                        audit::record(
                            audit::Event::sync("sync.hash_batch", host, Some(&connector), "ok")
                                .with_detail(format!(
                                    "{} verifiers, {} flags, {} unchanged, {} errors",
                                    counts.verifiers, counts.flags, counts.unchanged, counts.errors
                                )),
                        );
                        ctx.metrics.sync_batch("applied");
                        ctx.metrics.hash_sync(&counts);
                        Response::HashApplied { counts, errors }
                    }
                    Err(e) => {
                        warn!(%host, %connector, error = %e, "hash sync batch refused");
                        audit::record(
                            audit::Event::sync(
                                "sync.hash_batch",
                                host,
                                Some(&connector),
                                "refused",
                            )
                            .with_detail(e.to_string()),
                        );
                        ctx.metrics.sync_batch(if is_store_failure(&e) {
                            "failed"
                        } else {
                            "refused"
                        });
                        refused(e)
                    }
                }
            }
            Request::Runs { connector, limit } => {
                let limit = usize::try_from(limit.min(100)).unwrap_or(100);
                match ctx.store.runs(connector.as_deref(), limit).await {
                    Ok(runs) => Response::Runs { runs },
                    Err(e) => refused(e),
                }
            }
        };
        Ok(answer)
    }
}

/// The per-change counters of a batch, as `causeway_sync_objects_total{change}` labels.
pub(crate) fn change_counts(c: &Counts) -> [(&'static str, u64); 5] {
    [
        ("added", c.added),
        ("updated", c.updated),
        ("deleted", c.deleted),
        ("unchanged", c.unchanged),
        ("error", c.errors),
    ]
}

/// Sets `causeway_sync_objects{kind}` from the store's counts.
pub(crate) async fn refresh_held(store: &dyn Synced, metrics: &Metrics) {
    match store.synced_counts().await {
        Ok(counts) => {
            let by_kind: Vec<(&str, u64)> = counts.iter().map(|(k, n)| (k.as_str(), *n)).collect();
            metrics.sync_kinds(&by_kind);
        }
        Err(e) => warn!(error = %e, "cannot count synchronised objects for metrics"),
    }
}

fn lease_answer(connector: String, s: LeaseState, now: SystemTime) -> Response {
    Response::Lease {
        connector,
        granted: s.granted,
        holder: s.holder,
        expires_in_ms: s
            .expires_at
            .and_then(|t| t.duration_since(now).ok())
            .map_or(0, millis),
    }
}

/// Whether the store itself failed (an operator problem), rather than refusing the call.
fn is_store_failure(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Database { .. } | StoreError::InsecureFile { .. }
    )
}

/// The answer to a refused store call: the store's own sentence when it refused (it
/// names the lease holder or the run), a pointer to the log when it failed (its paths
/// and SQL errors are not for the peer).
fn refused(e: StoreError) -> Response {
    let reason = if is_store_failure(&e) {
        warn!(error = %e, "directory store failed during a sync request");
        "the endpoint's directory store failed; its log says why".to_owned()
    } else {
        e.to_string()
    };
    Response::Refused { reason }
}

/// A request's type, for messages (never its content).
fn name(r: &Request) -> &'static str {
    match r {
        Request::Enroll { .. } => "enroll",
        Request::Hello { .. } => "hello",
        Request::Lease { .. } => "lease",
        Request::Release { .. } => "release",
        Request::StartRun { .. } => "start_run",
        Request::Batch { .. } => "batch",
        Request::FinishRun { .. } => "finish_run",
        Request::Renew { .. } => "renew",
        Request::Runs { .. } => "runs",
        Request::HashBatch { .. } => "hash_batch",
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
