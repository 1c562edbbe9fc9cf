//! Group state transitions without any I/O: when the own Sender Key is created, kept or
//! rotated, who still needs it, and what events do to the stored group.

use super::*;

fn member(user: UserId) -> GroupMember {
    GroupMember {
        user,
        admin: false,
        joined_at_ms: 1,
    }
}

fn info(group: GroupId, revision: u64, users: &[UserId]) -> GroupInfo {
    GroupInfo {
        id: group,
        subject: "friends".into(),
        members: users.iter().copied().map(member).collect(),
        settings: GroupSettings::default(),
        invite_code: None,
        revision,
        size_limit: 256,
        created_by: users.first().copied(),
        created_at_ms: 1,
    }
}

fn change(
    group: GroupId,
    revision: u64,
    kind: GroupEventKind,
    actor: UserId,
    users: &[UserId],
    after: &[UserId],
) -> GroupChange {
    GroupChange {
        group,
        revision,
        kind,
        actor: Some(actor),
        users: users.to_vec(),
        info: Some(info(group, revision, after)),
    }
}

struct World {
    group: GroupId,
    me: DeviceAddress,
    bob: UserId,
    carol: UserId,
    groups: Groups,
}

/// Me, Bob and Carol in a group at revision 1.
fn world() -> World {
    let group = GroupId::random();
    let me = DeviceAddress::new(UserId::random(), 1);
    let (bob, carol) = (UserId::random(), UserId::random());
    let mut groups = Groups::default();
    let created = change(
        group,
        1,
        GroupEventKind::Created,
        me.user,
        &[bob, carol],
        &[me.user, bob, carol],
    );
    assert!(groups.apply_event(&created, me.user));
    World {
        group,
        me,
        bob,
        carol,
        groups,
    }
}

fn chain(groups: &Groups, group: GroupId) -> u32 {
    groups.distribution(group).unwrap().0
}

#[test]
fn a_first_key_is_created_then_kept() {
    let mut w = world();
    assert_eq!(
        w.groups.prepare_sender(w.group).unwrap(),
        KeyAction::Created
    );
    let first = chain(&w.groups, w.group);
    assert_eq!(w.groups.prepare_sender(w.group).unwrap(), KeyAction::Kept);
    assert_eq!(chain(&w.groups, w.group), first);
}

#[test]
fn departures_after_the_key_rotate_it_additions_and_renames_do_not() {
    let mut w = world();
    w.groups.prepare_sender(w.group).unwrap();
    let first = chain(&w.groups, w.group);
    let dave = UserId::random();
    let (me, bob, carol) = (w.me.user, w.bob, w.carol);
    let added = change(
        w.group,
        2,
        GroupEventKind::MembersAdded,
        me,
        &[dave],
        &[me, bob, carol, dave],
    );
    assert!(w.groups.apply_event(&added, me));
    let renamed = change(
        w.group,
        3,
        GroupEventKind::SubjectChanged,
        bob,
        &[],
        &[me, bob, carol, dave],
    );
    assert!(w.groups.apply_event(&renamed, me));
    let promoted = change(
        w.group,
        4,
        GroupEventKind::AdminsPromoted,
        me,
        &[bob],
        &[me, bob, carol, dave],
    );
    assert!(w.groups.apply_event(&promoted, me));
    assert_eq!(w.groups.prepare_sender(w.group).unwrap(), KeyAction::Kept);
    assert_eq!(chain(&w.groups, w.group), first);

    let left = change(
        w.group,
        5,
        GroupEventKind::MemberLeft,
        carol,
        &[carol],
        &[me, bob, dave],
    );
    assert!(w.groups.apply_event(&left, me));
    assert_eq!(
        w.groups.prepare_sender(w.group).unwrap(),
        KeyAction::Rotated
    );
    let second = chain(&w.groups, w.group);
    assert_ne!(second, first);
    // Rotated once: the next send keeps the new key.
    assert_eq!(w.groups.prepare_sender(w.group).unwrap(), KeyAction::Kept);

    let removed = change(
        w.group,
        6,
        GroupEventKind::MembersRemoved,
        me,
        &[dave],
        &[me, bob],
    );
    assert!(w.groups.apply_event(&removed, me));
    assert_eq!(
        w.groups.prepare_sender(w.group).unwrap(),
        KeyAction::Rotated
    );
    assert_ne!(chain(&w.groups, w.group), second);
}

#[test]
fn a_removal_followed_by_a_re_add_still_rotates() {
    let mut w = world();
    w.groups.prepare_sender(w.group).unwrap();
    let (me, bob, carol) = (w.me.user, w.bob, w.carol);
    let removed = change(
        w.group,
        2,
        GroupEventKind::MembersRemoved,
        me,
        &[carol],
        &[me, bob],
    );
    let back = change(
        w.group,
        3,
        GroupEventKind::MembersAdded,
        me,
        &[carol],
        &[me, bob, carol],
    );
    w.groups.apply_event(&removed, me);
    w.groups.apply_event(&back, me);
    assert_eq!(
        w.groups.prepare_sender(w.group).unwrap(),
        KeyAction::Rotated
    );
}

#[test]
fn replayed_and_older_events_neither_report_nor_rotate() {
    let mut w = world();
    let (me, bob, carol) = (w.me.user, w.bob, w.carol);
    let removed = change(
        w.group,
        2,
        GroupEventKind::MembersRemoved,
        me,
        &[carol],
        &[me, bob],
    );
    assert!(w.groups.apply_event(&removed, me));
    // The key is created after the removal: it never reached Carol.
    assert_eq!(
        w.groups.prepare_sender(w.group).unwrap(),
        KeyAction::Created
    );
    // The same event again (a redelivery after a lost ack) changes nothing.
    assert!(!w.groups.apply_event(&removed, me));
    assert_eq!(w.groups.prepare_sender(w.group).unwrap(), KeyAction::Kept);
    assert_eq!(w.groups.info(w.group).unwrap().revision, 2);
}

#[test]
fn a_newer_description_with_fewer_members_rotates_without_an_event() {
    let mut w = world();
    w.groups.prepare_sender(w.group).unwrap();
    let (me, bob) = (w.me.user, w.bob);
    // Say a refresh (GroupInfoRequest) shows Carol gone before her event arrived.
    assert!(w.groups.observe_info(info(w.group, 4, &[me, bob]), me));
    assert!(!w.groups.observe_info(info(w.group, 3, &[me]), me), "older");
    assert_eq!(w.groups.info(w.group).unwrap().revision, 4);
    assert_eq!(
        w.groups.prepare_sender(w.group).unwrap(),
        KeyAction::Rotated
    );
    // Her event, arriving late, is reported but does not rotate the key made after it.
    let removed = change(
        w.group,
        2,
        GroupEventKind::MembersRemoved,
        me,
        &[w.carol],
        &[me, bob],
    );
    assert!(w.groups.apply_event(&removed, me));
    assert_eq!(w.groups.prepare_sender(w.group).unwrap(), KeyAction::Kept);
    assert_eq!(w.groups.info(w.group).unwrap().revision, 4, "info kept");
}

#[test]
fn a_key_held_by_a_non_member_device_is_rotated() {
    let mut w = world();
    w.groups.prepare_sender(w.group).unwrap();
    let (chain_id, _) = w.groups.distribution(w.group).unwrap();
    w.groups
        .record_distribution(w.group, chain_id, w.carol, &[1]);
    // A description at the same revision as the key, without Carol (no departure seen).
    let state = w.groups.groups.get_mut(&w.group).unwrap();
    state
        .info
        .as_mut()
        .unwrap()
        .members
        .retain(|m| m.user != w.carol);
    assert_eq!(
        w.groups.prepare_sender(w.group).unwrap(),
        KeyAction::Rotated
    );
}

#[test]
fn being_removed_or_leaving_drops_every_key_of_the_group() {
    let mut w = world();
    let (me, bob, carol) = (w.me.user, w.bob, w.carol);
    w.groups.prepare_sender(w.group).unwrap();
    let bob_device = DeviceAddress::new(bob, 1);
    let their_key = GroupSender::new().unwrap().distribution();
    w.groups
        .add_distribution(w.group, bob_device, &their_key)
        .unwrap();
    assert!(w.groups.has_receiver(w.group, bob_device));
    let removed = change(
        w.group,
        2,
        GroupEventKind::MembersRemoved,
        bob,
        &[me],
        &[bob, carol],
    );
    assert!(w.groups.apply_event(&removed, me));
    assert!(!w.groups.has_receiver(w.group, bob_device));
    assert!(w.groups.distribution(w.group).is_none());
    assert!(!w.groups.info(w.group).unwrap().is_member(me));

    // Added back: keys start afresh; leaving drops them again.
    let back = change(
        w.group,
        3,
        GroupEventKind::MembersAdded,
        bob,
        &[me],
        &[bob, carol, me],
    );
    w.groups.apply_event(&back, me);
    assert_eq!(
        w.groups.prepare_sender(w.group).unwrap(),
        KeyAction::Created
    );
    let left = GroupChange {
        users: Vec::new(),
        ..change(
            w.group,
            4,
            GroupEventKind::MemberLeft,
            me,
            &[],
            &[bob, carol],
        )
    };
    w.groups.apply_event(&left, me);
    assert!(w.groups.distribution(w.group).is_none());
}

#[test]
fn an_old_removal_of_me_does_not_drop_keys_of_a_newer_membership() {
    let mut w = world();
    let (me, bob, carol) = (w.me.user, w.bob, w.carol);
    // A refresh already shows this user back at revision 3.
    w.groups
        .observe_info(info(w.group, 3, &[me, bob, carol]), me);
    let bob_device = DeviceAddress::new(bob, 1);
    let their_key = GroupSender::new().unwrap().distribution();
    w.groups
        .add_distribution(w.group, bob_device, &their_key)
        .unwrap();
    let removed = change(
        w.group,
        2,
        GroupEventKind::MembersRemoved,
        bob,
        &[me],
        &[bob, carol],
    );
    assert!(w.groups.apply_event(&removed, me));
    assert!(w.groups.has_receiver(w.group, bob_device));
}

#[test]
fn distribution_bookkeeping_knows_who_still_needs_the_key() {
    let mut w = world();
    let (me, bob, carol) = (w.me, w.bob, w.carol);
    w.groups.prepare_sender(w.group).unwrap();
    let (chain_id, bytes) = w.groups.distribution(w.group).unwrap();
    assert_eq!(bytes.len(), 73);
    // Sessions: Bob has devices 1 and 2, Carol none yet; no other devices of mine.
    let sessions = |user: UserId| {
        if user == bob { vec![1, 2] } else { Vec::new() }
    };
    let needing = w.groups.users_needing_key(w.group, me, sessions, &[]);
    assert_eq!(needing, vec![bob, carol]);

    w.groups.record_distribution(w.group, chain_id, bob, &[1]);
    let needing = w.groups.users_needing_key(w.group, me, sessions, &[]);
    assert_eq!(needing, vec![bob, carol], "Bob's device 2 lacks it");

    w.groups
        .record_distribution(w.group, chain_id, bob, &[1, 2]);
    w.groups.record_distribution(w.group, chain_id, carol, &[7]);
    let sessions_now = |user: UserId| {
        if user == bob {
            vec![1, 2]
        } else if user == carol {
            vec![7]
        } else {
            Vec::new()
        }
    };
    assert!(
        w.groups
            .users_needing_key(w.group, me, sessions_now, &[])
            .is_empty()
    );
    // My own other device (3) lacks it; my own device (1) never counts.
    let needing = w
        .groups
        .users_needing_key(w.group, me, sessions_now, &[1, 3]);
    assert_eq!(needing, vec![me.user]);
    w.groups
        .record_distribution(w.group, chain_id, me.user, &[3]);
    assert!(
        w.groups
            .users_needing_key(w.group, me, sessions_now, &[1, 3])
            .is_empty()
    );

    // A record for an older chain (rotated meanwhile) counts for nothing.
    let removed = change(
        w.group,
        2,
        GroupEventKind::MembersRemoved,
        me.user,
        &[carol],
        &[me.user, bob],
    );
    w.groups.apply_event(&removed, me.user);
    assert_eq!(
        w.groups.prepare_sender(w.group).unwrap(),
        KeyAction::Rotated
    );
    w.groups
        .record_distribution(w.group, chain_id, bob, &[1, 2]);
    let needing = w.groups.users_needing_key(w.group, me, sessions_now, &[]);
    assert_eq!(
        needing,
        vec![bob],
        "everyone needs the new key; Carol is gone"
    );
}

#[test]
fn keys_distributed_by_a_sender_decrypt_its_messages_across_a_rotation() {
    let mut alice = world();
    let mut bob_side = Groups::default();
    let group = alice.group;
    let alice_device = alice.me;
    alice.groups.prepare_sender(group).unwrap();
    let (_, bytes) = alice.groups.distribution(group).unwrap();
    let distribution = SenderKeyDistribution::from_bytes(&bytes).unwrap();
    assert!(bob_side.decrypt(group, alice_device, b"x").is_err());
    bob_side
        .add_distribution(group, alice_device, &distribution)
        .unwrap();
    let first = alice.groups.encrypt(group, b"one").unwrap();
    let in_flight = alice.groups.encrypt(group, b"late").unwrap();
    assert_eq!(
        bob_side.decrypt(group, alice_device, &first).unwrap(),
        b"one"
    );

    let (me, bob) = (alice.me.user, alice.bob);
    let removed = change(
        group,
        2,
        GroupEventKind::MembersRemoved,
        me,
        &[alice.carol],
        &[me, bob],
    );
    alice.groups.apply_event(&removed, me);
    assert_eq!(
        alice.groups.prepare_sender(group).unwrap(),
        KeyAction::Rotated
    );
    let (_, bytes) = alice.groups.distribution(group).unwrap();
    let rotated = SenderKeyDistribution::from_bytes(&bytes).unwrap();
    bob_side
        .add_distribution(group, alice_device, &rotated)
        .unwrap();
    let second = alice.groups.encrypt(group, b"two").unwrap();
    assert_eq!(
        bob_side.decrypt(group, alice_device, &second).unwrap(),
        b"two"
    );
    // A message of the old chain still in flight decrypts after the rotation.
    assert_eq!(
        bob_side.decrypt(group, alice_device, &in_flight).unwrap(),
        b"late"
    );
    assert!(
        bob_side.decrypt(group, alice_device, &first).is_err(),
        "a replay is refused"
    );
}

#[test]
fn wire_group_info_converts_and_rejects_bad_ids() {
    let me = UserId::random();
    let group = GroupId::random();
    let wire = v1::GroupInfo {
        group_id: group.to_string(),
        subject: "s".into(),
        members: vec![v1::GroupMember {
            user: me.to_string(),
            admin: true,
            joined_at_ms: 5,
        }],
        settings: Some(v1::GroupSettings {
            only_admins_edit_info: true,
            only_admins_add_members: false,
        }),
        invite_code: String::new(),
        revision: 9,
        size_limit: 256,
        created_by: me.to_string(),
        created_at_ms: 4,
    };
    let info = GroupInfo::from_wire(wire.clone()).unwrap();
    assert_eq!(info.id, group);
    assert!(info.is_admin(me));
    assert_eq!(info.admins(), vec![me]);
    assert_eq!(info.invite_code, None);
    assert!(info.settings.only_admins_edit_info);
    let mut bad = wire;
    bad.members[0].user = "nope".into();
    assert!(GroupInfo::from_wire(bad).is_err());
}
