//! An in-memory [`Synced`] for the channel's tests: leases, runs and per-anchor state,
//! nothing else (no history, no users, no groups).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use causeway_proto::sync::{
    Counts, Object, ObjectChange, ObjectKind, RunKind, RunRecord, RunReport, RunStatus,
};
use causeway_store::{BatchResult, LeaseState, MatchPolicy, StoreError, Synced, SyncedRecord};

/// Leases, runs and the anchors applied; records every holder it was called with.
#[derive(Default)]
pub(super) struct FakeSynced {
    pub(super) leases: Mutex<HashMap<String, (String, SystemTime)>>,
    pub(super) runs: Mutex<Vec<RunRecord>>,
    pub(super) objects: Mutex<BTreeMap<String, Object>>,
    pub(super) holders: Mutex<Vec<String>>,
}

impl FakeSynced {
    fn saw(&self, holder: &str) {
        crate::lock(&self.holders).push(holder.to_owned());
    }

    fn holds(&self, connector: &str, holder: &str, now: SystemTime) -> bool {
        crate::lock(&self.leases)
            .get(connector)
            .is_some_and(|(h, until)| h == holder && *until > now)
    }

    fn state(&self, connector: &str, holder: &str) -> LeaseState {
        let leases = crate::lock(&self.leases);
        let l = leases.get(connector);
        LeaseState {
            granted: l.is_some_and(|(h, _)| h == holder),
            holder: l.map(|(h, _)| h.clone()),
            expires_at: l.map(|(_, t)| *t),
        }
    }
}

fn wrong(s: &str) -> StoreError {
    StoreError::WrongState(s.to_owned())
}

#[async_trait]
impl Synced for FakeSynced {
    async fn lease(
        &self,
        connector: &str,
        holder: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<LeaseState, StoreError> {
        self.saw(holder);
        {
            let mut leases = crate::lock(&self.leases);
            let free = leases
                .get(connector)
                .is_none_or(|(h, until)| h == holder || *until <= now);
            if free {
                leases.insert(connector.to_owned(), (holder.to_owned(), now + ttl));
            }
        }
        Ok(self.state(connector, holder))
    }

    async fn release(
        &self,
        connector: &str,
        holder: &str,
        _now: SystemTime,
    ) -> Result<LeaseState, StoreError> {
        self.saw(holder);
        let mut leases = crate::lock(&self.leases);
        if leases.get(connector).is_some_and(|(h, _)| h == holder) {
            leases.remove(connector);
        }
        drop(leases);
        Ok(self.state(connector, holder))
    }

    async fn start_run(
        &self,
        connector: &str,
        holder: &str,
        kind: RunKind,
        _policy: MatchPolicy,
        now: SystemTime,
    ) -> Result<u64, StoreError> {
        self.saw(holder);
        if !self.holds(connector, holder, now) {
            return Err(wrong(&format!(
                "{holder} does not hold the lease of {connector}"
            )));
        }
        let mut runs = crate::lock(&self.runs);
        let run = runs.len() as u64 + 1;
        runs.push(RunRecord {
            run,
            connector: connector.to_owned(),
            host: holder.to_owned(),
            kind,
            status: RunStatus::Running,
            started_at: secs(now),
            finished_at: None,
            counts: Counts::default(),
            errors: Vec::new(),
            detail: None,
        });
        Ok(run)
    }

    async fn apply_batch(
        &self,
        run: u64,
        holder: &str,
        changes: &[ObjectChange],
        now: SystemTime,
    ) -> Result<BatchResult, StoreError> {
        self.saw(holder);
        let connector = {
            let runs = crate::lock(&self.runs);
            let r = runs
                .iter()
                .find(|r| r.run == run && r.status == RunStatus::Running)
                .ok_or_else(|| wrong(&format!("no running run {run}")))?;
            r.connector.clone()
        };
        if !self.holds(&connector, holder, now) {
            return Err(wrong(&format!(
                "{holder} does not hold the lease of {connector}"
            )));
        }
        let mut counts = Counts::default();
        let mut objects = crate::lock(&self.objects);
        for c in changes {
            match c {
                ObjectChange::Upsert { object } => {
                    match objects.insert(object.anchor.clone(), object.clone()) {
                        None => counts.added += 1,
                        Some(old) if old == *object => counts.unchanged += 1,
                        Some(_) => counts.updated += 1,
                    }
                }
                ObjectChange::Delete { anchor, .. } => match objects.remove(anchor) {
                    Some(_) => counts.deleted += 1,
                    None => counts.unchanged += 1,
                },
            }
        }
        if let Some(r) = crate::lock(&self.runs).iter_mut().find(|r| r.run == run) {
            r.counts.add(&counts);
        }
        Ok(BatchResult {
            counts,
            errors: Vec::new(),
        })
    }

    async fn finish_run(
        &self,
        run: u64,
        holder: &str,
        report: &RunReport,
        now: SystemTime,
    ) -> Result<RunRecord, StoreError> {
        self.saw(holder);
        let mut runs = crate::lock(&self.runs);
        let r = runs
            .iter_mut()
            .find(|r| r.run == run && r.host == holder)
            .ok_or_else(|| wrong(&format!("{holder} has no run {run}")))?;
        r.status = report.status;
        r.finished_at = Some(secs(now));
        Ok(r.clone())
    }

    async fn runs(
        &self,
        connector: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        Ok(crate::lock(&self.runs)
            .iter()
            .rev()
            .filter(|r| connector.is_none_or(|c| r.connector == c))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn synced_object(&self, anchor: &str) -> Result<Option<SyncedRecord>, StoreError> {
        let _ = anchor;
        Ok(None)
    }

    // The channel tests do not exercise hash sync (the SQLite store's tests and the lab
    // test do): this fake refuses it.
    async fn apply_verifiers(
        &self,
        _connector: &str,
        holder: &str,
        _changes: &[causeway_store::VerifierChange],
        _now: SystemTime,
    ) -> Result<(causeway_store::HashCounts, Vec<causeway_store::ObjectError>), StoreError> {
        self.saw(holder);
        Err(wrong("hash sync is not kept by this fake"))
    }

    async fn hash_sync_state(
        &self,
        _connector: &str,
    ) -> Result<(Option<SystemTime>, u64), StoreError> {
        Ok((None, 0))
    }

    async fn synced_counts(&self) -> Result<Vec<(ObjectKind, u64)>, StoreError> {
        let objects = crate::lock(&self.objects);
        let mut by: BTreeMap<ObjectKind, u64> = BTreeMap::new();
        for o in objects.values() {
            *by.entry(o.kind).or_default() += 1;
        }
        Ok(by.into_iter().collect())
    }

    async fn groups_of(&self, _anchor: &str) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
