//! Operator endpoints, authenticated with `Authorization: Bearer <admin token>`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use courier_protocol::http::PendingCode;
use subtle::ConstantTimeEq;

use crate::accounts::parse_phone;
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::state::AppState;

fn check_admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::Unauthorized("admin token required".into()))?;
    if bool::from(presented.as_bytes().ct_eq(state.admin_token.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("wrong admin token".into()))
    }
}

/// `GET /admin/v1/verification-codes/{phone}`: the pending code of a number.
pub async fn pending_code(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(phone): Path<String>,
) -> Result<Json<PendingCode>, ApiError> {
    check_admin(&state, &headers)?;
    let phone = parse_phone(&phone)?;
    let now = now_ms();
    let code = state
        .store
        .pending_code(&phone, now)
        .await?
        .ok_or_else(|| ApiError::not_found("no_pending_code", "no pending code for this number"))?;
    Ok(Json(PendingCode {
        phone: phone.to_string(),
        code: code.code,
        expires_in_secs: code.expires_at.saturating_sub(now) / 1000,
    }))
}
