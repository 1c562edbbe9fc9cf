//! The Kafka bus: shard partitions are the partitions of topic `{prefix}.shards`, ownership is the
//! consumer group's assignment, and node messages travel on one single-partition topic per node,
//! `{prefix}.node.{node_id}`.
//!
//! Threads and tasks: librdkafka runs its own threads; the shard consumer is polled by one
//! dedicated thread (`courier-bus-consumer`), where rebalance callbacks block on the handler
//! through a runtime handle; each owned partition has a delivery task on the runtime, fed by a
//! bounded channel (a partition whose channel is full is paused); node messages are read by one
//! task. Offsets are committed every `commit_interval_ms` and synchronously at revoke.
//!
//! Layout: this file holds the configuration and [`KafkaBus`]; `topics` the topic set-up,
//! `consumer` the shard consumer thread and its rebalance handling, `node` the node messages.

mod consumer;
mod node;
mod topics;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::task::JoinHandle;

use crate::{Bus, BusError, BusHandler, Partition, check_partition};

use self::consumer::ShardConsumer;
use self::node::NodeConsumer;

/// The header that carries the sender's node id on node messages.
const FROM_HEADER: &str = "courier-from";

/// How to reach Kafka and how this member behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Prefix of every topic of this bus: `{prefix}.shards`, `{prefix}.node.{node_id}`.
    pub topic_prefix: String,
    /// The number of shard partitions; must match the topic if it exists.
    pub partitions: u32,
    /// This node's id (letters, digits, `.`, `_`, `-`).
    pub node_id: String,
    /// The consumer group of the shard consumers: the same for every node of one cluster.
    pub group_id: String,
    /// A member that stops heartbeating for this long loses its partitions (the broker's
    /// `group.min.session.timeout.ms` bounds it from below).
    pub session_timeout_ms: u32,
    /// How often the member heartbeats; also how soon it notices a rebalance.
    pub heartbeat_interval_ms: u32,
    /// A publish not acknowledged within this time fails with `Unavailable`.
    pub delivery_timeout_ms: u32,
    /// Time allowed for topic creation and metadata requests at connect.
    pub admin_timeout_ms: u32,
    /// Replication factor of created topics; `None`: min(3, brokers in the cluster).
    pub replication_factor: Option<u16>,
    /// Producer batching delay (latency against throughput).
    pub linger_ms: u32,
    /// How often completed offsets are committed (besides at revoke and shutdown).
    pub commit_interval_ms: u32,
    /// Create missing topics at connect (and check the shard topic's partition count). When
    /// false, connect contacts no broker.
    pub create_topics: bool,
}

impl KafkaConfig {
    /// A configuration with defaults: group `{prefix}.shards`, session 6 s, heartbeat 500 ms,
    /// delivery timeout 30 s, admin timeout 10 s, linger 1 ms, commits every 150 ms.
    pub fn new(brokers: &str, topic_prefix: &str, partitions: u32, node_id: &str) -> Self {
        Self {
            brokers: brokers.to_owned(),
            topic_prefix: topic_prefix.to_owned(),
            partitions,
            node_id: node_id.to_owned(),
            group_id: format!("{topic_prefix}.shards"),
            session_timeout_ms: 6000,
            heartbeat_interval_ms: 500,
            delivery_timeout_ms: 30_000,
            admin_timeout_ms: 10_000,
            replication_factor: None,
            linger_ms: 1,
            commit_interval_ms: 150,
            create_topics: true,
        }
    }

    fn shards_topic(&self) -> String {
        format!("{}.shards", self.topic_prefix)
    }

    fn node_topic(&self, node_id: &str) -> String {
        format!("{}.node.{node_id}", self.topic_prefix)
    }

    fn broadcast_topic(&self) -> String {
        format!("{}.broadcast", self.topic_prefix)
    }

    fn validate(&self) -> Result<(), BusError> {
        if self.partitions == 0 || i32::try_from(self.partitions).is_err() {
            return Err(BusError::Config(format!(
                "bad partition count {}",
                self.partitions
            )));
        }
        check_name("topic prefix", &self.topic_prefix)?;
        check_name("node id", &self.node_id)?;
        if self.group_id.is_empty() {
            return Err(BusError::Config("empty group id".into()));
        }
        if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms >= self.session_timeout_ms
        {
            return Err(BusError::Config(format!(
                "heartbeat interval {} ms must be below the session timeout {} ms",
                self.heartbeat_interval_ms, self.session_timeout_ms
            )));
        }
        if self.delivery_timeout_ms <= self.linger_ms {
            return Err(BusError::Config(
                "the delivery timeout must exceed linger".into(),
            ));
        }
        Ok(())
    }

    /// The settings every client of this bus shares.
    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", format!("courier-{}", self.node_id));
        config
    }
}

/// Topic names are limited to letters, digits, `.`, `_` and `-` (and 249 bytes in all).
fn check_name(what: &str, name: &str) -> Result<(), BusError> {
    let valid = !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(BusError::Config(format!(
            "bad {what} {name:?}: use 1-200 letters, digits, '.', '_' or '-'"
        )))
    }
}

/// A Kafka error met while talking to the cluster: the broker is down or slow, unless the
/// request itself is wrong.
fn kafka_error(context: &str, error: KafkaError) -> BusError {
    match error {
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) => {
            BusError::Config(format!("{context}: {error}"))
        }
        KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::UnknownPartition,
        ) => BusError::Config(format!("{context}: {error}")),
        _ => BusError::Unavailable(format!("{context}: {error}")),
    }
}

/// One member of a Kafka bus.
pub struct KafkaBus {
    config: KafkaConfig,
    shards_topic: String,
    producer: FutureProducer,
    node_consumer: Mutex<Option<NodeConsumer>>,
    shard_consumer: Mutex<Option<ShardConsumer>>,
    node_task: Mutex<Option<JoinHandle<()>>>,
    started: AtomicBool,
    closed: AtomicBool,
    /// `shutdown` has begun (publishing stays open until the consumer has revoked).
    closing: AtomicBool,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("node_id", &self.config.node_id)
            .field("shards_topic", &self.shards_topic)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values are plain handles: a panic elsewhere cannot leave them half updated.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl KafkaBus {
    /// Connects: creates missing topics (unless `create_topics` is false), the producer, and
    /// this node's message consumer, positioned at the end of its topic (node messages sent
    /// from now on are delivered once started). Broker unreachable: `Unavailable` after
    /// `admin_timeout_ms`.
    pub async fn connect(config: KafkaConfig) -> Result<Self, BusError> {
        config.validate()?;
        let shards_topic = config.shards_topic();
        let node_topic = config.node_topic(&config.node_id);
        let broadcast_topic = config.broadcast_topic();
        let (node_start, broadcast_start) = if config.create_topics {
            let (node, broadcast) =
                topics::ensure(&config, &shards_topic, &node_topic, &broadcast_topic).await?;
            (Some(node), Some(broadcast))
        } else {
            (None, None)
        };

        let producer: FutureProducer = config
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", config.linger_ms.to_string())
            .set("message.timeout.ms", config.delivery_timeout_ms.to_string())
            .create()
            .map_err(|error| kafka_error("creating the producer", error))?;
        let node_consumer = NodeConsumer::new(
            &config,
            &[
                (&node_topic, node_start),
                (&broadcast_topic, broadcast_start),
            ],
        )?;
        Ok(Self {
            shards_topic,
            producer,
            node_consumer: Mutex::new(Some(node_consumer)),
            shard_consumer: Mutex::new(None),
            node_task: Mutex::new(None),
            started: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            config,
        })
    }

    /// The configuration this member runs with.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// For tests: stops as a killed process would, as far as the group sees it. The consumer is
    /// closed without `revoked` and without committing, so the next owner gets every record
    /// that was not committed before; the member is gone (later calls give `Closed`).
    pub async fn crash(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let consumer = lock(&self.shard_consumer).take();
        if let Some(consumer) = consumer {
            consumer.close(true).await;
        }
        self.stop_node_messages();
    }

    fn stop_node_messages(&self) {
        if let Some(task) = lock(&self.node_task).take() {
            task.abort();
        }
        lock(&self.node_consumer).take();
    }

    /// Appends `payload` to partition 0 of a one-partition topic, with this node as sender.
    async fn produce_from_here(
        &self,
        topic: &str,
        payload: &[u8],
        what: &str,
    ) -> Result<(), BusError> {
        let headers = OwnedHeaders::new().insert(Header {
            key: FROM_HEADER,
            value: Some(self.config.node_id.as_bytes()),
        });
        let record = FutureRecord::to(topic)
            .partition(0)
            .payload(payload)
            .headers(headers);
        self.produce(record, what).await
    }

    fn check_open(&self) -> Result<(), BusError> {
        if self.closed.load(Ordering::SeqCst) {
            Err(BusError::Closed)
        } else {
            Ok(())
        }
    }

    async fn produce(
        &self,
        record: FutureRecord<'_, [u8], [u8]>,
        what: &str,
    ) -> Result<(), BusError> {
        let queue_timeout = Duration::from_millis(u64::from(self.config.delivery_timeout_ms));
        match self.producer.send(record, queue_timeout).await {
            Ok(_) => Ok(()),
            Err((error, _)) => Err(kafka_error(what, error)),
        }
    }
}

#[async_trait::async_trait]
impl Bus for KafkaBus {
    fn node_id(&self) -> &str {
        &self.config.node_id
    }

    fn partitions(&self) -> u32 {
        self.config.partitions
    }

    async fn start(&self, handler: Arc<dyn BusHandler>) -> Result<(), BusError> {
        self.check_open()?;
        if self.started.swap(true, Ordering::SeqCst) {
            return Err(BusError::Config("the bus is already started".into()));
        }
        let consumer =
            ShardConsumer::start(&self.config, &self.shards_topic, Arc::clone(&handler))?;
        *lock(&self.shard_consumer) = Some(consumer);
        if let Some(node_consumer) = lock(&self.node_consumer).take() {
            *lock(&self.node_task) = Some(tokio::spawn(node_consumer.run(handler)));
        }
        Ok(())
    }

    async fn publish(
        &self,
        partition: Partition,
        key: Bytes,
        payload: Bytes,
    ) -> Result<(), BusError> {
        self.check_open()?;
        check_partition(partition, self.config.partitions)?;
        // Checked above: below the configured count, which fits an i32.
        let kafka_partition = partition as i32;
        let record = FutureRecord::to(&self.shards_topic)
            .partition(kafka_partition)
            .key(&key[..])
            .payload(&payload[..]);
        self.produce(record, "publishing a shard record").await
    }

    async fn send_to_node(&self, node: &str, payload: Bytes) -> Result<(), BusError> {
        self.check_open()?;
        check_name("node id", node)?;
        let topic = self.config.node_topic(node);
        self.produce_from_here(&topic, &payload, "sending a node message")
            .await
    }

    async fn broadcast(&self, payload: Bytes) -> Result<(), BusError> {
        self.check_open()?;
        let topic = self.config.broadcast_topic();
        self.produce_from_here(&topic, &payload, "broadcasting")
            .await
    }

    async fn shutdown(&self) {
        if self.closing.swap(true, Ordering::SeqCst) {
            return;
        }
        // Publishing stays open while the consumer revokes: retiring actors may still hand
        // work to other actors and answer asks.
        let consumer = lock(&self.shard_consumer).take();
        if let Some(consumer) = consumer {
            consumer.close(false).await;
        }
        self.closed.store(true, Ordering::SeqCst);
        self.stop_node_messages();
        let producer = self.producer.clone();
        let flush_timeout = Duration::from_millis(u64::from(self.config.delivery_timeout_ms));
        let flushed = tokio::task::spawn_blocking(move || producer.flush(flush_timeout)).await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "bus producer flush failed at shutdown"),
            Err(error) => tracing::warn!(%error, "bus producer flush task failed"),
        }
    }
}
