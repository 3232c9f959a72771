//! Smart lockout in front of the directory.
//!
//! The hub locks a user out *before* Active Directory's own threshold is reached, so an
//! attacker guessing passwords cannot lock real users out of AD (and so out of everything
//! else on the network). A wrong password that is simply repeated is answered from memory
//! and not counted again — neither here nor in AD, because it never reaches AD. Per-source
//! throttling caps how fast one address may try at all.
//!
//! For the hub's lockout to shield AD, keep `threshold` below the domain's lockout
//! threshold and `window` at least as long as AD's "reset account lockout counter after".

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use causeway_credential::{Password, SignInOutcome};
use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::lock;

/// How smart lockout and throttling behave.
#[derive(Debug, Clone)]
pub struct LockoutPolicy {
    /// Distinct wrong passwords within `window` that lock the user at the hub. Keep it
    /// below the domain's own lockout threshold.
    pub threshold: u32,
    /// How long failures are remembered after the *last* one (a sliding window, like AD's
    /// observation window: keep it at least as long as AD's "reset counter after").
    pub window: Duration,
    /// The first lock's length; each further lock within the window doubles it.
    pub lock_for: Duration,
    /// The longest a lock lasts.
    pub max_lock: Duration,
    /// How many distinct recent wrong passwords are remembered per user.
    pub remembered_bad_passwords: usize,
    /// Attempts one source (an IPv4 address, or an IPv6 /64) may make per minute, as a burst.
    pub per_source_per_minute: u32,
    /// Most users and sources tracked at once.
    pub max_tracked: usize,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            threshold: 3,
            // AD's default "reset account lockout counter after" is 30 minutes.
            window: Duration::from_secs(30 * 60),
            lock_for: Duration::from_secs(60),
            max_lock: Duration::from_secs(3600),
            remembered_bad_passwords: 8,
            per_source_per_minute: 120,
            max_tracked: 100_000,
        }
    }
}

type Fingerprint = [u8; 16];

/// How often a check waiting for a busy user looks again if no wake-up came (wake-ups
/// are the normal path; this only bounds a missed one).
const BUSY_POLL: Duration = Duration::from_millis(50);

/// Why [`SmartLockout::admit`] did not admit a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Answer this without asking the directory.
    Answer(SignInOutcome),
    /// Not now: wait for one of the user's checks in flight to finish.
    Busy,
}

#[derive(Debug)]
struct UserState {
    failures: u32,
    last_failure: Instant,
    locks: u32,
    locked_until: Option<Instant>,
    bad: VecDeque<Fingerprint>,
    in_flight: Vec<Fingerprint>,
    /// Checks waiting for this user, first come first served.
    queue: VecDeque<u64>,
    last_seen: Instant,
}

impl UserState {
    fn new(now: Instant) -> Self {
        Self {
            failures: 0,
            last_failure: now,
            locks: 0,
            locked_until: None,
            bad: VecDeque::new(),
            in_flight: Vec::new(),
            queue: VecDeque::new(),
            last_seen: now,
        }
    }

    /// Nothing worth remembering: may be dropped at once.
    fn is_clean(&self) -> bool {
        self.failures == 0
            && self.locks == 0
            && self.in_flight.is_empty()
            && self.queue.is_empty()
            && self.locked_until.is_none()
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The hub's lockout state. Memory is bounded by [`LockoutPolicy::max_tracked`].
pub struct SmartLockout {
    policy: LockoutPolicy,
    /// Per-process random key: fingerprints of passwords are keyed so that they are
    /// useless outside this process, and they never leave memory.
    key: [u8; 32],
    users: Mutex<HashMap<String, UserState>>,
    sources: Mutex<HashMap<IpAddr, Bucket>>,
    /// Signalled when a check finishes, so waiting checks look again at once.
    freed: tokio::sync::Notify,
    next_waiter: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for SmartLockout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmartLockout")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Permission for one check to reach the directory. It holds one of the user's in-flight
/// slots: [`Ticket::record`] gives the answer back; dropping it unused just frees the slot.
#[derive(Debug)]
pub struct Ticket<'a> {
    lockout: &'a SmartLockout,
    key: String,
    fp: Fingerprint,
    open: bool,
}

impl Ticket<'_> {
    /// Records what the directory answered. `attempts` is how many binds may have reached
    /// AD for this check (a retry after a timeout may have bound twice): a wrong password
    /// counts that many times, so the hub never under-counts what AD counts.
    pub fn record(mut self, outcome: SignInOutcome, attempts: u32, now: Instant) {
        self.open = false;
        self.lockout
            .finish(&self.key, self.fp, Some((outcome, attempts.max(1))), now);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.open {
            self.lockout
                .finish(&self.key, self.fp, None, Instant::now());
        }
    }
}

/// The key per-source throttling uses: an IPv4 address, or the /64 of an IPv6 address
/// (one host usually owns a whole /64).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

impl SmartLockout {
    /// A fresh lockout state with `policy`.
    pub fn new(policy: LockoutPolicy) -> Self {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("OS random generator");
        Self {
            policy,
            key,
            users: Mutex::new(HashMap::new()),
            sources: Mutex::new(HashMap::new()),
            freed: tokio::sync::Notify::new(),
            next_waiter: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &LockoutPolicy {
        &self.policy
    }

    fn user_key(user: &str) -> String {
        user.trim().to_lowercase()
    }

    fn fingerprint(&self, user: &str, password: &Password) -> Fingerprint {
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC takes any key length");
        mac.update(user.as_bytes());
        mac.update(&[0]);
        mac.update(password.expose_secret().as_bytes());
        let full = mac.finalize().into_bytes();
        let mut fp = [0u8; 16];
        fp.copy_from_slice(&full[..16]);
        fp
    }

    /// Decides whether a check may go to the directory. `Err(Refusal::Answer)` is the
    /// answer to give without asking: locked at the hub, throttled by source rate or memory
    /// limits, or this exact wrong password already refused. `Err(Refusal::Busy)`: this user
    /// already has as many checks in flight as wrong passwords it can still afford, or this
    /// same password is in flight; wait for one to finish ([`SmartLockout::admit_waiting`]).
    pub fn admit(
        &self,
        user: &str,
        password: &Password,
        source: Option<IpAddr>,
        now: Instant,
    ) -> Result<Ticket<'_>, Refusal> {
        self.admit_inner(user, password, source, now, true, None)
    }

    /// [`SmartLockout::admit`], waiting while the user is busy, until `deadline` (then
    /// `Throttled`). The source is charged once, not at every retry.
    pub async fn admit_waiting(
        &self,
        user: &str,
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
                user,
                password,
                source,
                Instant::now(),
                charge_source,
                Some(me),
            ) {
                Ok(t) => return Ok(t),
                Err(Refusal::Answer(o)) => {
                    self.leave_queue(user, me);
                    return Err(o);
                }
                Err(Refusal::Busy) if Instant::now() < deadline => {
                    charge_source = false;
                    let wait = (deadline - Instant::now()).min(BUSY_POLL);
                    let _ = tokio::time::timeout(wait, freed).await;
                }
                Err(Refusal::Busy) => {
                    self.leave_queue(user, me);
                    return Err(SignInOutcome::Throttled);
                }
            }
        }
    }

    fn admit_inner(
        &self,
        user: &str,
        password: &Password,
        source: Option<IpAddr>,
        now: Instant,
        charge_source: bool,
        waiter: Option<u64>,
    ) -> Result<Ticket<'_>, Refusal> {
        if let (Some(ip), true) = (source, charge_source) {
            if !self.take_source_token(source_key(ip), now) {
                return Err(Refusal::Answer(SignInOutcome::Throttled));
            }
        }
        let key = Self::user_key(user);
        let fp = self.fingerprint(&key, password);
        let mut users = lock(&self.users);
        if !users.contains_key(&key)
            && users.len() >= self.policy.max_tracked
            && !self.make_room(&mut users, now)
        {
            return Err(Refusal::Answer(SignInOutcome::Throttled));
        }
        let state = users
            .entry(key.clone())
            .or_insert_with(|| UserState::new(now));
        state.last_seen = now;
        self.expire(state, now);
        if state.locked_until.is_some() {
            return Err(Refusal::Answer(SignInOutcome::AccountLocked));
        }
        if state.bad.contains(&fp) {
            return Err(Refusal::Answer(SignInOutcome::InvalidCredentials));
        }
        // Never more checks in flight than wrong passwords the user can still afford, and
        // never the same password twice at once: parallel guesses cannot overshoot.
        let budget = self.policy.threshold.saturating_sub(state.failures) as usize;
        // First come, first served: a check that finished and asks again at once must not
        // overtake one that was already waiting.
        let my_turn = match waiter {
            Some(id) => state.queue.front().is_none_or(|front| *front == id),
            None => state.queue.is_empty(),
        };
        if !my_turn || state.in_flight.len() >= budget || state.in_flight.contains(&fp) {
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
        state.in_flight.push(fp);
        Ok(Ticket {
            lockout: self,
            key,
            fp,
            open: true,
        })
    }

    fn finish(
        &self,
        key: &str,
        fp: Fingerprint,
        answer: Option<(SignInOutcome, u32)>,
        now: Instant,
    ) {
        let mut users = lock(&self.users);
        let Some(state) = users.get_mut(key) else {
            return;
        };
        if let Some(i) = state.in_flight.iter().position(|f| *f == fp) {
            state.in_flight.swap_remove(i);
        }
        match answer {
            Some((o, _)) if o.is_success() => {
                // Forget the failures; keep what is in flight and who is waiting.
                let in_flight = std::mem::take(&mut state.in_flight);
                let queue = std::mem::take(&mut state.queue);
                *state = UserState::new(now);
                state.in_flight = in_flight;
                state.queue = queue;
            }
            Some((o, attempts)) if o.is_bad_password() && !state.bad.contains(&fp) => {
                self.expire(state, now);
                state.failures = state.failures.saturating_add(attempts);
                state.last_failure = now;
                state.bad.push_back(fp);
                while state.bad.len() > self.policy.remembered_bad_passwords {
                    state.bad.pop_front();
                }
                if state.failures >= self.policy.threshold && state.locked_until.is_none() {
                    state.locks += 1;
                    let factor = 1u32 << (state.locks - 1).min(16);
                    state.locked_until = Some(
                        now + self
                            .policy
                            .lock_for
                            .saturating_mul(factor)
                            .min(self.policy.max_lock),
                    );
                }
            }
            _ => {}
        }
        if state.is_clean() {
            users.remove(key);
        }
        drop(users);
        self.freed.notify_waiters();
    }

    /// A waiter that gives up leaves the queue (and lets the next one go).
    fn leave_queue(&self, user: &str, id: u64) {
        let key = Self::user_key(user);
        let mut users = lock(&self.users);
        if let Some(state) = users.get_mut(&key) {
            state.queue.retain(|w| *w != id);
            if state.is_clean() {
                users.remove(&key);
            }
        }
        drop(users);
        self.freed.notify_waiters();
    }

    /// How long `user` stays locked at the hub, if locked (for the sign-in page).
    pub fn locked_for(&self, user: &str, now: Instant) -> Option<Duration> {
        let users = lock(&self.users);
        users
            .get(&Self::user_key(user))
            .and_then(|s| s.locked_until)
            .filter(|&u| u > now)
            .map(|u| u - now)
    }

    fn expire(&self, s: &mut UserState, now: Instant) {
        if let Some(until) = s.locked_until {
            if now >= until {
                // The lock has run its course. The guesses stay remembered and one more
                // wrong password locks again, for longer: an attacker gains one guess per
                // lock, not a fresh threshold.
                s.locked_until = None;
                s.failures = self.policy.threshold.saturating_sub(1);
            }
        }
        if s.locked_until.is_none()
            && s.failures > 0
            && now.saturating_duration_since(s.last_failure) > self.policy.window
        {
            s.failures = 0;
            s.locks = 0;
            s.bad.clear();
        }
    }

    /// Forgets the least recently active entries that are neither locked nor in use.
    /// Returns false when none can go (then new users are throttled, never old locks lost).
    fn make_room(&self, users: &mut HashMap<String, UserState>, now: Instant) -> bool {
        let mut candidates: Vec<(Instant, String)> = users
            .iter_mut()
            .filter_map(|(k, s)| {
                self.expire(s, now);
                (s.locked_until.is_none() && s.in_flight.is_empty())
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

    fn take_source_token(&self, ip: IpAddr, now: Instant) -> bool {
        let rate = f64::from(self.policy.per_source_per_minute.max(1)) / 60.0;
        let burst = f64::from(self.policy.per_source_per_minute.max(1));
        let mut sources = lock(&self.sources);
        if sources.len() >= self.policy.max_tracked && !sources.contains_key(&ip) {
            // Oldest buckets first; a bucket that was idle has refilled anyway.
            let mut by_age: Vec<(Instant, IpAddr)> =
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
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * rate;
        b.tokens = (b.tokens + refill).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn fail(l: &SmartLockout, user: &str, p: &str, t: Instant) -> Result<(), Refusal> {
        let ticket = l.admit(user, &pw(p), None, t)?;
        ticket.record(SignInOutcome::InvalidCredentials, 1, t);
        Ok(())
    }

    #[test]
    fn locks_after_threshold_distinct_wrong_passwords() {
        let l = SmartLockout::new(policy());
        let t = Instant::now();
        for i in 0..3 {
            fail(&l, "alice@x", &format!("guess-{i}"), t).expect("admitted");
        }
        assert_eq!(
            l.admit("ALICE@x", &pw("right-one"), None, t).err(),
            Some(Refusal::Answer(SignInOutcome::AccountLocked))
        );
        assert!(l.locked_for("alice@x", t).is_some());
        // After the lock: one more wrong guess locks again, for twice as long.
        let later = t + Duration::from_secs(61);
        fail(&l, "alice@x", "guess-9", later).expect("admitted");
        let left = l.locked_for("alice@x", later).expect("locked again");
        assert!(left > Duration::from_secs(100), "{left:?}");
    }

    #[test]
    fn parallel_guesses_cannot_overshoot_the_threshold() {
        let l = SmartLockout::new(policy());
        let t = Instant::now();
        let mut tickets = Vec::new();
        let mut refused = 0;
        for i in 0..120 {
            match l.admit("bob", &pw(&format!("parallel-{i}")), None, t) {
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
            l.admit("bob", &pw("another"), None, t).err(),
            Some(Refusal::Answer(SignInOutcome::AccountLocked))
        );
        // The same wrong password can never be in flight twice.
        let l2 = SmartLockout::new(policy());
        let first = l2.admit("carol", &pw("same"), None, t).expect("first");
        assert_eq!(
            l2.admit("carol", &pw("same"), None, t).err(),
            Some(Refusal::Busy)
        );
        drop(first);
        assert!(
            l2.admit("carol", &pw("same"), None, t).is_ok(),
            "a dropped ticket frees its slot"
        );
    }

    #[tokio::test]
    async fn waiting_is_first_come_first_served() {
        let l = std::sync::Arc::new(SmartLockout::new(policy()));
        let first = l
            .admit("kim", &pw("same"), None, Instant::now())
            .expect("first");
        let deadline = Instant::now() + Duration::from_secs(5);
        let (l2, (got_tx, got_rx), (go_tx, go_rx)) = (
            l.clone(),
            tokio::sync::oneshot::channel(),
            tokio::sync::oneshot::channel::<()>(),
        );
        let waiter = tokio::spawn(async move {
            let ticket = l2
                .admit_waiting("kim", &pw("same"), None, deadline)
                .await
                .expect("admitted in turn");
            let _ = got_tx.send(());
            let _ = go_rx.await;
            ticket.record(SignInOutcome::Success, 1, Instant::now());
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        first.record(SignInOutcome::Success, 1, Instant::now());
        // The finisher asks again at once: the check that was waiting goes first (it is
        // either still queued in front, or already in flight with the same password).
        assert_eq!(
            l.admit("kim", &pw("same"), None, Instant::now()).err(),
            Some(Refusal::Busy)
        );
        got_rx.await.expect("the waiter was admitted");
        let _ = go_tx.send(());
        waiter.await.expect("waiter");
        assert!(l.admit("kim", &pw("same"), None, Instant::now()).is_ok());
    }

    #[test]
    fn a_repeated_wrong_password_counts_once_and_never_reaches_the_directory() {
        let l = SmartLockout::new(policy());
        let t = Instant::now();
        fail(&l, "dave", "Summer2026!", t).expect("admitted");
        for _ in 0..20 {
            assert_eq!(
                l.admit("dave", &pw("Summer2026!"), None, t).err(),
                Some(Refusal::Answer(SignInOutcome::InvalidCredentials))
            );
        }
        assert!(l.admit("dave", &pw("other"), None, t).is_ok());
    }

    #[test]
    fn retries_that_may_have_bound_count_as_such() {
        let l = SmartLockout::new(policy());
        let t = Instant::now();
        l.admit("erin", &pw("w-1"), None, t).expect("in").record(
            SignInOutcome::InvalidCredentials,
            3,
            t,
        );
        assert_eq!(
            l.admit("erin", &pw("w-2"), None, t).err(),
            Some(Refusal::Answer(SignInOutcome::AccountLocked))
        );
    }

    #[test]
    fn success_clears_and_outages_do_not_count() {
        let l = SmartLockout::new(policy());
        let t = Instant::now();
        fail(&l, "frank", "a-1", t).expect("in");
        fail(&l, "frank", "a-2", t).expect("in");
        for _ in 0..10 {
            l.admit("frank", &pw("a-3"), None, t).expect("in").record(
                SignInOutcome::DirectoryUnavailable,
                1,
                t,
            );
        }
        l.admit("frank", &pw("right"), None, t)
            .expect("in")
            .record(SignInOutcome::Success, 1, t);
        assert!(
            l.admit("frank", &pw("a-1"), None, t).is_ok(),
            "success forgets old guesses"
        );
    }

    #[test]
    fn the_window_slides_from_the_last_failure() {
        let l = SmartLockout::new(LockoutPolicy {
            window: Duration::from_secs(10),
            ..policy()
        });
        let t = Instant::now();
        fail(&l, "gina", "w-1", t).expect("in");
        fail(&l, "gina", "w-2", t + Duration::from_secs(9)).expect("in");
        // 11 s after the first failure but 2 s after the last: still counted.
        fail(&l, "gina", "w-3", t + Duration::from_secs(11)).expect("in");
        assert!(l.locked_for("gina", t + Duration::from_secs(11)).is_some());
        let l = SmartLockout::new(LockoutPolicy {
            window: Duration::from_secs(10),
            ..policy()
        });
        fail(&l, "hank", "w-1", t).expect("in");
        fail(&l, "hank", "w-2", t).expect("in");
        let later = t + Duration::from_secs(11);
        fail(&l, "hank", "w-3", later).expect("in");
        assert!(
            l.admit("hank", &pw("w-4"), None, later).is_ok(),
            "failures older than the window are forgotten"
        );
    }

    #[test]
    fn sources_are_throttled_and_ipv6_by_64() {
        let l = SmartLockout::new(LockoutPolicy {
            per_source_per_minute: 6,
            ..policy()
        });
        let t = Instant::now();
        for i in 0..6 {
            let ip: IpAddr = format!("2001:db8::{i}").parse().expect("ip");
            drop(
                l.admit(&format!("u{i}"), &pw("p-1"), Some(ip), t)
                    .expect("admitted"),
            );
        }
        let same64: IpAddr = "2001:db8::ffff".parse().expect("ip");
        assert_eq!(
            l.admit("u9", &pw("p-1"), Some(same64), t).err(),
            Some(Refusal::Answer(SignInOutcome::Throttled))
        );
        let other: IpAddr = "2001:db8:0:1::1".parse().expect("ip");
        assert!(l.admit("u9", &pw("p-1"), Some(other), t).is_ok());
        assert!(l
            .admit("u8", &pw("p-1"), Some(same64), t + Duration::from_secs(10))
            .is_ok());
    }

    #[test]
    fn memory_is_bounded_and_locks_survive_a_flood() {
        let l = SmartLockout::new(LockoutPolicy {
            max_tracked: 100,
            ..policy()
        });
        let t = Instant::now();
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
            l.admit("victim", &pw("v-9"), None, t).err(),
            Some(Refusal::Answer(SignInOutcome::AccountLocked)),
            "a flood does not evict a lock"
        );
        // Clean users leave no trace at all.
        drop(l.admit("clean", &pw("p"), None, t));
        assert!(!lock(&l.users).contains_key("clean"));
    }

    #[test]
    fn debug_shows_no_state() {
        let l = SmartLockout::new(policy());
        let _ = fail(&l, "ivan", "Very-Secret-1", Instant::now());
        let s = format!("{l:?}");
        assert!(!s.contains("ivan") && !s.contains("Very-Secret"));
    }
}
