//! [`BusinessStore`] on the embedded engine: records in `business_records`, queue items in
//! `business_queue`, each queue's next seq in `business_queue_meta` and its unique keys in
//! `business_unique` (key layouts in `codec`, the table in the module docs of `embedded`).
//!
//! Every write is one batch committed through [`EmbeddedStore::write`], so with
//! [`Durability::Sync`](super::Durability::Sync) it goes through the group committer.
//! - Record writes hold the `business_records` lock: an insert's existence check and its
//!   commit see no other record write in between (a put is never overwritten by an insert
//!   that checked before it).
//! - Appends hold the `business_queues` lock from reading the next seq and the unique keys to
//!   the commit of the items, their unique keys and the next seq, in one batch. The unique-key
//!   sweep re-checks what it removes under the same lock.
//! - Removals take no lock: they only tombstone seqs below the queue's next seq, which were
//!   written (once, with their append) before that seq was committed. Queue keys are written
//!   exactly once (seqs are never reused), so they get weak tombstones.

use std::collections::{BTreeSet, HashSet};
use std::ops::Bound;

use async_trait::async_trait;
use bytes::Bytes;

use super::EmbeddedStore;
use super::codec::{
    business_item_key, business_item_seq, business_queue_prefix, business_unique_key, decode_u64,
    record_key, record_name_of_key, record_partition_prefix,
};
use super::engine::{Engine, lock};
use super::sweep::SweepTarget;
use crate::business::{Appended, BusinessStore, QueueItem, QueuedItem, RecordKey};
use crate::error::{StoreError, StoreResult};
use crate::model::Millis;
use crate::rules::{check_append, check_queue_name, check_record_key, check_record_name};

/// Longest value the embedded engine keeps (fjall's limit on one value).
const MAX_VALUE_BYTES: usize = u32::MAX as usize;

fn check_value(value: &[u8]) -> StoreResult<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(StoreError::Invalid(format!(
            "value of {} bytes (at most {MAX_VALUE_BYTES})",
            value.len()
        )));
    }
    Ok(())
}

impl Engine {
    fn put_record(&self, key: &RecordKey, value: &[u8]) -> StoreResult<()> {
        let _records = lock(&self.locks.business_records);
        let mut batch = self.batch();
        batch.insert(
            &self.ks.business_records,
            record_key(&key.table, &key.partition, &key.key),
            value,
        );
        batch.commit()?;
        Ok(())
    }

    fn insert_record(&self, key: &RecordKey, value: &[u8]) -> StoreResult<bool> {
        let stored = record_key(&key.table, &key.partition, &key.key);
        let _records = lock(&self.locks.business_records);
        if self.ks.business_records.contains_key(&stored)? {
            return Ok(false);
        }
        let mut batch = self.batch();
        batch.insert(&self.ks.business_records, stored, value);
        batch.commit()?;
        Ok(true)
    }

    fn delete_record(&self, key: &RecordKey) -> StoreResult<()> {
        let _records = lock(&self.locks.business_records);
        let mut batch = self.batch();
        // Records are written again under the same key: a full tombstone.
        batch.remove(
            &self.ks.business_records,
            record_key(&key.table, &key.partition, &key.key),
        );
        batch.commit()?;
        Ok(())
    }

    fn get_record(&self, key: &RecordKey) -> StoreResult<Option<Bytes>> {
        let stored = record_key(&key.table, &key.partition, &key.key);
        let value = self.ks.business_records.get(stored)?;
        Ok(value.map(|v| Bytes::copy_from_slice(&v)))
    }

    /// A partition's keys are contiguous (see `codec::record_partition_prefix`): the scan
    /// starts after `after` and stops at the first key outside the partition.
    fn list_records(
        &self,
        table: &str,
        partition: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Bytes)>> {
        let mut records = Vec::new();
        if limit == 0 {
            return Ok(records);
        }
        let prefix = record_partition_prefix(table, partition);
        let start = match after {
            Some(after) => Bound::Excluded(record_key(table, partition, after)),
            None => Bound::Included(prefix.clone()),
        };
        for guard in self
            .ks
            .business_records
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
        {
            let (key, value) = guard.into_inner()?;
            if !key.starts_with(&prefix) {
                break;
            }
            let name = record_name_of_key(&key, prefix.len())?;
            records.push((name, Bytes::copy_from_slice(&value)));
            if records.len() == limit {
                break;
            }
        }
        Ok(records)
    }

    /// The next seq of a queue (1 for a queue never appended to).
    fn business_next_seq(&self, prefix: &[u8]) -> StoreResult<u64> {
        match self.ks.business_queue_meta.get(prefix)? {
            Some(value) => decode_u64("business_queue_meta", &value),
            None => Ok(1),
        }
    }

    /// Checks unique keys and allocates seqs under the business queues lock, and commits the
    /// items, their unique keys and the next seq as one batch.
    fn append(
        &self,
        queue: &str,
        items: Vec<QueueItem>,
        now: Millis,
    ) -> StoreResult<Vec<Appended>> {
        let prefix = business_queue_prefix(queue);
        let _queues = lock(&self.locks.business_queues);
        let first = self.business_next_seq(&prefix)?;
        let mut next = first;
        let mut batch = self.batch();
        let mut seen: HashSet<&str> = HashSet::new();
        let mut outcomes = Vec::with_capacity(items.len());
        for item in &items {
            if let Some(unique) = &item.unique {
                // A repeat within the call is a duplicate of the first, whatever became of it.
                if !seen.insert(unique.key.as_str()) {
                    outcomes.push(Appended::Duplicate);
                    continue;
                }
                let stored = business_unique_key(&prefix, &unique.key);
                if let Some(value) = self.ks.business_unique.get(&stored)?
                    && crate::rules::unique_key_holds(decode_u64("business_unique", &value)?, now)
                {
                    outcomes.push(Appended::Duplicate);
                    continue;
                }
                batch.insert(
                    &self.ks.business_unique,
                    stored,
                    unique.unique_until.to_be_bytes(),
                );
            }
            let seq = next;
            next = next
                .checked_add(1)
                .ok_or_else(|| StoreError::Invalid(format!("queue {queue:?} is out of seqs")))?;
            batch.insert(
                &self.ks.business_queue,
                business_item_key(&prefix, seq),
                &item.value[..],
            );
            outcomes.push(Appended::New(seq));
        }
        if next != first {
            batch.insert(&self.ks.business_queue_meta, prefix, next.to_be_bytes());
            batch.commit()?;
        }
        Ok(outcomes)
    }

    fn read_business_queue(
        &self,
        queue: &str,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<QueuedItem>> {
        let mut items = Vec::new();
        let Some(first) = after.checked_add(1) else {
            return Ok(items);
        };
        if limit == 0 {
            return Ok(items);
        }
        let prefix = business_queue_prefix(queue);
        let range = business_item_key(&prefix, first)..=business_item_key(&prefix, u64::MAX);
        for guard in self.ks.business_queue.range(range) {
            let (key, value) = guard.into_inner()?;
            items.push(QueuedItem {
                seq: business_item_seq(&key)?,
                value: Bytes::copy_from_slice(&value),
            });
            if items.len() == limit {
                break;
            }
        }
        Ok(items)
    }

    fn remove_items(&self, queue: &str, seqs: &[u64]) -> StoreResult<()> {
        let prefix = business_queue_prefix(queue);
        let next = self.business_next_seq(&prefix)?;
        // Seqs never allocated are unknown: no tombstone ahead of a future item. Each seq
        // once: one batch holds one write per key.
        let known: BTreeSet<u64> = seqs
            .iter()
            .copied()
            .filter(|&s| s >= 1 && s < next)
            .collect();
        if known.is_empty() {
            return Ok(());
        }
        let mut batch = self.batch();
        for seq in known {
            batch.remove_weak(&self.ks.business_queue, business_item_key(&prefix, seq));
        }
        batch.commit()?;
        Ok(())
    }
}

#[async_trait]
impl BusinessStore for EmbeddedStore {
    async fn put_record(&self, key: &RecordKey, value: Bytes) -> StoreResult<()> {
        check_record_key(key)?;
        check_value(&value)?;
        let key = key.clone();
        self.write(move |e| e.put_record(&key, &value)).await
    }

    async fn insert_record(&self, key: &RecordKey, value: Bytes) -> StoreResult<bool> {
        check_record_key(key)?;
        check_value(&value)?;
        let key = key.clone();
        self.write(move |e| e.insert_record(&key, &value)).await
    }

    async fn get_record(&self, key: &RecordKey) -> StoreResult<Option<Bytes>> {
        check_record_key(key)?;
        self.engine.get_record(key)
    }

    async fn delete_record(&self, key: &RecordKey) -> StoreResult<()> {
        check_record_key(key)?;
        let key = key.clone();
        self.write(move |e| e.delete_record(&key)).await
    }

    async fn list_records(
        &self,
        table: &str,
        partition: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Bytes)>> {
        check_record_name("table name", table)?;
        check_record_name("partition", partition)?;
        self.engine.list_records(table, partition, after, limit)
    }

    async fn append(
        &self,
        queue: &str,
        items: Vec<QueueItem>,
        now: Millis,
    ) -> StoreResult<Vec<Appended>> {
        // Checked before anything is read or locked: a refused append writes nothing.
        check_append(queue, &items)?;
        for item in &items {
            check_value(&item.value)?;
        }
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let queue = queue.to_owned();
        self.write(move |e| e.append(&queue, items, now)).await
    }

    async fn read_queue(
        &self,
        queue: &str,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<QueuedItem>> {
        check_queue_name("queue name", queue)?;
        self.engine.read_business_queue(queue, after, limit)
    }

    async fn remove(&self, queue: &str, seqs: &[u64]) -> StoreResult<()> {
        check_queue_name("queue name", queue)?;
        if seqs.is_empty() {
            return Ok(());
        }
        let (queue, seqs) = (queue.to_owned(), seqs.to_vec());
        self.write(move |e| e.remove_items(&queue, &seqs)).await
    }

    async fn sweep_unique(&self, now: Millis) -> StoreResult<u64> {
        self.sweep(SweepTarget::BusinessUnique, now).await
    }
}
