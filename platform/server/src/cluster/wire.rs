//! Actor messages and their answers on the cluster wire (`courier.cluster.v1`).
//!
//! A message that may be addressed to an actor on another node implements [`Remote`]: it turns
//! into a shard command, and its answer into a [`wire::Reply`] and back.

use std::sync::Arc;

use actix::Message;
use courier_protocol::cluster::v1 as wire;
use courier_protocol::v1::{ErrorCode, GroupInfo, MemberReceipt, ReceiptType};
use courier_protocol::{DeviceAddress, UserId};
use courier_store::NewEntry;

use crate::actors::group_messages::*;
use crate::actors::messages::*;
use crate::error::DeliveryError;

/// A command that cannot be read (a bug or a newer node's format): skipped, never retried.
#[derive(Debug, thiserror::Error)]
#[error("undecodable cluster command: {0}")]
pub struct WireError(pub String);

pub fn device_ref(address: DeviceAddress) -> wire::DeviceRef {
    wire::DeviceRef {
        user: address.user.to_string(),
        device: address.device,
    }
}

pub fn device_address(reference: Option<&wire::DeviceRef>) -> Result<DeviceAddress, WireError> {
    let reference = reference.ok_or_else(|| WireError("a device is missing".into()))?;
    let user = reference
        .user
        .parse::<UserId>()
        .map_err(|e| WireError(e.to_string()))?;
    Ok(DeviceAddress::new(user, reference.device))
}

/// An answer that travels back to the asking node.
pub trait WireResult: Sized {
    fn to_reply(&self) -> wire::Reply;
    fn from_reply(reply: wire::Reply) -> Self;
}

/// A message for a user or group actor that another node may send.
pub trait Remote: Message + Send + 'static
where
    Self::Result: WireResult + Send,
{
    fn to_wire(&self) -> wire::shard_command::Body;
}

fn error_reply(error: &DeliveryError) -> wire::Reply {
    let mut reply = wire::Reply {
        status: error.code() as i32,
        message: error.to_string(),
        ..Default::default()
    };
    match error {
        DeliveryError::DeviceMismatch { missing, stale } => {
            reply.missing_devices = missing.clone();
            reply.stale_devices = stale.clone();
        }
        DeliveryError::GroupFull(limit) => reply.group_full_limit = *limit,
        DeliveryError::InvalidArgument(detail)
        | DeliveryError::Unavailable(detail)
        | DeliveryError::Internal(detail) => reply.message = detail.clone(),
        _ => {}
    }
    reply
}

/// The error a non-OK reply stands for.
fn reply_error(reply: wire::Reply) -> DeliveryError {
    match ErrorCode::try_from(reply.status) {
        Ok(ErrorCode::UnknownRecipient) => DeliveryError::UnknownRecipient,
        Ok(ErrorCode::DeviceMismatch) => DeliveryError::DeviceMismatch {
            missing: reply.missing_devices,
            stale: reply.stale_devices,
        },
        Ok(ErrorCode::InvalidArgument) => DeliveryError::InvalidArgument(reply.message),
        Ok(ErrorCode::NotAMember) => DeliveryError::NotAMember,
        Ok(ErrorCode::NotAnAdmin) => DeliveryError::NotAnAdmin,
        Ok(ErrorCode::GroupFull) => DeliveryError::GroupFull(reply.group_full_limit),
        Ok(ErrorCode::UnknownGroup) => DeliveryError::UnknownGroup,
        Ok(ErrorCode::Busy) => DeliveryError::Busy,
        Ok(ErrorCode::Unavailable) => DeliveryError::Unavailable(reply.message),
        _ => DeliveryError::Internal(reply.message),
    }
}

fn ok_reply(result: Option<wire::reply::Result>) -> wire::Reply {
    wire::Reply {
        status: ErrorCode::Ok as i32,
        result,
        ..Default::default()
    }
}

fn is_ok(reply: &wire::Reply) -> bool {
    reply.status == ErrorCode::Ok as i32
}

impl WireResult for () {
    fn to_reply(&self) -> wire::Reply {
        ok_reply(None)
    }
    fn from_reply(_: wire::Reply) -> Self {}
}

impl WireResult for Result<(), DeliveryError> {
    fn to_reply(&self) -> wire::Reply {
        match self {
            Ok(()) => ok_reply(None),
            Err(error) => error_reply(error),
        }
    }
    fn from_reply(reply: wire::Reply) -> Self {
        if is_ok(&reply) {
            Ok(())
        } else {
            Err(reply_error(reply))
        }
    }
}

impl WireResult for Result<Accepted, DeliveryError> {
    fn to_reply(&self) -> wire::Reply {
        match self {
            Ok(accepted) => ok_reply(Some(wire::reply::Result::Accepted(wire::Accepted {
                server_timestamp_ms: accepted.server_timestamp_ms,
                duplicate: accepted.duplicate,
            }))),
            Err(error) => error_reply(error),
        }
    }
    fn from_reply(reply: wire::Reply) -> Self {
        if !is_ok(&reply) {
            return Err(reply_error(reply));
        }
        match reply.result {
            Some(wire::reply::Result::Accepted(a)) => Ok(Accepted {
                server_timestamp_ms: a.server_timestamp_ms,
                duplicate: a.duplicate,
            }),
            _ => Err(DeliveryError::Internal(
                "an answer without its result".into(),
            )),
        }
    }
}

impl WireResult for Result<GroupInfo, DeliveryError> {
    fn to_reply(&self) -> wire::Reply {
        match self {
            Ok(info) => ok_reply(Some(wire::reply::Result::Group(info.clone()))),
            Err(error) => error_reply(error),
        }
    }
    fn from_reply(reply: wire::Reply) -> Self {
        if !is_ok(&reply) {
            return Err(reply_error(reply));
        }
        match reply.result {
            Some(wire::reply::Result::Group(info)) => Ok(info),
            _ => Err(DeliveryError::Internal(
                "an answer without its group".into(),
            )),
        }
    }
}

impl WireResult for Result<Vec<MemberReceipt>, DeliveryError> {
    fn to_reply(&self) -> wire::Reply {
        match self {
            Ok(members) => ok_reply(Some(wire::reply::Result::Receipts(wire::MemberReceipts {
                members: members.clone(),
            }))),
            Err(error) => error_reply(error),
        }
    }
    fn from_reply(reply: wire::Reply) -> Self {
        if !is_ok(&reply) {
            return Err(reply_error(reply));
        }
        match reply.result {
            Some(wire::reply::Result::Receipts(r)) => Ok(r.members),
            _ => Err(DeliveryError::Internal("an answer without receipts".into())),
        }
    }
}

use wire::shard_command::Body;

impl Remote for Submit {
    fn to_wire(&self) -> Body {
        Body::Submit(wire::Submit {
            from: Some(device_ref(self.from)),
            message: Some(self.message.as_ref().clone()),
        })
    }
}

impl Remote for SubmitReceipt {
    fn to_wire(&self) -> Body {
        Body::SubmitReceipt(wire::SubmitReceipt {
            from: Some(device_ref(self.from)),
            kind: self.kind as i32,
            message_ids: self.message_ids.as_ref().clone(),
        })
    }
}

impl Remote for Disconnect {
    fn to_wire(&self) -> Body {
        Body::Detach(wire::Detach {
            device: self.device,
            conn: self.conn,
        })
    }
}

impl Remote for AckUpTo {
    fn to_wire(&self) -> Body {
        Body::Ack(wire::Ack {
            device: self.device,
            conn: self.conn,
            up_to: self.up_to,
        })
    }
}

impl Remote for TypingNotice {
    fn to_wire(&self) -> Body {
        Body::Typing(wire::Typing {
            from_user: self.from.to_string(),
            typing: self.typing,
        })
    }
}

impl Remote for DevicesChanged {
    fn to_wire(&self) -> Body {
        Body::DevicesChanged(wire::DevicesChanged {})
    }
}

impl Remote for PrivacyChanged {
    fn to_wire(&self) -> Body {
        Body::PrivacyChanged(wire::PrivacyChanged {
            last_seen_visible: self.last_seen_visible,
        })
    }
}

impl Remote for EnqueueEntries {
    fn to_wire(&self) -> Body {
        Body::Enqueue(wire::EnqueueEntries {
            entries: self
                .entries
                .iter()
                .map(|(device, entry)| wire::QueueEntry {
                    device: *device,
                    dedupe_sender: entry.dedupe.as_ref().map(|(a, _)| device_ref(*a)),
                    dedupe_id: entry
                        .dedupe
                        .as_ref()
                        .map(|(_, id)| id.clone())
                        .unwrap_or_default(),
                    enqueued_at: entry.enqueued_at,
                    expires_at: entry.expires_at,
                    payload: entry.payload.to_vec(),
                })
                .collect(),
        })
    }
}

impl Remote for CreateGroup {
    fn to_wire(&self) -> Body {
        Body::CreateGroup(wire::CreateGroup {
            by: Some(device_ref(self.by)),
            create: Some(self.create.as_ref().clone()),
        })
    }
}

impl Remote for UpdateGroup {
    fn to_wire(&self) -> Body {
        Body::UpdateGroup(wire::UpdateGroup {
            by: Some(device_ref(self.by)),
            update: Some(self.update.as_ref().clone()),
        })
    }
}

impl Remote for JoinByInvite {
    fn to_wire(&self) -> Body {
        Body::JoinByInvite(wire::JoinByInvite {
            by: Some(device_ref(self.by)),
            code: self.code.clone(),
        })
    }
}

impl Remote for GetGroup {
    fn to_wire(&self) -> Body {
        Body::GetGroup(wire::GetGroup {
            by: Some(device_ref(self.by)),
        })
    }
}

impl Remote for SendToGroup {
    fn to_wire(&self) -> Body {
        Body::SendToGroup(wire::SendToGroup {
            from: Some(device_ref(self.from)),
            send: Some(self.send.as_ref().clone()),
        })
    }
}

impl Remote for MemberDelivered {
    fn to_wire(&self) -> Body {
        Body::MemberDelivered(wire::MemberDelivered {
            member: Some(device_ref(self.member)),
            message_seq: self.message_seq,
        })
    }
}

impl Remote for MemberRead {
    fn to_wire(&self) -> Body {
        Body::MemberRead(wire::MemberRead {
            member: Some(device_ref(self.member)),
            sender: self.sender.to_string(),
            message_ids: self.message_ids.as_ref().clone(),
        })
    }
}

impl Remote for GetMessageInfo {
    fn to_wire(&self) -> Body {
        Body::GetMessageInfo(wire::GetMessageInfo {
            by: Some(device_ref(self.by)),
            client_message_id: self.client_message_id.clone(),
        })
    }
}

/// Queue entries of a wire command, for the target user's devices.
pub fn entries_from_wire(
    user: UserId,
    entries: Vec<wire::QueueEntry>,
) -> Result<EnqueueEntries, WireError> {
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let dedupe = match entry.dedupe_sender {
            Some(sender) => Some((device_address(Some(&sender))?, entry.dedupe_id)),
            None => None,
        };
        out.push((
            entry.device,
            NewEntry {
                dedupe,
                enqueued_at: entry.enqueued_at,
                expires_at: entry.expires_at,
                payload: entry.payload.into(),
            },
        ));
    }
    Ok(EnqueueEntries {
        user,
        entries: Arc::new(out),
    })
}

/// The receipt kind of a wire command (read receipts are the only ones clients send).
pub fn receipt_type(kind: i32) -> ReceiptType {
    ReceiptType::try_from(kind).unwrap_or(ReceiptType::Read)
}
