//! Business queues in `business_queues`, one partition per queue: appends as one conditional
//! batch, reads from the head, removals at the write time of what they remove.

use std::collections::{BTreeSet, HashMap, HashSet};

use bytes::Bytes;
use courier_store::business::{Appended, QueueItem, QueuedItem};
use courier_store::{Millis, StoreError, StoreResult};
use futures_util::future::{try_join, try_join_all};
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};

use super::plan::{AppendWrite, QueueMeta, plan_append, queue_partition};
use crate::CqlStore;
use crate::layout::{backstop_ttl, seq_to_cql, u64_from_cql, u64_to_cql, wall_clock_ms};
use crate::write::{Phase, WriteSet, partition_of};

/// Most items one read of a queue asks for.
const READ_PAGE: usize = 1000;

/// Most seqs or unique keys in one `IN` list.
const IN_LIST: usize = 100;

/// How often an append re-reads and retries after losing its transaction to another
/// process's append on the same queue.
const MAX_APPEND_ATTEMPTS: usize = 16;

type BoxedValues = Box<dyn SerializeRow + Send + Sync>;

impl CqlStore {
    /// The meta row of a queue; `serial` sees the outcome of every transaction so far.
    async fn business_queue_meta(&self, partition: &str, serial: bool) -> StoreResult<QueueMeta> {
        let statement = if serial {
            &self.st.bq_meta_get_serial
        } else {
            &self.st.bq_meta_get
        };
        let row: Option<(Option<i64>, Option<i64>)> = self
            .db
            .maybe_row(statement, (partition,), "business_queues")
            .await?;
        let (stored_next, head) = row.unwrap_or((None, None));
        Ok(QueueMeta {
            stored_next,
            head: head.map_or(1, u64_from_cql).max(1),
        })
    }

    /// The recorded `unique_until` of those of `keys` the queue has recorded.
    async fn recorded_unique_keys(
        &self,
        partition: &str,
        keys: &[&str],
        serial: bool,
    ) -> StoreResult<HashMap<String, Millis>> {
        let statement = if serial {
            &self.st.bq_unique_get_serial
        } else {
            &self.st.bq_unique_get
        };
        let pages = try_join_all(keys.chunks(IN_LIST).map(|chunk| {
            self.db
                .rows::<(String, i64)>(statement, (partition, chunk.to_vec()), "business_queues")
        }))
        .await?;
        Ok(pages
            .into_iter()
            .flatten()
            .map(|(key, until)| (key, u64_from_cql(until)))
            .collect())
    }

    /// Reads the queue, plans, and commits the plan as one conditional batch; when another
    /// process's append won the transaction, reads again (at `SERIAL`) and plans anew.
    pub(crate) async fn append_impl(
        &self,
        queue: &str,
        items: Vec<QueueItem>,
        now: Millis,
    ) -> StoreResult<Vec<Appended>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let partition = queue_partition(queue);
        let mut keys: Vec<&str> = Vec::new();
        let mut seen = HashSet::new();
        for unique in items.iter().filter_map(|item| item.unique.as_ref()) {
            if seen.insert(unique.key.as_str()) {
                keys.push(unique.key.as_str());
            }
        }
        let _queue = self.locks.business_queues.lock(&partition).await;
        for attempt in 0..MAX_APPEND_ATTEMPTS {
            let serial = attempt > 0;
            let (meta, recorded) = try_join(
                self.business_queue_meta(&partition, serial),
                self.recorded_unique_keys(&partition, &keys, serial),
            )
            .await?;
            let plan = plan_append(queue, &items, now, meta, &recorded)?;
            if plan.writes.is_empty() {
                return Ok(plan.outcomes);
            }
            let (batch, values) = self.append_batch(&partition, plan.writes)?;
            if self.db.lwt_batch(&batch, values, "business_queues").await? {
                return Ok(plan.outcomes);
            }
        }
        Err(StoreError::Unavailable(format!(
            "queue {queue:?}: {MAX_APPEND_ATTEMPTS} appends in a row lost to concurrent ones"
        )))
    }

    /// The conditional batch of an append's writes.
    fn append_batch(
        &self,
        partition: &str,
        writes: Vec<AppendWrite>,
    ) -> StoreResult<(Batch, Vec<BoxedValues>)> {
        let wall = wall_clock_ms();
        let mut batch = Batch::new(BatchType::Logged);
        let mut values: Vec<BoxedValues> = Vec::with_capacity(writes.len());
        let partition = partition.to_owned();
        for write in writes {
            match write {
                AppendWrite::TakeSeqs { expected, next } => {
                    batch.append_statement(self.st.bq_take_seqs.clone());
                    values.push(Box::new((
                        seq_to_cql(next, "seq")?,
                        partition.clone(),
                        expected,
                    )));
                }
                AppendWrite::Item { seq, value } => {
                    batch.append_statement(self.st.bq_item_put.clone());
                    values.push(Box::new((
                        partition.clone(),
                        seq_to_cql(seq, "seq")?,
                        value,
                    )));
                }
                AppendWrite::RecordKey { key, until } => {
                    batch.append_statement(self.st.bq_unique_record.clone());
                    values.push(Box::new((
                        partition.clone(),
                        key,
                        u64_to_cql(until),
                        backstop_ttl(until, wall),
                    )));
                }
                AppendWrite::RenewKey { key, until, read } => {
                    batch.append_statement(self.st.bq_unique_renew.clone());
                    values.push(Box::new((
                        backstop_ttl(until, wall),
                        u64_to_cql(until),
                        partition.clone(),
                        key,
                        u64_to_cql(read),
                    )));
                }
            }
        }
        // A lost answer leaves the outcome unknown: never retried blindly.
        batch.set_is_idempotent(false);
        Ok((batch, values))
    }

    pub(crate) async fn read_business_queue_impl(
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
        let partition = queue_partition(queue);
        let meta = self.business_queue_meta(&partition, false).await?;
        let mut from = first.max(meta.head);
        while items.len() < limit {
            // Seqs beyond i64::MAX are never allocated.
            let Ok(from_cql) = i64::try_from(from) else {
                break;
            };
            let want = (limit - items.len()).min(READ_PAGE);
            let rows: Vec<(i64, Bytes)> = self
                .db
                .rows(
                    &self.st.bq_items_read,
                    (&partition, from_cql, want as i32),
                    "business_queues",
                )
                .await?;
            let got = rows.len();
            for (seq, value) in rows {
                let seq = u64_from_cql(seq);
                from = seq + 1;
                items.push(QueuedItem { seq, value });
            }
            if got < want {
                break;
            }
        }
        Ok(items)
    }

    /// Deletes the items of `seqs` that are there, each `USING TIMESTAMP` of the write that
    /// made it (so whatever the clocks, the delete is not older than the item), then moves
    /// the head on.
    pub(crate) async fn remove_impl(&self, queue: &str, seqs: &[u64]) -> StoreResult<()> {
        let wanted: BTreeSet<i64> = seqs
            .iter()
            .filter(|&&seq| seq >= 1)
            .filter_map(|&seq| i64::try_from(seq).ok())
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let partition = queue_partition(queue);
        let _queue = self.locks.business_queues.lock(&partition).await;
        let meta = self.business_queue_meta(&partition, false).await?;
        // Below the head, everything is removed already.
        let wanted: Vec<i64> = wanted
            .into_iter()
            .filter(|&seq| u64_from_cql(seq) >= meta.head)
            .collect();
        let pages = try_join_all(wanted.chunks(IN_LIST).map(|chunk| {
            self.db.rows::<(i64, Option<i64>)>(
                &self.st.bq_items_written,
                (&partition, chunk.to_vec()),
                "business_queues",
            )
        }))
        .await?;
        let mut writes = WriteSet::default();
        let group = partition_of("business_queues", &partition);
        for (seq, written) in pages.into_iter().flatten() {
            let Some(written) = written else { continue };
            writes.push(
                Phase::Data,
                group,
                &self.st.bq_item_delete,
                (written, partition.clone(), seq),
                partition.len(),
            );
        }
        writes.apply(&self.db).await?;
        self.advance_head(&partition, meta).await
    }

    /// Moves the head to the first item at or after it (or, when there is none, to the next
    /// seq as read in `meta`, before the removal: anything appended since is at or above it).
    /// A lost race only leaves the head behind, never past an item.
    async fn advance_head(&self, partition: &str, meta: QueueMeta) -> StoreResult<()> {
        let first: Option<(i64,)> = self
            .db
            .maybe_row(
                &self.st.bq_first_item,
                (partition, seq_to_cql(meta.head, "seq")?),
                "business_queues",
            )
            .await?;
        let head = first.map_or(meta.next(), |(seq,)| u64_from_cql(seq));
        if head <= meta.head {
            return Ok(());
        }
        self.db
            .execute(&self.st.bq_set_head, (seq_to_cql(head, "seq")?, partition))
            .await
            .map(drop)
    }
}
