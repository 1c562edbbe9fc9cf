//! Identifiers of users and devices.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A user (an account), independent of the phone number it is registered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub Uuid);

impl UserId {
    /// A fresh random user id.
    pub fn random() -> Self {
        UserId(Uuid::new_v4())
    }

    /// The 16 raw bytes, for storage keys.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// From 16 raw bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        UserId(Uuid::from_bytes(bytes))
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The error of parsing a [`UserId`].
#[derive(Debug, thiserror::Error)]
#[error("invalid user id {0:?}: expected a UUID")]
pub struct InvalidUserId(pub String);

impl FromStr for UserId {
    type Err = InvalidUserId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(UserId)
            .map_err(|_| InvalidUserId(s.to_owned()))
    }
}

/// A group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GroupId(pub Uuid);

impl GroupId {
    pub fn random() -> Self {
        GroupId(Uuid::new_v4())
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        GroupId(Uuid::from_bytes(bytes))
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The error of parsing a [`GroupId`].
#[derive(Debug, thiserror::Error)]
#[error("invalid group id {0:?}: expected a UUID")]
pub struct InvalidGroupId(pub String);

impl FromStr for GroupId {
    type Err = InvalidGroupId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(GroupId)
            .map_err(|_| InvalidGroupId(s.to_owned()))
    }
}

/// A device of a user, numbered from 1 within the account.
pub type DeviceId = u32;

/// One device of one user: where queues live and what sessions are bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceAddress {
    pub user: UserId,
    pub device: DeviceId,
}

impl DeviceAddress {
    pub fn new(user: UserId, device: DeviceId) -> Self {
        DeviceAddress { user, device }
    }

    /// 20 bytes: user id then device id big-endian, so a user's devices sort together.
    pub fn to_key(&self) -> [u8; 20] {
        let mut key = [0u8; 20];
        key[..16].copy_from_slice(self.user.as_bytes());
        key[16..].copy_from_slice(&self.device.to_be_bytes());
        key
    }
}

impl fmt::Display for DeviceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.user, self.device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_round_trips_through_text() {
        let id = UserId::random();
        assert_eq!(id.to_string().parse::<UserId>().unwrap(), id);
        assert!("not-a-uuid".parse::<UserId>().is_err());
    }

    #[test]
    fn device_keys_sort_by_user_then_device() {
        let user = UserId::random();
        let a = DeviceAddress::new(user, 2).to_key();
        let b = DeviceAddress::new(user, 10).to_key();
        assert!(a < b);
        assert_eq!(&a[..16], user.as_bytes());
    }
}
