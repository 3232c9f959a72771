//! The record of signed AuthnRequests already answered. It must never be written by a
//! request whose signature did not verify (an unauthenticated flood would evict entries).

use std::sync::Mutex;
use std::time::SystemTime;

use sha2::Digest;

use super::table::Table;
use crate::lock;

pub(super) const MAX_SEEN_REQUESTS: usize = 100_000;

/// IDs of signed AuthnRequests already answered, per application, until their
/// IssueInstant falls out of the accepted window (after that the window refuses them).
/// Only requests whose signature verified are recorded, so filling the table takes a
/// registered application's signing key: an unauthenticated flood cannot push an entry
/// out and replay it.
#[derive(Debug)]
pub struct SeenRequests {
    map: Mutex<Table<[u8; 32], SystemTime>>,
}

impl Default for SeenRequests {
    fn default() -> Self {
        Self {
            map: Mutex::new(Table::new(MAX_SEEN_REQUESTS)),
        }
    }
}

impl SeenRequests {
    /// Records `issuer`'s request `id` until `until`; false when it was seen before.
    pub fn first_use(&self, issuer: &str, id: &str, until: SystemTime, now: SystemTime) -> bool {
        let mut h = sha2::Sha256::new();
        h.update(issuer.as_bytes());
        h.update([0]);
        h.update(id.as_bytes());
        let k: [u8; 32] = h.finalize().into();
        let mut map = lock(&self.map);
        if map.get(&k).is_some_and(|u| *u > now) {
            return false;
        }
        map.insert(k, until, |u| *u <= now);
        true
    }

    /// Requests recorded.
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
