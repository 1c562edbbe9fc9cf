//! Per-user and per-group actors on a few arbiters, and the registry that activates and finds them.
//!
//! - [`registry`]: the arbiters (one thread each, one per core by default), placement of an
//!   actor by hashing its user id, activation on first use, and asking an actor with a retry
//!   when it passivated in between.
//! - [`user`]: the user actor, owner of its devices' queues and connected sessions.
//! - [`messages`]: the typed messages user actors accept.
//! - [`group`]: the group actor: membership changes one at a time, one-copy fan-out.
//! - [`group_rules`]: who may change what in a group (pure functions, tested directly).
//! - [`group_messages`]: the typed messages group actors accept.
//!
//! Actors keep nothing that matters only in memory: queues live in the store, so an actor can be
//! stopped when idle and rebuilt anywhere.

pub mod group;
pub mod group_messages;
pub mod group_rules;
pub mod messages;
pub mod registry;
pub mod user;

use std::sync::Arc;
use std::time::Duration;

use courier_store::Store;

use crate::metrics::Metrics;
use crate::presence::PresenceHub;

/// What every actor needs, shared.
pub struct ActorEnv {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub presence: Arc<PresenceHub>,
    /// Most deliveries in flight (pushed, not acknowledged) per device.
    pub push_window: usize,
    /// How long entries stay queued.
    pub retention_ms: u64,
    /// Passivate an actor without sessions after this long without messages.
    pub idle: Duration,
    pub mailbox_capacity: usize,
    /// Most members of a group.
    pub group_size_limit: u32,
}
