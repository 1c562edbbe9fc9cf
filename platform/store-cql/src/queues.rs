//! Device queues: seq allocation, de-duplication, reads, acknowledgements.
//!
//! Every write to a device queue holds the device's in-process lock (the single-writer rule of
//! the crate docs) from the `queue_meta` read to the end of the write, so seq allocation and
//! dedupe checks are plain reads followed by one write set.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use courier_protocol::DeviceAddress;
use courier_store::{
    EnqueueOutcome, MAX_CLIENT_MESSAGE_ID_BYTES, Millis, NewEntry, QueuedEntry, StoreError,
    StoreResult,
};
use futures_util::future::try_join_all;

use crate::CqlStore;
use crate::layout::{
    BucketDelete, QUEUE_BUCKET_SPAN, ack_deletes, backstop_ttl, queue_bucket, queue_buckets,
    seq_to_cql, u64_from_cql, u64_to_cql, wall_clock_ms,
};
use crate::write::{Phase, WriteSet, partition_of};

/// Most rows one read of a queue partition asks for.
const READ_PAGE: usize = 1000;

/// A de-duplication key: recipient device, sender device, client message id.
type DedupeKey = (DeviceAddress, DeviceAddress, String);

/// The next seq to allocate and the acknowledged watermark of a device queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QueueMeta {
    pub next: u64,
    pub acked: u64,
}

/// `Invalid` (before anything is read or written) for an over-long client message id.
pub(crate) fn check_entries(entries: &[(DeviceAddress, NewEntry)]) -> StoreResult<()> {
    for (_, entry) in entries {
        if let Some((_, id)) = &entry.dedupe {
            check_client_message_id(id)?;
        }
    }
    Ok(())
}

pub(crate) fn check_client_message_id(id: &str) -> StoreResult<()> {
    if id.len() > MAX_CLIENT_MESSAGE_ID_BYTES {
        return Err(StoreError::Invalid(format!(
            "client message id of {} bytes (at most {MAX_CLIENT_MESSAGE_ID_BYTES})",
            id.len()
        )));
    }
    Ok(())
}

impl CqlStore {
    pub(crate) async fn queue_meta(&self, address: DeviceAddress) -> StoreResult<QueueMeta> {
        let row: Option<(Option<i64>, Option<i64>)> = self
            .db
            .maybe_row(
                &self.st.meta_get,
                (address.user.0, address.device as i32),
                "queue_meta",
            )
            .await?;
        let (next, acked) = row.unwrap_or((None, None));
        Ok(QueueMeta {
            next: next.map_or(1, u64_from_cql).max(1),
            acked: acked.map_or(0, u64_from_cql),
        })
    }

    async fn dedupe_record(&self, key: &DedupeKey) -> StoreResult<Option<(u64, Millis)>> {
        let (recipient, sender, id) = key;
        let row: Option<(i64, i64)> = self
            .db
            .maybe_row(
                &self.st.dedupe_get,
                (
                    recipient.user.0,
                    recipient.device as i32,
                    sender.user.0,
                    sender.device as i32,
                    id.as_str(),
                ),
                "dedupe",
            )
            .await?;
        Ok(row.map(|(seq, expires_at)| (u64_from_cql(seq), u64_from_cql(expires_at))))
    }

    pub(crate) async fn enqueue_impl(
        &self,
        entries: Vec<(DeviceAddress, NewEntry)>,
    ) -> StoreResult<Vec<EnqueueOutcome>> {
        check_entries(&entries)?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let devices: BTreeSet<DeviceAddress> = entries.iter().map(|(a, _)| *a).collect();
        let _devices = self.locks.devices.lock_all(devices.iter()).await;
        let mut writes = WriteSet::default();
        let outcomes = self.plan_entries(entries, &mut writes).await?;
        writes.apply(&self.db).await?;
        Ok(outcomes)
    }

    /// Adds to `writes` what queuing `entries` takes: dedupe checks, seqs after each queue's
    /// `queue_meta`, the entries, their dedupe records and the new next seqs. Outcomes come in
    /// the order of `entries`. The caller has checked the entries and holds the locks of their
    /// devices until `writes` is applied.
    pub(crate) async fn plan_entries(
        &self,
        entries: Vec<(DeviceAddress, NewEntry)>,
        writes: &mut WriteSet,
    ) -> StoreResult<Vec<EnqueueOutcome>> {
        let devices: BTreeSet<DeviceAddress> = entries.iter().map(|(a, _)| *a).collect();
        let metas = try_join_all(devices.iter().map(|&a| self.queue_meta(a))).await?;
        let mut next_seqs: HashMap<DeviceAddress, u64> = devices
            .iter()
            .zip(metas)
            .map(|(&address, meta)| (address, meta.next))
            .collect();

        let keys: BTreeSet<DedupeKey> = entries
            .iter()
            .filter_map(|(to, e)| e.dedupe.as_ref().map(|(s, id)| (*to, *s, id.clone())))
            .collect();
        let records = try_join_all(keys.iter().map(|key| self.dedupe_record(key))).await?;
        let stored: HashMap<&DedupeKey, (u64, Millis)> = keys
            .iter()
            .zip(records)
            .filter_map(|(key, record)| record.map(|r| (key, r)))
            .collect();

        let wall = wall_clock_ms();
        let mut queued_now: HashMap<DedupeKey, u64> = HashMap::new();
        let mut outcomes = Vec::with_capacity(entries.len());
        for (address, entry) in entries {
            let key = entry
                .dedupe
                .as_ref()
                .map(|(sender, id)| (address, *sender, id.clone()));
            if let Some(key) = &key {
                if let Some(&seq) = queued_now.get(key) {
                    outcomes.push(EnqueueOutcome::Duplicate { seq });
                    continue;
                }
                if let Some(&(seq, expires_at)) = stored.get(key)
                    && expires_at > entry.enqueued_at
                {
                    outcomes.push(EnqueueOutcome::Duplicate { seq });
                    continue;
                }
            }
            let next = next_seqs.entry(address).or_insert(1);
            let seq = *next;
            *next += 1;
            let ttl = backstop_ttl(entry.expires_at, wall);
            let (user, device) = (address.user.0, address.device as i32);
            let bucket = queue_bucket(seq);
            let payload_len = entry.payload.len();
            writes.push(
                Phase::Data,
                partition_of("queue", &(address, bucket)),
                &self.st.queue_insert,
                (
                    user,
                    device,
                    seq_to_cql(bucket, "bucket")?,
                    seq_to_cql(seq, "seq")?,
                    u64_to_cql(entry.enqueued_at),
                    u64_to_cql(entry.expires_at),
                    entry.payload,
                    ttl,
                ),
                payload_len,
            );
            if let Some(key) = key {
                let (_, sender, id) = &key;
                writes.push(
                    Phase::Commit,
                    partition_of("dedupe", &key),
                    &self.st.dedupe_put,
                    (
                        user,
                        device,
                        sender.user.0,
                        sender.device as i32,
                        id.clone(),
                        seq_to_cql(seq, "seq")?,
                        u64_to_cql(entry.expires_at),
                        ttl,
                    ),
                    id.len(),
                );
                queued_now.insert(key, seq);
            }
            outcomes.push(EnqueueOutcome::Queued { seq });
        }
        for address in devices {
            let next = next_seqs.get(&address).copied().unwrap_or(1);
            writes.push(
                Phase::Reserve,
                partition_of("queue_meta", &address),
                &self.st.meta_set_next,
                (
                    seq_to_cql(next, "seq")?,
                    address.user.0,
                    address.device as i32,
                ),
                0,
            );
        }
        Ok(outcomes)
    }

    pub(crate) async fn read_queue_impl(
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
        let meta = self.queue_meta(address).await?;
        let first = first.max(meta.acked.saturating_add(1));
        let (user, device) = (address.user.0, address.device as i32);
        for bucket in queue_buckets(first, meta.next - 1) {
            let mut from = first.max(bucket * QUEUE_BUCKET_SPAN);
            loop {
                let want = (limit - entries.len()).min(READ_PAGE);
                let rows: Vec<(i64, i64, i64, Bytes)> = self
                    .db
                    .rows(
                        &self.st.queue_read,
                        (
                            user,
                            device,
                            seq_to_cql(bucket, "bucket")?,
                            seq_to_cql(from, "seq")?,
                            want as i32,
                        ),
                        "queue",
                    )
                    .await?;
                let got = rows.len();
                for (seq, enqueued_at, expires_at, payload) in rows {
                    from = u64_from_cql(seq) + 1;
                    let expires_at = u64_from_cql(expires_at);
                    if expires_at <= now {
                        continue;
                    }
                    entries.push(QueuedEntry {
                        seq: u64_from_cql(seq),
                        enqueued_at: u64_from_cql(enqueued_at),
                        expires_at,
                        payload,
                    });
                    if entries.len() == limit {
                        return Ok(entries);
                    }
                }
                if got < want {
                    break;
                }
            }
        }
        Ok(entries)
    }

    /// Deletes `(acked, up_to]` of a device queue (ranges and whole buckets), then moves the
    /// watermark. The caller holds the device's lock.
    async fn delete_acknowledged(
        &self,
        address: DeviceAddress,
        meta: QueueMeta,
        up_to: u64,
    ) -> StoreResult<()> {
        let (user, device) = (address.user.0, address.device as i32);
        try_join_all(ack_deletes(meta.acked, up_to).into_iter().map(
            |(bucket, delete)| async move {
                let bucket = seq_to_cql(bucket, "bucket")?;
                match delete {
                    BucketDelete::Whole => {
                        self.db
                            .execute(&self.st.queue_delete_bucket, (user, device, bucket))
                            .await
                    }
                    BucketDelete::UpTo(seq) => {
                        self.db
                            .execute(
                                &self.st.queue_delete_up_to,
                                (user, device, bucket, seq_to_cql(seq, "seq")?),
                            )
                            .await
                    }
                }
            },
        ))
        .await?;
        // Only once the data is gone: a crash in between leaves the watermark behind, and the
        // next acknowledgement deletes the range again.
        self.db
            .execute(
                &self.st.meta_set_acked,
                (seq_to_cql(up_to, "seq")?, user, device),
            )
            .await
            .map(drop)
    }

    pub(crate) async fn ack_queue_impl(
        &self,
        address: DeviceAddress,
        up_to: u64,
    ) -> StoreResult<()> {
        if up_to == 0 {
            return Ok(());
        }
        let _device = self.locks.devices.lock(&address).await;
        let meta = self.queue_meta(address).await?;
        // Nothing beyond what was ever allocated can be acknowledged: a range past it would
        // hide entries queued later.
        let up_to = up_to.min(meta.next - 1);
        if up_to <= meta.acked {
            return Ok(());
        }
        self.delete_acknowledged(address, meta, up_to).await
    }

    /// Empties the queues of removed devices (their next seqs stay, so seqs are never reused).
    pub(crate) async fn clear_queues(&self, addresses: &[DeviceAddress]) -> StoreResult<()> {
        let _devices = self.locks.devices.lock_all(addresses.iter()).await;
        for &address in addresses {
            let meta = self.queue_meta(address).await?;
            let last = meta.next - 1;
            if last > meta.acked {
                self.delete_acknowledged(address, meta, last).await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn queue_len_impl(&self, address: DeviceAddress) -> StoreResult<u64> {
        let meta = self.queue_meta(address).await?;
        let (user, device) = (address.user.0, address.device as i32);
        let acked = seq_to_cql(meta.acked, "seq")?;
        let counts = try_join_all(
            queue_buckets(meta.acked.saturating_add(1), meta.next - 1).map(|bucket| async move {
                let row: Option<(i64,)> = self
                    .db
                    .maybe_row(
                        &self.st.queue_count,
                        (user, device, seq_to_cql(bucket, "bucket")?, acked),
                        "queue",
                    )
                    .await?;
                StoreResult::Ok(row.map_or(0, |(n,)| n.max(0) as u64))
            }),
        )
        .await?;
        Ok(counts.into_iter().sum())
    }

    pub(crate) async fn count_queued_entries_impl(&self) -> StoreResult<u64> {
        let mut scan = self
            .db
            .scan::<(uuid::Uuid, i32, i64, i64, i64)>(&self.st.scan_queue, "queue")
            .await?;
        let mut count = 0u64;
        // Keeps nothing, so the one chunk is the whole scan.
        scan.next_chunk(usize::MAX, |_| {
            count += 1;
            None::<()>
        })
        .await?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use courier_protocol::UserId;

    use super::*;

    #[test]
    fn over_long_client_message_ids_are_refused() {
        let to = DeviceAddress::new(UserId::random(), 1);
        let entry = |id: &str| NewEntry {
            dedupe: Some((to, id.to_owned())),
            enqueued_at: 0,
            expires_at: 1,
            payload: Bytes::new(),
        };
        let longest = "x".repeat(MAX_CLIENT_MESSAGE_ID_BYTES);
        assert!(check_entries(&[(to, entry(&longest))]).is_ok());
        let too_long = "x".repeat(MAX_CLIENT_MESSAGE_ID_BYTES + 1);
        assert!(matches!(
            check_entries(&[(to, entry("a")), (to, entry(&too_long))]),
            Err(StoreError::Invalid(_))
        ));
    }
}
