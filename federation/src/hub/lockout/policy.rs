//! The numbers smart lockout and per-source throttling work with, and their checks.

use std::time::Duration;

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
