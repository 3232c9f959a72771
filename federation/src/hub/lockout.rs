//! Smart lockout in front of the directory.
//!
//! The hub locks an account out *before* Active Directory's own threshold is reached, so an
//! attacker guessing passwords cannot lock real users out of AD (and so out of everything
//! else on the network). A wrong password that is simply repeated is answered from memory
//! and not counted again — neither here nor in AD, because it never reaches AD.
//!
//! What it must never be: an oracle, or a way to lock someone out.
//! - Counters are keyed on the *account* ([`AccountKey`]: the immutable id once the store
//!   knows the user, else the normalised name), so `ALICE@corp` and `alice@CORP` share one
//!   budget. Names that exist nowhere are tracked exactly like real ones: they lock after
//!   the same threshold, with the same wording. Timing is equalised for password hash
//!   sync by doing the same work, not by sleeping (a sleep is only as fine as the timer's
//!   millisecond): every name does the same store reads, and an answer given without a
//!   check (from memory, or locked) spends one dummy verifier check
//!   (`store::spend_like_a_check`), the whole cost of a real one. No answer waits for the
//!   disk: rows are written by a writer thread. Pass-through checks cost a directory
//!   round trip no local work can imitate, so there an answer from memory waits until
//!   [`SmartLockout::answer_floor`], the median latency of recent real checks.
//! - As AD FS's extranet smart lockout does, a source (an IPv4 address, or an IPv6 /64)
//!   that signed the account in before is *familiar* and has its own budget: failures from
//!   elsewhere lock the unfamiliar places only. Both budgets together stay within
//!   [`LockoutPolicy::directory_threshold`], so AD still never locks.
//! - Per-source throttling counts only failures, so a proxy or NAT full of users who type
//!   their passwords right is never throttled.
//!
//! Counters and familiar places persist through a [`LockoutStore`] (the directory store's
//! SQLite file): every change is queued at once and written, each row in its own
//! transaction, by one writer thread, so a crash loses at most the rows still queued and
//! never leaves half a row. Fingerprints of wrong passwords never leave memory (they are
//! keyed by a per-process secret), so after a restart a remembered wrong password is
//! checked, and counted, once more.
//!
//! For the hub's lockout to shield AD, keep `directory_threshold` below the domain's
//! lockout threshold and `window` at least as long as AD's "reset account lockout counter
//! after".

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use causeway_credential::{Password, SignInOutcome};
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tracing::warn;

use crate::lock;
use crate::store::{ImmutableId, LockoutStore, StoreError};

/// How smart lockout and throttling behave.
#[derive(Debug, Clone)]
pub struct LockoutPolicy {
    /// Distinct wrong passwords within `window` that lock an account at the hub, counted
    /// separately for unfamiliar and for familiar places.
    pub threshold: u32,
    /// Most wrong passwords, from all places together, the hub lets through to the
    /// directory within `window`. Keep it below the domain's own lockout threshold; it is
    /// above `threshold` so that a familiar place keeps `directory_threshold - threshold`
    /// guesses however many an attacker elsewhere spent.
    pub directory_threshold: u32,
    /// How long failures are remembered after the *last* one (a sliding window, like AD's
    /// observation window: keep it at least as long as AD's "reset counter after").
    pub window: Duration,
    /// The first lock's length; each further lock within the window doubles it.
    pub lock_for: Duration,
    /// The longest a lock lasts.
    pub max_lock: Duration,
    /// How many distinct recent wrong passwords are remembered per account.
    pub remembered_bad_passwords: usize,
    /// Failed sign-ins one source (an IPv4 address, or an IPv6 /64) may have per minute,
    /// as a burst. Successes do not count.
    pub per_source_failures_per_minute: u32,
    /// Places (sources) remembered per account as familiar, most recent first.
    pub familiar_locations: usize,
    /// Most accounts and sources tracked at once.
    pub max_tracked: usize,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            threshold: 3,
            directory_threshold: 4,
            // AD's default "reset account lockout counter after" is 30 minutes.
            window: Duration::from_secs(30 * 60),
            lock_for: Duration::from_secs(60),
            max_lock: Duration::from_secs(3600),
            remembered_bad_passwords: 8,
            per_source_failures_per_minute: 120,
            familiar_locations: 16,
            max_tracked: 100_000,
        }
    }
}

impl LockoutPolicy {
    /// Whether the numbers make sense together; the message names the setting to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.threshold == 0 {
            return Err("lockout.threshold must be at least 1".into());
        }
        if self.directory_threshold <= self.threshold {
            return Err(format!(
                "lockout.directory_threshold ({}) must be above lockout.threshold ({}), so that a familiar place keeps guesses of its own",
                self.directory_threshold, self.threshold
            ));
        }
        if self.lock_for.is_zero() || self.max_lock < self.lock_for {
            return Err("lockout.lock_for must be above 0 and at most lockout.max_lock".into());
        }
        if self.window.is_zero() {
            return Err("lockout.window must be above 0".into());
        }
        if self.per_source_failures_per_minute == 0 {
            return Err("throttle.per_source_failures_per_minute must be at least 1".into());
        }
        Ok(())
    }
}

/// The account a sign-in counts against: the store's immutable id when the user is known
/// there, else the sign-in name trimmed and lower-cased (never the name as typed, so
/// variants of one name share one budget).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccountKey(String);

/// Longest name kept as a key; longer (malformed) names share the prefix's budget.
const MAX_KEY_CHARS: usize = 256;

impl AccountKey {
    /// The key of a name the store does not know (pass-through users, unknown names).
    pub fn of_name(name: &str) -> Self {
        let n: String = name
            .trim()
            .to_lowercase()
            .chars()
            .take(MAX_KEY_CHARS)
            .collect();
        Self(format!("n:{n}"))
    }

    /// The key of a user the store knows.
    pub fn of_id(id: &ImmutableId) -> Self {
        Self(format!("i:{}", id.as_str()))
    }

    fn as_str(&self) -> &str {
        &self.0
    }
}

/// Rows waiting for the writer at most: past it, a change is kept in memory only (and
/// written with the account's next change), so a flood of failures cannot grow the
/// queue without bound.
const WRITE_QUEUE: usize = 4096;
/// How often the writer prunes the stored rows, and after how long unused a row goes
/// (familiar places included: a month without a sign-in forgets them).
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const ROW_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

type Fingerprint = [u8; 16];

/// What the writer thread is asked to do.
enum Write {
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

/// How often a check waiting for a busy account looks again if no wake-up came (wake-ups
/// are the normal path; this only bounds a missed one).
const BUSY_POLL: Duration = Duration::from_millis(50);

/// Why [`SmartLockout::admit`] did not admit a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Answer this without asking the directory.
    Answer(SignInOutcome),
    /// Not now: wait for one of the account's checks in flight to finish.
    Busy,
}

/// Which budget an attempt spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Unfamiliar,
    Familiar,
}

/// One budget of wrong passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Counter {
    failures: u32,
    last_failure: Option<SystemTime>,
    locks: u32,
    locked_until: Option<SystemTime>,
}

impl Counter {
    fn is_clean(&self) -> bool {
        self.failures == 0 && self.locks == 0 && self.locked_until.is_none()
    }
}

#[derive(Debug)]
struct UserState {
    unfamiliar: Counter,
    familiar: Counter,
    bad: VecDeque<Fingerprint>,
    in_flight: Vec<(Fingerprint, Place)>,
    /// Checks waiting for this account, first come first served.
    queue: VecDeque<u64>,
    last_seen: SystemTime,
}

impl UserState {
    fn new(now: SystemTime) -> Self {
        Self {
            unfamiliar: Counter::default(),
            familiar: Counter::default(),
            bad: VecDeque::new(),
            in_flight: Vec::new(),
            queue: VecDeque::new(),
            last_seen: now,
        }
    }

    fn counter(&mut self, p: Place) -> &mut Counter {
        match p {
            Place::Unfamiliar => &mut self.unfamiliar,
            Place::Familiar => &mut self.familiar,
        }
    }

    fn total_failures(&self) -> u32 {
        self.unfamiliar
            .failures
            .saturating_add(self.familiar.failures)
    }

    /// Nothing worth remembering: may be dropped at once.
    fn is_clean(&self) -> bool {
        self.unfamiliar.is_clean()
            && self.familiar.is_clean()
            && self.in_flight.is_empty()
            && self.queue.is_empty()
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: SystemTime,
}

/// An account's familiar places: source keys with their last successful sign-in.
type Places = VecDeque<(IpAddr, SystemTime)>;

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

/// Time from `a` to `b`, zero if `b` is not later (the wall clock may step back).
fn since(b: SystemTime, a: SystemTime) -> Duration {
    b.duration_since(a).unwrap_or(Duration::ZERO)
}

/// How many recent real checks the answer floor is the median of.
const FLOOR_SAMPLES: usize = 64;

/// The latency of recent checks that reached the directory. A pass-through answer from
/// memory (a remembered wrong password, a lock) waits until this floor, so it is not
/// faster than a real check: otherwise its speed would tell an attacker that someone
/// else already tried this password (a victim's typo) or that the account is tracked.
#[derive(Debug, Default)]
struct LatencyFloor {
    recent: Mutex<VecDeque<Duration>>,
}

impl LatencyFloor {
    fn note(&self, d: Duration) {
        let mut r = lock(&self.recent);
        if r.len() == FLOOR_SAMPLES {
            r.pop_front();
        }
        r.push_back(d);
    }

    fn median(&self) -> Duration {
        let mut v: Vec<Duration> = lock(&self.recent).iter().copied().collect();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(Duration::ZERO)
    }
}

/// The hub's lockout state. Memory is bounded by [`LockoutPolicy::max_tracked`].
pub struct SmartLockout {
    policy: LockoutPolicy,
    /// Per-process random key: fingerprints of passwords are keyed so that they are
    /// useless outside this process, and they never leave memory.
    key: [u8; 32],
    users: Mutex<HashMap<AccountKey, UserState>>,
    /// Kept apart from the failure counters: only a successful sign-in adds here, so a
    /// flood of unauthenticated failures can never evict a user's familiar places.
    familiar: Mutex<HashMap<AccountKey, Places>>,
    sources: Mutex<HashMap<IpAddr, Bucket>>,
    /// The writer thread's queue, once persisted. Rows are written off the sign-in's path,
    /// so no answer waits for the disk (and an answer from memory, which writes nothing,
    /// is not faster than one that changed the state).
    writer: OnceLock<std::sync::mpsc::SyncSender<Write>>,
    /// Rows not queued because the writer was behind (kept in memory only).
    dropped_rows: std::sync::atomic::AtomicU64,
    /// Held while a row is taken from memory and queued, so writes for one account reach
    /// the store in the order they were made.
    persist: Mutex<()>,
    /// Signalled when a check finishes, so waiting checks look again at once.
    freed: tokio::sync::Notify,
    next_waiter: std::sync::atomic::AtomicU64,
    floor: LatencyFloor,
}

impl std::fmt::Debug for SmartLockout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmartLockout")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Permission for one check to reach the directory. It holds one of the account's
/// in-flight slots: [`Ticket::record`] gives the answer back; dropping it unused just frees
/// the slot (and gives back the source's token).
#[derive(Debug)]
pub struct Ticket<'a> {
    lockout: &'a SmartLockout,
    key: AccountKey,
    fp: Fingerprint,
    place: Place,
    source: Option<IpAddr>,
    charged: bool,
    open: bool,
}

impl Ticket<'_> {
    /// Records what the directory answered. `attempts` is how many binds may have reached
    /// AD for this check (a retry after a timeout may have bound twice): a wrong password
    /// counts that many times, so the hub never under-counts what AD counts.
    pub fn record(mut self, outcome: SignInOutcome, attempts: u32, now: SystemTime) {
        self.open = false;
        self.lockout
            .finish(&self, Some((outcome, attempts.max(1))), now);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.open {
            self.lockout.finish(self, None, SystemTime::now());
        }
    }
}

/// The key per-source throttling and familiar places use: an IPv4 address, or the /64 of
/// an IPv6 address (one host usually owns a whole /64).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        v4 @ IpAddr::V4(_) => v4,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// Whether an answer is a failure the source pays for.
fn is_failure(o: SignInOutcome) -> bool {
    o.is_bad_password() || o == SignInOutcome::AccountLocked
}

impl SmartLockout {
    /// A fresh lockout state with `policy`, in memory only until [`SmartLockout::persist_to`].
    pub fn new(policy: LockoutPolicy) -> Self {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("OS random generator");
        Self {
            policy,
            key,
            users: Mutex::new(HashMap::new()),
            familiar: Mutex::new(HashMap::new()),
            sources: Mutex::new(HashMap::new()),
            writer: OnceLock::new(),
            dropped_rows: std::sync::atomic::AtomicU64::new(0),
            persist: Mutex::new(()),
            freed: tokio::sync::Notify::new(),
            next_waiter: std::sync::atomic::AtomicU64::new(1),
            floor: LatencyFloor::default(),
        }
    }

    /// Notes how long a check that the directory answered took (see
    /// [`SmartLockout::answer_floor`]).
    pub fn note_check_latency(&self, d: Duration) {
        self.floor.note(d);
    }

    /// The median latency of the last 64 directory-answered checks: answers given from
    /// memory should not come sooner (zero until a check has been made).
    pub fn answer_floor(&self) -> Duration {
        self.floor.median()
    }

    /// The policy in force.
    pub fn policy(&self) -> &LockoutPolicy {
        &self.policy
    }

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

    fn fingerprint(&self, account: &AccountKey, password: &Password) -> Fingerprint {
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC takes any key length");
        mac.update(account.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(password.expose_secret().as_bytes());
        let full = mac.finalize().into_bytes();
        let mut fp = [0u8; 16];
        fp.copy_from_slice(&full[..16]);
        fp
    }

    fn place_of(&self, account: &AccountKey, source: Option<IpAddr>) -> Place {
        let Some(ip) = source else {
            return Place::Unfamiliar;
        };
        let sk = source_key(ip);
        let known = lock(&self.familiar)
            .get(account)
            .is_some_and(|places| places.iter().any(|(p, _)| *p == sk));
        if known {
            Place::Familiar
        } else {
            Place::Unfamiliar
        }
    }

    /// Decides whether a check may go to the directory. `Err(Refusal::Answer)` is the
    /// answer to give without asking: locked at the hub, throttled by source rate or memory
    /// limits, or this exact wrong password already refused. `Err(Refusal::Busy)`: this
    /// account already has as many checks in flight as wrong passwords it can still afford
    /// here, or this same password is in flight; wait for one to finish
    /// ([`SmartLockout::admit_waiting`]).
    pub fn admit(
        &self,
        account: &AccountKey,
        password: &Password,
        source: Option<IpAddr>,
        now: SystemTime,
    ) -> Result<Ticket<'_>, Refusal> {
        let r = self.admit_inner(account, password, source, now, true, None);
        if matches!(r, Err(Refusal::Busy)) {
            self.refund(source, now);
        }
        r
    }

    /// [`SmartLockout::admit`], waiting while the account is busy, until `deadline` (then
    /// `Throttled`). The source is charged once, not at every retry.
    pub async fn admit_waiting(
        &self,
        account: &AccountKey,
        password: &Password,
        source: Option<IpAddr>,
        deadline: Instant,
    ) -> Result<Ticket<'_>, SignInOutcome> {
        let me = self
            .next_waiter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut charge_source = true;
        loop {
            // Register for the wake-up before looking, so a slot freed in between counts.
            let freed = self.freed.notified();
            match self.admit_inner(
                account,
                password,
                source,
                SystemTime::now(),
                charge_source,
                Some(me),
            ) {
                Ok(t) => return Ok(t),
                Err(Refusal::Answer(o)) => {
                    self.leave_queue(account, me);
                    return Err(o);
                }
                Err(Refusal::Busy) if Instant::now() < deadline => {
                    charge_source = false;
                    let wait = (deadline - Instant::now()).min(BUSY_POLL);
                    let _ = tokio::time::timeout(wait, freed).await;
                }
                Err(Refusal::Busy) => {
                    self.leave_queue(account, me);
                    // Waiting too long is not the source's failure.
                    self.refund(source, SystemTime::now());
                    return Err(SignInOutcome::Throttled);
                }
            }
        }
    }

    fn admit_inner(
        &self,
        account: &AccountKey,
        password: &Password,
        source: Option<IpAddr>,
        now: SystemTime,
        charge_source: bool,
        waiter: Option<u64>,
    ) -> Result<Ticket<'_>, Refusal> {
        // A token is taken now and given back if the answer is not a failure: checks in
        // flight cannot overshoot the source's budget, and successes cost it nothing.
        if let (Some(ip), true) = (source, charge_source) {
            if !self.take_source_token(source_key(ip), now) {
                return Err(Refusal::Answer(SignInOutcome::Throttled));
            }
        }
        let place = self.place_of(account, source);
        let fp = self.fingerprint(account, password);
        let mut users = lock(&self.users);
        if !users.contains_key(account)
            && users.len() >= self.policy.max_tracked
            && !self.make_room(&mut users, now)
        {
            drop(users);
            if charge_source {
                self.refund(source, now);
            }
            return Err(Refusal::Answer(SignInOutcome::Throttled));
        }
        let state = users
            .entry(account.clone())
            .or_insert_with(|| UserState::new(now));
        state.last_seen = now;
        self.expire(state, now);
        let budget = self.budget(state, place);
        if state.counter(place).locked_until.is_some() || budget == 0 {
            return Err(Refusal::Answer(SignInOutcome::AccountLocked));
        }
        if state.bad.contains(&fp) {
            return Err(Refusal::Answer(SignInOutcome::InvalidCredentials));
        }
        // Never more checks in flight than wrong passwords the account can still afford
        // here, and never the same password twice at once: parallel guesses cannot
        // overshoot. Checks in flight elsewhere count too: they spend the directory's
        // budget as well.
        let in_flight_here = state.in_flight.iter().filter(|(_, p)| *p == place).count();
        let in_flight_all = state.in_flight.len();
        let left_all = self
            .policy
            .directory_threshold
            .saturating_sub(state.total_failures()) as usize;
        // First come, first served: a check that finished and asks again at once must not
        // overtake one that was already waiting.
        let my_turn = match waiter {
            Some(id) => state.queue.front().is_none_or(|front| *front == id),
            None => state.queue.is_empty(),
        };
        if !my_turn
            || in_flight_here >= budget
            || in_flight_all >= left_all
            || state.in_flight.iter().any(|(f, _)| *f == fp)
        {
            if let Some(id) = waiter {
                if !state.queue.contains(&id) {
                    state.queue.push_back(id);
                }
            }
            return Err(Refusal::Busy);
        }
        if let Some(id) = waiter {
            state.queue.retain(|w| *w != id);
        }
        state.in_flight.push((fp, place));
        Ok(Ticket {
            lockout: self,
            key: account.clone(),
            fp,
            place,
            source,
            charged: source.is_some(),
            open: true,
        })
    }

    /// Wrong passwords this place may still have checked: its own threshold, and what is
    /// left of the directory's.
    fn budget(&self, state: &UserState, place: Place) -> usize {
        let own = match place {
            Place::Unfamiliar => state.unfamiliar.failures,
            Place::Familiar => state.familiar.failures,
        };
        let mine = self.policy.threshold.saturating_sub(own);
        let all = self
            .policy
            .directory_threshold
            .saturating_sub(state.total_failures());
        mine.min(all) as usize
    }

    fn lock_counter(&self, c: &mut Counter, now: SystemTime) {
        if c.locked_until.is_none() {
            c.locks += 1;
            let factor = 1u32 << (c.locks - 1).min(16);
            c.locked_until = Some(
                now + self
                    .policy
                    .lock_for
                    .saturating_mul(factor)
                    .min(self.policy.max_lock),
            );
        }
    }

    fn finish(&self, t: &Ticket<'_>, answer: Option<(SignInOutcome, u32)>, now: SystemTime) {
        let failed = answer.is_some_and(|(o, _)| is_failure(o));
        if t.charged && !failed {
            self.refund(t.source, now);
        }
        let _order = lock(&self.persist);
        let mut changed = false;
        {
            let mut users = lock(&self.users);
            let Some(state) = users.get_mut(&t.key) else {
                return;
            };
            if let Some(i) = state.in_flight.iter().position(|(f, _)| *f == t.fp) {
                state.in_flight.swap_remove(i);
            }
            match answer {
                Some((o, _)) if o.is_success() => {
                    // Forget this place's failures (the right password was typed here);
                    // the other place keeps its own, so a success at home does not hand
                    // an attacker elsewhere a fresh budget.
                    *state.counter(t.place) = Counter::default();
                    state.bad.clear();
                    changed = true;
                }
                Some((o, attempts)) if o.is_bad_password() && !state.bad.contains(&t.fp) => {
                    self.expire(state, now);
                    let c = state.counter(t.place);
                    c.failures = c.failures.saturating_add(attempts);
                    c.last_failure = Some(now);
                    state.bad.push_back(t.fp);
                    while state.bad.len() > self.policy.remembered_bad_passwords {
                        state.bad.pop_front();
                    }
                    let over_all = state.total_failures() >= self.policy.directory_threshold;
                    if state.counter(t.place).failures >= self.policy.threshold || over_all {
                        let mut c = *state.counter(t.place);
                        self.lock_counter(&mut c, now);
                        *state.counter(t.place) = c;
                    }
                    changed = true;
                }
                _ => {}
            }
            if state.is_clean() {
                users.remove(&t.key);
            }
        }
        if let (Some((o, _)), Some(ip)) = (answer, t.source) {
            if o.is_success() {
                self.remember_place(&t.key, source_key(ip), now);
                changed = true;
            }
        }
        if changed {
            self.save(&t.key, now);
        }
        drop(_order);
        self.freed.notify_waiters();
    }

    /// Adds `sk` to the account's familiar places (most recent first, bounded).
    fn remember_place(&self, key: &AccountKey, sk: IpAddr, now: SystemTime) {
        let mut familiar = lock(&self.familiar);
        if !familiar.contains_key(key) && familiar.len() >= self.policy.max_tracked {
            // Only successes add places, so the one to forget is the account whose
            // newest success is oldest.
            let oldest = familiar
                .iter()
                .min_by_key(|(_, p)| p.front().map(|(_, t)| *t))
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                familiar.remove(&k);
            }
        }
        let places = familiar.entry(key.clone()).or_default();
        places.retain(|(p, _)| *p != sk);
        places.push_front((sk, now));
        places.truncate(self.policy.familiar_locations.max(1));
    }

    /// Queues the account's row for the store, if there is one (the caller holds
    /// `persist`, so rows are queued in the order they changed).
    fn save(&self, key: &AccountKey, now: SystemTime) {
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

    /// A waiter that gives up leaves the queue (and lets the next one go).
    fn leave_queue(&self, account: &AccountKey, id: u64) {
        let mut users = lock(&self.users);
        if let Some(state) = users.get_mut(account) {
            state.queue.retain(|w| *w != id);
            if state.is_clean() {
                users.remove(account);
            }
        }
        drop(users);
        self.freed.notify_waiters();
    }

    /// How long `account` stays locked at the hub for attempts from `source`, if locked
    /// (for the sign-in page).
    pub fn locked_for(
        &self,
        account: &AccountKey,
        source: Option<IpAddr>,
        now: SystemTime,
    ) -> Option<Duration> {
        let place = self.place_of(account, source);
        let mut users = lock(&self.users);
        let state = users.get_mut(account)?;
        self.expire(state, now);
        if let Some(until) = state.counter(place).locked_until {
            return Some(since(until, now)).filter(|d| !d.is_zero());
        }
        if self.budget(state, place) == 0 {
            // The directory's budget is spent: free again when the newest failure leaves
            // the window.
            let last = [state.unfamiliar.last_failure, state.familiar.last_failure]
                .into_iter()
                .flatten()
                .max()?;
            return Some(since(last + self.policy.window, now)).filter(|d| !d.is_zero());
        }
        None
    }

    fn expire(&self, s: &mut UserState, now: SystemTime) {
        for c in [&mut s.unfamiliar, &mut s.familiar] {
            if let Some(until) = c.locked_until {
                if now >= until {
                    // The lock has run its course. The guesses stay remembered and one more
                    // wrong password locks again, for longer: an attacker gains one guess
                    // per lock, not a fresh threshold.
                    c.locked_until = None;
                    c.failures = c.failures.min(self.policy.threshold.saturating_sub(1));
                }
            }
            if c.locked_until.is_none()
                && c.failures > 0
                && c.last_failure
                    .is_none_or(|l| since(now, l) > self.policy.window)
            {
                *c = Counter::default();
            }
        }
        if s.unfamiliar.failures == 0 && s.familiar.failures == 0 {
            s.bad.clear();
        }
    }

    /// Forgets the least recently active entries that are neither locked nor in use.
    /// Returns false when none can go (then new accounts are throttled, never old locks
    /// lost).
    fn make_room(&self, users: &mut HashMap<AccountKey, UserState>, now: SystemTime) -> bool {
        let mut candidates: Vec<(SystemTime, AccountKey)> = users
            .iter_mut()
            .filter_map(|(k, s)| {
                self.expire(s, now);
                (s.unfamiliar.locked_until.is_none()
                    && s.familiar.locked_until.is_none()
                    && s.in_flight.is_empty())
                .then(|| (s.last_seen, k.clone()))
            })
            .collect();
        candidates.sort_by_key(|(t, _)| *t);
        let n = (self.policy.max_tracked / 10).max(1);
        let freed = candidates.len().min(n);
        for (_, k) in candidates.into_iter().take(n) {
            users.remove(&k);
        }
        freed > 0
    }

    fn refill(&self, b: &mut Bucket, now: SystemTime) {
        let per_minute = f64::from(self.policy.per_source_failures_per_minute.max(1));
        let refill = since(now, b.at).as_secs_f64() * per_minute / 60.0;
        b.tokens = (b.tokens + refill).min(per_minute);
        b.at = b.at.max(now);
    }

    fn take_source_token(&self, ip: IpAddr, now: SystemTime) -> bool {
        let burst = f64::from(self.policy.per_source_failures_per_minute.max(1));
        let mut sources = lock(&self.sources);
        if sources.len() >= self.policy.max_tracked && !sources.contains_key(&ip) {
            // Oldest buckets first; a bucket that was idle has refilled anyway.
            let mut by_age: Vec<(SystemTime, IpAddr)> =
                sources.iter().map(|(k, b)| (b.at, *k)).collect();
            by_age.sort_by_key(|(t, _)| *t);
            for (_, k) in by_age
                .into_iter()
                .take((self.policy.max_tracked / 10).max(1))
            {
                sources.remove(&k);
            }
        }
        let b = sources.entry(ip).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        self.refill(b, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Gives back the token an attempt from `source` took (its answer was no failure).
    fn refund(&self, source: Option<IpAddr>, now: SystemTime) {
        let Some(ip) = source else { return };
        let burst = f64::from(self.policy.per_source_failures_per_minute.max(1));
        if let Some(b) = lock(&self.sources).get_mut(&source_key(ip)) {
            self.refill(b, now);
            b.tokens = (b.tokens + 1.0).min(burst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &str) -> AccountKey {
        AccountKey::of_name(name)
    }

    fn pw(s: &str) -> Password {
        Password::new(s.into()).expect("valid")
    }

    fn policy() -> LockoutPolicy {
        LockoutPolicy {
            threshold: 3,
            lock_for: Duration::from_secs(60),
            window: Duration::from_secs(600),
            ..Default::default()
        }
    }

    fn fail(l: &SmartLockout, user: &str, p: &str, t: SystemTime) -> Result<(), Refusal> {
        let ticket = l.admit(&k(user), &pw(p), None, t)?;
        ticket.record(SignInOutcome::InvalidCredentials, 1, t);
        Ok(())
    }

    #[test]
    fn locks_after_threshold_distinct_wrong_passwords() {
        let l = SmartLockout::new(policy());
        let t = SystemTime::now();
        for i in 0..3 {
            fail(&l, "alice@x", &format!("guess-{i}"), t).expect("admitted");
        }
        assert_eq!(
            l.admit(&k("ALICE@x"), &pw("right-one"), None, t).err(),
            Some(Refusal::Answer(SignInOutcome::AccountLocked))
        );
        assert!(l.locked_for(&k("alice@x"), None, t).is_some());
        // After the lock: one more wrong guess locks again, for twice as long.
        let later = t + Duration::from_secs(61);
        fail(&l, "alice@x", "guess-9", later).expect("admitted");
        let left = l
            .locked_for(&k("alice@x"), None, later)
            .expect("locked again");
        assert!(left > Duration::from_secs(100), "{left:?}");
    }

    #[test]
    fn parallel_guesses_cannot_overshoot_the_threshold() {
        let l = SmartLockout::new(policy());
        let t = SystemTime::now();
        let mut tickets = Vec::new();
        let mut refused = 0;
        for i in 0..120 {
            match l.admit(&k("bob"), &pw(&format!("parallel-{i}")), None, t) {
                Ok(ticket) => tickets.push(ticket),
                Err(o) => {
                    assert_eq!(o, Refusal::Busy);
                    refused += 1;
                }
            }
        }
        assert_eq!(
            tickets.len(),
            3,
            "only as many in flight as the threshold allows"
        );
        assert_eq!(refused, 117);
        for ticket in tickets {
            ticket.record(SignInOutcome::InvalidCredentials, 1, t);
        }
        assert_eq!(
            l.admit(&k("bob"), &pw("another"), None, t).err(),
            Some(Refusal::Answer(SignInOutcome::AccountLocked))
        );
        // The same wrong password can never be in flight twice.
        let l2 = SmartLockout::new(policy());
        let first = l2.admit(&k("carol"), &pw("same"), None, t).expect("first");
        assert_eq!(
            l2.admit(&k("carol"), &pw("same"), None, t).err(),
            Some(Refusal::Busy)
        );
        drop(first);
        assert!(
            l2.admit(&k("carol"), &pw("same"), None, t).is_ok(),
            "a dropped ticket frees its slot"
        );
    }

    #[tokio::test]
    async fn waiting_is_first_come_first_served() {
        let l = std::sync::Arc::new(SmartLockout::new(policy()));
        let first = l
            .admit(&k("kim"), &pw("same"), None, SystemTime::now())
            .expect("first");
        let deadline = Instant::now() + Duration::from_secs(5);
        let (l2, (got_tx, got_rx), (go_tx, go_rx)) = (
            l.clone(),
            tokio::sync::oneshot::channel(),
            tokio::sync::oneshot::channel::<()>(),
        );
        let waiter = tokio::spawn(async move {
            let ticket = l2
                .admit_waiting(&k("kim"), &pw("same"), None, deadline)
                .await
                .expect("admitted in turn");
            let _ = got_tx.send(());
            let _ = go_rx.await;
            ticket.record(SignInOutcome::Success, 1, SystemTime::now());
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        first.record(SignInOutcome::Success, 1, SystemTime::now());
        // The finisher asks again at once: the check that was waiting goes first (it is
        // either still queued in front, or already in flight with the same password).
        assert_eq!(
            l.admit(&k("kim"), &pw("same"), None, SystemTime::now())
                .err(),
            Some(Refusal::Busy)
        );
        got_rx.await.expect("the waiter was admitted");
        let _ = go_tx.send(());
        waiter.await.expect("waiter");
        assert!(l
            .admit(&k("kim"), &pw("same"), None, SystemTime::now())
            .is_ok());
    }

    #[test]
    fn a_repeated_wrong_password_counts_once_and_never_reaches_the_directory() {
        let l = SmartLockout::new(policy());
        let t = SystemTime::now();
        fail(&l, "dave", "Summer2026!", t).expect("admitted");
        for _ in 0..20 {
            assert_eq!(
                l.admit(&k("dave"), &pw("Summer2026!"), None, t).err(),
                Some(Refusal::Answer(SignInOutcome::InvalidCredentials))
            );
        }
        assert!(l.admit(&k("dave"), &pw("other"), None, t).is_ok());
    }

    #[test]
    fn retries_that_may_have_bound_count_as_such() {
        let l = SmartLockout::new(policy());
        let t = SystemTime::now();
        l.admit(&k("erin"), &pw("w-1"), None, t)
            .expect("in")
            .record(SignInOutcome::InvalidCredentials, 3, t);
        assert_eq!(
            l.admit(&k("erin"), &pw("w-2"), None, t).err(),
            Some(Refusal::Answer(SignInOutcome::AccountLocked))
        );
    }

    #[test]
    fn success_clears_and_outages_do_not_count() {
        let l = SmartLockout::new(policy());
        let t = SystemTime::now();
        fail(&l, "frank", "a-1", t).expect("in");
        fail(&l, "frank", "a-2", t).expect("in");
        for _ in 0..10 {
            l.admit(&k("frank"), &pw("a-3"), None, t)
                .expect("in")
                .record(SignInOutcome::DirectoryUnavailable, 1, t);
        }
        l.admit(&k("frank"), &pw("right"), None, t)
            .expect("in")
            .record(SignInOutcome::Success, 1, t);
        assert!(
            l.admit(&k("frank"), &pw("a-1"), None, t).is_ok(),
            "success forgets old guesses"
        );
    }

    #[test]
    fn the_window_slides_from_the_last_failure() {
        let l = SmartLockout::new(LockoutPolicy {
            window: Duration::from_secs(10),
            ..policy()
        });
        let t = SystemTime::now();
        fail(&l, "gina", "w-1", t).expect("in");
        fail(&l, "gina", "w-2", t + Duration::from_secs(9)).expect("in");
        // 11 s after the first failure but 2 s after the last: still counted.
        fail(&l, "gina", "w-3", t + Duration::from_secs(11)).expect("in");
        assert!(l
            .locked_for(&k("gina"), None, t + Duration::from_secs(11))
            .is_some());
        let l = SmartLockout::new(LockoutPolicy {
            window: Duration::from_secs(10),
            ..policy()
        });
        fail(&l, "hank", "w-1", t).expect("in");
        fail(&l, "hank", "w-2", t).expect("in");
        let later = t + Duration::from_secs(11);
        fail(&l, "hank", "w-3", later).expect("in");
        assert!(
            l.admit(&k("hank"), &pw("w-4"), None, later).is_ok(),
            "failures older than the window are forgotten"
        );
    }

    #[test]
    fn sources_are_throttled_and_ipv6_by_64() {
        let l = SmartLockout::new(LockoutPolicy {
            per_source_failures_per_minute: 6,
            ..policy()
        });
        let t = SystemTime::now();
        for i in 0..6 {
            let ip: IpAddr = format!("2001:db8::{i}").parse().expect("ip");
            // Only failures spend the source's budget (a dropped ticket gives it back).
            l.admit(&k(&format!("u{i}")), &pw("p-1"), Some(ip), t)
                .expect("admitted")
                .record(SignInOutcome::InvalidCredentials, 1, t);
        }
        let same64: IpAddr = "2001:db8::ffff".parse().expect("ip");
        assert_eq!(
            l.admit(&k("u9"), &pw("p-1"), Some(same64), t).err(),
            Some(Refusal::Answer(SignInOutcome::Throttled))
        );
        let other: IpAddr = "2001:db8:0:1::1".parse().expect("ip");
        assert!(l.admit(&k("u9"), &pw("p-1"), Some(other), t).is_ok());
        assert!(l
            .admit(
                &k("u8"),
                &pw("p-1"),
                Some(same64),
                t + Duration::from_secs(10)
            )
            .is_ok());
    }

    #[test]
    fn memory_is_bounded_and_locks_survive_a_flood() {
        let l = SmartLockout::new(LockoutPolicy {
            max_tracked: 100,
            ..policy()
        });
        let t = SystemTime::now();
        for i in 0..3 {
            fail(&l, "victim", &format!("v-{i}"), t).expect("in");
        }
        for i in 0..1000 {
            let _ = fail(
                &l,
                &format!("spray-{i}"),
                "x-1",
                t + Duration::from_millis(i),
            );
        }
        assert!(lock(&l.users).len() <= 100);
        assert_eq!(
            l.admit(&k("victim"), &pw("v-9"), None, t).err(),
            Some(Refusal::Answer(SignInOutcome::AccountLocked)),
            "a flood does not evict a lock"
        );
        // Clean users leave no trace at all.
        drop(l.admit(&k("clean"), &pw("p"), None, t));
        assert!(!lock(&l.users).contains_key(&k("clean")));
    }

    #[test]
    fn debug_shows_no_state() {
        let l = SmartLockout::new(policy());
        let _ = fail(&l, "ivan", "Very-Secret-1", SystemTime::now());
        let s = format!("{l:?}");
        assert!(!s.contains("ivan") && !s.contains("Very-Secret"));
    }

    const HOME: &str = "198.51.100.10";
    const AWAY: &str = "203.0.113.66";

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    fn attempt(
        l: &SmartLockout,
        user: &str,
        p: &str,
        from: Option<IpAddr>,
        outcome: SignInOutcome,
        t: SystemTime,
    ) -> SignInOutcome {
        match l.admit(&k(user), &pw(p), from, t) {
            Ok(ticket) => {
                ticket.record(outcome, 1, t);
                outcome
            }
            Err(Refusal::Answer(o)) => o,
            Err(Refusal::Busy) => panic!("busy"),
        }
    }

    #[test]
    fn failures_elsewhere_do_not_lock_a_familiar_place() {
        let l = SmartLockout::new(policy());
        let t = SystemTime::now();
        let ok = SignInOutcome::Success;
        let bad = SignInOutcome::InvalidCredentials;
        assert_eq!(
            attempt(&l, "vic@corp.example", "Right-1", ip(HOME), ok, t),
            ok
        );
        let mut seen = Vec::new();
        for i in 0..10 {
            seen.push(attempt(
                &l,
                "vic@corp.example",
                &format!("guess-{i}"),
                ip(AWAY),
                bad,
                t,
            ));
        }
        assert_eq!(&seen[..3], &[bad; 3], "{seen:?}");
        assert!(
            seen[3..].iter().all(|o| *o == SignInOutcome::AccountLocked),
            "{seen:?}"
        );
        assert!(l.locked_for(&k("vic@corp.example"), ip(AWAY), t).is_some());
        assert_eq!(l.locked_for(&k("vic@corp.example"), ip(HOME), t), None);
        // At home (same /64 for IPv6 too) the right password still works.
        assert_eq!(
            attempt(&l, "VIC@corp.example ", "Right-1", ip(HOME), ok, t),
            ok
        );
        // The directory's budget is shared: home keeps directory_threshold - threshold
        // guesses, so AD never sees more than directory_threshold wrong passwords.
        assert_eq!(
            attempt(&l, "vic@corp.example", "typo-1", ip(HOME), bad, t),
            bad
        );
        assert_eq!(
            attempt(&l, "vic@corp.example", "typo-2", ip(HOME), bad, t),
            SignInOutcome::AccountLocked
        );
        assert!(l.locked_for(&k("vic@corp.example"), ip(HOME), t).is_some());
    }

    #[test]
    fn familiar_places_are_bounded_and_survive_a_flood_of_failures() {
        let l = SmartLockout::new(LockoutPolicy {
            familiar_locations: 2,
            max_tracked: 10,
            ..policy()
        });
        let t = SystemTime::now();
        let ok = SignInOutcome::Success;
        for h in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
            attempt(&l, "pat@corp.example", "Right-1", ip(h), ok, t);
        }
        let places = lock(&l.familiar)[&k("pat@corp.example")].clone();
        assert_eq!(places.len(), 2);
        assert_eq!(
            places[0].0,
            ip("192.0.2.3").expect("ip"),
            "most recent first"
        );
        for i in 0..100 {
            let _ = attempt(
                &l,
                &format!("spray-{i}@corp.example"),
                "x-1",
                ip(AWAY),
                SignInOutcome::UnknownUser,
                t,
            );
        }
        assert_eq!(
            l.place_of(&k("pat@corp.example"), ip("192.0.2.2")),
            Place::Familiar
        );
    }

    #[test]
    fn only_failures_spend_the_source_budget() {
        let l = SmartLockout::new(LockoutPolicy {
            per_source_failures_per_minute: 3,
            ..policy()
        });
        let t = SystemTime::now();
        // A NAT full of people who type their passwords right is never throttled.
        for i in 0..50 {
            let user = format!("user{i}@corp.example");
            assert_eq!(
                attempt(&l, &user, "Right-1", ip(AWAY), SignInOutcome::Success, t),
                SignInOutcome::Success
            );
        }
        // Outages are not the source's fault either.
        for i in 0..5 {
            let user = format!("o{i}@corp.example");
            attempt(
                &l,
                &user,
                "p",
                ip(AWAY),
                SignInOutcome::DirectoryUnavailable,
                t,
            );
        }
        for i in 0..3 {
            let user = format!("f{i}@corp.example");
            let o = attempt(
                &l,
                &user,
                "w",
                ip(AWAY),
                SignInOutcome::InvalidCredentials,
                t,
            );
            assert_eq!(o, SignInOutcome::InvalidCredentials);
        }
        assert_eq!(
            l.admit(&k("late@corp.example"), &pw("Right-1"), ip(AWAY), t)
                .err(),
            Some(Refusal::Answer(SignInOutcome::Throttled))
        );
        assert!(l
            .admit(&k("late@corp.example"), &pw("Right-1"), ip(HOME), t)
            .is_ok());
    }

    fn tmp_store(name: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("causeway-lockout-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        d.join("directory.sqlite")
    }

    #[test]
    fn counters_and_familiar_places_survive_a_restart() {
        let path = tmp_store("restart");
        let t = SystemTime::now();
        {
            let store = Arc::new(crate::store::SqliteStore::open(&path).expect("open"));
            let l = SmartLockout::new(policy());
            assert_eq!(l.persist_to(store, t).expect("load"), 0);
            attempt(
                &l,
                "rita@corp.example",
                "Right-1",
                ip(HOME),
                SignInOutcome::Success,
                t,
            );
            for i in 0..3 {
                attempt(
                    &l,
                    "rita@corp.example",
                    &format!("g-{i}"),
                    ip(AWAY),
                    SignInOutcome::InvalidCredentials,
                    t,
                );
            }
            // A name that exists nowhere is kept exactly the same way.
            for i in 0..3 {
                attempt(
                    &l,
                    "nobody@corp.example",
                    &format!("g-{i}"),
                    ip(AWAY),
                    SignInOutcome::UnknownUser,
                    t,
                );
            }
            attempt(
                &l,
                "clean@corp.example",
                "w",
                None,
                SignInOutcome::InvalidCredentials,
                t,
            );
            attempt(
                &l,
                "clean@corp.example",
                "Right-1",
                None,
                SignInOutcome::Success,
                t,
            );
            l.flush();
        }
        let store = Arc::new(crate::store::SqliteStore::open(&path).expect("reopen"));
        let l = SmartLockout::new(policy());
        assert_eq!(
            l.persist_to(store.clone(), t).expect("load"),
            2,
            "a clean account leaves no row"
        );
        for user in ["rita@corp.example", "nobody@corp.example"] {
            assert_eq!(
                l.admit(&k(user), &pw("g-new"), ip(AWAY), t).err(),
                Some(Refusal::Answer(SignInOutcome::AccountLocked)),
                "{user}"
            );
        }
        assert!(l.locked_for(&k("rita@corp.example"), ip(AWAY), t).is_some());
        assert_eq!(
            attempt(
                &l,
                "rita@corp.example",
                "Right-1",
                ip(HOME),
                SignInOutcome::Success,
                t
            ),
            SignInOutcome::Success,
            "home is still familiar after the restart"
        );
        // Once everything has expired, a restart deletes the rows.
        l.flush();
        drop(l);
        let later = t + Duration::from_secs(24 * 3600);
        let l = SmartLockout::new(policy());
        assert_eq!(
            l.persist_to(store.clone(), later).expect("load"),
            1,
            "only the familiar place is left"
        );
        assert_eq!(store.load_lockout(100).expect("rows").len(), 1);
        assert!(l.persist_to(store, later).is_err(), "one store only");
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[test]
    fn account_keys_normalise_names_and_keep_ids_apart() {
        assert_eq!(k(" Alice@CORP.example"), k("alice@corp.example"));
        let id = ImmutableId::from_guid_bytes([7; 16]);
        assert_ne!(AccountKey::of_id(&id), k(id.as_str()));
        let long = "a".repeat(10_000);
        assert_eq!(AccountKey::of_name(&long).as_str().len(), 2 + MAX_KEY_CHARS);
    }

    #[test]
    fn the_answer_floor_is_the_median_of_recent_checks() {
        let l = SmartLockout::new(policy());
        assert_eq!(l.answer_floor(), Duration::ZERO);
        for ms in [5, 1, 9] {
            l.note_check_latency(Duration::from_millis(ms));
        }
        assert_eq!(l.answer_floor(), Duration::from_millis(5));
        for _ in 0..FLOOR_SAMPLES {
            l.note_check_latency(Duration::from_millis(2));
        }
        assert_eq!(
            l.answer_floor(),
            Duration::from_millis(2),
            "only recent checks count"
        );
    }

    #[test]
    fn policy_validation_names_the_setting() {
        assert!(LockoutPolicy::default().validate().is_ok());
        let e = LockoutPolicy {
            directory_threshold: 3,
            ..Default::default()
        }
        .validate()
        .expect_err("equal");
        assert!(e.contains("directory_threshold"), "{e}");
    }
}
