//! Where a device keeps its private prekeys: the [`PreKeyStore`] trait that
//! [`Session::accept`](crate::session::Session::accept) reads, and an in-memory,
//! serde-serializable implementation.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::keys::{OneTimePreKeyPair, SignedPreKeyPair};

/// Access to a device's private prekeys.
///
/// `accept` looks a one-time prekey up with [`PreKeyStore::one_time_prekey`] and removes it
/// with [`PreKeyStore::take_one_time_prekey`] only once the PreKey message has decrypted, so a
/// corrupted or forged message cannot burn a one-time prekey that a genuine message still needs.
pub trait PreKeyStore {
    /// The signed prekey with this id, if the device still has it.
    fn signed_prekey(&self, id: u32) -> Option<SignedPreKeyPair>;
    /// The one-time prekey with this id, without removing it.
    fn one_time_prekey(&self, id: u32) -> Option<OneTimePreKeyPair>;
    /// Removes and returns the one-time prekey with this id.
    fn take_one_time_prekey(&mut self, id: u32) -> Option<OneTimePreKeyPair>;
}

/// A [`PreKeyStore`] in memory; serialize it to persist it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MemoryPreKeyStore {
    signed: BTreeMap<u32, SignedPreKeyPair>,
    one_time: BTreeMap<u32, OneTimePreKeyPair>,
}

impl MemoryPreKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a signed prekey. Keep an old one for a while after rotating, so that
    /// PreKey messages already under way still find it.
    pub fn add_signed_prekey(&mut self, key: SignedPreKeyPair) {
        self.signed.insert(key.id, key);
    }

    /// Forgets a signed prekey.
    pub fn remove_signed_prekey(&mut self, id: u32) {
        self.signed.remove(&id);
    }

    /// Adds one-time prekeys.
    pub fn add_one_time_prekeys(&mut self, keys: impl IntoIterator<Item = OneTimePreKeyPair>) {
        for key in keys {
            self.one_time.insert(key.id, key);
        }
    }

    /// How many one-time prekeys are left.
    pub fn one_time_prekey_count(&self) -> usize {
        self.one_time.len()
    }

    /// The signed prekeys, by id (to persist them one by one).
    pub fn signed_prekeys(&self) -> impl Iterator<Item = &SignedPreKeyPair> {
        self.signed.values()
    }

    /// The one-time prekeys left, by id (to persist them one by one).
    pub fn one_time_prekeys(&self) -> impl Iterator<Item = &OneTimePreKeyPair> {
        self.one_time.values()
    }
}

impl PreKeyStore for MemoryPreKeyStore {
    fn signed_prekey(&self, id: u32) -> Option<SignedPreKeyPair> {
        self.signed.get(&id).cloned()
    }

    fn one_time_prekey(&self, id: u32) -> Option<OneTimePreKeyPair> {
        self.one_time.get(&id).cloned()
    }

    fn take_one_time_prekey(&mut self, id: u32) -> Option<OneTimePreKeyPair> {
        self.one_time.remove(&id)
    }
}
