//! Expiry by the caller's clock: full scans of the expiring tables, deleting what expired.
//!
//! TTLs remove most records long before a sweep would (see the crate docs), so sweeps are
//! rare and mostly find what the wall clock has not expired yet. Records that may be written
//! again under the same key (dedupe records, bucket index rows) are deleted `USING TIMESTAMP`
//! of the version the scan saw: a newer version written meanwhile survives.

use std::collections::BTreeSet;

use courier_store::{Millis, StoreResult};
use uuid::Uuid;

use crate::CqlStore;
use crate::layout::u64_from_cql;

/// Expired records gathered from a scan before they are deleted (bounds a sweep's memory).
const SWEEP_CHUNK: usize = 4096;

type QueueRow = (Uuid, i32, i64, i64, i64);
type DedupeRow = (Uuid, i32, Uuid, i32, String, i64, i64);
type GroupMessageRow = (Uuid, i64, i64, i64);
type GroupDedupeRow = (Uuid, Uuid, i32, String, i64, i64);
type ReceiptsRow = (Uuid, i64, Option<i64>);
/// Any row of `business_queues`: meta rows (seq -1), unique keys (seq 0), items.
type BusinessQueueRow = (
    String,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

impl CqlStore {
    pub(crate) async fn sweep_expired_impl(&self, now: Millis) -> StoreResult<u64> {
        let queue_entries = self.sweep_queue(now).await?;
        self.sweep_dedupe(now).await?;
        self.sweep_group_messages(now).await?;
        self.sweep_group_dedupe(now).await?;
        self.sweep_receipts(now).await?;
        Ok(queue_entries)
    }

    /// Deletes the unique keys of business queues whose `unique_until` is at or before `now`,
    /// each `USING TIMESTAMP` of the version the scan saw: a key recorded again after the
    /// scan saw it stays (though it is counted).
    pub(crate) async fn sweep_business_unique_impl(&self, now: Millis) -> StoreResult<u64> {
        let mut scan = self
            .db
            .scan::<BusinessQueueRow>(&self.st.scan_bq_unique, "business_queues")
            .await?;
        let mut removed = 0;
        loop {
            let (expired, done) = scan
                .next_chunk(SWEEP_CHUNK, |(queue, seq, key, until, written)| {
                    match (seq, key, until, written) {
                        (Some(0), Some(key), Some(until), Some(written))
                            if u64_from_cql(until) <= now =>
                        {
                            Some((written, queue, key))
                        }
                        _ => None,
                    }
                })
                .await?;
            removed += expired.len() as u64;
            self.db
                .execute_all(&self.st.bq_unique_delete, expired)
                .await?;
            if done {
                return Ok(removed);
            }
        }
    }

    async fn sweep_queue(&self, now: Millis) -> StoreResult<u64> {
        let mut scan = self
            .db
            .scan::<QueueRow>(&self.st.scan_queue, "queue")
            .await?;
        let mut removed = 0;
        loop {
            let (expired, done) = scan
                .next_chunk(SWEEP_CHUNK, |(user, device, bucket, seq, expires_at)| {
                    (u64_from_cql(expires_at) <= now).then_some((user, device, bucket, seq))
                })
                .await?;
            removed += expired.len() as u64;
            self.db
                .execute_all(&self.st.queue_delete_row, expired)
                .await?;
            if done {
                return Ok(removed);
            }
        }
    }

    async fn sweep_dedupe(&self, now: Millis) -> StoreResult<()> {
        let mut scan = self
            .db
            .scan::<DedupeRow>(&self.st.scan_dedupe, "dedupe")
            .await?;
        loop {
            let (expired, done) = scan
                .next_chunk(
                    SWEEP_CHUNK,
                    |(user, device, sender, sender_device, id, expires_at, written)| {
                        (u64_from_cql(expires_at) <= now).then_some((
                            written,
                            user,
                            device,
                            sender,
                            sender_device,
                            id,
                        ))
                    },
                )
                .await?;
            self.db.execute_all(&self.st.dedupe_delete, expired).await?;
            if done {
                return Ok(());
            }
        }
    }

    /// Deletes expired bodies and their receipts, then the index rows of buckets left empty.
    async fn sweep_group_messages(&self, now: Millis) -> StoreResult<()> {
        let mut scan = self
            .db
            .scan::<GroupMessageRow>(&self.st.scan_group_messages, "group_messages")
            .await?;
        let mut touched: BTreeSet<(Uuid, i64)> = BTreeSet::new();
        loop {
            let (expired, done) = scan
                .next_chunk(SWEEP_CHUNK, |(group, bucket, seq, expires_at)| {
                    (u64_from_cql(expires_at) <= now).then_some((group, bucket, seq))
                })
                .await?;
            touched.extend(expired.iter().map(|&(group, bucket, _)| (group, bucket)));
            self.db
                .execute_all(
                    &self.st.receipts_delete,
                    expired.iter().map(|&(g, _, s)| (g, s)),
                )
                .await?;
            self.db
                .execute_all(&self.st.group_message_delete, expired)
                .await?;
            if done {
                break;
            }
        }
        for (group, bucket) in touched {
            self.drop_bucket_if_empty(group, bucket).await?;
        }
        Ok(())
    }

    /// Removes a bucket's index row if the bucket holds no message; an index row rewritten
    /// after the check (a message sent meanwhile) is newer than the delete and stays.
    async fn drop_bucket_if_empty(&self, group: Uuid, bucket: i64) -> StoreResult<()> {
        let written: Option<(Option<i64>,)> = self
            .db
            .maybe_row(
                &self.st.group_bucket_written,
                (group, bucket),
                "group_message_buckets",
            )
            .await?;
        let Some((Some(written),)) = written else {
            return Ok(());
        };
        let any: Option<(i64,)> = self
            .db
            .maybe_row(
                &self.st.group_message_last,
                (group, bucket),
                "group_messages",
            )
            .await?;
        if any.is_none() {
            self.db
                .execute(&self.st.group_bucket_delete, (written, group, bucket))
                .await?;
        }
        Ok(())
    }

    async fn sweep_group_dedupe(&self, now: Millis) -> StoreResult<()> {
        let mut scan = self
            .db
            .scan::<GroupDedupeRow>(&self.st.scan_group_dedupe, "group_dedupe")
            .await?;
        loop {
            let (expired, done) = scan
                .next_chunk(
                    SWEEP_CHUNK,
                    |(group, sender, sender_device, id, expires_at, written)| {
                        (u64_from_cql(expires_at) <= now).then_some((
                            written,
                            group,
                            sender,
                            sender_device,
                            id,
                        ))
                    },
                )
                .await?;
            self.db
                .execute_all(&self.st.group_dedupe_delete, expired)
                .await?;
            if done {
                return Ok(());
            }
        }
    }

    /// Receipts whose message went by TTL (or was swept before they were written).
    async fn sweep_receipts(&self, now: Millis) -> StoreResult<()> {
        let mut scan = self
            .db
            .scan::<ReceiptsRow>(&self.st.scan_receipts, "group_receipts")
            .await?;
        loop {
            let (expired, done) = scan
                .next_chunk(SWEEP_CHUNK, |(group, seq, expires_at)| {
                    expires_at
                        .is_none_or(|at| u64_from_cql(at) <= now)
                        .then_some((group, seq))
                })
                .await?;
            self.db
                .execute_all(&self.st.receipts_delete, expired)
                .await?;
            if done {
                return Ok(());
            }
        }
    }
}
