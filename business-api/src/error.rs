//! Errors of the business API, and the one place where they become Graph API error objects.
//!
//! [`BusinessError`] is what every module of this crate returns. [`GraphError`] is the wire
//! form, `{"error": {"message", "type", "code", "error_subcode", "error_data", "fbtrace_id"}}`
//! with the Cloud API's codes for the same conditions, so that client libraries raise their
//! usual exceptions:
//!
//! | condition | code | HTTP |
//! |---|---|---|
//! | bad parameter, broken JSON, unknown field | 100 | 400 |
//! | unknown object, or another business's | 100 (subcode 33) | 400 |
//! | missing, malformed, expired or revoked token | 190 | 401 |
//! | token without access to the object's business | 200 | 403 |
//! | number's throughput exceeded | 130429 | 429 |
//! | too many messages to one recipient | 131056 | 429 |
//! | free-form message outside the 24-hour window | 131047 | 400 |
//! | message type not supported (yet) | 131051 | 400 |
//! | media too large or unfetchable | 131053 | 400 |
//! | template does not exist / not approved / wrong parameters | 132001 / 132015 / 132000 | 400 |
//! | callback URL fails its verification request | 2200 | 400 |
//! | storage or platform unavailable | 131016 | 503 |
//! | anything else | 131000 | 500 |

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use courier_store::StoreError;
use serde::Serialize;

/// Everything that can go wrong in the business API.
#[derive(Debug, thiserror::Error)]
pub enum BusinessError {
    /// A parameter is missing or has a bad value (Graph code 100).
    #[error("invalid parameter: {0}")]
    Invalid(String),
    /// No such object, or not this caller's (Graph code 100, subcode 33).
    #[error("unknown object {0}")]
    UnknownObject(String),
    /// No usable access token (Graph code 190).
    #[error("authentication: {0}")]
    Unauthenticated(String),
    /// The token is valid but not for this business (Graph code 200).
    #[error("permission: {0}")]
    Forbidden(String),
    /// A rate limit; `code` is 130429 (throughput) or 131056 (pair rate).
    #[error("rate limited ({code}): {message}")]
    RateLimited {
        code: u32,
        message: String,
        retry_after_secs: u64,
    },
    /// Free-form message outside the customer-service window (131047).
    #[error("outside the customer-service window: {0}")]
    OutsideWindow(String),
    /// A message type this deployment cannot send (131051).
    #[error("unsupported message type: {0}")]
    Unsupported(String),
    /// A media problem (131053).
    #[error("media: {0}")]
    Media(String),
    /// A template problem; `code` is one of 132000, 132001, 132005, 132007, 132015.
    #[error("template ({code}): {message}")]
    Template { code: u32, message: String },
    /// A callback URL failed its verification request (2200).
    #[error("callback verification failed: {0}")]
    CallbackVerification(String),
    /// Storage or the platform is unavailable; retry (131016).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Stored data does not decode or open.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// Configuration is unusable (start-up only).
    #[error("configuration: {0}")]
    Config(String),
    #[error("internal: {0}")]
    Internal(String),
}

pub type BusinessResult<T> = Result<T, BusinessError>;

impl From<StoreError> for BusinessError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(m) => BusinessError::Unavailable(m),
            error @ StoreError::Corrupt { .. } => BusinessError::Corrupt(error.to_string()),
            StoreError::Invalid(m) => BusinessError::Invalid(m),
        }
    }
}

impl From<serde_json::Error> for BusinessError {
    fn from(error: serde_json::Error) -> Self {
        BusinessError::Corrupt(format!("stored JSON: {error}"))
    }
}

/// A Graph API error object, as sent on the wire.
#[derive(Debug, Serialize)]
pub struct GraphError {
    #[serde(skip)]
    pub status: StatusCode,
    #[serde(skip)]
    pub retry_after_secs: Option<u64>,
    pub message: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub code: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_subcode: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_data: Option<ErrorData>,
    pub fbtrace_id: String,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ErrorData {
    pub messaging_product: &'static str,
    pub details: String,
}

impl GraphError {
    fn new(
        status: StatusCode,
        code: u32,
        kind: &'static str,
        message: &str,
        details: String,
    ) -> Self {
        GraphError {
            status,
            retry_after_secs: None,
            message: message.to_owned(),
            kind,
            code,
            error_subcode: None,
            error_data: Some(ErrorData {
                messaging_product: "whatsapp",
                details,
            }),
            fbtrace_id: trace_id(),
        }
    }

    /// The Cloud API's title for a code, as used in webhook `errors[]` too.
    pub fn title(code: u32) -> &'static str {
        match code {
            100 => "Invalid parameter",
            190 => "Invalid OAuth access token",
            200 => "Permission error",
            130429 => "Rate limit hit",
            131016 => "Service unavailable",
            131026 => "Message undeliverable",
            131047 => "Re-engagement message",
            131051 => "Unsupported message type",
            131053 => "Media upload error",
            131056 => "(Business Account, Consumer Account) pair rate limit hit",
            132000 => "Number of parameters does not match the expected number of params",
            132001 => "Template name does not exist in the translation",
            132005 => "Translated text too long",
            132007 => "Template format character policy violated",
            132015 => "Template is paused",
            _ => "Something went wrong",
        }
    }
}

impl From<&BusinessError> for GraphError {
    fn from(error: &BusinessError) -> Self {
        use BusinessError::*;
        let bad = StatusCode::BAD_REQUEST;
        match error {
            Invalid(details) => GraphError::new(
                bad,
                100,
                "OAuthException",
                "(#100) Invalid parameter",
                details.clone(),
            ),
            UnknownObject(id) => {
                let mut e = GraphError::new(
                    bad,
                    100,
                    "GraphMethodException",
                    &format!(
                        "Unsupported request. Object with ID '{id}' does not exist, cannot be \
                         loaded due to missing permissions, or does not support this operation."
                    ),
                    format!("unknown object {id}"),
                );
                e.error_subcode = Some(33);
                e
            }
            Unauthenticated(details) => {
                let mut e = GraphError::new(
                    StatusCode::UNAUTHORIZED,
                    190,
                    "OAuthException",
                    "Invalid OAuth access token - Cannot parse access token",
                    details.clone(),
                );
                e.error_subcode = Some(463).filter(|_| details.contains("expired"));
                e
            }
            Forbidden(details) => GraphError::new(
                StatusCode::FORBIDDEN,
                200,
                "OAuthException",
                "(#200) Permissions error",
                details.clone(),
            ),
            RateLimited {
                code,
                message,
                retry_after_secs,
            } => {
                let mut e = GraphError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    *code,
                    "OAuthException",
                    &format!("({code}) {}", GraphError::title(*code)),
                    message.clone(),
                );
                e.retry_after_secs = Some(*retry_after_secs);
                e
            }
            OutsideWindow(details) => coded(bad, 131047, details),
            Unsupported(details) => coded(bad, 131051, details),
            Media(details) => coded(bad, 131053, details),
            Template { code, message } => coded(bad, *code, message),
            CallbackVerification(details) => GraphError::new(
                bad,
                2200,
                "OAuthException",
                &format!(
                    "(#2200) Callback verification failed with the following errors: {details}"
                ),
                details.clone(),
            ),
            Unavailable(details) => coded(StatusCode::SERVICE_UNAVAILABLE, 131016, details),
            Corrupt(_) | Config(_) | Internal(_) => {
                tracing::error!(%error, "business API internal error");
                coded(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    131000,
                    "internal error; nothing was accepted",
                )
            }
        }
    }
}

fn coded(status: StatusCode, code: u32, details: &str) -> GraphError {
    GraphError::new(
        status,
        code,
        "OAuthException",
        &format!("({code}) {}", GraphError::title(code)),
        details.to_owned(),
    )
}

fn trace_id() -> String {
    let bytes: [u8; 9] = crate::ids::random_bytes().unwrap_or([0; 9]);
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: &'a GraphError,
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(Envelope { error: &self })).into_response();
        if let Some(secs) = self.retry_after_secs
            && let Ok(value) = HeaderValue::from_str(&secs.max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if self.code == 190 {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("OAuth \"Facebook Platform\" \"invalid_token\""),
            );
        }
        response
    }
}

impl IntoResponse for BusinessError {
    fn into_response(self) -> Response {
        GraphError::from(&self).into_response()
    }
}
