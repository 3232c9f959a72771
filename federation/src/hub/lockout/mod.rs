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
//!
//! This file holds the decisions (admit, record, expire); the numbers are in `policy`,
//! familiar places and per-source budgets in `places`, and the writer thread, the row
//! format and the start-up load in `persist`.

mod persist;
mod places;
mod policy;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use causeway_credential::{Password, SignInOutcome};
use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::lock;
use causeway_store::ImmutableId;

use persist::Write;
use places::{source_key, Bucket, Places};
pub use policy::LockoutPolicy;

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

type Fingerprint = [u8; 16];

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

/// Time from `a` to `b`, zero if `b` is not later (the wall clock may step back).
pub(super) fn since(b: SystemTime, a: SystemTime) -> Duration {
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
}

#[cfg(test)]
mod tests;
