//! Device queues: sequence allocation, de-duplication, reads and acknowledgements (expiry is in
//! `sweep`).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use courier_protocol::DeviceAddress;
use fjall::OwnedWriteBatch;

use super::codec::{
    DeviceKey, decode_dedupe, decode_entry, decode_queue_meta, dedupe_key, encode_dedupe,
    encode_entry, encode_queue_meta, queue_key,
};
use super::engine::{Engine, lock};
use crate::error::StoreResult;
use crate::model::{EnqueueOutcome, Millis, NewEntry, QueuedEntry};

/// An entry for a device queue with its keys built, ready for [`Engine::append_entries`].
pub(super) struct KeyedEntry {
    device: DeviceKey,
    /// The `dedupe` key, if the entry has a de-duplication key.
    dedupe: Option<Vec<u8>>,
    entry: NewEntry,
}

impl KeyedEntry {
    pub fn enqueued_at(&self) -> Millis {
        self.entry.enqueued_at
    }
}

/// Builds the keys of `entries`; `Invalid` (before any lock is taken) for an over-long client
/// message id.
pub(super) fn key_entries(entries: Vec<(DeviceAddress, NewEntry)>) -> StoreResult<Vec<KeyedEntry>> {
    entries
        .into_iter()
        .map(|(address, entry)| {
            let device = address.to_key();
            let dedupe = match &entry.dedupe {
                Some((sender, id)) => Some(dedupe_key(&device, sender, id)?),
                None => None,
            };
            Ok(KeyedEntry {
                device,
                dedupe,
                entry,
            })
        })
        .collect()
}

/// The `queue_meta` records a write batch sets: to be remembered once the batch has committed.
#[must_use = "remember the new queue metadata once the batch has committed"]
pub(super) struct NewQueueMetas(Vec<(DeviceKey, (u64, u64))>);

/// Queues whose metadata is kept in memory (about 60 bytes each); when full, the cache starts
/// again empty.
const QUEUE_META_CACHE: usize = 262_144;

impl Engine {
    /// The next sequence number and the acknowledged watermark of a device queue.
    ///
    /// The watermark keeps acknowledgements and reads from walking over the tombstones of
    /// everything acknowledged before: without it each ack would cost O(history).
    ///
    /// Served from memory when the queue was written since the store opened: every write of
    /// `queue_meta` holds the queues lock and updates the cache after its batch commits, so a
    /// cached value is always the last committed one (and a miss reads it from the store).
    fn queue_meta(&self, device: &DeviceKey) -> StoreResult<(u64, u64)> {
        if let Some(meta) = self.queue_meta_cache().get(device) {
            return Ok(*meta);
        }
        match self.ks.queue_meta.get(device)? {
            Some(value) => decode_queue_meta(&value),
            None => Ok((1, 0)),
        }
    }

    fn queue_meta_cache(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceKey, (u64, u64)>> {
        // Every update is a single insert: a panic cannot leave it half-done.
        self.queue_metas
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Remembers the `queue_meta` records of a batch that has committed. The caller still
    /// holds the queues lock it took before reading them.
    pub(super) fn remember(&self, metas: NewQueueMetas) {
        let mut cache = self.queue_meta_cache();
        if cache.len() + metas.0.len() > QUEUE_META_CACHE {
            cache.clear();
        }
        cache.extend(metas.0);
    }

    /// Allocates sequence numbers and checks de-duplication records under the queues lock, and
    /// commits everything (entries, dedupe records, next sequence numbers) as one batch.
    pub fn enqueue(
        &self,
        entries: Vec<(DeviceAddress, NewEntry)>,
    ) -> StoreResult<Vec<EnqueueOutcome>> {
        // Keys are built before taking the lock: an invalid id fails without waiting.
        let keyed = key_entries(entries)?;
        let _queues = lock(&self.locks.queues);
        let mut batch = self.batch();
        let (outcomes, metas) = self.append_entries(&mut batch, keyed)?;
        batch.commit()?;
        self.remember(metas);
        Ok(outcomes)
    }

    /// Adds `entries` to `batch` as [`Engine::enqueue`] would queue them: de-duplication checks,
    /// sequence numbers after each queue's `queue_meta`, the entries, their dedupe records and
    /// the new `queue_meta` records. Outcomes come in the order of `entries`.
    ///
    /// The caller holds the queues lock from before this call until `batch` is committed and
    /// the returned metadata remembered ([`Engine::remember`]), and puts no other `queue`,
    /// `queue_meta` or `dedupe` record in `batch`.
    pub(super) fn append_entries(
        &self,
        batch: &mut OwnedWriteBatch,
        entries: Vec<KeyedEntry>,
    ) -> StoreResult<(Vec<EnqueueOutcome>, NewQueueMetas)> {
        let mut next_seqs: HashMap<DeviceKey, (u64, u64)> = HashMap::new();
        let mut queued_now: HashMap<Vec<u8>, u64> = HashMap::new();
        let mut outcomes = Vec::with_capacity(entries.len());
        for KeyedEntry {
            device,
            dedupe,
            entry,
        } in entries
        {
            if let Some(key) = &dedupe {
                if let Some(&seq) = queued_now.get(key) {
                    outcomes.push(EnqueueOutcome::Duplicate { seq });
                    continue;
                }
                if let Some(value) = self.ks.dedupe.get(key)? {
                    let (seq, expires_at) = decode_dedupe(&value)?;
                    if expires_at > entry.enqueued_at {
                        outcomes.push(EnqueueOutcome::Duplicate { seq });
                        continue;
                    }
                }
            }
            let (next, _) = match next_seqs.entry(device) {
                Entry::Occupied(meta) => meta.into_mut(),
                Entry::Vacant(slot) => slot.insert(self.queue_meta(&device)?),
            };
            let seq = *next;
            *next += 1;
            batch.insert(
                &self.ks.queue,
                queue_key(&device, seq),
                encode_entry(&entry),
            );
            if let Some(key) = dedupe {
                batch.insert(
                    &self.ks.dedupe,
                    key.clone(),
                    encode_dedupe(seq, entry.expires_at),
                );
                queued_now.insert(key, seq);
            }
            outcomes.push(EnqueueOutcome::Queued { seq });
        }
        let mut metas = Vec::with_capacity(next_seqs.len());
        for (device, (next, acked)) in next_seqs {
            batch.insert(&self.ks.queue_meta, device, encode_queue_meta(next, acked));
            metas.push((device, (next, acked)));
        }
        Ok((outcomes, NewQueueMetas(metas)))
    }

    pub fn read_queue(
        &self,
        address: DeviceAddress,
        after: u64,
        limit: usize,
        now: Millis,
    ) -> StoreResult<Vec<QueuedEntry>> {
        let mut entries = Vec::new();
        let Some(first) = after.checked_add(1) else {
            return Ok(entries);
        };
        if limit == 0 {
            return Ok(entries);
        }
        let device = address.to_key();
        let (_, acked) = self.queue_meta(&device)?;
        let first = first.max(acked.saturating_add(1));
        for guard in self
            .ks
            .queue
            .range(queue_key(&device, first)..=queue_key(&device, u64::MAX))
        {
            let (key, value) = guard.into_inner()?;
            let entry = decode_entry(&key, &value)?;
            if entry.expires_at <= now {
                continue;
            }
            entries.push(entry);
            if entries.len() == limit {
                break;
            }
        }
        Ok(entries)
    }

    /// One batch of weak tombstones for the keys in `(acked, up_to]`: queue keys are written
    /// once.
    ///
    /// The keys are computed, not read: every sequence number below `next` was allocated
    /// together with its entry, so the range holds exactly the keys `acked + 1 ..= up_to`
    /// (those the expiry sweep removed already get a second, harmless weak tombstone). A range
    /// scan here would merge iterators over every table of the keyspace that overlaps the
    /// range, and cost more the more history the store holds (it was a fifth of the server's
    /// CPU on a store with a few million acknowledged messages).
    pub fn ack_queue(&self, address: DeviceAddress, up_to: u64) -> StoreResult<()> {
        if up_to == 0 {
            return Ok(());
        }
        let device = address.to_key();
        let _queues = lock(&self.locks.queues);
        let (next, acked) = self.queue_meta(&device)?;
        // Nothing beyond what was ever allocated can be acknowledged.
        let up_to = up_to.min(next - 1);
        if up_to <= acked {
            return Ok(());
        }
        let mut batch = self.batch();
        for seq in acked + 1..=up_to {
            batch.remove_weak(&self.ks.queue, queue_key(&device, seq));
        }
        batch.insert(&self.ks.queue_meta, device, encode_queue_meta(next, up_to));
        batch.commit()?;
        self.remember(NewQueueMetas(vec![(device, (next, up_to))]));
        Ok(())
    }

    pub fn queue_len(&self, address: DeviceAddress) -> StoreResult<u64> {
        Engine::count_prefix(&self.ks.queue, &address.to_key())
    }
}
