//! [`MemoryStore`]: state kept item by item in memory, for tests and load agents.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{DeviceState, StateChange, StateItem, StateKey, StateStore};
use crate::error::ClientResult;

/// Keeps the items of one device in memory, applied change by change as a database would, so
/// that a client reopened from it ([`crate::Client::open_with_store`]) continues where the
/// first one stopped. Nothing survives the process.
#[derive(Default)]
pub struct MemoryStore {
    items: Mutex<BTreeMap<StateKey, StateItem>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn items(&self) -> std::sync::MutexGuard<'_, BTreeMap<StateKey, StateItem>> {
        // Every change is applied under the lock in one step, so a poisoned map is consistent.
        self.items
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The keys stored, in order.
    pub fn keys(&self) -> Vec<StateKey> {
        self.items().keys().cloned().collect()
    }

    /// The stored item under `key`, encoded as [`StateItem::to_json`] does.
    pub fn item_json(&self, key: &StateKey) -> Option<Vec<u8>> {
        self.items().get(key).and_then(|item| item.to_json().ok())
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn load(&self) -> ClientResult<Option<DeviceState>> {
        let items: Vec<StateItem> = self.items().values().cloned().collect();
        if items.is_empty() {
            return Ok(None);
        }
        DeviceState::from_items(items).map(Some)
    }

    async fn save(&self, change: &StateChange) -> ClientResult<()> {
        let mut items = self.items();
        for (key, item) in &change.items {
            match item {
                Some(item) => items.insert(key.clone(), item.clone()),
                None => items.remove(key),
            };
        }
        Ok(())
    }
}
