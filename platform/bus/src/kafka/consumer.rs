//! The shard consumer: one member of the consumer group, polled by a dedicated thread.
//!
//! Rebalances arrive as callbacks on that thread ([`ShardContext::pre_rebalance`]): a revoke
//! stops the partitions' delivery tasks, waits for `handler.revoked`, then commits the
//! completed offsets synchronously, all before librdkafka lets the partitions go; an assign
//! calls `handler.assigned` and starts one delivery task per partition. Records are handed to
//! those tasks through bounded channels; when one is full, its partition is paused and the
//! records already fetched wait in a small per-partition backlog.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::{KafkaConfig, kafka_error};
use crate::completion::Ledger;
use crate::{BusError, BusHandler, Partition, ShardRecord};

/// Records buffered per partition between the consumer thread and the delivery task.
const CHANNEL_CAPACITY: usize = 256;
/// How long one poll of the consumer waits for a record.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Control of the running consumer thread.
pub(super) struct ShardConsumer {
    stop: Arc<AtomicBool>,
    crashed: Arc<AtomicBool>,
    exited: Option<oneshot::Receiver<()>>,
}

impl Drop for ShardConsumer {
    /// A bus dropped without `shutdown` still stops its thread (which then closes cleanly,
    /// if the runtime is still there to run the handler).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl ShardConsumer {
    /// Subscribes to the shard topic and starts the consumer thread. Must be called within a
    /// Tokio runtime: the handler runs on it.
    pub(super) fn start(
        config: &KafkaConfig,
        topic: &str,
        handler: Arc<dyn BusHandler>,
    ) -> Result<Self, BusError> {
        let runtime = Handle::try_current()
            .map_err(|_| BusError::Config("start the bus within a Tokio runtime".into()))?;
        let crashed = Arc::new(AtomicBool::new(false));
        let context = ShardContext {
            runtime,
            handler,
            topic: topic.to_owned(),
            node_id: config.node_id.clone(),
            crashed: Arc::clone(&crashed),
            slots: Mutex::new(BTreeMap::new()),
        };
        let consumer: BaseConsumer<ShardContext> = config
            .client_config()
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", config.session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                config.heartbeat_interval_ms.to_string(),
            )
            // Prefetch at most 8 MiB per partition: the rest waits in the broker.
            .set("queued.max.messages.kbytes", "8192")
            .create_with_context(context)
            .map_err(|error| kafka_error("creating the shard consumer", error))?;
        consumer
            .subscribe(&[topic])
            .map_err(|error| kafka_error("subscribing to the shard topic", error))?;

        let stop = Arc::new(AtomicBool::new(false));
        let (exited_tx, exited) = oneshot::channel();
        let commit_interval = Duration::from_millis(u64::from(config.commit_interval_ms));
        let thread_stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("courier-bus-consumer".into())
            .spawn(move || {
                poll_loop(&consumer, &thread_stop, commit_interval);
                // Closing runs the final revoke (with its commit) through the rebalance
                // callback, on this thread.
                drop(consumer);
                // Nobody waiting means nobody needs to know.
                let _ = exited_tx.send(());
            })
            .map_err(|error| BusError::Config(format!("spawning the consumer thread: {error}")))?;
        Ok(Self {
            stop,
            crashed,
            exited: Some(exited),
        })
    }

    /// Stops polling and closes the consumer: cleanly (revoke, commit, leave the group) or as
    /// a crash (no revoke, no commit). Returns once the consumer is closed.
    pub(super) async fn close(mut self, crash: bool) {
        self.crashed.store(crash, Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
        if let Some(exited) = self.exited.take()
            && exited.await.is_err()
        {
            tracing::warn!("the bus consumer thread ended abnormally");
        }
    }
}

fn poll_loop(consumer: &BaseConsumer<ShardContext>, stop: &AtomicBool, commit_interval: Duration) {
    let context = consumer.context();
    let mut last_commit = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        match consumer.poll(POLL_INTERVAL) {
            Some(Ok(message)) => context.dispatch(consumer, &message),
            Some(Err(error)) => tracing::warn!(%error, "bus consumer error"),
            None => {}
        }
        context.drain_backlogs(consumer);
        if last_commit.elapsed() >= commit_interval {
            context.commit_progress(consumer);
            last_commit = Instant::now();
        }
    }
}

/// An owned partition, as the consumer thread sees it.
struct Slot {
    ledger: Arc<Ledger>,
    records: mpsc::Sender<ShardRecord>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// Records fetched while the channel was full, in order; the partition is paused meanwhile.
    backlog: VecDeque<ShardRecord>,
    paused: bool,
    /// The highest offset handed on (guards against a refetch after pause/resume).
    last_offset: i64,
    last_committed: Option<i64>,
}

/// The consumer's context: rebalance callbacks and the state of owned partitions.
pub(super) struct ShardContext {
    runtime: Handle,
    handler: Arc<dyn BusHandler>,
    topic: String,
    node_id: String,
    crashed: Arc<AtomicBool>,
    slots: Mutex<BTreeMap<Partition, Slot>>,
}

impl ClientContext for ShardContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_librdkafka(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(node = %self.node_id, %error, reason, "bus consumer client error");
    }
}

/// librdkafka's log lines, through `tracing`.
pub(super) fn log_librdkafka(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(facility, "librdkafka: {message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(facility, "librdkafka: {message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(facility, "librdkafka: {message}");
        }
        RDKafkaLogLevel::Debug => tracing::debug!(facility, "librdkafka: {message}"),
    }
}

impl ConsumerContext for ShardContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => self.revoke(consumer, self.partitions_of(list)),
            Rebalance::Assign(list) => self.assign(self.partitions_of(list)),
            Rebalance::Error(error) => {
                tracing::warn!(node = %self.node_id, %error, "bus rebalance error");
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // A partition paused during an earlier ownership must not stay paused.
        if let Rebalance::Assign(list) = rebalance
            && list.count() > 0
            && let Err(error) = consumer.resume(list)
        {
            tracing::warn!(node = %self.node_id, %error, "resuming assigned partitions failed");
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section leaves the slots consistent, so a poisoned lock is usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ShardContext {
    fn partitions_of(&self, list: &TopicPartitionList) -> Vec<Partition> {
        list.elements_for_topic(&self.topic)
            .iter()
            .filter_map(|element| Partition::try_from(element.partition()).ok())
            .collect()
    }

    fn single(&self, partition: Partition) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        // A partition number of this topic fits an i32.
        list.add_partition(&self.topic, partition as i32);
        list
    }

    fn assign(&self, partitions: Vec<Partition>) {
        if self.crashed.load(Ordering::SeqCst) {
            return;
        }
        let partitions: Vec<Partition> = {
            let slots = lock(&self.slots);
            partitions
                .into_iter()
                .filter(|p| !slots.contains_key(p))
                .collect()
        };
        if partitions.is_empty() {
            return;
        }
        tracing::debug!(node = %self.node_id, ?partitions, "bus partitions assigned");
        self.runtime
            .block_on(self.handler.assigned(partitions.clone()));
        let mut slots = lock(&self.slots);
        for partition in partitions {
            let ledger = Ledger::new();
            let (records, receiver) = mpsc::channel(CHANNEL_CAPACITY);
            let (stop, stopped) = watch::channel(false);
            let task = self.runtime.spawn(deliver(
                receiver,
                Arc::clone(&ledger),
                Arc::clone(&self.handler),
                stopped,
            ));
            slots.insert(
                partition,
                Slot {
                    ledger,
                    records,
                    stop,
                    task,
                    backlog: VecDeque::new(),
                    paused: false,
                    last_offset: -1,
                    last_committed: None,
                },
            );
        }
    }

    fn revoke(&self, consumer: &BaseConsumer<Self>, partitions: Vec<Partition>) {
        let slots: Vec<(Partition, Slot)> = {
            let mut slots = lock(&self.slots);
            partitions
                .iter()
                .filter_map(|p| slots.remove(p).map(|slot| (*p, slot)))
                .collect()
        };
        if slots.is_empty() {
            return;
        }
        let crashed = self.crashed.load(Ordering::SeqCst);
        tracing::debug!(node = %self.node_id, ?partitions, crashed, "bus partitions revoked");
        let mut ledgers = Vec::with_capacity(slots.len());
        for (partition, slot) in slots {
            // An error means the task already ended, which is what is asked.
            let _ = slot.stop.send(true);
            if crashed {
                slot.ledger.fence();
                slot.task.abort();
                continue;
            }
            if let Err(error) = self.runtime.block_on(slot.task) {
                tracing::warn!(node = %self.node_id, %error, "bus delivery task failed");
            }
            ledgers.push((partition, slot.ledger));
        }
        if crashed {
            return;
        }
        let revoked: Vec<Partition> = ledgers.iter().map(|(p, _)| *p).collect();
        self.runtime.block_on(self.handler.revoked(revoked));

        let mut offsets = TopicPartitionList::new();
        for (partition, ledger) in ledgers {
            if let Some(next) = ledger.fence()
                && let Err(error) = offsets.add_partition_offset(
                    &self.topic,
                    partition as i32,
                    Offset::Offset(next),
                )
            {
                tracing::warn!(%error, "bus commit list");
            }
        }
        if offsets.count() == 0 {
            return;
        }
        if consumer.assignment_lost() {
            tracing::warn!(node = %self.node_id, "bus assignment lost: the final commit is skipped");
            return;
        }
        if let Err(error) = consumer.commit(&offsets, CommitMode::Sync) {
            tracing::warn!(node = %self.node_id, %error, "bus commit at revoke failed");
        }
    }

    /// Hands a fetched record to its partition's delivery task, or to the backlog.
    fn dispatch(&self, consumer: &BaseConsumer<Self>, message: &BorrowedMessage<'_>) {
        if message.topic() != self.topic {
            return;
        }
        let Ok(partition) = Partition::try_from(message.partition()) else {
            return;
        };
        let mut slots = lock(&self.slots);
        let Some(slot) = slots.get_mut(&partition) else {
            return;
        };
        if message.offset() <= slot.last_offset {
            return;
        }
        slot.last_offset = message.offset();
        let record = ShardRecord {
            partition,
            offset: message.offset(),
            key: Bytes::copy_from_slice(message.key().unwrap_or_default()),
            payload: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
        };
        if !slot.backlog.is_empty() {
            slot.backlog.push_back(record);
            return;
        }
        match slot.records.try_send(record) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(record)) => {
                slot.backlog.push_back(record);
                if !slot.paused {
                    slot.paused = true;
                    if let Err(error) = consumer.pause(&self.single(partition)) {
                        tracing::warn!(%error, partition, "pausing a bus partition failed");
                    }
                }
            }
        }
    }

    /// Moves backlogged records on as their channels free up; resumes emptied partitions.
    fn drain_backlogs(&self, consumer: &BaseConsumer<Self>) {
        let mut slots = lock(&self.slots);
        for (partition, slot) in slots.iter_mut() {
            while let Some(record) = slot.backlog.pop_front() {
                match slot.records.try_send(record) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(record)) => {
                        slot.backlog.push_front(record);
                        break;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => slot.backlog.clear(),
                }
            }
            if slot.paused && slot.backlog.is_empty() {
                slot.paused = false;
                if let Err(error) = consumer.resume(&self.single(*partition)) {
                    tracing::warn!(%error, partition, "resuming a bus partition failed");
                }
            }
        }
    }

    /// Commits (asynchronously) every partition whose completed prefix moved.
    fn commit_progress(&self, consumer: &BaseConsumer<Self>) {
        let mut offsets = TopicPartitionList::new();
        {
            let mut slots = lock(&self.slots);
            for (partition, slot) in slots.iter_mut() {
                let next = slot.ledger.committable();
                if next.is_none() || next == slot.last_committed {
                    continue;
                }
                if let Some(next) = next
                    && offsets
                        .add_partition_offset(&self.topic, *partition as i32, Offset::Offset(next))
                        .is_ok()
                {
                    slot.last_committed = Some(next);
                }
            }
        }
        if offsets.count() == 0 {
            return;
        }
        if let Err(error) = consumer.commit(&offsets, CommitMode::Async) {
            tracing::warn!(node = %self.node_id, %error, "bus periodic commit failed");
        }
    }
}

/// Delivers one partition's records to the handler, one call at a time, until stopped.
async fn deliver(
    mut records: mpsc::Receiver<ShardRecord>,
    ledger: Arc<Ledger>,
    handler: Arc<dyn BusHandler>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let record = tokio::select! {
            biased;
            _ = stop.changed() => return,
            record = records.recv() => match record {
                Some(record) => record,
                None => return,
            },
        };
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            room = ledger.wait_for_room() => if !room { return },
        }
        let completion = ledger.track(record.offset);
        handler.record(record, completion).await;
    }
}
