use std::sync::Arc;

use super::conformance::{check_store, sample_state};
use super::*;

#[tokio::test]
async fn the_memory_store_passes_the_conformance_check() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    check_store(|| Arc::clone(&store)).await;
}

#[tokio::test]
async fn the_state_file_passes_the_conformance_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    // A new StateFile each time: nothing is carried over but the file.
    check_store(|| Arc::new(StateFile::at(&path)) as Arc<dyn StateStore>).await;
}

#[tokio::test]
async fn a_memory_state_file_writes_nothing() {
    let file = StateFile::memory();
    let (mut state, _) = sample_state();
    file.save(&state.take_change().0).await.unwrap();
    assert!(file.load().await.unwrap().is_none());
}

#[test]
fn every_mutation_marks_only_its_keys() {
    let (mut state, peer) = sample_state();
    let (first, version) = state.take_change();
    assert_eq!(
        first.len(),
        state.items().len(),
        "a new state writes everything"
    );
    assert!(state.take_change().0.is_empty());
    assert_eq!(
        state.version(),
        version,
        "taking a change is not a mutation"
    );

    for _ in state.user_sessions_mut(peer.user) {}
    let (change, _) = state.take_change();
    assert_eq!(
        change.items.keys().collect::<Vec<_>>(),
        [&StateKey::Session(peer)]
    );
    assert!(state.version() > version);
}

#[test]
fn a_failed_save_is_written_again_with_the_next() {
    let (mut state, _) = sample_state();
    state.take_change();
    state.add_contact("+15550100009".into(), UserId::random());
    let (failed, _) = state.take_change();
    state.mark_unsaved(&failed);
    state.set_sender_name(Some("Bob".into()));
    let (next, _) = state.take_change();
    let keys: Vec<String> = next.items.keys().map(ToString::to_string).collect();
    assert_eq!(keys, ["core", "contact/+15550100009"]);
}

#[test]
fn the_oldest_seen_mark_is_forgotten_at_capacity() {
    let (mut state, peer) = sample_state();
    let first = state.seen_marks().next().unwrap().to_owned();
    let had = state.seen_marks().count();
    for n in had..SEEN_CAPACITY {
        assert!(state.remember(peer, &format!("fill-{n}")));
    }
    state.take_change();
    assert!(state.remember(peer, "one-more"));
    assert!(!state.remember(peer, "one-more"), "a repeat is recognised");
    let (change, _) = state.take_change();
    assert!(matches!(
        change.items.get(&StateKey::Seen(first.clone())),
        Some(None)
    ));
    assert!(matches!(
        change
            .items
            .get(&StateKey::Seen(format!("{peer}/one-more"))),
        Some(Some(StateItem::Seen(_)))
    ));
    assert_eq!(state.seen_marks().count(), SEEN_CAPACITY);
    assert!(!state.seen_marks().any(|mark| mark == first));
}

#[test]
fn state_keys_round_trip_as_text() {
    let peer = DeviceAddress::new(UserId::random(), 4);
    let group = GroupId::random();
    for key in [
        StateKey::Core,
        StateKey::OneTimePreKey(17),
        StateKey::Session(peer),
        StateKey::Contact("+15550100001".into()),
        StateKey::Group(group),
        StateKey::Seen(format!("{group}/{peer}/m1")),
    ] {
        assert_eq!(key.to_string().parse::<StateKey>().unwrap(), key);
    }
    assert!("session/nope".parse::<StateKey>().is_err());
    assert!("unknown/1".parse::<StateKey>().is_err());
}

#[test]
fn a_state_file_from_before_item_stores_loads() {
    // The earlier device.json: no sender name, no pending messages, maybe no groups.
    let dir = tempfile::tempdir().unwrap();
    let (state, peer) = sample_state();
    let mut json = serde_json::to_value(&state).unwrap();
    let object = json.as_object_mut().unwrap();
    object.remove("groups");
    object.remove("pending");
    object.remove("sender_name");
    std::fs::write(dir.path().join("device.json"), json.to_string()).unwrap();
    let loaded = StateFile::at(dir.path()).read().unwrap().unwrap();
    assert_eq!(loaded.groups().infos().count(), 0);
    assert_eq!(loaded.identity().public(), state.identity().public());
    assert!(loaded.has_seen(peer, "m1"));
    assert!(loaded.pending(None, peer, "m3").is_none());
}

#[tokio::test]
async fn groups_and_their_keys_survive_a_reopen() {
    use crate::groups::{GroupChange, GroupEventKind, GroupInfo, GroupMember, GroupSettings};
    use courier_crypto::GroupSender;

    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let (mut state, bob) = sample_state();
    let me = state.address();
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
    assert!(state.groups_mut(group).apply_event(&created, me.user));
    state.groups_mut(group).prepare_sender(group).unwrap();
    let (chain_id, bytes) = state.groups().distribution(group).unwrap();
    let bob_sender = GroupSender::new().unwrap();
    state
        .groups_mut(group)
        .add_distribution(group, bob, &bob_sender.distribution())
        .unwrap();
    assert!(state.remember_group(group, bob, "g1"));
    store.save(&state.take_change().0).await.unwrap();

    let mut loaded = store.load().await.unwrap().unwrap();
    assert_eq!(loaded.groups().info(group), Some(&info));
    assert!(loaded.has_seen_group(group, bob, "g1"));
    assert!(!loaded.has_seen(bob, "g1"), "group and 1:1 ids are apart");
    assert!(
        !loaded.groups_mut(group).apply_event(&created, me.user),
        "event not reported twice"
    );
    assert_eq!(loaded.groups().distribution(group), Some((chain_id, bytes)));
    assert!(loaded.groups().has_receiver(group, bob));
}
