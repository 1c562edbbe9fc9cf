//! The conformance suite against Kafka (`COURIER_TEST_KAFKA`, default `127.0.0.1:19092`; start
//! a local broker with `ops/cluster/kafka.sh start`). Every case gets its own topic prefix and
//! consumer group.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use courier_bus::conformance::{TestCluster, TestMember};
use courier_bus::{Bus, BusError, KafkaBus, KafkaConfig};

const PARTITIONS: u32 = 8;

fn brokers() -> String {
    std::env::var("COURIER_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:19092".to_owned())
}

/// Panics with directions when no broker answers.
fn require_broker(brokers: &str) {
    let first = brokers.split(',').next().unwrap_or_default();
    let reachable = first
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    assert!(
        reachable,
        "no Kafka broker at {first} (COURIER_TEST_KAFKA): start one with `ops/cluster/kafka.sh start`"
    );
}

/// A topic prefix no other test (or earlier run) uses.
fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "test-bus-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// Settings for quick rebalances and quick failures in tests.
fn test_config(brokers: &str, prefix: &str, node_id: &str) -> KafkaConfig {
    let mut config = KafkaConfig::new(brokers, prefix, PARTITIONS, node_id);
    config.session_timeout_ms = 3000;
    config.heartbeat_interval_ms = 300;
    config.delivery_timeout_ms = 10_000;
    config
}

struct KafkaCluster {
    brokers: String,
    prefix: String,
}

#[async_trait::async_trait]
impl TestCluster for KafkaCluster {
    async fn join(&self, node_id: &str) -> Arc<dyn TestMember> {
        let config = test_config(&self.brokers, &self.prefix, node_id);
        let bus = KafkaBus::connect(config)
            .await
            .unwrap_or_else(|error| panic!("connecting {node_id} to Kafka failed: {error}"));
        Arc::new(bus)
    }
}

async fn fresh_cluster() -> Box<dyn TestCluster> {
    let brokers = brokers();
    require_broker(&brokers);
    Box::new(KafkaCluster {
        brokers,
        prefix: unique_prefix(),
    })
}

/// Nothing listens on port 1: every request fails, quickly.
const BOGUS_BROKER: &str = "127.0.0.1:1";

async fn unreachable_bus() -> Arc<dyn Bus> {
    let mut config = test_config(BOGUS_BROKER, &unique_prefix(), "node-a");
    config.delivery_timeout_ms = 2000;
    config.create_topics = false;
    Arc::new(
        KafkaBus::connect(config)
            .await
            .expect("connecting without creating topics contacts no broker"),
    )
}

mod conformance {
    courier_bus::conformance_tests!(super::fresh_cluster, super::unreachable_bus);
}

#[tokio::test]
async fn connecting_to_an_unreachable_broker_is_unavailable() {
    let mut config = test_config(BOGUS_BROKER, &unique_prefix(), "node-a");
    config.admin_timeout_ms = 2000;
    let connected = KafkaBus::connect(config).await;
    assert!(
        matches!(connected, Err(BusError::Unavailable(_))),
        "connect gave {:?}",
        connected.map(|_| ())
    );
}

#[tokio::test]
async fn a_bad_node_id_is_a_configuration_error() {
    let config = test_config(BOGUS_BROKER, &unique_prefix(), "node a/1");
    let connected = KafkaBus::connect(config).await;
    assert!(
        matches!(connected, Err(BusError::Config(_))),
        "connect gave {:?}",
        connected.map(|_| ())
    );
}
