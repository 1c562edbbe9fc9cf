//! `POST /v1/registration/code` and `POST /v1/registration/verify`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use courier_protocol::http::{RequestCode, RequestCodeResponse, VerifyCode, VerifyCodeResponse};

use super::ApiJson;
use super::keys::validate_upload;
use crate::actors::messages::DevicesChanged;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn request_code(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<RequestCode>,
) -> Result<(StatusCode, Json<RequestCodeResponse>), ApiError> {
    let response = state.accounts.request_code(&request.phone).await?;
    Ok((StatusCode::ACCEPTED, Json(response)))
}

pub async fn verify(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<VerifyCode>,
) -> Result<Json<VerifyCodeResponse>, ApiError> {
    // Keys are checked before the code, so that bad keys do not burn a good code.
    let (device_keys, one_time) = validate_upload(&request.keys)?;
    let (registration, response) = state.accounts.verify(&request).await?;
    let address = registration.device.address;
    state.store.set_device_keys(address, device_keys).await?;
    if !one_time.is_empty() {
        state.store.add_one_time_prekeys(address, one_time).await?;
    }
    if !registration.removed_devices.is_empty() {
        state.registry.hint(address.user, DevicesChanged).await;
    }
    tracing::info!(device = %address, "device registered");
    Ok(Json(response))
}
