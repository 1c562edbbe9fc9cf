//! The business API: a self-hosted, WhatsApp Cloud API compatible HTTP API for businesses.
//!
//! A business (a WhatsApp Business Account) has phone numbers; each number is an ordinary
//! platform account whose one device is this service, which holds that device's keys and
//! sessions (sealed at rest) and speaks the platform's protocol through the client SDK: the
//! hosted model of the Cloud API. Consumer-to-consumer traffic stays end-to-end encrypted;
//! business traffic is end-to-end encrypted up to this service. `docs/business-api.md` has the
//! trust model, the endpoints and the delivery guarantees.
//!
//! Layout:
//! - [`service`]: [`start`] assembles everything; [`service::Service`] is the shared state.
//! - [`config`]: [`BusinessConfig`], the `[business]` section.
//! - [`api`]: the HTTP API (Graph paths, admin API, media download, OpenAPI document).
//! - [`compose`]: a send request as the `Content` the device encrypts.
//! - [`device`]: each number's device: connection, outbox, inbound messages and receipts.
//! - [`webhooks`]: payloads, signatures, delivery with retries and dead letters.
//! - [`limits`]: throughput, pair rate and the customer-service window.
//! - [`repo`]: typed, sealed records and queues over `courier_store::BusinessStore`.
//! - [`seal`]: encryption at rest; [`ids`]: ids and tokens; [`clock`]: injectable time.
//! - [`error`]: [`BusinessError`] and its one mapping to Graph error objects.
//! - [`metrics`], [`shutdown`]; [`cli`]: the `courier-business` binary as a function.

pub mod api;
pub mod cli;
pub mod clock;
pub mod compose;
pub mod config;
pub mod device;
pub mod error;
pub mod ids;
pub mod limits;
pub mod metrics;
pub mod repo;
pub mod seal;
pub mod service;
pub mod shutdown;
pub mod webhooks;

pub use config::BusinessConfig;
pub use error::{BusinessError, BusinessResult};
pub use service::{Deps, RunningBusiness, Service, start};
