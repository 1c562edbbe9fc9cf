//! The high-level SDK: register a device, then chat end-to-end encrypted.
//!
//! [`Client`] owns the device's state (keys, sessions) and talks to the HTTP API;
//! [`Client::connect`] opens the gateway and returns a [`Messenger`] to send with and a stream
//! of [`Event`]s. Received messages are decrypted, de-duplicated by (sender device, message id),
//! written to the local history and state, and only then acknowledged to the server, so a crash
//! at any point re-delivers rather than loses.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use courier_crypto::{
    IdentityKeyPair, MemoryPreKeyStore, MessageKind, OneTimePreKeyPair, PreKeyBundle,
    PublicIdentity, Session, SignedPreKeyPair,
};
use courier_protocol::http::{IdentityKeys, OneTimePreKey, SignedPreKey, UploadKeys, VerifyCode};
use courier_protocol::v1::{
    Ack, ClientFrame, Content, DeviceCiphertext, ErrorCode, ReceiptType, SendMessage, SendReceipt,
    SendResult, SetPresencePrivacy, SubscribePresence, Text, Typing, Visibility, client_frame,
    content, delivery, server_frame,
};
use courier_protocol::{DeviceAddress, DeviceId, UserId};
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};

use crate::api::{Api, Credentials};
use crate::connection::{ConnectOptions, GatewayConnection, Incoming};
use crate::error::{ClientError, ClientResult};
use crate::history::{History, HistoryRecord};
use crate::sessions::SessionSet;
use crate::state::{DeviceState, StateFile, session_key};

/// One-time prekeys generated at registration and at each replenishment.
pub const PREKEY_BATCH: u32 = 100;
/// Replenish when fewer than this many one-time prekeys remain.
pub const PREKEY_LOW_WATER: usize = 25;

/// Something that happened on the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A message, decrypted, seen for the first time.
    Message {
        from: UserId,
        device: DeviceId,
        id: String,
        sent_at_ms: u64,
        text: String,
    },
    /// Messages this device sent were delivered to or read by a device of `by`.
    Receipt {
        kind: ReceiptKind,
        by: UserId,
        ids: Vec<String>,
    },
    Typing {
        from: UserId,
        typing: bool,
    },
    Presence {
        user: UserId,
        online: bool,
        last_seen_ms: u64,
    },
    /// Everything queued while this device was away has been delivered.
    QueueEmpty,
    /// A message could not be decrypted (it is acknowledged and dropped).
    DecryptionFailed {
        from: DeviceAddress,
        id: String,
        error: String,
    },
    /// The server reported an error not tied to a request.
    ServerError {
        code: ErrorCode,
        message: String,
    },
    /// The connection ended.
    Closed {
        code: u16,
        reason: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptKind {
    Delivered,
    Read,
}

/// The result of a send: the server has the message ("sent").
#[derive(Clone, Debug)]
pub struct Sent {
    pub id: String,
    pub server_timestamp_ms: u64,
    pub duplicate: bool,
}

/// A registered device.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    api: Api,
    file: StateFile,
    history: History,
    state: Mutex<DeviceState>,
}

impl Client {
    /// Asks the server to send a verification code to `phone`.
    pub async fn request_code(server: &str, phone: &str) -> ClientResult<u64> {
        Ok(Api::new(server)?.request_code(phone).await?.expires_in_secs)
    }

    /// Proves `phone` with `code`, creates this device's keys, registers them and saves the
    /// state to `file`.
    pub async fn register(
        server: &str,
        phone: &str,
        code: &str,
        device_name: &str,
        file: StateFile,
    ) -> ClientResult<Client> {
        let api = Api::new(server)?;
        let identity = IdentityKeyPair::generate()?;
        let signed = SignedPreKeyPair::generate(&identity, 1)?;
        let one_time = OneTimePreKeyPair::generate_batch(1, PREKEY_BATCH)?;
        let keys = UploadKeys {
            identity: identity_json(&identity.public()),
            signed_prekey: signed_json(&signed),
            one_time_prekeys: one_time.iter().map(one_time_json).collect(),
        };
        let request = VerifyCode {
            phone: phone.to_owned(),
            code: code.to_owned(),
            device_name: Some(device_name.to_owned()),
            keys,
        };
        let answer = api.verify(&request).await?;
        let mut prekeys = MemoryPreKeyStore::new();
        prekeys.add_signed_prekey(signed);
        prekeys.add_one_time_prekeys(one_time);
        let state = DeviceState::new(
            api.base().to_owned(),
            phone.to_owned(),
            Credentials {
                address: DeviceAddress::new(answer.user_id, answer.device_id),
                password: answer.password,
            },
            identity,
            prekeys,
            1,
            PREKEY_BATCH + 1,
        );
        file.save(&state)?;
        Ok(Client::from_state(api, file, state))
    }

    /// Opens a device registered earlier.
    pub fn open(file: StateFile) -> ClientResult<Client> {
        let state = file.load()?.ok_or_else(|| {
            ClientError::Usage("no registered device here; register first".into())
        })?;
        let api = Api::new(&state.server)?;
        Ok(Client::from_state(api, file, state))
    }

    fn from_state(api: Api, file: StateFile, state: DeviceState) -> Client {
        let history = match file.dir() {
            Some(dir) => History::at(dir),
            None => History::disabled(),
        };
        Client {
            inner: Arc::new(Inner {
                api,
                file,
                history,
                state: Mutex::new(state),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, DeviceState> {
        // A panic while holding the lock leaves state that was consistent at the last save.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn address(&self) -> DeviceAddress {
        self.state().address()
    }

    pub fn user_id(&self) -> UserId {
        self.address().user
    }

    pub fn phone(&self) -> String {
        self.state().phone.clone()
    }

    pub fn identity(&self) -> PublicIdentity {
        self.state().identity.public()
    }

    pub fn credentials(&self) -> Credentials {
        self.state().credentials.clone()
    }

    pub fn api(&self) -> &Api {
        &self.inner.api
    }

    pub fn history(&self) -> &History {
        &self.inner.history
    }

    /// The user id registered with `phone` (cached in the local contacts).
    pub async fn lookup(&self, phone: &str) -> ClientResult<UserId> {
        let phone = courier_protocol::PhoneNumber::parse(phone)
            .map_err(|e| ClientError::Usage(e.to_string()))?
            .to_string();
        if let Some(user) = self.state().contacts.get(&phone) {
            return Ok(*user);
        }
        let entry = self.inner.api.lookup(&self.credentials(), &phone).await?;
        let mut state = self.state();
        state.contacts.insert(phone, entry.user_id);
        self.inner.file.save(&state)?;
        Ok(entry.user_id)
    }

    /// Opens the gateway. Events arrive on the receiver until the connection closes.
    pub async fn connect(&self) -> ClientResult<(Messenger, mpsc::Receiver<Event>)> {
        self.connect_with(&ConnectOptions::default()).await
    }

    pub async fn connect_with(
        &self,
        options: &ConnectOptions,
    ) -> ClientResult<(Messenger, mpsc::Receiver<Event>)> {
        let url = self.inner.api.gateway_url();
        let (connection, _welcome) =
            GatewayConnection::connect(&url, &self.credentials(), options).await?;
        let (events_tx, events_rx) = mpsc::channel(1024);
        let (frames_tx, frames_rx) = mpsc::channel(256);
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let task = tokio::spawn(run_connection(
            self.clone(),
            connection,
            frames_rx,
            events_tx,
            Arc::clone(&pending),
        ));
        let messenger = Messenger {
            client: self.clone(),
            frames: frames_tx,
            pending,
            next_request: AtomicU64::new(1),
            task,
        };
        Ok((messenger, events_rx))
    }

    /// Makes sure there is a session with every device of `user`, fetching bundles for the
    /// devices given (or all, if `None`).
    async fn ensure_sessions(&self, user: UserId, only: Option<&[DeviceId]>) -> ClientResult<()> {
        let bundles = match only {
            None => {
                self.inner
                    .api
                    .bundles(&self.credentials(), user, None)
                    .await?
                    .devices
            }
            Some(devices) => {
                let mut all = Vec::new();
                for device in devices {
                    let mut found = self
                        .inner
                        .api
                        .bundles(&self.credentials(), user, Some(*device))
                        .await?
                        .devices;
                    all.append(&mut found);
                }
                all
            }
        };
        let mut state = self.state();
        for bundle in bundles {
            let bundle_device = bundle.device_id;
            let bundle = crypto_bundle(&bundle)?;
            let session = Session::initiate(&state.identity, &bundle)?;
            let key = session_key(DeviceAddress::new(user, bundle_device));
            match state.sessions.get_mut(&key) {
                Some(set) => set.install(session),
                None => {
                    state.sessions.insert(key, SessionSet::new(session));
                }
            }
        }
        self.inner.file.save(&state)?;
        Ok(())
    }

    /// Encrypts `plaintext` for every device of `user` we have a session with.
    fn encrypt_for(&self, user: UserId, plaintext: &[u8]) -> ClientResult<Vec<DeviceCiphertext>> {
        let mut state = self.state();
        let prefix = format!("{user}.");
        let mut ciphertexts = Vec::new();
        for (key, set) in state.sessions.iter_mut() {
            let Some(device) = key.strip_prefix(&prefix) else {
                continue;
            };
            let device: DeviceId = device
                .parse()
                .map_err(|_| ClientError::Storage(format!("bad session key {key}")))?;
            let (kind, body) = set.current().encrypt(plaintext)?;
            ciphertexts.push(DeviceCiphertext {
                device_id: device,
                r#type: kind.wire_type(),
                body,
            });
        }
        // Saved before anything leaves: a message key is never used twice after a crash.
        self.inner.file.save(&state)?;
        Ok(ciphertexts)
    }

    fn has_session_with(&self, user: UserId) -> bool {
        let prefix = format!("{user}.");
        self.state().sessions.keys().any(|k| k.starts_with(&prefix))
    }

    fn drop_sessions(&self, user: UserId, devices: &[DeviceId]) -> ClientResult<()> {
        let mut state = self.state();
        for device in devices {
            state
                .sessions
                .remove(&session_key(DeviceAddress::new(user, *device)));
        }
        self.inner.file.save(&state)
    }

    /// Decrypts and records one delivery; returns the event to report, if any.
    fn receive(&self, content: delivery::Content) -> ClientResult<Option<Event>> {
        match content {
            delivery::Content::Envelope(envelope) => self.receive_envelope(envelope),
            delivery::Content::Receipt(receipt) => {
                let by: UserId = receipt
                    .from_user
                    .parse()
                    .map_err(|_| ClientError::Protocol("receipt from a bad user id".into()))?;
                let kind = match ReceiptType::try_from(receipt.r#type) {
                    Ok(ReceiptType::Delivered) => ReceiptKind::Delivered,
                    Ok(ReceiptType::Read) => ReceiptKind::Read,
                    _ => return Ok(None),
                };
                let status = match kind {
                    ReceiptKind::Delivered => "delivered",
                    ReceiptKind::Read => "read",
                };
                for id in &receipt.client_message_ids {
                    self.inner.history.append(&HistoryRecord::Status {
                        id: id.clone(),
                        at_ms: receipt.timestamp_ms,
                        status: status.into(),
                    })?;
                }
                Ok(Some(Event::Receipt {
                    kind,
                    by,
                    ids: receipt.client_message_ids,
                }))
            }
        }
    }

    fn receive_envelope(
        &self,
        envelope: courier_protocol::v1::Envelope,
    ) -> ClientResult<Option<Event>> {
        let user: UserId = envelope
            .sender_user
            .parse()
            .map_err(|_| ClientError::Protocol("envelope from a bad user id".into()))?;
        let sender = DeviceAddress::new(user, envelope.sender_device);
        let id = envelope.client_message_id.clone();
        let failed = |error: String| {
            Ok(Some(Event::DecryptionFailed {
                from: sender,
                id: id.clone(),
                error,
            }))
        };
        let Some(kind) = MessageKind::from_wire_type(envelope.r#type) else {
            return failed("unknown ciphertext type".into());
        };
        let mut state = self.state();
        if state.has_seen(sender, &id) {
            // Redelivered after a lost ack: already decrypted and recorded.
            return Ok(None);
        }
        // Order matters for exactly-once: history first, then the state that marks the message
        // seen. A crash in between re-delivers it; the history drops the repeat when read.
        let decrypted = decrypt(&mut state, sender, kind, &envelope.ciphertext);
        let text = match decrypted.map(|p| Content::decode(p.as_slice())) {
            Ok(Ok(Content {
                body: Some(content::Body::Text(text)),
            })) => Ok(text.body),
            Ok(Ok(_)) => Err("unsupported content".to_owned()),
            Ok(Err(error)) => Err(format!("undecodable content: {error}")),
            Err(error) => Err(error.to_string()),
        };
        if let Ok(text) = &text {
            self.inner.history.append(&HistoryRecord::Message {
                id: id.clone(),
                at_ms: envelope.timestamp_ms,
                outgoing: false,
                peer: user.to_string(),
                text: text.clone(),
            })?;
        }
        state.remember(sender, &id);
        self.inner.file.save(&state)?;
        drop(state);
        let text = match text {
            Ok(text) => text,
            Err(error) => return failed(error),
        };
        Ok(Some(Event::Message {
            from: user,
            device: envelope.sender_device,
            id: envelope.client_message_id,
            sent_at_ms: envelope.timestamp_ms,
            text,
        }))
    }

    /// New one-time prekeys, if few remain locally; they are kept before being uploaded.
    fn replenish_if_low(&self) -> ClientResult<Option<Vec<OneTimePreKey>>> {
        let mut state = self.state();
        if state.prekeys.one_time_prekey_count() >= PREKEY_LOW_WATER {
            return Ok(None);
        }
        let first = state.next_one_time_id;
        let keys = OneTimePreKeyPair::generate_batch(first, PREKEY_BATCH)?;
        let public = keys.iter().map(one_time_json).collect();
        state.prekeys.add_one_time_prekeys(keys);
        state.next_one_time_id = first.wrapping_add(PREKEY_BATCH);
        self.inner.file.save(&state)?;
        Ok(Some(public))
    }
}

/// Decrypts a pairwise message, starting a new session for a PreKey message when needed.
fn decrypt(
    state: &mut DeviceState,
    sender: DeviceAddress,
    kind: MessageKind,
    body: &[u8],
) -> Result<Vec<u8>, ClientError> {
    let key = session_key(sender);
    if let Some(set) = state.sessions.get_mut(&key) {
        match set.decrypt(kind, body) {
            Ok(plaintext) => return Ok(plaintext),
            Err(courier_crypto::CryptoError::SessionMismatch) if kind == MessageKind::PreKey => {}
            Err(error) => return Err(error.into()),
        }
    }
    if kind != MessageKind::PreKey {
        return Err(ClientError::Crypto(courier_crypto::CryptoError::Malformed(
            "no session with the sender",
        )));
    }
    let identity = state.identity.clone();
    let (session, plaintext) = Session::accept(&identity, &mut state.prekeys, body)?;
    match state.sessions.get_mut(&key) {
        Some(set) => set.install(session),
        None => {
            state.sessions.insert(key, SessionSet::new(session));
        }
    }
    Ok(plaintext)
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<ClientResult<SendResult>>>>>;

fn lock_pending(
    pending: &Pending,
) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<ClientResult<SendResult>>>> {
    pending
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A connected device: sends messages and control frames.
pub struct Messenger {
    client: Client,
    frames: mpsc::Sender<ClientFrame>,
    pending: Pending,
    next_request: AtomicU64,
    task: tokio::task::JoinHandle<()>,
}

impl Messenger {
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends a text message to every device of `to`, end-to-end encrypted; returns once the
    /// server has queued it ("sent").
    pub async fn send_text(&self, to: UserId, text: &str) -> ClientResult<Sent> {
        let id = uuid::Uuid::new_v4().to_string();
        self.client.inner.history.append(&HistoryRecord::Message {
            id: id.clone(),
            at_ms: now_ms(),
            outgoing: true,
            peer: to.to_string(),
            text: text.to_owned(),
        })?;
        let plaintext = Content {
            body: Some(content::Body::Text(Text {
                body: text.to_owned(),
            })),
        }
        .encode_to_vec();
        let sent = self.send_content(to, &id, &plaintext).await?;
        self.client.inner.history.append(&HistoryRecord::Status {
            id: id.clone(),
            at_ms: sent.server_timestamp_ms,
            status: "sent".into(),
        })?;
        Ok(sent)
    }

    async fn send_content(&self, to: UserId, id: &str, plaintext: &[u8]) -> ClientResult<Sent> {
        if !self.client.has_session_with(to) {
            self.client.ensure_sessions(to, None).await?;
        }
        // A device mismatch (the recipient added or replaced a device) is repaired and retried.
        for _ in 0..3 {
            let ciphertexts = self.client.encrypt_for(to, plaintext)?;
            let frame = client_frame::Body::Send(SendMessage {
                recipient: to.to_string(),
                client_message_id: id.to_owned(),
                timestamp_ms: now_ms(),
                ciphertexts,
            });
            let result = self.request(frame).await?;
            match ErrorCode::try_from(result.status) {
                Ok(ErrorCode::Ok) => {
                    return Ok(Sent {
                        id: id.to_owned(),
                        server_timestamp_ms: result.server_timestamp_ms,
                        duplicate: result.duplicate,
                    });
                }
                Ok(ErrorCode::DeviceMismatch) => {
                    self.client.drop_sessions(to, &result.stale_devices)?;
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

    async fn expect_ok(&self, body: client_frame::Body) -> ClientResult<()> {
        let result = self.request(body).await?;
        match ErrorCode::try_from(result.status) {
            Ok(ErrorCode::Ok) => Ok(()),
            code => Err(ClientError::Rejected {
                code: code.unwrap_or(ErrorCode::Internal),
                message: result.message,
            }),
        }
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

    async fn request(&self, body: client_frame::Body) -> ClientResult<SendResult> {
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

/// Reads frames and writes queued client frames until the connection ends.
async fn run_connection(
    client: Client,
    mut connection: GatewayConnection,
    mut frames: mpsc::Receiver<ClientFrame>,
    events: mpsc::Sender<Event>,
    pending: Pending,
) {
    let end = loop {
        tokio::select! {
            outgoing = frames.recv() => {
                let Some(frame) = outgoing else {
                    connection.close().await;
                    break Event::Closed { code: 1000, reason: "closed by the client".into() };
                };
                if let Err(error) = connection.send(&frame).await {
                    break Event::Closed { code: 1006, reason: error.to_string() };
                }
            }
            incoming = connection.recv() => {
                let frame = match incoming {
                    Ok(Incoming::Frame(frame)) => frame,
                    Ok(Incoming::Closed { code, reason }) => break Event::Closed { code, reason },
                    Err(error) => break Event::Closed { code: 1006, reason: error.to_string() },
                };
                match handle_frame(&client, &mut connection, &events, &pending, frame).await {
                    Ok(()) => {}
                    Err(error) => break Event::Closed { code: 1006, reason: error.to_string() },
                }
            }
        }
    };
    for (_, waiter) in lock_pending(&pending).drain() {
        // The waiter may have given up; nothing to tell then.
        let _ = waiter.send(Err(ClientError::Transport("connection closed".into())));
    }
    // The application may have stopped listening; the connection is over either way.
    let _ = events.send(end).await;
}

async fn handle_frame(
    client: &Client,
    connection: &mut GatewayConnection,
    events: &mpsc::Sender<Event>,
    pending: &Pending,
    frame: courier_protocol::v1::ServerFrame,
) -> ClientResult<()> {
    let Some(body) = frame.body else {
        return Ok(());
    };
    let event = match body {
        server_frame::Body::SendResult(result) => {
            if let Some(waiter) = lock_pending(pending).remove(&result.request_id) {
                let _ = waiter.send(Ok(result));
            }
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
        server_frame::Body::Delivery(delivery) => {
            let seq = delivery.seq;
            let event = match delivery.content {
                Some(content) => client.receive(content)?,
                None => None,
            };
            if let Some(keys) = client.replenish_if_low()? {
                let api = client.api().clone();
                let credentials = client.credentials();
                tokio::spawn(async move {
                    if let Err(error) = api.add_one_time_prekeys(&credentials, keys).await {
                        tracing::warn!(%error, "could not upload new one-time prekeys");
                    }
                });
            }
            // The event is handed over before the ack: an ack means "the application has it".
            if let Some(event) = event
                && events.send(event).await.is_err()
            {
                return Err(ClientError::Transport("event receiver dropped".into()));
            }
            let ack = ClientFrame {
                request_id: 0,
                body: Some(client_frame::Body::Ack(Ack { up_to_seq: seq })),
            };
            connection.send(&ack).await?;
            return Ok(());
        }
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
    if let Some(event) = event
        && events.send(event).await.is_err()
    {
        return Err(ClientError::Transport("event receiver dropped".into()));
    }
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn identity_json(identity: &PublicIdentity) -> IdentityKeys {
    IdentityKeys {
        ed25519: identity.ed25519.to_vec(),
        x25519: identity.x25519.to_vec(),
    }
}

fn signed_json(key: &SignedPreKeyPair) -> SignedPreKey {
    SignedPreKey {
        id: key.id,
        public_key: key.public.to_vec(),
        signature: key.signature.to_vec(),
    }
}

fn one_time_json(key: &OneTimePreKeyPair) -> OneTimePreKey {
    OneTimePreKey {
        id: key.id,
        public_key: key.public.to_vec(),
    }
}

fn array<const N: usize>(what: &str, bytes: &[u8]) -> ClientResult<[u8; N]> {
    bytes
        .try_into()
        .map_err(|_| ClientError::Protocol(format!("{what} must be {N} bytes")))
}

/// The server's JSON bundle as the crypto crate's bundle.
fn crypto_bundle(bundle: &courier_protocol::http::PreKeyBundle) -> ClientResult<PreKeyBundle> {
    let one_time_prekey = match &bundle.one_time_prekey {
        Some(key) => Some((key.id, array("one_time_prekey", &key.public_key)?)),
        None => None,
    };
    Ok(PreKeyBundle {
        identity: PublicIdentity {
            ed25519: array("identity.ed25519", &bundle.identity.ed25519)?,
            x25519: array("identity.x25519", &bundle.identity.x25519)?,
        },
        signed_prekey_id: bundle.signed_prekey.id,
        signed_prekey: array("signed_prekey", &bundle.signed_prekey.public_key)?,
        signed_prekey_signature: array("signed_prekey.signature", &bundle.signed_prekey.signature)?,
        one_time_prekey,
    })
}
