//! The conformance suite in both durabilities, and what only a store on disk can show:
//! restarts, `kill -9`, group commit.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use courier_protocol::{DeviceAddress, GroupId, PhoneNumber, UserId};
use tempfile::TempDir;

use super::{Durability, EmbeddedStore};
use crate::conformance::business::{
    BusinessBeforeReopen, check_business_after_reopen, write_business_before_reopen,
};
use crate::conformance::{BeforeReopen, T0, check_after_reopen, write_before_reopen};
// `BusinessStore` stays unimported: its `read_queue` would make `Store`'s ambiguous here.
use crate::{Account, Device, EnqueueOutcome, GroupEnqueueOutcome, NewEntry, Registration, Store};

async fn fresh(durability: Durability) -> (Arc<dyn Store>, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path(), durability).expect("open");
    (Arc::new(store), dir)
}

async fn process_store() -> (Arc<dyn Store>, TempDir) {
    fresh(Durability::Process).await
}

async fn sync_store() -> (Arc<dyn Store>, TempDir) {
    fresh(Durability::Sync).await
}

mod process {
    crate::conformance_tests!(super::process_store);
}

mod sync {
    crate::conformance_tests!(super::sync_store);
}

async fn fresh_business(durability: Durability) -> (Arc<dyn crate::BusinessStore>, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path(), durability).expect("open");
    (Arc::new(store), dir)
}

async fn business_process_store() -> (Arc<dyn crate::BusinessStore>, TempDir) {
    fresh_business(Durability::Process).await
}

async fn business_sync_store() -> (Arc<dyn crate::BusinessStore>, TempDir) {
    fresh_business(Durability::Sync).await
}

mod business_process {
    crate::business_conformance_tests!(super::business_process_store);
}

mod business_sync {
    crate::business_conformance_tests!(super::business_sync_store);
}

const BOTH: [Durability; 2] = [Durability::Process, Durability::Sync];

fn entry(payload: &str) -> NewEntry {
    NewEntry {
        dedupe: None,
        enqueued_at: T0,
        expires_at: T0 + 1_000_000,
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    }
}

#[test]
fn durability_parses_and_prints() {
    for durability in BOTH {
        assert_eq!(
            durability.to_string().parse::<Durability>().unwrap(),
            durability
        );
        let json = serde_json::to_string(&durability).unwrap();
        assert_eq!(
            serde_json::from_str::<Durability>(&json).unwrap(),
            durability
        );
    }
    assert_eq!("Sync".parse::<Durability>().unwrap(), Durability::Sync);
    assert_eq!(
        serde_json::from_str::<Durability>("\"process\"").unwrap(),
        Durability::Process
    );
    assert!("fsync".parse::<Durability>().is_err());
    assert!(serde_json::from_str::<Durability>("\"none\"").is_err());
    assert_eq!(Durability::default(), Durability::Process);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_drop_and_reopen() {
    for durability in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), durability).unwrap();
        let before = write_before_reopen(&store).await;
        drop(store); // no explicit flush
        let store = EmbeddedStore::open(dir.path(), durability).unwrap();
        check_after_reopen(&store, &before).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_data_survives_drop_and_reopen() {
    for durability in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), durability).unwrap();
        let before = write_business_before_reopen(&store).await;
        drop(store); // no explicit flush
        let store = EmbeddedStore::open(dir.path(), durability).unwrap();
        check_business_after_reopen(&store, &before).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seqs_are_not_reused_after_reopen() {
    for durability in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let phone = PhoneNumber::parse("+15550000001").unwrap();
        let store = EmbeddedStore::open(dir.path(), durability).unwrap();
        let device = store
            .register(&phone, "d", [1; 32], T0)
            .await
            .unwrap()
            .device
            .address;
        let batch = (0..3).map(|i| (device, entry(&format!("m{i}")))).collect();
        store.enqueue(batch).await.unwrap();
        store.ack_queue(device, 3).await.unwrap();
        assert_eq!(store.queue_len(device).await.unwrap(), 0);
        drop(store);
        for expected in 4..=6u64 {
            let store = EmbeddedStore::open(dir.path(), durability).unwrap();
            assert_eq!(
                store.queue_len(device).await.unwrap(),
                0,
                "the queue stays empty"
            );
            let outcome = store.enqueue(vec![(device, entry("again"))]).await.unwrap();
            assert_eq!(outcome, vec![EnqueueOutcome::Queued { seq: expected }]);
            store.ack_queue(device, expected).await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_directory_is_opened_by_one_store_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), Durability::Process).unwrap();
    assert!(EmbeddedStore::open(dir.path(), Durability::Process).is_err());
    drop(store);
    assert!(EmbeddedStore::open(dir.path(), Durability::Process).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_commits_writes_in_flight_together() {
    const WRITERS: usize = 64;
    const EACH: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path(), Durability::Sync).unwrap());
    let phone = PhoneNumber::parse("+15550000001").unwrap();
    let device = store
        .register(&phone, "d", [1; 32], T0)
        .await
        .unwrap()
        .device
        .address;
    let syncs_before = store.journal_syncs();
    assert!(syncs_before >= 1, "an acknowledged write was synced");
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    store
                        .enqueue(vec![(device, entry(&format!("{w}:{i}")))])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let syncs = store.journal_syncs() - syncs_before;
    let writes = (WRITERS * EACH) as u64;
    assert_eq!(store.queue_len(device).await.unwrap(), writes);
    assert!(syncs >= 1);
    assert!(
        syncs * 4 <= writes,
        "{syncs} syncs for {writes} writes: concurrent writes should share syncs"
    );
    let process = EmbeddedStore::open(&dir.path().join("p"), Durability::Process).unwrap();
    process.register(&phone, "d", [1; 32], T0).await.unwrap();
    assert_eq!(process.journal_syncs(), 0, "process durability never syncs");
}

/// What "stored once" means on disk: N group messages of 4 KiB to 500 member devices leave N
/// records in `group_messages` and 500 × N reference entries of a few bytes in `queue`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_body_is_stored_once_whatever_the_number_of_members() {
    const MEMBERS: usize = 500;
    const MESSAGES: u64 = 5;
    const BODY: usize = 4096;
    for durability in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), durability).unwrap();
        let group = GroupId::random();
        let sender = DeviceAddress::new(UserId::random(), 1);
        let members: Vec<DeviceAddress> = (0..MEMBERS)
            .map(|_| DeviceAddress::new(UserId::random(), 1))
            .collect();
        for message_seq in 1..=MESSAGES {
            let reference = Bytes::from(message_seq.to_be_bytes().to_vec());
            let entries = members
                .iter()
                .map(|&member| {
                    let entry = NewEntry {
                        payload: reference.clone(),
                        ..entry("")
                    };
                    (member, entry)
                })
                .collect();
            let outcome = store
                .enqueue_group_message(
                    group,
                    message_seq,
                    (sender, format!("m{message_seq}")),
                    Bytes::from(vec![message_seq as u8; BODY]),
                    T0 + 1_000_000,
                    entries,
                )
                .await
                .unwrap();
            assert!(
                matches!(&outcome, GroupEnqueueOutcome::Queued { entries }
                    if entries.iter().all(|e| *e == EnqueueOutcome::Queued { seq: message_seq })),
                "{durability}: {outcome:?}"
            );
        }
        let ks = &store.engine.ks;
        assert_eq!(
            ks.group_messages.len().unwrap(),
            MESSAGES as usize,
            "{durability}: one body per message"
        );
        let mut body_bytes = 0;
        for guard in ks.group_messages.iter() {
            body_bytes += guard.value().unwrap().len();
        }
        assert!(body_bytes < MESSAGES as usize * (BODY + 16));
        assert_eq!(ks.group_dedupe.len().unwrap(), MESSAGES as usize);
        assert_eq!(
            store.count_queued_entries().await.unwrap(),
            MEMBERS as u64 * MESSAGES,
            "{durability}: one reference per member and message"
        );
        for guard in ks.queue.iter() {
            let value = guard.value().unwrap();
            assert!(
                value.len() <= 32,
                "{durability}: a reference entry of {} bytes",
                value.len()
            );
        }
        for message_seq in 1..=MESSAGES {
            let body = store
                .group_message(group, message_seq, T0)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(body, Bytes::from(vec![message_seq as u8; BODY]));
        }
    }
}

// ---- kill -9 ------------------------------------------------------------------------------

const CHILD_DIR: &str = "COURIER_STORE_TEST_CHILD_DIR";
const CHILD_DURABILITY: &str = "COURIER_STORE_TEST_CHILD_DURABILITY";
const CHILD_TEST: &str = "embedded::tests::child_writes_then_is_killed";
const BULK_PHONE: &str = "+15550000099";
const BULK_TASKS: usize = 8;
const BULK_EACH: usize = 250;

/// Not a test by itself: the child process of `acknowledged_writes_survive_kill_9`. It writes,
/// prints what it wrote, and sends itself SIGKILL (no destructor, no flush runs).
#[test]
#[ignore = "run as a child process by acknowledged_writes_survive_kill_9"]
fn child_writes_then_is_killed() {
    let (Ok(dir), Ok(durability)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_DURABILITY))
    else {
        return;
    };
    let durability: Durability = durability.parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = Arc::new(EmbeddedStore::open(Path::new(&dir), durability).unwrap());
        let before = write_before_reopen(&*store).await;
        let business = write_business_before_reopen(&*store).await;
        let bulk = store
            .register(
                &PhoneNumber::parse(BULK_PHONE).unwrap(),
                "bulk",
                [9; 32],
                T0,
            )
            .await
            .unwrap()
            .device
            .address;
        let tasks: Vec<_> = (0..BULK_TASKS)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..BULK_EACH {
                        store
                            .enqueue(vec![(bulk, entry(&format!("{t}:{i}")))])
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let wrote = (
            &before.registration.account,
            &before.registration.device,
            before.sender,
            business,
        );
        println!("WROTE {}", serde_json::to_string(&wrote).unwrap());
        let pid = std::process::id().to_string();
        Command::new("kill").args(["-9", &pid]).status().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(60));
        unreachable!("SIGKILL did not arrive");
    });
}

#[cfg(unix)]
#[test]
fn acknowledged_writes_survive_kill_9() {
    use std::os::unix::process::ExitStatusExt;

    for durability in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new(std::env::current_exe().unwrap())
            .args([
                CHILD_TEST,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_DURABILITY, durability.to_string())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.signal(),
            Some(9),
            "{durability}: child ended with {:?}\n{stdout}\n{stderr}",
            output.status
        );
        let wrote = stdout
            .lines()
            .find_map(|line| line.split_once("WROTE ").map(|(_, wrote)| wrote))
            .unwrap_or_else(|| panic!("{durability}: no WROTE line in\n{stdout}\n{stderr}"));
        let (account, device, sender, business): (
            Account,
            Device,
            DeviceAddress,
            BusinessBeforeReopen,
        ) = serde_json::from_str(wrote).unwrap();
        let before = BeforeReopen {
            phone: account.phone.clone(),
            registration: Registration {
                account,
                device,
                removed_devices: Vec::new(),
            },
            sender,
        };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let store = EmbeddedStore::open(dir.path(), durability).unwrap();
            check_after_reopen(&store, &before).await;
            check_business_after_reopen(&store, &business).await;
            let bulk = store
                .account_by_phone(&PhoneNumber::parse(BULK_PHONE).unwrap())
                .await
                .unwrap()
                .expect("the bulk account");
            let device = DeviceAddress::new(bulk.user_id, 1);
            let entries = store.read_queue(device, 0, usize::MAX, T0).await.unwrap();
            let expected: Vec<u64> = (1..=(BULK_TASKS * BULK_EACH) as u64).collect();
            assert_eq!(
                entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
                expected,
                "{durability}: every acknowledged enqueue survived kill -9"
            );
        });
    }
}

/// Bytes of keys and values held in the keyspaces that carry messages.
fn message_bytes(store: &EmbeddedStore) -> u64 {
    let ks = &store.engine.ks;
    [&ks.queue, &ks.group_messages, &ks.group_dedupe]
        .into_iter()
        .flat_map(|keyspace| keyspace.iter())
        .map(|guard| {
            let (key, value) = guard.into_inner().unwrap();
            (key.len() + value.len()) as u64
        })
        .sum()
}

/// What a group message to 1,023 members costs in storage, stored once and referenced, next to
/// what 1,023 copies would cost. Prints the figures (see docs/benchmarks.md).
#[tokio::test]
async fn a_group_message_costs_a_fraction_of_its_copies_in_storage() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), Durability::Process).unwrap();
    let members: Vec<DeviceAddress> = (0..1023)
        .map(|_| DeviceAddress::new(UserId::random(), 1))
        .collect();
    // A 200-byte ciphertext in its envelope, as the server stores it (~330 bytes), and the
    // reference the server queues for it (a group id and a number, ~45 bytes).
    let body = Bytes::from(vec![0x42u8; 330]);
    let reference = Bytes::from(vec![0x7au8; 45]);
    let group = GroupId::random();
    let sender = DeviceAddress::new(UserId::random(), 1);
    let entries = members
        .iter()
        .map(|m| {
            (
                *m,
                NewEntry {
                    payload: reference.clone(),
                    ..entry("")
                },
            )
        })
        .collect();
    let outcome = store
        .enqueue_group_message(
            group,
            1,
            (sender, "m1".into()),
            body.clone(),
            T0 + 1_000_000,
            entries,
        )
        .await
        .unwrap();
    assert!(matches!(outcome, GroupEnqueueOutcome::Queued { .. }));
    let by_reference = message_bytes(&store);

    let copies = members
        .iter()
        .map(|m| {
            (
                *m,
                NewEntry {
                    payload: body.clone(),
                    ..entry("")
                },
            )
        })
        .collect();
    store.enqueue(copies).await.unwrap();
    let by_copy = message_bytes(&store) - by_reference;
    println!(
        "group message to 1023 members: {by_reference} bytes (body once + {} per member), \
         {by_copy} bytes as copies",
        (by_reference - 330) / 1023
    );
    assert!(
        by_reference * 3 < by_copy,
        "references ({by_reference} B) should cost far less than copies ({by_copy} B)"
    );
}

/// Acknowledgements compute their keys instead of reading them, so a range can name entries
/// the expiry sweep already removed: those get a second weak tombstone. Neither reads nor a
/// full compaction may bring any of them back.
#[tokio::test]
async fn acks_over_swept_entries_resurrect_nothing_even_after_compaction() {
    let dir = tempfile::tempdir().expect("temp dir");
    let device = DeviceAddress::new(UserId::random(), 1);
    {
        let store = EmbeddedStore::open(dir.path(), Durability::Process).expect("open");
        let entries = (1..=10u64)
            .map(|n| {
                let mut e = entry(&format!("m{n}"));
                // Entries 2, 3 and 4 expire early and are swept.
                if (2..=4).contains(&n) {
                    e.expires_at = T0 + 10;
                }
                (device, e)
            })
            .collect();
        store.enqueue(entries).await.unwrap();
        // Flushed to a table first, so that tombstones and values meet in compaction.
        store.engine.ks.queue.rotate_memtable_and_wait().unwrap();
        assert_eq!(store.sweep_expired(T0 + 20).await.unwrap(), 3);
        store.ack_queue(device, 6).await.unwrap();
        store.engine.ks.queue.rotate_memtable_and_wait().unwrap();
        store.engine.ks.queue.major_compact().unwrap();
        let seqs: Vec<u64> = store
            .read_queue(device, 0, 100, T0 + 20)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, vec![7, 8, 9, 10]);
        assert_eq!(store.queue_len(device).await.unwrap(), 4);
        // Acknowledging beyond what was ever queued stops at the last entry.
        store.ack_queue(device, 1_000).await.unwrap();
        assert_eq!(store.queue_len(device).await.unwrap(), 0);
    }
    let store = EmbeddedStore::open(dir.path(), Durability::Process).expect("reopen");
    store.engine.ks.queue.major_compact().unwrap();
    assert_eq!(store.queue_len(device).await.unwrap(), 0);
    assert!(
        store
            .read_queue(device, 0, 100, T0 + 20)
            .await
            .unwrap()
            .is_empty()
    );
}
