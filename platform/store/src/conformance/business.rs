//! The conformance suite of [`BusinessStore`]: the behaviour every backend of the business API's
//! storage shows.
//!
//! Each case is a public async function that takes a fresh, empty store and panics on a
//! violation. [`business_conformance_tests!`](crate::business_conformance_tests) expands to one
//! `#[tokio::test]` per case, given a factory that yields `(Arc<dyn BusinessStore>, guard)`
//! (the guard keeps whatever backs the store alive until the test ends), exactly like
//! [`conformance_tests!`](crate::conformance_tests):
//!
//! ```ignore
//! async fn fresh_store() -> (Arc<dyn BusinessStore>, tempfile::TempDir) { /* ... */ }
//!
//! mod business_conformance {
//!     courier_store::business_conformance_tests!(super::fresh_store);
//! }
//! ```
//!
//! Restarts: a backend that can reopen its data calls [`write_business_before_reopen`],
//! reopens, then calls [`check_business_after_reopen`].
//!
//! Layout: `records` (records: writes, inserts, listing, isolation, limits), `queues` (seqs,
//! reads, removals, isolation, limits), `unique` (unique keys: duplicates, races, expiry,
//! sweeps), `restarts` (the two halves of the restart check); this file the macro and the
//! fixtures they share.

mod queues;
mod records;
mod restarts;
mod unique;

use bytes::Bytes;

pub use self::queues::*;
pub use self::records::*;
pub use self::restarts::*;
pub use self::unique::*;
use crate::business::{Appended, BusinessStore, QueueItem, QueuedItem, UniqueKey};
use crate::model::Millis;

pub use super::T0;

/// Expands to one `#[tokio::test]` per business conformance case, each on a fresh store from
/// `$factory`.
#[macro_export]
macro_rules! business_conformance_tests {
    (@cases $factory:expr; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = ($factory)().await;
                $crate::conformance::business::$case(store).await;
            }
        )+
    };
    ($factory:expr) => {
        $crate::business_conformance_tests!(@cases $factory;
            records_are_put_read_replaced_and_deleted,
            insert_record_creates_a_record_once,
            concurrent_inserts_create_a_record_once,
            records_are_listed_in_key_order,
            listing_pages_with_after,
            partitions_and_tables_are_isolated,
            record_names_over_the_limit_are_invalid,
            append_assigns_strictly_increasing_seqs,
            append_is_all_or_nothing,
            seqs_are_not_reused_after_the_queue_empties,
            read_queue_pages_after_and_limit,
            removed_items_are_gone_and_the_rest_stays,
            queues_are_isolated,
            queue_names_over_the_limit_are_invalid,
            long_queues_are_read_whole,
            concurrent_appends_get_distinct_increasing_seqs,
            unique_keys_keep_later_duplicates_out,
            repeats_within_one_call_are_duplicates_of_the_first,
            concurrent_appends_of_one_key_append_it_once,
            expired_unique_keys_admit_the_item_again,
            sweep_unique_forgets_expired_keys_and_counts_them,
        );
    };
}

// ---- fixtures ---------------------------------------------------------------------------------

pub(crate) const HOUR: u64 = 3_600_000;

pub(crate) fn bytes(value: &str) -> Bytes {
    Bytes::copy_from_slice(value.as_bytes())
}

/// An item without a unique key.
pub(crate) fn item(value: &str) -> QueueItem {
    QueueItem {
        value: bytes(value),
        unique: None,
    }
}

/// An item whose `key` keeps duplicates out until `unique_until`.
pub(crate) fn unique_item(value: &str, key: &str, unique_until: Millis) -> QueueItem {
    QueueItem {
        value: bytes(value),
        unique: Some(UniqueKey {
            key: key.to_owned(),
            unique_until,
        }),
    }
}

/// The seqs of outcomes that must all be `New`.
pub(crate) fn new_seqs(outcomes: &[Appended]) -> Vec<u64> {
    outcomes
        .iter()
        .map(|outcome| match outcome {
            Appended::New(seq) => *seq,
            Appended::Duplicate => panic!("unexpected duplicate in {outcomes:?}"),
        })
        .collect()
}

/// Appends without a unique key and returns the seqs.
pub(crate) async fn append_values(
    store: &dyn BusinessStore,
    queue: &str,
    values: &[&str],
) -> Vec<u64> {
    let items = values.iter().map(|v| item(v)).collect();
    let outcomes = store.append(queue, items, T0).await.expect("append");
    assert_eq!(outcomes.len(), values.len(), "one outcome per item");
    new_seqs(&outcomes)
}

pub(crate) async fn read_all(store: &dyn BusinessStore, queue: &str) -> Vec<QueuedItem> {
    store
        .read_queue(queue, 0, usize::MAX)
        .await
        .expect("read_queue")
}

pub(crate) fn seqs(items: &[QueuedItem]) -> Vec<u64> {
    items.iter().map(|i| i.seq).collect()
}

pub(crate) fn values(items: &[QueuedItem]) -> Vec<String> {
    items
        .iter()
        .map(|i| String::from_utf8_lossy(&i.value).into_owned())
        .collect()
}

pub(crate) fn strictly_increasing(seqs: &[u64]) -> bool {
    seqs.windows(2).all(|w| w[0] < w[1])
}

pub(crate) fn is_invalid<T: std::fmt::Debug>(result: &crate::StoreResult<T>) -> bool {
    matches!(result, Err(crate::StoreError::Invalid(_)))
}
