//! The devices of recently seen users, in memory.
//!
//! Every acknowledged message queues a delivered receipt for each device of its sender, so the
//! devices of a user are read far more often than they change (only registration changes them).
//! Reading them is a prefix scan, which merges iterators over every table of the keyspace; on a
//! store with a long history that cost a tenth of the server's CPU under load.
//!
//! Consistency: registration invalidates the user's entry after its batch commits. A reader
//! that missed the cache notes the cache's generation before it reads the store and fills the
//! entry only if no invalidation happened meanwhile, so a read that raced a registration never
//! leaves the old devices behind. The cache is bounded: when full, it starts again empty.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use courier_protocol::UserId;

use crate::model::Device;

/// Users whose devices are kept (about 150 bytes each).
const CAPACITY: usize = 65_536;

#[derive(Default)]
pub(super) struct DeviceCache {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Bumped by every invalidation.
    generation: u64,
    users: HashMap<UserId, Vec<Device>>,
}

/// A cache miss: the generation to hand back to [`DeviceCache::fill`].
pub(super) struct Miss(u64);

impl DeviceCache {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing is left half-updated by a panic under this lock.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, user: UserId) -> Result<Vec<Device>, Miss> {
        let state = self.lock();
        match state.users.get(&user) {
            Some(devices) => Ok(devices.clone()),
            None => Err(Miss(state.generation)),
        }
    }

    /// Keeps `devices`, read from the store after `miss`, unless an invalidation came between.
    pub fn fill(&self, user: UserId, devices: &[Device], miss: Miss) {
        let mut state = self.lock();
        if state.generation != miss.0 {
            return;
        }
        if state.users.len() >= CAPACITY {
            state.users.clear();
        }
        state.users.insert(user, devices.to_vec());
    }

    /// Forgets `user`'s devices; called after a batch that changes them has committed.
    pub fn invalidate(&self, user: UserId) {
        let mut state = self.lock();
        state.generation += 1;
        state.users.remove(&user);
    }
}

#[cfg(test)]
mod tests {
    use courier_protocol::DeviceAddress;

    use super::*;

    fn device(user: UserId, id: u32) -> Device {
        Device {
            address: DeviceAddress::new(user, id),
            name: format!("d{id}"),
            credential_hash: [0; 32],
            created_at: 0,
        }
    }

    #[test]
    fn a_fill_that_raced_an_invalidation_is_dropped() {
        let cache = DeviceCache::default();
        let user = UserId::random();
        let Err(miss) = cache.get(user) else {
            panic!("empty cache")
        };
        // A registration commits and invalidates while the reader is reading the old devices.
        cache.invalidate(user);
        cache.fill(user, &[device(user, 1)], miss);
        assert!(cache.get(user).is_err(), "the stale read was not kept");

        let Err(miss) = cache.get(user) else {
            panic!("still empty")
        };
        cache.fill(user, &[device(user, 2)], miss);
        assert_eq!(cache.get(user).ok().unwrap()[0].address.device, 2);
        cache.invalidate(user);
        assert!(cache.get(user).is_err());
    }

    #[test]
    fn a_full_cache_starts_again() {
        let cache = DeviceCache::default();
        for _ in 0..CAPACITY + 1 {
            let user = UserId::random();
            let Err(miss) = cache.get(user) else {
                panic!("new user")
            };
            cache.fill(user, &[device(user, 1)], miss);
        }
        assert_eq!(cache.lock().users.len(), 1);
    }
}
