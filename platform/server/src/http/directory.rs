//! The directory: `GET /v1/directory/{phone}` finds the account registered with a phone
//! number; `GET /v1/directory/users/{user_id}` gives the number and devices of a user id (a
//! device that received a message from a user it never looked up learns who wrote). A user id
//! is random and reaches a device only with a message or a group, so this reveals no more than
//! a message does.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use courier_protocol::UserId;
use courier_protocol::http::DirectoryEntry;
use courier_store::Account;

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
    entry(&state, account).await
}

pub async fn lookup_user(
    State(state): State<Arc<AppState>>,
    Authenticated(_caller): Authenticated,
    Path(user): Path<String>,
) -> Result<Json<DirectoryEntry>, ApiError> {
    let user: UserId = user
        .parse()
        .map_err(|_| ApiError::invalid("bad_user_id", "not a user id"))?;
    let account = state
        .store
        .account(user)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_user", "no account with this user id"))?;
    entry(&state, account).await
}

async fn entry(state: &AppState, account: Account) -> Result<Json<DirectoryEntry>, ApiError> {
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
