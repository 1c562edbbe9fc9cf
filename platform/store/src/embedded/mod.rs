//! The default backend: [`EmbeddedStore`], on the embedded `fjall` engine in one local directory.
//!
//! Layout:
//! - this file: [`EmbeddedStore`] and its [`Store`] implementation, which only
//!   decides where each operation runs;
//! - `business`: its [`BusinessStore`](crate::BusinessStore) implementation (records and
//!   queues of the business API), operations and dispatch together;
//! - `engine`: the database, its keyspaces and locks, and the write batch of every operation;
//! - `accounts`, `keys`, `queues`, `groups`: the operations, synchronous, on the engine;
//! - `sweep`: finding and removing expired records;
//! - `durability`: [`Durability`], parsed from configuration;
//! - `codec`: keys and values of every keyspace;
//! - `committer`: the group committer of [`Durability::Sync`].
//!
//! # Keyspaces
//! Numbers in keys are big-endian, so keys sort numerically. `device` is
//! [`DeviceAddress::to_key`] (user id, then device id: 20 bytes); `group` is the 16 bytes of
//! the [`GroupId`](courier_protocol::GroupId), `user` those of the [`UserId`].
//!
//! | keyspace | key | value |
//! |---|---|---|
//! | `accounts` | user id (16) | JSON: the [`Account`] and the next device id |
//! | `phones` | E.164 phone | user id (16) |
//! | `devices` | device | JSON [`Device`] |
//! | `device_keys` | device | JSON [`DeviceKeys`] |
//! | `prekeys` | device, prekey id (u32) | public key |
//! | `codes` | E.164 phone | JSON: pending code and issue times in the rate-limit window |
//! | `queue` | device, seq (u64) | `1`, `enqueued_at` (u64), `expires_at` (u64), payload |
//! | `queue_meta` | device | next seq (u64) |
//! | `dedupe` | recipient device, sender device, client message id | seq (u64), `expires_at` (u64) |
//! | `groups` | group | JSON [`GroupRecord`] |
//! | `group_invites` | invite code (UTF-8) | group (16) |
//! | `group_messages` | group, message seq (u64) | `1`, `expires_at` (u64), body |
//! | `group_dedupe` | group, sender device, client message id | message seq (u64), `expires_at` (u64) |
//! | `group_receipts` | group, message seq (u64), user (16) | `delivered_at`, `read_at`, `expires_at` (u64 each) |
//! | `business_records` | `name(table)`, `name(partition)`, record key | value |
//! | `business_queue` | `name(queue)`, seq (u64) | value |
//! | `business_queue_meta` | `name(queue)` | next seq (u64) |
//! | `business_unique` | `name(queue)`, unique key | `unique_until` (u64) |
//!
//! `name(x)` is the length of `x` (u16) and then its UTF-8 bytes: no name's encoding is a prefix
//! of another's, so a partition or queue `a` never sees the keys of `ab` or `a\0b`, whatever
//! bytes names hold; the last part of a key is left as it is, so a partition's records (and a
//! queue's unique keys) sort bytewise by key. A business queue's next seq stays in
//! `business_queue_meta` when the queue empties, so its seqs are never reused either.
//!
//! Sequence numbers are never reused: `queue_meta` keeps the next one even when the queue is
//! empty, and is written in the same batch as the entries. A device id is never reused in an
//! account: `accounts` keeps the next one. Re-registration deletes the old devices with their
//! keys, prekeys, queues and de-duplication records, in one batch (their `queue_meta` stays).
//!
//! A group message's body is stored once, in `group_messages`; each member device's queue gets
//! a small reference entry (its payload is whatever the caller built, typically the group id
//! and message seq), in the same batch as the body, the `group_dedupe` record and the
//! `queue_meta` updates. `group_invites` holds exactly the current code of each group:
//! `put_group` removes the previous code in the batch that writes the record. Group records
//! are kept until replaced; messages, their dedupe records and receipts expire together (a
//! receipt takes its message's `expires_at`).
//!
//! fjall has no range delete and no TTL: an acknowledgement deletes its range with one batch of
//! weak tombstones (queue keys are written exactly once), reads skip expired entries, and
//! [`Store::sweep_expired`] scans `queue`, `dedupe`, `group_messages`, `group_dedupe` and
//! `group_receipts` in chunks on the blocking thread pool (only `queue` gets weak tombstones:
//! the others may see a key written again). `BusinessStore::sweep_unique` sweeps
//! `business_unique` the same way; removed business queue items get weak tombstones too.
//!
//! # Durability
//! Every operation commits one atomic batch (across keyspaces) to fjall's journal.
//! - [`Durability::Process`]: each commit is written to the journal file, i.e. handed to the OS,
//!   before the call returns; no fsync. A write that returned `Ok` survives `kill -9` of the
//!   process, not a power loss or kernel crash.
//! - [`Durability::Sync`]: group commit (see `committer`): one thread runs every write and makes
//!   each group of writes in flight durable with one `fdatasync` before answering them. Survives
//!   power loss. A write is visible to readers slightly before it is durable (between its commit
//!   and the end of its group's sync), never acknowledged before.
//!
//! # Threads and atomicity
//! fjall calls are synchronous. Reads and, with `Process`, writes run inline in the async
//! methods: each is a few point reads or a short range scan plus one journal append, so it is
//! shorter than a thread hand-off would be. Writes with `Sync` run on the committer thread, so no
//! tokio worker waits on a sync; the sweep's scans run on the blocking pool. No lock is held
//! across an `.await`.
//!
//! Read-modify-write operations hold a `std` mutex from their first read to their commit: one
//! for queues (enqueue, ack, register, sweep: seq allocation and dedupe checks stay race-free),
//! one for keys (a one-time prekey is handed out at most once), one for codes, one for
//! accounts and one for groups (records and invites, group messages and their dedupe checks,
//! receipts, group sweeps). Two more guard the business keyspaces, each never held with
//! another: one for record writes, one for business queue appends and the unique-key sweep.
//! Held together, they are taken in the order accounts, keys, groups,
//! queues (a group message holds groups, then queues). Entries enqueued for a device after a re-registration removed it stay orphaned
//! (device ids are never reused) until they expire and are swept.

mod accounts;
mod business;
mod codec;
mod committer;
mod device_cache;
mod durability;
mod engine;
mod groups;
mod keys;
mod queues;
mod sweep;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use courier_protocol::http::{OneTimePreKey, SignedPreKey};
use courier_protocol::{DeviceAddress, GroupId, PhoneNumber, UserId};

pub use self::durability::{Durability, InvalidDurability};

use self::committer::GroupCommitter;
use self::engine::Engine;
use self::sweep::SweepTarget;
use crate::Store;
use crate::error::{StoreError, StoreResult};
use crate::model::*;

/// Records a sweep examines per step on the blocking pool (and at most removes per batch).
const SWEEP_CHUNK: usize = 4096;

/// The store on local disk. Dropping it closes the database (after the writes in flight).
pub struct EmbeddedStore {
    engine: Arc<Engine>,
    /// `Some` with [`Durability::Sync`]: every write goes through it.
    committer: Option<GroupCommitter>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in directory `path`. One process at a time may open it.
    pub fn open(path: &Path, durability: Durability) -> StoreResult<Self> {
        let engine = Arc::new(Engine::open(path, durability)?);
        let committer = match durability {
            Durability::Process => None,
            Durability::Sync => Some(GroupCommitter::start(engine.clone())?),
        };
        Ok(EmbeddedStore { engine, committer })
    }

    /// Journal syncs made so far: with `Sync`, one per group commit; 0 with `Process`.
    pub fn journal_syncs(&self) -> u64 {
        self.engine.syncs()
    }

    /// Runs a write: inline with `Process`, on the group committer with `Sync`.
    async fn write<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> StoreResult<T> + Send + 'static,
    {
        match &self.committer {
            Some(committer) => committer.submit(op).await,
            None => op(&self.engine),
        }
    }

    async fn sweep(&self, target: SweepTarget, now: Millis) -> StoreResult<u64> {
        let mut removed = 0;
        let mut resume_after = None;
        loop {
            let engine = self.engine.clone();
            let scan = tokio::task::spawn_blocking(move || {
                engine.scan_expired(target, resume_after, now, SWEEP_CHUNK)
            })
            .await
            .map_err(|e| StoreError::Unavailable(format!("sweep scan failed: {e}")))??;
            if !scan.expired.is_empty() {
                let keys = scan.expired;
                removed += self
                    .write(move |engine| engine.remove_expired(target, keys, now))
                    .await?;
            }
            match scan.resume_after {
                Some(key) => resume_after = Some(key),
                None => return Ok(removed),
            }
        }
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn issue_code(
        &self,
        phone: &PhoneNumber,
        code: &str,
        now: Millis,
        policy: IssuePolicy,
    ) -> StoreResult<IssueOutcome> {
        let (phone, code) = (phone.clone(), code.to_owned());
        self.write(move |e| e.issue_code(&phone, &code, now, policy))
            .await
    }

    async fn check_code(
        &self,
        phone: &PhoneNumber,
        guess: &str,
        now: Millis,
        max_attempts: u32,
    ) -> StoreResult<CodeCheck> {
        let (phone, guess) = (phone.clone(), guess.to_owned());
        self.write(move |e| e.check_code(&phone, &guess, now, max_attempts))
            .await
    }

    async fn pending_code(
        &self,
        phone: &PhoneNumber,
        now: Millis,
    ) -> StoreResult<Option<VerificationCode>> {
        self.engine.pending_code(phone, now)
    }

    async fn register(
        &self,
        phone: &PhoneNumber,
        device_name: &str,
        credential_hash: [u8; 32],
        now: Millis,
    ) -> StoreResult<Registration> {
        let (phone, name) = (phone.clone(), device_name.to_owned());
        self.write(move |e| e.register(&phone, &name, credential_hash, now))
            .await
    }

    async fn account(&self, user: UserId) -> StoreResult<Option<Account>> {
        self.engine.account(user)
    }

    async fn account_by_phone(&self, phone: &PhoneNumber) -> StoreResult<Option<Account>> {
        self.engine.account_by_phone(phone)
    }

    async fn devices(&self, user: UserId) -> StoreResult<Vec<Device>> {
        self.engine.devices(user)
    }

    async fn device(&self, address: DeviceAddress) -> StoreResult<Option<Device>> {
        self.engine.device(address)
    }

    async fn set_last_seen_visible(&self, user: UserId, visible: bool) -> StoreResult<()> {
        self.write(move |e| e.update_account(user, |a| a.last_seen_visible = visible))
            .await
    }

    async fn set_last_seen(&self, user: UserId, at: Millis) -> StoreResult<()> {
        self.write(move |e| e.update_account(user, |a| a.last_seen = at))
            .await
    }

    async fn set_device_keys(&self, address: DeviceAddress, keys: DeviceKeys) -> StoreResult<()> {
        self.write(move |e| e.set_device_keys(address, keys)).await
    }

    async fn set_signed_prekey(
        &self,
        address: DeviceAddress,
        signed_prekey: SignedPreKey,
    ) -> StoreResult<()> {
        self.write(move |e| e.set_signed_prekey(address, signed_prekey))
            .await
    }

    async fn add_one_time_prekeys(
        &self,
        address: DeviceAddress,
        keys: Vec<OneTimePreKey>,
    ) -> StoreResult<()> {
        self.write(move |e| e.add_one_time_prekeys(address, keys))
            .await
    }

    async fn device_keys(&self, address: DeviceAddress) -> StoreResult<Option<DeviceKeys>> {
        self.engine.device_keys(address)
    }

    async fn count_one_time_prekeys(&self, address: DeviceAddress) -> StoreResult<u64> {
        self.engine.count_one_time_prekeys(address)
    }

    async fn take_key_bundle(&self, address: DeviceAddress) -> StoreResult<Option<KeyBundle>> {
        self.write(move |e| e.take_key_bundle(address)).await
    }

    async fn enqueue(
        &self,
        entries: Vec<(DeviceAddress, NewEntry)>,
    ) -> StoreResult<Vec<EnqueueOutcome>> {
        self.write(move |e| e.enqueue(entries)).await
    }

    async fn read_queue(
        &self,
        address: DeviceAddress,
        after: u64,
        limit: usize,
        now: Millis,
    ) -> StoreResult<Vec<QueuedEntry>> {
        self.engine.read_queue(address, after, limit, now)
    }

    async fn ack_queue(&self, address: DeviceAddress, up_to: u64) -> StoreResult<()> {
        self.write(move |e| e.ack_queue(address, up_to)).await
    }

    async fn queue_len(&self, address: DeviceAddress) -> StoreResult<u64> {
        self.engine.queue_len(address)
    }

    async fn count_queued_entries(&self) -> StoreResult<u64> {
        let engine = Arc::clone(&self.engine);
        tokio::task::spawn_blocking(move || engine.ks.queue.len().map(|n| n as u64))
            .await
            .map_err(|e| StoreError::Unavailable(format!("count task failed: {e}")))?
            .map_err(StoreError::from)
    }

    async fn put_group(&self, group: GroupRecord) -> StoreResult<()> {
        self.write(move |e| e.put_group(group)).await
    }

    async fn group(&self, id: GroupId) -> StoreResult<Option<GroupRecord>> {
        self.engine.group(id)
    }

    async fn group_by_invite(&self, code: &str) -> StoreResult<Option<GroupId>> {
        self.engine.group_by_invite(code)
    }

    async fn last_group_message_seq(&self, group: GroupId) -> StoreResult<u64> {
        self.engine.last_group_message_seq(group)
    }

    async fn enqueue_group_message(
        &self,
        group: GroupId,
        message_seq: u64,
        sender: (DeviceAddress, String),
        body: Bytes,
        expires_at: Millis,
        entries: Vec<(DeviceAddress, NewEntry)>,
    ) -> StoreResult<GroupEnqueueOutcome> {
        self.write(move |e| {
            e.enqueue_group_message(group, message_seq, sender, body, expires_at, entries)
        })
        .await
    }

    async fn group_message(
        &self,
        group: GroupId,
        message_seq: u64,
        now: Millis,
    ) -> StoreResult<Option<Bytes>> {
        self.engine.group_message(group, message_seq, now)
    }

    async fn group_message_seq(
        &self,
        group: GroupId,
        sender: DeviceAddress,
        client_message_id: &str,
    ) -> StoreResult<Option<u64>> {
        self.engine
            .group_message_seq(group, sender, client_message_id)
    }

    async fn record_group_receipt(
        &self,
        group: GroupId,
        message_seq: u64,
        user: UserId,
        kind: GroupReceiptKind,
        at: Millis,
    ) -> StoreResult<()> {
        self.write(move |e| e.record_group_receipt(group, message_seq, user, kind, at))
            .await
    }

    async fn group_receipts(
        &self,
        group: GroupId,
        message_seq: u64,
    ) -> StoreResult<Vec<GroupReceiptRecord>> {
        self.engine.group_receipts(group, message_seq)
    }

    /// Sweeps every expiring keyspace; counts only the queue entries removed.
    async fn sweep_expired(&self, now: Millis) -> StoreResult<u64> {
        let mut queue_entries = 0;
        for target in SweepTarget::ALL {
            let removed = self.sweep(target, now).await?;
            if target == SweepTarget::Queue {
                queue_entries = removed;
            }
        }
        Ok(queue_entries)
    }
}
