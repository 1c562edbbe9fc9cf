//! Device queues: sequence allocation, de-duplication, reads, acknowledgements and expiry.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ops::Bound;

use courier_protocol::DeviceAddress;
use fjall::Keyspace;

use super::codec::{
    DeviceKey, decode_dedupe, decode_entry, decode_queue_meta, dedupe_key, encode_dedupe,
    encode_entry, encode_queue_meta, entry_expires_at, queue_key,
};
use super::engine::{Engine, lock};
use crate::error::StoreResult;
use crate::model::{EnqueueOutcome, Millis, NewEntry, QueuedEntry};

/// Which keyspace a sweep works through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SweepTarget {
    Queue,
    Dedupe,
}

/// One step of a sweep: expired keys found, and where to continue (`None`: done).
pub(super) struct SweepScan {
    pub expired: Vec<Vec<u8>>,
    pub resume_after: Option<Vec<u8>>,
}

impl Engine {
    /// The next sequence number and the acknowledged watermark of a device queue.
    ///
    /// The watermark keeps acknowledgements and reads from walking over the tombstones of
    /// everything acknowledged before: without it each ack would cost O(history).
    fn queue_meta(&self, device: &DeviceKey) -> StoreResult<(u64, u64)> {
        match self.ks.queue_meta.get(device)? {
            Some(value) => decode_queue_meta(&value),
            None => Ok((1, 0)),
        }
    }

    /// Allocates sequence numbers and checks de-duplication records under the queues lock, and
    /// commits everything (entries, dedupe records, next sequence numbers) as one batch.
    pub fn enqueue(
        &self,
        entries: Vec<(DeviceAddress, NewEntry)>,
    ) -> StoreResult<Vec<EnqueueOutcome>> {
        // Keys are built before taking the lock: an invalid id fails without waiting.
        let keyed = entries
            .into_iter()
            .map(|(address, entry)| {
                let device = address.to_key();
                let dedupe = match &entry.dedupe {
                    Some((sender, id)) => Some(dedupe_key(&device, sender, id)?),
                    None => None,
                };
                Ok((device, dedupe, entry))
            })
            .collect::<StoreResult<Vec<_>>>()?;

        let _queues = lock(&self.locks.queues);
        let mut next_seqs: HashMap<DeviceKey, (u64, u64)> = HashMap::new();
        let mut queued_now: HashMap<Vec<u8>, u64> = HashMap::new();
        let mut outcomes = Vec::with_capacity(keyed.len());
        let mut batch = self.batch();
        for (device, dedupe, entry) in keyed {
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
        for (device, (next, acked)) in next_seqs {
            batch.insert(&self.ks.queue_meta, device, encode_queue_meta(next, acked));
        }
        batch.commit()?;
        Ok(outcomes)
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

    /// One batch of weak tombstones for the keys in `(0, up_to]`: queue keys are written once.
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
        for guard in self
            .ks
            .queue
            .range(queue_key(&device, acked + 1)..=queue_key(&device, up_to))
        {
            batch.remove_weak(&self.ks.queue, guard.key()?);
        }
        batch.insert(&self.ks.queue_meta, device, encode_queue_meta(next, up_to));
        Ok(batch.commit()?)
    }

    pub fn queue_len(&self, address: DeviceAddress) -> StoreResult<u64> {
        Engine::count_prefix(&self.ks.queue, &address.to_key())
    }

    fn sweep_keyspace(&self, target: SweepTarget) -> &Keyspace {
        match target {
            SweepTarget::Queue => &self.ks.queue,
            SweepTarget::Dedupe => &self.ks.dedupe,
        }
    }

    /// Scans up to `max_scanned` records after `resume_after` for ones expired at `now`.
    pub fn scan_expired(
        &self,
        target: SweepTarget,
        resume_after: Option<Vec<u8>>,
        now: Millis,
        max_scanned: usize,
    ) -> StoreResult<SweepScan> {
        let start = match resume_after {
            Some(key) => Bound::Excluded(key),
            None => Bound::Unbounded,
        };
        let mut expired = Vec::new();
        let mut last = None;
        let mut scanned = 0;
        for guard in self
            .sweep_keyspace(target)
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
        {
            let (key, value) = guard.into_inner()?;
            if expires_at(target, &value)? <= now {
                expired.push(key.to_vec());
            }
            scanned += 1;
            if scanned == max_scanned {
                last = Some(key.to_vec());
                break;
            }
        }
        Ok(SweepScan {
            expired,
            resume_after: last,
        })
    }

    /// Removes the records of `keys` that still exist and are still expired at `now`; returns
    /// how many it removed. Re-checked under the queues lock, so a record enqueue rewrote since
    /// the scan, or an entry ack removed, is neither deleted nor counted.
    pub fn remove_expired(
        &self,
        target: SweepTarget,
        keys: Vec<Vec<u8>>,
        now: Millis,
    ) -> StoreResult<u64> {
        let keyspace = self.sweep_keyspace(target);
        let _queues = lock(&self.locks.queues);
        let mut batch = self.batch();
        let mut removed = 0;
        for key in keys {
            let Some(value) = keyspace.get(&key)? else {
                continue;
            };
            if expires_at(target, &value)? > now {
                continue;
            }
            match target {
                SweepTarget::Queue => batch.remove_weak(keyspace, key),
                SweepTarget::Dedupe => batch.remove(keyspace, key),
            }
            removed += 1;
        }
        batch.commit()?;
        Ok(removed)
    }
}

fn expires_at(target: SweepTarget, value: &[u8]) -> StoreResult<Millis> {
    match target {
        SweepTarget::Queue => entry_expires_at(value),
        SweepTarget::Dedupe => decode_dedupe(value).map(|(_, expires_at)| expires_at),
    }
}
