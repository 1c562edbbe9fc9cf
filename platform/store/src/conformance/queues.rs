//! Device queues: seqs, de-duplication, acknowledgements, pagination, expiry, concurrency.

use std::sync::Arc;

use bytes::Bytes;
use courier_protocol::DeviceAddress;

use super::*;
use crate::Store;

pub async fn enqueue_assigns_increasing_seqs_per_device(store: Arc<dyn Store>) {
    let store = &*store;
    let a = register(store, 1).await.device.address;
    let b = register(store, 2).await.device.address;
    let c = DeviceAddress::new(a.user, a.device + 1);
    let batch = vec![
        (a, entry("a1", None)),
        (b, entry("b1", None)),
        (a, entry("a2", None)),
        (c, entry("c1", None)),
        (b, entry("b2", None)),
        (a, entry("a3", None)),
    ];
    let outcomes = store.enqueue(batch).await.unwrap();
    assert_eq!(
        queued(&outcomes),
        vec![1, 1, 2, 1, 2, 3],
        "per-device seqs in the order of entries: a1 b1 a2 c1 b2 a3"
    );
    let outcomes = store
        .enqueue(vec![(b, entry("b3", None)), (a, entry("a4", None))])
        .await
        .unwrap();
    assert_eq!(queued(&outcomes), vec![3, 4], "seqs continue across calls");

    let read = read_all(store, a, T0).await;
    assert_eq!(seqs(&read), vec![1, 2, 3, 4]);
    assert_eq!(
        payloads(&read),
        vec![&b"a1"[..], b"a2", b"a3", b"a4"],
        "oldest first"
    );
    assert_eq!(
        payloads(&read_all(store, b, T0).await),
        vec![&b"b1"[..], b"b2", b"b3"]
    );
    assert_eq!(payloads(&read_all(store, c, T0).await), vec![&b"c1"[..]]);
    assert_eq!(store.queue_len(a).await.unwrap(), 4);
    assert_eq!(store.queue_len(b).await.unwrap(), 3);
    assert!(store.enqueue(Vec::new()).await.unwrap().is_empty());

    // Every field comes back as written, including empty and large payloads.
    let big = Bytes::from(vec![0x5a; 64 * 1024]);
    let exact = NewEntry {
        dedupe: None,
        enqueued_at: T0 + 7,
        expires_at: T0 + 9 * DAY,
        payload: big.clone(),
    };
    let empty = NewEntry {
        payload: Bytes::new(),
        ..exact.clone()
    };
    store.enqueue(vec![(c, exact), (c, empty)]).await.unwrap();
    let read = store.read_queue(c, 1, 10, T0).await.unwrap();
    assert_eq!(
        read,
        vec![
            QueuedEntry {
                seq: 2,
                enqueued_at: T0 + 7,
                expires_at: T0 + 9 * DAY,
                payload: big
            },
            QueuedEntry {
                seq: 3,
                enqueued_at: T0 + 7,
                expires_at: T0 + 9 * DAY,
                payload: Bytes::new()
            },
        ]
    );
}

pub async fn enqueue_is_all_or_nothing(store: Arc<dyn Store>) {
    let store = &*store;
    let a = register(store, 1).await.device.address;
    let b = register(store, 2).await.device.address;
    let too_long = "x".repeat(MAX_CLIENT_MESSAGE_ID_BYTES + 1);
    let refused = store
        .enqueue(vec![
            (a, entry("fine", Some((b, "ok")))),
            (b, entry("id too long", Some((a, too_long.as_str())))),
        ])
        .await;
    assert!(
        matches!(refused, Err(crate::StoreError::Invalid(_))),
        "an over-long client message id is refused: {refused:?}"
    );
    assert_eq!(
        store.queue_len(a).await.unwrap(),
        0,
        "nothing of a refused batch is written"
    );
    assert_eq!(store.queue_len(b).await.unwrap(), 0);
    let longest = "y".repeat(MAX_CLIENT_MESSAGE_ID_BYTES);
    assert_eq!(
        store
            .enqueue(vec![
                (a, entry("fine", Some((b, "ok")))),
                (b, entry("longest id", Some((a, longest.as_str())))),
            ])
            .await
            .unwrap(),
        vec![
            EnqueueOutcome::Queued { seq: 1 },
            EnqueueOutcome::Queued { seq: 1 }
        ],
        "no seq or dedupe record was taken by the refused batch"
    );
}

pub async fn seqs_are_not_reused_after_the_queue_empties(store: Arc<dyn Store>) {
    let store = &*store;
    let device = register(store, 1).await.device.address;
    let batch = (1..=3)
        .map(|i| (device, entry(&format!("m{i}"), None)))
        .collect();
    assert_eq!(queued(&store.enqueue(batch).await.unwrap()), vec![1, 2, 3]);
    store.ack_queue(device, 3).await.unwrap();
    assert_eq!(store.queue_len(device).await.unwrap(), 0);
    assert!(read_all(store, device, T0).await.is_empty());
    assert_eq!(
        enqueue_one(store, device, entry("m4", None)).await,
        EnqueueOutcome::Queued { seq: 4 },
        "an emptied queue keeps counting"
    );
    store.ack_queue(device, 100).await.unwrap();
    assert_eq!(store.queue_len(device).await.unwrap(), 0);
    assert_eq!(
        enqueue_one(store, device, entry("m5", None)).await,
        EnqueueOutcome::Queued { seq: 5 },
        "acknowledging past the end does not move the counter"
    );
    assert_eq!(
        seqs(&read_all(store, device, T0).await),
        vec![5],
        "an acknowledgement does not hide entries queued after it"
    );
}

pub async fn duplicates_are_recognised_by_sender_device_and_id(store: Arc<dyn Store>) {
    let store = &*store;
    let recipient = register(store, 1).await.device.address;
    let other_recipient = register(store, 2).await.device.address;
    let sender = register(store, 3).await.device.address;
    let sender_tablet = DeviceAddress::new(sender.user, sender.device + 1);

    let first = enqueue_one(store, recipient, entry("hello", Some((sender, "m1")))).await;
    assert_eq!(first, EnqueueOutcome::Queued { seq: 1 });
    assert_eq!(
        enqueue_one(store, recipient, entry("hello again", Some((sender, "m1")))).await,
        EnqueueOutcome::Duplicate { seq: 1 },
        "the same sender device and id: the first seq"
    );
    assert_eq!(
        store.queue_len(recipient).await.unwrap(),
        1,
        "nothing new was written"
    );
    assert_eq!(
        payloads(&read_all(store, recipient, T0).await),
        vec![&b"hello"[..]]
    );
    assert_eq!(
        enqueue_one(
            store,
            recipient,
            entry("from tablet", Some((sender_tablet, "m1")))
        )
        .await,
        EnqueueOutcome::Queued { seq: 2 },
        "another sender device with the same id is another message"
    );
    assert_eq!(
        enqueue_one(store, other_recipient, entry("hello", Some((sender, "m1")))).await,
        EnqueueOutcome::Queued { seq: 1 },
        "another recipient device has its own queue"
    );
    for seq in [3, 4] {
        assert_eq!(
            enqueue_one(store, recipient, entry("receipt", None)).await,
            EnqueueOutcome::Queued { seq },
            "entries without dedupe key are never de-duplicated"
        );
    }
    let outcomes = store
        .enqueue(vec![
            (recipient, entry("twice", Some((sender, "m2")))),
            (recipient, entry("twice", Some((sender, "m2")))),
        ])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            EnqueueOutcome::Queued { seq: 5 },
            EnqueueOutcome::Duplicate { seq: 5 }
        ],
        "duplicates inside one batch"
    );
    store.ack_queue(recipient, 5).await.unwrap();
    assert_eq!(
        enqueue_one(store, recipient, entry("late resend", Some((sender, "m1")))).await,
        EnqueueOutcome::Duplicate { seq: 1 },
        "still a duplicate after the entry was delivered and acknowledged"
    );
    assert_eq!(store.queue_len(recipient).await.unwrap(), 0);
    let after_expiry = NewEntry {
        enqueued_at: T0 + 30 * DAY,
        expires_at: T0 + 60 * DAY,
        ..entry("much later", Some((sender, "m1")))
    };
    assert_eq!(
        enqueue_one(store, recipient, after_expiry).await,
        EnqueueOutcome::Queued { seq: 6 },
        "a dedupe record expires with its entry"
    );
}

pub async fn ack_removes_exactly_up_to_and_is_idempotent(store: Arc<dyn Store>) {
    let store = &*store;
    let device = register(store, 1).await.device.address;
    let other = register(store, 2).await.device.address;
    let batch = (1..=5)
        .map(|i| (device, entry(&format!("m{i}"), None)))
        .chain([(other, entry("o1", None))])
        .collect();
    store.enqueue(batch).await.unwrap();
    store.ack_queue(device, 0).await.unwrap();
    assert_eq!(
        store.queue_len(device).await.unwrap(),
        5,
        "ack 0 removes nothing"
    );
    store.ack_queue(device, 3).await.unwrap();
    assert_eq!(seqs(&read_all(store, device, T0).await), vec![4, 5]);
    assert_eq!(store.queue_len(device).await.unwrap(), 2);
    store.ack_queue(device, 3).await.unwrap();
    store.ack_queue(device, 2).await.unwrap();
    assert_eq!(
        seqs(&read_all(store, device, T0).await),
        vec![4, 5],
        "idempotent"
    );
    assert_eq!(
        store.queue_len(other).await.unwrap(),
        1,
        "other queues untouched"
    );
    store.ack_queue(device, 5).await.unwrap();
    assert!(read_all(store, device, T0).await.is_empty());
    assert_eq!(store.queue_len(device).await.unwrap(), 0);
    store.ack_queue(device, 5).await.unwrap();
    assert_eq!(seqs(&read_all(store, other, T0).await), vec![1]);
}

pub async fn read_queue_paginates(store: Arc<dyn Store>) {
    let store = &*store;
    let device = register(store, 1).await.device.address;
    let batch = (1..=10)
        .map(|i| (device, entry(&format!("m{i}"), None)))
        .collect();
    store.enqueue(batch).await.unwrap();
    let page = |after, limit| async move {
        seqs(&store.read_queue(device, after, limit, T0).await.unwrap())
    };
    assert_eq!(page(0, 4).await, vec![1, 2, 3, 4]);
    assert_eq!(page(4, 4).await, vec![5, 6, 7, 8]);
    assert_eq!(page(8, 4).await, vec![9, 10]);
    assert_eq!(page(10, 4).await, Vec::<u64>::new());
    assert_eq!(page(3, 1).await, vec![4]);
    assert_eq!(page(0, 0).await, Vec::<u64>::new(), "limit 0");
    assert_eq!(page(u64::MAX, 10).await, Vec::<u64>::new());
    store.ack_queue(device, 6).await.unwrap();
    assert_eq!(
        page(2, 2).await,
        vec![7, 8],
        "after may point into the acknowledged range"
    );
}

pub async fn expired_entries_are_skipped_and_swept(store: Arc<dyn Store>) {
    let store = &*store;
    let a = register(store, 1).await.device.address;
    let b = register(store, 2).await.device.address;
    let sender = register(store, 3).await.device.address;
    let with_key = |payload, id, expires_at| NewEntry {
        expires_at,
        ..entry(payload, Some((sender, id)))
    };
    store
        .enqueue(vec![
            (a, with_key("a1", "x1", T0 + 1_000)),
            (a, expiring("a2", T0 + 5_000)),
            (b, expiring("b1", T0 + 1_000)),
            (a, expiring("a3", T0 + 2_000)),
            (a, with_key("a4", "x4", T0 + 9_000)),
            (b, expiring("b2", T0 + 9_000)),
        ])
        .await
        .unwrap();
    let at = T0 + 2_000;
    assert_eq!(
        seqs(&read_all(store, a, at).await),
        vec![2, 4],
        "entries at or past expires_at are skipped"
    );
    assert_eq!(
        seqs(&store.read_queue(a, 0, 1, at).await.unwrap()),
        vec![2],
        "limit counts live entries"
    );
    assert_eq!(
        seqs(&read_all(store, a, T0).await),
        vec![1, 2, 3, 4],
        "nothing expired yet at T0"
    );

    assert_eq!(
        store.sweep_expired(at).await.unwrap(),
        3,
        "a1, a3 and b1 expired"
    );
    assert_eq!(
        store.sweep_expired(at).await.unwrap(),
        0,
        "nothing left to sweep"
    );
    assert_eq!(
        seqs(&read_all(store, a, T0).await),
        vec![2, 4],
        "swept entries are gone"
    );
    assert_eq!(store.queue_len(a).await.unwrap(), 2);
    assert_eq!(seqs(&read_all(store, b, T0).await), vec![2]);
    assert_eq!(store.queue_len(b).await.unwrap(), 1);

    // Expired de-duplication records are swept too (seen by enqueueing "in the past"), live ones
    // are kept.
    assert_eq!(
        enqueue_one(store, a, with_key("a1 again", "x1", T0 + 9_000)).await,
        EnqueueOutcome::Queued { seq: 5 },
        "the expired dedupe record went with its entry"
    );
    assert_eq!(
        enqueue_one(store, a, with_key("a4 again", "x4", T0 + 9_000)).await,
        EnqueueOutcome::Duplicate { seq: 4 },
        "a live dedupe record stays"
    );
    assert_eq!(
        store.sweep_expired(T0 + 10_000).await.unwrap(),
        4,
        "a2, a4, a5 and b2"
    );
    assert_eq!(
        store.queue_len(a).await.unwrap() + store.queue_len(b).await.unwrap(),
        0
    );
}

pub async fn concurrent_enqueues_get_distinct_contiguous_seqs(store: Arc<dyn Store>) {
    const TASKS: usize = 16;
    const PER_TASK: usize = 20;
    let device = register(&*store, 1).await.device.address;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..PER_TASK {
                    let outcome =
                        enqueue_one(&*store, device, entry(&format!("{task}:{i}"), None)).await;
                    seqs.push(queued(&[outcome])[0]);
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        let seqs = task.await.expect("task");
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one task's seqs increase: {seqs:?}"
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    let expected: Vec<u64> = (1..=(TASKS * PER_TASK) as u64).collect();
    assert_eq!(all, expected, "distinct, contiguous, from 1");
    let read = read_all(&*store, device, T0).await;
    assert_eq!(seqs(&read), expected);
    for task in 0..TASKS {
        let mine: Vec<String> = read
            .iter()
            .map(|e| String::from_utf8_lossy(&e.payload).into_owned())
            .filter(|p| p.starts_with(&format!("{task}:")))
            .collect();
        let sent: Vec<String> = (0..PER_TASK).map(|i| format!("{task}:{i}")).collect();
        assert_eq!(mine, sent, "each sender's entries stay in order");
    }
}
