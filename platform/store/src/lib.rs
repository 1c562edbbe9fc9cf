//! Storage for the platform: accounts, devices, keys, verification codes, device queues and
//! groups.
//!
//! Layout:
//! - [`Store`] (this file): the trait every backend implements; the server holds an
//!   `Arc<dyn Store>` chosen by configuration through [`open`].
//! - [`business`]: [`BusinessStore`], the storage of the business API (opaque records and
//!   ordered queues with unique keys), implemented by every backend beside [`Store`].
//! - [`model`]: the records a store keeps (metadata and ciphertext only).
//! - [`error`]: [`StoreError`], the one error type of this layer.
//! - [`rules`]: contract rules every backend applies the same way (issuing window, invite
//!   codes, receipt times).
//! - [`embedded`]: the default backend on the embedded `fjall` engine, on local disk.
//! - [`conformance`]: the test suite every backend passes (`conformance_tests!`).
//!
//! Contracts every backend keeps (checked by the conformance suite):
//! - a write that returned `Ok` survives a crash of the process (`kill -9`);
//! - queue sequence numbers increase strictly per device and are never reused;
//! - a one-time prekey is handed out at most once, even under concurrent takes;
//! - a verification code is consumed by its first successful check;
//! - entries expire at their `expires_at`, whether or not anyone reads them;
//! - a group message's body is stored once, however many device queues reference it.

pub mod business;
pub mod conformance;
pub mod embedded;
pub mod error;
pub mod model;
pub mod rules;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use courier_protocol::http::{OneTimePreKey, SignedPreKey};
use courier_protocol::{DeviceAddress, GroupId, PhoneNumber, UserId};

pub use business::BusinessStore;
pub use error::{StoreError, StoreResult};
pub use model::*;

/// The storage of the platform. Implementations are cheap to share (`Arc<dyn Store>`).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ---- verification codes -----------------------------------------------------------------

    /// Records a new code for `phone`, replacing any pending one, unless `policy` forbids another
    /// code this soon.
    async fn issue_code(
        &self,
        phone: &PhoneNumber,
        code: &str,
        now: Millis,
        policy: IssuePolicy,
    ) -> StoreResult<IssueOutcome>;

    /// Checks a guess. A valid code is consumed; `max_attempts` wrong guesses burn the code.
    async fn check_code(
        &self,
        phone: &PhoneNumber,
        guess: &str,
        now: Millis,
        max_attempts: u32,
    ) -> StoreResult<CodeCheck>;

    /// The pending, unexpired code of `phone`, for operators (admin API).
    async fn pending_code(
        &self,
        phone: &PhoneNumber,
        now: Millis,
    ) -> StoreResult<Option<VerificationCode>>;

    // ---- accounts and devices ---------------------------------------------------------------

    /// Creates the account of `phone` with one device, or, if it exists, keeps its user id and
    /// replaces all its devices by a new one (with a device id never used before in the account).
    /// The replaced devices lose their keys and queues.
    async fn register(
        &self,
        phone: &PhoneNumber,
        device_name: &str,
        credential_hash: [u8; 32],
        now: Millis,
    ) -> StoreResult<Registration>;

    async fn account(&self, user: UserId) -> StoreResult<Option<Account>>;

    async fn account_by_phone(&self, phone: &PhoneNumber) -> StoreResult<Option<Account>>;

    /// The current devices of a user, ordered by device id.
    async fn devices(&self, user: UserId) -> StoreResult<Vec<Device>>;

    async fn device(&self, address: DeviceAddress) -> StoreResult<Option<Device>>;

    /// `Invalid` for an unknown user.
    async fn set_last_seen_visible(&self, user: UserId, visible: bool) -> StoreResult<()>;

    /// `Invalid` for an unknown user.
    async fn set_last_seen(&self, user: UserId, at: Millis) -> StoreResult<()>;

    // ---- keys -------------------------------------------------------------------------------

    /// Sets the identity and signed prekey of a device (replacing earlier ones); `Invalid` for
    /// an unknown device.
    async fn set_device_keys(&self, address: DeviceAddress, keys: DeviceKeys) -> StoreResult<()>;

    /// The identity and signed prekey of a device; `None` before it uploaded them.
    async fn device_keys(&self, address: DeviceAddress) -> StoreResult<Option<DeviceKeys>>;

    /// Replaces only the signed prekey (rotation); `Invalid` if the device has no keys yet.
    async fn set_signed_prekey(
        &self,
        address: DeviceAddress,
        signed_prekey: SignedPreKey,
    ) -> StoreResult<()>;

    /// Adds one-time prekeys; a key with an id already present replaces it. `Invalid` for an
    /// unknown device.
    async fn add_one_time_prekeys(
        &self,
        address: DeviceAddress,
        keys: Vec<OneTimePreKey>,
    ) -> StoreResult<()>;

    async fn count_one_time_prekeys(&self, address: DeviceAddress) -> StoreResult<u64>;

    /// The device's keys with one one-time prekey removed from the store (if any remain).
    /// `None` if the device has not uploaded keys (its one-time prekeys are then left alone).
    async fn take_key_bundle(&self, address: DeviceAddress) -> StoreResult<Option<KeyBundle>>;

    // ---- device queues ----------------------------------------------------------------------

    /// Appends entries to device queues, all or nothing. Outcomes come in the order of `entries`.
    /// A dedupe key is a duplicate while an earlier record of it has `expires_at` after this
    /// entry's `enqueued_at`, even once that entry was acknowledged; repeats inside one call
    /// are duplicates of the first.
    async fn enqueue(
        &self,
        entries: Vec<(DeviceAddress, NewEntry)>,
    ) -> StoreResult<Vec<EnqueueOutcome>>;

    /// Up to `limit` unexpired entries (`expires_at > now`) with `seq > after`, oldest first.
    async fn read_queue(
        &self,
        address: DeviceAddress,
        after: u64,
        limit: usize,
        now: Millis,
    ) -> StoreResult<Vec<QueuedEntry>>;

    /// Removes every entry with `seq <= up_to` (one range, not one delete per row). Idempotent;
    /// entries queued later are not affected, whatever their seq.
    async fn ack_queue(&self, address: DeviceAddress, up_to: u64) -> StoreResult<()>;

    /// Number of entries on a device queue (expired ones not yet swept may be counted).
    async fn queue_len(&self, address: DeviceAddress) -> StoreResult<u64>;

    /// How many entries all device queues hold together (expired ones not yet swept included).
    /// May scan every queue: for the queue-depth gauge at start-up and after sweeps, not for
    /// hot paths.
    async fn count_queued_entries(&self) -> StoreResult<u64>;

    // ---- groups -----------------------------------------------------------------------------

    /// Writes a group record whole (its group actor is the only writer) and keeps the invite
    /// index in step: the record's code resolves to the group, an earlier code no longer does
    /// (whether it was replaced or revoked with `invite_code: None`). Atomic.
    ///
    /// `Invalid`, and nothing written, for an empty invite code, one longer than
    /// [`MAX_INVITE_CODE_BYTES`], or one that is the current code of another group (the caller
    /// draws a new code): a code resolves to exactly one group.
    async fn put_group(&self, group: GroupRecord) -> StoreResult<()>;

    async fn group(&self, id: GroupId) -> StoreResult<Option<GroupRecord>>;

    /// The group whose current invite code is `code`; `None` for a replaced, revoked or unknown
    /// code.
    async fn group_by_invite(&self, code: &str) -> StoreResult<Option<GroupId>>;

    /// The highest message sequence number stored for the group (0 if none, or all expired).
    /// This takes no `now`: an expired message counts until [`sweep_expired`](Self::sweep_expired)
    /// removes it. Once every message of the group is swept it is 0 again, so numbering from it
    /// restarts at 1; a seq is only reused after its body, dedupe record and receipts are gone.
    async fn last_group_message_seq(&self, group: GroupId) -> StoreResult<u64>;

    /// Stores a group message's `body` once under `message_seq` and appends `entries` (small
    /// references to it) to member device queues, all atomically. If `sender` (device, client
    /// message id) already sent a message to this group, nothing is written and that message's
    /// sequence number comes back as `Duplicate`. The body and its receipts expire at
    /// `expires_at`.
    ///
    /// - `entries` are queued exactly as [`enqueue`](Self::enqueue) queues them: the same
    ///   per-device seqs, their own dedupe keys checked the same way, outcomes in their order.
    /// - The earlier message is a duplicate while its `expires_at` is after this send's time,
    ///   the earliest `enqueued_at` of `entries` (with no entries: until it is swept). The same
    ///   client message id from another device of the sender is another message.
    /// - `Invalid`, and nothing written, for `message_seq` 0, a `message_seq` the group already
    ///   has (until swept), a body the backend cannot hold, or a client message id (the
    ///   sender's or an entry's) longer than [`MAX_CLIENT_MESSAGE_ID_BYTES`].
    /// - The store checks neither that the group exists nor that `entries` go to its members:
    ///   its group actor does.
    async fn enqueue_group_message(
        &self,
        group: GroupId,
        message_seq: u64,
        sender: (DeviceAddress, String),
        body: Bytes,
        expires_at: Millis,
        entries: Vec<(DeviceAddress, NewEntry)>,
    ) -> StoreResult<GroupEnqueueOutcome>;

    /// The body of a stored group message; `None` if unknown or expired at `now`.
    async fn group_message(
        &self,
        group: GroupId,
        message_seq: u64,
        now: Millis,
    ) -> StoreResult<Option<Bytes>>;

    /// The sequence number of the message `sender` sent to `group` with `client_message_id`,
    /// while its de-duplication record is stored (until swept after the message expired).
    /// `None` for an id longer than [`MAX_CLIENT_MESSAGE_ID_BYTES`] (none can be stored).
    async fn group_message_seq(
        &self,
        group: GroupId,
        sender: DeviceAddress,
        client_message_id: &str,
    ) -> StoreResult<Option<u64>>;

    /// Records that `user` received or read a group message; the first time of each kind stays.
    ///
    /// - The earliest non-zero time of each kind is kept, so repeated and late receipts change
    ///   nothing, in whatever order they arrive (`at` 0 records nothing).
    /// - A `Read` also records delivery (reading implies it): `delivered_at` becomes the earlier
    ///   of itself and `at`, so `delivered_at <= read_at` whenever `read_at` is set.
    /// - Ignored (`Ok`, nothing written) for a message that is unknown or expired at `at`: a
    ///   receipt expires with its message and takes its `expires_at`.
    /// - Membership is not checked (the group actor does).
    async fn record_group_receipt(
        &self,
        group: GroupId,
        message_seq: u64,
        user: UserId,
        kind: GroupReceiptKind,
        at: Millis,
    ) -> StoreResult<()>;

    /// The receipts recorded for a group message, one per member that gave any, ordered by
    /// user id; empty for an unknown message. Kept until swept with their message.
    async fn group_receipts(
        &self,
        group: GroupId,
        message_seq: u64,
    ) -> StoreResult<Vec<GroupReceiptRecord>>;

    /// Deletes expired queue entries, de-duplication records, group messages, group
    /// de-duplication records and group receipts; returns how many queue entries went (the
    /// other records are not counted).
    async fn sweep_expired(&self, now: Millis) -> StoreResult<u64>;
}

/// Which backend to open, from configuration.
#[derive(Clone, Debug)]
pub enum StoreConfig {
    /// The embedded engine in a local directory.
    Embedded {
        path: PathBuf,
        durability: embedded::Durability,
    },
}

/// Opens the configured backend.
pub async fn open(config: &StoreConfig) -> StoreResult<Arc<dyn Store>> {
    match config {
        StoreConfig::Embedded { path, durability } => {
            Ok(Arc::new(embedded::EmbeddedStore::open(path, *durability)?))
        }
    }
}
