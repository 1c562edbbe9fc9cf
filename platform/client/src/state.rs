//! What a device keeps on its own disk: credentials, private keys, sessions, groups with their
//! Sender Keys, and the ids of messages already seen (so a redelivered message is shown once).
//!
//! The state is one JSON file written atomically (a temporary file renamed over the old one,
//! readable by the owner only). It holds private keys in the clear: protecting the directory is
//! the operating system's job, as for any local key store without a hardware keystore.
//! Without a directory ([`StateFile::memory`]) nothing is written, for tests and load agents.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use courier_crypto::{IdentityKeyPair, MemoryPreKeyStore};
use courier_protocol::{DeviceAddress, GroupId, UserId};
use serde::{Deserialize, Serialize};

use crate::api::Credentials;
use crate::error::{ClientError, ClientResult};
use crate::groups::Groups;
use crate::sessions::SessionSet;

/// How many (sender device, message id) pairs are remembered for de-duplication.
pub const SEEN_CAPACITY: usize = 50_000;

/// Everything a registered device knows.
#[derive(Serialize, Deserialize)]
pub struct DeviceState {
    pub server: String,
    pub phone: String,
    pub credentials: Credentials,
    pub identity: IdentityKeyPair,
    pub prekeys: MemoryPreKeyStore,
    pub signed_prekey_id: u32,
    pub next_one_time_id: u32,
    /// Sessions by remote device address (`<user>.<device>`).
    pub sessions: BTreeMap<String, SessionSet>,
    /// Phone number -> user id, learned from the directory.
    #[serde(default)]
    pub contacts: BTreeMap<String, UserId>,
    /// Groups by id: last description, own Sender Key, other members' Sender Keys.
    #[serde(default)]
    pub groups: Groups,
    /// Seen 1:1 messages as `<user>.<device>/<id>`, group messages as
    /// `<group>/<user>.<device>/<id>`; one capacity for both.
    #[serde(default)]
    seen_order: VecDeque<String>,
    #[serde(skip)]
    seen: HashSet<String>,
}

impl DeviceState {
    pub fn new(
        server: String,
        phone: String,
        credentials: Credentials,
        identity: IdentityKeyPair,
        prekeys: MemoryPreKeyStore,
        signed_prekey_id: u32,
        next_one_time_id: u32,
    ) -> Self {
        DeviceState {
            server,
            phone,
            credentials,
            identity,
            prekeys,
            signed_prekey_id,
            next_one_time_id,
            sessions: BTreeMap::new(),
            contacts: BTreeMap::new(),
            groups: Groups::default(),
            seen_order: VecDeque::new(),
            seen: HashSet::new(),
        }
    }

    pub fn address(&self) -> DeviceAddress {
        self.credentials.address
    }

    /// Whether this message was received before.
    pub fn has_seen(&self, sender: DeviceAddress, message_id: &str) -> bool {
        self.seen.contains(&format!("{sender}/{message_id}"))
    }

    /// Records a message as received; `false` if it was recorded before.
    pub fn remember(&mut self, sender: DeviceAddress, message_id: &str) -> bool {
        self.remember_key(format!("{sender}/{message_id}"))
    }

    /// Whether this group message was received before.
    pub fn has_seen_group(&self, group: GroupId, sender: DeviceAddress, message_id: &str) -> bool {
        self.seen
            .contains(&format!("{group}/{sender}/{message_id}"))
    }

    /// Records a group message as received; `false` if it was recorded before.
    pub fn remember_group(
        &mut self,
        group: GroupId,
        sender: DeviceAddress,
        message_id: &str,
    ) -> bool {
        self.remember_key(format!("{group}/{sender}/{message_id}"))
    }

    fn remember_key(&mut self, key: String) -> bool {
        if self.seen.contains(&key) {
            return false;
        }
        if self.seen_order.len() >= SEEN_CAPACITY
            && let Some(oldest) = self.seen_order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(key.clone());
        self.seen_order.push_back(key);
        true
    }

    fn rebuild_index(&mut self) {
        self.seen = self.seen_order.iter().cloned().collect();
    }
}

pub fn session_key(address: DeviceAddress) -> String {
    address.to_string()
}

/// Where the state lives.
#[derive(Clone, Debug)]
pub struct StateFile {
    dir: Option<PathBuf>,
}

const STATE_FILE: &str = "device.json";

impl StateFile {
    /// State kept in `dir` (created if missing).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        StateFile {
            dir: Some(dir.into()),
        }
    }

    /// State kept in memory only.
    pub fn memory() -> Self {
        StateFile { dir: None }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    pub fn load(&self) -> ClientResult<Option<DeviceState>> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        let path = dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(storage(&path, error)),
        };
        let mut state: DeviceState = serde_json::from_str(&text)
            .map_err(|e| ClientError::Storage(format!("{}: {e}", path.display())))?;
        state.rebuild_index();
        Ok(Some(state))
    }

    pub fn save(&self, state: &DeviceState) -> ClientResult<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let json = serde_json::to_vec(state)
            .map_err(|e| ClientError::Storage(format!("cannot encode state: {e}")))?;
        write_atomically(&dir.join(STATE_FILE), &json)
    }
}

fn storage(path: &Path, error: std::io::Error) -> ClientError {
    ClientError::Storage(format!("{}: {error}", path.display()))
}

/// Writes `bytes` to `path` through a temporary file and a rename, owner-readable only.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> ClientResult<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| storage(parent, e))?;
    }
    let temporary = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&temporary)
        .map_err(|e| storage(&temporary, e))?;
    file.write_all(bytes).map_err(|e| storage(&temporary, e))?;
    file.sync_all().map_err(|e| storage(&temporary, e))?;
    std::fs::rename(&temporary, path).map_err(|e| storage(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DeviceState {
        let identity = IdentityKeyPair::generate().unwrap();
        DeviceState::new(
            "http://x".into(),
            "+15550100001".into(),
            Credentials {
                address: DeviceAddress::new(UserId::random(), 1),
                password: "pw".into(),
            },
            identity,
            MemoryPreKeyStore::new(),
            1,
            1,
        )
    }

    #[test]
    fn state_survives_a_save_and_load_with_its_seen_ids() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::at(dir.path());
        let mut state = sample();
        let sender = DeviceAddress::new(UserId::random(), 2);
        assert!(!state.has_seen(sender, "m1"));
        assert!(state.remember(sender, "m1"));
        assert!(!state.remember(sender, "m1"));
        file.save(&state).unwrap();
        let mut loaded = file.load().unwrap().unwrap();
        assert_eq!(loaded.identity.public(), state.identity.public());
        assert!(loaded.has_seen(sender, "m1"), "seen ids persist");
        assert!(loaded.remember(sender, "m2"));
    }

    #[test]
    fn memory_state_writes_nothing() {
        let file = StateFile::memory();
        file.save(&sample()).unwrap();
        assert!(file.load().unwrap().is_none());
    }

    #[test]
    fn groups_and_their_keys_survive_a_save_and_load() {
        use crate::groups::{GroupChange, GroupEventKind, GroupInfo, GroupMember, GroupSettings};
        use courier_crypto::{GroupSender, SenderKeyDistribution};

        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::at(dir.path());
        let mut state = sample();
        let me = state.address();
        let bob = DeviceAddress::new(UserId::random(), 3);
        let group = GroupId::random();
        let info = GroupInfo {
            id: group,
            subject: "friends".into(),
            members: [me.user, bob.user]
                .into_iter()
                .map(|user| GroupMember {
                    user,
                    admin: user == me.user,
                    joined_at_ms: 10,
                })
                .collect(),
            settings: GroupSettings {
                only_admins_edit_info: true,
                only_admins_add_members: false,
            },
            invite_code: Some("abc".into()),
            revision: 4,
            size_limit: 256,
            created_by: Some(me.user),
            created_at_ms: 10,
        };
        let created = GroupChange {
            group,
            revision: 4,
            kind: GroupEventKind::Created,
            actor: Some(me.user),
            users: vec![bob.user],
            info: Some(info.clone()),
        };
        assert!(state.groups.apply_event(&created, me.user));
        state.groups.prepare_sender(group).unwrap();
        let (chain_id, bytes) = state.groups.distribution(group).unwrap();
        state
            .groups
            .record_distribution(group, chain_id, bob.user, &[bob.device]);
        let mut bob_sender = GroupSender::new().unwrap();
        state
            .groups
            .add_distribution(group, bob, &bob_sender.distribution())
            .unwrap();
        assert!(state.remember_group(group, bob, "g1"));
        file.save(&state).unwrap();

        let mut loaded = file.load().unwrap().unwrap();
        assert_eq!(loaded.groups.info(group), Some(&info));
        assert_eq!(
            loaded.groups.get(group).unwrap().last_event_revision,
            Some(4)
        );
        assert!(loaded.has_seen_group(group, bob, "g1"));
        assert!(!loaded.has_seen(bob, "g1"), "group and 1:1 ids are apart");
        assert!(
            !loaded.groups.apply_event(&created, me.user),
            "event not reported twice"
        );
        // The own key is the same chain, and Bob's device still holds it.
        assert_eq!(
            loaded.groups.distribution(group),
            Some((chain_id, bytes.clone()))
        );
        let sessions = |user: UserId| {
            if user == bob.user {
                vec![bob.device]
            } else {
                Vec::new()
            }
        };
        assert!(
            loaded
                .groups
                .users_needing_key(group, me, sessions, &[])
                .is_empty()
        );
        // A message encrypted after loading decrypts with the key distributed before saving,
        // and Bob's key still decrypts his messages.
        let mut at_bob = crate::groups::Groups::default();
        at_bob
            .add_distribution(
                group,
                me,
                &SenderKeyDistribution::from_bytes(&bytes).unwrap(),
            )
            .unwrap();
        let sealed = loaded.groups.encrypt(group, b"after reload").unwrap();
        assert_eq!(at_bob.decrypt(group, me, &sealed).unwrap(), b"after reload");
        let from_bob = bob_sender.encrypt(b"hi").unwrap();
        assert_eq!(loaded.groups.decrypt(group, bob, &from_bob).unwrap(), b"hi");
    }

    #[test]
    fn a_state_file_from_before_groups_loads() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::at(dir.path());
        let state = sample();
        let mut json = serde_json::to_value(&state).unwrap();
        json.as_object_mut().unwrap().remove("groups").unwrap();
        std::fs::write(dir.path().join(STATE_FILE), json.to_string()).unwrap();
        let loaded = file.load().unwrap().unwrap();
        assert_eq!(loaded.groups.infos().count(), 0);
        assert_eq!(loaded.identity.public(), state.identity.public());
    }
}
