//! [`StateStore`]: where a [`Client`](crate::Client) keeps its state.

use async_trait::async_trait;

use super::{DeviceState, StateChange};
use crate::error::ClientResult;

/// Keeps one device's state. A [`Client`](crate::Client) holds it as `Arc<dyn StateStore>`.
///
/// The client calls [`StateStore::save`] one call at a time and only after the previous call
/// returned, so a store needs no ordering of its own: each change holds the newest value of
/// every key in it, and a later change supersedes an earlier one key by key. Changes made while
/// a save is running are collected and written together by the next one (group commit).
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// The saved state, or `None` if nothing was ever saved here. Stores that keep items
    /// separately assemble them with [`DeviceState::from_items`].
    async fn load(&self) -> ClientResult<Option<DeviceState>>;

    /// Makes `change` durable: returns once a crash can no longer lose it. Every key in the
    /// change gets the value given (`None`: the item is deleted); other keys stay as they are.
    /// The first save of a device holds every item ([`StateChange::all`]).
    ///
    /// On `Err` the client keeps the change and writes it again with the next save; the
    /// operation that needed it (a send, an acknowledgement) fails.
    async fn save(&self, change: &StateChange) -> ClientResult<()>;
}
