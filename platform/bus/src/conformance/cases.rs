//! The conformance cases.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{PATIENCE, Recorder, TestCluster, TestMember, eventually};
use crate::{Bus, BusError, Partition, ShardRecord};

/// After the expected records arrived, how long to watch for unexpected extra ones.
const SETTLE: Duration = Duration::from_millis(500);

fn key(partition: Partition, index: u32) -> Bytes {
    Bytes::from(format!("key-{partition}-{index}"))
}

fn payload(partition: Partition, index: u32) -> Bytes {
    Bytes::from(format!("{partition}:{index}"))
}

/// The index a record was published with (see [`payload`]).
fn index(record: &ShardRecord) -> u32 {
    std::str::from_utf8(&record.payload)
        .ok()
        .and_then(|text| text.split_once(':'))
        .and_then(|(_, index)| index.parse().ok())
        .unwrap_or_else(|| panic!("a record with an unexpected payload: {record:?}"))
}

fn indexes(records: &[ShardRecord]) -> Vec<u32> {
    records.iter().map(index).collect()
}

/// Publishes `count` records to each partition: in order within a partition, partitions
/// concurrently.
async fn publish_each(bus: &Arc<dyn TestMember>, partitions: &[Partition], count: u32) {
    let mut tasks = Vec::new();
    for &partition in partitions {
        let bus = Arc::clone(bus);
        tasks.push(tokio::spawn(async move {
            for index in 0..count {
                bus.publish(partition, key(partition, index), payload(partition, index))
                    .await
                    .unwrap_or_else(|error| panic!("publish to {partition} failed: {error}"));
            }
        }));
    }
    for task in tasks {
        task.await.expect("a publishing task panicked");
    }
}

async fn start(member: &Arc<dyn TestMember>, recorder: &Arc<Recorder>) {
    let handler = Arc::clone(recorder);
    member
        .start(handler)
        .await
        .unwrap_or_else(|error| panic!("starting {} failed: {error}", member.node_id()));
}

/// Waits until the recorders' owned sets split every partition between them, none empty.
/// Publishes `count` records to every partition through `member` and waits until `recorders`
/// together received all of them; returns how many that is.
async fn publish_to_every_partition(
    member: &Arc<dyn TestMember>,
    recorders: &[&Arc<Recorder>],
    partitions: u32,
    count: u32,
) -> usize {
    let all: Vec<Partition> = (0..partitions).collect();
    publish_each(member, &all, count).await;
    let expected = (partitions * count) as usize;
    eventually("every record arrived", || {
        recorders.iter().map(|r| r.record_count()).sum::<usize>() >= expected
    })
    .await;
    expected
}

/// Waits until `new_owner` got the records `from..count` of each partition in `taken_over`
/// (besides everything it owned already), then checks that it got exactly those, in order.
async fn assert_taken_over(
    new_owner: &Arc<Recorder>,
    partitions: u32,
    taken_over: &BTreeSet<Partition>,
    (expected, from, count): (usize, u32, u32),
) {
    eventually("node-b owns every partition", || {
        new_owner.owned().len() == partitions as usize
    })
    .await;
    let handed_over = taken_over.len() * (count - from) as usize;
    eventually(
        "the records node-a had not committed reached node-b",
        || new_owner.record_count() >= expected - taken_over.len() * count as usize + handed_over,
    )
    .await;
    tokio::time::sleep(SETTLE).await;
    let records = new_owner.records();
    for &partition in taken_over {
        let got = records.get(&partition).cloned().unwrap_or_default();
        assert_eq!(
            indexes(&got),
            (from..count).collect::<Vec<_>>(),
            "partition {partition}: node-b must get exactly the records after node-a's committed prefix"
        );
    }
}

/// How many `revoked` calls `recorder` saw.
fn revoke_count(recorder: &Recorder) -> usize {
    recorder
        .events()
        .iter()
        .filter(|(_, e)| matches!(e, super::Event::Revoked(_)))
        .count()
}

async fn wait_for_split(recorders: &[&Arc<Recorder>], partitions: u32) {
    eventually("the partitions are split between the members", || {
        let owned: Vec<BTreeSet<Partition>> = recorders.iter().map(|r| r.owned()).collect();
        let total: usize = owned.iter().map(BTreeSet::len).sum();
        let union: BTreeSet<Partition> = owned.iter().flatten().copied().collect();
        owned.iter().all(|set| !set.is_empty())
            && total == partitions as usize
            && union.len() == partitions as usize
    })
    .await;
}

/// Records of a partition reach their owner in order, each once; the partition field and the
/// offsets are right; a bad partition is refused; starting twice is refused; a clean shutdown
/// revokes everything.
pub async fn records_of_a_partition_arrive_in_order_once(cluster: Box<dyn TestCluster>) {
    const COUNT: u32 = 20;
    let clock = Arc::new(AtomicU64::new(0));
    let member = cluster.join("node-a").await;
    let recorder = Recorder::completing(&clock);
    start(&member, &recorder).await;
    let partitions = member.partitions();
    let all: Vec<Partition> = (0..partitions).collect();

    let again = member.start(Recorder::completing(&clock)).await;
    assert!(
        matches!(again, Err(BusError::Config(_))),
        "a second start gave {again:?}"
    );
    let bad = member.publish(partitions, key(0, 0), payload(0, 0)).await;
    assert!(
        matches!(bad, Err(BusError::Config(_))),
        "publish to partition {partitions} gave {bad:?}"
    );

    publish_each(&member, &all, COUNT).await;
    let expected = (partitions * COUNT) as usize;
    eventually("every record arrived", || {
        recorder.record_count() >= expected
    })
    .await;
    tokio::time::sleep(SETTLE).await;

    let records = recorder.records();
    for &partition in &all {
        let got = records.get(&partition).cloned().unwrap_or_default();
        assert_eq!(
            indexes(&got),
            (0..COUNT).collect::<Vec<_>>(),
            "partition {partition}: records out of order, missing or repeated"
        );
        assert!(
            got.iter().all(|r| r.partition == partition),
            "partition {partition}: wrong partition field"
        );
        assert!(
            got.windows(2).all(|w| w[0].offset < w[1].offset),
            "partition {partition}: offsets do not increase"
        );
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, r)| r.key == key(partition, i as u32)),
            "partition {partition}: keys changed"
        );
        assert!(
            recorder.stamp_of(false, partition, 0).is_some(),
            "partition {partition} never assigned"
        );
    }
    recorder.assert_well_ordered_calls("node-a");

    member.shutdown().await;
    assert!(
        recorder.owned().is_empty(),
        "shutdown left partitions {:?} unrevoked",
        recorder.owned()
    );
    let after = member.publish(0, key(0, 0), payload(0, 0)).await;
    assert!(
        matches!(after, Err(BusError::Closed)),
        "publish after shutdown gave {after:?}"
    );
}

/// Records published before the owner starts (more than any in-memory buffer holds at once)
/// all arrive, in order, once.
pub async fn a_backlog_published_before_start_arrives_in_order(cluster: Box<dyn TestCluster>) {
    const BACKLOG: u32 = 1500;
    let clock = Arc::new(AtomicU64::new(0));
    let member = cluster.join("node-a").await;
    publish_each(&member, &[0], BACKLOG).await;
    let recorder = Recorder::completing(&clock);
    start(&member, &recorder).await;
    eventually("the backlog arrived", || {
        recorder.record_count() >= BACKLOG as usize
    })
    .await;
    tokio::time::sleep(SETTLE).await;
    let got = recorder.records().remove(&0).unwrap_or_default();
    assert_eq!(
        indexes(&got),
        (0..BACKLOG).collect::<Vec<_>>(),
        "the backlog arrived out of order, incomplete or repeated"
    );
    recorder.assert_well_ordered_calls("node-a");
    member.shutdown().await;
}

/// With two members the partitions are split, a joining member gets partitions only after the
/// other let them go, and every record reaches exactly its partition's owner, once.
pub async fn two_members_split_the_partitions_and_records_reach_the_owner(
    cluster: Box<dyn TestCluster>,
) {
    const COUNT: u32 = 10;
    let clock = Arc::new(AtomicU64::new(0));
    let a = cluster.join("node-a").await;
    let b = cluster.join("node-b").await;
    let (rec_a, rec_b) = (Recorder::completing(&clock), Recorder::completing(&clock));
    start(&a, &rec_a).await;
    let partitions = a.partitions();
    eventually("node-a owns every partition", || {
        rec_a.owned().len() == partitions as usize
    })
    .await;
    start(&b, &rec_b).await;
    wait_for_split(&[&rec_a, &rec_b], partitions).await;

    for partition in rec_b.owned() {
        let revoked = rec_a.stamp_of(true, partition, 0);
        let assigned = rec_b.stamp_of(false, partition, 0);
        assert!(
            matches!((revoked, assigned), (Some(r), Some(s)) if r < s),
            "partition {partition}: node-a revoked at {revoked:?}, node-b assigned at {assigned:?}"
        );
    }

    publish_to_every_partition(&b, &[&rec_a, &rec_b], partitions, COUNT).await;
    tokio::time::sleep(SETTLE).await;

    for (name, recorder, other) in [("node-a", &rec_a, &rec_b), ("node-b", &rec_b, &rec_a)] {
        recorder.assert_well_ordered_calls(name);
        let records = recorder.records();
        for partition in recorder.owned() {
            let got = records.get(&partition).cloned().unwrap_or_default();
            assert_eq!(
                indexes(&got),
                (0..COUNT).collect::<Vec<_>>(),
                "{name}, owner of partition {partition}: records missing, repeated or out of order"
            );
            assert!(
                !other.records().contains_key(&partition),
                "partition {partition} of {name} also reached the other member"
            );
        }
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// Node messages reach the named node (also the sender itself), with the sender's id, and no
/// other node.
pub async fn node_messages_reach_the_named_node_with_the_sender(cluster: Box<dyn TestCluster>) {
    let clock = Arc::new(AtomicU64::new(0));
    let a = cluster.join("node-a").await;
    let b = cluster.join("node-b").await;
    let (rec_a, rec_b) = (Recorder::completing(&clock), Recorder::completing(&clock));
    start(&a, &rec_a).await;
    start(&b, &rec_b).await;

    let send = |from: &Arc<dyn TestMember>, to: &'static str, text: &'static str| {
        let from = Arc::clone(from);
        async move {
            from.send_to_node(to, Bytes::from_static(text.as_bytes()))
                .await
                .unwrap_or_else(|error| panic!("send to {to} failed: {error}"));
        }
    };
    send(&a, "node-b", "a to b").await;
    send(&b, "node-a", "b to a").await;
    send(&a, "node-a", "a to a").await;

    let expect_a = vec![
        ("node-b".to_owned(), Bytes::from_static(b"b to a")),
        ("node-a".to_owned(), Bytes::from_static(b"a to a")),
    ];
    let expect_b = vec![("node-a".to_owned(), Bytes::from_static(b"a to b"))];
    eventually("the node messages arrived", || {
        let (got_a, got_b) = (rec_a.node_messages(), rec_b.node_messages());
        expect_a.iter().all(|m| got_a.contains(m)) && expect_b.iter().all(|m| got_b.contains(m))
    })
    .await;
    tokio::time::sleep(SETTLE).await;
    let (mut got_a, got_b) = (rec_a.node_messages(), rec_b.node_messages());
    got_a.sort();
    let mut expect_a = expect_a;
    expect_a.sort();
    assert_eq!(
        got_a, expect_a,
        "node-a got other node messages than its own"
    );
    assert_eq!(
        got_b, expect_b,
        "node-b got other node messages than its own"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// A clean leave: the leaver is revoked before the other member is assigned its partitions;
/// what the leaver completed (before or during `revoked`, in any order) is not delivered again;
/// everything after the first uncompleted record is.
pub async fn a_clean_leave_revokes_first_and_hands_over_only_uncompleted_records(
    cluster: Box<dyn TestCluster>,
) {
    const COUNT: u32 = 10;
    let clock = Arc::new(AtomicU64::new(0));
    let a = cluster.join("node-a").await;
    let b = cluster.join("node-b").await;
    // node-a completes nothing while it runs; at revoke, 0..5 and 7 (not 5, 6): the committed
    // offset stops before 5, so 5..10 (7 included) go to node-b.
    let rec_a = Recorder::with_rules(&clock, |_| false, |r| index(r) < 5 || index(r) == 7);
    let rec_b = Recorder::completing(&clock);
    start(&a, &rec_a).await;
    start(&b, &rec_b).await;
    let partitions = a.partitions();
    wait_for_split(&[&rec_a, &rec_b], partitions).await;
    let owned_by_a = rec_a.owned();

    let expected = publish_to_every_partition(&b, &[&rec_a, &rec_b], partitions, COUNT).await;

    let before_leave = clock.load(std::sync::atomic::Ordering::SeqCst);
    a.shutdown().await;
    assert_taken_over(&rec_b, partitions, &owned_by_a, (expected, 5, COUNT)).await;
    for &partition in &owned_by_a {
        let revoked = rec_a.stamp_of(true, partition, before_leave);
        let assigned = rec_b.stamp_of(false, partition, before_leave);
        assert!(
            matches!((revoked, assigned), (Some(r), Some(s)) if r < s),
            "partition {partition}: node-a revoked at {revoked:?}, node-b assigned at {assigned:?}"
        );
    }
    rec_a.assert_well_ordered_calls("node-a");
    rec_b.assert_well_ordered_calls("node-b");
    b.shutdown().await;
}

/// A crash: no `revoked`, and the records the crashed member had not committed come again to
/// the new owner; the ones it had completed (and that were committed) do not.
pub async fn a_crashed_members_uncommitted_records_go_to_the_new_owner(
    cluster: Box<dyn TestCluster>,
) {
    const COUNT: u32 = 10;
    /// Longer than any implementation's commit interval.
    const COMMITTED: Duration = Duration::from_secs(1);
    let clock = Arc::new(AtomicU64::new(0));
    let a = cluster.join("node-a").await;
    let b = cluster.join("node-b").await;
    let rec_a = Recorder::with_rules(&clock, |r| index(r) < 4, |_| true);
    let rec_b = Recorder::completing(&clock);
    start(&a, &rec_a).await;
    start(&b, &rec_b).await;
    let partitions = a.partitions();
    wait_for_split(&[&rec_a, &rec_b], partitions).await;
    let owned_by_a = rec_a.owned();

    let expected = publish_to_every_partition(&b, &[&rec_a, &rec_b], partitions, COUNT).await;
    tokio::time::sleep(COMMITTED).await;

    let revokes_before = revoke_count(&rec_a);
    a.crash().await;
    assert_taken_over(&rec_b, partitions, &owned_by_a, (expected, 4, COUNT)).await;
    assert_eq!(
        revokes_before,
        revoke_count(&rec_a),
        "a crashed member must not be revoked"
    );
    rec_b.assert_well_ordered_calls("node-b");
    let after = a.publish(0, key(0, 0), payload(0, 0)).await;
    assert!(
        matches!(after, Err(BusError::Closed)),
        "publish after a crash gave {after:?}"
    );
    b.shutdown().await;
}

/// A bus whose dependency is down answers `publish` (and `send_to_node`) with `Unavailable`
/// within [`PATIENCE`] — never a silent success.
pub async fn publish_to_an_unreachable_bus_is_unavailable(bus: Arc<dyn Bus>) {
    let began = Instant::now();
    let published = tokio::time::timeout(PATIENCE, bus.publish(0, key(0, 0), payload(0, 0)))
        .await
        .unwrap_or_else(|_| panic!("publish to an unreachable bus hung for {PATIENCE:?}"));
    assert!(
        matches!(published, Err(BusError::Unavailable(_))),
        "publish to an unreachable bus gave {published:?} after {:?}",
        began.elapsed()
    );
    let sent = tokio::time::timeout(
        PATIENCE,
        bus.send_to_node("node-x", Bytes::from_static(b"x")),
    )
    .await
    .unwrap_or_else(|_| panic!("send_to_node on an unreachable bus hung for {PATIENCE:?}"));
    assert!(
        matches!(sent, Err(BusError::Unavailable(_))),
        "send_to_node on an unreachable bus gave {sent:?}"
    );
    bus.shutdown().await;
}
