//! Errors of the server layer, and the one place where they become HTTP answers or gateway
//! error codes.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use courier_protocol::http::{ErrorBody, ErrorDetail};
use courier_protocol::v1::ErrorCode;
use courier_store::StoreError;

/// An HTTP API failure. `code` strings are listed in `docs/protocol.md`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or a value is invalid.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// 401: missing or wrong credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated or well-formed, but not allowed (e.g. a wrong verification code).
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// 404: the thing asked for does not exist.
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// 405: the path exists, the method does not.
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    /// 410: it existed but is no longer valid (an expired code).
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    /// 413: the body is larger than the server accepts.
    #[error("{0}")]
    TooLarge(String),
    /// 429: too many requests; retry after the given seconds.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    /// 503: a dependency (storage) is unavailable; nothing was written.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or corrupt data.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::NotFound {
            code,
            message: message.into(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Invalid { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden { code, .. } => (StatusCode::FORBIDDEN, code),
            ApiError::NotFound { code, .. } => (StatusCode::NOT_FOUND, code),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Gone { code, .. } => (StatusCode::GONE, code),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(detail) => ApiError::Unavailable(detail),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let retry_after_secs = match &self {
            ApiError::RateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message: self.to_string(),
                retry_after_secs,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"courier\""),
            );
        }
        response
    }
}

/// Why a message or receipt was not accepted by a user actor.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    #[error("unknown recipient")]
    UnknownRecipient,
    #[error("recipient devices changed")]
    DeviceMismatch { missing: Vec<u32>, stale: Vec<u32> },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("not a member of this group")]
    NotAMember,
    #[error("only admins may do this")]
    NotAnAdmin,
    #[error("the group would exceed its size limit of {0}")]
    GroupFull(u32),
    #[error("no such group")]
    UnknownGroup,
    #[error("server busy, retry")]
    Busy,
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl DeliveryError {
    /// The gateway error code of this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            DeliveryError::UnknownRecipient => ErrorCode::UnknownRecipient,
            DeliveryError::DeviceMismatch { .. } => ErrorCode::DeviceMismatch,
            DeliveryError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            DeliveryError::NotAMember => ErrorCode::NotAMember,
            DeliveryError::NotAnAdmin => ErrorCode::NotAnAdmin,
            DeliveryError::GroupFull(_) => ErrorCode::GroupFull,
            DeliveryError::UnknownGroup => ErrorCode::UnknownGroup,
            DeliveryError::Busy => ErrorCode::Busy,
            DeliveryError::Unavailable(_) => ErrorCode::Unavailable,
            DeliveryError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<StoreError> for DeliveryError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(detail) => DeliveryError::Unavailable(detail),
            other => DeliveryError::Internal(other.to_string()),
        }
    }
}

/// Label of a gateway error code for metrics and logs.
pub fn error_code_label(code: ErrorCode) -> &'static str {
    code.as_str_name()
}
