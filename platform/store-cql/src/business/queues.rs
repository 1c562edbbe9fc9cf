//! Business queues in `business_queues`, one partition per queue: appends as one conditional
//! batch, reads from the head, removals at the write time of what they remove.

use std::collections::{BTreeSet, HashMap, HashSet};

use bytes::Bytes;
use courier_store::business::{Appended, QueueItem, QueuedItem};
use courier_store::rules::unique_key_holds;
use courier_store::{Millis, StoreError, StoreResult};
use futures_util::future::{try_join, try_join_all};
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};

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

/// The partition key of a queue: its name behind a '/' (CQL refuses an empty partition key,
/// and `""` names a queue).
pub(crate) fn queue_partition(queue: &str) -> String {
    format!("/{queue}")
}

/// The meta row of a queue partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct QueueMeta {
    /// `next_seq` as stored: `None` for a queue never appended to. An append's transaction
    /// is conditional on exactly this value.
    stored_next: Option<i64>,
    /// No item has a seq below the head (1 if never moved).
    head: u64,
}

impl QueueMeta {
    /// The next seq to allocate.
    fn next(&self) -> u64 {
        self.stored_next.map_or(1, u64_from_cql).max(1)
    }
}

/// One statement of an append's conditional batch.
#[derive(Clone, Debug, PartialEq, Eq)]
enum AppendWrite {
    /// Moves `next_seq` on, if it is still what the append read.
    TakeSeqs {
        expected: Option<i64>,
        next: u64,
    },
    Item {
        seq: u64,
        value: Bytes,
    },
    /// Records a key the queue has not seen (`IF NOT EXISTS`).
    RecordKey {
        key: String,
        until: Millis,
    },
    /// Records again an expired key, if it is still recorded with `read`.
    RenewKey {
        key: String,
        until: Millis,
        read: Millis,
    },
}

/// What an append does, given what the queue holds.
#[derive(Debug, PartialEq, Eq)]
struct AppendPlan {
    outcomes: Vec<Appended>,
    /// Empty when nothing is appended (every item a duplicate).
    writes: Vec<AppendWrite>,
}

/// Plans an append on a queue whose meta row is `meta` and whose recorded unique keys
/// (among those of `items`) are `recorded`, with their `unique_until`.
fn plan_append(
    queue: &str,
    items: &[QueueItem],
    now: Millis,
    meta: QueueMeta,
    recorded: &HashMap<String, Millis>,
) -> StoreResult<AppendPlan> {
    let first = meta.next();
    let mut next = first;
    let mut seen: HashSet<&str> = HashSet::new();
    let mut outcomes = Vec::with_capacity(items.len());
    let mut writes = Vec::new();
    for item in items {
        if let Some(unique) = &item.unique {
            // A repeat within the call is a duplicate of the first, whatever became of it.
            if !seen.insert(unique.key.as_str()) {
                outcomes.push(Appended::Duplicate);
                continue;
            }
            match recorded.get(&unique.key) {
                Some(&until) if unique_key_holds(until, now) => {
                    outcomes.push(Appended::Duplicate);
                    continue;
                }
                Some(&read) => writes.push(AppendWrite::RenewKey {
                    key: unique.key.clone(),
                    until: unique.unique_until,
                    read,
                }),
                None => writes.push(AppendWrite::RecordKey {
                    key: unique.key.clone(),
                    until: unique.unique_until,
                }),
            }
        }
        let seq = next;
        next = next
            .checked_add(1)
            .ok_or_else(|| StoreError::Invalid(format!("queue {queue:?} is out of seqs")))?;
        writes.push(AppendWrite::Item {
            seq,
            value: item.value.clone(),
        });
        outcomes.push(Appended::New(seq));
    }
    if next != first {
        seq_to_cql(next, "seq")?;
        writes.insert(
            0,
            AppendWrite::TakeSeqs {
                expected: meta.stored_next,
                next,
            },
        );
    }
    Ok(AppendPlan { outcomes, writes })
}

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

#[cfg(test)]
mod tests {
    use courier_store::business::UniqueKey;

    use super::*;

    fn item(value: &'static str, key: Option<(&str, Millis)>) -> QueueItem {
        QueueItem {
            value: Bytes::from_static(value.as_bytes()),
            unique: key.map(|(key, unique_until)| UniqueKey {
                key: key.to_owned(),
                unique_until,
            }),
        }
    }

    const NEW_QUEUE: QueueMeta = QueueMeta {
        stored_next: None,
        head: 1,
    };

    #[test]
    fn a_new_queue_starts_at_one_and_takes_its_seqs_conditionally() {
        let plan = plan_append(
            "q",
            &[item("a", None), item("b", Some(("k", 10)))],
            0,
            NEW_QUEUE,
            &HashMap::new(),
        )
        .unwrap();
        assert_eq!(plan.outcomes, vec![Appended::New(1), Appended::New(2)]);
        assert_eq!(
            plan.writes,
            vec![
                AppendWrite::TakeSeqs {
                    expected: None,
                    next: 3
                },
                AppendWrite::Item {
                    seq: 1,
                    value: Bytes::from_static(b"a")
                },
                AppendWrite::RecordKey {
                    key: "k".into(),
                    until: 10
                },
                AppendWrite::Item {
                    seq: 2,
                    value: Bytes::from_static(b"b")
                },
            ]
        );
    }

    #[test]
    fn recorded_keys_are_duplicates_until_they_expire() {
        let meta = QueueMeta {
            stored_next: Some(7),
            head: 3,
        };
        let recorded = HashMap::from([("held".to_owned(), 100), ("expired".to_owned(), 50)]);
        let items = [
            item("1", Some(("held", 200))),
            item("2", Some(("expired", 200))),
            item("3", Some(("expired", 300))),
        ];
        let plan = plan_append("q", &items, 50, meta, &recorded).unwrap();
        assert_eq!(
            plan.outcomes,
            vec![Appended::Duplicate, Appended::New(7), Appended::Duplicate],
            "held until 100 at 50; expired at 50 (exclusive); a repeat in the call"
        );
        assert_eq!(
            plan.writes[..2],
            [
                AppendWrite::TakeSeqs {
                    expected: Some(7),
                    next: 8
                },
                AppendWrite::RenewKey {
                    key: "expired".into(),
                    until: 200,
                    read: 50
                },
            ]
        );
    }

    #[test]
    fn an_append_of_duplicates_only_writes_nothing() {
        let recorded = HashMap::from([("k".to_owned(), 100)]);
        let plan = plan_append(
            "q",
            &[item("1", Some(("k", 100))), item("2", Some(("k", 100)))],
            0,
            NEW_QUEUE,
            &recorded,
        )
        .unwrap();
        assert_eq!(plan.outcomes, vec![Appended::Duplicate; 2]);
        assert!(plan.writes.is_empty());
    }

    #[test]
    fn seqs_beyond_the_cql_range_are_refused() {
        let meta = QueueMeta {
            stored_next: Some(i64::MAX),
            head: 1,
        };
        let plan = plan_append("q", &[item("a", None)], 0, meta, &HashMap::new());
        assert!(matches!(plan, Err(StoreError::Invalid(_))), "{plan:?}");
    }

    #[test]
    fn queue_partitions_are_never_empty() {
        assert_eq!(queue_partition(""), "/");
        assert_eq!(queue_partition("outbox/1"), "/outbox/1");
    }
}
