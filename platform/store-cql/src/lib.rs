//! The storage backend for clusters: [`CqlStore`], a [`Store`] and a [`BusinessStore`] on
//! ScyllaDB (or Apache Cassandra 5) over CQL with the `scylla` driver. It passes the same
//! conformance suites as the embedded store.
//!
//! # Layout
//! - this file: [`CqlStore`], [`CqlStore::connect`] and the [`Store`] implementation, which
//!   only dispatches;
//! - `config`: [`CqlConfig`] and [`Consistency`];
//! - `schema`: the keyspace, the tables (one comment per table: partition key, clustering,
//!   why, expected size) and their migrations;
//! - `statements`: every statement, prepared once at connect;
//! - `db`: running statements (rows, lightweight transactions, scans);
//! - `write`: the writes of one operation, as one logged batch or in phases;
//! - `accounts`, `codes`, `keys`, `queues`, `groups`: the operations; `sweep`: expiry;
//! - `business`: the [`BusinessStore`] implementation (records and queues, and how each of
//!   its contracts is kept);
//! - `layout`: bucket and TTL arithmetic; `locks`: in-process per-key locks;
//! - `error`: where driver errors become [`StoreError`]s.
//!
//! # Schema
//! | table | partition key | clustering | holds |
//! |---|---|---|---|
//! | `accounts` | user | | account, next device id |
//! | `phones` | phone | | user id (claimed by LWT) |
//! | `devices`, `device_keys` | user | device id | device, its identity and signed prekey |
//! | `one_time_prekeys` | device | key id | public key (taken by LWT) |
//! | `codes` | phone | | pending code, rate-limit window (compare-and-set) |
//! | `queue_meta` | device | | next seq, acknowledged watermark |
//! | `queue` | device, seq / 4096 | seq | entries |
//! | `dedupe` | recipient device, sender device, client id | | seq, expiry |
//! | `groups` | group | | record (JSON), invite code |
//! | `group_invites` | code | | group (claimed by LWT) |
//! | `group_messages` | group, message seq / 1024 | message seq (desc) | body, expiry |
//! | `group_message_buckets` | group | bucket (desc) | which message buckets exist |
//! | `group_dedupe` | group, sender device, client id | | message seq, expiry |
//! | `group_receipts` | group, message seq | user, kind, time | receipts (insert-only) |
//! | `business_records` | table, partition | key | business record |
//! | `business_queues` | queue | seq, unique key | next seq and head, unique keys, items |
//!
//! Removed devices lose their devices and keys rows, prekeys and queue entries at once; the
//! dedupe records of their queues are left to expire (device ids are never reused, so nothing
//! reads them).
//!
//! `schema_migrations` records the applied migration versions, `schema_lock` is the lease one
//! node holds while migrating; [`CqlStore::connect`] creates the keyspace and migrates.
//!
//! # Single writer per device queue and per group
//! The cluster routes every write to a user's device queues through one process at a time (the
//! node owning the user's shard; ownership moves only after the old owner stopped), and every
//! write of a group through its group actor. So this store serializes per device (and per
//! group) with in-process locks and allocates seqs by reading `queue_meta` on every enqueue: no
//! seq is cached across calls, so a new owner continues where the old one stopped. The meta row
//! is written in the same logged batch as the entries, or before them when the batch is too
//! large, so a crash can leave a gap in the seqs, never a reuse. Writes carry client-side,
//! monotonic timestamps, so this process's successive writes to a row are ordered even if
//! coordinators' clocks differ (a new owner's clock must be ahead of the old owner's last
//! write: hosts synchronized to well within the hand-over time). Two processes writing one device queue at once would break
//! seq uniqueness: the single-writer rule is a precondition, not something the store detects.
//!
//! What must be exactly once whatever process asks uses lightweight transactions (at
//! `SERIAL`, or `LOCAL_SERIAL` with a datacenter): the first registration of a phone, device id
//! allocation, one-time prekey takes, code checks and issues, invite code claims.
//!
//! # Consistency
//! Every other read and write uses the configured consistency (`LOCAL_QUORUM` by default), so
//! a quorum read sees a quorum write, including across an ownership hand-over.
//!
//! # Deletes and tombstones
//! Acknowledgements never delete single rows: each deletes one range per bucket (`seq <= ?`,
//! a range tombstone that later ones supersede) or whole buckets (a partition tombstone), then
//! advances the watermark in `queue_meta`; reads start past the watermark, so they never walk
//! over acknowledged data. Re-registration removes devices with range tombstones.
//!
//! # Expiry and TTL
//! Times come from the caller (`expires_at`, "now"), so every read compares the stored
//! `expires_at` with the caller's now, and [`Store::sweep_expired`] scans and deletes what
//! expired (queue entries, dedupe records, group messages, their dedupe records and receipts).
//! Native TTLs are only a backstop that spares sweeps most of the work: a record gets the time
//! left until its `expires_at` by the wall clock plus a day, and no TTL at all when that moment
//! is already past by the wall clock or too far ahead (see `layout::backstop_ttl`). Sweeps
//! delete with `USING TIMESTAMP` of the record they saw, so a record rewritten meanwhile stays.
//!
//! # Atomicity
//! An operation's writes go as one logged batch when they fit under the cluster's batch size
//! limit (about 40 KiB); larger ones (big payloads, group messages to thousands of devices) are
//! written in phases (seq reservations, then entries and bodies, then the dedupe records that
//! make a retry a duplicate): not atomic under a crash, but an entry is never lost once a
//! dedupe record points to it. Validation (client message id lengths,
//! message seqs, invite codes) happens before anything is written.

mod accounts;
mod business;
mod codes;
mod config;
mod db;
mod error;
mod groups;
mod keys;
mod layout;
mod locks;
mod queues;
mod schema;
mod statements;
mod sweep;
mod write;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use courier_protocol::http::{OneTimePreKey, SignedPreKey};
use courier_protocol::{DeviceAddress, GroupId, PhoneNumber, UserId};
use courier_store::*;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;

pub use self::config::{Consistency, CqlConfig, InvalidConsistency};
pub use self::schema::data_tables;

use self::db::Db;
use self::locks::Locks;
use self::statements::Statements;

/// The store on a ScyllaDB or Cassandra cluster. Cheap to share (`Arc<dyn Store>`); one per
/// process is enough (the driver pools connections).
pub struct CqlStore {
    db: Db,
    st: Statements,
    locks: Locks,
}

impl CqlStore {
    /// Connects, creates the keyspace if missing, migrates the schema and prepares every
    /// statement. `Unavailable` if the cluster cannot be reached.
    pub async fn connect(config: &CqlConfig) -> StoreResult<CqlStore> {
        let mut policy = DefaultPolicy::builder().token_aware(true);
        if let Some(dc) = &config.datacenter {
            policy = policy
                .prefer_datacenter(dc.clone())
                .permit_dc_failover(false);
        }
        let profile = ExecutionProfile::builder()
            .consistency(config.consistency.to_driver())
            .serial_consistency(Some(config.serial_consistency()))
            .request_timeout(Some(config.request_timeout))
            .load_balancing_policy(policy.build())
            .build();
        let session = SessionBuilder::new()
            .known_nodes(&config.contact_points)
            .connection_timeout(config.request_timeout)
            .default_execution_profile_handle(profile.into_handle())
            .timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()))
            .keyspaces_to_fetch([config.keyspace.clone()])
            .build()
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot connect to the cluster at {}: {e}",
                    config.contact_points.join(", ")
                ))
            })?;
        schema::prepare_keyspace(&session, config).await?;
        let st = Statements::prepare(&session, config).await?;
        Ok(CqlStore {
            db: Db {
                session: Arc::new(session),
            },
            st,
            locks: Locks::new(),
        })
    }
}

#[async_trait]
impl Store for CqlStore {
    async fn issue_code(
        &self,
        phone: &PhoneNumber,
        code: &str,
        now: Millis,
        policy: IssuePolicy,
    ) -> StoreResult<IssueOutcome> {
        self.issue_code_impl(phone, code, now, policy).await
    }

    async fn check_code(
        &self,
        phone: &PhoneNumber,
        guess: &str,
        now: Millis,
        max_attempts: u32,
    ) -> StoreResult<CodeCheck> {
        self.check_code_impl(phone, guess, now, max_attempts).await
    }

    async fn pending_code(
        &self,
        phone: &PhoneNumber,
        now: Millis,
    ) -> StoreResult<Option<VerificationCode>> {
        self.pending_code_impl(phone, now).await
    }

    async fn register(
        &self,
        phone: &PhoneNumber,
        device_name: &str,
        credential_hash: [u8; 32],
        now: Millis,
    ) -> StoreResult<Registration> {
        self.register_impl(phone, device_name, credential_hash, now)
            .await
    }

    async fn account(&self, user: UserId) -> StoreResult<Option<Account>> {
        self.account_impl(user).await
    }

    async fn account_by_phone(&self, phone: &PhoneNumber) -> StoreResult<Option<Account>> {
        match self.phone_owner(phone).await? {
            Some(user) => self.account_impl(user).await,
            None => Ok(None),
        }
    }

    async fn devices(&self, user: UserId) -> StoreResult<Vec<Device>> {
        self.devices_impl(user).await
    }

    async fn device(&self, address: DeviceAddress) -> StoreResult<Option<Device>> {
        self.device_impl(address).await
    }

    async fn set_last_seen_visible(&self, user: UserId, visible: bool) -> StoreResult<()> {
        self.require_account(user).await?;
        self.db
            .execute(&self.st.account_set_visible, (visible, user.0))
            .await
            .map(drop)
    }

    async fn set_last_seen(&self, user: UserId, at: Millis) -> StoreResult<()> {
        self.require_account(user).await?;
        self.db
            .execute(
                &self.st.account_set_last_seen,
                (layout::u64_to_cql(at), user.0),
            )
            .await
            .map(drop)
    }

    async fn set_device_keys(&self, address: DeviceAddress, keys: DeviceKeys) -> StoreResult<()> {
        self.set_device_keys_impl(address, keys).await
    }

    async fn device_keys(&self, address: DeviceAddress) -> StoreResult<Option<DeviceKeys>> {
        self.device_keys_impl(address).await
    }

    async fn set_signed_prekey(
        &self,
        address: DeviceAddress,
        signed_prekey: SignedPreKey,
    ) -> StoreResult<()> {
        self.set_signed_prekey_impl(address, signed_prekey).await
    }

    async fn add_one_time_prekeys(
        &self,
        address: DeviceAddress,
        keys: Vec<OneTimePreKey>,
    ) -> StoreResult<()> {
        self.add_one_time_prekeys_impl(address, keys).await
    }

    async fn count_one_time_prekeys(&self, address: DeviceAddress) -> StoreResult<u64> {
        self.count_one_time_prekeys_impl(address).await
    }

    async fn take_key_bundle(&self, address: DeviceAddress) -> StoreResult<Option<KeyBundle>> {
        self.take_key_bundle_impl(address).await
    }

    async fn enqueue(
        &self,
        entries: Vec<(DeviceAddress, NewEntry)>,
    ) -> StoreResult<Vec<EnqueueOutcome>> {
        self.enqueue_impl(entries).await
    }

    async fn read_queue(
        &self,
        address: DeviceAddress,
        after: u64,
        limit: usize,
        now: Millis,
    ) -> StoreResult<Vec<QueuedEntry>> {
        self.read_queue_impl(address, after, limit, now).await
    }

    async fn ack_queue(&self, address: DeviceAddress, up_to: u64) -> StoreResult<()> {
        self.ack_queue_impl(address, up_to).await
    }

    async fn queue_len(&self, address: DeviceAddress) -> StoreResult<u64> {
        self.queue_len_impl(address).await
    }

    async fn count_queued_entries(&self) -> StoreResult<u64> {
        self.count_queued_entries_impl().await
    }

    async fn put_group(&self, group: GroupRecord) -> StoreResult<()> {
        self.put_group_impl(group).await
    }

    async fn group(&self, id: GroupId) -> StoreResult<Option<GroupRecord>> {
        self.group_impl(id).await
    }

    async fn group_by_invite(&self, code: &str) -> StoreResult<Option<GroupId>> {
        self.group_by_invite_impl(code).await
    }

    async fn last_group_message_seq(&self, group: GroupId) -> StoreResult<u64> {
        self.last_group_message_seq_impl(group).await
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
        self.enqueue_group_message_impl(group, message_seq, sender, body, expires_at, entries)
            .await
    }

    async fn group_message(
        &self,
        group: GroupId,
        message_seq: u64,
        now: Millis,
    ) -> StoreResult<Option<Bytes>> {
        self.group_message_impl(group, message_seq, now).await
    }

    async fn group_message_seq(
        &self,
        group: GroupId,
        sender: DeviceAddress,
        client_message_id: &str,
    ) -> StoreResult<Option<u64>> {
        self.group_message_seq_impl(group, sender, client_message_id)
            .await
    }

    async fn record_group_receipt(
        &self,
        group: GroupId,
        message_seq: u64,
        user: UserId,
        kind: GroupReceiptKind,
        at: Millis,
    ) -> StoreResult<()> {
        self.record_group_receipt_impl(group, message_seq, user, kind, at)
            .await
    }

    async fn group_receipts(
        &self,
        group: GroupId,
        message_seq: u64,
    ) -> StoreResult<Vec<GroupReceiptRecord>> {
        self.group_receipts_impl(group, message_seq).await
    }

    async fn sweep_expired(&self, now: Millis) -> StoreResult<u64> {
        self.sweep_expired_impl(now).await
    }
}
