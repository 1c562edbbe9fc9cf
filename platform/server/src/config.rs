//! Server configuration, parsed once into types.
//!
//! Sources, later ones overriding earlier: built-in defaults < a TOML file (`--config`) <
//! environment variables `COURIER_<SECTION>__<KEY>` (for example `COURIER_SERVER__LISTEN`,
//! `COURIER_STORE__DATA_DIR`, `COURIER_GATEWAY__MAX_FRAME_BYTES`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use courier_store::embedded::Durability;
use serde::Deserialize;

/// Everything the server reads from configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerSection,
    pub store: StoreSection,
    pub gateway: GatewaySection,
    pub registration: RegistrationSection,
    pub actors: ActorSection,
    pub groups: GroupSection,
    pub cluster: ClusterSection,
    pub log: LogSection,
    /// The business API (WhatsApp Cloud API compatible) on its own listener; see
    /// `courier_business::BusinessConfig` and docs/business-api.md.
    pub business: courier_business::BusinessConfig,
}

/// Cluster mode: which bus places actors, and how this node joins it.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSection {
    /// "local" (one process; actors live here) or "kafka" (actors sharded over the nodes of a
    /// consumer group; needs `store.backend = "cql"` so that every node sees the same data).
    pub bus: String,
    /// This node's id, unique in the cluster; empty means the host name.
    pub node_id: String,
    /// Kafka bootstrap servers, comma-separated `host:port`.
    pub kafka_brokers: String,
    /// Prefix of the topics (`<prefix>.shards`, `<prefix>.node.<id>`, ...) and of the group id.
    pub topic_prefix: String,
    /// Shard partitions; fixed for the life of a deployment (a user's partition must not move).
    pub partitions: u32,
    /// Replication factor of the topics the server creates; 0 means min(3, brokers).
    pub kafka_replication_factor: u32,
    /// How long a silent node keeps its partitions before the others take them over.
    pub kafka_session_timeout_ms: u64,
    /// How long a publish may wait for the brokers before the sender gets "unavailable".
    pub kafka_delivery_timeout_ms: u64,
    /// How long a node waits for the answer of another node's actor.
    pub ask_timeout_ms: u64,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            bus: "local".into(),
            node_id: String::new(),
            kafka_brokers: "127.0.0.1:9092".into(),
            topic_prefix: "courier".into(),
            partitions: 64,
            kafka_replication_factor: 0,
            kafka_session_timeout_ms: 6000,
            kafka_delivery_timeout_ms: 10_000,
            ask_timeout_ms: 15_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupSection {
    /// Most members of a group.
    pub size_limit: u32,
}

impl Default for GroupSection {
    fn default() -> Self {
        GroupSection { size_limit: 1024 }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// Address of the one port serving HTTP, the gateway and `/metrics`.
    pub listen: SocketAddr,
    /// Pending connections the kernel queues before the server accepts them (capped by
    /// `net.core.somaxconn`).
    pub listen_backlog: u32,
    /// On SIGTERM, how long `/readyz` fails before connections are closed, in milliseconds
    /// (give load balancers a health-check interval or two).
    pub unready_grace_ms: u64,
    /// Longest time a graceful drain waits for connections to close, in seconds.
    pub drain_timeout_secs: u64,
    /// Bearer token of the admin API; if empty, a random one is written to
    /// `<data_dir>/admin.token` at start-up.
    pub admin_token: String,
    /// Largest HTTP request body, in bytes.
    pub max_http_body_bytes: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// Which backend: "embedded" (local disk) or "cql" (ScyllaDB or Apache Cassandra).
    pub backend: String,
    pub data_dir: PathBuf,
    /// "process" (survives a crash of the process) or "sync" (group commit with fsync:
    /// also survives power loss).
    pub durability: Durability,
    /// How long undelivered entries stay queued.
    pub retention_days: u64,
    /// How often expired entries are swept.
    pub sweep_interval_secs: u64,
    /// CQL contact points, comma-separated `host:port`.
    pub cql_contact_points: String,
    pub cql_keyspace: String,
    /// Replication factor of the keyspace created at first start.
    pub cql_replication_factor: u32,
    /// Data centre of NetworkTopologyStrategy; empty means SimpleStrategy.
    pub cql_datacenter: String,
    /// "local_quorum" (default), "quorum", "local_one", "one" or "all".
    pub cql_consistency: String,
    /// Allow ScyllaDB-only CQL (false on Apache Cassandra).
    pub cql_scylla: bool,
    /// Longest time one CQL request may take, in milliseconds.
    pub cql_request_timeout_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySection {
    pub max_frame_bytes: usize,
    /// Most deliveries pushed to one device and not yet acknowledged.
    pub push_window: usize,
    /// Sustained frames per second one connection may send...
    pub frames_per_sec: u32,
    /// ...with bursts up to this many.
    pub frame_burst: u32,
    /// Frames refused for rate in a row before the connection is closed (1008).
    pub max_rate_violations: u32,
    /// Server pings this often, in seconds...
    pub ping_interval_secs: u64,
    /// ...and closes a connection silent for this long (4002).
    pub idle_timeout_secs: u64,
    /// Most connections this server accepts at once.
    pub max_connections: usize,
    /// Read buffer of each WebSocket, in bytes (small keeps idle connections cheap).
    pub read_buffer_bytes: usize,
    /// Frames waiting to be written to one connection before pushes pause.
    pub outbound_queue: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrationSection {
    pub code_ttl_secs: u64,
    pub max_codes_per_window: u32,
    pub code_window_secs: u64,
    pub max_attempts: u32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActorSection {
    /// Arbiters (threads) hosting actors; 0 means one per core.
    pub arbiters: usize,
    /// Bounded mailbox of each actor; a full mailbox makes senders wait.
    pub mailbox_capacity: usize,
    /// An actor with no connected device and no message for this long is passivated.
    pub idle_secs: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// "text" or "json".
    pub format: String,
    /// A tracing filter, e.g. "info" or "courier_server=debug,info".
    pub filter: String,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            listen_backlog: 4096,
            unready_grace_ms: 0,
            drain_timeout_secs: 10,
            admin_token: String::new(),
            max_http_body_bytes: 256 * 1024,
        }
    }
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            backend: "embedded".into(),
            data_dir: PathBuf::from("data"),
            durability: Durability::Process,
            retention_days: 30,
            sweep_interval_secs: 600,
            cql_contact_points: "127.0.0.1:9042".into(),
            cql_keyspace: "courier".into(),
            cql_replication_factor: 3,
            cql_datacenter: String::new(),
            cql_consistency: "local_quorum".into(),
            cql_scylla: false,
            cql_request_timeout_ms: 5000,
        }
    }
}

impl Default for GatewaySection {
    fn default() -> Self {
        GatewaySection {
            max_frame_bytes: courier_protocol::DEFAULT_MAX_FRAME_BYTES,
            push_window: 256,
            frames_per_sec: 1000,
            frame_burst: 2000,
            max_rate_violations: 200,
            ping_interval_secs: 30,
            idle_timeout_secs: 120,
            max_connections: 19_500,
            read_buffer_bytes: 1024,
            outbound_queue: 512,
        }
    }
}

impl Default for RegistrationSection {
    fn default() -> Self {
        RegistrationSection {
            code_ttl_secs: 600,
            max_codes_per_window: 3,
            code_window_secs: 600,
            max_attempts: 5,
        }
    }
}

impl Default for ActorSection {
    fn default() -> Self {
        ActorSection {
            arbiters: 0,
            mailbox_capacity: 1024,
            idle_secs: 300,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: "text".into(),
            filter: "info".into(),
        }
    }
}

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Defaults, then `file` if given, then `COURIER_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).required(true));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("COURIER")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(settings_from_env(std::env::vars()))),
        );
        let config: Config = builder.build()?.try_deserialize()?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if !matches!(self.store.backend.as_str(), "embedded" | "cql") {
            return Err(ConfigError::Invalid(format!(
                "store.backend {:?} is unknown: use \"embedded\" or \"cql\"",
                self.store.backend
            )));
        }
        match self.cluster.bus.as_str() {
            "local" => {}
            "kafka" if self.store.backend == "cql" => {}
            "kafka" => {
                return invalid(
                    "cluster.bus = \"kafka\" needs store.backend = \"cql\": every node must see \
                     the same data",
                );
            }
            other => {
                return Err(ConfigError::Invalid(format!(
                    "cluster.bus {other:?} is unknown: use \"local\" or \"kafka\""
                )));
            }
        }
        if self.cluster.partitions == 0 {
            return invalid("cluster.partitions must be positive");
        }
        if self.gateway.max_frame_bytes < 1024 {
            return invalid("gateway.max_frame_bytes must be at least 1024");
        }
        if self.gateway.push_window == 0 || self.gateway.outbound_queue == 0 {
            return invalid("gateway.push_window and gateway.outbound_queue must be positive");
        }
        if self.gateway.frames_per_sec == 0 || self.gateway.frame_burst == 0 {
            return invalid("gateway.frames_per_sec and gateway.frame_burst must be positive");
        }
        if self.gateway.ping_interval_secs == 0 || self.gateway.idle_timeout_secs == 0 {
            return invalid(
                "gateway.ping_interval_secs and gateway.idle_timeout_secs must be positive",
            );
        }
        if self.actors.mailbox_capacity == 0 {
            return invalid("actors.mailbox_capacity must be positive");
        }
        if self.groups.size_limit < 2 {
            return invalid("groups.size_limit must be at least 2");
        }
        if self.store.retention_days == 0 {
            return invalid("store.retention_days must be positive");
        }
        Ok(())
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.store.retention_days * 86_400)
    }

    /// This node's id in a cluster: `cluster.node_id`, or the host name.
    pub fn node_id(&self) -> String {
        if !self.cluster.node_id.is_empty() {
            return self.cluster.node_id.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "courier".into())
    }

    /// Number of actor arbiters to start.
    pub fn arbiter_count(&self) -> usize {
        if self.actors.arbiters > 0 {
            return self.actors.arbiters;
        }
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }
}

/// The `COURIER_<SECTION>__<KEY>` variables only: other `COURIER_*` variables (the config file
/// path, the CLI's home directory) are not settings and must not be read as unknown keys.
fn settings_from_env(vars: impl Iterator<Item = (String, String)>) -> config::Map<String, String> {
    vars.filter(|(name, _)| {
        name.strip_prefix("COURIER_")
            .is_some_and(|rest| rest.contains("__"))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("courier.toml");
        std::fs::write(
            &path,
            "[gateway]\nmax_frame_bytes = 65536\n[store]\ndurability = \"sync\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&path)).unwrap();
        assert_eq!(config.gateway.max_frame_bytes, 65536);
        assert_eq!(config.store.durability, Durability::Sync);
        assert_eq!(
            config.gateway.push_window, 256,
            "untouched keys keep defaults"
        );
    }

    #[test]
    fn only_section_variables_are_settings() {
        let vars = [
            ("COURIER_CONFIG", "/etc/courier.toml"),
            ("COURIER_HOME", "/tmp/alice"),
            ("COURIER_GATEWAY__MAX_FRAME_BYTES", "4096"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let settings = settings_from_env(vars.into_iter());
        assert_eq!(settings.len(), 1);
        assert_eq!(settings["COURIER_GATEWAY__MAX_FRAME_BYTES"], "4096");
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[gateway]\nmax_frame_bytez = 1\n").unwrap();
        assert!(Config::load(Some(&path)).is_err());
        std::fs::write(&path, "[gateway]\nmax_frame_bytes = 10\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("max_frame_bytes"), "{err}");
    }
}
