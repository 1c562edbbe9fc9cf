//! The two halves of the business restart check, for backends that can reopen their data.

use serde::{Deserialize, Serialize};

use super::*;
use crate::business::RecordKey;

const TABLE: &str = "reopen";
const PARTITION: &str = "biz";
const OUTBOX: &str = "outbox/reopen";
const EMPTIED: &str = "webhooks/reopen";

fn record(key: &str) -> RecordKey {
    RecordKey::new(TABLE, PARTITION, key)
}

/// What [`write_business_before_reopen`] wrote, for [`check_business_after_reopen`]
/// (serializable, so that a writer that is then killed can report it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusinessBeforeReopen {
    /// The seqs left on the outbox queue, oldest first.
    pub outbox: Vec<u64>,
    /// The highest seq the emptied queue ever had.
    pub emptied_last: u64,
}

/// Writes records and queues, removing part of one queue and all of another; then the caller
/// restarts the backend and calls [`check_business_after_reopen`].
pub async fn write_business_before_reopen(store: &dyn BusinessStore) -> BusinessBeforeReopen {
    store.put_record(&record("put"), bytes("v1")).await.unwrap();
    store
        .put_record(&record("replaced"), bytes("old"))
        .await
        .unwrap();
    store
        .put_record(&record("replaced"), bytes("new"))
        .await
        .unwrap();
    assert!(
        store
            .insert_record(&record("inserted"), bytes("ins"))
            .await
            .unwrap()
    );
    store
        .put_record(&record("deleted"), bytes("gone"))
        .await
        .unwrap();
    store.delete_record(&record("deleted")).await.unwrap();

    let until = T0 + 30 * 24 * HOUR;
    let items = vec![
        item("o1"),
        unique_item("o2", "u2", until),
        item("o3"),
        unique_item("o4", "u4", until),
        item("o5"),
    ];
    let seqs = new_seqs(&store.append(OUTBOX, items, T0).await.unwrap());
    store.remove(OUTBOX, &[seqs[0], seqs[3]]).await.unwrap();
    let emptied = append_values(store, EMPTIED, &["w1", "w2", "w3"]).await;
    store.remove(EMPTIED, &emptied).await.unwrap();
    BusinessBeforeReopen {
        outbox: vec![seqs[1], seqs[2], seqs[4]],
        emptied_last: emptied[2],
    }
}

/// Checks that everything [`write_business_before_reopen`] wrote is there after the restart,
/// and that seqs and unique keys carry on where they were.
pub async fn check_business_after_reopen(store: &dyn BusinessStore, before: &BusinessBeforeReopen) {
    let listed = store
        .list_records(TABLE, PARTITION, None, usize::MAX)
        .await
        .unwrap();
    assert_eq!(
        listed,
        vec![
            ("inserted".to_owned(), bytes("ins")),
            ("put".to_owned(), bytes("v1")),
            ("replaced".to_owned(), bytes("new")),
        ],
        "records survive, a deleted one stays deleted"
    );
    assert_eq!(store.get_record(&record("deleted")).await.unwrap(), None);
    assert!(
        !store
            .insert_record(&record("inserted"), bytes("x"))
            .await
            .unwrap(),
        "an inserted record stays inserted"
    );

    let read = read_all(store, OUTBOX).await;
    assert_eq!(seqs(&read), before.outbox, "items not removed survive");
    assert_eq!(values(&read), vec!["o2", "o3", "o5"]);
    let until = T0 + 30 * 24 * HOUR;
    let outcomes = store
        .append(
            OUTBOX,
            vec![
                unique_item("o2 again", "u2", until),
                unique_item("o4 again", "u4", until),
                item("o6"),
            ],
            T0 + 1,
        )
        .await
        .unwrap();
    assert_eq!(
        outcomes[..2],
        [Appended::Duplicate, Appended::Duplicate],
        "unique keys survive"
    );
    let [Appended::New(next)] = outcomes[2..] else {
        panic!("a plain item is new: {outcomes:?}");
    };
    assert!(
        next > before.outbox[2],
        "seqs are never reused across a restart"
    );
    let after_empty = append_values(store, EMPTIED, &["w4"]).await;
    assert!(
        after_empty[0] > before.emptied_last,
        "an emptied queue keeps its next seq across a restart"
    );
}
