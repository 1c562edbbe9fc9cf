//! The Courier messaging server.
//!
//! Layout:
//! - [`server`]: [`server::start`] assembles everything and returns a [`server::RunningServer`]
//!   (tests start it on port 0); its `shutdown` drains gracefully.
//! - [`config`]: configuration, parsed once (defaults < TOML file < `COURIER_*` environment).
//! - [`http`]: the HTTP API (registration, keys, directory, admin, health, metrics).
//! - [`gateway`]: the WebSocket gateway (authenticated upgrade, connection loop, limits).
//! - [`actors`]: per-user and per-group actors on arbiters, their registry and messages.
//! - [`cluster`]: cluster mode: actors sharded over nodes by the bus, connections anywhere.
//! - [`accounts`]: registration by phone number and device authentication.
//! - [`presence`]: who is online, and who watches whom.
//! - [`metrics`]: Prometheus metrics through typed helpers.
//! - [`error`]: the errors of this layer and the one mapping to HTTP statuses and gateway codes.
//! - [`shutdown`], [`state`], [`clock`]: drain signal, shared state, time.
//! - [`main_entry`]: the `courier-server` binary as a function.
//!
//! A message's path: gateway connection → recipient's user actor → durable device queues
//! (store) → "sent" to the sender → pushed to online devices → device ack → range removed and a
//! delivered receipt queued for the sender. `docs/ARCHITECTURE.md` tells the whole story.

pub mod accounts;
pub mod actors;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod error;
pub mod gateway;
pub mod http;
pub mod main_entry;
pub mod metrics;
pub mod presence;
pub mod server;
pub mod shutdown;
pub mod state;

pub use config::Config;
pub use server::{Extensions, RunningServer, ServerError, start};
