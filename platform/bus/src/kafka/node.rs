//! Node messages: this node's topic, read by manual assignment (no group) from the offset it
//! had at connect, so nothing older is replayed to a node that restarts.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::{FROM_HEADER, KafkaConfig, kafka_error};
use crate::{BusError, BusHandler};

/// The consumer of this node's message topic, assigned but not yet read.
pub(super) struct NodeConsumer {
    consumer: StreamConsumer,
}

impl NodeConsumer {
    /// Assigns partition 0 of each topic (this node's topic and the broadcast topic) from its
    /// start offset (its end at connect), or from its end whenever the first fetch happens if
    /// the end is unknown.
    pub(super) fn new(
        config: &KafkaConfig,
        topics: &[(&str, Option<i64>)],
    ) -> Result<Self, BusError> {
        let consumer: StreamConsumer = config
            .client_config()
            // Never joined (the partition is assigned by hand) and nothing is committed;
            // librdkafka only needs a group id to accept an assignment.
            .set(
                "group.id",
                format!("{}.node.{}", config.group_id, config.node_id),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .map_err(|error| kafka_error("creating the node message consumer", error))?;
        let mut assignment = TopicPartitionList::new();
        for (topic, start) in topics {
            let offset = start.map_or(Offset::End, Offset::Offset);
            assignment
                .add_partition_offset(topic, 0, offset)
                .map_err(|error| kafka_error("positioning the node message consumer", error))?;
        }
        consumer
            .assign(&assignment)
            .map_err(|error| kafka_error("assigning the node message topic", error))?;
        Ok(Self { consumer })
    }

    /// Hands every node message to `handler`, one at a time, until the task is aborted.
    pub(super) async fn run(self, handler: Arc<dyn BusHandler>) {
        loop {
            match self.consumer.recv().await {
                Ok(message) => {
                    let from = message
                        .headers()
                        .and_then(|headers| {
                            headers
                                .iter()
                                .find(|header| header.key == FROM_HEADER)
                                .and_then(|header| header.value)
                        })
                        .map(|value| String::from_utf8_lossy(value).into_owned())
                        .unwrap_or_default();
                    let payload = Bytes::copy_from_slice(message.payload().unwrap_or_default());
                    handler.node_message(from, payload).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "node message consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}
