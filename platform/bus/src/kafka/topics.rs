//! Topic set-up at connect: the shard topic and this node's message topic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::Metadata;

use super::{KafkaConfig, kafka_error};
use crate::BusError;

/// Node messages are ephemeral: their topic keeps them for ten minutes at most.
const NODE_TOPIC_RETENTION_MS: &str = "600000";

type Admin = Arc<AdminClient<DefaultClientContext>>;

/// Creates the missing topics, checks the shard topic's partition count, and returns the end
/// offsets of the node topic and the broadcast topic (where this node's message consumer
/// starts).
pub(super) async fn ensure(
    config: &KafkaConfig,
    shards_topic: &str,
    node_topic: &str,
    broadcast_topic: &str,
) -> Result<(i64, i64), BusError> {
    let admin: Admin = Arc::new(
        config
            .client_config()
            .create()
            .map_err(|error| kafka_error("creating the admin client", error))?,
    );
    let timeout = Duration::from_millis(u64::from(config.admin_timeout_ms));

    let cluster = metadata(&admin, None, timeout).await?;
    let replication = match config.replication_factor {
        Some(factor) => i32::from(factor),
        // At most 3 and at least 1; the broker count fits an i32.
        None => cluster.brokers().len().clamp(1, 3) as i32,
    };
    // Validated at connect: the count fits an i32.
    let partitions = config.partitions as i32;
    let new_topics = [
        NewTopic::new(
            shards_topic,
            partitions,
            TopicReplication::Fixed(replication),
        ),
        NewTopic::new(node_topic, 1, TopicReplication::Fixed(replication))
            .set("retention.ms", NODE_TOPIC_RETENTION_MS),
        NewTopic::new(broadcast_topic, 1, TopicReplication::Fixed(replication))
            .set("retention.ms", NODE_TOPIC_RETENTION_MS),
    ];
    let options = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|error| kafka_error("creating topics", error))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(BusError::Unavailable(format!(
                    "creating topic {topic}: {code}"
                )));
            }
        }
    }

    // A new topic takes a moment to show in the metadata, with a leader for each partition;
    // fetching its metadata also refreshes the client's cache for the watermark request.
    let deadline = Instant::now() + timeout;
    let count = wait_for_topic(&admin, shards_topic, timeout, deadline).await?;
    if count != config.partitions as usize {
        return Err(BusError::Config(format!(
            "topic {shards_topic} has {count} partitions, the configuration says {}",
            config.partitions
        )));
    }
    wait_for_topic(&admin, node_topic, timeout, deadline).await?;
    wait_for_topic(&admin, broadcast_topic, timeout, deadline).await?;
    let node_end = end_offset(&admin, node_topic, timeout, deadline).await?;
    let broadcast_end = end_offset(&admin, broadcast_topic, timeout, deadline).await?;
    Ok((node_end, broadcast_end))
}

/// The end offset of partition 0 of `topic`, once it has a leader.
async fn end_offset(
    admin: &Admin,
    topic: &str,
    timeout: Duration,
    deadline: Instant,
) -> Result<i64, BusError> {
    loop {
        match watermark(admin, topic, timeout).await {
            Ok(high) => return Ok(high),
            Err(error) if Instant::now() >= deadline => return Err(error),
            Err(error) => {
                tracing::debug!(%error, topic, "topic not ready yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Waits until `topic` is in the metadata with a leader for every partition; returns its
/// partition count.
async fn wait_for_topic(
    admin: &Admin,
    topic: &str,
    timeout: Duration,
    deadline: Instant,
) -> Result<usize, BusError> {
    loop {
        let metadata = metadata(admin, Some(topic), timeout).await?;
        let ready = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .filter(|t| {
                !t.partitions().is_empty()
                    && t.partitions()
                        .iter()
                        .all(|p| p.error().is_none() && p.leader() >= 0)
            })
            .map(|t| t.partitions().len());
        if let Some(count) = ready {
            return Ok(count);
        }
        if Instant::now() >= deadline {
            return Err(BusError::Unavailable(format!(
                "topic {topic} did not appear in the metadata"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The end offset of partition 0 of `topic`, fetched off the runtime's workers.
async fn watermark(admin: &Admin, topic: &str, timeout: Duration) -> Result<i64, BusError> {
    let admin = Arc::clone(admin);
    let topic = topic.to_owned();
    let (_low, high) =
        tokio::task::spawn_blocking(move || admin.inner().fetch_watermarks(&topic, 0, timeout))
            .await
            .map_err(|error| BusError::Unavailable(format!("watermark task failed: {error}")))?
            .map_err(|error| kafka_error("reading the node topic's end", error))?;
    Ok(high)
}

/// Cluster metadata (of one topic, or of the cluster), fetched off the runtime's workers.
async fn metadata(
    admin: &Admin,
    topic: Option<&str>,
    timeout: Duration,
) -> Result<Metadata, BusError> {
    let admin = Arc::clone(admin);
    let topic = topic.map(str::to_owned);
    tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(topic.as_deref(), timeout))
        .await
        .map_err(|error| BusError::Unavailable(format!("metadata task failed: {error}")))?
        .map_err(|error| kafka_error("fetching cluster metadata", error))
}
