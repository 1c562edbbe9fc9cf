//! Messages accepted by the user actor.

use std::sync::Arc;

use actix::Message;
use courier_protocol::v1::{ReceiptType, SendMessage};
use courier_protocol::{DeviceAddress, DeviceId, UserId};
use courier_store::{EnqueueOutcome, NewEntry};

use crate::error::DeliveryError;
use crate::gateway::outbound::OutboundSender;

/// A message from `from` to this actor's user: queue it on every recipient device.
#[derive(Message, Clone)]
#[rtype(result = "Result<Accepted, DeliveryError>")]
pub struct Submit {
    pub from: DeviceAddress,
    pub message: Arc<SendMessage>,
}

/// The answer to an accepted [`Submit`] (the "sent" acknowledgement).
#[derive(Clone, Copy, Debug)]
pub struct Accepted {
    pub server_timestamp_ms: u64,
    /// Every device queue already held this message.
    pub duplicate: bool,
}

/// A receipt from `from` about messages this actor's user sent.
#[derive(Message, Clone)]
#[rtype(result = "Result<(), DeliveryError>")]
pub struct SubmitReceipt {
    pub from: DeviceAddress,
    pub kind: ReceiptType,
    pub message_ids: Arc<Vec<String>>,
}

/// A device of this user connected.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Connect {
    pub device: DeviceId,
    pub conn: u64,
    pub outbound: OutboundSender,
}

/// A connection of this user closed.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub device: DeviceId,
    pub conn: u64,
}

/// A device acknowledged every entry up to `up_to`.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct AckUpTo {
    pub device: DeviceId,
    pub conn: u64,
    pub up_to: u64,
}

/// Someone is typing to this user. Never stored.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct TypingNotice {
    pub from: UserId,
    pub typing: bool,
}

/// Entries were written to this user's queues by someone else: push them.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct QueueChanged;

/// The user's devices changed (re-registration): reload them, close removed devices.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct DevicesChanged;

/// The user changed who may see their last-seen time.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct PrivacyChanged {
    pub last_seen_visible: bool,
}

/// Entries another actor has just queued on this user's devices (single process): pushed from
/// memory to devices that are caught up, read from the queue otherwise.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EntriesQueued {
    pub entries: Vec<(DeviceAddress, NewEntry)>,
    pub outcomes: Vec<EnqueueOutcome>,
}

/// Entries for this user's device queues on behalf of another actor (delivered receipts, group
/// events and references). In a cluster the user's actor is the one writer of its queues, so
/// other actors hand their entries to it instead of writing them.
#[derive(Message, Clone)]
#[rtype(result = "Result<(), DeliveryError>")]
pub struct EnqueueEntries {
    pub user: UserId,
    pub entries: Arc<Vec<(DeviceId, NewEntry)>>,
}

/// The actor's shard moved to another node: finish what is under way and stop, leaving
/// connections of other nodes open (they attach to the new owner).
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Retire;
