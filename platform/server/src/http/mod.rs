//! The HTTP API: registration, keys, directory, admin, health and metrics, on one router
//! together with the gateway upgrade.
//!
//! - [`registration`]: verification codes and device credentials.
//! - [`keys`]: prekey upload, replenishment and bundle fetch.
//! - [`directory`]: phone number to user id.
//! - [`admin`]: operator endpoints behind the admin token.
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics`.
//!
//! JSON bodies go through [`ApiJson`], so broken JSON gets the same error body as every other
//! failure; authenticated routes take an [`Authenticated`] device.

pub mod admin;
pub mod directory;
pub mod keys;
pub mod ops;
pub mod registration;

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use courier_protocol::{DeviceAddress, GATEWAY_PATH};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::gateway;
use crate::state::AppState;

/// The whole router of the server.
pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.config.server.max_http_body_bytes;
    Router::new()
        .route("/v1/registration/code", post(registration::request_code))
        .route("/v1/registration/verify", post(registration::verify))
        .route("/v1/keys", put(keys::upload))
        .route("/v1/keys/signed", put(keys::rotate_signed))
        .route("/v1/keys/one-time", post(keys::add_one_time))
        .route("/v1/keys/count", get(keys::count))
        .route("/v1/keys/{user_id}", get(keys::bundles))
        .route("/v1/directory/{phone}", get(directory::lookup))
        .route("/v1/directory/users/{user_id}", get(directory::lookup_user))
        .route(
            "/admin/v1/verification-codes/{phone}",
            get(admin::pending_code),
        )
        .route(GATEWAY_PATH, get(gateway::upgrade))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response_with_state(
            Arc::clone(&state),
            count_answer,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn count_answer(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    response: Response,
) -> Response {
    state.metrics.http_answer(response.status().as_u16());
    response
}

/// A JSON body whose rejection is an [`ApiError`].
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_error(rejection)),
        }
    }
}

fn json_error(rejection: JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::TooLarge("request body too large".into());
    }
    ApiError::invalid("malformed_json", rejection.body_text())
}

/// The device that authenticated this request with its `Authorization` header.
pub struct Authenticated(pub DeviceAddress);

impl FromRequestParts<Arc<AppState>> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        state.accounts.authenticate(header).await.map(Authenticated)
    }
}
