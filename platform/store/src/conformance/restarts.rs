//! The two halves of the restart check, for backends that can reopen their data.

use bytes::Bytes;
use courier_protocol::{DeviceAddress, GroupId, PhoneNumber};

use super::groups::{group_record, reference, send_expiring};
use super::*;
use crate::Store;

/// The group [`write_before_reopen`] creates: a fixed id, so a writer that is killed need not
/// report it.
pub fn reopen_group() -> GroupId {
    GroupId::from_bytes([42; 16])
}

const GROUP_EXPIRES: Millis = T0 + 30 * DAY;

/// What [`write_before_reopen`] wrote, for [`check_after_reopen`].
#[derive(Clone, Debug)]
pub struct BeforeReopen {
    pub phone: PhoneNumber,
    pub registration: Registration,
    pub sender: DeviceAddress,
}

/// Writes a little of everything, acknowledging part of a queue; then the caller restarts the
/// backend (drop and reopen, or kill and reopen) and calls [`check_after_reopen`].
pub async fn write_before_reopen(store: &dyn Store) -> BeforeReopen {
    let p = phone(42);
    let registration = store.register(&p, "before", [42; 32], T0).await.unwrap();
    let device = registration.device.address;
    let sender = register(store, 43).await.device.address;
    store.set_device_keys(device, device_keys(4)).await.unwrap();
    store
        .add_one_time_prekeys(device, (1..=5).map(one_time_prekey).collect())
        .await
        .unwrap();
    store.take_key_bundle(device).await.unwrap().unwrap();
    store
        .set_last_seen(registration.account.user_id, T0 + 1)
        .await
        .unwrap();
    store
        .issue_code(&phone(44), "424242", T0, policy())
        .await
        .unwrap();
    for i in 1..=20u64 {
        let id = format!("m{i}");
        let outcome = enqueue_one(store, device, entry(&id, Some((sender, &id)))).await;
        assert_eq!(outcome, EnqueueOutcome::Queued { seq: i });
    }
    store.ack_queue(device, 15).await.unwrap();

    // A group whose invite code changed once, with one message (referenced on the sender's
    // queue) and a receipt.
    let group = reopen_group();
    let mut record = group_record(group, registration.account.user_id, Some("reopen-1"));
    store.put_group(record.clone()).await.unwrap();
    record.invite_code = Some("reopen-2".to_owned());
    record.revision = 2;
    store.put_group(record).await.unwrap();
    let outcome = send_expiring(
        store,
        (group, 1),
        (sender, "g1"),
        "group body",
        GROUP_EXPIRES,
        &[sender],
    )
    .await;
    assert_eq!(
        outcome,
        GroupEnqueueOutcome::Queued {
            entries: vec![EnqueueOutcome::Queued { seq: 1 }]
        }
    );
    store
        .record_group_receipt(
            group,
            1,
            registration.account.user_id,
            GroupReceiptKind::Read,
            T0 + 2,
        )
        .await
        .unwrap();
    BeforeReopen {
        phone: p,
        registration,
        sender,
    }
}

/// Checks that everything [`write_before_reopen`] wrote is there after the restart, and that
/// sequence numbers and de-duplication carry on where they were.
pub async fn check_after_reopen(store: &dyn Store, before: &BeforeReopen) {
    let device = before.registration.device.address;
    let account = store
        .account_by_phone(&before.phone)
        .await
        .unwrap()
        .expect("the account");
    assert_eq!(account.user_id, before.registration.account.user_id);
    assert_eq!(account.last_seen, T0 + 1);
    assert_eq!(
        store.device(device).await.unwrap(),
        Some(before.registration.device.clone())
    );
    assert_eq!(store.count_one_time_prekeys(device).await.unwrap(), 4);
    assert_eq!(
        store
            .pending_code(&phone(44), T0)
            .await
            .unwrap()
            .unwrap()
            .code,
        "424242"
    );
    let read = read_all(store, device, T0).await;
    assert_eq!(
        seqs(&read),
        (16..=20).collect::<Vec<_>>(),
        "unacknowledged entries survive"
    );
    assert_eq!(store.queue_len(device).await.unwrap(), 5);
    assert_eq!(
        enqueue_one(
            store,
            device,
            entry("m3 again", Some((before.sender, "m3")))
        )
        .await,
        EnqueueOutcome::Duplicate { seq: 3 },
        "dedupe records survive"
    );
    assert_eq!(
        enqueue_one(store, device, entry("after", None)).await,
        EnqueueOutcome::Queued { seq: 21 },
        "seqs are never reused across a restart"
    );
    store.ack_queue(device, 21).await.unwrap();
    assert_eq!(
        enqueue_one(store, device, entry("after empty", None)).await,
        EnqueueOutcome::Queued { seq: 22 }
    );
    let bundle = store
        .take_key_bundle(device)
        .await
        .unwrap()
        .expect("keys survive");
    assert_eq!(bundle.keys, device_keys(4));
    assert!(
        bundle.one_time_prekey.is_some_and(|k| k.id != 1),
        "a taken prekey stays taken"
    );
    check_group_after_reopen(store, before).await;
}

async fn check_group_after_reopen(store: &dyn Store, before: &BeforeReopen) {
    let group = reopen_group();
    let user = before.registration.account.user_id;
    let record = store
        .group(group)
        .await
        .unwrap()
        .expect("the group survives");
    assert_eq!(record.revision, 2);
    assert_eq!(record.invite_code.as_deref(), Some("reopen-2"));
    assert_eq!(store.group_by_invite("reopen-1").await.unwrap(), None);
    assert_eq!(
        store.group_by_invite("reopen-2").await.unwrap(),
        Some(group)
    );
    assert_eq!(store.last_group_message_seq(group).await.unwrap(), 1);
    assert_eq!(
        store.group_message(group, 1, T0).await.unwrap(),
        Some(Bytes::from_static(b"group body"))
    );
    assert_eq!(
        store
            .group_message_seq(group, before.sender, "g1")
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        store.group_receipts(group, 1).await.unwrap(),
        vec![GroupReceiptRecord {
            user,
            delivered_at: T0 + 2,
            read_at: T0 + 2
        }]
    );
    let read = read_all(store, before.sender, T0).await;
    assert_eq!(seqs(&read), vec![1], "the reference entry survives");
    assert_eq!(read[0].payload, reference(group, 1, GROUP_EXPIRES).payload);
    assert_eq!(
        send_expiring(
            store,
            (group, 2),
            (before.sender, "g1"),
            "resent",
            GROUP_EXPIRES,
            &[before.sender]
        )
        .await,
        GroupEnqueueOutcome::Duplicate { message_seq: 1 },
        "group dedupe records survive"
    );
    assert_eq!(
        send_expiring(
            store,
            (group, 2),
            (before.sender, "g2"),
            "next",
            GROUP_EXPIRES,
            &[before.sender]
        )
        .await,
        GroupEnqueueOutcome::Queued {
            entries: vec![EnqueueOutcome::Queued { seq: 2 }]
        },
        "references continue the queue's seqs"
    );
}
