//! The bounded table every in-memory record of the sign-in side lives in (sessions, the
//! used-once record of flows, seen request IDs, parked logouts). It must never grow past
//! its bound, nor make an insert pay for the whole table.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// A bounded table that drops its oldest entries first. Insertion order is kept in a
/// queue beside the map, so making room costs O(1) amortised however full the table is
/// (a scan for the oldest entry under the lock would let a flood of unauthenticated
/// requests, each starting a flow, make every request pay for the whole table). Entries
/// share one lifetime, so the oldest is also the first to expire.
#[derive(Debug)]
pub(super) struct Table<K, V> {
    map: HashMap<K, (u64, V)>,
    /// (sequence number, key) in insertion order; entries whose key was removed or
    /// re-inserted since are skipped when they reach the front.
    order: VecDeque<(u64, K)>,
    seq: u64,
    max: usize,
}

impl<K: Hash + Eq + Clone, V> Table<K, V> {
    pub(super) fn new(max: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            seq: 0,
            max,
        }
    }

    /// Inserts `v`, first dropping from the front stale queue entries, entries for which
    /// `expired` holds, and the oldest entries while the table is full.
    pub(super) fn insert(&mut self, k: K, v: V, expired: impl Fn(&V) -> bool) {
        let replaces = self.map.contains_key(&k);
        while let Some((seq, key)) = self.order.front() {
            match self.map.get(key) {
                Some((s, v)) if s == seq => {
                    let full = self.map.len() >= self.max && !replaces;
                    if !(expired(v) || full) {
                        break;
                    }
                    self.map.remove(key);
                }
                _ => {}
            }
            self.order.pop_front();
        }
        // Removed entries leave their queue entries behind; keep the queue within twice
        // the map (amortised: this runs only after the queue has doubled).
        if self.order.len() > 2 * self.map.len() + 1024 {
            let map = &self.map;
            self.order
                .retain(|(seq, key)| map.get(key).is_some_and(|(s, _)| s == seq));
        }
        self.seq += 1;
        self.order.push_back((self.seq, k.clone()));
        self.map.insert(k, (self.seq, v));
    }

    pub(super) fn get<Q: Hash + Eq + ?Sized>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.map.get(k).map(|(_, v)| v)
    }

    pub(super) fn get_mut<Q: Hash + Eq + ?Sized>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.map.get_mut(k).map(|(_, v)| v)
    }

    pub(super) fn remove<Q: Hash + Eq + ?Sized>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.map.remove(k).map(|(_, v)| v)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, (_, v))| (k, v))
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_drops_its_oldest_entries_and_its_queue_stays_bounded() {
        let mut t: Table<u32, u32> = Table::new(3);
        for k in 0..3 {
            t.insert(k, k, |_| false);
        }
        t.insert(3, 3, |_| false);
        assert_eq!(t.len(), 3);
        assert!(t.get(&0).is_none(), "the oldest went first");
        assert!(t.get(&1).is_some() && t.get(&3).is_some());
        // A removed entry frees its place; its stale queue entry is skipped later.
        assert_eq!(t.remove(&2), Some(2));
        t.insert(4, 4, |_| false);
        assert!(t.get(&1).is_some(), "no eviction while there was room");
        // Re-inserting moves an entry to the back.
        t.insert(1, 10, |_| false);
        t.insert(5, 5, |_| false);
        assert_eq!(t.get(&1), Some(&10));
        assert!(t.get(&3).is_none());
        // Expired entries at the front go even when there is room.
        t.insert(6, 6, |v| *v == 4);
        assert!(t.get(&4).is_none());
        // Churn (insert and remove) never lets the queue grow without bound.
        let mut big: Table<u32, ()> = Table::new(100);
        for k in 0..50_000 {
            big.insert(k, (), |_| false);
            big.remove(&k);
        }
        assert!(
            big.order.len() <= 2 * big.len() + 1025,
            "{}",
            big.order.len()
        );
    }
}
