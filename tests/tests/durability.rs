//! The server process is killed with SIGKILL in the middle of a stream of messages: every
//! message acknowledged as sent is still delivered afterwards, exactly once to the application,
//! in per-sender order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use courier_client::{Event, StateFile};
use courier_tests::{ChildServer, DEADLINE, unique_phone};
use tokio::sync::mpsc;

const SERVER: &str = env!("CARGO_BIN_EXE_courier-test-server");

/// Collects the text of every message event until the stream ends.
fn collect(
    mut events: mpsc::Receiver<Event>,
    into: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Event::Message { text, .. } = event {
                into.lock().unwrap().push(text);
            }
        }
    })
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !condition() {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn acknowledged_messages_survive_kill_9_and_arrive_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    std::fs::create_dir_all(&data).unwrap();
    let mut server = ChildServer::spawn(SERVER.as_ref(), &data).await;
    let alice = server
        .register(&unique_phone(), StateFile::at(dir.path().join("alice")))
        .await;
    let bob = server
        .register(&unique_phone(), StateFile::at(dir.path().join("bob")))
        .await;

    // Bob is online for the first part of the stream.
    let received = Arc::new(Mutex::new(Vec::new()));
    let (bob_chat, bob_events) = bob.connect().await.unwrap();
    let bob_first = collect(bob_events, Arc::clone(&received));

    // Alice streams numbered messages until the server dies under her.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let (alice_chat, _alice_events) = alice.connect().await.unwrap();
    let sender = tokio::spawn({
        let acknowledged = Arc::clone(&acknowledged);
        let bob_id = bob.user_id();
        async move {
            for i in 0..100_000u32 {
                let text = format!("m{i:06}");
                match alice_chat.send_text(bob_id, &text).await {
                    Ok(_) => acknowledged.lock().unwrap().push(text),
                    Err(_) => return i,
                }
            }
            unreachable!("the server was killed long before")
        }
    });
    wait_until("200 acknowledged messages", || {
        acknowledged.lock().unwrap().len() >= 200
    })
    .await;
    server.kill9();
    let attempted = tokio::time::timeout(DEADLINE, sender)
        .await
        .unwrap()
        .unwrap();
    bob_first.await.unwrap();
    drop(bob_chat);
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 200);

    server.restart().await;

    // Bob comes back and drains whatever was not acknowledged by his device before the kill.
    let (bob_chat, mut bob_events) = bob.connect().await.unwrap();
    loop {
        let event = tokio::time::timeout(DEADLINE, bob_events.recv())
            .await
            .expect("events after restart")
            .expect("connection open");
        match event {
            Event::Message { text, .. } => received.lock().unwrap().push(text),
            Event::QueueEmpty => break,
            _ => {}
        }
    }

    let received = received.lock().unwrap().clone();
    let mut unique = received.clone();
    unique.dedup();
    assert_eq!(
        unique.len(),
        received.len(),
        "no message reached the application twice"
    );
    let mut sorted = received.clone();
    sorted.sort();
    assert_eq!(
        sorted, received,
        "per-sender order is kept across the crash"
    );
    for text in &acknowledged {
        assert!(received.contains(text), "acknowledged {text} was lost");
    }
    // Whatever arrived beyond the acknowledged ones was in flight at the kill (accepted but not
    // yet confirmed): at-least-once allows it, and it was attempted.
    assert!(received.len() <= attempted as usize + 1);

    // The local history holds each message once, too.
    let history = bob.history().entries(None).unwrap();
    assert_eq!(history.len(), received.len());

    // The restarted server carries on normally.
    let (alice_chat, _alice_events) = alice.connect().await.unwrap();
    alice_chat
        .send_text(bob.user_id(), "after restart")
        .await
        .unwrap();
    let after = loop {
        if let Event::Message { text, .. } = tokio::time::timeout(DEADLINE, bob_events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            break text;
        }
    };
    assert_eq!(after, "after restart");
    drop(bob_chat);
    println!(
        "kill -9 test: {} acknowledged, {} attempted, {} received",
        acknowledged.len(),
        attempted,
        received.len()
    );
}
