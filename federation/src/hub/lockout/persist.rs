//! Persistence of lockout state: one writer thread takes queued rows off the sign-in's path
//! (the queue is bounded, so a flood cannot grow it) and prunes old rows; at start-up the
//! kept rows are loaded back. Only counters and familiar places are written, never the
//! fingerprints of wrong passwords.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{source_key, AccountKey, Counter, Places, SmartLockout, UserState};
use crate::lock;
use causeway_store::{LockoutStore, StoreError};

/// Rows waiting for the writer at most: past it, a change is kept in memory only (and
/// written with the account's next change), so a flood of failures cannot grow the
/// queue without bound.
const WRITE_QUEUE: usize = 4096;
/// How often the writer prunes the stored rows, and after how long unused a row goes
/// (familiar places included: a month without a sign-in forgets them).
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const ROW_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// What the writer thread is asked to do.
pub(super) enum Write {
    Row(String, Option<String>, SystemTime),
    Flush(std::sync::mpsc::Sender<()>),
}

/// Writes queued rows in order and, about once a minute, prunes the store to at most
/// `keep` rows of the last [`ROW_RETENTION`] — so that names sprayed between restarts
/// cannot grow the file without bound.
fn writer_loop(
    store: Arc<dyn LockoutStore>,
    rx: std::sync::mpsc::Receiver<Write>,
    keep: usize,
    clock: fn() -> SystemTime,
) {
    let mut last_prune = std::time::Instant::now();
    loop {
        match rx.recv_timeout(PRUNE_EVERY) {
            Ok(Write::Row(account, text, now)) => {
                if let Err(e) = store.save_lockout(&account, text.as_deref(), now) {
                    // Memory still holds the state; only a restart would forget it.
                    warn!(error = %e, "lockout state not persisted");
                }
            }
            Ok(Write::Flush(done)) => {
                let _ = done.send(());
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = std::time::Instant::now();
            let older_than = clock()
                .checked_sub(ROW_RETENTION)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            match store.prune_lockout(keep, older_than) {
                Ok(0) => {}
                Ok(n) => tracing::debug!(rows = n, "old lockout rows pruned"),
                Err(e) => warn!(error = %e, "lockout rows not pruned"),
            }
        }
    }
}

/// The persisted form of one account (times in Unix seconds).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    #[serde(default, skip_serializing_if = "PCounter::is_empty")]
    unfamiliar: PCounter,
    #[serde(default, skip_serializing_if = "PCounter::is_empty")]
    familiar: PCounter,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    places: Vec<(IpAddr, u64)>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PCounter {
    failures: u32,
    last_failure: Option<u64>,
    locks: u32,
    locked_until: Option<u64>,
}

impl PCounter {
    fn is_empty(&self) -> bool {
        self.failures == 0 && self.locks == 0 && self.locked_until.is_none()
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn from_unix(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}

impl From<&Counter> for PCounter {
    fn from(c: &Counter) -> Self {
        Self {
            failures: c.failures,
            last_failure: c.last_failure.map(unix),
            locks: c.locks,
            locked_until: c.locked_until.map(unix),
        }
    }
}

impl From<&PCounter> for Counter {
    fn from(c: &PCounter) -> Self {
        Self {
            failures: c.failures,
            last_failure: c.last_failure.map(from_unix),
            locks: c.locks,
            // Stored in whole seconds: round up, so a restart never shortens a lock.
            locked_until: c.locked_until.map(|s| from_unix(s.saturating_add(1))),
        }
    }
}

impl SmartLockout {
    /// Loads the state `store` kept and writes every later change to it (once; a second
    /// store is refused). Rows that no longer matter at `now` are deleted. Returns how many
    /// accounts were loaded.
    pub fn persist_to(
        &self,
        store: Arc<dyn LockoutStore>,
        now: SystemTime,
    ) -> Result<usize, StoreError> {
        if self.writer.get().is_some() {
            return Err(StoreError::WrongState(
                "the lockout state is already persisted to a store".into(),
            ));
        }
        let rows = store.load_lockout(self.policy.max_tracked)?;
        let mut loaded = 0;
        let mut stale = Vec::new();
        {
            let mut users = lock(&self.users);
            let mut familiar = lock(&self.familiar);
            for (account, text) in rows {
                let Ok(row) = serde_json::from_str::<Row>(&text) else {
                    warn!("unreadable lockout row ignored and deleted");
                    stale.push(account);
                    continue;
                };
                let key = AccountKey(account.clone());
                let mut state = UserState::new(now);
                state.unfamiliar = Counter::from(&row.unfamiliar);
                state.familiar = Counter::from(&row.familiar);
                self.expire(&mut state, now);
                let places: Places = row
                    .places
                    .iter()
                    .take(self.policy.familiar_locations)
                    .map(|(ip, t)| (source_key(*ip), from_unix(*t)))
                    .collect();
                if state.is_clean() && places.is_empty() {
                    stale.push(account);
                    continue;
                }
                if !state.is_clean() {
                    users.insert(key.clone(), state);
                }
                if !places.is_empty() {
                    familiar.insert(key, places);
                }
                loaded += 1;
            }
        }
        for account in stale {
            store.save_lockout(&account, None, now)?;
        }
        store.prune_lockout(
            self.policy.max_tracked,
            now.checked_sub(ROW_RETENTION)
                .unwrap_or(SystemTime::UNIX_EPOCH),
        )?;
        let (tx, rx) = std::sync::mpsc::sync_channel(WRITE_QUEUE);
        let keep = self.policy.max_tracked;
        std::thread::Builder::new()
            .name("lockout-writer".into())
            .spawn(move || writer_loop(store, rx, keep, SystemTime::now))
            .map_err(|e| StoreError::Database {
                path: "lockout state".into(),
                action: "start the writer thread",
                detail: e.to_string(),
            })?;
        let _ = self.writer.set(tx);
        Ok(loaded)
    }

    /// Waits until every change made so far is in the store (tests, and shutdown).
    pub fn flush(&self) {
        let Some(tx) = self.writer.get() else { return };
        let (done, wait) = std::sync::mpsc::channel();
        if tx.send(Write::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// Queues the account's row for the store, if there is one (the caller holds
    /// `persist`, so rows are queued in the order they changed).
    pub(super) fn save(&self, key: &AccountKey, now: SystemTime) {
        let Some(tx) = self.writer.get() else {
            return;
        };
        let row = {
            let users = lock(&self.users);
            let familiar = lock(&self.familiar);
            let mut row = Row::default();
            if let Some(s) = users.get(key) {
                row.unfamiliar = PCounter::from(&s.unfamiliar);
                row.familiar = PCounter::from(&s.familiar);
            }
            if let Some(p) = familiar.get(key) {
                row.places = p.iter().map(|(ip, t)| (*ip, unix(*t))).collect();
            }
            row
        };
        let empty = row.unfamiliar.is_empty() && row.familiar.is_empty() && row.places.is_empty();
        let text = (!empty).then(|| serde_json::to_string(&row).expect("a lockout row serialises"));
        match tx.try_send(Write::Row(key.as_str().to_owned(), text, now)) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                // Behind by a whole queue: a flood. The state is in memory; the row is
                // written with this account's next change.
                let n = self
                    .dropped_rows
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n.is_power_of_two() {
                    warn!(
                        dropped = n + 1,
                        "lockout writer behind; state kept in memory only"
                    );
                }
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                warn!("lockout writer stopped; state kept in memory only");
            }
        }
    }
}
