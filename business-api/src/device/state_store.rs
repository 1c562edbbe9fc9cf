//! The SDK state of a number's device (identity and prekeys, sessions with every customer
//! device, seen marks), kept in the business store: one sealed record per item, under
//! `device/<number>/<item key>`, so that a save after one message writes one session and one
//! mark, not the whole state. Any node can load it, which is how a number moves between nodes.
//!
//! The items of one save are written one after another in key order; a crash in between
//! leaves some written and some not. The SDK orders its work so that either outcome is
//! repaired by the redelivery that follows (see `courier_client::state`).

use async_trait::async_trait;
use courier_client::ClientResult;
use courier_client::state::{DeviceState, StateChange, StateItem, StateStore};
use courier_store::business::RecordKey;

use crate::repo::Repo;
use crate::repo::tables;

pub struct SealedStateStore {
    repo: Repo,
    number_id: String,
}

impl SealedStateStore {
    pub fn new(repo: Repo, number_id: &str) -> Self {
        SealedStateStore {
            repo,
            number_id: number_id.to_owned(),
        }
    }
}

fn storage(error: crate::error::BusinessError) -> courier_client::ClientError {
    courier_client::ClientError::Storage(format!("business device state: {error}"))
}

#[async_trait]
impl StateStore for SealedStateStore {
    async fn load(&self) -> ClientResult<Option<DeviceState>> {
        let items = self
            .repo
            .list::<StateItem>(tables::DEVICE, &self.number_id)
            .await
            .map_err(storage)?;
        if items.is_empty() {
            return Ok(None);
        }
        DeviceState::from_items(items.into_iter().map(|(_, item)| item)).map(Some)
    }

    async fn save(&self, change: &StateChange) -> ClientResult<()> {
        for (key, item) in &change.items {
            let record = RecordKey::new(tables::DEVICE, &self.number_id, key.to_string());
            let written = match item {
                Some(item) => self.repo.put(&record, item).await,
                None => self.repo.delete(&record).await,
            };
            written.map_err(storage)?;
        }
        Ok(())
    }
}
