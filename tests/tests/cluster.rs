//! A three-node cluster of server processes on real Kafka and Cassandra (started by
//! `ops/test.sh` through `ops/cluster/`; addresses in `COURIER_TEST_KAFKA` and
//! `COURIER_TEST_CQL`). Clients on different nodes chat one-to-one and in a group, with
//! receipts and offline delivery; then a node is killed with SIGKILL in the middle of a stream
//! and every acknowledged message still arrives exactly once, in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use courier_client::{Event, ReceiptKind};
use courier_protocol::UserId;
use courier_tests::{ChildCluster, DEADLINE, messages, wait_for};
use tokio::sync::mpsc;

const SERVER: &str = env!("CARGO_BIN_EXE_courier-test-server");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_three_nodes_chat_one_to_one_and_in_groups() {
    let cluster = ChildCluster::start(SERVER.as_ref(), 3, &[]).await;
    let alice = cluster.user(0).await;
    let bob = cluster.user(1).await;
    let carol = cluster.user(2).await;
    let (alice_chat, mut alice_events) = alice.connect().await.unwrap();
    let (bob_chat, mut bob_events) = bob.connect().await.unwrap();

    let mut sent = Vec::new();
    for i in 0..20 {
        let text = format!("m{i}");
        sent.push(alice_chat.send_text(bob.user_id(), &text).await.unwrap().id);
    }
    let received = messages(&mut bob_events, 20).await;
    let ids: Vec<String> = received.iter().map(|(_, id, _)| id.clone()).collect();
    assert_eq!(ids, sent, "in order, once each");

    // Receipts may repeat (an actor that moved pushes unacknowledged entries again, and their
    // second acknowledgement repeats the receipt); each message gets at least one.
    let mut delivered = std::collections::BTreeSet::new();
    while delivered.len() < sent.len() {
        if let Event::Receipt {
            kind: ReceiptKind::Delivered,
            ids,
            ..
        } = wait_for(&mut alice_events, |e| matches!(e, Event::Receipt { .. })).await
        {
            delivered.extend(ids);
        }
    }
    let expected: std::collections::BTreeSet<String> = sent.iter().cloned().collect();
    assert_eq!(delivered, expected, "a delivered receipt for each message");

    bob_chat
        .mark_read(alice.user_id(), vec![sent[0].clone()])
        .await
        .unwrap();
    let read = wait_for(&mut alice_events, |e| {
        matches!(
            e,
            Event::Receipt {
                kind: ReceiptKind::Read,
                ..
            }
        )
    })
    .await;
    assert!(matches!(read, Event::Receipt { by, .. } if by == bob.user_id()));

    // Carol is offline: her messages wait in Cassandra until she connects (to node 3).
    alice_chat
        .send_text(carol.user_id(), "while you were away")
        .await
        .unwrap();
    let (_carol_chat, mut carol_events) = carol.connect().await.unwrap();
    let received = messages(&mut carol_events, 1).await;
    assert_eq!(received[0].2, "while you were away");

    let info = alice_chat
        .create_group("three nodes", &[bob.user_id(), carol.user_id()])
        .await
        .unwrap();
    alice_chat
        .send_group_text(info.id, "hello, group")
        .await
        .unwrap();
    for events in [&mut bob_events, &mut carol_events] {
        match wait_for(events, |e| matches!(e, Event::GroupMessage { .. })).await {
            Event::GroupMessage { from, text, .. } => {
                assert_eq!((from, text.as_str()), (alice.user_id(), "hello, group"));
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Collects (sender, text) of every message event until the stream ends.
fn collect(
    mut events: mpsc::Receiver<Event>,
    into: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::Message { text, .. } | Event::GroupMessage { text, .. } => {
                    into.lock().unwrap().push(text)
                }
                _ => {}
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_stream_loses_no_acknowledged_message() {
    let mut cluster = ChildCluster::start(SERVER.as_ref(), 3, &[]).await;
    let alice = cluster.user(0).await;
    // Several recipients, so that some of their partitions are on the node that dies.
    let mut recipients = Vec::new();
    for _ in 0..4 {
        recipients.push(cluster.user(1).await);
    }
    let mut received: HashMap<UserId, Arc<Mutex<Vec<String>>>> = HashMap::new();
    let mut connections = Vec::new();
    for recipient in &recipients {
        let (chat, events) = recipient.connect().await.unwrap();
        let into = Arc::new(Mutex::new(Vec::new()));
        collect(events, Arc::clone(&into));
        received.insert(recipient.user_id(), into);
        connections.push(chat);
    }
    let (alice_chat, _alice_events) = alice.connect().await.unwrap();
    let ids: Vec<UserId> = recipients.iter().map(|r| r.user_id()).collect();
    // Every fourth message goes to a group of all four recipients.
    let group = alice_chat.create_group("stream", &ids).await.unwrap().id;

    // What each recipient must receive, in Alice's order.
    let acknowledged: Arc<Mutex<HashMap<UserId, Vec<String>>>> = Arc::default();
    let failed = Arc::new(Mutex::new(0u32));
    // The longest wait for one "sent": a send to a partition of the killed node waits until a
    // surviving node owns it — the time to recover delivery.
    let longest = Arc::new(Mutex::new(Duration::ZERO));
    let sender = tokio::spawn({
        let acknowledged = Arc::clone(&acknowledged);
        let failed = Arc::clone(&failed);
        let longest = Arc::clone(&longest);
        async move {
            for n in 0..240 {
                let to = ids[n % ids.len()];
                let in_group = n % 4 == 3;
                let text = if in_group {
                    format!("g{n}")
                } else {
                    format!("{n}")
                };
                let started = std::time::Instant::now();
                let outcome = if in_group {
                    alice_chat.send_group_text(group, &text).await
                } else {
                    alice_chat.send_text(to, &text).await
                };
                let took = started.elapsed();
                {
                    let mut longest = longest.lock().unwrap();
                    *longest = (*longest).max(took);
                }
                match outcome {
                    Ok(_) => {
                        let mut acknowledged = acknowledged.lock().unwrap();
                        let audience = if in_group { ids.clone() } else { vec![to] };
                        for user in audience {
                            acknowledged.entry(user).or_default().push(text.clone());
                        }
                    }
                    // A failed send is not acknowledged: the application would retry it.
                    Err(_) => *failed.lock().unwrap() += 1,
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    cluster.nodes[2].kill9();
    let killed_at = std::time::Instant::now();
    sender.await.unwrap();

    // Deliveries: a group message counts once per member.
    let total_acked: usize = acknowledged.lock().unwrap().values().map(Vec::len).sum();
    let started = std::time::Instant::now();
    loop {
        let done = acknowledged.lock().unwrap().iter().all(|(user, texts)| {
            let got = received[user].lock().unwrap();
            texts.iter().all(|t| got.contains(t))
        });
        if done {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE * 2,
            "acknowledged messages missing after the kill"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A moment for stray repeats, then exactly once and in per-sender order.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut total_received = 0;
    for (user, texts) in acknowledged.lock().unwrap().iter() {
        let got = received[user].lock().unwrap().clone();
        total_received += got.len();
        let acked: Vec<&String> = got.iter().filter(|t| texts.contains(t)).collect();
        assert_eq!(
            acked,
            texts.iter().collect::<Vec<_>>(),
            "once each, in order"
        );
    }
    eprintln!(
        "kill -9 of a node: sent 240 (60 to a group of 4), deliveries due {total_acked}, failed {}, received {total_received}, lost 0; longest send {:?}; all delivered {:?} after the kill",
        failed.lock().unwrap(),
        longest.lock().unwrap(),
        killed_at.elapsed()
    );
}
