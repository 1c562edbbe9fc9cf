//! The message bus of the platform: shard partitions that place actors on nodes, and
//! node-to-node messages.
//!
//! # Model
//!
//! - **Shards.** The bus has a fixed number of partitions. A user or group id is mapped to one by
//!   [`partition_for`] (FNV-1a 64 of the key bytes, modulo the count: stable across processes,
//!   versions and languages). Everything addressed to an actor is published to its partition
//!   with [`Bus::publish`], which resolves once the append is durable (Kafka: acknowledged by all
//!   in-sync replicas through an idempotent producer). Records one node publishes to one
//!   partition keep their order.
//! - **Ownership.** Each partition is owned by exactly one member (node) at a time; the owner
//!   hosts the partition's actors. The bus tells the [`BusHandler`] which partitions it gained
//!   ([`BusHandler::assigned`]) and lost ([`BusHandler::revoked`]), and feeds it the records of
//!   owned partitions, in offset order per partition, one call at a time per partition; partitions
//!   are handled concurrently. Members joining, leaving or dying move partitions (a rebalance):
//!   the loser is revoked (and finishes) before the winner is assigned, except after a crash.
//! - **Commits after persistence.** Every record comes with a [`Completion`]. The handler calls
//!   [`Completion::done`] once the record's effect is persisted (from any task, in any order).
//!   The bus commits, per partition, the highest *contiguous* completed offset: periodically, and
//!   at revoke and shutdown. Whatever is not committed is delivered again to the next owner, so a
//!   crash means redelivery (the handler deduplicates), never loss.
//! - **Node messages.** [`Bus::send_to_node`] carries an ephemeral message to one named node,
//!   with the sender's id (deliveries to the node holding a recipient's socket). They are best
//!   effort: lost if the node is down, never replayed to a node that restarts.
//!
//! What is durable: published shard records (until retention) and committed offsets. What is
//! not: node messages, and completions not yet committed (up to one commit interval before a
//! crash, which only causes redelivery).
//!
//! # Layout
//!
//! - [`partition`] holds [`partition_for`].
//! - `completion` holds [`Completion`] and the per-partition ledger of delivered records that turns
//!   out-of-order completions into a committable offset.
//! - [`in_process`] holds [`InProcessHub`] / [`InProcessBus`], members of one process sharing in-memory
//!   partitions (single-node mode, and cluster routing tests without Kafka).
//! - [`kafka`] holds [`KafkaBus`], over Apache Kafka (cluster mode).
//! - [`conformance`] holds the behaviour both implementations show, and
//!   [`conformance_tests!`](crate::conformance_tests) to run it against a backend.

mod completion;
pub mod conformance;
mod error;
pub mod in_process;
pub mod kafka;
pub mod partition;

use std::sync::Arc;

use bytes::Bytes;

pub use self::completion::Completion;
pub use self::error::BusError;
pub use self::in_process::{InProcessBus, InProcessHub};
pub use self::kafka::{KafkaBus, KafkaConfig};
pub use self::partition::{Partition, partition_for};

/// A record of a shard partition, as delivered to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRecord {
    pub partition: Partition,
    /// Position in the partition; increases with every record (not necessarily by one).
    pub offset: i64,
    pub key: Bytes,
    pub payload: Bytes,
}

/// What a member does with what the bus gives it.
#[async_trait::async_trait]
pub trait BusHandler: Send + Sync + 'static {
    /// This node now owns `partitions`; their records follow.
    async fn assigned(&self, partitions: Vec<Partition>);
    /// `partitions` leave this node. Returns once every effect that will ever be persisted for
    /// their delivered records is persisted (the handler flushes and stops those actors). The bus
    /// then commits what was completed and lets them go; uncompleted records go to the next owner.
    async fn revoked(&self, partitions: Vec<Partition>);
    /// A record of an owned partition. For one partition, calls come one at a time in offset
    /// order (the next call starts after the previous returned). The handler hands the work on
    /// and returns quickly; it reports the effect with `completion.done()` later, from any task.
    async fn record(&self, record: ShardRecord, completion: Completion);
    /// An ephemeral message addressed to this node.
    async fn node_message(&self, from: String, payload: Bytes);
}

/// The message bus as one member (node) sees it.
#[async_trait::async_trait]
pub trait Bus: Send + Sync + 'static {
    /// This member's node id.
    fn node_id(&self) -> &str;
    /// The number of shard partitions.
    fn partitions(&self) -> u32;
    /// Starts consuming and calling `handler` (once per bus; a second call is a `Config` error).
    async fn start(&self, handler: Arc<dyn BusHandler>) -> Result<(), BusError>;
    /// Durably appends to the shard partition; resolves when the append is acknowledged
    /// (Kafka: acks=all, idempotent producer). Records one node publishes to one partition keep
    /// their order. A dependency that stays down gives `Unavailable` within the configured
    /// delivery timeout — never a silent success.
    async fn publish(
        &self,
        partition: Partition,
        key: Bytes,
        payload: Bytes,
    ) -> Result<(), BusError>;
    /// Best-effort ephemeral message to node `node` (lost if that node is down; nothing is
    /// replayed to a node that restarts).
    async fn send_to_node(&self, node: &str, payload: Bytes) -> Result<(), BusError>;
    /// Best-effort ephemeral message to every member, this one included (presence changes,
    /// ownership announcements, liveness). A member that joins later sees only what follows.
    async fn broadcast(&self, payload: Bytes) -> Result<(), BusError>;
    /// Leaves cleanly: revokes everything (`handler.revoked`), commits, closes. Idempotent.
    async fn shutdown(&self);
}

/// Checks a partition number against the count, for `publish`.
pub(crate) fn check_partition(partition: Partition, partitions: u32) -> Result<(), BusError> {
    if partition < partitions {
        Ok(())
    } else {
        Err(BusError::Config(format!(
            "partition {partition} out of range (the bus has {partitions})"
        )))
    }
}
