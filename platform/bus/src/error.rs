//! The error type of the bus.

/// Why a bus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A dependency (the broker) is down or did not answer in time; retrying later may succeed.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// The configuration or the call is invalid (bad partition, bad node id, started twice).
    #[error("bus configuration: {0}")]
    Config(String),
    /// This member has shut down (or crashed).
    #[error("bus closed")]
    Closed,
}
