//! `GET /v1/directory/{phone}`: find the account registered with a phone number.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use courier_protocol::http::DirectoryEntry;

use super::Authenticated;
use crate::accounts::parse_phone;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn lookup(
    State(state): State<Arc<AppState>>,
    Authenticated(_caller): Authenticated,
    Path(phone): Path<String>,
) -> Result<Json<DirectoryEntry>, ApiError> {
    let phone = parse_phone(&phone)?;
    let account = state
        .store
        .account_by_phone(&phone)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_user", "no account with this number"))?;
    let devices = state
        .store
        .devices(account.user_id)
        .await?
        .into_iter()
        .map(|d| d.address.device)
        .collect();
    Ok(Json(DirectoryEntry {
        user_id: account.user_id,
        phone: account.phone.to_string(),
        devices,
    }))
}
