//! A member of an in-process hub: the [`Bus`] of one node, and its delivery tasks (one per
//! owned partition, reading the partition log from the committed offset).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{HubInner, MAILBOX_CAPACITY};
use crate::completion::Ledger;
use crate::{Bus, BusError, BusHandler, Partition, ShardRecord, check_partition};

/// One member (node) of an [`InProcessHub`](super::InProcessHub).
pub struct InProcessBus {
    hub: Arc<HubInner>,
    inner: Arc<MemberInner>,
}

impl std::fmt::Debug for InProcessBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessBus")
            .field("node_id", &self.inner.node_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    Joined,
    Started,
    Closed,
    /// Joined with a node id that was already a member.
    Duplicate,
}

pub(super) struct MemberInner {
    node_id: String,
    lifecycle: Mutex<Lifecycle>,
    handler: OnceLock<Arc<dyn BusHandler>>,
    mailbox: mpsc::Sender<(String, Bytes)>,
    mailbox_rx: Mutex<Option<mpsc::Receiver<(String, Bytes)>>>,
    owned: Mutex<BTreeMap<Partition, Owned>>,
    node_task: Mutex<Option<JoinHandle<()>>>,
}

/// An owned partition: its ledger and its delivery task.
struct Owned {
    ledger: Arc<Ledger>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves the data consistent, so a poisoned lock is usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemberInner {
    fn lifecycle(&self) -> Lifecycle {
        *lock(&self.lifecycle)
    }

    fn set_lifecycle(&self, lifecycle: Lifecycle) {
        *lock(&self.lifecycle) = lifecycle;
    }

    pub(super) fn is_started(&self) -> bool {
        self.lifecycle() == Lifecycle::Started
    }

    pub(super) fn owned_partitions(&self) -> Vec<Partition> {
        lock(&self.owned).keys().copied().collect()
    }

    /// Stops delivering `lost`, waits for the record calls in progress, lets the handler finish
    /// (`revoked`), then ends the ledgers: what was completed until then is committed.
    pub(super) async fn revoke(&self, lost: Vec<Partition>) {
        if lost.is_empty() {
            return;
        }
        let owned: Vec<Owned> = {
            let mut owned = lock(&self.owned);
            lost.iter().filter_map(|p| owned.remove(p)).collect()
        };
        for partition in &owned {
            // An error means the task already ended, which is what is asked.
            let _ = partition.stop.send(true);
        }
        let mut ledgers = Vec::with_capacity(owned.len());
        for partition in owned {
            if let Err(error) = partition.task.await {
                tracing::warn!(node = %self.node_id, %error, "bus delivery task failed");
            }
            ledgers.push(partition.ledger);
        }
        if let Some(handler) = self.handler.get() {
            handler.revoked(lost).await;
        }
        for ledger in ledgers {
            ledger.fence();
        }
    }

    /// Hands `gained` to the handler, then starts delivering each from its committed offset.
    pub(super) async fn assign(&self, hub: &Arc<HubInner>, gained: Vec<Partition>) {
        let Some(handler) = self.handler.get() else {
            return;
        };
        if gained.is_empty() {
            return;
        }
        handler.assigned(gained.clone()).await;
        let mut owned = lock(&self.owned);
        for partition in gained {
            let committed = Arc::clone(&hub.log(partition).committed);
            let next = committed.load(Ordering::SeqCst);
            let ledger = Ledger::with_sink(committed);
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(deliver(
                Arc::clone(hub),
                partition,
                next,
                Arc::clone(&ledger),
                Arc::clone(handler),
                stopped,
            ));
            owned.insert(partition, Owned { ledger, stop, task });
        }
    }

    /// Simulated kill: stops everything at once, without `revoked`; later completions are ignored.
    fn crash(&self) {
        self.set_lifecycle(Lifecycle::Closed);
        let owned = std::mem::take(&mut *lock(&self.owned));
        for partition in owned.into_values() {
            partition.ledger.fence();
            partition.task.abort();
        }
        if let Some(task) = lock(&self.node_task).take() {
            task.abort();
        }
    }
}

/// Delivers the records of one partition to the handler, from offset `next` on, one call at a
/// time, until stopped.
async fn deliver(
    hub: Arc<HubInner>,
    partition: Partition,
    mut next: i64,
    ledger: Arc<Ledger>,
    handler: Arc<dyn BusHandler>,
    mut stop: watch::Receiver<bool>,
) {
    let log = hub.log(partition);
    loop {
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            room = ledger.wait_for_room() => if !room { return },
        }
        let appended = log.appended.notified();
        match log.get(next) {
            Some((key, payload)) => {
                let completion = ledger.track(next);
                let record = ShardRecord {
                    partition,
                    offset: next,
                    key,
                    payload,
                };
                handler.record(record, completion).await;
                next += 1;
            }
            None => tokio::select! {
                biased;
                _ = stop.changed() => return,
                () = appended => {}
            },
        }
    }
}

impl InProcessBus {
    pub(super) fn join(hub: Arc<HubInner>, node_id: &str) -> Arc<Self> {
        let (mailbox, mailbox_rx) = mpsc::channel(MAILBOX_CAPACITY);
        let inner = Arc::new(MemberInner {
            node_id: node_id.to_owned(),
            lifecycle: Mutex::new(Lifecycle::Joined),
            handler: OnceLock::new(),
            mailbox,
            mailbox_rx: Mutex::new(Some(mailbox_rx)),
            owned: Mutex::new(BTreeMap::new()),
            node_task: Mutex::new(None),
        });
        {
            let mut members = hub.members();
            if members.contains_key(node_id) {
                inner.set_lifecycle(Lifecycle::Duplicate);
            } else {
                members.insert(node_id.to_owned(), Arc::clone(&inner));
            }
        }
        Arc::new(Self { hub, inner })
    }

    /// Removes this member from the hub if it is still the member of its node id.
    fn leave_hub(&self) {
        let mut members = self.hub.members();
        if members
            .get(&self.inner.node_id)
            .is_some_and(|member| Arc::ptr_eq(member, &self.inner))
        {
            members.remove(&self.inner.node_id);
        }
    }

    /// Simulates a kill: no `revoked`, no commit of what was not committed yet, the member is
    /// gone; its partitions go to the remaining members from their committed offsets.
    pub async fn crash(&self) {
        let _rebalance = self.hub.rebalance.lock().await;
        if matches!(
            self.inner.lifecycle(),
            Lifecycle::Closed | Lifecycle::Duplicate
        ) {
            return;
        }
        self.leave_hub();
        self.inner.crash();
        self.hub.rebalance(None).await;
    }

    fn check_open(&self) -> Result<(), BusError> {
        if self.hub.down.load(Ordering::SeqCst) {
            return Err(BusError::Unavailable("the in-process bus is down".into()));
        }
        match self.inner.lifecycle() {
            Lifecycle::Joined | Lifecycle::Started => Ok(()),
            Lifecycle::Closed | Lifecycle::Duplicate => Err(BusError::Closed),
        }
    }
}

#[async_trait::async_trait]
impl Bus for InProcessBus {
    fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    fn partitions(&self) -> u32 {
        self.hub.partitions()
    }

    async fn start(&self, handler: Arc<dyn BusHandler>) -> Result<(), BusError> {
        let _rebalance = self.hub.rebalance.lock().await;
        match self.inner.lifecycle() {
            Lifecycle::Joined => {}
            Lifecycle::Started => {
                return Err(BusError::Config("the bus is already started".into()));
            }
            Lifecycle::Closed => return Err(BusError::Closed),
            Lifecycle::Duplicate => {
                return Err(BusError::Config(format!(
                    "node id {} is already a member of the hub",
                    self.inner.node_id
                )));
            }
        }
        if self.inner.handler.set(Arc::clone(&handler)).is_err() {
            return Err(BusError::Config("the bus is already started".into()));
        }
        if let Some(mut mailbox) = lock(&self.inner.mailbox_rx).take() {
            let handler = Arc::clone(&handler);
            let task = tokio::spawn(async move {
                while let Some((from, payload)) = mailbox.recv().await {
                    handler.node_message(from, payload).await;
                }
            });
            *lock(&self.inner.node_task) = Some(task);
        }
        self.inner.set_lifecycle(Lifecycle::Started);
        self.hub.rebalance(None).await;
        Ok(())
    }

    async fn publish(
        &self,
        partition: Partition,
        key: Bytes,
        payload: Bytes,
    ) -> Result<(), BusError> {
        self.check_open()?;
        check_partition(partition, self.partitions())?;
        self.hub.log(partition).append(key, payload);
        Ok(())
    }

    async fn send_to_node(&self, node: &str, payload: Bytes) -> Result<(), BusError> {
        self.check_open()?;
        let Some(target) = self.hub.members().get(node).cloned() else {
            tracing::debug!(from = %self.inner.node_id, to = node, "node message to an absent node dropped");
            return Ok(());
        };
        match target
            .mailbox
            .try_send((self.inner.node_id.clone(), payload))
        {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(BusError::Unavailable(format!(
                "the mailbox of node {node} is full"
            ))),
        }
    }

    async fn broadcast(&self, payload: Bytes) -> Result<(), BusError> {
        self.check_open()?;
        let members: Vec<_> = self.hub.members().values().cloned().collect();
        for target in members {
            // Best effort, like node messages: a full mailbox drops the message for that member.
            let _ = target
                .mailbox
                .try_send((self.inner.node_id.clone(), payload.clone()));
        }
        Ok(())
    }

    async fn shutdown(&self) {
        let _rebalance = self.hub.rebalance.lock().await;
        let was = self.inner.lifecycle();
        if matches!(was, Lifecycle::Closed | Lifecycle::Duplicate) {
            return;
        }
        self.leave_hub();
        self.inner.set_lifecycle(Lifecycle::Closed);
        if was == Lifecycle::Started {
            self.hub.rebalance(Some(&self.inner)).await;
        }
        if let Some(task) = lock(&self.inner.node_task).take() {
            task.abort();
        }
    }
}
