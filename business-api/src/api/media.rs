//! Media of a business: `POST /{phone-number-id}/media` (multipart upload), `GET /{media-id}`
//! (metadata and a short-lived download URL on this host), `DELETE /{media-id}`, and the
//! download itself (`GET /media/{media-id}?expires=…&signature=…` with the business's bearer
//! token, as the Cloud API requires a token for its download URLs too).
//!
//! Bytes are kept in the business store in sealed chunks of [`CHUNK_BYTES`], so that every
//! node of a cluster can serve them, until the blob service (a crate of its own) replaces
//! this. Sending media in messages waits for that service and answers 131051 meanwhile.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use courier_store::business::RecordKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Call;
use super::auth::Caller;
use super::messages::number_for;
use crate::error::{BusinessError, BusinessResult};
use crate::repo::model::Media;
use crate::repo::tables;
use crate::service::Service;

pub const CHUNK_BYTES: usize = 256 * 1024;

#[derive(serde::Serialize, serde::Deserialize)]
struct Chunk(#[serde(with = "crate::repo::model::b64")] Vec<u8>);

fn chunk_key(media: &str, index: u32) -> RecordKey {
    RecordKey::new(tables::MEDIA_CHUNK, media, format!("{index:08}"))
}

pub async fn upload(
    service: &Service,
    caller: &Caller,
    number_id: &str,
    call: &mut Call,
) -> BusinessResult<Value> {
    let runtime = number_for(service, caller, number_id).await?;
    let request = call
        .take_request()
        .ok_or_else(|| BusinessError::Invalid("no body".into()))?;
    let mut multipart = Multipart::from_request(request, &()).await.map_err(|e| {
        BusinessError::Invalid(format!("the upload must be multipart/form-data: {e}"))
    })?;
    let mut product = None;
    let mut declared_type = None;
    let mut file: Option<(String, Vec<u8>)> = None;
    let limit = service.config.max_media_bytes;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| BusinessError::Invalid(format!("broken multipart body: {e}")))?
    {
        match field.name().unwrap_or_default() {
            "messaging_product" => product = field.text().await.ok(),
            "type" => declared_type = field.text().await.ok(),
            "file" => {
                let mime = field
                    .content_type()
                    .unwrap_or("application/octet-stream")
                    .to_owned();
                let mut bytes = Vec::new();
                while let Some(piece) = field
                    .chunk()
                    .await
                    .map_err(|e| BusinessError::Invalid(format!("broken upload: {e}")))?
                {
                    if bytes.len() + piece.len() > limit {
                        return Err(BusinessError::Media(format!(
                            "the file is over the {limit}-byte limit"
                        )));
                    }
                    bytes.extend_from_slice(&piece);
                }
                file = Some((mime, bytes));
            }
            other => {
                return Err(BusinessError::Invalid(format!(
                    "unexpected form field {other:?}"
                )));
            }
        }
    }
    if product.as_deref() != Some("whatsapp") {
        return Err(BusinessError::Invalid(
            "The parameter messaging_product is required.".into(),
        ));
    }
    let (part_type, bytes) =
        file.ok_or_else(|| BusinessError::Invalid("The parameter file is required.".into()))?;
    if bytes.is_empty() {
        return Err(BusinessError::Media("the file is empty".into()));
    }
    let mime_type = declared_type.unwrap_or(part_type);
    let id = store(
        service,
        &runtime.number.business_id,
        number_id,
        &mime_type,
        &bytes,
    )
    .await?;
    Ok(json!({ "id": id }))
}

/// Stores bytes as a new media object; the metadata is written last, so a crash leaves no
/// half object visible (orphan chunks are removed with their expiry sweep).
pub async fn store(
    service: &Service,
    business: &str,
    number: &str,
    mime: &str,
    bytes: &[u8],
) -> BusinessResult<String> {
    let id = crate::ids::object_id()?;
    let chunks = bytes.chunks(CHUNK_BYTES);
    let count = chunks.len() as u32;
    for (index, chunk) in chunks.enumerate() {
        service
            .repo
            .put(&chunk_key(&id, index as u32), &Chunk(chunk.to_vec()))
            .await?;
    }
    let now = service.clock.now_ms();
    let media = Media {
        id: id.clone(),
        business_id: business.to_owned(),
        phone_number_id: number.to_owned(),
        mime_type: mime.to_owned(),
        sha256: hex::encode(Sha256::digest(bytes)),
        file_size: bytes.len() as u64,
        chunks: count,
        created_ms: now,
        expires_ms: now + service.config.media_retention_days * 86_400_000,
    };
    service
        .repo
        .put(&tables::single(tables::MEDIA, &id), &media)
        .await?;
    Ok(id)
}

async fn owned(service: &Service, caller: &Caller, id: &str) -> BusinessResult<Media> {
    let media: Media = service
        .repo
        .get(&tables::single(tables::MEDIA, id))
        .await?
        .ok_or_else(|| BusinessError::UnknownObject(id.to_owned()))?;
    caller.owns(&media.business_id, id)?;
    if service.clock.now_ms() >= media.expires_ms {
        return Err(BusinessError::UnknownObject(id.to_owned()));
    }
    Ok(media)
}

fn url_signature(service: &Service, id: &str, expires: u64) -> String {
    let digest = Sha256::new()
        .chain_update(service.admin_token.as_bytes())
        .chain_update(format!("\0media\0{id}\0{expires}").as_bytes())
        .finalize();
    hex::encode(digest)
}

pub async fn get(service: &Service, caller: &Caller, id: &str) -> BusinessResult<Value> {
    let media = owned(service, caller, id).await?;
    let expires = service.clock.now_ms() / 1000 + service.config.media_url_ttl_secs;
    let signature = url_signature(service, id, expires);
    Ok(json!({
        "messaging_product": "whatsapp",
        "url": format!("{}/media/{id}?expires={expires}&signature={signature}", service.public_base),
        "mime_type": media.mime_type,
        "sha256": media.sha256,
        "file_size": media.file_size,
        "id": id,
    }))
}

pub async fn delete(service: &Service, caller: &Caller, id: &str) -> BusinessResult<Value> {
    let media = owned(service, caller, id).await?;
    service
        .repo
        .delete(&tables::single(tables::MEDIA, id))
        .await?;
    for index in 0..media.chunks {
        service.repo.delete(&chunk_key(id, index)).await?;
    }
    Ok(json!({ "success": true }))
}

/// `GET /media/{id}`: the bytes, for the owning business's token and an unexpired URL.
pub async fn download(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    match serve(&service, &id, &params, &headers).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn serve(
    service: &Service,
    id: &str,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
) -> BusinessResult<Response> {
    let caller = service
        .authenticate(headers, params.get("access_token").map(String::as_str))
        .await?;
    let expires: u64 = params
        .get("expires")
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| BusinessError::Invalid("the download URL is incomplete".into()))?;
    let given = params
        .get("signature")
        .map(String::as_str)
        .unwrap_or_default();
    let expected = url_signature(service, id, expires);
    if !bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
        || service.clock.now_ms() / 1000 >= expires
    {
        return Err(BusinessError::Invalid(
            "the download URL is invalid or expired; get a new one".into(),
        ));
    }
    let media = owned(service, &caller, id).await?;
    let mut bytes = Vec::with_capacity(media.file_size as usize);
    for index in 0..media.chunks {
        let chunk: Chunk = service
            .repo
            .get(&chunk_key(id, index))
            .await?
            .ok_or_else(|| BusinessError::Corrupt(format!("media {id} lost chunk {index}")))?;
        bytes.extend_from_slice(&chunk.0);
    }
    if hex::encode(Sha256::digest(&bytes)) != media.sha256 {
        return Err(BusinessError::Corrupt(format!(
            "media {id} does not match its digest"
        )));
    }
    Ok(([(header::CONTENT_TYPE, media.mime_type)], bytes).into_response())
}
