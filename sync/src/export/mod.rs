//! The export stage of a run: a plan's changes, as the ingestion API's messages, sent in
//! batches the endpoint applies atomically and acknowledges. Only what was acknowledged is
//! recorded as exported in the connector space, after the answer: a crash between the two
//! resends the batch next time, and the endpoint counts what it already holds `unchanged`,
//! so nothing is lost and nothing is duplicated.

pub mod channel;
pub mod early;
pub mod identity;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use causeway_proto::sync::{Counts, Object, ObjectChange, ObjectError, ObjectKind};

use crate::ad::entry::Guid;
use crate::plan::stream::Changes;
use crate::plan::{body, Change, Exported, Plan};
use crate::space::{ConnectorSpace, SpaceError};
use channel::{Channel, ChannelError};

/// How many changes one batch carries unless configured otherwise.
pub use crate::config::DEFAULT_BATCH;

/// An anchor as the endpoint knows it: base64 of its 16 bytes (Entra's immutable id).
pub fn anchor_id(g: &Guid) -> String {
    base64::engine::general_purpose::STANDARD.encode(g.as_bytes())
}

/// Attributes whose values are references (anchors in the planner's GUID text form).
const REFERENCES: [&str; 2] = ["members", "manager"];

/// The wire form of an exported object: the anchor and its references as immutable ids.
pub fn to_wire(anchor: &Guid, e: &Exported) -> Result<Object, String> {
    let kind = ObjectKind::parse(&e.kind).ok_or_else(|| format!("unknown kind {:?}", e.kind))?;
    let mut attrs = e.attrs.clone();
    for name in REFERENCES {
        if let Some(values) = attrs.get_mut(name) {
            for v in values.iter_mut() {
                *v = anchor_id(&Guid::parse(v)?);
            }
        }
    }
    Ok(Object {
        anchor: anchor_id(anchor),
        kind,
        dn: e.dn.clone(),
        attrs,
    })
}

/// One change ready to send, with what the connector space records once it is acknowledged.
struct Outgoing {
    anchor: Guid,
    recorded: Option<String>,
    change: ObjectChange,
}

fn outgoing(changes: &[Change]) -> (Vec<Outgoing>, Vec<ObjectError>) {
    let mut out = Vec::with_capacity(changes.len());
    let mut errors = Vec::new();
    for c in changes {
        let (anchor, wire) = match c {
            Change::Add { anchor, object } | Change::Update { anchor, object, .. } => (
                anchor,
                to_wire(anchor, object)
                    .map(|o| (Some(body(object)), ObjectChange::Upsert { object: o })),
            ),
            Change::Delete { anchor, was, why } => (
                anchor,
                ObjectKind::parse(&was.kind)
                    .ok_or_else(|| format!("unknown kind {:?}", was.kind))
                    .map(|kind| {
                        (
                            None,
                            ObjectChange::Delete {
                                anchor: anchor_id(anchor),
                                kind,
                                why: why.clone(),
                            },
                        )
                    }),
            ),
        };
        match wire {
            Ok((recorded, change)) => out.push(Outgoing {
                anchor: *anchor,
                recorded,
                change,
            }),
            Err(error) => errors.push(ObjectError {
                anchor: Some(anchor_id(anchor)),
                dn: None,
                error,
            }),
        }
    }
    (out, errors)
}

/// Why an export stopped. Every batch acknowledged before it is recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The endpoint failed or refused (the lease was lost, the store failed).
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The connector space failed after an acknowledgement (the batch is resent next run,
    /// and counted unchanged).
    #[error(transparent)]
    Space(#[from] SpaceError),
    /// Another host holds the lease now.
    #[error("the lease on connector {connector} passed to {holder}: stopped exporting")]
    LeaseLost {
        /// The connector.
        connector: String,
        /// Its holder now.
        holder: String,
    },
}

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// The endpoint's counts, summed over the batches.
    pub counts: Counts,
    /// Objects not applied (by the endpoint, or not expressible on the wire).
    pub errors: Vec<ObjectError>,
    /// Batches sent.
    pub batches: u32,
}

/// Sends `plan`'s changes for `connector` in run `run`, `batch` at a time, renewing the
/// lease between batches when a third of it has passed; records each acknowledged batch in
/// `space`. `progress` is told the changes sent so far and the total.
pub async fn export(
    ch: &mut Channel,
    space: &ConnectorSpace,
    connector: &str,
    run: u64,
    plan: &Plan,
    batch: usize,
    mut progress: impl FnMut(u64, u64),
) -> Result<ExportReport, ExportError> {
    let (outgoing, errors) = outgoing(&plan.changes);
    let total = outgoing.len() as u64;
    let mut out = Sender::new(
        ch,
        space,
        connector,
        run,
        ExportReport {
            errors,
            ..ExportReport::default()
        },
    );
    let mut sent = 0u64;
    for chunk in outgoing.chunks(batch.max(1)) {
        out.send(chunk).await?;
        sent += chunk.len() as u64;
        progress(sent, total);
    }
    Ok(out.report)
}

/// Sends batches for one run, renewing the lease when a third of it has passed, and
/// records what the endpoint acknowledged after each.
struct Sender<'a> {
    ch: &'a mut Channel,
    space: &'a ConnectorSpace,
    connector: &'a str,
    run: u64,
    renewed: Instant,
    report: ExportReport,
    /// Time spent awaiting the endpoint's answers, and recording them (for the timing log).
    waiting: Duration,
    recording: Duration,
}

impl<'a> Sender<'a> {
    fn new(
        ch: &'a mut Channel,
        space: &'a ConnectorSpace,
        connector: &'a str,
        run: u64,
        report: ExportReport,
    ) -> Self {
        Self {
            ch,
            space,
            connector,
            run,
            renewed: Instant::now(),
            waiting: Duration::ZERO,
            recording: Duration::ZERO,
            report,
        }
    }

    async fn send(&mut self, chunk: &[Outgoing]) -> Result<(), ExportError> {
        let renew_every = self.ch.lease / 3;
        if self.renewed.elapsed() >= renew_every.max(Duration::from_millis(100)) {
            let lease = self.ch.lease(self.connector).await?;
            if !lease.granted {
                return Err(ExportError::LeaseLost {
                    connector: self.connector.into(),
                    holder: lease.holder.unwrap_or_else(|| "nobody".into()),
                });
            }
            self.renewed = Instant::now();
        }
        self.report.batches += 1;
        let changes: Vec<ObjectChange> = chunk.iter().map(|o| o.change.clone()).collect();
        let asked = Instant::now();
        let (counts, failed) = self
            .ch
            .batch(self.run, self.report.batches, changes)
            .await?;
        let round_trip = asked.elapsed();
        let failed_anchors: std::collections::HashSet<&str> =
            failed.iter().filter_map(|e| e.anchor.as_deref()).collect();
        let by_id: HashMap<String, &Outgoing> =
            chunk.iter().map(|o| (anchor_id(&o.anchor), o)).collect();
        let acknowledged: Vec<(Guid, Option<String>)> = by_id
            .iter()
            .filter(|(id, _)| !failed_anchors.contains(id.as_str()))
            .map(|(_, o)| (o.anchor, o.recorded.clone()))
            .collect();
        let recording = Instant::now();
        self.space.record_exported(self.connector, &acknowledged)?;
        self.recording += recording.elapsed();
        self.waiting += round_trip;
        tracing::info!(
            connector = self.connector,
            run = self.run,
            seq = self.report.batches,
            added = counts.added,
            updated = counts.updated,
            deleted = counts.deleted,
            unchanged = counts.unchanged,
            errors = failed.len(),
            ms = round_trip.as_millis() as u64,
            "batch acknowledged"
        );
        self.report.counts.add(&counts);
        self.report.errors.extend(failed);
        Ok(())
    }
}

/// Like [`export`], but takes the changes from the streaming planner one batch at a time,
/// so memory holds a batch, not the plan. `before` is what this run exported already (the
/// early export): the report goes on from it, batch numbers too. `progress` is told the
/// objects planned so far (in scope, and deletions) and their total.
#[allow(clippy::too_many_arguments)]
pub async fn export_stream(
    ch: &mut Channel,
    space: &ConnectorSpace,
    connector: &str,
    run: u64,
    changes: &mut Changes<'_>,
    batch: usize,
    before: ExportReport,
    mut progress: impl FnMut(u64, u64),
) -> Result<ExportReport, ExportError> {
    let mut out = Sender::new(ch, space, connector, run, before);
    let started = Instant::now();
    let mut planning = Duration::ZERO;
    let mut next = changes.next_batch(batch.max(1))?;
    planning += started.elapsed();
    while !next.is_empty() {
        let (outgoing, unsendable) = outgoing(&next);
        drop(next);
        out.report.errors.extend(unsendable);
        let (done, total) = changes.progress();
        // The endpoint applies this batch while the next one is planned: the planning is
        // synchronous and runs while the batch's answer is awaited (the connection is
        // driven by its own task), so the two overlap without a second thread.
        let (sent, following) = tokio::join!(
            async {
                if outgoing.is_empty() {
                    Ok(())
                } else {
                    out.send(&outgoing).await
                }
            },
            async {
                let t = Instant::now();
                let n = changes.next_batch(batch.max(1));
                planning += t.elapsed();
                n
            }
        );
        sent?;
        next = following?;
        progress(done, total);
    }
    // Where an export's time goes: pass 2 runs while a batch is applied, so the parts can
    // add up to more than the whole.
    tracing::debug!(
        connector,
        run,
        batches = out.report.batches,
        total_ms = started.elapsed().as_millis() as u64,
        planning_ms = planning.as_millis() as u64,
        endpoint_ms = out.waiting.as_millis() as u64,
        recording_ms = out.recording.as_millis() as u64,
        "timing: export"
    );
    Ok(out.report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn references_become_immutable_ids_and_the_kind_is_checked() {
        let g = Guid::from_bytes(&[1; 16]).expect("ok");
        let m = Guid::from_bytes(&[2; 16]).expect("ok");
        let e = Exported {
            kind: "group".into(),
            dn: "CN=g,DC=x".into(),
            attrs: BTreeMap::from([("members".into(), vec![m.to_string()])]),
        };
        let o = to_wire(&g, &e).expect("ok");
        assert_eq!(o.anchor, "AQEBAQEBAQEBAQEBAQEBAQ==");
        assert_eq!(
            o.attrs["members"],
            vec!["AgICAgICAgICAgICAgICAg==".to_string()]
        );
        assert_eq!(o.kind, ObjectKind::Group);
        o.check().expect("ok");
        let bad = Exported {
            kind: "printer".into(),
            ..e
        };
        assert!(to_wire(&g, &bad).expect_err("refused").contains("printer"));
    }
}
