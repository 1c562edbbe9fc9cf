//! Typed, sealed access to the [`BusinessStore`]: every value is JSON, sealed under the data
//! key with its address as associated data ([`crate::seal`]) before it is stored.
//!
//! Layout: this file, [`Repo`] (records and queues of any serializable type); `model`, the
//! records; `tables`, the names of tables and queues and what lives in each.

pub mod model;
pub mod tables;

use std::sync::Arc;

use bytes::Bytes;
use courier_store::BusinessStore;
use courier_store::business::{Appended, QueueItem, RecordKey, UniqueKey};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock::Millis;
use crate::error::{BusinessError, BusinessResult};
use crate::seal::Sealer;

/// The business store with sealing. Cheap to clone.
#[derive(Clone)]
pub struct Repo {
    store: Arc<dyn BusinessStore>,
    sealer: Sealer,
}

fn address(key: &RecordKey) -> String {
    format!("{}\0{}\0{}", key.table, key.partition, key.key)
}

impl Repo {
    pub fn new(store: Arc<dyn BusinessStore>, sealer: Sealer) -> Self {
        Repo { store, sealer }
    }

    pub fn store(&self) -> &Arc<dyn BusinessStore> {
        &self.store
    }

    fn seal<T: Serialize>(&self, address: &str, value: &T) -> BusinessResult<Bytes> {
        let json = serde_json::to_vec(value)?;
        self.sealer.seal(address, &json)
    }

    fn open<T: DeserializeOwned>(&self, address: &str, sealed: &[u8]) -> BusinessResult<T> {
        let json = self.sealer.open(address, sealed)?;
        Ok(serde_json::from_slice(&json)?)
    }

    pub async fn get<T: DeserializeOwned>(&self, key: &RecordKey) -> BusinessResult<Option<T>> {
        match self.store.get_record(key).await? {
            Some(sealed) => Ok(Some(self.open(&address(key), &sealed)?)),
            None => Ok(None),
        }
    }

    /// The single record `id` of `table`, which must exist: [`BusinessError::UnknownObject`]
    /// otherwise (what the Graph API answers for an unknown or foreign id).
    pub async fn require<T: DeserializeOwned>(&self, table: &str, id: &str) -> BusinessResult<T> {
        self.get(&tables::single(table, id))
            .await?
            .ok_or_else(|| BusinessError::UnknownObject(id.to_owned()))
    }

    pub async fn put<T: Serialize>(&self, key: &RecordKey, value: &T) -> BusinessResult<()> {
        let sealed = self.seal(&address(key), value)?;
        Ok(self.store.put_record(key, sealed).await?)
    }

    /// Writes only if absent; `true` if written.
    pub async fn insert<T: Serialize>(&self, key: &RecordKey, value: &T) -> BusinessResult<bool> {
        let sealed = self.seal(&address(key), value)?;
        Ok(self.store.insert_record(key, sealed).await?)
    }

    pub async fn delete(&self, key: &RecordKey) -> BusinessResult<()> {
        Ok(self.store.delete_record(key).await?)
    }

    /// Every record of a partition, in key order, read in pages.
    pub async fn list<T: DeserializeOwned>(
        &self,
        table: &str,
        partition: &str,
    ) -> BusinessResult<Vec<(String, T)>> {
        const PAGE: usize = 500;
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .list_records(table, partition, after.as_deref(), PAGE)
                .await?;
            let full = page.len() == PAGE;
            for (key, sealed) in page {
                let record_key = RecordKey::new(table, partition, key.clone());
                let value = self.open(&address(&record_key), &sealed)?;
                after = Some(key.clone());
                out.push((key, value));
            }
            if !full {
                return Ok(out);
            }
        }
    }

    /// Appends items (each with an optional unique key valid until the given time).
    pub async fn append<T: Serialize>(
        &self,
        queue: &str,
        items: &[(T, Option<(String, Millis)>)],
        now: Millis,
    ) -> BusinessResult<Vec<Appended>> {
        let mut sealed = Vec::with_capacity(items.len());
        for (value, unique) in items {
            sealed.push(QueueItem {
                value: self.seal(queue, value)?,
                unique: unique.as_ref().map(|(key, until)| UniqueKey {
                    key: key.clone(),
                    unique_until: *until,
                }),
            });
        }
        Ok(self.store.append(queue, sealed, now).await?)
    }

    pub async fn read_queue<T: DeserializeOwned>(
        &self,
        queue: &str,
        after: u64,
        limit: usize,
    ) -> BusinessResult<Vec<(u64, T)>> {
        let items = self.store.read_queue(queue, after, limit).await?;
        items
            .into_iter()
            .map(|item| Ok((item.seq, self.open(queue, &item.value)?)))
            .collect()
    }

    pub async fn remove(&self, queue: &str, seqs: &[u64]) -> BusinessResult<()> {
        Ok(self.store.remove(queue, seqs).await?)
    }
}
