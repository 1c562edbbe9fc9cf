//! The conformance suite: the behaviour every [`Store`] backend shows.
//!
//! Each case is a public async function that takes a fresh, empty store and panics on a
//! violation. [`conformance_tests!`](crate::conformance_tests) expands to one `#[tokio::test]`
//! per case, given a factory: an async fn (or closure returning a future) that yields
//! `(Arc<dyn Store>, guard)`, where the guard keeps whatever backs the store alive (a temporary
//! directory, a keyspace to drop) until the test ends.
//!
//! ```ignore
//! async fn fresh_store() -> (Arc<dyn Store>, tempfile::TempDir) { /* ... */ }
//!
//! mod conformance {
//!     courier_store::conformance_tests!(super::fresh_store);
//! }
//! ```
//!
//! The calling crate needs `tokio` (features `macros`, `rt-multi-thread`) as a (dev-)dependency.
//! Tests run on a multi-threaded runtime so that the concurrent cases really race.
//!
//! Restarts cannot be expressed by a factory of fresh stores: a backend that can reopen its
//! data calls [`write_before_reopen`], reopens, then calls [`check_after_reopen`].
//!
//! Layout: `codes`, `accounts`, `keys`, `queues`, `groups` hold the cases by concern, `restarts` the
//! two halves of the restart check; this file the macro and the fixtures they share.
//! [`business`] is the suite of [`BusinessStore`](crate::BusinessStore), with its own macro
//! (`business_conformance_tests!`) and restart halves.
//!
//! This module is compiled in every build (it is how other crates test their backends), so it
//! uses no test-only dependency.

mod accounts;
pub mod business;
mod codes;
mod groups;
mod keys;
mod queues;
mod restarts;

use bytes::Bytes;
use courier_protocol::http::{IdentityKeys, OneTimePreKey, SignedPreKey};
use courier_protocol::{DeviceAddress, PhoneNumber};

use crate::Store;
use crate::model::*;

pub use self::accounts::*;
pub use self::codes::*;
pub use self::groups::*;
pub use self::keys::*;
pub use self::queues::*;
pub use self::restarts::*;

/// Expands to one `#[tokio::test]` per conformance case, each on a fresh store from `$factory`.
#[macro_export]
macro_rules! conformance_tests {
    (@cases $factory:expr; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = ($factory)().await;
                $crate::conformance::$case(store).await;
            }
        )+
    };
    ($factory:expr) => {
        $crate::conformance_tests!(@cases $factory;
            a_valid_code_is_consumed,
            wrong_guesses_count_down_and_burn_the_code,
            codes_expire,
            issuing_is_rate_limited_per_window,
            a_new_code_replaces_the_pending_one,
            register_creates_an_account_with_device_one,
            reregister_keeps_the_user_and_replaces_the_devices,
            concurrent_registrations_of_one_phone_share_one_account,
            last_seen_and_its_visibility,
            device_keys_are_set_replaced_and_rotated,
            no_bundle_for_a_device_without_keys,
            one_time_prekeys_are_counted_and_taken_once,
            concurrent_takes_hand_out_each_prekey_once,
            enqueue_assigns_increasing_seqs_per_device,
            enqueue_is_all_or_nothing,
            seqs_are_not_reused_after_the_queue_empties,
            duplicates_are_recognised_by_sender_device_and_id,
            ack_removes_exactly_up_to_and_is_idempotent,
            read_queue_paginates,
            expired_entries_are_skipped_and_swept,
            concurrent_enqueues_get_distinct_contiguous_seqs,
            groups_are_put_read_and_replaced,
            invite_codes_follow_their_group,
            last_group_message_seq_is_the_highest_stored,
            group_messages_are_stored_once_and_queued_per_device,
            group_duplicates_are_recognised_by_sender_device_and_id,
            group_message_seq_finds_sent_messages,
            group_messages_expire,
            group_receipts_keep_the_first_time_of_each_kind,
            expired_group_data_is_swept,
            group_enqueue_is_all_or_nothing,
            one_group_body_serves_every_device,
            concurrent_group_and_direct_enqueues_share_the_seqs,
        );
    };
}

// ---- fixtures ---------------------------------------------------------------------------------

/// A fixed "now" for the suite (stores take time from the caller).
pub const T0: Millis = 1_700_000_000_000;
pub(crate) const DAY: u64 = 86_400_000;

pub(crate) fn phone(n: u32) -> PhoneNumber {
    PhoneNumber::parse(&format!("+1555{n:07}")).expect("a valid test phone number")
}

pub(crate) fn policy() -> IssuePolicy {
    IssuePolicy {
        ttl_ms: 600_000,
        max_per_window: 5,
        window_ms: 3_600_000,
    }
}

pub(crate) async fn register(store: &dyn Store, n: u32) -> Registration {
    store
        .register(&phone(n), "phone", [n as u8; 32], T0)
        .await
        .expect("register")
}

pub(crate) fn signed_prekey(id: u32) -> SignedPreKey {
    SignedPreKey {
        id,
        public_key: vec![id as u8; 32],
        signature: vec![0xa5; 64],
    }
}

pub(crate) fn device_keys(tag: u8) -> DeviceKeys {
    DeviceKeys {
        identity: IdentityKeys {
            ed25519: vec![tag; 32],
            x25519: vec![tag.wrapping_add(1); 32],
        },
        signed_prekey: signed_prekey(u32::from(tag)),
    }
}

pub(crate) fn one_time_prekey(id: u32) -> OneTimePreKey {
    OneTimePreKey {
        id,
        public_key: id.to_be_bytes().repeat(8),
    }
}

pub(crate) fn entry(payload: &str, dedupe: Option<(DeviceAddress, &str)>) -> NewEntry {
    NewEntry {
        dedupe: dedupe.map(|(sender, id)| (sender, id.to_owned())),
        enqueued_at: T0,
        expires_at: T0 + 30 * DAY,
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    }
}

pub(crate) fn expiring(payload: &str, expires_at: Millis) -> NewEntry {
    NewEntry {
        expires_at,
        ..entry(payload, None)
    }
}

/// The seqs of outcomes that must all be `Queued`.
pub(crate) fn queued(outcomes: &[EnqueueOutcome]) -> Vec<u64> {
    outcomes
        .iter()
        .map(|outcome| match outcome {
            EnqueueOutcome::Queued { seq } => *seq,
            EnqueueOutcome::Duplicate { seq } => panic!("unexpected duplicate of seq {seq}"),
        })
        .collect()
}

pub(crate) async fn enqueue_one(
    store: &dyn Store,
    to: DeviceAddress,
    entry: NewEntry,
) -> EnqueueOutcome {
    let outcomes = store.enqueue(vec![(to, entry)]).await.expect("enqueue");
    assert_eq!(outcomes.len(), 1, "one outcome per entry");
    outcomes[0]
}

pub(crate) async fn read_all(
    store: &dyn Store,
    device: DeviceAddress,
    now: Millis,
) -> Vec<QueuedEntry> {
    store
        .read_queue(device, 0, usize::MAX, now)
        .await
        .expect("read_queue")
}

pub(crate) fn seqs(entries: &[QueuedEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

pub(crate) fn payloads(entries: &[QueuedEntry]) -> Vec<&[u8]> {
    entries.iter().map(|e| &e.payload[..]).collect()
}
