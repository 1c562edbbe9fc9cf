//! The store and business store conformance suites and their restart checks against a real
//! cluster (Cassandra 5 or ScyllaDB) at `COURIER_TEST_CQL` (default `127.0.0.1:19042`; `ops/cluster/cassandra.sh start`
//! runs one).
//!
//! Creating a keyspace's tables takes over a second on Cassandra, so tests do not create one
//! each: they lease keyspaces from a small pool (`courier_test_0`, `courier_test_1`, ...) that
//! outlives the test run, and empty the tables a previous test wrote with `TRUNCATE`. A lease is
//! a row in `courier_test_pool.leases` (a lightweight transaction with a TTL), so test
//! processes running at the same time never share a keyspace; inside one process a keyspace
//! goes back to the pool when its test ends.

mod support;

use std::sync::Arc;

use courier_store::conformance::business::{
    check_business_after_reopen, write_business_before_reopen,
};
use courier_store::conformance::{T0, check_after_reopen, write_before_reopen};
use courier_store::{BusinessStore, Store};
use courier_store_cql::{CqlConfig, CqlStore};

use support::{Lease, config_for, connect_or_explain, fresh_store};

async fn factory() -> (Arc<dyn Store>, Lease) {
    let (store, lease) = fresh_store().await;
    (Arc::new(store), lease)
}

mod conformance {
    courier_store::conformance_tests!(super::factory);
}

async fn business_factory() -> (Arc<dyn BusinessStore>, Lease) {
    let (store, lease) = fresh_store().await;
    (Arc::new(store), lease)
}

mod business_conformance {
    courier_store::business_conformance_tests!(super::business_factory);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_a_new_session() {
    let (store, lease) = fresh_store().await;
    let before = write_before_reopen(&store).await;
    drop(store);
    let store = connect_or_explain(&config_for(lease.keyspace())).await;
    check_after_reopen(&store, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_data_survives_a_new_session() {
    let (store, lease) = fresh_store().await;
    let before = write_business_before_reopen(&store).await;
    drop(store);
    let store = connect_or_explain(&config_for(lease.keyspace())).await;
    check_business_after_reopen(&store, &before).await;
}

/// Sessions do not share their in-process locks: their appends to one queue race in the
/// cluster's transactions, and the losers read again and retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_from_several_sessions_share_one_queue() {
    use courier_store::business::{Appended, QueueItem, UniqueKey};
    const SESSIONS: usize = 3;
    const CALLS: usize = 10;
    let (first, lease) = fresh_store().await;
    let mut stores = vec![Arc::new(first)];
    for _ in 1..SESSIONS {
        stores.push(Arc::new(
            connect_or_explain(&config_for(lease.keyspace())).await,
        ));
    }
    let tasks: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(session, store)| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for call in 0..CALLS {
                    let items = vec![
                        QueueItem {
                            value: format!("{session}:{call}").into_bytes().into(),
                            unique: None,
                        },
                        QueueItem {
                            value: format!("key {call} from {session}").into_bytes().into(),
                            unique: Some(UniqueKey {
                                key: format!("key {call}"),
                                unique_until: T0 + 3_600_000,
                            }),
                        },
                    ];
                    outcomes.push(store.append("webhooks/shared", items, T0).await.unwrap());
                }
                outcomes
            })
        })
        .collect();
    let mut seqs = std::collections::BTreeSet::new();
    let mut new_keys = vec![0; CALLS];
    for task in tasks {
        for (call, outcomes) in task.await.expect("task").into_iter().enumerate() {
            for (i, outcome) in outcomes.into_iter().enumerate() {
                match outcome {
                    Appended::New(seq) => {
                        assert!(seqs.insert(seq), "seq {seq} given twice");
                        if i == 1 {
                            new_keys[call] += 1;
                        }
                    }
                    Appended::Duplicate => assert_eq!(i, 1, "only keyed items are duplicates"),
                }
            }
        }
    }
    assert_eq!(new_keys, vec![1; CALLS], "each key appended once");
    let read = BusinessStore::read_queue(&*stores[0], "webhooks/shared", 0, usize::MAX)
        .await
        .unwrap();
    let read_seqs: Vec<u64> = read.iter().map(|item| item.seq).collect();
    assert_eq!(read_seqs, seqs.into_iter().collect::<Vec<_>>());
    assert_eq!(read.len(), SESSIONS * CALLS + CALLS);
}

/// Removals move a queue's head (where reads start) to its oldest item: past everything
/// removed, never past an item, also when the queue is emptied and refilled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_start_at_the_oldest_item_left() {
    use courier_store::business::QueueItem;
    let (store, _lease) = fresh_store().await;
    let store: Arc<dyn BusinessStore> = Arc::new(store);
    let append = |values: &'static [&'static str]| {
        let store = store.clone();
        async move {
            let items = values
                .iter()
                .map(|v| QueueItem {
                    value: bytes::Bytes::from_static(v.as_bytes()),
                    unique: None,
                })
                .collect();
            let outcomes = store.append("outbox/head", items, T0).await.unwrap();
            outcomes
                .into_iter()
                .map(|outcome| match outcome {
                    courier_store::business::Appended::New(seq) => seq,
                    other => panic!("a plain item is new: {other:?}"),
                })
                .collect::<Vec<u64>>()
        }
    };
    let values = |items: Vec<courier_store::business::QueuedItem>| -> Vec<String> {
        items
            .iter()
            .map(|i| String::from_utf8_lossy(&i.value).into_owned())
            .collect()
    };
    let s = append(&["1", "2", "3", "4"]).await;
    store.remove("outbox/head", &[s[1]]).await.unwrap();
    store.remove("outbox/head", &[s[0]]).await.unwrap();
    let read = store.read_queue("outbox/head", 0, 10).await.unwrap();
    assert_eq!(values(read), vec!["3", "4"]);
    store.remove("outbox/head", &[s[2], s[3]]).await.unwrap();
    assert!(
        store
            .read_queue("outbox/head", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let later = append(&["5", "6"]).await;
    store.remove("outbox/head", &s[..3]).await.unwrap();
    let read = store.read_queue("outbox/head", 0, 10).await.unwrap();
    assert_eq!(
        values(read),
        vec!["5", "6"],
        "items after the emptied queue's head"
    );
    let read = store.read_queue("outbox/head", later[0], 10).await.unwrap();
    assert_eq!(values(read), vec!["6"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_queued_entries_counts_every_queue() {
    let (store, _lease) = fresh_store().await;
    assert_eq!(
        store.count_queued_entries().await.unwrap(),
        0,
        "an empty store"
    );
    let entry = |payload: &'static str| courier_store::NewEntry {
        dedupe: None,
        enqueued_at: T0,
        expires_at: T0 + 1_000,
        payload: bytes::Bytes::from_static(payload.as_bytes()),
    };
    let (a, b) = (device(), device());
    let batch = (0..5)
        .map(|_| (a, entry("a")))
        .chain((0..3).map(|_| (b, entry("b"))))
        .collect();
    store.enqueue(batch).await.unwrap();
    assert_eq!(store.count_queued_entries().await.unwrap(), 8);
    store.ack_queue(a, 2).await.unwrap();
    assert_eq!(
        store.count_queued_entries().await.unwrap(),
        6,
        "acknowledged entries are gone"
    );
    assert_eq!(store.sweep_expired(T0 + 1_000).await.unwrap(), 6);
    assert_eq!(store.count_queued_entries().await.unwrap(), 0);
}

fn device() -> courier_protocol::DeviceAddress {
    courier_protocol::DeviceAddress::new(courier_protocol::UserId::random(), 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_is_unavailable() {
    let config = CqlConfig {
        contact_points: vec!["127.0.0.1:1".to_owned()],
        keyspace: "courier_unreachable".to_owned(),
        replication_factor: 1,
        request_timeout: std::time::Duration::from_secs(2),
        ..CqlConfig::default()
    };
    match CqlStore::connect(&config).await {
        Err(courier_store::StoreError::Unavailable(message)) => {
            assert!(message.contains("127.0.0.1:1"), "{message}")
        }
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("connected to a closed port"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_starts_migrate_once() {
    let lease = support::lease_dropped_keyspace().await;
    let config = config_for(lease.keyspace());
    let starts: Vec<_> = (0..3)
        .map(|_| {
            let config = config.clone();
            tokio::spawn(async move { CqlStore::connect(&config).await })
        })
        .collect();
    let mut stores = Vec::new();
    for start in starts {
        stores.push(start.await.expect("task").expect("connect"));
    }
    assert_eq!(
        support::applied_migrations(lease.keyspace()).await,
        vec![1, 2],
        "each migration recorded once"
    );
    let reg = stores[2]
        .register(
            &courier_protocol::PhoneNumber::parse("+15550000001").unwrap(),
            "phone",
            [1; 32],
            1,
        )
        .await
        .unwrap();
    assert_eq!(
        stores[0].device(reg.device.address).await.unwrap(),
        Some(reg.device),
        "every store sees the same schema and data"
    );
}
