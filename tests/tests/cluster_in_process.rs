//! Cluster mode in one process: three nodes joined to one in-process bus hub and sharing one
//! store, clients on different nodes. The routing is the same as with Kafka (which the
//! `cluster` tests use with real Kafka and Cassandra processes); here it runs in seconds.

use std::sync::Arc;

use courier_bus::{Bus, InProcessBus, InProcessHub, partition_for};
use courier_client::{Client, Event, Messenger, ReceiptKind};
use courier_store::Store;
use courier_store::embedded::{Durability, EmbeddedStore};
use courier_tests::{CodeBook, TestServer, messages, unique_phone, wait_for};
use tokio::sync::mpsc;

const PARTITIONS: u32 = 16;

struct Cluster {
    hub: InProcessHub,
    nodes: Vec<TestServer>,
    buses: Vec<Arc<InProcessBus>>,
    _store_dir: tempfile::TempDir,
}

async fn cluster(count: usize) -> Cluster {
    let hub = InProcessHub::new(PARTITIONS);
    let store_dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(store_dir.path(), Durability::Process).unwrap());
    let codes = Arc::new(CodeBook::default());
    let mut nodes = Vec::new();
    let mut buses = Vec::new();
    for i in 1..=count {
        let bus = hub.join(&format!("node-{i}"));
        buses.push(Arc::clone(&bus));
        let node = TestServer::start_node(
            |_| {},
            Arc::clone(&codes),
            Some(Arc::clone(&store)),
            Some(bus as Arc<dyn Bus>),
        )
        .await;
        nodes.push(node);
    }
    Cluster {
        hub,
        nodes,
        buses,
        _store_dir: store_dir,
    }
}

async fn user_on(node: &TestServer) -> (Client, Messenger, mpsc::Receiver<Event>) {
    let client = node.register(&unique_phone()).await;
    let (messenger, events) = client.connect().await.unwrap();
    (client, messenger, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_different_nodes_chat_with_receipts_typing_and_presence() {
    let cluster = cluster(3).await;
    let (alice, alice_chat, mut alice_events) = user_on(&cluster.nodes[0]).await;
    let (bob, bob_chat, mut bob_events) = user_on(&cluster.nodes[1]).await;

    // Bob's attachment travels to his owner and the presence change back to every node, so
    // Alice may first see him offline; she then sees him come online.
    alice_chat
        .subscribe_presence(&[bob.user_id()])
        .await
        .unwrap();
    let presence = wait_for(&mut alice_events, |e| {
        matches!(e, Event::Presence { online: true, .. })
    })
    .await;
    assert!(matches!(presence, Event::Presence { user, .. } if user == bob.user_id()));

    let mut sent = Vec::new();
    for i in 0..20 {
        sent.push(
            alice_chat
                .send_text(bob.user_id(), &format!("m{i}"))
                .await
                .unwrap(),
        );
    }
    let received = messages(&mut bob_events, 20).await;
    for (i, (from, id, text)) in received.iter().enumerate() {
        assert_eq!(*from, alice.user_id());
        assert_eq!(*id, sent[i].id, "per-sender order");
        assert_eq!(*text, format!("m{i}"));
    }
    // Delivered receipts come back across nodes.
    // Receipts may repeat (see docs/cluster.md); each message gets at least one.
    let mut delivered = std::collections::BTreeSet::new();
    while delivered.len() < 20 {
        if let Event::Receipt {
            kind: ReceiptKind::Delivered,
            ids,
            ..
        } = wait_for(&mut alice_events, |e| matches!(e, Event::Receipt { .. })).await
        {
            delivered.extend(ids);
        }
    }
    let expected: std::collections::BTreeSet<String> = sent.iter().map(|s| s.id.clone()).collect();
    assert_eq!(delivered, expected);

    bob_chat.typing(alice.user_id(), true).await.unwrap();
    let typing = wait_for(&mut alice_events, |e| matches!(e, Event::Typing { .. })).await;
    assert_eq!(
        typing,
        Event::Typing {
            from: bob.user_id(),
            typing: true
        }
    );

    let reply = bob_chat.send_text(alice.user_id(), "hi").await.unwrap();
    let received = messages(&mut alice_events, 1).await;
    assert_eq!(received[0], (bob.user_id(), reply.id, "hi".into()));

    bob_chat.close().await;
    let offline = wait_for(&mut alice_events, |e| {
        matches!(e, Event::Presence { online: false, .. })
    })
    .await;
    assert!(matches!(offline, Event::Presence { online: false, .. }));

    // All of it went through the bus: Bob's partition has committed records.
    let bob_partition = partition_for(bob.user_id().to_string().as_bytes(), PARTITIONS);
    assert!(cluster.hub.committed(bob_partition).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_wait_and_groups_span_nodes() {
    let cluster = cluster(3).await;
    let (alice, alice_chat, mut alice_events) = user_on(&cluster.nodes[0]).await;
    let bob = cluster.nodes[1].register(&unique_phone()).await;
    let (carol, _carol_chat, mut carol_events) = user_on(&cluster.nodes[2]).await;

    // Bob is offline: his messages wait in his queue.
    for i in 0..5 {
        alice_chat
            .send_text(bob.user_id(), &format!("while away {i}"))
            .await
            .unwrap();
    }
    let (bob_chat, mut bob_events) = bob.connect().await.unwrap();
    let received = messages(&mut bob_events, 5).await;
    let texts: Vec<String> = received.into_iter().map(|(_, _, t)| t).collect();
    assert_eq!(
        texts,
        (0..5)
            .map(|i| format!("while away {i}"))
            .collect::<Vec<_>>()
    );

    let info = alice_chat
        .create_group("across", &[bob.user_id(), carol.user_id()])
        .await
        .unwrap();
    alice_chat
        .send_group_text(info.id, "hello nodes")
        .await
        .unwrap();
    for events in [&mut bob_events, &mut carol_events] {
        match wait_for(events, |e| matches!(e, Event::GroupMessage { .. })).await {
            Event::GroupMessage {
                group, from, text, ..
            } => {
                assert_eq!(
                    (group, from, text.as_str()),
                    (info.id, alice.user_id(), "hello nodes")
                );
            }
            other => panic!("{other:?}"),
        }
    }
    bob_chat
        .send_group_text(info.id, "from node two")
        .await
        .unwrap();
    match wait_for(&mut alice_events, |e| {
        matches!(e, Event::GroupMessage { .. })
    })
    .await
    {
        Event::GroupMessage { from, text, .. } => {
            assert_eq!((from, text.as_str()), (bob.user_id(), "from node two"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_node_loses_nothing_that_was_acknowledged() {
    let cluster = cluster(3).await;
    // Alice and Bob connect to nodes 1 and 2; node 3 owns Bob's partition (the hub gives
    // partition p to the (p mod 3)-th node).
    let (alice, alice_chat, _alice_events) = user_on(&cluster.nodes[0]).await;
    let bob = loop {
        let candidate = cluster.nodes[1].register(&unique_phone()).await;
        let partition = partition_for(candidate.user_id().to_string().as_bytes(), PARTITIONS);
        if partition % 3 == 2 {
            break candidate;
        }
    };
    let (_bob_chat, mut bob_events) = bob.connect().await.unwrap();
    let mut sent = Vec::new();
    for i in 0..10 {
        sent.push(
            alice_chat
                .send_text(bob.user_id(), &format!("before {i}"))
                .await
                .unwrap()
                .id,
        );
    }
    // Node 3 dies without a word: its partitions go to nodes 1 and 2, which take over from the
    // last committed records.
    cluster.buses[2].crash().await;
    for i in 0..10 {
        // A send whose partition was on node 3 waits while the partition moves: its record is
        // applied by the new owner, which answers.
        let text = format!("after {i}");
        sent.push(alice_chat.send_text(bob.user_id(), &text).await.unwrap().id);
    }
    let received = messages(&mut bob_events, 20).await;
    let ids: Vec<String> = received.iter().map(|(_, id, _)| id.clone()).collect();
    assert_eq!(ids, sent, "every acknowledged message, once, in order");
    assert!(received.iter().all(|(from, _, _)| *from == alice.user_id()));
}
