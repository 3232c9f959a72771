//! The first full import's early export: users go to the endpoint while the directory is
//! still being read, instead of after it.
//!
//! Only what needs no other object is sent early: an in-scope user whose UPN and mail no
//! object read before it claims, in its flat form (its manager only when that manager was
//! itself sent early). Everything that needs the whole set — groups and their members,
//! `member_of`, quarantine, references to objects not read yet, deletions — is left to
//! the ordinary plan after the import, which sees the early users as exported (they are
//! recorded once acknowledged, as any batch) and so sends only what differs.
//!
//! It applies only when nothing has ever been exported for the connector and its space is
//! empty, so no deletion and no threshold can be at stake; never in staging or a dry run
//! (there is no channel then); and not with `member_of`, whose scope needs every group.
//! A clash found later is settled by the plan's rule that the object already exported
//! with the value keeps it, so the user read first wins it (after a full plan the one
//! whose anchor sorts first would).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use causeway_proto::sync::ObjectChange;
use tokio::sync::Notify;

use super::{to_wire, ExportError, ExportReport, Outgoing, Sender};
use crate::ad::entry::{Entry, Guid};
use crate::ad::map::{self, Kind, Mapping};
use crate::config::{Connector, ConnectorKind};
use crate::plan::stream::{claimed, flat_attributes, CLAIMED};
use crate::plan::{body, Exported};
use crate::run::{self, ImportReport, RunError};
use crate::scope::{self, Decision};
use crate::space::{ConnectorSpace, SpaceError};

/// Whether `c`'s next cycle may export during its import: nothing exported for it yet, no
/// object held (so the import is a full one of an empty space), and no `member_of`; AD
/// only (OpenLDAP's content sync reads in one answer).
pub fn applies(c: &Connector, space: &ConnectorSpace) -> Result<bool, SpaceError> {
    Ok(c.kind == ConnectorKind::ActiveDirectory
        && c.member_of.is_none()
        && space.cookie(&c.name)?.is_empty()
        && space.exported_anchors(&c.name)?.is_empty()
        && space.live(&c.name)?.is_empty())
}

fn hash(v: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// What the import hands over and the sender takes: users ready to send, and what is known
/// of the objects read so far.
struct Picker<'a> {
    c: &'a Connector,
    mapping: Option<Mapping>,
    /// Hashes of the UPNs and mail addresses of every in-scope object read so far: a user
    /// whose value one of them already claims is left to the plan (which quarantines).
    claims: HashSet<u64>,
    /// Anchors of every object read so far: a second object with one is left to the plan.
    anchors: HashSet<Guid>,
    /// Users queued or sent early, GUID to anchor (to resolve a manager among them).
    early: HashMap<Guid, Guid>,
    queue: VecDeque<Outgoing>,
    /// Users the queue had no room for (the plan sends them).
    left: u64,
}

impl Picker<'_> {
    /// Takes what can go early from a merged page. The queue holds at most `cap` users, so
    /// an endpoint slower than the directory costs no memory: the rest wait for the plan.
    fn offer(
        &mut self,
        space: &ConnectorSpace,
        page: &[Entry],
        cap: usize,
    ) -> Result<(), SpaceError> {
        if self.mapping.is_none() {
            // The password age is read at the start of the import, before the first page.
            let age = space.max_password_age(&self.c.name)?;
            self.mapping = Some(self.c.mapping.clone().with_max_password_age(age));
        }
        let Some(mapping) = self.mapping.as_ref() else {
            return Ok(());
        };
        for e in page.iter().filter(|e| !e.deleted) {
            let Ok(Some(m)) = map::map(e.guid, &e.dn, &e.attrs, mapping) else {
                continue;
            };
            if scope::decide(self.c, &e.dn, &e.attrs) != Decision::In {
                continue;
            }
            let values: Vec<u64> = CLAIMED
                .iter()
                .filter_map(|f| claimed(&m, *f))
                .map(|v| hash(&v))
                .collect();
            let clash = values.iter().any(|h| self.claims.contains(h));
            self.claims.extend(values);
            let repeated = !self.anchors.insert(m.anchor);
            if m.kind != Kind::User || clash || repeated {
                continue;
            }
            if self.queue.len() >= cap {
                self.left += 1;
                continue;
            }
            let mut attrs = flat_attributes(&m);
            let manager = m
                .manager
                .as_deref()
                .and_then(|r| r.strip_prefix("<GUID="))
                .and_then(|t| t.split_once('>'))
                .and_then(|(g, _)| Guid::parse(g).ok())
                .and_then(|g| self.early.get(&g));
            if let Some(a) = manager {
                attrs.insert("manager".into(), vec![a.to_string()]);
            }
            let object = Exported {
                kind: m.kind.as_str().to_owned(),
                dn: m.dn,
                attrs,
            };
            let Ok(wire) = to_wire(&m.anchor, &object) else {
                continue;
            };
            self.early.insert(m.guid, m.anchor);
            self.queue.push_back(Outgoing {
                anchor: m.anchor,
                recorded: Some(body(&object)),
                change: ObjectChange::Upsert { object: wire },
            });
        }
        Ok(())
    }
}

/// Imports `c` into its (empty) space and, while it reads, sends its users to the endpoint
/// in run `run`, `batch` at a time. Returns the import's result and what the early batches
/// did; an endpoint that fails stops the sending, not the import.
pub async fn import(
    ch: &mut super::Channel,
    space: &ConnectorSpace,
    c: &Connector,
    run: u64,
    batch: usize,
    progress: impl FnMut(u64),
) -> (
    Result<ImportReport, RunError>,
    Result<ExportReport, ExportError>,
) {
    let batch = batch.max(1);
    let cap = batch * 2;
    let picker = Mutex::new(Picker {
        c,
        mapping: None,
        claims: HashSet::new(),
        anchors: HashSet::new(),
        early: HashMap::new(),
        queue: VecDeque::new(),
        left: 0,
    });
    let more = Notify::new();
    let done = AtomicBool::new(false);
    let failed = AtomicBool::new(false);
    let reading = async {
        let r = run::import_with(c, space, progress, |page| {
            if failed.load(Ordering::Relaxed) {
                return Ok(());
            }
            let mut p = picker.lock().unwrap_or_else(|e| e.into_inner());
            p.offer(space, page, cap)?;
            if p.queue.len() >= batch {
                more.notify_one();
            }
            Ok(())
        })
        .await;
        done.store(true, Ordering::Release);
        more.notify_one();
        r
    };
    let sending = async {
        let mut out = Sender::new(ch, space, &c.name, run, ExportReport::default());
        loop {
            let finished = done.load(Ordering::Acquire);
            let next: Vec<Outgoing> = {
                let mut p = picker.lock().unwrap_or_else(|e| e.into_inner());
                if p.queue.len() >= batch || (finished && !p.queue.is_empty()) {
                    let n = p.queue.len().min(batch);
                    p.queue.drain(..n).collect()
                } else {
                    Vec::new()
                }
            };
            if next.is_empty() {
                if finished {
                    break;
                }
                more.notified().await;
                continue;
            }
            if let Err(e) = out.send(&next).await {
                failed.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        let p = picker.lock().unwrap_or_else(|e| e.into_inner());
        tracing::debug!(
            connector = %c.name,
            run,
            sent = p.early.len(),
            left_to_the_plan = p.left,
            batches = out.report.batches,
            endpoint_ms = out.waiting.as_millis() as u64,
            "timing: early export"
        );
        Ok(out.report)
    };
    tokio::join!(reading, sending)
}

#[cfg(test)]
mod tests;
