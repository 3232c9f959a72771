//! Where attempts come from: an account's familiar places (only a success adds one) and
//! each source's budget of failures (a token bucket; successes give their token back).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::SystemTime;

use super::{since, AccountKey, Place, SmartLockout};
use crate::lock;

#[derive(Debug)]
pub(super) struct Bucket {
    tokens: f64,
    at: SystemTime,
}

/// An account's familiar places: source keys with their last successful sign-in.
pub(super) type Places = VecDeque<(IpAddr, SystemTime)>;

/// The key per-source throttling and familiar places use: an IPv4 address, or the /64 of
/// an IPv6 address (one host usually owns a whole /64).
pub(super) fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        v4 @ IpAddr::V4(_) => v4,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

impl SmartLockout {
    pub(super) fn place_of(&self, account: &AccountKey, source: Option<IpAddr>) -> Place {
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

    /// Adds `sk` to the account's familiar places (most recent first, bounded).
    pub(super) fn remember_place(&self, key: &AccountKey, sk: IpAddr, now: SystemTime) {
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

    fn refill(&self, b: &mut Bucket, now: SystemTime) {
        let per_minute = f64::from(self.policy.per_source_failures_per_minute.max(1));
        let refill = since(now, b.at).as_secs_f64() * per_minute / 60.0;
        b.tokens = (b.tokens + refill).min(per_minute);
        b.at = b.at.max(now);
    }

    pub(super) fn take_source_token(&self, ip: IpAddr, now: SystemTime) -> bool {
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
    pub(super) fn refund(&self, source: Option<IpAddr>, now: SystemTime) {
        let Some(ip) = source else { return };
        let burst = f64::from(self.policy.per_source_failures_per_minute.max(1));
        if let Some(b) = lock(&self.sources).get_mut(&source_key(ip)) {
            self.refill(b, now);
            b.tokens = (b.tokens + 1.0).min(burst);
        }
    }
}
