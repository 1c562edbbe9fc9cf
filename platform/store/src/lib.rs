//! Storage for the platform: accounts, devices, keys, verification codes and device queues.
//!
//! Layout:
//! - [`Store`] (this file): the trait every backend implements; the server holds an
//!   `Arc<dyn Store>` chosen by configuration through [`open`].
//! - [`model`]: the records a store keeps (metadata and ciphertext only).
//! - [`error`]: [`StoreError`], the one error type of this layer.
//! - [`embedded`]: the default backend on the embedded `fjall` engine, on local disk.
//! - [`conformance`]: the test suite every backend passes (`conformance_tests!`).
//!
//! Contracts every backend keeps (checked by the conformance suite):
//! - a write that returned `Ok` survives a crash of the process (`kill -9`);
//! - queue sequence numbers increase strictly per device and are never reused;
//! - a one-time prekey is handed out at most once, even under concurrent takes;
//! - a verification code is consumed by its first successful check;
//! - entries expire at their `expires_at`, whether or not anyone reads them.

pub mod conformance;
pub mod embedded;
pub mod error;
pub mod model;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use courier_protocol::http::{OneTimePreKey, SignedPreKey};
use courier_protocol::{DeviceAddress, PhoneNumber, UserId};

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

    /// Deletes expired queue entries and de-duplication records; returns how many entries went.
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
