//! Groups: records and invite codes, group messages (one body, one reference per member device),
//! their de-duplication, receipts and expiry.

use std::sync::Arc;

use bytes::Bytes;
use courier_protocol::{DeviceAddress, GroupId, UserId};

use super::*;
use crate::{Store, StoreError};

/// When the group messages of these cases expire, unless a case says otherwise.
const EXPIRES: Millis = T0 + 30 * DAY;

pub(crate) fn group_record(id: GroupId, creator: UserId, invite_code: Option<&str>) -> GroupRecord {
    GroupRecord {
        id,
        subject: "climbing".to_owned(),
        created_by: creator,
        created_at: T0,
        members: vec![GroupMemberRecord {
            user: creator,
            admin: true,
            joined_at: T0,
        }],
        only_admins_edit_info: false,
        only_admins_add_members: true,
        invite_code: invite_code.map(str::to_owned),
        revision: 1,
        size_limit: 256,
    }
}

/// A reference entry as a server builds one: the group id and the message seq (24 bytes).
pub(crate) fn reference(group: GroupId, message_seq: u64, expires_at: Millis) -> NewEntry {
    let mut payload = group.as_bytes().to_vec();
    payload.extend_from_slice(&message_seq.to_be_bytes());
    NewEntry {
        dedupe: None,
        enqueued_at: T0,
        expires_at,
        payload: payload.into(),
    }
}

fn references(
    group: GroupId,
    message_seq: u64,
    expires_at: Millis,
    devices: &[DeviceAddress],
) -> Vec<(DeviceAddress, NewEntry)> {
    devices
        .iter()
        .map(|&device| (device, reference(group, message_seq, expires_at)))
        .collect()
}

/// A group message that expires at `expires_at`, referenced on every device of `to`.
pub(crate) async fn send_expiring(
    store: &dyn Store,
    (group, message_seq): (GroupId, u64),
    (sender, client_message_id): (DeviceAddress, &str),
    body: &str,
    expires_at: Millis,
    to: &[DeviceAddress],
) -> GroupEnqueueOutcome {
    store
        .enqueue_group_message(
            group,
            message_seq,
            (sender, client_message_id.to_owned()),
            Bytes::copy_from_slice(body.as_bytes()),
            expires_at,
            references(group, message_seq, expires_at, to),
        )
        .await
        .expect("enqueue_group_message")
}

async fn send(
    store: &dyn Store,
    message: (GroupId, u64),
    sender: (DeviceAddress, &str),
    body: &str,
    to: &[DeviceAddress],
) -> GroupEnqueueOutcome {
    send_expiring(store, message, sender, body, EXPIRES, to).await
}

/// The seqs of the reference entries of an outcome that must be `Queued` with every entry
/// queued.
fn queued_refs(outcome: &GroupEnqueueOutcome) -> Vec<u64> {
    match outcome {
        GroupEnqueueOutcome::Queued { entries } => queued(entries),
        GroupEnqueueOutcome::Duplicate { message_seq } => {
            panic!("unexpected duplicate of group message {message_seq}")
        }
    }
}

fn device(n: u32) -> DeviceAddress {
    DeviceAddress::new(UserId::random(), n)
}

pub async fn groups_are_put_read_and_replaced(store: Arc<dyn Store>) {
    let store = &*store;
    let (id, other) = (GroupId::random(), GroupId::random());
    let creator = UserId::random();
    assert_eq!(store.group(id).await.unwrap(), None);
    let first = group_record(id, creator, None);
    store.put_group(first.clone()).await.unwrap();
    assert_eq!(store.group(id).await.unwrap(), Some(first.clone()));

    let mut second = first.clone();
    second.subject = "bouldering".to_owned();
    second.members.push(GroupMemberRecord {
        user: UserId::random(),
        admin: false,
        joined_at: T0 + 5,
    });
    second.only_admins_edit_info = true;
    second.revision = 2;
    store.put_group(second.clone()).await.unwrap();
    assert_eq!(
        store.group(id).await.unwrap(),
        Some(second.clone()),
        "a record is replaced whole"
    );

    let theirs = group_record(other, UserId::random(), None);
    store.put_group(theirs.clone()).await.unwrap();
    assert_eq!(store.group(other).await.unwrap(), Some(theirs));
    assert_eq!(
        store.group(id).await.unwrap(),
        Some(second),
        "groups are independent"
    );
    assert_eq!(store.group(GroupId::random()).await.unwrap(), None);
}

pub async fn invite_codes_follow_their_group(store: Arc<dyn Store>) {
    let store = &*store;
    let (a, b) = (GroupId::random(), GroupId::random());
    let creator = UserId::random();
    let by_invite = |code: &'static str| async move { store.group_by_invite(code).await.unwrap() };

    let mut record = group_record(a, creator, Some("code-1"));
    store.put_group(record.clone()).await.unwrap();
    assert_eq!(by_invite("code-1").await, Some(a));
    record.revision = 2;
    store.put_group(record.clone()).await.unwrap();
    assert_eq!(
        by_invite("code-1").await,
        Some(a),
        "an unchanged code stays"
    );

    record.invite_code = Some("code-2".to_owned());
    record.revision = 3;
    store.put_group(record.clone()).await.unwrap();
    assert_eq!(by_invite("code-1").await, None, "a replaced code is gone");
    assert_eq!(by_invite("code-2").await, Some(a));

    record.invite_code = None;
    record.revision = 4;
    store.put_group(record.clone()).await.unwrap();
    assert_eq!(by_invite("code-2").await, None, "a revoked code is gone");
    assert_eq!(store.group(a).await.unwrap(), Some(record.clone()));

    store
        .put_group(group_record(b, creator, Some("code-2")))
        .await
        .unwrap();
    assert_eq!(
        by_invite("code-2").await,
        Some(b),
        "a freed code may be reused"
    );

    let mut taken = record.clone();
    taken.invite_code = Some("code-2".to_owned());
    taken.revision = 5;
    let refused = store.put_group(taken).await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "another group's current code is refused: {refused:?}"
    );
    assert_eq!(by_invite("code-2").await, Some(b));
    assert_eq!(
        store.group(a).await.unwrap(),
        Some(record.clone()),
        "a refused record is not written"
    );

    record.invite_code = Some("code-3".to_owned());
    record.revision = 6;
    store.put_group(record.clone()).await.unwrap();
    let mut revoked = group_record(b, creator, None);
    revoked.revision = 2;
    store.put_group(revoked).await.unwrap();
    assert_eq!(by_invite("code-2").await, None);
    assert_eq!(
        by_invite("code-3").await,
        Some(a),
        "other groups' codes stay"
    );
    assert_eq!(by_invite("never-issued").await, None);

    for bad in [String::new(), "c".repeat(MAX_INVITE_CODE_BYTES + 1)] {
        let mut invalid = record.clone();
        invalid.invite_code = Some(bad.clone());
        assert!(
            matches!(store.put_group(invalid).await, Err(StoreError::Invalid(_))),
            "invite code of {} bytes",
            bad.len()
        );
        assert_eq!(store.group_by_invite(&bad).await.unwrap(), None);
    }
    assert_eq!(by_invite("code-3").await, Some(a));
    let longest = "c".repeat(MAX_INVITE_CODE_BYTES);
    record.invite_code = Some(longest.clone());
    store.put_group(record).await.unwrap();
    assert_eq!(store.group_by_invite(&longest).await.unwrap(), Some(a));
    assert_eq!(by_invite("code-3").await, None);
}

pub async fn last_group_message_seq_is_the_highest_stored(store: Arc<dyn Store>) {
    let store = &*store;
    let (group, other) = (GroupId::random(), GroupId::random());
    let sender = device(1);
    let member = device(1);
    assert_eq!(store.last_group_message_seq(group).await.unwrap(), 0);
    for (seq, id) in [(1, "m1"), (2, "m2"), (7, "m7")] {
        send(store, (group, seq), (sender, id), id, &[member]).await;
    }
    assert_eq!(store.last_group_message_seq(group).await.unwrap(), 7);
    send(store, (group, 300), (sender, "m300"), "m300", &[member]).await;
    send(store, (group, 4), (sender, "m4"), "late", &[member]).await;
    assert_eq!(
        store.last_group_message_seq(group).await.unwrap(),
        300,
        "the highest, compared as a number, not the last written"
    );
    assert_eq!(store.last_group_message_seq(other).await.unwrap(), 0);
    send(store, (other, 1), (sender, "m1"), "other", &[member]).await;
    assert_eq!(store.last_group_message_seq(other).await.unwrap(), 1);
    assert_eq!(store.last_group_message_seq(group).await.unwrap(), 300);
}

pub async fn group_messages_are_stored_once_and_queued_per_device(store: Arc<dyn Store>) {
    let store = &*store;
    let group = GroupId::random();
    let a = register(store, 1).await.device.address;
    let b = register(store, 2).await.device.address;
    let sender = register(store, 3).await.device.address;
    let a2 = DeviceAddress::new(a.user, a.device + 1);

    assert_eq!(
        enqueue_one(store, a, entry("direct a1", None)).await,
        EnqueueOutcome::Queued { seq: 1 }
    );
    let first = send(store, (group, 1), (sender, "g1"), "body one", &[a, b, a2]).await;
    assert_eq!(
        queued_refs(&first),
        vec![2, 1, 1],
        "one reference per device, on the same seq counters as enqueue"
    );
    assert_eq!(
        queued(
            &store
                .enqueue(vec![
                    (a, entry("direct a3", None)),
                    (b, entry("direct b2", Some((sender, "d1"))))
                ])
                .await
                .unwrap()
        ),
        vec![3, 2],
        "ordinary entries continue after the references"
    );
    store.ack_queue(a, 3).await.unwrap();
    let second = send(store, (group, 2), (sender, "g2"), "body two", &[a, b]).await;
    assert_eq!(
        queued_refs(&second),
        vec![4, 3],
        "after an acknowledgement, seqs carry on"
    );

    let read_a = read_all(store, a, T0).await;
    assert_eq!(seqs(&read_a), vec![4]);
    assert_eq!(read_a[0].payload, reference(group, 2, EXPIRES).payload);
    assert_eq!(read_a[0].expires_at, EXPIRES);
    let read_b = read_all(store, b, T0).await;
    assert_eq!(seqs(&read_b), vec![1, 2, 3]);
    assert_eq!(
        payloads(&read_b),
        vec![
            &reference(group, 1, EXPIRES).payload[..],
            b"direct b2",
            &reference(group, 2, EXPIRES).payload[..],
        ]
    );
    assert_eq!(seqs(&read_all(store, a2, T0).await), vec![1]);
    assert_eq!(
        store.group_message(group, 1, T0).await.unwrap(),
        Some(Bytes::from_static(b"body one"))
    );
    assert_eq!(
        store.group_message(group, 2, T0).await.unwrap(),
        Some(Bytes::from_static(b"body two"))
    );

    // Reference entries are queued exactly like `enqueue` entries, dedupe keys included.
    let refs = vec![
        (
            b,
            NewEntry {
                dedupe: Some((sender, "d1".to_owned())),
                ..reference(group, 3, EXPIRES)
            },
        ),
        (a, reference(group, 3, EXPIRES)),
    ];
    let third = store
        .enqueue_group_message(
            group,
            3,
            (sender, "g3".to_owned()),
            Bytes::from_static(b"body three"),
            EXPIRES,
            refs,
        )
        .await
        .unwrap();
    assert_eq!(
        third,
        GroupEnqueueOutcome::Queued {
            entries: vec![
                EnqueueOutcome::Duplicate { seq: 2 },
                EnqueueOutcome::Queued { seq: 5 }
            ]
        },
        "an entry's own dedupe key is checked as by enqueue"
    );
    assert_eq!(store.queue_len(b).await.unwrap(), 3);
    assert_eq!(
        store.group_message(group, 3, T0).await.unwrap(),
        Some(Bytes::from_static(b"body three"))
    );

    // A message to nobody else (the sender alone in the group) is still stored.
    let alone = send(store, (group, 4), (sender, "g4"), "body four", &[]).await;
    assert_eq!(alone, GroupEnqueueOutcome::Queued { entries: vec![] });
    assert_eq!(
        store.group_message(group, 4, T0).await.unwrap(),
        Some(Bytes::from_static(b"body four"))
    );
}

pub async fn group_duplicates_are_recognised_by_sender_device_and_id(store: Arc<dyn Store>) {
    let store = &*store;
    let (group, other_group) = (GroupId::random(), GroupId::random());
    let a = register(store, 1).await.device.address;
    let b = register(store, 2).await.device.address;
    let sender = register(store, 3).await.device.address;
    let sender_tablet = DeviceAddress::new(sender.user, sender.device + 1);

    let first = send(store, (group, 1), (sender, "m1"), "hello", &[a, b]).await;
    assert_eq!(queued_refs(&first), vec![1, 1]);
    assert_eq!(
        send(store, (group, 2), (sender, "m1"), "hello again", &[a, b]).await,
        GroupEnqueueOutcome::Duplicate { message_seq: 1 },
        "the same sender device and id: the first message's seq"
    );
    assert_eq!(store.queue_len(a).await.unwrap(), 1, "nothing new queued");
    assert_eq!(store.queue_len(b).await.unwrap(), 1);
    assert_eq!(store.last_group_message_seq(group).await.unwrap(), 1);
    assert_eq!(store.group_message(group, 2, T0).await.unwrap(), None);
    assert_eq!(
        store.group_message(group, 1, T0).await.unwrap(),
        Some(Bytes::from_static(b"hello")),
        "the first body stays"
    );

    let tablet = send(
        store,
        (group, 2),
        (sender_tablet, "m1"),
        "from tablet",
        &[a],
    )
    .await;
    assert_eq!(
        queued_refs(&tablet),
        vec![2],
        "another sender device with the same id is another message"
    );
    let elsewhere = send(store, (other_group, 1), (sender, "m1"), "hello", &[a]).await;
    assert_eq!(
        queued_refs(&elsewhere),
        vec![3],
        "another group is another message"
    );

    store.ack_queue(a, 3).await.unwrap();
    assert_eq!(
        send(store, (group, 3), (sender, "m1"), "late resend", &[a, b]).await,
        GroupEnqueueOutcome::Duplicate { message_seq: 1 },
        "still a duplicate after the references were acknowledged"
    );
    assert_eq!(store.queue_len(a).await.unwrap(), 0);

    // Once the first message has expired (at this send's time), the id may be used again.
    let later = store
        .enqueue_group_message(
            group,
            3,
            (sender, "m1".to_owned()),
            Bytes::from_static(b"much later"),
            EXPIRES + 30 * DAY,
            vec![(
                a,
                NewEntry {
                    enqueued_at: EXPIRES,
                    expires_at: EXPIRES + 30 * DAY,
                    ..reference(group, 3, EXPIRES)
                },
            )],
        )
        .await
        .unwrap();
    assert_eq!(
        queued_refs(&later),
        vec![4],
        "a dedupe record expires with its message"
    );
    assert_eq!(
        store.group_message_seq(group, sender, "m1").await.unwrap(),
        Some(3)
    );
}

pub async fn group_message_seq_finds_sent_messages(store: Arc<dyn Store>) {
    let store = &*store;
    let (group, other_group) = (GroupId::random(), GroupId::random());
    let sender = device(1);
    let sender_tablet = DeviceAddress::new(sender.user, 2);
    let member = device(1);
    send(store, (group, 1), (sender, "m1"), "one", &[member]).await;
    send(store, (group, 2), (sender_tablet, "m1"), "two", &[member]).await;
    send(store, (group, 3), (sender, "m3"), "three", &[member]).await;
    let lookup = |sender, id: &'static str| async move {
        store.group_message_seq(group, sender, id).await.unwrap()
    };
    assert_eq!(lookup(sender, "m1").await, Some(1));
    assert_eq!(lookup(sender_tablet, "m1").await, Some(2));
    assert_eq!(lookup(sender, "m3").await, Some(3));
    assert_eq!(lookup(sender_tablet, "m3").await, None);
    assert_eq!(lookup(sender, "m2").await, None);
    assert_eq!(lookup(member, "m1").await, None);
    assert_eq!(
        store
            .group_message_seq(other_group, sender, "m1")
            .await
            .unwrap(),
        None
    );
    let too_long = "x".repeat(MAX_CLIENT_MESSAGE_ID_BYTES + 1);
    assert_eq!(
        store
            .group_message_seq(group, sender, &too_long)
            .await
            .unwrap(),
        None
    );
}

pub async fn group_messages_expire(store: Arc<dyn Store>) {
    let store = &*store;
    let group = GroupId::random();
    let (sender, member) = (device(1), device(1));
    let expires_at = T0 + 5_000;
    send_expiring(
        store,
        (group, 1),
        (sender, "m1"),
        "short-lived",
        expires_at,
        &[member],
    )
    .await;
    let body = Some(Bytes::from_static(b"short-lived"));
    assert_eq!(store.group_message(group, 1, T0).await.unwrap(), body);
    assert_eq!(
        store.group_message(group, 1, expires_at - 1).await.unwrap(),
        body
    );
    assert_eq!(
        store.group_message(group, 1, expires_at).await.unwrap(),
        None,
        "gone at expires_at, before any sweep"
    );
    assert_eq!(store.group_message(group, 2, T0).await.unwrap(), None);
    assert_eq!(
        store.group_message(GroupId::random(), 1, T0).await.unwrap(),
        None
    );
    assert_eq!(
        seqs(&read_all(store, member, expires_at).await),
        Vec::<u64>::new(),
        "its references expire with it"
    );
}

pub async fn group_receipts_keep_the_first_time_of_each_kind(store: Arc<dyn Store>) {
    let store = &*store;
    let group = GroupId::random();
    let (sender, member) = (device(1), device(1));
    let (u1, u2, u3) = (UserId::random(), UserId::random(), UserId::random());
    let receipt = |user, kind, at| async move {
        store
            .record_group_receipt(group, 1, user, kind, at)
            .await
            .unwrap()
    };
    use GroupReceiptKind::{Delivered, Read};

    receipt(u1, Delivered, T0 + 1).await;
    assert_eq!(
        store.group_receipts(group, 1).await.unwrap(),
        vec![],
        "a receipt for an unknown message is ignored"
    );
    send(store, (group, 1), (sender, "m1"), "hi", &[member]).await;
    send(store, (group, 2), (sender, "m2"), "hi again", &[member]).await;

    receipt(u1, Delivered, T0 + 10).await;
    receipt(u1, Delivered, T0 + 20).await;
    receipt(u1, Read, T0 + 30).await;
    receipt(u1, Read, T0 + 40).await;
    receipt(u1, Delivered, T0 + 50).await;
    // u2 read first: reading implies delivery.
    receipt(u2, Read, T0 + 60).await;
    // u3: a delivery receipt overtaken by the read receipt; the earlier time wins.
    receipt(u3, Read, T0 + 80).await;
    receipt(u3, Delivered, T0 + 70).await;
    receipt(u3, Read, T0 + 90).await;
    receipt(u3, Delivered, 0).await;

    let mut expected = vec![
        GroupReceiptRecord {
            user: u1,
            delivered_at: T0 + 10,
            read_at: T0 + 30,
        },
        GroupReceiptRecord {
            user: u2,
            delivered_at: T0 + 60,
            read_at: T0 + 60,
        },
        GroupReceiptRecord {
            user: u3,
            delivered_at: T0 + 70,
            read_at: T0 + 80,
        },
    ];
    expected.sort_by_key(|r| r.user);
    assert_eq!(
        store.group_receipts(group, 1).await.unwrap(),
        expected,
        "one record per user, ordered by user id"
    );
    assert_eq!(
        store.group_receipts(group, 2).await.unwrap(),
        vec![],
        "receipts belong to one message"
    );
    store
        .record_group_receipt(group, 2, u1, Delivered, EXPIRES)
        .await
        .unwrap();
    assert_eq!(
        store.group_receipts(group, 2).await.unwrap(),
        vec![],
        "a receipt for a message expired at its time is ignored"
    );
    store
        .record_group_receipt(group, 2, u1, Delivered, T0 + 5)
        .await
        .unwrap();
    assert_eq!(
        store.group_receipts(group, 2).await.unwrap(),
        vec![GroupReceiptRecord {
            user: u1,
            delivered_at: T0 + 5,
            read_at: 0
        }]
    );
    assert_eq!(store.group_receipts(group, 3).await.unwrap(), vec![]);
    assert_eq!(
        store.group_receipts(GroupId::random(), 1).await.unwrap(),
        vec![]
    );
}

pub async fn expired_group_data_is_swept(store: Arc<dyn Store>) {
    let store = &*store;
    let group = GroupId::random();
    let creator = UserId::random();
    store
        .put_group(group_record(group, creator, Some("stays")))
        .await
        .unwrap();
    let sender = device(1);
    let (a, b) = (device(1), device(1));
    let short = T0 + 1_000;
    let long = T0 + 9_000;
    send_expiring(store, (group, 1), (sender, "m1"), "short", short, &[a, b]).await;
    send_expiring(store, (group, 2), (sender, "m2"), "long", long, &[a]).await;
    for seq in [1, 2] {
        store
            .record_group_receipt(group, seq, creator, GroupReceiptKind::Read, T0 + 1)
            .await
            .unwrap();
    }

    assert_eq!(
        store.sweep_expired(T0 + 2_000).await.unwrap(),
        2,
        "the count is of queue entries: the two references of message 1"
    );
    assert_eq!(
        store.group_message(group, 1, T0).await.unwrap(),
        None,
        "the body is gone (even asked at a time it was live)"
    );
    assert_eq!(
        store.group_message_seq(group, sender, "m1").await.unwrap(),
        None,
        "its dedupe record is gone"
    );
    assert_eq!(
        store.group_receipts(group, 1).await.unwrap(),
        vec![],
        "its receipts are gone"
    );
    assert_eq!(
        store.group_message(group, 2, T0).await.unwrap(),
        Some(Bytes::from_static(b"long")),
        "live messages stay"
    );
    assert_eq!(
        store.group_message_seq(group, sender, "m2").await.unwrap(),
        Some(2)
    );
    assert_eq!(store.group_receipts(group, 2).await.unwrap().len(), 1);
    assert_eq!(store.last_group_message_seq(group).await.unwrap(), 2);
    assert_eq!(store.sweep_expired(T0 + 2_000).await.unwrap(), 0);

    assert_eq!(store.sweep_expired(long).await.unwrap(), 1);
    assert_eq!(
        store.last_group_message_seq(group).await.unwrap(),
        0,
        "every message expired and swept"
    );
    assert_eq!(
        store.group_message_seq(group, sender, "m2").await.unwrap(),
        None
    );
    assert_eq!(store.group_receipts(group, 2).await.unwrap(), vec![]);
    assert_eq!(
        store.queue_len(a).await.unwrap() + store.queue_len(b).await.unwrap(),
        0
    );
    assert_eq!(
        store.group(group).await.unwrap(),
        Some(group_record(group, creator, Some("stays"))),
        "group records do not expire"
    );
    assert_eq!(store.group_by_invite("stays").await.unwrap(), Some(group));
    // A swept message's seq and client id may be used again.
    let again = send(store, (group, 1), (sender, "m1"), "again", &[a]).await;
    assert_eq!(queued_refs(&again), vec![3]);
}

pub async fn group_enqueue_is_all_or_nothing(store: Arc<dyn Store>) {
    let store = &*store;
    let group = GroupId::random();
    let (sender, a, b) = (device(1), device(1), device(1));
    let too_long = "x".repeat(MAX_CLIENT_MESSAGE_ID_BYTES + 1);
    let attempt = |seq: u64, sender_id: String, entries: Vec<(DeviceAddress, NewEntry)>| async move {
        store
            .enqueue_group_message(
                group,
                seq,
                (sender, sender_id),
                Bytes::from_static(b"body"),
                EXPIRES,
                entries,
            )
            .await
    };
    let refs = || references(group, 1, EXPIRES, &[a, b]);

    let refused = attempt(1, too_long.clone(), refs()).await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "an over-long sender client id: {refused:?}"
    );
    let mut bad_entry = refs();
    bad_entry[1].1.dedupe = Some((sender, too_long.clone()));
    let refused = attempt(1, "m1".to_owned(), bad_entry).await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "an over-long entry client id: {refused:?}"
    );
    let refused = attempt(0, "m1".to_owned(), refs()).await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "message seq 0: {refused:?}"
    );
    assert_eq!(store.queue_len(a).await.unwrap(), 0, "nothing was queued");
    assert_eq!(store.queue_len(b).await.unwrap(), 0);
    assert_eq!(store.last_group_message_seq(group).await.unwrap(), 0);
    assert_eq!(store.group_message(group, 1, T0).await.unwrap(), None);
    assert_eq!(
        store.group_message_seq(group, sender, "m1").await.unwrap(),
        None
    );

    let longest = "y".repeat(MAX_CLIENT_MESSAGE_ID_BYTES);
    let first = attempt(1, longest.clone(), refs()).await.unwrap();
    assert_eq!(
        queued_refs(&first),
        vec![1, 1],
        "no seq was taken by refused calls"
    );
    assert_eq!(
        store
            .group_message_seq(group, sender, &longest)
            .await
            .unwrap(),
        Some(1)
    );

    let refused = attempt(1, "another".to_owned(), refs()).await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "a message seq the group already has: {refused:?}"
    );
    assert_eq!(store.queue_len(a).await.unwrap(), 1);
    assert_eq!(
        store
            .group_message_seq(group, sender, "another")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.group_message(group, 1, T0).await.unwrap(),
        Some(Bytes::from_static(b"body")),
        "the stored message is not overwritten"
    );
}

/// A 4 KiB body to 200 devices: every queue holds only the small reference it was given, and
/// the body comes back from the one stored copy.
pub async fn one_group_body_serves_every_device(store: Arc<dyn Store>) {
    const DEVICES: usize = 200;
    let store = &*store;
    let group = GroupId::random();
    let sender = device(1);
    let members: Vec<DeviceAddress> = (0..DEVICES).map(|_| device(1)).collect();
    let body = Bytes::from((0..4096u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    for message_seq in 1..=2u64 {
        let outcome = store
            .enqueue_group_message(
                group,
                message_seq,
                (sender, format!("m{message_seq}")),
                body.clone(),
                EXPIRES,
                references(group, message_seq, EXPIRES, &members),
            )
            .await
            .unwrap();
        assert_eq!(queued_refs(&outcome), vec![message_seq; DEVICES]);
    }
    for member in &members {
        let read = read_all(store, *member, T0).await;
        assert_eq!(seqs(&read), vec![1, 2]);
        for (entry, message_seq) in read.iter().zip(1..) {
            let expected = reference(group, message_seq, EXPIRES).payload;
            assert_eq!(
                entry.payload, expected,
                "the queue holds the reference as given"
            );
            assert_eq!(entry.payload.len(), 24);
        }
    }
    for message_seq in 1..=2 {
        assert_eq!(
            store.group_message(group, message_seq, T0).await.unwrap(),
            Some(body.clone())
        );
    }
}

/// Group messages and direct entries racing for the same device queues get distinct,
/// contiguous seqs.
pub async fn concurrent_group_and_direct_enqueues_share_the_seqs(store: Arc<dyn Store>) {
    const TASKS: u64 = 8;
    const PER_TASK: u64 = 15;
    let group = GroupId::random();
    let (a, b) = (device(1), device(1));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..PER_TASK {
                    if (task + i) % 2 == 0 {
                        let message_seq = task * PER_TASK + i + 1;
                        let id = format!("{task}:{i}");
                        let sender = DeviceAddress::new(UserId::from_bytes([7; 16]), 1);
                        send(&*store, (group, message_seq), (sender, &id), &id, &[a, b]).await;
                    } else {
                        store
                            .enqueue(vec![(a, entry("direct", None)), (b, entry("direct", None))])
                            .await
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let expected: Vec<u64> = (1..=TASKS * PER_TASK).collect();
    assert_eq!(seqs(&read_all(&*store, a, T0).await), expected);
    assert_eq!(seqs(&read_all(&*store, b, T0).await), expected);
    let messages = (TASKS * PER_TASK).div_ceil(2);
    let mut stored = 0;
    for message_seq in 1..=TASKS * PER_TASK {
        if store
            .group_message(group, message_seq, T0)
            .await
            .unwrap()
            .is_some()
        {
            stored += 1;
        }
    }
    assert_eq!(stored, messages);
}
