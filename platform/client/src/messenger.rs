//! A connected device: [`Messenger`] sends frames and waits for their answers, and a task
//! reads the connection, turning server frames into [`Event`]s (deliveries are handled and
//! recorded by the [`Client`] before they are acknowledged).
//!
//! Requests carry a request id; the answer (`SendResult`, `GroupResult`, `MessageInfo`, or an
//! `Error`) is handed to whoever waits for that id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use courier_protocol::v1::{
    Ack, ClientFrame, Content, ErrorCode, GroupResult, MessageInfo, ReceiptType, SendMessage,
    SendReceipt, SendResult, SetPresencePrivacy, SubscribePresence, Text, Typing, Visibility,
    client_frame, content, server_frame,
};
use courier_protocol::{DeviceId, UserId};
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};

use crate::client::{Client, DeliveryHandler, Event, Sent, now_ms};
use crate::connection::{GatewayConnection, Incoming};
use crate::error::{ClientError, ClientResult};
use crate::history::HistoryRecord;

/// What answers a request: a `SendResult`, `GroupResult` or `MessageInfo` with its id.
#[derive(Debug)]
pub(crate) enum Answer {
    Send(SendResult),
    Group(GroupResult),
    Info(MessageInfo),
}

impl Answer {
    /// The answer's status; any non-OK one as [`ClientError::Rejected`].
    pub(crate) fn check(&self) -> ClientResult<()> {
        match self {
            Answer::Send(result) => check_status(result.status, &result.message),
            Answer::Group(result) => check_status(result.status, &result.message),
            Answer::Info(info) => check_status(info.status, &info.message),
        }
    }
}

/// An answer's status field; any non-OK code as [`ClientError::Rejected`].
pub(crate) fn check_status(status: i32, message: &str) -> ClientResult<()> {
    match ErrorCode::try_from(status) {
        Ok(ErrorCode::Ok) => Ok(()),
        code => Err(ClientError::Rejected {
            code: code.unwrap_or(ErrorCode::Internal),
            message: message.to_owned(),
        }),
    }
}

type Waiter = oneshot::Sender<ClientResult<Answer>>;
type Pending = Arc<Mutex<HashMap<u64, Waiter>>>;

fn lock_pending(pending: &Pending) -> MutexGuard<'_, HashMap<u64, Waiter>> {
    pending
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Hands an answer to the request waiting for it, if any.
fn answer(pending: &Pending, request_id: u64, answer: Answer) {
    if let Some(waiter) = lock_pending(pending).remove(&request_id) {
        // The caller may have given up waiting; the answer is of no use then.
        let _ = waiter.send(Ok(answer));
    }
}

/// A connected device: sends messages and control frames.
pub struct Messenger {
    pub(crate) client: Client,
    frames: mpsc::Sender<ClientFrame>,
    pending: Pending,
    next_request: AtomicU64,
    task: tokio::task::JoinHandle<()>,
    /// Group sends one at a time: key rotation and distribution are not interleaved.
    pub(crate) group_sends: tokio::sync::Mutex<()>,
}

impl Messenger {
    /// Starts the task that runs `connection`; events arrive on the receiver until it closes
    /// (those of deliveries go to `handler` instead, if there is one).
    pub(crate) fn start(
        client: Client,
        connection: GatewayConnection,
        handler: Option<Arc<dyn DeliveryHandler>>,
    ) -> (Messenger, mpsc::Receiver<Event>) {
        let (events_tx, events_rx) = mpsc::channel(1024);
        let (frames_tx, frames_rx) = mpsc::channel(256);
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let task = tokio::spawn(run_connection(
            client.clone(),
            connection,
            frames_rx,
            Sink {
                events: events_tx,
                handler,
            },
            Arc::clone(&pending),
        ));
        let messenger = Messenger {
            client,
            frames: frames_tx,
            pending,
            next_request: AtomicU64::new(1),
            task,
            group_sends: tokio::sync::Mutex::new(()),
        };
        (messenger, events_rx)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends a text message to every device of `to`, end-to-end encrypted; returns once the
    /// server has queued it ("sent").
    pub async fn send_text(&self, to: UserId, text: &str) -> ClientResult<Sent> {
        let id = uuid::Uuid::new_v4().to_string();
        let content = Content {
            body: Some(content::Body::Text(Text {
                body: text.to_owned(),
            })),
            ..Default::default()
        };
        self.send_content_as(to, &id, content).await
    }

    /// Sends any message (`Content`: a text, a reply, a reaction, buttons, a list, a
    /// template, an answer to one) under the client message id `id`; the device's push name
    /// is added if it has one and the content names none. Sending again with the same id
    /// after a crash is de-duplicated by the server (`Sent::duplicate`).
    pub async fn send_content_as(
        &self,
        to: UserId,
        id: &str,
        mut content: Content,
    ) -> ClientResult<Sent> {
        if content.sender_name.is_empty()
            && let Some(name) = self.client.sender_name()
        {
            content.sender_name = name;
        }
        let text = crate::rich::summary(&content);
        let mut record = HistoryRecord::message(id, now_ms(), true, to.to_string(), &text);
        if !crate::rich::is_plain_text(&content) {
            record = record.with_content(&content);
        }
        self.client.inner.history.append(&record)?;
        let plaintext = content.encode_to_vec();
        let (sent, _) = self.send_content(to, id, &plaintext).await?;
        self.client.inner.history.append(&HistoryRecord::status(
            id,
            sent.server_timestamp_ms,
            "sent",
            None,
        ))?;
        Ok(sent)
    }

    /// Sends `plaintext` (an encoded `Content`) to every device of `to` over the pairwise
    /// sessions; returns once it is "sent", with the devices it went to.
    pub(crate) async fn send_content(
        &self,
        to: UserId,
        id: &str,
        plaintext: &[u8],
    ) -> ClientResult<(Sent, Vec<DeviceId>)> {
        if !self.client.has_session_with(to) {
            self.client.ensure_sessions(to, None).await?;
        }
        // A device mismatch (the recipient added or replaced a device) is repaired and retried.
        for _ in 0..3 {
            let ciphertexts = self.client.encrypt_for(to, plaintext).await?;
            let devices: Vec<DeviceId> = ciphertexts.iter().map(|c| c.device_id).collect();
            let frame = client_frame::Body::Send(SendMessage {
                recipient: to.to_string(),
                client_message_id: id.to_owned(),
                timestamp_ms: now_ms(),
                ciphertexts,
            });
            let result = self.request(frame).await?;
            match ErrorCode::try_from(result.status) {
                Ok(ErrorCode::Ok) => {
                    let sent = Sent {
                        id: id.to_owned(),
                        server_timestamp_ms: result.server_timestamp_ms,
                        duplicate: result.duplicate,
                    };
                    return Ok((sent, devices));
                }
                Ok(ErrorCode::DeviceMismatch) => {
                    self.client.drop_sessions(to, &result.stale_devices).await?;
                    if !result.missing_devices.is_empty() {
                        self.client
                            .ensure_sessions(to, Some(&result.missing_devices))
                            .await?;
                    }
                }
                code => {
                    return Err(ClientError::Rejected {
                        code: code.unwrap_or(ErrorCode::Internal),
                        message: result.message,
                    });
                }
            }
        }
        Err(ClientError::Rejected {
            code: ErrorCode::DeviceMismatch,
            message: "recipient devices kept changing".into(),
        })
    }

    /// Tells `sender` that this user read these messages.
    pub async fn mark_read(&self, sender: UserId, ids: Vec<String>) -> ClientResult<()> {
        let frame = client_frame::Body::Receipt(SendReceipt {
            recipient: sender.to_string(),
            r#type: ReceiptType::Read as i32,
            client_message_ids: ids,
            group_id: String::new(),
        });
        self.expect_ok(frame).await
    }

    pub async fn typing(&self, to: UserId, typing: bool) -> ClientResult<()> {
        let frame = client_frame::Body::Typing(Typing {
            recipient: to.to_string(),
            typing,
        });
        self.fire(frame).await
    }

    pub async fn subscribe_presence(&self, users: &[UserId]) -> ClientResult<()> {
        let frame = client_frame::Body::SubscribePresence(SubscribePresence {
            users: users.iter().map(|u| u.to_string()).collect(),
        });
        self.fire(frame).await
    }

    pub async fn set_last_seen_visible(&self, visible: bool) -> ClientResult<()> {
        let last_seen = if visible {
            Visibility::Everyone
        } else {
            Visibility::Nobody
        };
        let frame = client_frame::Body::SetPresencePrivacy(SetPresencePrivacy {
            last_seen: last_seen as i32,
        });
        self.expect_ok(frame).await
    }

    pub(crate) async fn expect_ok(&self, body: client_frame::Body) -> ClientResult<()> {
        self.request_any(body).await?.check()
    }

    async fn fire(&self, body: client_frame::Body) -> ClientResult<()> {
        let frame = ClientFrame {
            request_id: 0,
            body: Some(body),
        };
        self.frames
            .send(frame)
            .await
            .map_err(|_| ClientError::Transport("connection closed".into()))
    }

    /// Sends a request answered by a `SendResult`.
    pub(crate) async fn request(&self, body: client_frame::Body) -> ClientResult<SendResult> {
        match self.request_any(body).await? {
            Answer::Send(result) => Ok(result),
            other => {
                other.check()?;
                Err(ClientError::Protocol(format!(
                    "expected a SendResult, got {other:?}"
                )))
            }
        }
    }

    /// Sends a request and waits for whatever answers it.
    pub(crate) async fn request_any(&self, body: client_frame::Body) -> ClientResult<Answer> {
        let request_id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock_pending(&self.pending).insert(request_id, tx);
        let frame = ClientFrame {
            request_id,
            body: Some(body),
        };
        if self.frames.send(frame).await.is_err() {
            lock_pending(&self.pending).remove(&request_id);
            return Err(ClientError::Transport("connection closed".into()));
        }
        rx.await
            .map_err(|_| ClientError::Transport("connection closed before the answer".into()))?
    }

    /// Closes the connection.
    pub async fn close(self) {
        drop(self.frames);
        // The task ends when the frame channel closes; its result carries nothing.
        let _ = self.task.await;
    }
}

/// Where events go: deliveries to the handler if there is one, everything else (and
/// deliveries without a handler) to the application's receiver.
struct Sink {
    events: mpsc::Sender<Event>,
    handler: Option<Arc<dyn DeliveryHandler>>,
}

impl Sink {
    /// Hands `event` over; `Ok` means the application has it (for a delivery: it may be
    /// acknowledged).
    async fn hand_over(&self, event: Event) -> ClientResult<()> {
        if event.is_delivery()
            && let Some(handler) = &self.handler
        {
            return handler.deliver(&event).await;
        }
        self.events
            .send(event)
            .await
            .map_err(|_| ClientError::Transport("event receiver dropped".into()))
    }
}

/// Reads frames and writes queued client frames until the connection ends.
///
/// Deliveries (and the other frames that become events, to keep their order) are processed in
/// order by a task of their own ([`run_deliveries`]), so that the answers to this device's
/// sends, read by this loop, are not held up behind the work a delivery takes (decryption,
/// saving, the handler).
async fn run_connection(
    client: Client,
    connection: GatewayConnection,
    mut frames: mpsc::Receiver<ClientFrame>,
    sink: Sink,
    pending: Pending,
) {
    let (mut writer, mut reader) = connection.split();
    let sink = Arc::new(sink);
    let (deliveries, queued) = mpsc::channel(DELIVERY_QUEUE);
    let (acks_tx, mut acks) = mpsc::channel(DELIVERY_QUEUE);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(run_deliveries(
        client.clone(),
        queued,
        Arc::clone(&sink),
        acks_tx,
        stopped,
        Arc::clone(&pending),
    ));
    let end = loop {
        tokio::select! {
            outgoing = frames.recv() => {
                let Some(frame) = outgoing else {
                    writer.close().await;
                    break Event::Closed { code: 1000, reason: "closed by the client".into() };
                };
                if let Err(error) = writer.send(&frame).await {
                    break Event::Closed { code: 1006, reason: error.to_string() };
                }
            }
            ack = acks.recv() => {
                let Some(ack) = ack else {
                    // The delivery task ended: it failed (it runs as long as the connection);
                    // its error becomes the reason below.
                    break Event::Closed {
                        code: 1006,
                        reason: "a delivery could not be processed".into(),
                    };
                };
                if let Err(error) = writer.send(&ack).await {
                    break Event::Closed { code: 1006, reason: error.to_string() };
                }
            }
            incoming = reader.recv() => {
                let frame = match incoming {
                    Ok(Incoming::Frame(frame)) => frame,
                    Ok(Incoming::Closed { code, reason }) => break Event::Closed { code, reason },
                    Err(error) => break Event::Closed { code: 1006, reason: error.to_string() },
                };
                // Answers go to their waiters now; everything else, in order, to the task that
                // processes deliveries (so that events keep the order of the frames).
                let answer = matches!(
                    frame.body,
                    Some(
                        server_frame::Body::SendResult(_)
                            | server_frame::Body::GroupResult(_)
                            | server_frame::Body::MessageInfo(_)
                            | server_frame::Body::Error(_)
                    )
                );
                if !answer {
                    if deliveries.send(frame).await.is_err() {
                        break Event::Closed {
                            code: 1006,
                            reason: "a delivery could not be processed".into(),
                        };
                    }
                    continue;
                }
                if let Err(error) = handle_frame(&sink, &pending, frame).await {
                    break Event::Closed { code: 1006, reason: error.to_string() };
                }
            }
        }
    };
    // The delivery task stops between deliveries (never in the middle of one); what it had
    // not acknowledged comes again on the next connection.
    stop.send_replace(true);
    drop(deliveries);
    let end = match worker.await {
        Ok(Err(error)) if matches!(&end, Event::Closed { code: 1006, .. }) => Event::Closed {
            code: 1006,
            reason: error.to_string(),
        },
        _ => end,
    };
    for (_, waiter) in lock_pending(&pending).drain() {
        // The waiter may have given up; nothing to tell then.
        let _ = waiter.send(Err(ClientError::Transport("connection closed".into())));
    }
    // The application may have stopped listening; the connection is over either way.
    let _ = sink.events.send(end).await;
}

/// Frames read but not yet processed, per connection.
const DELIVERY_QUEUE: usize = 1024;

/// Processes the frames other than answers in the order they arrived; deliveries are
/// decrypted and saved, handed over, then acknowledged (the ack goes to the writing loop).
/// Ends when the connection does (`stop`, or the queue closing), or with the error of a
/// delivery that could not be processed.
async fn run_deliveries(
    client: Client,
    mut queued: mpsc::Receiver<courier_protocol::v1::ServerFrame>,
    sink: Arc<Sink>,
    acks: mpsc::Sender<ClientFrame>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    pending: Pending,
) -> ClientResult<()> {
    let mut batch: Vec<courier_protocol::v1::ServerFrame> = Vec::with_capacity(DELIVERY_BATCH);
    loop {
        let first = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => return Ok(()),
            frame = queued.recv() => match frame {
                Some(frame) => frame,
                None => return Ok(()),
            },
        };
        // What has arrived meanwhile goes in the same turn: one save for all its deliveries.
        batch.push(first);
        while batch.len() < DELIVERY_BATCH
            && let Ok(frame) = queued.try_recv()
        {
            batch.push(frame);
        }
        let mut received: Vec<(u64, Option<Event>)> = Vec::new();
        for frame in batch.drain(..) {
            match frame.body {
                Some(server_frame::Body::Delivery(delivery)) => {
                    let event = match delivery.content {
                        Some(content) => client.receive_unsaved(content)?,
                        None => None,
                    };
                    received.push((delivery.seq, event));
                }
                _ => {
                    // Events keep the order of the frames: the deliveries before this one first.
                    if !deliver(&client, &sink, &acks, std::mem::take(&mut received)).await? {
                        return Ok(());
                    }
                    handle_frame(&sink, &pending, frame).await?;
                }
            }
        }
        if !deliver(&client, &sink, &acks, received).await? {
            return Ok(());
        }
    }
}

/// Deliveries processed in one turn, at most.
const DELIVERY_BATCH: usize = 64;

/// Saves what `received` changed (the messages are kept until handed over), hands the events
/// over in order, then acknowledges up to the last seq. `false` if the connection is gone.
async fn deliver(
    client: &Client,
    sink: &Sink,
    acks: &mpsc::Sender<ClientFrame>,
    received: Vec<(u64, Option<Event>)>,
) -> ClientResult<bool> {
    let Some(last) = received.iter().map(|(seq, _)| *seq).max() else {
        return Ok(true);
    };
    // Decrypted and saved before anything else.
    client.persist().await?;
    if let Some(keys) = client.replenish_if_low().await? {
        let api = client.api().clone();
        let credentials = client.credentials();
        tokio::spawn(async move {
            if let Err(error) = api.add_one_time_prekeys(&credentials, keys).await {
                tracing::warn!(%error, "could not upload new one-time prekeys");
            }
        });
    }
    // The events are handed over before the ack: an ack means "the application has it". That
    // they were handed over goes to the store with the next save: until then the stored copy
    // is harmless, since only a delivery without an ack comes again.
    for event in received.into_iter().filter_map(|(_, event)| event) {
        sink.hand_over(event.clone()).await?;
        client.handed_over(&event);
    }
    let ack = ClientFrame {
        request_id: 0,
        body: Some(client_frame::Body::Ack(Ack { up_to_seq: last })),
    };
    Ok(acks.send(ack).await.is_ok())
}

async fn handle_frame(
    sink: &Sink,
    pending: &Pending,
    frame: courier_protocol::v1::ServerFrame,
) -> ClientResult<()> {
    let Some(body) = frame.body else {
        return Ok(());
    };
    let event = match body {
        server_frame::Body::SendResult(result) => {
            answer(pending, result.request_id, Answer::Send(result));
            None
        }
        server_frame::Body::GroupResult(result) => {
            answer(pending, result.request_id, Answer::Group(result));
            None
        }
        server_frame::Body::MessageInfo(info) => {
            answer(pending, info.request_id, Answer::Info(info));
            None
        }
        server_frame::Body::Error(error) => {
            let code = ErrorCode::try_from(error.code).unwrap_or(ErrorCode::Internal);
            let waiter = lock_pending(pending).remove(&error.request_id);
            match waiter {
                Some(waiter) => {
                    let _ = waiter.send(Err(ClientError::Rejected {
                        code,
                        message: error.message,
                    }));
                    None
                }
                None => Some(Event::ServerError {
                    code,
                    message: error.message,
                }),
            }
        }
        // Deliveries go to `run_deliveries`; one here would be a bug of `run_connection`.
        server_frame::Body::Delivery(_) => None,
        server_frame::Body::QueueEmpty(_) => Some(Event::QueueEmpty),
        server_frame::Body::Typing(typing) => {
            typing.from_user.parse().ok().map(|from| Event::Typing {
                from,
                typing: typing.typing,
            })
        }
        server_frame::Body::Presence(presence) => {
            presence.user.parse().ok().map(|user| Event::Presence {
                user,
                online: presence.online,
                last_seen_ms: presence.last_seen_ms,
            })
        }
        server_frame::Body::Welcome(_) | server_frame::Body::Pong(_) => None,
    };
    match event {
        Some(event) => sink.hand_over(event).await,
        None => Ok(()),
    }
}
