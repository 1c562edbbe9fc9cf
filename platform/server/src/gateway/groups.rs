//! Group frames on a connection: create, change, join, info, send, receipts, message info.
//! Each goes to the group's actor; the answers are GroupResult, SendResult and MessageInfo.

use std::sync::Arc;

use courier_protocol::v1::{
    ErrorCode, GroupCreate, GroupInfo, GroupResult, GroupSend, GroupUpdate, MessageInfo,
    MessageInfoRequest, SendResult, ServerFrame, server_frame,
};
use courier_protocol::{GroupId, UserId};

use super::connection::{Connection, End};
use crate::actors::group::GroupActor;
use crate::actors::group_messages::{
    CreateGroup, GetGroup, GetMessageInfo, JoinByInvite, MemberRead, SendToGroup, UpdateGroup,
};
use crate::error::{DeliveryError, error_code_label};
use crate::metrics::FrameKind;

fn parse_group(id: &str) -> Result<GroupId, DeliveryError> {
    id.parse::<GroupId>()
        .map_err(|e| DeliveryError::InvalidArgument(e.to_string()))
}

impl Connection {
    /// Asks the actor of the group `group_id` names, answering a bad id as INVALID_ARGUMENT.
    async fn ask_group<M, R>(&mut self, group_id: &str, message: M) -> Result<R, DeliveryError>
    where
        M: crate::cluster::wire::Remote
            + actix::Message<Result = Result<R, DeliveryError>>
            + Clone
            + Send
            + 'static,
        Result<R, DeliveryError>: crate::cluster::wire::WireResult,
        R: Send + 'static,
        GroupActor: actix::Handler<M>,
        <GroupActor as actix::Actor>::Context: actix::dev::ToEnvelope<GroupActor, M>,
    {
        let group = parse_group(group_id)?;
        self.state.registry.ask_group(group, message).await?
    }

    async fn group_result(
        &mut self,
        request_id: u64,
        outcome: Result<GroupInfo, DeliveryError>,
    ) -> Result<(), End> {
        let result = match outcome {
            Ok(group) => GroupResult {
                request_id,
                status: ErrorCode::Ok as i32,
                message: String::new(),
                group: Some(group),
            },
            Err(error) => {
                self.state
                    .metrics
                    .gateway_error(error_code_label(error.code()));
                GroupResult {
                    request_id,
                    status: error.code() as i32,
                    message: error.to_string(),
                    group: None,
                }
            }
        };
        let frame = ServerFrame {
            body: Some(server_frame::Body::GroupResult(result)),
        };
        self.send(&frame, FrameKind::Other).await
    }

    pub(super) async fn on_create_group(
        &mut self,
        request_id: u64,
        create: GroupCreate,
    ) -> Result<(), End> {
        self.state.metrics.frame_in(FrameKind::Other);
        let message = CreateGroup {
            by: self.device,
            create: Arc::new(create),
        };
        let outcome = self
            .state
            .registry
            .ask_group(GroupId::random(), message)
            .await
            .and_then(|r| r);
        self.group_result(request_id, outcome).await
    }

    pub(super) async fn on_update_group(
        &mut self,
        request_id: u64,
        update: GroupUpdate,
    ) -> Result<(), End> {
        self.state.metrics.frame_in(FrameKind::Other);
        let group_id = update.group_id.clone();
        let message = UpdateGroup {
            by: self.device,
            update: Arc::new(update),
        };
        let outcome = self.ask_group(&group_id, message).await;
        self.group_result(request_id, outcome).await
    }

    pub(super) async fn on_get_group(
        &mut self,
        request_id: u64,
        group_id: String,
    ) -> Result<(), End> {
        self.state.metrics.frame_in(FrameKind::Other);
        let outcome = self
            .ask_group(&group_id, GetGroup { by: self.device })
            .await;
        self.group_result(request_id, outcome).await
    }

    pub(super) async fn on_join_group(&mut self, request_id: u64, code: String) -> Result<(), End> {
        self.state.metrics.frame_in(FrameKind::Other);
        let outcome = match self.state.store.group_by_invite(&code).await {
            Ok(Some(group)) => {
                let message = JoinByInvite {
                    by: self.device,
                    code,
                };
                self.state
                    .registry
                    .ask_group(group, message)
                    .await
                    .and_then(|r| r)
            }
            Ok(None) => Err(DeliveryError::UnknownGroup),
            Err(error) => Err(error.into()),
        };
        self.group_result(request_id, outcome).await
    }

    pub(super) async fn on_group_send(
        &mut self,
        request_id: u64,
        send: GroupSend,
    ) -> Result<(), End> {
        self.state.metrics.frame_in(FrameKind::Send);
        let client_message_id = send.client_message_id.clone();
        let group_id = send.group_id.clone();
        let message = SendToGroup {
            from: self.device,
            send: Arc::new(send),
        };
        let outcome = self.ask_group(&group_id, message).await;
        let result = match outcome {
            Ok(accepted) => {
                self.state.metrics.message_accepted();
                SendResult {
                    request_id,
                    client_message_id,
                    status: ErrorCode::Ok as i32,
                    server_timestamp_ms: accepted.server_timestamp_ms,
                    duplicate: accepted.duplicate,
                    ..Default::default()
                }
            }
            Err(error) => self.failed_result(request_id, client_message_id, &error),
        };
        let frame = ServerFrame {
            body: Some(server_frame::Body::SendResult(result)),
        };
        self.send(&frame, FrameKind::SendResult).await
    }

    /// A read receipt for group messages of `sender`.
    pub(super) async fn group_read(
        &mut self,
        group_id: &str,
        sender: UserId,
        message_ids: Vec<String>,
    ) -> Result<(), DeliveryError> {
        let message = MemberRead {
            member: self.device,
            sender,
            message_ids: Arc::new(message_ids),
        };
        self.ask_group(group_id, message).await
    }

    pub(super) async fn on_message_info(
        &mut self,
        request_id: u64,
        request: MessageInfoRequest,
    ) -> Result<(), End> {
        self.state.metrics.frame_in(FrameKind::Other);
        let message = GetMessageInfo {
            by: self.device,
            client_message_id: request.client_message_id.clone(),
        };
        let outcome = self.ask_group(&request.group_id, message).await;
        let info = match outcome {
            Ok(members) => MessageInfo {
                request_id,
                status: ErrorCode::Ok as i32,
                group_id: request.group_id,
                client_message_id: request.client_message_id,
                members,
                ..Default::default()
            },
            Err(error) => MessageInfo {
                request_id,
                status: error.code() as i32,
                message: error.to_string(),
                group_id: request.group_id,
                client_message_id: request.client_message_id,
                members: Vec::new(),
            },
        };
        let frame = ServerFrame {
            body: Some(server_frame::Body::MessageInfo(info)),
        };
        self.send(&frame, FrameKind::Other).await
    }
}
