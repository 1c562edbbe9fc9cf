//! Groups as one device knows them: the last [`GroupInfo`] seen of each group, this device's
//! Sender Key for it with the member devices it has reached, and the other members' Sender
//! Keys. Everything here is pure state kept in [`crate::state::DeviceState`]; the network side
//! is in [`crate::group_chat`].
//!
//! Rules:
//! - Information only moves forward: a [`GroupInfo`] replaces the stored one only if its
//!   revision is higher, and a `GroupEvent` is reported once (by revision).
//! - This device's Sender Key is replaced by a fresh one ("rotated") before the next group
//!   message once the membership shrank after the key was created (a member left or was
//!   removed), so that former members cannot read what follows.
//! - A Sender Key is distributed to every member device that does not hold it yet; which
//!   devices hold it is recorded per key, so a rotation starts the bookkeeping afresh.
//! - When this user leaves or is removed, every key of the group is dropped.

use std::collections::{BTreeMap, BTreeSet};

use courier_crypto::{GroupReceiver, GroupSender, SenderKeyDistribution};
use courier_protocol::v1;
use courier_protocol::{DeviceAddress, DeviceId, GroupId, UserId};
use serde::{Deserialize, Serialize};

use crate::error::{ClientError, ClientResult};

pub use courier_protocol::v1::GroupEventKind;

/// Who may change what in a group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSettings {
    /// Only admins change the subject and the settings.
    pub only_admins_edit_info: bool,
    /// Only admins add members.
    pub only_admins_add_members: bool,
}

/// One member of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    pub user: UserId,
    pub admin: bool,
    pub joined_at_ms: u64,
}

/// A group as the server last described it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub id: GroupId,
    pub subject: String,
    /// In the order they joined.
    pub members: Vec<GroupMember>,
    pub settings: GroupSettings,
    /// Shown to admins only.
    pub invite_code: Option<String>,
    /// Increases with every change.
    pub revision: u64,
    pub size_limit: u32,
    pub created_by: Option<UserId>,
    pub created_at_ms: u64,
}

impl GroupInfo {
    /// From the wire; a group or member id that is not a UUID is a protocol error.
    pub fn from_wire(info: v1::GroupInfo) -> ClientResult<GroupInfo> {
        let id = info
            .group_id
            .parse()
            .map_err(|_| ClientError::Protocol(format!("bad group id {:?}", info.group_id)))?;
        let members = info
            .members
            .into_iter()
            .map(|member| {
                let user = member.user.parse().map_err(|_| {
                    ClientError::Protocol(format!("bad member id {:?}", member.user))
                })?;
                Ok(GroupMember {
                    user,
                    admin: member.admin,
                    joined_at_ms: member.joined_at_ms,
                })
            })
            .collect::<ClientResult<Vec<_>>>()?;
        let settings = info.settings.unwrap_or_default();
        Ok(GroupInfo {
            id,
            subject: info.subject,
            members,
            settings: GroupSettings {
                only_admins_edit_info: settings.only_admins_edit_info,
                only_admins_add_members: settings.only_admins_add_members,
            },
            invite_code: (!info.invite_code.is_empty()).then_some(info.invite_code),
            revision: info.revision,
            size_limit: info.size_limit,
            created_by: info.created_by.parse().ok(),
            created_at_ms: info.created_at_ms,
        })
    }

    pub fn is_member(&self, user: UserId) -> bool {
        self.members.iter().any(|m| m.user == user)
    }

    pub fn is_admin(&self, user: UserId) -> bool {
        self.members.iter().any(|m| m.user == user && m.admin)
    }

    pub fn member_ids(&self) -> BTreeSet<UserId> {
        self.members.iter().map(|m| m.user).collect()
    }

    pub fn admins(&self) -> Vec<UserId> {
        self.members
            .iter()
            .filter(|m| m.admin)
            .map(|m| m.user)
            .collect()
    }
}

impl GroupSettings {
    pub fn to_wire(self) -> v1::GroupSettings {
        v1::GroupSettings {
            only_admins_edit_info: self.only_admins_edit_info,
            only_admins_add_members: self.only_admins_add_members,
        }
    }
}

/// Who has received and read one group message (the sender's "message info").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberReceipt {
    pub user: UserId,
    /// When a device of `user` received it; `None` if not yet.
    pub delivered_at_ms: Option<u64>,
    /// When `user` read it; `None` if not yet.
    pub read_at_ms: Option<u64>,
}

/// A `GroupEvent` as it applies to the stored state.
#[derive(Clone, Debug)]
pub struct GroupChange {
    pub group: GroupId,
    pub revision: u64,
    pub kind: GroupEventKind,
    pub actor: Option<UserId>,
    pub users: Vec<UserId>,
    /// The group after the change.
    pub info: Option<GroupInfo>,
}

impl GroupChange {
    /// The users this change took out of the group.
    pub fn departed(&self) -> Vec<UserId> {
        match self.kind {
            GroupEventKind::MembersRemoved => self.users.clone(),
            GroupEventKind::MemberLeft => {
                let mut users = self.users.clone();
                if let Some(actor) = self.actor
                    && !users.contains(&actor)
                {
                    users.push(actor);
                }
                users
            }
            _ => Vec::new(),
        }
    }
}

/// What [`Groups::prepare_sender`] did to this device's Sender Key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAction {
    /// The current key stays.
    Kept,
    /// There was none: a first key.
    Created,
    /// The membership shrank since the key was created: a fresh key replaces it.
    Rotated,
}

/// This device's Sender Key in one group and the member devices that hold it.
#[derive(Clone, Serialize, Deserialize)]
struct OwnSenderKey {
    sender: GroupSender,
    /// The group revision the key was created at; departures after it make it stale.
    created_at_revision: u64,
    /// Member devices the key was distributed to (and the server confirmed "sent").
    distributed_to: BTreeSet<DeviceAddress>,
    /// A member left or was removed after the key was created: rotate before the next send.
    stale: bool,
}

/// One group on this device.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct GroupState {
    /// The newest description seen (from a `GroupEvent`, a `GroupResult` or a refresh).
    #[serde(default)]
    pub info: Option<GroupInfo>,
    /// The revision of the last `GroupEvent` applied; older and repeated ones are not reported.
    #[serde(default)]
    pub last_event_revision: Option<u64>,
    #[serde(default)]
    sender: Option<OwnSenderKey>,
    /// Other members' Sender Keys, by sending device (`<user>.<device>`).
    #[serde(default)]
    receivers: BTreeMap<String, GroupReceiver>,
}

impl GroupState {
    fn drop_keys(&mut self) {
        self.sender = None;
        self.receivers.clear();
    }

    /// Marks the own key stale if the membership shrank at `revision`, after it was created.
    fn note_departure(&mut self, revision: u64) {
        if let Some(key) = self.sender.as_mut()
            && revision > key.created_at_revision
        {
            key.stale = true;
        }
    }
}

/// Every group this device knows, persisted with the device state.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Groups {
    groups: BTreeMap<GroupId, GroupState>,
}

fn receiver_key(sender: DeviceAddress) -> String {
    sender.to_string()
}

impl Groups {
    pub fn get(&self, group: GroupId) -> Option<&GroupState> {
        self.groups.get(&group)
    }

    /// The ids of every group kept (with or without a description).
    pub fn ids(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.groups.keys().copied()
    }

    /// Puts back a group loaded from a store.
    pub(crate) fn insert(&mut self, group: GroupId, state: GroupState) {
        self.groups.insert(group, state);
    }

    pub(crate) fn remove(&mut self, group: GroupId) {
        self.groups.remove(&group);
    }

    pub fn info(&self, group: GroupId) -> Option<&GroupInfo> {
        self.groups.get(&group).and_then(|g| g.info.as_ref())
    }

    /// Every group with a known description, in id order.
    pub fn infos(&self) -> impl Iterator<Item = &GroupInfo> {
        self.groups.values().filter_map(|g| g.info.as_ref())
    }

    /// Stores `info` if it is newer than what is known. A member missing from it that was in
    /// the previous description makes the own key stale; if `me` is no longer a member, the
    /// group's keys go. Returns whether it was newer.
    pub fn observe_info(&mut self, info: GroupInfo, me: UserId) -> bool {
        let state = self.groups.entry(info.id).or_default();
        if let Some(old) = &state.info {
            if old.revision >= info.revision {
                return false;
            }
            if old.members.iter().any(|m| !info.is_member(m.user)) {
                state.note_departure(info.revision);
            }
        }
        if !info.is_member(me) {
            state.drop_keys();
        }
        state.info = Some(info);
        true
    }

    /// Applies a `GroupEvent`. Returns `false` for an event applied before (a redelivery or an
    /// older revision), which is then not reported again.
    pub fn apply_event(&mut self, change: &GroupChange, me: UserId) -> bool {
        let state = self.groups.entry(change.group).or_default();
        if state
            .last_event_revision
            .is_some_and(|last| change.revision <= last)
        {
            return false;
        }
        state.last_event_revision = Some(change.revision);
        let departed = change.departed();
        if departed.contains(&me) {
            // Unless a newer description already has this user back in the group.
            let back = state
                .info
                .as_ref()
                .is_some_and(|info| info.revision > change.revision && info.is_member(me));
            if !back {
                state.drop_keys();
            }
        } else if !departed.is_empty() {
            state.note_departure(change.revision);
        }
        if let Some(info) = &change.info {
            self.observe_info(info.clone(), me);
        }
        true
    }

    /// Forgets every key of `group` (this user left).
    pub fn drop_keys(&mut self, group: GroupId) {
        if let Some(state) = self.groups.get_mut(&group) {
            state.drop_keys();
        }
    }

    /// Makes sure this device has a current Sender Key for `group`: creates one, or rotates
    /// when the membership shrank since it was created (a departure seen in an event or a
    /// newer description, or a device that holds the key belongs to a non-member).
    pub fn prepare_sender(&mut self, group: GroupId) -> ClientResult<KeyAction> {
        let state = self
            .groups
            .get_mut(&group)
            .ok_or_else(|| ClientError::Usage(format!("unknown group {group}")))?;
        let info = state
            .info
            .as_ref()
            .ok_or_else(|| ClientError::Usage(format!("group {group} not known yet")))?;
        let members = info.member_ids();
        let action = match &state.sender {
            None => KeyAction::Created,
            Some(key)
                if key.stale
                    || key
                        .distributed_to
                        .iter()
                        .any(|device| !members.contains(&device.user)) =>
            {
                KeyAction::Rotated
            }
            Some(_) => KeyAction::Kept,
        };
        if action != KeyAction::Kept {
            state.sender = Some(OwnSenderKey {
                sender: GroupSender::new()?,
                created_at_revision: info.revision,
                distributed_to: BTreeSet::new(),
                stale: false,
            });
        }
        Ok(action)
    }

    /// The chain id and 73-byte distribution of this device's current key for `group`.
    pub fn distribution(&self, group: GroupId) -> Option<(u32, Vec<u8>)> {
        let key = self.groups.get(&group)?.sender.as_ref()?;
        let distribution = key.sender.distribution();
        Some((distribution.chain_id(), distribution.to_bytes()))
    }

    /// The users (members other than `me.user`, then `me.user` for its other devices) who
    /// have a device without the current key. `known_devices` gives the devices this device
    /// has sessions with; a member with none must be asked for its devices, so it counts.
    pub fn users_needing_key(
        &self,
        group: GroupId,
        me: DeviceAddress,
        known_devices: impl Fn(UserId) -> Vec<DeviceId>,
        own_other_devices: &[DeviceId],
    ) -> Vec<UserId> {
        let Some(state) = self.groups.get(&group) else {
            return Vec::new();
        };
        let (Some(info), Some(key)) = (&state.info, &state.sender) else {
            return Vec::new();
        };
        let lacks = |user: UserId, device: &DeviceId| {
            !key.distributed_to
                .contains(&DeviceAddress::new(user, *device))
        };
        let mut needing: Vec<UserId> = info
            .members
            .iter()
            .map(|m| m.user)
            .filter(|user| *user != me.user)
            .filter(|user| {
                let devices = known_devices(*user);
                devices.is_empty() || devices.iter().any(|device| lacks(*user, device))
            })
            .collect();
        if own_other_devices
            .iter()
            .filter(|device| **device != me.device)
            .any(|device| lacks(me.user, device))
        {
            needing.push(me.user);
        }
        needing
    }

    /// Records that the key with `chain_id` reached these devices of `user` (ignored if the
    /// key was rotated meanwhile).
    pub fn record_distribution(
        &mut self,
        group: GroupId,
        chain_id: u32,
        user: UserId,
        devices: &[DeviceId],
    ) {
        let Some(key) = self.groups.get_mut(&group).and_then(|g| g.sender.as_mut()) else {
            return;
        };
        if key.sender.state().chain_id() != chain_id {
            return;
        }
        for device in devices {
            key.distributed_to.insert(DeviceAddress::new(user, *device));
        }
    }

    /// Encrypts one group message with this device's key (which must exist).
    pub fn encrypt(&mut self, group: GroupId, plaintext: &[u8]) -> ClientResult<Vec<u8>> {
        let key = self
            .groups
            .get_mut(&group)
            .and_then(|g| g.sender.as_mut())
            .ok_or_else(|| ClientError::Usage(format!("no sender key for group {group}")))?;
        Ok(key.sender.encrypt(plaintext)?)
    }

    /// Stores another member device's key (new, or a rotation of a known sender).
    pub fn add_distribution(
        &mut self,
        group: GroupId,
        sender: DeviceAddress,
        distribution: &SenderKeyDistribution,
    ) -> ClientResult<()> {
        let receivers = &mut self.groups.entry(group).or_default().receivers;
        match receivers.get_mut(&receiver_key(sender)) {
            Some(receiver) => receiver.add_distribution(distribution)?,
            None => {
                receivers.insert(receiver_key(sender), GroupReceiver::new(distribution)?);
            }
        }
        Ok(())
    }

    /// Whether a key of `sender` for `group` is held.
    pub fn has_receiver(&self, group: GroupId, sender: DeviceAddress) -> bool {
        self.groups
            .get(&group)
            .is_some_and(|g| g.receivers.contains_key(&receiver_key(sender)))
    }

    /// Decrypts a group message of `sender`; a readable error when there is no key for it.
    pub fn decrypt(
        &mut self,
        group: GroupId,
        sender: DeviceAddress,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, String> {
        let receiver = self
            .groups
            .get_mut(&group)
            .and_then(|g| g.receivers.get_mut(&receiver_key(sender)))
            .ok_or_else(|| format!("no sender key of {sender} for group {group}"))?;
        receiver.decrypt(ciphertext).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests;
