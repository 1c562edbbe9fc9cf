//! What a device keeps: credentials, private keys, sessions, groups with their Sender Keys,
//! contacts, the ids of messages already seen (so a redelivered message is shown once) and the
//! messages not yet handed to the application.
//!
//! # Persistence: a store of items, saved incrementally
//!
//! A [`Client`](crate::Client) holds its [`DeviceState`] in memory and a [`StateStore`] that
//! keeps it durable. The state is a set of independent items ([`StateItem`]) under keys
//! ([`StateKey`]):
//!
//! | key | item | written when |
//! |---|---|---|
//! | `core` | [`CoreState`]: server, phone, credentials, identity, signed prekeys, counters, sender name | registration, prekey replenishment, profile change |
//! | `prekey/<id>` | one one-time prekey pair | generated (100 at a time); deleted when a PreKey message consumes it |
//! | `session/<user>.<device>` | the [`SessionSet`] with one remote device | every encrypt to and decrypt from that device |
//! | `contact/<phone>` | the user id of a phone number | a directory lookup |
//! | `group/<id>` | one group's [`GroupState`](crate::groups::GroupState) | group events, key distribution, group encrypt/decrypt |
//! | `seen/<mark>` | a [`SeenMark`]: order, and the message itself until it was handed over | every received message; deleted 50,000 messages later |
//!
//! Every mutation marks its keys changed. A save ([`StateStore::save`]) gets a [`StateChange`]:
//! exactly the keys changed since the previous save, each with its current value or `None`
//! (deleted). So one encrypt writes one `session/…` item, one decrypt writes its session, its
//! seen mark and perhaps a consumed `prekey/…`, whatever the number of sessions.
//!
//! Rules the client keeps ([`crate::client`]):
//! - **Durable first.** A change is saved before the ciphertext it concerns leaves the device
//!   (a message key is never used twice after a crash) and before a delivery is acknowledged.
//! - **One save at a time, newest values.** Saves are serialized by an async lock; a save takes
//!   the changed keys with their values at that moment, under the state lock, then writes them
//!   without holding it. An operation waits until a save that started after its own mutation
//!   has finished, so concurrent operations share one save (group commit) and an older value
//!   can never be written after a newer one.
//! - **A failed save is retried**: its keys are marked changed again, and the operation that
//!   needed it fails.
//!
//! Implementations: [`StateFile`] (the CLI's `device.json`, written whole), [`MemoryStore`]
//! (items in memory); the business API keeps the items in its own database. All pass the
//! [`conformance`] suite.

mod change;
pub mod conformance;
mod file;
mod memory;
mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use courier_crypto::{
    CryptoError, IdentityKeyPair, MemoryPreKeyStore, OneTimePreKeyPair, PreKeyStore, Session,
    SignedPreKeyPair,
};
use courier_protocol::{DeviceAddress, DeviceId, GroupId, UserId};
use serde::{Deserialize, Serialize};

use crate::api::Credentials;
use crate::error::{ClientError, ClientResult};
use crate::groups::Groups;
use crate::sessions::SessionSet;

pub use change::{
    CoreState, PendingDelivery, SeenMark, StateChange, StateItem, StateKey, parse_address,
};
pub use file::{StateFile, write_atomically};
pub use memory::MemoryStore;
pub use store::StateStore;

/// How many (sender device, message id) pairs are remembered for de-duplication.
pub const SEEN_CAPACITY: usize = 50_000;

/// Everything a registered device knows. The serde form is the CLI's `device.json`.
#[derive(Clone, Serialize, Deserialize)]
pub struct DeviceState {
    server: String,
    phone: String,
    credentials: Credentials,
    identity: IdentityKeyPair,
    prekeys: MemoryPreKeyStore,
    signed_prekey_id: u32,
    next_one_time_id: u32,
    /// The push name put on every outgoing message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sender_name: Option<String>,
    /// Sessions by remote device address (`<user>.<device>`).
    sessions: BTreeMap<String, SessionSet>,
    /// Phone number -> user id, learned from the directory.
    #[serde(default)]
    contacts: BTreeMap<String, UserId>,
    /// Groups by id: last description, own Sender Key, other members' Sender Keys.
    #[serde(default)]
    groups: Groups,
    /// Seen 1:1 messages as `<user>.<device>/<id>`, group messages as
    /// `<group>/<user>.<device>/<id>`; one capacity for both. Oldest first.
    #[serde(default)]
    seen_order: VecDeque<String>,
    /// Seen messages not yet handed to the application, by mark.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pending: BTreeMap<String, PendingDelivery>,
    /// Mark -> its seq.
    #[serde(skip)]
    seen: HashMap<String, u64>,
    #[serde(skip)]
    next_seen_seq: u64,
    /// Keys changed since the last save was taken.
    #[serde(skip)]
    dirty: BTreeSet<StateKey>,
    /// Counts mutations; a save covers every mutation up to the version it was taken at.
    #[serde(skip)]
    version: u64,
}

impl std::fmt::Debug for DeviceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceState")
            .field("address", &self.address())
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

/// The session keys of `user`'s devices, as a range of the sessions map.
fn user_range(user: UserId) -> std::ops::Range<String> {
    // '/' follows '.', so this covers exactly the keys starting with "<user>.".
    format!("{user}.")..format!("{user}/")
}

fn mark(sender: DeviceAddress, message_id: &str) -> String {
    format!("{sender}/{message_id}")
}

fn group_mark(group: GroupId, sender: DeviceAddress, message_id: &str) -> String {
    format!("{group}/{sender}/{message_id}")
}

impl DeviceState {
    /// A new device's state; every item counts as changed (the first save writes them all).
    pub fn new(
        server: String,
        phone: String,
        credentials: Credentials,
        identity: IdentityKeyPair,
        prekeys: MemoryPreKeyStore,
        signed_prekey_id: u32,
        next_one_time_id: u32,
    ) -> Self {
        let mut state = DeviceState {
            server,
            phone,
            credentials,
            identity,
            prekeys,
            signed_prekey_id,
            next_one_time_id,
            sender_name: None,
            sessions: BTreeMap::new(),
            contacts: BTreeMap::new(),
            groups: Groups::default(),
            seen_order: VecDeque::new(),
            pending: BTreeMap::new(),
            seen: HashMap::new(),
            next_seen_seq: 0,
            dirty: BTreeSet::new(),
            version: 0,
        };
        for item in state.items() {
            state.touch(item.key());
        }
        state
    }

    // ---- reading ------------------------------------------------------------------------------

    pub fn address(&self) -> DeviceAddress {
        self.credentials.address
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn phone(&self) -> &str {
        &self.phone
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    pub fn identity(&self) -> &IdentityKeyPair {
        &self.identity
    }

    pub fn sender_name(&self) -> Option<&str> {
        self.sender_name.as_deref()
    }

    pub fn prekeys(&self) -> &MemoryPreKeyStore {
        &self.prekeys
    }

    pub fn next_one_time_id(&self) -> u32 {
        self.next_one_time_id
    }

    /// Sessions by remote device address (`<user>.<device>`).
    pub fn sessions(&self) -> &BTreeMap<String, SessionSet> {
        &self.sessions
    }

    /// The devices of `user` this device has sessions with.
    pub fn session_devices(&self, user: UserId) -> Vec<DeviceId> {
        self.sessions
            .range(user_range(user))
            .filter_map(|(key, _)| Some(parse_address(key)?.device))
            .collect()
    }

    pub fn contacts(&self) -> &BTreeMap<String, UserId> {
        &self.contacts
    }

    pub fn groups(&self) -> &Groups {
        &self.groups
    }

    /// Whether this message was received before.
    pub fn has_seen(&self, sender: DeviceAddress, message_id: &str) -> bool {
        self.seen.contains_key(&mark(sender, message_id))
    }

    /// Whether this group message was received before.
    pub fn has_seen_group(&self, group: GroupId, sender: DeviceAddress, message_id: &str) -> bool {
        self.seen
            .contains_key(&group_mark(group, sender, message_id))
    }

    /// A message received but not yet handed to the application.
    pub fn pending(
        &self,
        group: Option<GroupId>,
        sender: DeviceAddress,
        message_id: &str,
    ) -> Option<&PendingDelivery> {
        let key = match group {
            Some(group) => group_mark(group, sender, message_id),
            None => mark(sender, message_id),
        };
        self.pending.get(&key)
    }

    /// The seen marks, oldest first.
    pub fn seen_marks(&self) -> impl Iterator<Item = &str> {
        self.seen_order.iter().map(String::as_str)
    }

    // ---- changing (every mutation marks its keys) ---------------------------------------------

    fn touch(&mut self, key: StateKey) {
        self.dirty.insert(key);
        self.version += 1;
    }

    /// The current value of `key` (`None`: there is no such item).
    fn item(&self, key: &StateKey) -> Option<StateItem> {
        Some(match key {
            StateKey::Core => StateItem::Core(Box::new(self.core())),
            StateKey::OneTimePreKey(id) => {
                StateItem::OneTimePreKey(self.prekeys.one_time_prekey(*id)?)
            }
            StateKey::Session(address) => StateItem::Session {
                address: *address,
                sessions: Box::new(self.sessions.get(&session_key(*address))?.clone()),
            },
            StateKey::Contact(phone) => StateItem::Contact {
                phone: phone.clone(),
                user: *self.contacts.get(phone)?,
            },
            StateKey::Group(id) => StateItem::Group {
                id: *id,
                state: Box::new(self.groups.get(*id)?.clone()),
            },
            StateKey::Seen(mark) => StateItem::Seen(SeenMark {
                seq: *self.seen.get(mark)?,
                mark: mark.clone(),
                pending: self.pending.get(mark).cloned(),
            }),
        })
    }

    fn core(&self) -> CoreState {
        CoreState {
            server: self.server.clone(),
            phone: self.phone.clone(),
            credentials: self.credentials.clone(),
            identity: self.identity.clone(),
            signed_prekeys: self.prekeys.signed_prekeys().cloned().collect(),
            signed_prekey_id: self.signed_prekey_id,
            next_one_time_id: self.next_one_time_id,
            sender_name: self.sender_name.clone(),
        }
    }

    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// The change a save writes (the keys changed so far, current values) and the version it
    /// covers; the keys count as saved from now on.
    pub(crate) fn take_change(&mut self) -> (StateChange, u64) {
        let keys = std::mem::take(&mut self.dirty);
        let items = keys
            .into_iter()
            .map(|key| {
                let item = self.item(&key);
                (key, item)
            })
            .collect();
        (StateChange { items }, self.version)
    }

    /// A save of these keys failed: they are written with the next one.
    pub(crate) fn mark_unsaved(&mut self, change: &StateChange) {
        self.dirty.extend(change.items.keys().cloned());
    }

    pub(crate) fn set_sender_name(&mut self, name: Option<String>) {
        self.sender_name = name;
        self.touch(StateKey::Core);
    }

    pub(crate) fn add_contact(&mut self, phone: String, user: UserId) {
        self.touch(StateKey::Contact(phone.clone()));
        self.contacts.insert(phone, user);
    }

    /// The sessions with `address`, counted as changed.
    pub(crate) fn session_mut(&mut self, address: DeviceAddress) -> Option<&mut SessionSet> {
        let key = session_key(address);
        if !self.sessions.contains_key(&key) {
            return None;
        }
        self.touch(StateKey::Session(address));
        self.sessions.get_mut(&key)
    }

    /// The sessions with every device of `user`, each counted as changed.
    pub(crate) fn user_sessions_mut(
        &mut self,
        user: UserId,
    ) -> impl Iterator<Item = (DeviceId, &mut SessionSet)> {
        let touched: Vec<DeviceAddress> = self
            .sessions
            .range(user_range(user))
            .filter_map(|(key, _)| parse_address(key))
            .collect();
        for address in touched {
            self.touch(StateKey::Session(address));
        }
        self.sessions
            .range_mut(user_range(user))
            .filter_map(|(key, set)| Some((parse_address(key)?.device, set)))
    }

    /// Makes `session` the current one with `address` (keeping the old one as a previous).
    pub(crate) fn install_session(&mut self, address: DeviceAddress, session: Session) {
        self.touch(StateKey::Session(address));
        match self.sessions.get_mut(&session_key(address)) {
            Some(set) => set.install(session),
            None => {
                self.sessions
                    .insert(session_key(address), SessionSet::new(session));
            }
        }
    }

    pub(crate) fn remove_session(&mut self, address: DeviceAddress) {
        if self.sessions.remove(&session_key(address)).is_some() {
            self.touch(StateKey::Session(address));
        }
    }

    /// Accepts a PreKey message as a new session (not installed); a consumed one-time prekey
    /// counts as changed.
    pub(crate) fn accept_session(
        &mut self,
        body: &[u8],
    ) -> Result<(Session, Vec<u8>), CryptoError> {
        let mut tracked = TrackedPreKeys {
            inner: &mut self.prekeys,
            taken: None,
        };
        let accepted = Session::accept(&self.identity, &mut tracked, body);
        if let Some(id) = tracked.taken {
            self.touch(StateKey::OneTimePreKey(id));
        }
        accepted
    }

    /// Adds freshly generated one-time prekeys; the next batch starts at `next_id`.
    pub(crate) fn add_one_time_prekeys(&mut self, keys: Vec<OneTimePreKeyPair>, next_id: u32) {
        for key in &keys {
            self.touch(StateKey::OneTimePreKey(key.id));
        }
        self.prekeys.add_one_time_prekeys(keys);
        self.next_one_time_id = next_id;
        self.touch(StateKey::Core);
    }

    /// The groups, with `group` counted as changed (every change of the groups concerns one).
    pub(crate) fn groups_mut(&mut self, group: GroupId) -> &mut Groups {
        self.touch(StateKey::Group(group));
        &mut self.groups
    }

    /// Records a message as received; `false` if it was recorded before.
    pub fn remember(&mut self, sender: DeviceAddress, message_id: &str) -> bool {
        self.remember_key(mark(sender, message_id))
    }

    /// Records a group message as received; `false` if it was recorded before.
    pub fn remember_group(
        &mut self,
        group: GroupId,
        sender: DeviceAddress,
        message_id: &str,
    ) -> bool {
        self.remember_key(group_mark(group, sender, message_id))
    }

    /// Records a message as received and keeps it until [`Self::handed_over`] says the
    /// application has it; `false` if it was recorded before.
    pub(crate) fn remember_pending(&mut self, delivery: PendingDelivery) -> bool {
        let key = match delivery.group {
            Some(group) => group_mark(group, delivery.from, &delivery.id),
            None => mark(delivery.from, &delivery.id),
        };
        if !self.remember_key(key.clone()) {
            return false;
        }
        self.pending.insert(key, delivery);
        true
    }

    /// The application has this message: it is no longer kept. Saved with the next save.
    pub(crate) fn handed_over(&mut self, group: Option<GroupId>, sender: DeviceAddress, id: &str) {
        let key = match group {
            Some(group) => group_mark(group, sender, id),
            None => mark(sender, id),
        };
        if self.pending.remove(&key).is_some() {
            self.touch(StateKey::Seen(key));
        }
    }

    fn remember_key(&mut self, key: String) -> bool {
        if self.seen.contains_key(&key) {
            return false;
        }
        if self.seen_order.len() >= SEEN_CAPACITY
            && let Some(oldest) = self.seen_order.pop_front()
        {
            self.seen.remove(&oldest);
            self.pending.remove(&oldest);
            self.touch(StateKey::Seen(oldest));
        }
        self.seen.insert(key.clone(), self.next_seen_seq);
        self.next_seen_seq += 1;
        self.seen_order.push_back(key.clone());
        self.touch(StateKey::Seen(key));
        true
    }

    /// After deserializing the file: the index and seqs of the seen marks.
    fn rebuild_index(&mut self) {
        self.seen = self
            .seen_order
            .iter()
            .enumerate()
            .map(|(seq, key)| (key.clone(), seq as u64))
            .collect();
        self.next_seen_seq = self.seen_order.len() as u64;
        self.pending.retain(|key, _| self.seen.contains_key(key));
    }

    // ---- items ----------------------------------------------------------------------------------

    /// Every item of this state (what a first save writes).
    pub fn items(&self) -> Vec<StateItem> {
        let mut keys = vec![StateKey::Core];
        keys.extend(
            self.prekeys
                .one_time_prekeys()
                .map(|key| StateKey::OneTimePreKey(key.id)),
        );
        keys.extend(
            self.sessions
                .keys()
                .filter_map(|key| parse_address(key))
                .map(StateKey::Session),
        );
        keys.extend(self.contacts.keys().cloned().map(StateKey::Contact));
        keys.extend(self.groups.ids().map(StateKey::Group));
        keys.extend(self.seen_order.iter().cloned().map(StateKey::Seen));
        keys.iter().filter_map(|key| self.item(key)).collect()
    }

    /// A state assembled from stored items (in any order); there must be a `core` item.
    pub fn from_items(items: impl IntoIterator<Item = StateItem>) -> ClientResult<DeviceState> {
        let mut core = None;
        let mut rest = Vec::new();
        for item in items {
            match item {
                StateItem::Core(found) => core = Some(found),
                other => rest.push(other),
            }
        }
        let core = core.ok_or_else(|| ClientError::Storage("the state has no core item".into()))?;
        let mut state = DeviceState::from_core(*core);
        let mut change = StateChange::default();
        for item in rest {
            change.items.insert(item.key(), Some(item));
        }
        state.apply(&change);
        Ok(state)
    }

    fn from_core(core: CoreState) -> DeviceState {
        let mut prekeys = MemoryPreKeyStore::new();
        for key in core.signed_prekeys {
            prekeys.add_signed_prekey(key);
        }
        DeviceState {
            server: core.server,
            phone: core.phone,
            credentials: core.credentials,
            identity: core.identity,
            prekeys,
            signed_prekey_id: core.signed_prekey_id,
            next_one_time_id: core.next_one_time_id,
            sender_name: core.sender_name,
            sessions: BTreeMap::new(),
            contacts: BTreeMap::new(),
            groups: Groups::default(),
            seen_order: VecDeque::new(),
            pending: BTreeMap::new(),
            seen: HashMap::new(),
            next_seen_seq: 0,
            dirty: BTreeSet::new(),
            version: 0,
        }
    }

    /// Applies a saved change, as a store that keeps the whole state does. Nothing counts as
    /// changed afterwards.
    pub fn apply(&mut self, change: &StateChange) {
        let mut new_marks = Vec::new();
        for (key, item) in &change.items {
            match (key, item) {
                (StateKey::Core, Some(StateItem::Core(core))) => self.apply_core(core),
                (StateKey::OneTimePreKey(_), Some(StateItem::OneTimePreKey(pair))) => {
                    self.prekeys.add_one_time_prekeys([pair.clone()]);
                }
                (StateKey::OneTimePreKey(id), None) => {
                    self.prekeys.take_one_time_prekey(*id);
                }
                (StateKey::Session(address), Some(StateItem::Session { sessions, .. })) => {
                    self.sessions
                        .insert(session_key(*address), (**sessions).clone());
                }
                (StateKey::Session(address), None) => {
                    self.sessions.remove(&session_key(*address));
                }
                (StateKey::Contact(phone), Some(StateItem::Contact { user, .. })) => {
                    self.contacts.insert(phone.clone(), *user);
                }
                (StateKey::Contact(phone), None) => {
                    self.contacts.remove(phone);
                }
                (StateKey::Group(id), Some(StateItem::Group { state, .. })) => {
                    self.groups.insert(*id, (**state).clone());
                }
                (StateKey::Group(id), None) => self.groups.remove(*id),
                (StateKey::Seen(mark), Some(StateItem::Seen(seen))) => {
                    match &seen.pending {
                        Some(pending) => self.pending.insert(mark.clone(), pending.clone()),
                        None => self.pending.remove(mark),
                    };
                    if !self.seen.contains_key(mark) {
                        new_marks.push(seen);
                    }
                }
                (StateKey::Seen(mark), None) => {
                    if self.seen.remove(mark).is_some() {
                        self.pending.remove(mark);
                        match self.seen_order.front() {
                            Some(front) if front == mark => {
                                self.seen_order.pop_front();
                            }
                            _ => self.seen_order.retain(|m| m != mark),
                        }
                    }
                }
                (key, Some(item)) => {
                    tracing::warn!(%key, item = %item.key(), "state item under the wrong key; ignored");
                }
                (StateKey::Core, None) => {
                    tracing::warn!("a change deleting the core of the state; ignored");
                }
            }
        }
        // New marks join in their order, so that the oldest are still forgotten first.
        new_marks.sort_by_key(|seen| seen.seq);
        for seen in new_marks {
            self.seen.insert(seen.mark.clone(), seen.seq);
            self.seen_order.push_back(seen.mark.clone());
            self.next_seen_seq = self.next_seen_seq.max(seen.seq + 1);
        }
        self.dirty.clear();
    }

    fn apply_core(&mut self, core: &CoreState) {
        self.server = core.server.clone();
        self.phone = core.phone.clone();
        self.credentials = core.credentials.clone();
        self.identity = core.identity.clone();
        let old: Vec<u32> = self.prekeys.signed_prekeys().map(|key| key.id).collect();
        for id in old {
            self.prekeys.remove_signed_prekey(id);
        }
        for key in &core.signed_prekeys {
            self.prekeys.add_signed_prekey(key.clone());
        }
        self.signed_prekey_id = core.signed_prekey_id;
        self.next_one_time_id = core.next_one_time_id;
        self.sender_name = core.sender_name.clone();
    }
}

/// The prekeys of a device, noting which one-time prekey a PreKey message consumed.
struct TrackedPreKeys<'a> {
    inner: &'a mut MemoryPreKeyStore,
    taken: Option<u32>,
}

impl PreKeyStore for TrackedPreKeys<'_> {
    fn signed_prekey(&self, id: u32) -> Option<SignedPreKeyPair> {
        self.inner.signed_prekey(id)
    }

    fn one_time_prekey(&self, id: u32) -> Option<OneTimePreKeyPair> {
        self.inner.one_time_prekey(id)
    }

    fn take_one_time_prekey(&mut self, id: u32) -> Option<OneTimePreKeyPair> {
        let taken = self.inner.take_one_time_prekey(id);
        if taken.is_some() {
            self.taken = Some(id);
        }
        taken
    }
}

pub fn session_key(address: DeviceAddress) -> String {
    address.to_string()
}

#[cfg(test)]
mod tests;
