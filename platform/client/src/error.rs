//! The client's error type.

use courier_protocol::v1::ErrorCode;

/// What can go wrong in the client SDK.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The HTTP API answered with an error body.
    #[error("server refused ({status} {code}): {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The server could not be reached or the connection broke.
    #[error("transport: {0}")]
    Transport(String),
    /// The gateway refused a frame (a SendResult or Error with a non-OK code).
    #[error("gateway refused ({code:?}): {message}")]
    Rejected { code: ErrorCode, message: String },
    /// End-to-end encryption failed.
    #[error("encryption: {0}")]
    Crypto(#[from] courier_crypto::CryptoError),
    /// The server sent something that does not follow the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Local state could not be read or written.
    #[error("local state: {0}")]
    Storage(String),
    /// The caller asked for something impossible (e.g. sending before registering).
    #[error("{0}")]
    Usage(String),
}

impl From<reqwest::Error> for ClientError {
    fn from(error: reqwest::Error) -> Self {
        ClientError::Transport(error.to_string())
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(error: tokio_tungstenite::tungstenite::Error) -> Self {
        ClientError::Transport(error.to_string())
    }
}

pub type ClientResult<T> = Result<T, ClientError>;
