//! [`BusinessStore`] on the cluster: records in `business_records`, queues in
//! `business_queues` (tables in `schema`). Names are checked by `courier_store::rules` before
//! anything is read or written; values are blobs.
//!
//! Layout: `records` (puts, inserts, reads, listing), `queues` (appends, reads, removals),
//! `plan` (what an append does, from what the queue holds); the unique-key sweep is in
//! `sweep`; this file only dispatches.
//!
//! # How each contract is kept
//! - **Durability**: like every write of the crate, a write (plain, batch or the commit of a
//!   lightweight transaction) returns `Ok` once the configured consistency's replicas hold it.
//! - **Records** live in one partition per `(table, partition)`, the key as clustering column
//!   (text compares bytewise, so listing is in key order). Puts and deletes are plain writes;
//!   [`BusinessStore::insert_record`] is `INSERT ... IF NOT EXISTS`, so of racing inserts in any
//!   number of processes one applies (inserts of one key in one process also take its stripe,
//!   queueing instead of contending in Paxos).
//! - **Queues** live in one partition per queue: a meta row (seq -1) with `next_seq`, the
//!   recorded unique keys (seq 0) and the items (seq from 1). An append reads the meta row and
//!   the keys of its items, decides each item's outcome, then commits everything as **one
//!   conditional batch** on that partition, a single lightweight transaction:
//!   `UPDATE next_seq = n + k IF next_seq = n` (null for a new queue), the `k` items at seqs
//!   `n..n + k`, a new key `INSERT ... IF NOT EXISTS`, an expired one `UPDATE ... IF
//!   unique_until = <as read>`. It applies whole or not at all, its conditions checked at the
//!   moment of its writes. When it does not apply, another process appended in between
//!   (appends in this process queue on the queue's stripe): the append reads again at
//!   `SERIAL` and plans anew.
//!   - *Seqs increase strictly and are never reused*: they are only taken from `next_seq`
//!     through that condition, and nothing lowers or deletes `next_seq` (removals delete
//!     item rows, never the meta row or the partition), so an emptied queue, a new session
//!     or another process carries on above every seq ever taken.
//!   - *All or nothing*: one transaction. If the process or the coordinator dies during it,
//!     a proposal that was accepted but not committed is either lost or completed, whole, by
//!     the next transaction or `SERIAL` read on the partition before that decides anything.
//!     The caller then got an error and does not know whether the append happened; a retry
//!     of items with unique keys finds them recorded if it did.
//!   - *A unique key is checked and recorded atomically with its item*: its condition and its
//!     row are in the item's transaction. An item is a duplicate when its key was recorded,
//!     and held, at the read that planned the append. Key rows get a TTL until a day after
//!     `unique_until` by the wall clock (`layout::backstop_ttl`); before that,
//!     [`BusinessStore::sweep_unique`] deletes what the caller's clock says expired.
//! - **Removals** read the write time of the items asked for and delete each `USING
//!   TIMESTAMP` of it. An item row is written once (seqs are never reused), so this removes
//!   exactly that item however the client's clock and the Paxos coordinator's differ, and a
//!   seq that is not there (unknown, removed, never taken) gets no tombstone that could hide
//!   a later item. Then the meta row's `head_seq` moves to the first item left, and reads start
//!   there: a queue read from the start does not walk over the tombstones of what was removed
//!   before its oldest item, and the meta row and the keys are point reads that walk over
//!   none. (Tombstones between remaining items are read over until compaction purges them: a
//!   queue whose oldest item stays while thousands behind it are removed reads more slowly.)
//!
//! # Clocks
//! A lightweight transaction writes with the timestamp of its Paxos ballot (the coordinator's
//! clock), a plain write with the client's monotonic one. Queues never mix the two on one row
//! (removals use the item's own write time). Records do, when a put or delete follows an
//! insert of the same key, or an insert follows a delete: those are ordered as the crate docs
//! require of hand-overs, by hosts whose clocks agree to well within the time between the two
//! calls. The business API does this only when claiming a name (a phone number, a template)
//! and undoing or updating the claim.

mod plan;
mod queues;
mod records;

use async_trait::async_trait;
use bytes::Bytes;
use courier_store::business::{Appended, BusinessStore, QueueItem, QueuedItem, RecordKey};
use courier_store::rules::{check_append, check_queue_name, check_record_key, check_record_name};
use courier_store::{Millis, StoreResult};

use crate::CqlStore;

#[async_trait]
impl BusinessStore for CqlStore {
    async fn put_record(&self, key: &RecordKey, value: Bytes) -> StoreResult<()> {
        check_record_key(key)?;
        self.put_record_impl(key, value).await
    }

    async fn insert_record(&self, key: &RecordKey, value: Bytes) -> StoreResult<bool> {
        check_record_key(key)?;
        self.insert_record_impl(key, value).await
    }

    async fn get_record(&self, key: &RecordKey) -> StoreResult<Option<Bytes>> {
        check_record_key(key)?;
        self.get_record_impl(key).await
    }

    async fn delete_record(&self, key: &RecordKey) -> StoreResult<()> {
        check_record_key(key)?;
        self.delete_record_impl(key).await
    }

    async fn list_records(
        &self,
        table: &str,
        partition: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Bytes)>> {
        check_record_name("table name", table)?;
        check_record_name("partition", partition)?;
        self.list_records_impl(table, partition, after, limit).await
    }

    async fn append(
        &self,
        queue: &str,
        items: Vec<QueueItem>,
        now: Millis,
    ) -> StoreResult<Vec<Appended>> {
        // Checked before anything is read: a refused append writes nothing.
        check_append(queue, &items)?;
        self.append_impl(queue, items, now).await
    }

    async fn read_queue(
        &self,
        queue: &str,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<QueuedItem>> {
        check_queue_name("queue name", queue)?;
        self.read_business_queue_impl(queue, after, limit).await
    }

    async fn remove(&self, queue: &str, seqs: &[u64]) -> StoreResult<()> {
        check_queue_name("queue name", queue)?;
        self.remove_impl(queue, seqs).await
    }

    async fn sweep_unique(&self, now: Millis) -> StoreResult<u64> {
        self.sweep_business_unique_impl(now).await
    }
}
