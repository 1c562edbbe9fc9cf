//! The high-level SDK: register a device, then chat end-to-end encrypted.
//!
//! [`Client`] owns the device's state (keys, sessions), kept durable by a [`StateStore`], and
//! talks to the HTTP API; [`Client::connect`] opens the gateway and returns a [`Messenger`] to
//! send with and a stream of [`Event`]s. Received messages are decrypted, de-duplicated by
//! (sender device, message id), written to the local history and the store, handed to the
//! application (a [`DeliveryHandler`], or the event stream) and only then acknowledged to the
//! server, so a crash at any point re-delivers rather than loses; a message re-delivered before
//! the application had it is handed over again. Groups (Sender Keys, group events) are in
//! [`crate::group_chat`].
//!
//! State changes are saved as described in [`crate::state`]: [`Client::persist`] writes every
//! change made so far, one save at a time, before the operation that made them goes on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use courier_crypto::{
    IdentityKeyPair, MemoryPreKeyStore, MessageKind, OneTimePreKeyPair, PreKeyBundle,
    PublicIdentity, Session, SignedPreKeyPair,
};
use courier_protocol::http::{
    DirectoryEntry, IdentityKeys, OneTimePreKey, SignedPreKey, UploadKeys, VerifyCode,
};
use courier_protocol::v1::{Content, DeviceCiphertext, ErrorCode, ReceiptType, content, delivery};
use courier_protocol::{DeviceAddress, DeviceId, GroupId, UserId};
use prost::Message as _;
use tokio::sync::mpsc;

use crate::api::{Api, Credentials};
use crate::connection::{ConnectOptions, GatewayConnection};
use crate::error::{ClientError, ClientResult};
use crate::group_chat::{KEY_MESSAGE_PREFIX, accept_sender_key};
use crate::groups::GroupEventKind;
use crate::history::{History, HistoryRecord};
pub use crate::messenger::Messenger;
use crate::state::{DeviceState, PendingDelivery, StateFile, StateStore};

/// One-time prekeys generated at registration and at each replenishment.
pub const PREKEY_BATCH: u32 = 100;
/// Replenish when fewer than this many one-time prekeys remain.
pub const PREKEY_LOW_WATER: usize = 25;

/// Something that happened on the connection.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A 1:1 message, decrypted, seen for the first time (or again, if it was redelivered
    /// before the application had it).
    Message {
        from: UserId,
        device: DeviceId,
        id: String,
        sent_at_ms: u64,
        /// A human-readable rendering of `content` ([`crate::rich::summary`]): the body of a
        /// text, the body and numbered choices of an interactive message, and so on.
        text: String,
        /// Everything the sender sent: the body (text, reaction, interactive, interactive
        /// reply, template), `context` (the message this one replies to) and `sender_name`.
        content: Box<Content>,
    },
    /// Messages this device sent were delivered to or read by a device of `by`; `group` is
    /// set for messages sent to a group.
    Receipt {
        kind: ReceiptKind,
        by: UserId,
        ids: Vec<String>,
        group: Option<GroupId>,
    },
    /// A group message, decrypted, seen for the first time. Group messages are text only.
    GroupMessage {
        group: GroupId,
        from: UserId,
        device: DeviceId,
        id: String,
        sent_at_ms: u64,
        text: String,
    },
    /// A group changed (reported once per revision). The stored description is updated.
    GroupEvent {
        group: GroupId,
        revision: u64,
        kind: GroupEventKind,
        /// Who made the change (`None` if the server named nobody valid).
        actor: Option<UserId>,
        /// The users the change is about.
        users: Vec<UserId>,
    },
    /// A member device's Sender Key for a group arrived (its group messages can now be read).
    GroupKeyReceived {
        group: GroupId,
        from: DeviceAddress,
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

impl Event {
    /// Whether this event comes from a delivery (and is handed to a [`DeliveryHandler`]).
    pub fn is_delivery(&self) -> bool {
        matches!(
            self,
            Event::Message { .. }
                | Event::Receipt { .. }
                | Event::GroupMessage { .. }
                | Event::GroupEvent { .. }
                | Event::GroupKeyReceived { .. }
                | Event::DecryptionFailed { .. }
        )
    }
}

/// Takes every event a delivery produces before the delivery is acknowledged
/// ([`Client::connect_with_handler`]).
///
/// The connection task awaits [`DeliveryHandler::deliver`] and acknowledges the delivery only
/// after it returned `Ok`. On `Err` the connection closes without the acknowledgement: the
/// server delivers the message again on the next connection, and a message (1:1 or group) that
/// was decrypted but never handed over successfully is handed over again then, also after a
/// crash (it is kept in the state store until then). A handler therefore sees a message at
/// least once, and more than once only if it failed or the process died after it returned.
#[async_trait]
pub trait DeliveryHandler: Send + Sync + 'static {
    async fn deliver(&self, event: &Event) -> ClientResult<()>;
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
    /// The server had a message with this id from this device already (a resend).
    pub duplicate: bool,
}

/// A registered device.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) api: Api,
    pub(crate) store: Arc<dyn StateStore>,
    pub(crate) history: History,
    state: Mutex<DeviceState>,
    /// One save at a time (see [`Client::persist`]).
    saving: tokio::sync::Mutex<()>,
    /// The state version the store holds durably.
    durable: AtomicU64,
}

impl Client {
    /// Asks the server to send a verification code to `phone`.
    pub async fn request_code(server: &str, phone: &str) -> ClientResult<u64> {
        Ok(Api::new(server)?.request_code(phone).await?.expires_in_secs)
    }

    /// Proves `phone` with `code`, creates this device's keys, registers them and saves the
    /// state to `file` (the history goes next to it).
    pub async fn register(
        server: &str,
        phone: &str,
        code: &str,
        device_name: &str,
        file: StateFile,
    ) -> ClientResult<Client> {
        let history = history_of(&file);
        Client::register_in(server, phone, code, device_name, Arc::new(file), history).await
    }

    /// [`Client::register`] with the state in `store` (no local history).
    pub async fn register_with_store(
        server: &str,
        phone: &str,
        code: &str,
        device_name: &str,
        store: Arc<dyn StateStore>,
    ) -> ClientResult<Client> {
        Client::register_in(server, phone, code, device_name, store, History::disabled()).await
    }

    async fn register_in(
        server: &str,
        phone: &str,
        code: &str,
        device_name: &str,
        store: Arc<dyn StateStore>,
        history: History,
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
        let client = Client::from_state(api, store, history, state);
        client.persist().await?;
        Ok(client)
    }

    /// Opens a device registered earlier in `file`.
    pub fn open(file: StateFile) -> ClientResult<Client> {
        let state = file.read()?.ok_or_else(not_registered)?;
        let api = Api::new(state.server())?;
        let history = history_of(&file);
        Ok(Client::from_state(api, Arc::new(file), history, state))
    }

    /// Opens a device registered earlier in `store` (no local history).
    pub async fn open_with_store(store: Arc<dyn StateStore>) -> ClientResult<Client> {
        let state = store.load().await?.ok_or_else(not_registered)?;
        let api = Api::new(state.server())?;
        Ok(Client::from_state(api, store, History::disabled(), state))
    }

    pub(crate) fn from_state(
        api: Api,
        store: Arc<dyn StateStore>,
        history: History,
        state: DeviceState,
    ) -> Client {
        Client {
            inner: Arc::new(Inner {
                api,
                store,
                history,
                state: Mutex::new(state),
                saving: tokio::sync::Mutex::new(()),
                durable: AtomicU64::new(0),
            }),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, DeviceState> {
        // A panic while holding the lock leaves state whose changes are still marked unsaved.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes every state change made so far durable. Saves run one at a time; a save takes
    /// the changed items with their values at that moment, so whoever waits here gets its own
    /// changes written by the save it runs or by one that started after them (group commit),
    /// and no older value is ever written after a newer one.
    pub(crate) async fn persist(&self) -> ClientResult<()> {
        let wanted = self.state().version();
        if self.inner.durable.load(Ordering::Acquire) >= wanted {
            return Ok(());
        }
        let _turn = self.inner.saving.lock().await;
        if self.inner.durable.load(Ordering::Acquire) >= wanted {
            // Written by the save that ran while this one waited.
            return Ok(());
        }
        let (change, version) = self.state().take_change();
        if !change.is_empty()
            && let Err(error) = self.inner.store.save(&change).await
        {
            self.state().mark_unsaved(&change);
            return Err(error);
        }
        self.inner.durable.fetch_max(version, Ordering::AcqRel);
        Ok(())
    }

    pub fn address(&self) -> DeviceAddress {
        self.state().address()
    }

    pub fn user_id(&self) -> UserId {
        self.address().user
    }

    pub fn phone(&self) -> String {
        self.state().phone().to_owned()
    }

    pub fn identity(&self) -> PublicIdentity {
        self.state().identity().public()
    }

    /// The push name put on every outgoing message, if any.
    pub fn sender_name(&self) -> Option<String> {
        self.state().sender_name().map(str::to_owned)
    }

    /// Sets (or, with `None` or an empty name, clears) the push name put on every outgoing
    /// message.
    pub async fn set_sender_name(&self, name: Option<&str>) -> ClientResult<()> {
        let name = name.map(str::trim).filter(|name| !name.is_empty());
        self.state().set_sender_name(name.map(str::to_owned));
        self.persist().await
    }

    /// The phone number of `user`, if it is among the local contacts.
    pub fn contact_phone(&self, user: UserId) -> Option<String> {
        let state = self.state();
        state
            .contacts()
            .iter()
            .find(|(_, id)| **id == user)
            .map(|(phone, _)| phone.clone())
    }

    pub fn credentials(&self) -> Credentials {
        self.state().credentials().clone()
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
        if let Some(user) = self.state().contacts().get(&phone) {
            return Ok(*user);
        }
        let entry = self.inner.api.lookup(&self.credentials(), &phone).await?;
        self.state().add_contact(phone, entry.user_id);
        self.persist().await?;
        Ok(entry.user_id)
    }

    /// The directory entry (phone number, devices) of `user`; the number is added to the
    /// local contacts.
    pub async fn lookup_user(&self, user: UserId) -> ClientResult<DirectoryEntry> {
        let entry = self
            .inner
            .api
            .lookup_user(&self.credentials(), user)
            .await?;
        let known = self.state().contacts().get(&entry.phone) == Some(&entry.user_id);
        if !known {
            self.state().add_contact(entry.phone.clone(), entry.user_id);
            self.persist().await?;
        }
        Ok(entry)
    }

    /// Opens the gateway. Events arrive on the receiver until the connection closes.
    pub async fn connect(&self) -> ClientResult<(Messenger, mpsc::Receiver<Event>)> {
        self.connect_with(&ConnectOptions::default()).await
    }

    pub async fn connect_with(
        &self,
        options: &ConnectOptions,
    ) -> ClientResult<(Messenger, mpsc::Receiver<Event>)> {
        self.open_gateway(options, None).await
    }

    /// Opens the gateway with a handler that takes every event a delivery produces (messages,
    /// receipts, group messages and events, decryption failures) before the delivery is
    /// acknowledged; see [`DeliveryHandler`]. Those events go to the handler only; the
    /// receiver gets the others (typing, presence, queue empty, server errors, the close).
    pub async fn connect_with_handler(
        &self,
        options: &ConnectOptions,
        handler: Arc<dyn DeliveryHandler>,
    ) -> ClientResult<(Messenger, mpsc::Receiver<Event>)> {
        self.open_gateway(options, Some(handler)).await
    }

    async fn open_gateway(
        &self,
        options: &ConnectOptions,
        handler: Option<Arc<dyn DeliveryHandler>>,
    ) -> ClientResult<(Messenger, mpsc::Receiver<Event>)> {
        let url = match &options.server {
            Some(server) => crate::api::Api::new(server)?.gateway_url(),
            None => self.inner.api.gateway_url(),
        };
        let (connection, _welcome) =
            GatewayConnection::connect(&url, &self.credentials(), options).await?;
        Ok(Messenger::start(self.clone(), connection, handler))
    }

    /// Makes sure there is a session with every device of `user`, fetching bundles for the
    /// devices given (or all, if `None`).
    pub(crate) async fn ensure_sessions(
        &self,
        user: UserId,
        only: Option<&[DeviceId]>,
    ) -> ClientResult<()> {
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
        {
            let mut state = self.state();
            for bundle in bundles {
                let address = DeviceAddress::new(user, bundle.device_id);
                let bundle = crypto_bundle(&bundle)?;
                let session = Session::initiate(state.identity(), &bundle)?;
                state.install_session(address, session);
            }
        }
        self.persist().await
    }

    /// Encrypts `plaintext` for every device of `user` we have a session with; the advanced
    /// sessions are saved before the ciphertexts are returned.
    pub(crate) async fn encrypt_for(
        &self,
        user: UserId,
        plaintext: &[u8],
    ) -> ClientResult<Vec<DeviceCiphertext>> {
        let ciphertexts = {
            let mut state = self.state();
            let mut ciphertexts = Vec::new();
            for (device, set) in state.user_sessions_mut(user) {
                let (kind, body) = set.current().encrypt(plaintext)?;
                ciphertexts.push(DeviceCiphertext {
                    device_id: device,
                    r#type: kind.wire_type(),
                    body,
                });
            }
            ciphertexts
        };
        // Saved before anything leaves: a message key is never used twice after a crash.
        self.persist().await?;
        Ok(ciphertexts)
    }

    pub(crate) fn has_session_with(&self, user: UserId) -> bool {
        !self.state().session_devices(user).is_empty()
    }

    /// The devices of `user` this device has sessions with.
    pub(crate) fn session_devices(state: &DeviceState, user: UserId) -> Vec<DeviceId> {
        state.session_devices(user)
    }

    pub(crate) async fn drop_sessions(
        &self,
        user: UserId,
        devices: &[DeviceId],
    ) -> ClientResult<()> {
        {
            let mut state = self.state();
            for device in devices {
                state.remove_session(DeviceAddress::new(user, *device));
            }
        }
        self.persist().await
    }

    /// Decrypts and records one delivery in memory only; returns the event to report, if any.
    /// The caller saves ([`Client::persist`]) before it hands the event over or acknowledges
    /// the delivery, then calls [`Client::handed_over`] once the application has it.
    pub(crate) fn receive_unsaved(
        &self,
        content: delivery::Content,
    ) -> ClientResult<Option<Event>> {
        let event = match content {
            delivery::Content::Envelope(envelope) => self.receive_envelope(envelope)?,
            delivery::Content::Receipt(receipt) => self.receive_receipt(receipt)?,
            delivery::Content::GroupEnvelope(envelope) => {
                self.receive_group_envelope_now(envelope)?
            }
            delivery::Content::GroupEvent(event) => self.receive_group_event(event)?,
            // Resolved by the server before delivery; never meant for a client.
            delivery::Content::StoredGroupRef(_) => None,
        };
        Ok(event)
    }

    /// The application has `event`: a message in it is no longer kept for a redelivery. The
    /// change is written with the next save (if the process dies first, a redelivery, which
    /// the server makes only without an acknowledgement, hands it over again).
    pub(crate) fn handed_over(&self, event: &Event) {
        let mut state = self.state();
        match event {
            Event::Message {
                from, device, id, ..
            } => state.handed_over(None, DeviceAddress::new(*from, *device), id),
            Event::GroupMessage {
                group,
                from,
                device,
                id,
                ..
            } => state.handed_over(Some(*group), DeviceAddress::new(*from, *device), id),
            _ => {}
        }
    }

    fn receive_receipt(
        &self,
        mut receipt: courier_protocol::v1::Receipt,
    ) -> ClientResult<Option<Event>> {
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
        // A group id that does not parse is reported as none rather than dropped.
        let group: Option<GroupId> = receipt.group_id.parse().ok();
        if group.is_none() {
            // Receipts for Sender Key distributions are bookkeeping, not news.
            receipt
                .client_message_ids
                .retain(|id| !id.starts_with(KEY_MESSAGE_PREFIX));
            if receipt.client_message_ids.is_empty() {
                return Ok(None);
            }
        }
        // Group statuses count per member, so the record names who gave the receipt.
        let member = group.map(|_| by.to_string());
        for id in &receipt.client_message_ids {
            self.inner.history.append(&HistoryRecord::status(
                id,
                receipt.timestamp_ms,
                status,
                member.clone(),
            ))?;
        }
        Ok(Some(Event::Receipt {
            kind,
            by,
            ids: receipt.client_message_ids,
            group,
        }))
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
            // Redelivered after a lost ack: already decrypted and recorded. Handed over again
            // only if the application never had it.
            return Ok(state.pending(None, sender, &id).and_then(pending_event));
        }
        // Order matters for exactly-once: history first, then the state that marks the message
        // seen. A crash in between re-delivers it; the history drops the repeat when read.
        let decrypted = decrypt(&mut state, sender, kind, &envelope.ciphertext);
        let content = match decrypted.map(|p| (Content::decode(p.as_slice()), p)) {
            Ok((Ok(content), plaintext)) => Ok((content, plaintext)),
            Ok((Err(error), _)) => Err(format!("undecodable content: {error}")),
            Err(error) => Err(error.to_string()),
        };
        let event = match content {
            Ok((content, _)) if content.body.is_none() => {
                // A body this version does not know (a newer client's feature).
                state.remember(sender, &id);
                Err("unsupported content".to_owned())
            }
            Ok((
                Content {
                    body: Some(content::Body::SenderKey(key)),
                    ..
                },
                _,
            )) => {
                state.remember(sender, &id);
                accept_sender_key(&mut state, sender, &key)
            }
            Ok((content, plaintext)) => {
                let text = crate::rich::summary(&content);
                let mut record = HistoryRecord::message(
                    &id,
                    envelope.timestamp_ms,
                    false,
                    user.to_string(),
                    &text,
                );
                if !crate::rich::is_plain_text(&content) {
                    record = record.with_content(&content);
                }
                self.inner.history.append(&record)?;
                state.remember_pending(PendingDelivery {
                    from: sender,
                    group: None,
                    id: id.clone(),
                    sent_at_ms: envelope.timestamp_ms,
                    content: plaintext,
                });
                Ok(Some(Event::Message {
                    from: user,
                    device: envelope.sender_device,
                    id: id.clone(),
                    sent_at_ms: envelope.timestamp_ms,
                    text,
                    content: Box::new(content),
                }))
            }
            Err(error) => {
                state.remember(sender, &id);
                Err(error)
            }
        };
        drop(state);
        match event {
            Ok(event) => Ok(event),
            Err(error) => failed(error),
        }
    }

    /// New one-time prekeys, if few remain locally; they are saved before being returned for
    /// upload.
    pub(crate) async fn replenish_if_low(&self) -> ClientResult<Option<Vec<OneTimePreKey>>> {
        let public = {
            let mut state = self.state();
            if state.prekeys().one_time_prekey_count() >= PREKEY_LOW_WATER {
                return Ok(None);
            }
            let first = state.next_one_time_id();
            let keys = OneTimePreKeyPair::generate_batch(first, PREKEY_BATCH)?;
            let public = keys.iter().map(one_time_json).collect();
            state.add_one_time_prekeys(keys, first.wrapping_add(PREKEY_BATCH));
            public
        };
        self.persist().await?;
        Ok(Some(public))
    }
}

/// The event of a message kept because the application had not had it yet.
pub(crate) fn pending_event(pending: &PendingDelivery) -> Option<Event> {
    let content = Content::decode(pending.content.as_slice()).ok()?;
    let text = crate::rich::summary(&content);
    Some(match pending.group {
        None => Event::Message {
            from: pending.from.user,
            device: pending.from.device,
            id: pending.id.clone(),
            sent_at_ms: pending.sent_at_ms,
            text,
            content: Box::new(content),
        },
        Some(group) => Event::GroupMessage {
            group,
            from: pending.from.user,
            device: pending.from.device,
            id: pending.id.clone(),
            sent_at_ms: pending.sent_at_ms,
            text,
        },
    })
}

fn not_registered() -> ClientError {
    ClientError::Usage("no registered device here; register first".into())
}

/// The history next to a state file (none for a memory-only one).
fn history_of(file: &StateFile) -> History {
    match file.dir() {
        Some(dir) => History::at(dir),
        None => History::disabled(),
    }
}

/// Decrypts a pairwise message, starting a new session for a PreKey message when needed.
fn decrypt(
    state: &mut DeviceState,
    sender: DeviceAddress,
    kind: MessageKind,
    body: &[u8],
) -> Result<Vec<u8>, ClientError> {
    if let Some(set) = state.session_mut(sender) {
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
    let (session, plaintext) = state.accept_session(body)?;
    state.install_session(sender, session);
    Ok(plaintext)
}

pub(crate) fn now_ms() -> u64 {
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
