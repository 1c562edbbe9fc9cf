//! Two people chat end to end: registration, encrypted messages both ways, receipts, offline
//! delivery, presence and typing.

use courier_client::{Event, ReceiptKind};
use courier_tests::{TestServer, messages, unique_phone, wait_for};

#[tokio::test]
async fn two_users_exchange_encrypted_messages_both_ways_with_receipts() {
    let server = TestServer::start().await;
    let alice = server.register(&unique_phone()).await;
    let bob = server.register(&unique_phone()).await;
    let (alice_chat, mut alice_events) = alice.connect().await.unwrap();
    let (bob_chat, mut bob_events) = bob.connect().await.unwrap();

    let bob_id = alice.lookup(&bob.phone()).await.unwrap();
    assert_eq!(bob_id, bob.user_id());
    let sent = alice_chat.send_text(bob_id, "hi Bob").await.unwrap();
    assert!(!sent.duplicate);

    let received = messages(&mut bob_events, 1).await;
    assert_eq!(
        received[0],
        (alice.user_id(), sent.id.clone(), "hi Bob".into())
    );

    // Bob's device acknowledged the delivery: Alice gets "delivered".
    let delivered = wait_for(&mut alice_events, |e| matches!(e, Event::Receipt { .. })).await;
    assert_eq!(
        delivered,
        Event::Receipt {
            kind: ReceiptKind::Delivered,
            by: bob.user_id(),
            ids: vec![sent.id.clone()],
            group: None,
        }
    );
    bob_chat
        .mark_read(alice.user_id(), vec![sent.id.clone()])
        .await
        .unwrap();
    let read = wait_for(&mut alice_events, |e| matches!(e, Event::Receipt { .. })).await;
    assert_eq!(
        read,
        Event::Receipt {
            kind: ReceiptKind::Read,
            by: bob.user_id(),
            ids: vec![sent.id.clone()],
            group: None,
        }
    );

    // And back: Bob answers over the session Alice started.
    let reply = bob_chat
        .send_text(alice.user_id(), "hi Alice")
        .await
        .unwrap();
    let received = messages(&mut alice_events, 1).await;
    assert_eq!(received[0], (bob.user_id(), reply.id, "hi Alice".into()));

    // A longer exchange in both directions keeps every message, in order per sender.
    for round in 0..20 {
        alice_chat
            .send_text(bob_id, &format!("a{round}"))
            .await
            .unwrap();
        bob_chat
            .send_text(alice.user_id(), &format!("b{round}"))
            .await
            .unwrap();
    }
    let to_bob: Vec<String> = messages(&mut bob_events, 20)
        .await
        .into_iter()
        .map(|m| m.2)
        .collect();
    let to_alice: Vec<String> = messages(&mut alice_events, 20)
        .await
        .into_iter()
        .map(|m| m.2)
        .collect();
    assert_eq!(to_bob, (0..20).map(|i| format!("a{i}")).collect::<Vec<_>>());
    assert_eq!(
        to_alice,
        (0..20).map(|i| format!("b{i}")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn offline_recipient_gets_its_queue_in_order_on_reconnect() {
    let server = TestServer::start().await;
    let alice = server.register(&unique_phone()).await;
    let bob = server.register(&unique_phone()).await;
    let (alice_chat, mut alice_events) = alice.connect().await.unwrap();

    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            alice_chat
                .send_text(bob.user_id(), &format!("m{i}"))
                .await
                .unwrap()
                .id,
        );
    }

    // Bob was never online; now he connects and drains his queue.
    let (_bob_chat, mut bob_events) = bob.connect().await.unwrap();
    let received = messages(&mut bob_events, 30).await;
    let received_ids: Vec<String> = received.iter().map(|m| m.1.clone()).collect();
    assert_eq!(received_ids, ids, "per-sender order is kept");
    assert_eq!(
        wait_for(&mut bob_events, |e| matches!(e, Event::QueueEmpty)).await,
        Event::QueueEmpty
    );

    // Alice was online all along and hears "delivered" for all 30.
    let mut delivered = Vec::new();
    while delivered.len() < 30 {
        if let Event::Receipt {
            kind: ReceiptKind::Delivered,
            ids,
            ..
        } = wait_for(&mut alice_events, |e| matches!(e, Event::Receipt { .. })).await
        {
            delivered.extend(ids);
        }
    }
    delivered.sort();
    ids.sort();
    assert_eq!(delivered, ids);
}

#[tokio::test]
async fn receipts_wait_in_the_queue_of_an_offline_sender() {
    let server = TestServer::start().await;
    let alice = server.register(&unique_phone()).await;
    let bob = server.register(&unique_phone()).await;

    let (alice_chat, _alice_events) = alice.connect().await.unwrap();
    let sent = alice_chat
        .send_text(bob.user_id(), "are you there?")
        .await
        .unwrap();
    alice_chat.close().await;

    let (bob_chat, mut bob_events) = bob.connect().await.unwrap();
    messages(&mut bob_events, 1).await;
    bob_chat
        .mark_read(alice.user_id(), vec![sent.id.clone()])
        .await
        .unwrap();

    let (_alice_chat, mut alice_events) = alice.connect().await.unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        if let Event::Receipt { kind, ids, .. } =
            wait_for(&mut alice_events, |e| matches!(e, Event::Receipt { .. })).await
        {
            assert_eq!(ids, vec![sent.id.clone()]);
            kinds.push(kind);
        }
    }
    assert_eq!(kinds, vec![ReceiptKind::Delivered, ReceiptKind::Read]);
}

#[tokio::test]
async fn presence_and_typing_reach_online_watchers_and_respect_privacy() {
    let server = TestServer::start().await;
    let alice = server.register(&unique_phone()).await;
    let bob = server.register(&unique_phone()).await;
    let (alice_chat, mut alice_events) = alice.connect().await.unwrap();

    alice_chat
        .subscribe_presence(&[bob.user_id()])
        .await
        .unwrap();
    let offline = wait_for(&mut alice_events, |e| matches!(e, Event::Presence { .. })).await;
    assert_eq!(
        offline,
        Event::Presence {
            user: bob.user_id(),
            online: false,
            last_seen_ms: 0
        },
        "never seen"
    );

    let (bob_chat, _bob_events) = bob.connect().await.unwrap();
    let online = wait_for(&mut alice_events, |e| matches!(e, Event::Presence { .. })).await;
    assert!(matches!(online, Event::Presence { online: true, .. }));

    bob_chat.typing(alice.user_id(), true).await.unwrap();
    let typing = wait_for(&mut alice_events, |e| matches!(e, Event::Typing { .. })).await;
    assert_eq!(
        typing,
        Event::Typing {
            from: bob.user_id(),
            typing: true
        }
    );

    bob_chat.close().await;
    let Event::Presence {
        online,
        last_seen_ms,
        ..
    } = wait_for(&mut alice_events, |e| matches!(e, Event::Presence { .. })).await
    else {
        unreachable!()
    };
    assert!(!online);
    assert!(last_seen_ms > 0, "last seen is visible by default");

    // Bob hides his last seen: the next offline event carries none.
    let (bob_chat, _bob_events) = bob.connect().await.unwrap();
    bob_chat.set_last_seen_visible(false).await.unwrap();
    wait_for(&mut alice_events, |e| {
        matches!(e, Event::Presence { online: true, .. })
    })
    .await;
    bob_chat.close().await;
    let hidden = wait_for(&mut alice_events, |e| {
        matches!(e, Event::Presence { online: false, .. })
    })
    .await;
    assert_eq!(
        hidden,
        Event::Presence {
            user: bob.user_id(),
            online: false,
            last_seen_ms: 0
        }
    );
}

#[tokio::test]
async fn a_drain_closes_connections_with_going_away() {
    let mut server = TestServer::start().await;
    let alice = server.register(&unique_phone()).await;
    let (_chat, mut events) = alice.connect().await.unwrap();
    wait_for(&mut events, |e| matches!(e, Event::QueueEmpty)).await;
    server.stop().await;
    let closed = wait_for(&mut events, |e| matches!(e, Event::Closed { .. })).await;
    assert!(
        matches!(
            closed,
            Event::Closed {
                code: courier_protocol::close::GOING_AWAY,
                ..
            }
        ),
        "{closed:?}"
    );
}

#[tokio::test]
async fn a_drain_with_a_grace_period_fails_readiness_first_and_keeps_serving() {
    let mut server = TestServer::start_with(|c| c.server.unready_grace_ms = 3_000).await;
    let alice = server.register(&unique_phone()).await;
    let bob = server.register(&unique_phone()).await;
    let (alice_chat, _alice_events) = alice.connect().await.unwrap();
    let (_bob_chat, mut bob_events) = bob.connect().await.unwrap();
    let readyz = format!("{}/readyz", server.url());
    let http = reqwest::Client::new();
    assert_eq!(http.get(&readyz).send().await.unwrap().status(), 200);

    // The server (and its data directory) lives until the drain is over.
    let running = tokio::spawn(async move {
        server.stop().await;
        server
    });
    // Readiness fails first...
    let started = std::time::Instant::now();
    loop {
        let status = http.get(&readyz).send().await.unwrap().status();
        if status == 503 {
            break;
        }
        assert!(
            started.elapsed() < courier_tests::DEADLINE,
            "readiness never failed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // ...while connected devices still chat...
    alice_chat
        .send_text(bob.user_id(), "still here")
        .await
        .unwrap();
    assert_eq!(messages(&mut bob_events, 1).await[0].2, "still here");
    // ...and then connections close with "going away".
    let closed = wait_for(&mut bob_events, |e| matches!(e, Event::Closed { .. })).await;
    assert!(
        matches!(
            closed,
            Event::Closed {
                code: courier_protocol::close::GOING_AWAY,
                ..
            }
        ),
        "{closed:?}"
    );
    running.await.unwrap();
}
