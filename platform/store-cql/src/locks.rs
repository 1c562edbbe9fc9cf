//! In-process serialization: a fixed set of async mutexes ("stripes") that keys hash onto.
//!
//! The cluster routes every write to a device queue (and every group write) through one process
//! at a time, so a per-key lock inside that process is enough to keep read-modify-writes such
//! as seq allocation race-free. The lightweight transactions that guard what must be exactly
//! once across processes (prekeys, codes, registrations) take their stripe too: it turns
//! contention inside one process into a queue instead of Paxos retries. A fixed number of
//! stripes bounds the memory whatever the number of keys; two keys on one stripe only wait for
//! each other.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use tokio::sync::{Mutex, MutexGuard};

const STRIPES: usize = 1024;

pub(crate) struct Stripes {
    locks: Box<[Mutex<()>]>,
}

impl Stripes {
    pub fn new() -> Self {
        Stripes {
            locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    fn index(&self, key: &impl Hash) -> usize {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        (hasher.finish() % self.locks.len() as u64) as usize
    }

    /// The lock of one key.
    pub async fn lock<K: Hash>(&self, key: &K) -> MutexGuard<'_, ()> {
        self.locks[self.index(key)].lock().await
    }

    /// The locks of several keys, taken in stripe order (so two callers never deadlock), each
    /// stripe once.
    pub async fn lock_all<'k, K: Hash + 'k>(
        &self,
        keys: impl IntoIterator<Item = &'k K>,
    ) -> Vec<MutexGuard<'_, ()>> {
        let mut indices: Vec<usize> = keys.into_iter().map(|key| self.index(key)).collect();
        indices.sort_unstable();
        indices.dedup();
        let mut guards = Vec::with_capacity(indices.len());
        for index in indices {
            guards.push(self.locks[index].lock().await);
        }
        guards
    }
}

/// The stripes of each kind of key. Held together, they are taken in the order accounts,
/// groups, devices (keys and devices are never held together; the business stripes are never
/// held with any other).
pub(crate) struct Locks {
    /// Phone numbers: registration and codes.
    pub phones: Stripes,
    /// Device addresses: one-time prekey takes.
    pub keys: Stripes,
    /// Device addresses: queue seqs, dedupe checks, acknowledgements.
    pub devices: Stripes,
    /// Group ids: records, invite codes, group messages.
    pub groups: Stripes,
    /// Business record keys: inserts.
    pub business_records: Stripes,
    /// Business queues: appends and removals.
    pub business_queues: Stripes,
}

impl Locks {
    pub fn new() -> Self {
        Locks {
            phones: Stripes::new(),
            keys: Stripes::new(),
            devices: Stripes::new(),
            groups: Stripes::new(),
            business_records: Stripes::new(),
            business_queues: Stripes::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lock_all_takes_each_stripe_once() {
        let stripes = Stripes::new();
        let keys = [1u32, 2, 1, 3, 2];
        let guards = stripes.lock_all(keys.iter()).await;
        assert!(guards.len() <= 3 && !guards.is_empty());
        drop(guards);
        let _again = stripes.lock(&1u32).await;
    }
}
