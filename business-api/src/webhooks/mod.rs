//! Webhooks: the Cloud API payloads and signature (`payload`), requests to business-given
//! URLs with the address checks and the verification handshake (`outbound`), and the
//! delivery of each queue with ordering, concurrency limits, retries and dead letters
//! (`dispatcher`).

pub mod dispatcher;
pub mod outbound;
pub mod payload;
