//! Faults of a three-node cluster on real Kafka and Cassandra, one at a time (they stop the
//! shared services, so the cases of this file hold a lock): Kafka stopped and started again,
//! Cassandra stopped and started again, and every node restarted one by one. In each, a sender
//! streams messages through the fault; every send is either acknowledged or refused with a clear
//! error (never a false "sent"), every acknowledged message is delivered exactly once in order,
//! and the cluster recovers by itself. Each case prints its counts.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use courier_client::{Client, ClientError, ConnectOptions, Event, Messenger};
use courier_protocol::v1::ErrorCode;
use courier_tests::{ChildCluster, DEADLINE};
use tokio::sync::mpsc;

const SERVER: &str = env!("CARGO_BIN_EXE_courier-test-server");

/// Short timeouts so that a sender hears of an outage within seconds.
const FAST_FAILURE: &[(&str, &str)] = &[
    ("COURIER_CLUSTER__KAFKA_DELIVERY_TIMEOUT_MS", "3000"),
    ("COURIER_CLUSTER__ASK_TIMEOUT_MS", "6000"),
    ("COURIER_STORE__CQL_REQUEST_TIMEOUT_MS", "2000"),
];

/// One case at a time: they stop services every case uses.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs an `ops/cluster` script (the run directories come from the environment ops/test.sh
/// sets).
fn ops(script: &str, args: &[&str]) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let status = Command::new(format!("{root}/ops/cluster/{script}"))
        .args(args)
        .current_dir(root)
        .stdin(Stdio::null())
        .status()
        .expect("ops script runs");
    assert!(status.success(), "ops/cluster/{script} {args:?} failed");
}

/// What a stream of sends came to.
#[derive(Default)]
struct Tally {
    sent: u32,
    acknowledged: Vec<String>,
    refused: u32,
}

/// Sends `text` and records the outcome; a refusal must be a clear, retryable error.
async fn send(
    chat: &Messenger,
    to: courier_protocol::UserId,
    text: String,
    tally: &mut Tally,
) -> bool {
    tally.sent += 1;
    match chat.send_text(to, &text).await {
        Ok(_) => {
            tally.acknowledged.push(text);
            true
        }
        Err(ClientError::Rejected { code, message }) => {
            assert!(
                matches!(code, ErrorCode::Unavailable | ErrorCode::Busy),
                "a refusal during an outage says so: {code:?} {message}"
            );
            tally.refused += 1;
            false
        }
        Err(ClientError::Transport(_)) => {
            tally.refused += 1;
            false
        }
        Err(other) => panic!("unexpected failure: {other}"),
    }
}

/// Collects message texts on a connection, reconnecting through the given nodes (in turn)
/// whenever it closes.
fn receive(
    client: Client,
    servers: Vec<String>,
    first: mpsc::Receiver<Event>,
    into: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut events = first;
        let mut next = 0;
        let mut _chat = None;
        loop {
            while let Some(event) = events.recv().await {
                if let Event::Message { text, .. } = event {
                    into.lock().unwrap().push(text);
                }
            }
            loop {
                next += 1;
                let options = ConnectOptions {
                    server: Some(servers[next % servers.len()].clone()),
                    ..ConnectOptions::default()
                };
                if let Ok((chat, fresh)) = client.connect_with(&options).await {
                    _chat = Some(chat);
                    events = fresh;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    })
}

/// Waits until every acknowledged text arrived, then checks once each and in order.
async fn check_delivery(case: &str, tally: &Tally, received: &Arc<Mutex<Vec<String>>>) {
    let started = Instant::now();
    loop {
        let got = received.lock().unwrap().clone();
        if tally.acknowledged.iter().all(|t| got.contains(t)) {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE * 3,
            "{case}: acknowledged messages missing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = received.lock().unwrap().clone();
    let acked: Vec<&String> = got
        .iter()
        .filter(|t| tally.acknowledged.contains(t))
        .collect();
    assert_eq!(
        acked,
        tally.acknowledged.iter().collect::<Vec<_>>(),
        "{case}: every acknowledged message once, in order"
    );
    eprintln!(
        "{case}: sent {}, acknowledged {}, refused {}, received {} (acknowledged ones {}), lost 0",
        tally.sent,
        tally.acknowledged.len(),
        tally.refused,
        got.len(),
        acked.len()
    );
}

/// Sends until `count` more sends were acknowledged (the cluster recovered), numbering texts
/// from `tally.sent`.
async fn send_until_acknowledged(
    chat: &Messenger,
    to: courier_protocol::UserId,
    count: usize,
    tally: &mut Tally,
) -> Duration {
    let started = Instant::now();
    let target = tally.acknowledged.len() + count;
    while tally.acknowledged.len() < target {
        let text = format!("{}", tally.sent);
        if !send(chat, to, text, tally).await {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            started.elapsed() < DEADLINE * 4,
            "the cluster did not recover"
        );
    }
    started.elapsed()
}

/// A dependency (`script`) stops while Alice (node 1) streams to Bob (node 2), then starts
/// again.
async fn dependency_outage(case: &str, script: &str) {
    let cluster = ChildCluster::start(SERVER.as_ref(), 3, FAST_FAILURE).await;
    let alice = cluster.user(0).await;
    let bob = cluster.user(1).await;
    let servers: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();
    let (bob_chat, bob_events) = bob.connect().await.unwrap();
    let _bob_first = bob_chat;
    let received = Arc::new(Mutex::new(Vec::new()));
    receive(bob.clone(), servers, bob_events, Arc::clone(&received));
    let (alice_chat, _alice_events) = alice.connect().await.unwrap();
    let mut tally = Tally::default();

    send_until_acknowledged(&alice_chat, bob.user_id(), 20, &mut tally).await;
    ops(script, &["stop"]);
    let down = Instant::now();
    // While it is down, sends are refused (or, for what was already on its way, acknowledged).
    for _ in 0..3 {
        let text = format!("{}", tally.sent);
        send(&alice_chat, bob.user_id(), text, &mut tally).await;
    }
    assert!(tally.refused > 0, "{case}: a sender hears of the outage");
    ops(script, &["start"]);
    let recovered = send_until_acknowledged(&alice_chat, bob.user_id(), 20, &mut tally).await;
    eprintln!(
        "{case}: down for {:?}; all sends acknowledged again within {:?} of it being back",
        down.elapsed() - recovered,
        recovered
    );
    check_delivery(case, &tally, &received).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_stopped_and_started_again() {
    let _serial = SERIAL.lock().await;
    dependency_outage("kafka stop/start", "kafka.sh").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cassandra_stopped_and_started_again() {
    let _serial = SERIAL.lock().await;
    dependency_outage("cassandra stop/start", "cassandra.sh").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_restarted_one_by_one() {
    let _serial = SERIAL.lock().await;
    let mut cluster = ChildCluster::start(SERVER.as_ref(), 3, FAST_FAILURE).await;
    let alice = cluster.user(0).await;
    let bob = cluster.user(1).await;
    let servers: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();
    let (bob_chat, bob_events) = bob.connect().await.unwrap();
    let _bob_first = bob_chat;
    let received = Arc::new(Mutex::new(Vec::new()));
    receive(
        bob.clone(),
        servers.clone(),
        bob_events,
        Arc::clone(&received),
    );
    let (mut alice_chat, _events) = alice.connect().await.unwrap();
    let mut tally = Tally::default();
    send_until_acknowledged(&alice_chat, bob.user_id(), 10, &mut tally).await;

    for restarted in 0..cluster.nodes.len() {
        // Alice keeps sending from a node that stays up while this one restarts.
        let entry = servers[(restarted + 1) % servers.len()].clone();
        let options = ConnectOptions {
            server: Some(entry),
            ..ConnectOptions::default()
        };
        alice_chat.close().await;
        let (chat, _events) = alice.connect_with(&options).await.unwrap();
        alice_chat = chat;
        cluster.nodes[restarted].terminate();
        send_until_acknowledged(&alice_chat, bob.user_id(), 10, &mut tally).await;
        cluster.nodes[restarted].restart().await;
        send_until_acknowledged(&alice_chat, bob.user_id(), 10, &mut tally).await;
    }
    check_delivery("rolling restart", &tally, &received).await;
}
