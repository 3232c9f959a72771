//! Smart lockout in front of the directory.
//!
//! The hub locks a user out *before* Active Directory's own threshold is reached, so an
//! attacker guessing passwords cannot lock real users out of AD (and so out of everything
//! else on the network). A wrong password that is simply repeated is answered from memory
//! and not counted again — neither here nor in AD, because it never reaches AD. Per-source
//! throttling caps how fast one address may try at all.
//!
//! For the hub's lockout to shield AD, keep `threshold` below the domain's lockout
//! threshold and `lock_for` at least as long as AD's "reset account lockout counter after".

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use causeway_credential::{Password, SignInOutcome};
use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// How smart lockout and throttling behave.
#[derive(Debug, Clone)]
pub struct LockoutPolicy {
    /// Distinct wrong passwords within `window` that lock the user at the hub.
    pub threshold: u32,
    /// How long failures are remembered.
    pub window: Duration,
    /// How long a locked user stays locked.
    pub lock_for: Duration,
    /// How many distinct recent wrong passwords are remembered per user.
    pub remembered_bad_passwords: usize,
    /// Attempts one source address may make per minute (burst of the same size).
    pub per_source_per_minute: u32,
    /// Most users and sources tracked at once; the least recently active are forgotten first.
    pub max_tracked: usize,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            threshold: 3,
            window: Duration::from_secs(600),
            lock_for: Duration::from_secs(60),
            remembered_bad_passwords: 8,
            per_source_per_minute: 120,
            max_tracked: 100_000,
        }
    }
}

/// What the lockout decides before a check reaches the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Ask the directory.
    Proceed,
    /// Answer without asking: the user is locked at the hub, the source is throttled, or
    /// this exact wrong password was already refused for this user.
    Answer(SignInOutcome),
}

type Fingerprint = [u8; 16];

#[derive(Debug)]
struct UserState {
    failures: u32,
    first_failure: Instant,
    locked_until: Option<Instant>,
    bad: VecDeque<Fingerprint>,
    last_seen: Instant,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The hub's lockout state. Memory is bounded by [`LockoutPolicy::max_tracked`].
pub struct SmartLockout {
    policy: LockoutPolicy,
    /// Per-process random key: fingerprints of wrong passwords are keyed so that they are
    /// useless outside this process, and they never leave memory.
    key: [u8; 32],
    users: Mutex<HashMap<String, UserState>>,
    sources: Mutex<HashMap<IpAddr, Bucket>>,
}

impl std::fmt::Debug for SmartLockout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmartLockout")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
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

    /// Decides whether a check may go to the directory.
    pub fn gate(
        &self,
        user: &str,
        password: &Password,
        source: Option<IpAddr>,
        now: Instant,
    ) -> Gate {
        if let Some(ip) = source {
            if !self.take_source_token(ip, now) {
                return Gate::Answer(SignInOutcome::Throttled);
            }
        }
        let key = Self::user_key(user);
        let mut users = lock(&self.users);
        let Some(state) = users.get_mut(&key) else {
            return Gate::Proceed;
        };
        state.last_seen = now;
        self.expire(state, now);
        if state.locked_until.is_some() {
            return Gate::Answer(SignInOutcome::AccountLocked);
        }
        let fp = self.fingerprint(&key, password);
        if state.bad.contains(&fp) {
            return Gate::Answer(SignInOutcome::InvalidCredentials);
        }
        Gate::Proceed
    }

    /// Records what the directory answered.
    pub fn record(&self, user: &str, password: &Password, outcome: SignInOutcome, now: Instant) {
        let key = Self::user_key(user);
        let mut users = lock(&self.users);
        if outcome.is_success() {
            users.remove(&key);
            return;
        }
        if !outcome.is_bad_password() {
            return;
        }
        let fp = self.fingerprint(&key, password);
        if users.len() >= self.policy.max_tracked && !users.contains_key(&key) {
            evict_oldest(
                &mut users,
                |s| s.last_seen,
                self.policy.max_tracked / 10 + 1,
            );
        }
        let state = users.entry(key).or_insert_with(|| UserState {
            failures: 0,
            first_failure: now,
            locked_until: None,
            bad: VecDeque::new(),
            last_seen: now,
        });
        state.last_seen = now;
        self.expire(state, now);
        if state.bad.contains(&fp) {
            return;
        }
        if state.failures == 0 {
            state.first_failure = now;
        }
        state.failures += 1;
        state.bad.push_back(fp);
        while state.bad.len() > self.policy.remembered_bad_passwords {
            state.bad.pop_front();
        }
        if state.failures >= self.policy.threshold {
            state.locked_until = Some(now + self.policy.lock_for);
        }
    }

    /// Seconds until `user` is unlocked at the hub, if locked (for the sign-in page).
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
                // The lock has run its course: start over, forgetting the old guesses.
                s.locked_until = None;
                s.failures = 0;
                s.bad.clear();
            }
        } else if s.failures > 0 && now.duration_since(s.first_failure) > self.policy.window {
            s.failures = 0;
            s.bad.clear();
        }
    }

    fn take_source_token(&self, ip: IpAddr, now: Instant) -> bool {
        let rate = f64::from(self.policy.per_source_per_minute.max(1)) / 60.0;
        let burst = f64::from(self.policy.per_source_per_minute.max(1));
        let mut sources = lock(&self.sources);
        if sources.len() >= self.policy.max_tracked && !sources.contains_key(&ip) {
            evict_oldest(&mut sources, |b| b.at, self.policy.max_tracked / 10 + 1);
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Forgets the `n` least recently active entries (O(len); runs only when the map is full).
fn evict_oldest<K: Clone + Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    at: impl Fn(&V) -> Instant,
    n: usize,
) {
    let mut by_age: Vec<(Instant, K)> = map.iter().map(|(k, v)| (at(v), k.clone())).collect();
    by_age.sort_by_key(|(t, _)| *t);
    for (_, k) in by_age.into_iter().take(n) {
        map.remove(&k);
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
            ..Default::default()
        }
    }

    #[test]
    fn locks_after_threshold_distinct_wrong_passwords() {
        let l = SmartLockout::new(policy());
        let t = Instant::now();
        for i in 0..3 {
            let p = pw(&format!("guess-{i}"));
            assert_eq!(l.gate("alice@x", &p, None, t), Gate::Proceed);
            l.record("alice@x", &p, SignInOutcome::InvalidCredentials, t);
        }
        // Locked even for the right password, and without asking the directory.
        assert_eq!(
            l.gate("ALICE@x", &pw("right-one"), None, t),
            Gate::Answer(SignInOutcome::AccountLocked)
        );
        assert!(l.locked_for("alice@x", t).is_some());
        // After the lock expires, the user can try again.
        let later = t + Duration::from_secs(61);
        assert_eq!(
            l.gate("alice@x", &pw("right-one"), None, later),
            Gate::Proceed
        );
    }

    #[test]
    fn a_repeated_wrong_password_counts_once_and_never_reaches_the_directory() {
        let l = SmartLockout::new(policy());
        let t = Instant::now();
        let same = pw("Summer2026!");
        assert_eq!(l.gate("bob", &same, None, t), Gate::Proceed);
        l.record("bob", &same, SignInOutcome::InvalidCredentials, t);
        for _ in 0..20 {
            assert_eq!(
                l.gate("bob", &same, None, t),
                Gate::Answer(SignInOutcome::InvalidCredentials)
            );
        }
        // Still not locked: only one distinct failure.
        assert_eq!(l.gate("bob", &pw("other"), None, t), Gate::Proceed);
    }

    #[test]
    fn success_clears_and_outages_do_not_count() {
        let l = SmartLockout::new(policy());
        let t = Instant::now();
        l.record("carol", &pw("a-1"), SignInOutcome::InvalidCredentials, t);
        l.record("carol", &pw("a-2"), SignInOutcome::InvalidCredentials, t);
        for _ in 0..10 {
            l.record("carol", &pw("a-3"), SignInOutcome::DirectoryUnavailable, t);
        }
        assert_eq!(l.gate("carol", &pw("a-3"), None, t), Gate::Proceed);
        l.record("carol", &pw("right"), SignInOutcome::Success, t);
        assert_eq!(
            l.gate("carol", &pw("a-1"), None, t),
            Gate::Proceed,
            "success forgets old guesses"
        );
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let l = SmartLockout::new(LockoutPolicy {
            window: Duration::from_secs(10),
            ..policy()
        });
        let t = Instant::now();
        l.record("dave", &pw("w-1"), SignInOutcome::InvalidCredentials, t);
        l.record("dave", &pw("w-2"), SignInOutcome::InvalidCredentials, t);
        let later = t + Duration::from_secs(11);
        l.record("dave", &pw("w-3"), SignInOutcome::InvalidCredentials, later);
        assert_eq!(l.gate("dave", &pw("w-4"), None, later), Gate::Proceed);
    }

    #[test]
    fn sources_are_throttled_and_refill() {
        let l = SmartLockout::new(LockoutPolicy {
            per_source_per_minute: 6,
            ..policy()
        });
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        let t = Instant::now();
        for i in 0..6 {
            assert_eq!(
                l.gate(&format!("u{i}"), &pw("p-1"), Some(ip), t),
                Gate::Proceed
            );
        }
        assert_eq!(
            l.gate("u9", &pw("p-1"), Some(ip), t),
            Gate::Answer(SignInOutcome::Throttled)
        );
        let other: IpAddr = "192.0.2.8".parse().expect("ip");
        assert_eq!(l.gate("u9", &pw("p-1"), Some(other), t), Gate::Proceed);
        assert_eq!(
            l.gate("u9", &pw("p-1"), Some(ip), t + Duration::from_secs(10)),
            Gate::Proceed
        );
    }

    #[test]
    fn memory_is_bounded() {
        let l = SmartLockout::new(LockoutPolicy {
            max_tracked: 100,
            ..policy()
        });
        let t = Instant::now();
        for i in 0..1000 {
            l.record(
                &format!("spray-{i}"),
                &pw("x-1"),
                SignInOutcome::UnknownUser,
                t + Duration::from_millis(i),
            );
        }
        assert!(lock(&l.users).len() <= 100);
    }

    #[test]
    fn debug_shows_no_state() {
        let l = SmartLockout::new(policy());
        l.record(
            "erin",
            &pw("Very-Secret-1"),
            SignInOutcome::InvalidCredentials,
            Instant::now(),
        );
        let s = format!("{l:?}");
        assert!(!s.contains("erin") && !s.contains("Very-Secret"));
    }
}
