//! Storage of the business API: [`BusinessStore`].
//!
//! The business API (the `courier-business` crate) keeps businesses, their phone numbers,
//! access tokens, templates, the delegated device state of each number, an outbox of accepted
//! API messages and the pending webhooks. It encrypts every value before it reaches the store,
//! so this trait deals in opaque bytes, in two shapes:
//!
//! - **Records**: a value under `(table, partition, key)`. Reads, writes and deletes address one
//!   record; listing walks one partition in key order. Tables are a small fixed set of names
//!   chosen by the business layer; a partition is what is listed together (the tokens of a
//!   business, the templates of a business), so that a CQL backend keeps each list in one
//!   partition.
//! - **Queues**: ordered by a sequence number per queue (`outbox/<number>`,
//!   `webhooks/<app>`, `dead/<app>`), appended in batches, read in order after a seq, and removed
//!   entry by entry (webhooks for different conversations finish out of order). An appended item
//!   may carry a unique key: an item whose key the queue has already seen (and whose uniqueness
//!   has not expired) is not appended again, which is how a redelivered consumer message makes
//!   no second webhook.
//!
//! Contracts every backend keeps (checked by [`crate::conformance::business`]):
//! - a write that returned `Ok` survives a crash of the process;
//! - an append is all or nothing, its seqs increase strictly per queue and are never reused,
//!   even after the queue was emptied or the store reopened;
//! - a unique key is checked and recorded in the same atomic step as its item's append: a key
//!   is appended at most once until `unique_until`, even under concurrent appends;
//! - [`BusinessStore::insert_record`] creates a record at most once, even under concurrent
//!   inserts.

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::StoreResult;
use crate::model::Millis;

/// Longest table name, partition or key, in bytes; longer ones are `Invalid`.
pub const MAX_RECORD_NAME_BYTES: usize = 512;
/// Longest queue name or unique key, in bytes; longer ones are `Invalid`.
pub const MAX_QUEUE_NAME_BYTES: usize = 512;

/// The address of a record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    pub table: String,
    pub partition: String,
    pub key: String,
}

impl RecordKey {
    pub fn new(
        table: impl Into<String>,
        partition: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        RecordKey {
            table: table.into(),
            partition: partition.into(),
            key: key.into(),
        }
    }
}

/// One item to append to a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueItem {
    pub value: Bytes,
    /// If set, the item is appended only if no earlier item of this queue had the same key
    /// with `unique_until` after `now`.
    pub unique: Option<UniqueKey>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UniqueKey {
    pub key: String,
    /// Until when the key keeps a second item out (the store may forget it after that).
    pub unique_until: Millis,
}

/// What became of one appended item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Appended under this seq.
    New(u64),
    /// Its unique key was seen before; nothing appended.
    Duplicate,
}

/// A queued item with its sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedItem {
    pub seq: u64,
    pub value: Bytes,
}

/// The storage of the business API. Implementations are cheap to share
/// (`Arc<dyn BusinessStore>`).
#[async_trait]
pub trait BusinessStore: Send + Sync + 'static {
    // ---- records ----------------------------------------------------------------------------

    /// Writes a record, replacing any earlier value.
    async fn put_record(&self, key: &RecordKey, value: Bytes) -> StoreResult<()>;

    /// Writes a record only if none exists under its key; `true` if it was written.
    async fn insert_record(&self, key: &RecordKey, value: Bytes) -> StoreResult<bool>;

    async fn get_record(&self, key: &RecordKey) -> StoreResult<Option<Bytes>>;

    /// Deletes a record; `Ok` whether or not it existed.
    async fn delete_record(&self, key: &RecordKey) -> StoreResult<()>;

    /// Up to `limit` records of one partition with keys after `after` (all if `None`), in key
    /// order (bytewise), as `(key, value)`.
    async fn list_records(
        &self,
        table: &str,
        partition: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Bytes)>>;

    // ---- queues -----------------------------------------------------------------------------

    /// Appends `items` to `queue`, all or nothing; outcomes come in the order of `items`.
    /// Repeats of a unique key within one call are duplicates of the first.
    async fn append(
        &self,
        queue: &str,
        items: Vec<QueueItem>,
        now: Millis,
    ) -> StoreResult<Vec<Appended>>;

    /// Up to `limit` items with `seq > after`, oldest first.
    async fn read_queue(
        &self,
        queue: &str,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<QueuedItem>>;

    /// Removes these items (unknown seqs are ignored). Their unique keys stay recorded until
    /// they expire.
    async fn remove(&self, queue: &str, seqs: &[u64]) -> StoreResult<()>;

    /// Forgets unique keys whose `unique_until` is at or before `now`; returns how many went.
    async fn sweep_unique(&self, now: Millis) -> StoreResult<u64>;
}
