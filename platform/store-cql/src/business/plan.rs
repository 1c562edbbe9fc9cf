//! What an append does, decided from what the queue holds: pure, so that it is tested without
//! a cluster. `queues` reads the queue, plans and commits the plan.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use courier_store::business::{Appended, QueueItem};
use courier_store::rules::unique_key_holds;
use courier_store::{Millis, StoreError, StoreResult};

use crate::layout::{seq_to_cql, u64_from_cql};

/// The partition key of a queue: its name behind a '/' (CQL refuses an empty partition key,
/// and `""` names a queue).
pub(crate) fn queue_partition(queue: &str) -> String {
    format!("/{queue}")
}

/// The meta row of a queue partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QueueMeta {
    /// `next_seq` as stored: `None` for a queue never appended to. An append's transaction
    /// is conditional on exactly this value.
    pub stored_next: Option<i64>,
    /// No item has a seq below the head (1 if never moved).
    pub head: u64,
}

impl QueueMeta {
    /// The next seq to allocate.
    pub fn next(&self) -> u64 {
        self.stored_next.map_or(1, u64_from_cql).max(1)
    }
}

/// One statement of an append's conditional batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AppendWrite {
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
pub(crate) struct AppendPlan {
    pub outcomes: Vec<Appended>,
    /// Empty when nothing is appended (every item a duplicate).
    pub writes: Vec<AppendWrite>,
}

/// Plans an append on a queue whose meta row is `meta` and whose recorded unique keys
/// (among those of `items`) are `recorded`, with their `unique_until`.
pub(crate) fn plan_append(
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
