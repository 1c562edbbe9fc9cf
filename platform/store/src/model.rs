//! Records kept by a store. Everything here is metadata or ciphertext: a store never holds a
//! message, media file or call key in the clear.

use bytes::Bytes;
use courier_protocol::http::{IdentityKeys, OneTimePreKey, SignedPreKey};
use courier_protocol::{DeviceAddress, DeviceId, PhoneNumber, UserId};
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch. Stores take "now" from the caller so that time-dependent
/// behaviour (expiry, rate limits) is testable without sleeping.
pub type Millis = u64;

/// An account: one phone number, one user id that survives re-registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub user_id: UserId,
    pub phone: PhoneNumber,
    pub created_at: Millis,
    /// Whether others may see this user's last-seen time; `true` for a new account.
    pub last_seen_visible: bool,
    /// When a device of this user was last connected; 0 if never.
    pub last_seen: Millis,
}

/// A device and the hash of its credential (the password itself is never stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub address: DeviceAddress,
    pub name: String,
    /// SHA-256 of the device password (a 32-byte random secret, so no slow hash is needed).
    pub credential_hash: [u8; 32],
    pub created_at: Millis,
}

/// The public keys a device publishes for X3DH, except one-time prekeys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceKeys {
    pub identity: IdentityKeys,
    pub signed_prekey: SignedPreKey,
}

/// A pending verification code of a phone number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationCode {
    pub code: String,
    pub expires_at: Millis,
    /// Wrong guesses so far.
    pub attempts: u32,
}

/// Limits applied when a code is issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IssuePolicy {
    /// How long a code stays valid.
    pub ttl_ms: u64,
    /// At most this many codes per number within `window_ms`.
    pub max_per_window: u32,
    pub window_ms: u64,
}

/// Result of [`Store::issue_code`](crate::Store::issue_code).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IssueOutcome {
    Issued { expires_at: Millis },
    RateLimited { retry_after_ms: u64 },
}

/// Result of [`Store::check_code`](crate::Store::check_code). A code is consumed by the first
/// successful check, so it can never be used twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodeCheck {
    Valid,
    /// Wrong code; `attempts_left` more guesses before the code is burnt.
    Wrong {
        attempts_left: u32,
    },
    Expired,
    /// No pending code (never requested, already used, or burnt by too many guesses).
    Missing,
}

/// Longest client message id a store accepts in a de-duplication key; an `enqueue` with a longer
/// one fails with [`StoreError::Invalid`](crate::StoreError::Invalid) and writes nothing.
pub const MAX_CLIENT_MESSAGE_ID_BYTES: usize = 1024;

/// Longest invite code a store accepts; `put_group` with a longer (or an empty) one fails with
/// [`StoreError::Invalid`](crate::StoreError::Invalid).
pub const MAX_INVITE_CODE_BYTES: usize = 256;

/// What a sender puts on a device queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEntry {
    /// The sending device and its client message id: the de-duplication key. `None` for entries
    /// the server itself generates (delivered receipts), which are never de-duplicated. The id
    /// has at most [`MAX_CLIENT_MESSAGE_ID_BYTES`] bytes.
    pub dedupe: Option<(DeviceAddress, String)>,
    pub enqueued_at: Millis,
    pub expires_at: Millis,
    /// Opaque to the store (an encoded gateway `Delivery` content: ciphertext or receipt).
    pub payload: Bytes,
}

/// An entry as stored on a device queue, with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedEntry {
    /// Strictly increasing per device queue, never reused, starting at 1.
    pub seq: u64,
    pub enqueued_at: Millis,
    pub expires_at: Millis,
    pub payload: Bytes,
}

/// Result of enqueueing one entry on one device queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnqueueOutcome {
    Queued {
        seq: u64,
    },
    /// The same dedupe key was queued before (and has not expired); nothing new was written.
    Duplicate {
        seq: u64,
    },
}

/// What a device can start with: its account, and ids for the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub account: Account,
    pub device: Device,
    /// Devices the registration replaced (their keys and queues are gone).
    pub removed_devices: Vec<DeviceId>,
}

/// Public keys handed to an X3DH initiator for one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyBundle {
    pub device: DeviceId,
    pub keys: DeviceKeys,
    pub one_time_prekey: Option<OneTimePreKey>,
}

/// A member of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMemberRecord {
    pub user: UserId,
    pub admin: bool,
    pub joined_at: Millis,
}

/// A group. Its group actor is the only writer, so a record is replaced whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub id: courier_protocol::GroupId,
    pub subject: String,
    pub created_by: UserId,
    pub created_at: Millis,
    /// In the order they joined.
    pub members: Vec<GroupMemberRecord>,
    pub only_admins_edit_info: bool,
    pub only_admins_add_members: bool,
    /// The current invite code, if any; it resolves through `group_by_invite`.
    pub invite_code: Option<String>,
    /// Increases with every change (the revision of the last `GroupEvent`).
    pub revision: u64,
    pub size_limit: u32,
}

/// Which receipt a member gave for a group message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupReceiptKind {
    Delivered,
    Read,
}

/// When one member received and read one group message (0 = not yet).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupReceiptRecord {
    pub user: UserId,
    pub delivered_at: Millis,
    pub read_at: Millis,
}

/// Result of [`Store::enqueue_group_message`](crate::Store::enqueue_group_message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupEnqueueOutcome {
    /// Stored once; the outcomes of the reference entries, in the order given.
    Queued { entries: Vec<EnqueueOutcome> },
    /// The sender's device already sent this client message id to this group: nothing written.
    Duplicate { message_seq: u64 },
}
