//! The high-level SDK: register a device, then chat end-to-end encrypted.
//!
//! [`Client`] owns the device's state (keys, sessions) and talks to the HTTP API;
//! [`Client::connect`] opens the gateway and returns a [`Messenger`] to send with and a stream
//! of [`Event`]s. Received messages are decrypted, de-duplicated by (sender device, message id),
//! written to the local history and state, and only then acknowledged to the server, so a crash
//! at any point re-delivers rather than loses. Groups (Sender Keys, group events) are in
//! [`crate::group_chat`].

use std::sync::{Arc, Mutex, MutexGuard};

use courier_crypto::{
    IdentityKeyPair, MemoryPreKeyStore, MessageKind, OneTimePreKeyPair, PreKeyBundle,
    PublicIdentity, Session, SignedPreKeyPair,
};
use courier_protocol::http::{IdentityKeys, OneTimePreKey, SignedPreKey, UploadKeys, VerifyCode};
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
    /// Messages this device sent were delivered to or read by a device of `by`; `group` is
    /// set for messages sent to a group.
    Receipt {
        kind: ReceiptKind,
        by: UserId,
        ids: Vec<String>,
        group: Option<GroupId>,
    },
    /// A group message, decrypted, seen for the first time.
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
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) api: Api,
    pub(crate) file: StateFile,
    pub(crate) history: History,
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

    pub(crate) fn from_state(api: Api, file: StateFile, state: DeviceState) -> Client {
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

    pub(crate) fn state(&self) -> MutexGuard<'_, DeviceState> {
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

    /// The phone number of `user`, if it is among the local contacts.
    pub fn contact_phone(&self, user: UserId) -> Option<String> {
        let state = self.state();
        state
            .contacts
            .iter()
            .find(|(_, id)| **id == user)
            .map(|(phone, _)| phone.clone())
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
        let url = match &options.server {
            Some(server) => crate::api::Api::new(server)?.gateway_url(),
            None => self.inner.api.gateway_url(),
        };
        let (connection, _welcome) =
            GatewayConnection::connect(&url, &self.credentials(), options).await?;
        Ok(Messenger::start(self.clone(), connection))
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
    pub(crate) fn encrypt_for(
        &self,
        user: UserId,
        plaintext: &[u8],
    ) -> ClientResult<Vec<DeviceCiphertext>> {
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

    pub(crate) fn has_session_with(&self, user: UserId) -> bool {
        let prefix = format!("{user}.");
        self.state().sessions.keys().any(|k| k.starts_with(&prefix))
    }

    /// The devices of `user` this device has sessions with.
    pub(crate) fn session_devices(state: &DeviceState, user: UserId) -> Vec<DeviceId> {
        let prefix = format!("{user}.");
        state
            .sessions
            .keys()
            .filter_map(|key| key.strip_prefix(&prefix)?.parse().ok())
            .collect()
    }

    pub(crate) fn drop_sessions(&self, user: UserId, devices: &[DeviceId]) -> ClientResult<()> {
        let mut state = self.state();
        for device in devices {
            state
                .sessions
                .remove(&session_key(DeviceAddress::new(user, *device)));
        }
        self.inner.file.save(&state)
    }

    /// Decrypts and records one delivery; returns the event to report, if any.
    pub(crate) fn receive(&self, content: delivery::Content) -> ClientResult<Option<Event>> {
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
                // A group id that does not parse is reported as none rather than dropped.
                let group: Option<GroupId> = receipt.group_id.parse().ok();
                let mut receipt = receipt;
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
            delivery::Content::GroupEnvelope(envelope) => self.receive_group_envelope(envelope),
            delivery::Content::GroupEvent(event) => self.receive_group_event(event),
            // Resolved by the server before delivery; never meant for a client.
            delivery::Content::StoredGroupRef(_) => Ok(None),
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
        let body = match decrypted.map(|p| Content::decode(p.as_slice())) {
            Ok(Ok(Content {
                body: Some(body), ..
            })) => Ok(body),
            Ok(Ok(_)) => Err("unsupported content".to_owned()),
            Ok(Err(error)) => Err(format!("undecodable content: {error}")),
            Err(error) => Err(error.to_string()),
        };
        let event = match body {
            Ok(content::Body::Text(text)) => {
                self.inner.history.append(&HistoryRecord::message(
                    &id,
                    envelope.timestamp_ms,
                    false,
                    user.to_string(),
                    &text.body,
                ))?;
                Ok(Some(Event::Message {
                    from: user,
                    device: envelope.sender_device,
                    id: id.clone(),
                    sent_at_ms: envelope.timestamp_ms,
                    text: text.body,
                }))
            }
            Ok(content::Body::SenderKey(key)) => accept_sender_key(&mut state, sender, &key),
            Ok(_) => Err("unsupported content".to_owned()),
            Err(error) => Err(error),
        };
        state.remember(sender, &id);
        self.inner.file.save(&state)?;
        drop(state);
        match event {
            Ok(event) => Ok(event),
            Err(error) => failed(error),
        }
    }

    /// New one-time prekeys, if few remain locally; they are kept before being uploaded.
    pub(crate) fn replenish_if_low(&self) -> ClientResult<Option<Vec<OneTimePreKey>>> {
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
