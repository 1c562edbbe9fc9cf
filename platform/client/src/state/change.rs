//! The pieces a device's state is stored in ([`StateKey`], [`StateItem`]) and what one save
//! writes ([`StateChange`]). See the module header of [`crate::state`] for the rules.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use courier_crypto::{IdentityKeyPair, OneTimePreKeyPair, SignedPreKeyPair};
use courier_protocol::{DeviceAddress, GroupId, UserId};
use serde::{Deserialize, Serialize};

use crate::api::Credentials;
use crate::error::{ClientError, ClientResult};
use crate::groups::GroupState;
use crate::sessions::SessionSet;

/// The name of one independently stored item of a device's state.
///
/// As text (`Display`/`FromStr`, for stores that key records by string): `core`,
/// `prekey/<id>`, `session/<user>.<device>`, `contact/<phone>`, `group/<group id>`,
/// `seen/<mark>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StateKey {
    /// Server, phone, credentials, identity, signed prekeys, counters, sender name.
    Core,
    /// One one-time prekey pair, by id.
    OneTimePreKey(u32),
    /// The sessions with one remote device.
    Session(DeviceAddress),
    /// A phone number learned from the directory.
    Contact(String),
    /// One group: description, own Sender Key, other members' Sender Keys.
    Group(GroupId),
    /// One received message (`<user>.<device>/<id>`, or `<group>/<user>.<device>/<id>`).
    Seen(String),
}

impl fmt::Display for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateKey::Core => write!(f, "core"),
            StateKey::OneTimePreKey(id) => write!(f, "prekey/{id}"),
            StateKey::Session(address) => write!(f, "session/{address}"),
            StateKey::Contact(phone) => write!(f, "contact/{phone}"),
            StateKey::Group(group) => write!(f, "group/{group}"),
            StateKey::Seen(mark) => write!(f, "seen/{mark}"),
        }
    }
}

impl FromStr for StateKey {
    type Err = ClientError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ClientError::Storage(format!("bad state key {text:?}"));
        if text == "core" {
            return Ok(StateKey::Core);
        }
        let (kind, rest) = text.split_once('/').ok_or_else(bad)?;
        Ok(match kind {
            "prekey" => StateKey::OneTimePreKey(rest.parse().map_err(|_| bad())?),
            "session" => StateKey::Session(parse_address(rest).ok_or_else(bad)?),
            "contact" => StateKey::Contact(rest.to_owned()),
            "group" => StateKey::Group(rest.parse().map_err(|_| bad())?),
            "seen" => StateKey::Seen(rest.to_owned()),
            _ => return Err(bad()),
        })
    }
}

/// `<user>.<device>` as written by `DeviceAddress`'s `Display`.
pub fn parse_address(text: &str) -> Option<DeviceAddress> {
    let (user, device) = text.rsplit_once('.')?;
    Some(DeviceAddress::new(user.parse().ok()?, device.parse().ok()?))
}

/// What rarely changes: written at registration, on a prekey replenishment (the id counter)
/// and on a profile change.
#[derive(Clone, Serialize, Deserialize)]
pub struct CoreState {
    pub server: String,
    pub phone: String,
    pub credentials: Credentials,
    pub identity: IdentityKeyPair,
    pub signed_prekeys: Vec<SignedPreKeyPair>,
    pub signed_prekey_id: u32,
    pub next_one_time_id: u32,
    #[serde(default)]
    pub sender_name: Option<String>,
}

/// A received message the application has not been handed yet: kept with its seen mark so
/// that a redelivery (the handler failed, or the process died before it ran) is reported
/// again instead of being dropped as a duplicate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDelivery {
    pub from: DeviceAddress,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupId>,
    pub id: String,
    pub sent_at_ms: u64,
    /// The decrypted `Content`, protobuf-encoded.
    #[serde(with = "base64_bytes")]
    pub content: Vec<u8>,
}

/// A received message, remembered for de-duplication.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenMark {
    /// Increases with every mark: marks are forgotten oldest first, also after a reload.
    pub seq: u64,
    pub mark: String,
    /// Set until the message has been handed to the application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingDelivery>,
}

/// The value stored under a [`StateKey`]. `serde` gives the encoding a store may use
/// ([`StateItem::to_json`]); stores that encrypt values encrypt these bytes.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateItem {
    Core(Box<CoreState>),
    OneTimePreKey(OneTimePreKeyPair),
    Session {
        address: DeviceAddress,
        sessions: Box<SessionSet>,
    },
    Contact {
        phone: String,
        user: UserId,
    },
    Group {
        id: GroupId,
        state: Box<GroupState>,
    },
    Seen(SeenMark),
}

impl StateItem {
    /// The key this item is stored under.
    pub fn key(&self) -> StateKey {
        match self {
            StateItem::Core(_) => StateKey::Core,
            StateItem::OneTimePreKey(key) => StateKey::OneTimePreKey(key.id),
            StateItem::Session { address, .. } => StateKey::Session(*address),
            StateItem::Contact { phone, .. } => StateKey::Contact(phone.clone()),
            StateItem::Group { id, .. } => StateKey::Group(*id),
            StateItem::Seen(seen) => StateKey::Seen(seen.mark.clone()),
        }
    }

    pub fn to_json(&self) -> ClientResult<Vec<u8>> {
        serde_json::to_vec(self)
            .map_err(|e| ClientError::Storage(format!("cannot encode {}: {e}", self.key())))
    }

    pub fn from_json(bytes: &[u8]) -> ClientResult<StateItem> {
        serde_json::from_slice(bytes)
            .map_err(|e| ClientError::Storage(format!("cannot decode a state item: {e}")))
    }
}

/// What one save makes durable: every key that changed since the previous save, with its
/// current value, or `None` if the item is gone (a consumed prekey, a dropped session, a
/// forgotten seen mark). Keys not in the change are untouched.
#[derive(Clone, Default)]
pub struct StateChange {
    pub items: BTreeMap<StateKey, Option<StateItem>>,
}

impl StateChange {
    /// A change that writes every item of a state (a first save).
    pub fn all(items: Vec<StateItem>) -> StateChange {
        StateChange {
            items: items
                .into_iter()
                .map(|item| (item.key(), Some(item)))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The items written.
    pub fn puts(&self) -> impl Iterator<Item = &StateItem> {
        self.items.values().flatten()
    }

    /// The keys deleted.
    pub fn deletes(&self) -> impl Iterator<Item = &StateKey> {
        self.items
            .iter()
            .filter(|(_, item)| item.is_none())
            .map(|(key, _)| key)
    }
}

impl fmt::Debug for StateChange {
    /// Keys only: the values hold private keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (key, item) in &self.items {
            match item {
                Some(_) => list.entry(&format_args!("put {key}")),
                None => list.entry(&format_args!("delete {key}")),
            };
        }
        list.finish()
    }
}

/// `serde(with)` for bytes as base64 text.
pub(crate) mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
