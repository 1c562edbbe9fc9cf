//! [`Durability`]: when the embedded store acknowledges a write, as read from configuration.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// When a write is acknowledged, from configuration: `"process"` or `"sync"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// Acknowledged once handed to the OS: survives a crash of the process, not of the machine.
    #[default]
    Process,
    /// Acknowledged once fsynced, by group commit: survives power loss.
    Sync,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Process => "process",
            Durability::Sync => "sync",
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`Durability`].
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid durability {0:?}: expected \"process\" or \"sync\"")]
pub struct InvalidDurability(pub String);

impl FromStr for Durability {
    type Err = InvalidDurability;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "process" => Ok(Durability::Process),
            "sync" => Ok(Durability::Sync),
            _ => Err(InvalidDurability(s.to_owned())),
        }
    }
}

impl Serialize for Durability {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Durability {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
