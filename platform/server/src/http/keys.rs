//! Prekeys: upload, signed-prekey rotation, one-time prekey replenishment and bundle fetch.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use courier_protocol::http::{
    AddOneTimePreKeys, IdentityKeys, OneTimePreKey, PreKeyBundle, PreKeyBundles, PreKeyCount,
    SignedPreKey, UploadKeys,
};
use courier_protocol::{DeviceAddress, UserId};
use courier_store::DeviceKeys;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::Deserialize;

use super::{ApiJson, Authenticated};
use crate::error::ApiError;
use crate::state::AppState;

/// Most one-time prekeys in one upload.
pub const MAX_ONE_TIME_PER_UPLOAD: usize = 200;
/// Most one-time prekeys a device may keep on the server.
pub const MAX_ONE_TIME_STORED: u64 = 2000;

fn invalid_keys(message: impl Into<String>) -> ApiError {
    ApiError::invalid("invalid_keys", message)
}

fn check_len(what: &str, bytes: &[u8], len: usize) -> Result<(), ApiError> {
    if bytes.len() == len {
        Ok(())
    } else {
        Err(invalid_keys(format!(
            "{what} must be {len} bytes, not {}",
            bytes.len()
        )))
    }
}

fn validate_signed(identity: &IdentityKeys, signed: &SignedPreKey) -> Result<(), ApiError> {
    check_len("signed_prekey.public_key", &signed.public_key, 32)?;
    check_len("signed_prekey.signature", &signed.signature, 64)?;
    let mut ed25519 = [0u8; 32];
    ed25519.copy_from_slice(&identity.ed25519);
    let key = VerifyingKey::from_bytes(&ed25519)
        .map_err(|_| invalid_keys("identity.ed25519 is not a valid Ed25519 public key"))?;
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&signed.signature);
    key.verify_strict(&signed.public_key, &Signature::from_bytes(&signature))
        .map_err(|_| invalid_keys("signed_prekey.signature does not verify with identity.ed25519"))
}

fn validate_one_time(keys: &[OneTimePreKey]) -> Result<(), ApiError> {
    if keys.len() > MAX_ONE_TIME_PER_UPLOAD {
        return Err(invalid_keys(format!(
            "at most {MAX_ONE_TIME_PER_UPLOAD} one-time prekeys per upload"
        )));
    }
    for key in keys {
        check_len("one_time_prekeys[].public_key", &key.public_key, 32)?;
    }
    Ok(())
}

/// Checks an upload: key lengths, and the signed prekey's signature by the identity.
pub fn validate_upload(upload: &UploadKeys) -> Result<(DeviceKeys, Vec<OneTimePreKey>), ApiError> {
    check_len("identity.ed25519", &upload.identity.ed25519, 32)?;
    check_len("identity.x25519", &upload.identity.x25519, 32)?;
    validate_signed(&upload.identity, &upload.signed_prekey)?;
    validate_one_time(&upload.one_time_prekeys)?;
    Ok((
        DeviceKeys {
            identity: upload.identity.clone(),
            signed_prekey: upload.signed_prekey.clone(),
        },
        upload.one_time_prekeys.clone(),
    ))
}

async fn check_room(
    state: &AppState,
    device: DeviceAddress,
    adding: usize,
) -> Result<(), ApiError> {
    let stored = state.store.count_one_time_prekeys(device).await?;
    if stored + adding as u64 > MAX_ONE_TIME_STORED {
        return Err(ApiError::invalid(
            "too_many_prekeys",
            format!(
                "a device keeps at most {MAX_ONE_TIME_STORED} one-time prekeys; {stored} stored"
            ),
        ));
    }
    Ok(())
}

/// `PUT /v1/keys`: replace identity and signed prekey, add one-time prekeys.
pub async fn upload(
    State(state): State<Arc<AppState>>,
    Authenticated(device): Authenticated,
    ApiJson(upload): ApiJson<UploadKeys>,
) -> Result<StatusCode, ApiError> {
    let (keys, one_time) = validate_upload(&upload)?;
    check_room(&state, device, one_time.len()).await?;
    state.store.set_device_keys(device, keys).await?;
    if !one_time.is_empty() {
        state.store.add_one_time_prekeys(device, one_time).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/keys/signed`: rotate the signed prekey.
pub async fn rotate_signed(
    State(state): State<Arc<AppState>>,
    Authenticated(device): Authenticated,
    ApiJson(signed): ApiJson<SignedPreKey>,
) -> Result<StatusCode, ApiError> {
    let current = state
        .store
        .device_keys(device)
        .await?
        .ok_or_else(|| ApiError::not_found("no_keys", "upload keys first"))?;
    validate_signed(&current.identity, &signed)?;
    state.store.set_signed_prekey(device, signed).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/keys/one-time`: add one-time prekeys.
pub async fn add_one_time(
    State(state): State<Arc<AppState>>,
    Authenticated(device): Authenticated,
    ApiJson(request): ApiJson<AddOneTimePreKeys>,
) -> Result<StatusCode, ApiError> {
    validate_one_time(&request.one_time_prekeys)?;
    check_room(&state, device, request.one_time_prekeys.len()).await?;
    state
        .store
        .add_one_time_prekeys(device, request.one_time_prekeys)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/keys/count`.
pub async fn count(
    State(state): State<Arc<AppState>>,
    Authenticated(device): Authenticated,
) -> Result<Json<PreKeyCount>, ApiError> {
    let one_time_prekeys = state.store.count_one_time_prekeys(device).await?;
    Ok(Json(PreKeyCount { one_time_prekeys }))
}

#[derive(Deserialize)]
pub struct BundleQuery {
    /// Only this device (for example one named in a DEVICE_MISMATCH).
    device: Option<u32>,
}

/// `GET /v1/keys/{user_id}[?device=N]`: a bundle per device, each consuming at most one
/// one-time prekey.
pub async fn bundles(
    State(state): State<Arc<AppState>>,
    Authenticated(_caller): Authenticated,
    Path(user_id): Path<String>,
    Query(query): Query<BundleQuery>,
) -> Result<Json<PreKeyBundles>, ApiError> {
    let user: UserId = user_id
        .parse()
        .map_err(|e: courier_protocol::ids::InvalidUserId| {
            ApiError::invalid("invalid_user_id", e.to_string())
        })?;
    let devices = state.store.devices(user).await?;
    if devices.is_empty() {
        return Err(ApiError::not_found("unknown_user", "no such user"));
    }
    let mut bundles = Vec::new();
    for device in devices {
        let address = device.address;
        if query.device.is_some_and(|wanted| wanted != address.device) {
            continue;
        }
        if let Some(bundle) = state.store.take_key_bundle(address).await? {
            bundles.push(PreKeyBundle {
                device_id: address.device,
                identity: bundle.keys.identity,
                signed_prekey: bundle.keys.signed_prekey,
                one_time_prekey: bundle.one_time_prekey,
            });
        }
    }
    if bundles.is_empty() {
        return Err(ApiError::not_found("no_keys", "no device with keys"));
    }
    Ok(Json(PreKeyBundles {
        user_id: user,
        devices: bundles,
    }))
}
