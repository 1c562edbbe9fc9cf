//! Messages accepted by the group actor.

use std::sync::Arc;

use actix::Message;
use courier_protocol::v1::{GroupCreate, GroupInfo, GroupSend, GroupUpdate, MemberReceipt};
use courier_protocol::{DeviceAddress, UserId};
use courier_store::GroupReceiptKind;

use super::messages::Accepted;
use crate::error::DeliveryError;

/// Create this actor's group (its id was chosen by the gateway).
#[derive(Message, Clone)]
#[rtype(result = "Result<GroupInfo, DeliveryError>")]
pub struct CreateGroup {
    pub by: DeviceAddress,
    pub create: Arc<GroupCreate>,
}

/// One change to the group.
#[derive(Message, Clone)]
#[rtype(result = "Result<GroupInfo, DeliveryError>")]
pub struct UpdateGroup {
    pub by: DeviceAddress,
    pub update: Arc<GroupUpdate>,
}

/// Join with an invite code (already resolved to this group).
#[derive(Message, Clone)]
#[rtype(result = "Result<GroupInfo, DeliveryError>")]
pub struct JoinByInvite {
    pub by: DeviceAddress,
    pub code: String,
}

/// The group as `by` may see it (members only).
#[derive(Message, Clone, Copy)]
#[rtype(result = "Result<GroupInfo, DeliveryError>")]
pub struct GetGroup {
    pub by: DeviceAddress,
}

/// A message to every member.
#[derive(Message, Clone)]
#[rtype(result = "Result<Accepted, DeliveryError>")]
pub struct SendToGroup {
    pub from: DeviceAddress,
    pub send: Arc<GroupSend>,
}

/// A member's device acknowledged a group message: record it and tell the sender.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct MemberDelivered {
    pub member: DeviceAddress,
    pub message_seq: u64,
}

/// A member read messages of `sender` (by their client message ids).
#[derive(Message, Clone)]
#[rtype(result = "Result<(), DeliveryError>")]
pub struct MemberRead {
    pub member: DeviceAddress,
    pub sender: UserId,
    pub message_ids: Arc<Vec<String>>,
}

/// Who received and read a message the asking device sent.
#[derive(Message, Clone)]
#[rtype(result = "Result<Vec<MemberReceipt>, DeliveryError>")]
pub struct GetMessageInfo {
    pub by: DeviceAddress,
    pub client_message_id: String,
}

/// The kind of a recorded receipt, for the store.
pub fn receipt_kind(read: bool) -> GroupReceiptKind {
    if read {
        GroupReceiptKind::Read
    } else {
        GroupReceiptKind::Delivered
    }
}
