//! The storage layer's error type.

/// What can go wrong in a store. Callers map these to protocol errors in one place.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or refused the operation; nothing was written.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be decoded: a bug or corruption.
    #[error("corrupt record in {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// The caller asked for something impossible (for example a device of an unknown user).
    #[error("invalid request: {0}")]
    Invalid(String),
}

pub type StoreResult<T> = Result<T, StoreError>;
