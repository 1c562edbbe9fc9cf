//! One device connection.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use courier_protocol::close;
use courier_protocol::v1::{
    ClientFrame, Error as ErrorFrame, ErrorCode, Pong, ReceiptType, SendResult, ServerFrame,
    Visibility, Welcome, client_frame, server_frame,
};
use courier_protocol::{DeviceAddress, PROTOCOL_VERSION, UserId};
use prost::Message as _;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, MissedTickBehavior};

use super::outbound::{self, Next, Outbound, OutboundReceiver, OutboundSender};
use super::rate::TokenBucket;
use crate::actors::messages::{AckUpTo, PrivacyChanged, Submit, SubmitReceipt, TypingNotice};
use crate::clock::now_ms;
use crate::error::{DeliveryError, error_code_label};
use crate::metrics::FrameKind;
use crate::state::AppState;

/// Most frames written with one flush (the socket's write buffer holds them until then).
const WRITE_BATCH: usize = 32;

/// How a connection ends.
pub(super) enum End {
    /// Send this close frame, then stop.
    Close(u16, &'static str),
    /// The peer closed or the transport failed: nothing more to send.
    Gone,
    /// The peer sent a close frame: answer it (the WebSocket closing handshake), then stop.
    ClosedByPeer,
}

pub(super) struct Connection {
    socket: WebSocket,
    pub(super) device: DeviceAddress,
    conn: u64,
    pub(super) state: Arc<AppState>,
    outbound: OutboundSender,
    bucket: TokenBucket,
    violations: u32,
    last_heard: Instant,
}

/// Serves one authenticated connection until it closes.
///
/// Memory per connection matters at tens of thousands of connections, and an idle connection
/// is mostly this future: the connection is built before the `async` block so that the socket
/// is stored once (an `async fn` keeps its arguments beside everything built from them), and
/// the steps that run once or rarely (attaching, detaching, refusing a frame) are boxed so that
/// their futures take space only while they run.
pub fn run(
    socket: WebSocket,
    device: DeviceAddress,
    state: Arc<AppState>,
    permit: OwnedSemaphorePermit,
) -> impl Future<Output = ()> + Send {
    let guard = state.shutdown.connection_guard();
    let conn = state.next_connection_id();
    let limits = &state.config.gateway;
    let (outbound, mut receiver) = outbound::channel(limits.outbound_queue);
    state.metrics.connection_opened();
    let mut connection = Connection {
        socket,
        device,
        conn,
        bucket: TokenBucket::new(limits.frames_per_sec, limits.frame_burst),
        violations: 0,
        last_heard: Instant::now(),
        outbound,
        state,
    };
    async move {
        let _guard = guard;
        let _permit = permit;
        match connection.serve(&mut receiver).await {
            End::Close(code, reason) => connection.close(code, reason).await,
            End::ClosedByPeer => connection.answer_close().await,
            End::Gone => {}
        }
        let state = Arc::clone(&connection.state);
        drop(connection);
        if let Err(error) = Box::pin(state.registry.disconnect(device, conn)).await {
            tracing::warn!(%device, %error, "could not detach a session");
        }
        state.presence.unsubscribe_all(conn);
        state.metrics.connection_closed();
        tracing::debug!(%device, conn, "connection closed");
    }
}

impl Connection {
    async fn serve(&mut self, receiver: &mut OutboundReceiver) -> End {
        // Watch for a drain before anything else: one that began meanwhile is seen at once.
        let shutdown = self.state.shutdown.clone();
        let drain = shutdown.wait();
        tokio::pin!(drain);
        let limits = &self.state.config.gateway;
        let idle_timeout = Duration::from_secs(limits.idle_timeout_secs);
        let ping_every = Duration::from_secs(limits.ping_interval_secs);
        if let Some(end) = Box::pin(self.attach()).await {
            return end;
        }
        let mut ping = tokio::time::interval(ping_every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            tokio::select! {
                _ = &mut drain => {
                    return End::Close(close::GOING_AWAY, "server shutting down");
                }
                next = receiver.next() => match next {
                    Next::Close(request) => return End::Close(request.code, request.reason),
                    Next::Frame(outbound) => {
                        if let Some(end) = self.write_queued(outbound, receiver).await {
                            return end;
                        }
                    }
                },
                incoming = self.socket.recv() => {
                    let message = match incoming {
                        None => return End::Gone,
                        Some(Ok(message)) => message,
                        Some(Err(error)) => return read_error(error),
                    };
                    self.last_heard = Instant::now();
                    match message {
                        Message::Binary(bytes) => {
                            // Boxed: the handlers' futures are large, and an idle connection
                            // should not carry their space (memory per connection matters at
                            // tens of thousands of connections).
                            if let Some(end) = Box::pin(self.on_binary(bytes)).await {
                                return end;
                            }
                        }
                        Message::Text(_) => {
                            if let Some(end) = Box::pin(self.on_text()).await {
                                return end;
                            }
                        }
                        Message::Ping(_) | Message::Pong(_) => {}
                        Message::Close(_) => return End::ClosedByPeer,
                    }
                }
                _ = ping.tick() => {
                    if self.last_heard.elapsed() >= idle_timeout {
                        return End::Close(close::IDLE_TIMEOUT, "no frames within the idle timeout");
                    }
                    if self.socket.send(Message::Ping(Bytes::new())).await.is_err() {
                        return End::Gone;
                    }
                }
            }
        }
    }

    /// Writes `first` and whatever else is queued already (up to [`WRITE_BATCH`] frames) with
    /// one flush: one system call for a burst of deliveries instead of one per frame. `Some`
    /// ends the connection (the socket failed, or a close was requested behind the frames).
    async fn write_queued(
        &mut self,
        first: Outbound,
        receiver: &mut OutboundReceiver,
    ) -> Option<End> {
        use futures_util::SinkExt;
        let mut next = Some(first);
        let mut written = 0;
        let mut end = None;
        while let Some(outbound) = next.take() {
            let kind = outbound.kind;
            if self
                .socket
                .feed(Message::Binary(outbound.bytes))
                .await
                .is_err()
            {
                return Some(End::Gone);
            }
            self.state.metrics.frame_out(kind);
            written += 1;
            if written == WRITE_BATCH {
                break;
            }
            match receiver.try_next() {
                Some(Next::Frame(more)) => next = Some(more),
                Some(Next::Close(request)) => end = Some(End::Close(request.code, request.reason)),
                None => {}
            }
        }
        if self.socket.flush().await.is_err() {
            return Some(End::Gone);
        }
        end
    }

    /// Sends the Welcome and attaches the session to the user's actor; `Some` ends the
    /// connection.
    async fn attach(&mut self) -> Option<End> {
        let welcome = ServerFrame {
            body: Some(server_frame::Body::Welcome(Welcome {
                protocol_version: PROTOCOL_VERSION,
                user_id: self.device.user.to_string(),
                device_id: self.device.device,
                server_time_ms: now_ms(),
                max_frame_bytes: self.state.config.gateway.max_frame_bytes as u32,
            })),
        };
        if self.send(&welcome, FrameKind::Other).await.is_err() {
            return Some(End::Gone);
        }
        let attached = self
            .state
            .registry
            .connect(self.device, self.conn, self.outbound.clone())
            .await;
        attached.is_err().then_some(End::Close(
            close::INTERNAL_ERROR,
            "could not attach the session",
        ))
    }

    /// Refuses a text frame (counted against the rate like any frame); `Some` ends the
    /// connection.
    async fn on_text(&mut self) -> Option<End> {
        match self.take_token(0).await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(end) => return Some(end),
        }
        let detail = "text frames are not part of the protocol; send binary ClientFrames";
        self.error(0, ErrorCode::MalformedFrame, detail)
            .await
            .err()
            .map(|_| End::Gone)
    }

    /// Handles one binary frame; `Some` ends the connection.
    async fn on_binary(&mut self, bytes: Bytes) -> Option<End> {
        let max_frame = self.state.config.gateway.max_frame_bytes;
        if bytes.len() > max_frame {
            let detail = format!("frame of {} bytes exceeds {max_frame}", bytes.len());
            // The connection closes next either way.
            let _ = self.error(0, ErrorCode::FrameTooLarge, &detail).await;
            return Some(End::Close(close::MESSAGE_TOO_BIG, "frame too large"));
        }
        let decoded = ClientFrame::decode(bytes);
        let request_id = decoded.as_ref().map(|f| f.request_id).unwrap_or(0);
        // Every frame counts against the rate, malformed ones included.
        match self.take_token(request_id).await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(end) => return Some(end),
        }
        let frame = match decoded {
            Ok(frame) => frame,
            Err(error) => {
                let detail = format!("not a ClientFrame: {error}");
                self.state.metrics.frame_in(FrameKind::Other);
                return self
                    .error(0, ErrorCode::MalformedFrame, &detail)
                    .await
                    .err();
            }
        };
        let Some(body) = frame.body else {
            self.state.metrics.frame_in(FrameKind::Other);
            return self
                .error(
                    request_id,
                    ErrorCode::MalformedFrame,
                    "frame without a body",
                )
                .await
                .err();
        };
        let result = match body {
            client_frame::Body::Send(message) => self.on_send(request_id, message).await,
            client_frame::Body::Ack(ack) => self.on_ack(ack.up_to_seq).await,
            client_frame::Body::Receipt(receipt) => self.on_receipt(request_id, receipt).await,
            client_frame::Body::Typing(typing) => self.on_typing(request_id, typing).await,
            client_frame::Body::SubscribePresence(subscribe) => {
                self.on_subscribe(request_id, subscribe.users).await
            }
            client_frame::Body::SetPresencePrivacy(privacy) => {
                self.on_privacy(request_id, privacy.last_seen).await
            }
            client_frame::Body::CreateGroup(create) => {
                self.on_create_group(request_id, create).await
            }
            client_frame::Body::UpdateGroup(update) => {
                self.on_update_group(request_id, update).await
            }
            client_frame::Body::GroupSend(send) => self.on_group_send(request_id, send).await,
            client_frame::Body::GetGroup(get) => self.on_get_group(request_id, get.group_id).await,
            client_frame::Body::JoinGroup(join) => {
                self.on_join_group(request_id, join.invite_code).await
            }
            client_frame::Body::MessageInfo(info) => self.on_message_info(request_id, info).await,
            client_frame::Body::Ping(ping) => {
                self.state.metrics.frame_in(FrameKind::Ping);
                let pong = ServerFrame {
                    body: Some(server_frame::Body::Pong(Pong { nonce: ping.nonce })),
                };
                self.send(&pong, FrameKind::Other).await
            }
        };
        result.err()
    }

    /// Takes a token for one frame: `Ok(true)` to go on; `Ok(false)` when the frame was
    /// refused with RATE_LIMITED; `Err` when refusals went on long enough to close (1008).
    async fn take_token(&mut self, request_id: u64) -> Result<bool, End> {
        if self.bucket.try_take() {
            self.violations = 0;
            return Ok(true);
        }
        self.violations += 1;
        if self.violations > self.state.config.gateway.max_rate_violations {
            return Err(End::Close(close::POLICY_VIOLATION, "rate limit exceeded"));
        }
        let detail = "too many frames; slow down (nothing in this frame was accepted)";
        self.error(request_id, ErrorCode::RateLimited, detail)
            .await
            .map(|()| false)
    }

    async fn on_send(
        &mut self,
        request_id: u64,
        message: courier_protocol::v1::SendMessage,
    ) -> Result<(), End> {
        self.state.metrics.frame_in(FrameKind::Send);
        let client_message_id = message.client_message_id.clone();
        let outcome = match message.recipient.parse::<UserId>() {
            Err(error) => Err(DeliveryError::InvalidArgument(error.to_string())),
            Ok(recipient) => {
                let submit = Submit {
                    from: self.device,
                    message: Arc::new(message),
                };
                match self.state.registry.ask(recipient, submit).await {
                    Ok(result) => result,
                    Err(error) => Err(error),
                }
            }
        };
        let result = match outcome {
            Ok(accepted) => SendResult {
                request_id,
                client_message_id,
                status: ErrorCode::Ok as i32,
                server_timestamp_ms: accepted.server_timestamp_ms,
                duplicate: accepted.duplicate,
                ..Default::default()
            },
            Err(error) => self.failed_result(request_id, client_message_id, &error),
        };
        let frame = ServerFrame {
            body: Some(server_frame::Body::SendResult(result)),
        };
        self.send(&frame, FrameKind::SendResult).await
    }

    pub(super) fn failed_result(
        &self,
        request_id: u64,
        client_message_id: String,
        error: &DeliveryError,
    ) -> SendResult {
        let code = error.code();
        self.state.metrics.gateway_error(error_code_label(code));
        let (missing_devices, stale_devices) = match error {
            DeliveryError::DeviceMismatch { missing, stale } => (missing.clone(), stale.clone()),
            _ => (Vec::new(), Vec::new()),
        };
        SendResult {
            request_id,
            client_message_id,
            status: code as i32,
            missing_devices,
            stale_devices,
            message: error.to_string(),
            ..Default::default()
        }
    }

    async fn on_ack(&mut self, up_to: u64) -> Result<(), End> {
        self.state.metrics.frame_in(FrameKind::Ack);
        let ack = AckUpTo {
            device: self.device.device,
            conn: self.conn,
            up_to,
        };
        if let Err(error) = self.state.registry.tell(self.device.user, ack).await {
            // The entries stay queued; they are pushed again on the next connection.
            tracing::warn!(device = %self.device, %error, "ack not applied");
        }
        Ok(())
    }

    async fn on_receipt(
        &mut self,
        request_id: u64,
        receipt: courier_protocol::v1::SendReceipt,
    ) -> Result<(), End> {
        self.state.metrics.frame_in(FrameKind::Receipt);
        let outcome = if receipt.r#type != ReceiptType::Read as i32 {
            Err(DeliveryError::InvalidArgument(
                "clients send read receipts only; delivered receipts come from the server".into(),
            ))
        } else {
            match receipt.recipient.parse::<UserId>() {
                Err(error) => Err(DeliveryError::InvalidArgument(error.to_string())),
                Ok(sender) if !receipt.group_id.is_empty() => {
                    self.group_read(&receipt.group_id, sender, receipt.client_message_ids)
                        .await
                }
                Ok(recipient) => {
                    let submit = SubmitReceipt {
                        from: self.device,
                        kind: ReceiptType::Read,
                        message_ids: Arc::new(receipt.client_message_ids),
                    };
                    match self.state.registry.ask(recipient, submit).await {
                        Ok(result) => result,
                        Err(error) => Err(error),
                    }
                }
            }
        };
        self.answer(request_id, outcome).await
    }

    async fn on_typing(
        &mut self,
        request_id: u64,
        typing: courier_protocol::v1::Typing,
    ) -> Result<(), End> {
        self.state.metrics.frame_in(FrameKind::Typing);
        match typing.recipient.parse::<UserId>() {
            Ok(recipient) => {
                let notice = TypingNotice {
                    from: self.device.user,
                    typing: typing.typing,
                };
                // Typing reaches only users online now; nobody is activated for it.
                self.state.registry.hint(recipient, notice).await;
                Ok(())
            }
            Err(error) => {
                self.error(request_id, ErrorCode::InvalidArgument, &error.to_string())
                    .await
            }
        }
    }

    async fn on_subscribe(&mut self, request_id: u64, users: Vec<String>) -> Result<(), End> {
        self.state.metrics.frame_in(FrameKind::Presence);
        let mut parsed = Vec::with_capacity(users.len());
        for user in &users {
            match user.parse::<UserId>() {
                Ok(user) => parsed.push(user),
                Err(error) => {
                    return self
                        .error(request_id, ErrorCode::InvalidArgument, &error.to_string())
                        .await;
                }
            }
        }
        let accepted = self
            .state
            .presence
            .subscribe(self.conn, &self.outbound, &parsed);
        for user in parsed.into_iter().take(accepted) {
            let online = self.state.presence.is_online(user);
            let last_seen = if online {
                0
            } else {
                match self.state.store.account(user).await {
                    Ok(Some(account)) if account.last_seen_visible => account.last_seen,
                    Ok(_) => 0,
                    Err(error) => {
                        tracing::warn!(%user, %error, "could not read last seen");
                        0
                    }
                }
            };
            let frame = crate::presence::presence_frame(user, online, last_seen);
            self.send(&frame, FrameKind::Presence).await?;
        }
        if accepted < users.len() {
            let detail = format!(
                "a connection watches at most {} users",
                crate::presence::MAX_WATCHED_PER_CONNECTION
            );
            return self
                .error(request_id, ErrorCode::InvalidArgument, &detail)
                .await;
        }
        Ok(())
    }

    async fn on_privacy(&mut self, request_id: u64, visibility: i32) -> Result<(), End> {
        self.state.metrics.frame_in(FrameKind::Other);
        let visible = match Visibility::try_from(visibility) {
            Ok(Visibility::Everyone) => true,
            Ok(Visibility::Nobody) => false,
            _ => {
                let detail = "last_seen must be VISIBILITY_EVERYONE or VISIBILITY_NOBODY";
                return self
                    .error(request_id, ErrorCode::InvalidArgument, detail)
                    .await;
            }
        };
        let user = self.device.user;
        let outcome = match self.state.store.set_last_seen_visible(user, visible).await {
            Ok(()) => {
                let change = PrivacyChanged {
                    last_seen_visible: visible,
                };
                self.state.registry.ask(user, change).await
            }
            Err(error) => Err(DeliveryError::from(error)),
        };
        self.answer(request_id, outcome).await
    }

    /// Answers a request that has no result of its own: a SendResult with its status.
    async fn answer(
        &mut self,
        request_id: u64,
        outcome: Result<(), DeliveryError>,
    ) -> Result<(), End> {
        let result = match outcome {
            Ok(()) => SendResult {
                request_id,
                status: ErrorCode::Ok as i32,
                server_timestamp_ms: now_ms(),
                ..Default::default()
            },
            Err(error) => self.failed_result(request_id, String::new(), &error),
        };
        if request_id == 0 && result.status == ErrorCode::Ok as i32 {
            return Ok(());
        }
        let frame = ServerFrame {
            body: Some(server_frame::Body::SendResult(result)),
        };
        self.send(&frame, FrameKind::SendResult).await
    }

    async fn error(&mut self, request_id: u64, code: ErrorCode, message: &str) -> Result<(), End> {
        self.state.metrics.gateway_error(error_code_label(code));
        let frame = ServerFrame {
            body: Some(server_frame::Body::Error(ErrorFrame {
                request_id,
                code: code as i32,
                message: message.to_owned(),
            })),
        };
        self.send(&frame, FrameKind::Error).await
    }

    pub(super) async fn send(&mut self, frame: &ServerFrame, kind: FrameKind) -> Result<(), End> {
        let bytes = Bytes::from(frame.encode_to_vec());
        self.socket
            .send(Message::Binary(bytes))
            .await
            .map_err(|_| End::Gone)?;
        self.state.metrics.frame_out(kind);
        Ok(())
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        // The peer may already be gone; there is nothing else to do then.
        let _ = self.socket.send(Message::Close(Some(frame))).await;
    }
}

impl Connection {
    /// Sends the close frame the WebSocket layer queued in reply to the peer's, so that a
    /// client's clean close ends cleanly on its side too (not with a reset connection).
    async fn answer_close(&mut self) {
        let flush = futures_util::SinkExt::flush(&mut self.socket);
        // The peer may already be gone, or never read the reply; either way the task ends.
        let _ = tokio::time::timeout(Duration::from_secs(5), flush).await;
    }
}

/// Maps a transport error to how the connection ends.
fn read_error(error: axum::Error) -> End {
    let inner = error.into_inner();
    let too_big = inner
        .downcast_ref::<tungstenite::Error>()
        .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)));
    if too_big {
        End::Close(close::MESSAGE_TOO_BIG, "frame too large")
    } else {
        End::Gone
    }
}
