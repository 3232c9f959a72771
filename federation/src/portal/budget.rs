//! How much sign-in work one source may ask for without a session: a token bucket per
//! source (an IPv4 address, or an IPv6 /64), refilled at a steady rate.
//!
//! Every request that starts or continues a sign-in without a valid SSO session costs the
//! endpoint real work: a SAML message inflated and parsed, a flow sealed, a page rendered.
//! Each is bounded (see `xml::reader`), but a few sources sending them as fast as they
//! are answered would still take the cores from everyone else. With a budget per source,
//! a flood from one place is answered `429 Too Many Requests` at the cost of a table
//! lookup, and a user with a session is never counted. The default (50 a second, bursts
//! of 200) is far above what one browser or a NAT of thousands of users start.
//!
//! The table is bounded: when it is full, buckets that have refilled completely (which
//! carry no information) are dropped, and if that frees nothing the table is cleared —
//! which can only give sources more budget, never take another's.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use crate::client_addr::SourceKey as Source;
use crate::lock;

/// Most sources tracked at once.
const MAX_SOURCES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Per-source budgets for sign-in work without a session.
#[derive(Debug)]
pub(crate) struct AnonymousBudget {
    per_second: f64,
    burst: f64,
    max_sources: usize,
    buckets: Mutex<HashMap<Source, Bucket>>,
}

impl AnonymousBudget {
    /// `per_second` requests a second per source, in bursts of `burst`; 0 turns it off.
    pub(crate) fn new(per_second: u32, burst: u32) -> Self {
        Self::with_capacity(per_second, burst, MAX_SOURCES)
    }

    fn with_capacity(per_second: u32, burst: u32, max_sources: usize) -> Self {
        Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            max_sources,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `source`'s budget; false when it is spent. Requests whose
    /// source is unknown (no peer address) are not counted.
    pub(crate) fn take(&self, source: Option<IpAddr>, now: Instant) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        let Some(ip) = source else {
            return true;
        };
        let key = Source::of(ip);
        let mut map = lock(&self.buckets);
        if !map.contains_key(&key) && map.len() >= self.max_sources {
            let (rate, burst) = (self.per_second, self.burst);
            map.retain(|_, b| refill(b, now, rate, burst) < burst);
            if map.len() >= self.max_sources {
                map.clear();
            }
        }
        let b = map.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let tokens = refill(b, now, self.per_second, self.burst);
        if tokens >= 1.0 {
            b.tokens = tokens - 1.0;
            b.at = now;
            true
        } else {
            false
        }
    }

    /// Seconds until `source` has one request again (for `Retry-After`), at least 1.
    pub(crate) fn retry_after(&self) -> u64 {
        if self.per_second <= 0.0 {
            return 1;
        }
        (1.0 / self.per_second).ceil().max(1.0) as u64
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        lock(&self.buckets).len()
    }
}

/// The bucket's tokens at `now` (not stored).
fn refill(b: &Bucket, now: Instant, per_second: f64, burst: f64) -> f64 {
    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
    (b.tokens + elapsed * per_second).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let b = AnonymousBudget::new(10, 20);
        let t0 = Instant::now();
        assert!((0..20).all(|_| b.take(ip("192.0.2.1"), t0)));
        assert!(!b.take(ip("192.0.2.1"), t0), "burst spent");
        // Another source is not affected.
        assert!(b.take(ip("192.0.2.2"), t0));
        // A tenth of a second refills one request, not more.
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.take(ip("192.0.2.1"), t1));
        assert!(!b.take(ip("192.0.2.1"), t1));
        // A long pause refills up to the burst only.
        let t2 = t1 + Duration::from_secs(3600);
        assert_eq!((0..30).filter(|_| b.take(ip("192.0.2.1"), t2)).count(), 20);
    }

    #[test]
    fn ipv6_is_counted_by_its_64_and_mapped_ipv4_as_ipv4() {
        let b = AnonymousBudget::new(1, 2);
        let t = Instant::now();
        assert!(b.take(ip("2001:db8::1"), t));
        assert!(b.take(ip("2001:db8::ffff:2"), t));
        assert!(!b.take(ip("2001:db8::3"), t), "same /64");
        assert!(b.take(ip("2001:db8:0:1::1"), t), "another /64");
        assert!(b.take(ip("198.51.100.7"), t));
        assert!(b.take(ip("::ffff:198.51.100.7"), t));
        assert!(!b.take(ip("198.51.100.7"), t), "mapped is the same source");
    }

    #[test]
    fn off_and_unknown_sources_are_never_refused() {
        let off = AnonymousBudget::new(0, 0);
        let t = Instant::now();
        assert!((0..10_000).all(|_| off.take(ip("192.0.2.1"), t)));
        let on = AnonymousBudget::new(1, 1);
        assert!((0..100).all(|_| on.take(None, t)));
    }

    #[test]
    fn the_table_is_bounded_and_a_flood_of_sources_cannot_spend_anothers_budget() {
        let b = AnonymousBudget::with_capacity(1, 3, 1_000);
        let t = Instant::now();
        assert!(b.take(ip("192.0.2.1"), t));
        assert!(b.take(ip("192.0.2.1"), t));
        for i in 0..50_000u32 {
            b.take(Some(IpAddr::V4((0x0a00_0000 + i).into())), t);
            assert!(b.tracked() <= 1_000);
        }
        // The victim's bucket was either kept (one left) or dropped (full again): never
        // fewer requests than it had.
        assert!(b.take(ip("192.0.2.1"), t));
    }
}
