//! The in-process bus: members of one process sharing in-memory partitions.
//!
//! An [`InProcessHub`] holds the partition logs (records with their offsets and a committed
//! offset each) and the members. Partitions are spread over the started members round-robin in
//! the order of their sorted node ids (deterministic); a start, leave or crash rebalances:
//! the losers are revoked (awaited) before the winners are assigned. A new owner reads from the
//! committed offset, the highest contiguous completed one, exactly as a Kafka consumer group
//! does. Committed prefixes are dropped from memory.
//!
//! Layout: this file holds the hub and its logs, `member` the [`InProcessBus`] and its
//! delivery tasks.

mod member;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::Partition;

pub use self::member::InProcessBus;
use self::member::MemberInner;

/// Node messages queued per member before `send_to_node` reports the mailbox full.
const MAILBOX_CAPACITY: usize = 4096;

/// A bus shared by the members of one process. Cheap to clone (a handle).
#[derive(Clone)]
pub struct InProcessHub {
    inner: Arc<HubInner>,
}

impl std::fmt::Debug for InProcessHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessHub")
            .field("partitions", &self.inner.logs.len())
            .finish_non_exhaustive()
    }
}

impl InProcessHub {
    /// A hub with `partitions` shard partitions (at least 1).
    pub fn new(partitions: u32) -> Self {
        let logs = (0..partitions.max(1))
            .map(|_| PartitionLog::default())
            .collect();
        Self {
            inner: Arc::new(HubInner {
                logs,
                members: Mutex::new(BTreeMap::new()),
                rebalance: tokio::sync::Mutex::new(()),
                down: AtomicBool::new(false),
            }),
        }
    }

    /// A new member with node id `node_id`. It receives node messages from now on (delivered
    /// once started) and takes part in the partition assignment once started. A node id that is
    /// already a member gives a member that is closed from the start.
    pub fn join(&self, node_id: &str) -> Arc<InProcessBus> {
        InProcessBus::join(Arc::clone(&self.inner), node_id)
    }

    /// Simulates an outage of the whole bus: while unavailable, `publish` and `send_to_node`
    /// give [`BusError::Unavailable`](crate::BusError::Unavailable).
    pub fn set_available(&self, available: bool) {
        self.inner.down.store(!available, Ordering::SeqCst);
    }

    /// The committed offset of `partition`: the offset its next owner starts from.
    pub fn committed(&self, partition: Partition) -> Option<i64> {
        self.inner
            .logs
            .get(partition as usize)
            .map(|log| log.committed.load(Ordering::SeqCst))
    }
}

struct HubInner {
    logs: Vec<PartitionLog>,
    members: Mutex<BTreeMap<String, Arc<MemberInner>>>,
    /// Serialises membership changes: one rebalance at a time.
    rebalance: tokio::sync::Mutex<()>,
    down: AtomicBool,
}

impl HubInner {
    fn partitions(&self) -> u32 {
        // The count came from a u32.
        self.logs.len() as u32
    }

    fn members(&self) -> MutexGuard<'_, BTreeMap<String, Arc<MemberInner>>> {
        self.members
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn log(&self, partition: Partition) -> &PartitionLog {
        &self.logs[partition as usize]
    }

    /// Moves partitions to the target assignment of the started members: revokes what each
    /// member loses (one member after the other, awaited), then assigns what each gains.
    /// `leaving` is a member already removed from the map that gives up everything it owns.
    /// The caller holds the `rebalance` lock.
    async fn rebalance(self: &Arc<Self>, leaving: Option<&Arc<MemberInner>>) {
        let started: Vec<Arc<MemberInner>> = self
            .members()
            .values()
            .filter(|member| member.is_started())
            .cloned()
            .collect();
        let mut target: Vec<BTreeSet<Partition>> = vec![BTreeSet::new(); started.len()];
        if !started.is_empty() {
            for partition in 0..self.partitions() {
                target[partition as usize % started.len()].insert(partition);
            }
        }

        if let Some(member) = leaving {
            member.revoke(member.owned_partitions()).await;
        }
        for (member, target) in started.iter().zip(&target) {
            let lost: Vec<Partition> = member
                .owned_partitions()
                .into_iter()
                .filter(|p| !target.contains(p))
                .collect();
            member.revoke(lost).await;
        }

        for (member, target) in started.iter().zip(&target) {
            let owned = member.owned_partitions();
            let gained: Vec<Partition> = target
                .iter()
                .copied()
                .filter(|p| !owned.contains(p))
                .collect();
            member.assign(self, gained).await;
        }
    }
}

/// One partition: its records since the committed offset, and the committed offset.
#[derive(Default)]
struct PartitionLog {
    records: Mutex<LogRecords>,
    appended: Notify,
    /// The highest contiguous completed offset + 1: where the next owner starts.
    committed: Arc<AtomicI64>,
}

#[derive(Default)]
struct LogRecords {
    /// The offset of `entries[0]`.
    base: i64,
    entries: VecDeque<(Bytes, Bytes)>,
}

impl PartitionLog {
    fn lock(&self) -> MutexGuard<'_, LogRecords> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn append(&self, key: Bytes, payload: Bytes) {
        {
            let mut records = self.lock();
            // Committed records are never read again: drop them.
            let committed = self.committed.load(Ordering::SeqCst);
            while records.base < committed && records.entries.pop_front().is_some() {
                records.base += 1;
            }
            records.entries.push_back((key, payload));
        }
        self.appended.notify_waiters();
    }

    fn get(&self, offset: i64) -> Option<(Bytes, Bytes)> {
        let records = self.lock();
        let index = usize::try_from(offset - records.base).ok()?;
        records.entries.get(index).cloned()
    }
}
