//! [`CqlConfig`]: where the cluster is and how to talk to it, parsed once into types.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use scylla::statement::{Consistency as DriverConsistency, SerialConsistency};

/// How to reach the cluster and which keyspace to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CqlConfig {
    /// Contact points, `host:port` each (for example `127.0.0.1:19042`); the driver discovers
    /// the other nodes from them.
    pub contact_points: Vec<String>,
    /// The keyspace of the store; created by [`CqlStore::connect`](crate::CqlStore::connect)
    /// if missing.
    pub keyspace: String,
    /// Replicas per datacenter when the keyspace is created: 3 in production, 1 in tests.
    pub replication_factor: u32,
    /// `Some(dc)`: `NetworkTopologyStrategy` with `{dc: replication_factor}`, requests prefer
    /// that datacenter and lightweight transactions use `LOCAL_SERIAL`. `None`:
    /// `SimpleStrategy` and `SERIAL`.
    pub datacenter: Option<String>,
    /// The consistency of every read and write (`LOCAL_QUORUM` by default).
    pub consistency: Consistency,
    /// Use ScyllaDB-only CQL (`USING TIMEOUT` on scans, keyspace tablet options; ScyllaDB 6 or
    /// later). `false` runs on Apache Cassandra.
    pub scylla_extensions: bool,
    /// The client-side timeout of one request (scans get at least a minute).
    pub request_timeout: Duration,
}

impl Default for CqlConfig {
    fn default() -> Self {
        CqlConfig {
            contact_points: vec!["127.0.0.1:9042".to_owned()],
            keyspace: "courier".to_owned(),
            replication_factor: 3,
            datacenter: None,
            consistency: Consistency::LocalQuorum,
            scylla_extensions: false,
            request_timeout: Duration::from_secs(5),
        }
    }
}

impl CqlConfig {
    /// The serial consistency of lightweight transactions (and of reads that must see their
    /// latest outcome).
    pub(crate) fn serial_consistency(&self) -> SerialConsistency {
        match self.datacenter {
            Some(_) => SerialConsistency::LocalSerial,
            None => SerialConsistency::Serial,
        }
    }

    /// The consistency of a read that must see the latest outcome of a lightweight transaction.
    pub(crate) fn serial_read_consistency(&self) -> DriverConsistency {
        match self.serial_consistency() {
            SerialConsistency::LocalSerial => DriverConsistency::LocalSerial,
            SerialConsistency::Serial => DriverConsistency::Serial,
        }
    }
}

/// The consistency levels a store may be configured with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    One,
    LocalOne,
    Quorum,
    #[default]
    LocalQuorum,
    All,
}

impl Consistency {
    pub(crate) fn to_driver(self) -> DriverConsistency {
        match self {
            Consistency::One => DriverConsistency::One,
            Consistency::LocalOne => DriverConsistency::LocalOne,
            Consistency::Quorum => DriverConsistency::Quorum,
            Consistency::LocalQuorum => DriverConsistency::LocalQuorum,
            Consistency::All => DriverConsistency::All,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Consistency::One => "one",
            Consistency::LocalOne => "local_one",
            Consistency::Quorum => "quorum",
            Consistency::LocalQuorum => "local_quorum",
            Consistency::All => "all",
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A consistency name that is not one of `one`, `local_one`, `quorum`, `local_quorum`, `all`.
#[derive(Debug, thiserror::Error)]
#[error("unknown consistency {0:?}: expected one, local_one, quorum, local_quorum or all")]
pub struct InvalidConsistency(pub String);

impl FromStr for Consistency {
    type Err = InvalidConsistency;

    /// Case-insensitive; `-` may stand for `_`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let normalized = s.trim().to_ascii_lowercase().replace('-', "_");
        [
            Consistency::One,
            Consistency::LocalOne,
            Consistency::Quorum,
            Consistency::LocalQuorum,
            Consistency::All,
        ]
        .into_iter()
        .find(|c| c.name() == normalized)
        .ok_or_else(|| InvalidConsistency(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_parses_and_prints() {
        for c in [
            Consistency::One,
            Consistency::LocalOne,
            Consistency::Quorum,
            Consistency::LocalQuorum,
            Consistency::All,
        ] {
            assert_eq!(c.to_string().parse::<Consistency>().unwrap(), c);
        }
        assert_eq!(
            "LOCAL_QUORUM".parse::<Consistency>().unwrap(),
            Consistency::LocalQuorum
        );
        assert_eq!(
            "local-one".parse::<Consistency>().unwrap(),
            Consistency::LocalOne
        );
        assert!("serial".parse::<Consistency>().is_err());
        assert!("two".parse::<Consistency>().is_err());
        assert_eq!(CqlConfig::default().consistency, Consistency::LocalQuorum);
    }

    #[test]
    fn lwts_stay_in_the_datacenter_when_one_is_named() {
        let mut config = CqlConfig::default();
        assert_eq!(config.serial_consistency(), SerialConsistency::Serial);
        config.datacenter = Some("dc1".to_owned());
        assert_eq!(config.serial_consistency(), SerialConsistency::LocalSerial);
        assert_eq!(
            config.serial_read_consistency(),
            DriverConsistency::LocalSerial
        );
    }
}
