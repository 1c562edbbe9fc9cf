//! The operator's API under `/admin/v1` (bearer: the business admin token), which the
//! `courier-business admin` commands call:
//!
//! | method and path | what |
//! |---|---|
//! | `POST /businesses` `{name, auto_approve_templates?}` | a business with its app (id and secret) |
//! | `GET /businesses` | every business |
//! | `POST /businesses/{id}/phone_numbers` `{phone, verified_name, code?}` | register a number |
//! | `POST /businesses/{id}/tokens` `{name, expires_in_secs?}` | a system-user token (shown once) |
//! | `GET /businesses/{id}/tokens` | its tokens (never the secrets) |
//! | `DELETE /businesses/{id}/tokens/{token-id}` | revoke |
//! | `POST /templates/{id}/status` `{status}` | approve, reject, pause |
//! | `GET /dead-letters` | webhooks given up on, every number and app |
//! | `GET /dead-letters/{number}/{app}/{seq}` | one, whole |
//! | `POST /dead-letters/{number}/{app}/{seq}/replay` | back into the delivery queue |

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use courier_store::business::RecordKey;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::device::register::register_number;
use crate::device::state_store::SealedStateStore;
use crate::error::{BusinessError, BusinessResult};
use crate::ids;
use crate::repo::model::{
    App, Business, PhoneNumber, Template, TemplateStatus, Token, WebhookItem,
};
use crate::repo::tables;
use crate::service::Service;

pub fn router() -> Router<Arc<Service>> {
    Router::new()
        .route("/businesses", post(create_business).get(list_businesses))
        .route("/businesses/{id}/phone_numbers", post(add_number))
        .route(
            "/businesses/{id}/tokens",
            post(create_token).get(list_tokens),
        )
        .route("/businesses/{id}/tokens/{token}", delete(revoke_token))
        .route("/templates/{id}/status", post(template_status))
        .route("/dead-letters", get(list_dead))
        .route("/dead-letters/{number}/{app}/{seq}", get(show_dead))
        .route(
            "/dead-letters/{number}/{app}/{seq}/replay",
            post(replay_dead),
        )
}

fn authorize(service: &Service, headers: &HeaderMap) -> BusinessResult<()> {
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if given.is_empty() || !bool::from(given.as_bytes().ct_eq(service.admin_token.as_bytes())) {
        return Err(BusinessError::Unauthenticated(
            "the admin API needs the business admin token".into(),
        ));
    }
    Ok(())
}

async fn body<T: for<'de> Deserialize<'de>>(
    service: &Service,
    request: Request,
) -> BusinessResult<T> {
    let bytes = axum::body::to_bytes(request.into_body(), service.config.max_body_bytes)
        .await
        .map_err(|_| BusinessError::Invalid("the request body is too large".into()))?;
    let bytes = if bytes.is_empty() {
        &b"{}"[..]
    } else {
        &bytes[..]
    };
    serde_json::from_slice(bytes)
        .map_err(|e| BusinessError::Invalid(format!("the request body is not valid: {e}")))
}

fn respond(answer: BusinessResult<Value>) -> Response {
    match answer {
        Ok(value) => Json(value).into_response(),
        Err(error) => error.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBusiness {
    name: String,
    #[serde(default = "yes")]
    auto_approve_templates: bool,
}

fn yes() -> bool {
    true
}

async fn create_business(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    respond(async {
        authorize(&service, &headers)?;
        let new: NewBusiness = body(&service, request).await?;
        if new.name.trim().is_empty() {
            return Err(BusinessError::Invalid("name must not be empty".into()));
        }
        let now = service.clock.now_ms();
        let id = ids::object_id()?;
        let app = App {
            id: ids::object_id()?,
            business_id: id.clone(),
            secret: ids::secret()?,
            callback_url: None,
            verify_token: None,
            fields: Vec::new(),
        };
        service.repo.put(&tables::single(tables::APP, &app.id), &app).await?;
        let business = Business {
            id: id.clone(),
            name: new.name,
            created_ms: now,
            app_id: app.id.clone(),
            subscribed_apps: Vec::new(),
            auto_approve_templates: new.auto_approve_templates,
        };
        service.repo.put(&tables::single(tables::BUSINESS, &id), &business).await?;
        service.repo.put(&RecordKey::new(tables::ALL, "businesses", &id), &()).await?;
        Ok(json!({ "id": id, "name": business.name, "app_id": app.id, "app_secret": app.secret }))
    }.await)
}

async fn list_businesses(State(service): State<Arc<Service>>, headers: HeaderMap) -> Response {
    respond(async {
        authorize(&service, &headers)?;
        let mut data = Vec::new();
        for (id, ()) in service.repo.list::<()>(tables::ALL, "businesses").await? {
            if let Some(b) = service.repo.get::<Business>(&tables::single(tables::BUSINESS, &id)).await? {
                let numbers: Vec<String> = service
                    .repo
                    .list::<()>(tables::NUMBERS_OF, &id)
                    .await?
                    .into_iter()
                    .map(|(n, ())| n)
                    .collect();
                data.push(json!({ "id": b.id, "name": b.name, "app_id": b.app_id, "phone_numbers": numbers }));
            }
        }
        Ok(json!({ "data": data }))
    }.await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewNumber {
    phone: String,
    verified_name: String,
    #[serde(default)]
    code: Option<String>,
}

async fn add_number(
    State(service): State<Arc<Service>>,
    Path(business_id): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    respond(
        async {
            authorize(&service, &headers)?;
            let new: NewNumber = body(&service, request).await?;
            service
                .repo
                .require::<Business>(tables::BUSINESS, &business_id)
                .await?;
            let phone = courier_protocol::PhoneNumber::parse(&new.phone)
                .map_err(|e| BusinessError::Invalid(format!("phone: {e}")))?
                .to_string();
            let id = ids::object_id()?;
            if !service
                .repo
                .insert(&tables::single(tables::NUMBER_BY_PHONE, &phone), &id)
                .await?
            {
                return Err(BusinessError::Invalid(format!(
                    "{phone} is already a business number here"
                )));
            }
            let registered = async {
                let state = std::sync::Arc::new(SealedStateStore::new(service.repo.clone(), &id));
                register_number(&service.platform, &phone, new.code.as_deref(), state).await
            }
            .await;
            let client = match registered {
                Ok(client) => client,
                Err(error) => {
                    // The claim goes with the failed registration, so the number can be tried again.
                    service
                        .repo
                        .delete(&tables::single(tables::NUMBER_BY_PHONE, &phone))
                        .await?;
                    return Err(error);
                }
            };
            let number = PhoneNumber {
                id: id.clone(),
                business_id: business_id.clone(),
                phone: phone.clone(),
                verified_name: new.verified_name,
                user_id: client.user_id().to_string(),
                created_ms: service.clock.now_ms(),
                profile: Default::default(),
            };
            service
                .repo
                .put(&tables::single(tables::NUMBER, &id), &number)
                .await?;
            service
                .repo
                .put(&RecordKey::new(tables::NUMBERS_OF, &business_id, &id), &())
                .await?;
            service
                .repo
                .put(&RecordKey::new(tables::ALL, "numbers", &id), &())
                .await?;
            service.run(number.clone(), client).await?;
            Ok(json!({ "id": id, "phone": phone, "user_id": number.user_id }))
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    #[serde(default)]
    expires_in_secs: Option<u64>,
}

async fn create_token(
    State(service): State<Arc<Service>>,
    Path(business_id): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    respond(
        async {
            authorize(&service, &headers)?;
            let new: NewToken = body(&service, request).await?;
            service
                .repo
                .require::<Business>(tables::BUSINESS, &business_id)
                .await?;
            let (token, hash) = ids::access_token()?;
            let now = service.clock.now_ms();
            let record = Token {
                id: ids::object_id()?,
                business_id: business_id.clone(),
                name: new.name,
                created_ms: now,
                expires_ms: new.expires_in_secs.map(|s| now + s * 1000),
                revoked_ms: None,
            };
            service
                .repo
                .put(&tables::single(tables::TOKEN, &hash), &record)
                .await?;
            service
                .repo
                .put(
                    &RecordKey::new(tables::TOKENS_OF, &business_id, &record.id),
                    &hash,
                )
                .await?;
            Ok(json!({ "id": record.id, "access_token": token, "business_id": business_id }))
        }
        .await,
    )
}

fn describe_token(token: &Token) -> Value {
    json!({
        "id": token.id, "name": token.name, "created_ms": token.created_ms,
        "expires_ms": token.expires_ms, "revoked_ms": token.revoked_ms,
    })
}

async fn list_tokens(
    State(service): State<Arc<Service>>,
    Path(business_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            authorize(&service, &headers)?;
            let mut data = Vec::new();
            for (_, hash) in service
                .repo
                .list::<String>(tables::TOKENS_OF, &business_id)
                .await?
            {
                if let Some(token) = service
                    .repo
                    .get::<Token>(&tables::single(tables::TOKEN, &hash))
                    .await?
                {
                    data.push(describe_token(&token));
                }
            }
            Ok(json!({ "data": data }))
        }
        .await,
    )
}

async fn revoke_token(
    State(service): State<Arc<Service>>,
    Path((business_id, token_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            authorize(&service, &headers)?;
            let hash: String = service
                .repo
                .get(&RecordKey::new(tables::TOKENS_OF, &business_id, &token_id))
                .await?
                .ok_or_else(|| BusinessError::UnknownObject(token_id.clone()))?;
            let key = tables::single(tables::TOKEN, &hash);
            let mut token: Token = service
                .repo
                .get(&key)
                .await?
                .ok_or_else(|| BusinessError::UnknownObject(token_id.clone()))?;
            token.revoked_ms.get_or_insert(service.clock.now_ms());
            service.repo.put(&key, &token).await?;
            Ok(describe_token(&token))
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewStatus {
    status: TemplateStatus,
}

async fn template_status(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    respond(
        async {
            authorize(&service, &headers)?;
            let new: NewStatus = body(&service, request).await?;
            let (business_id, key): (String, String) = service
                .repo
                .get(&tables::single(tables::TEMPLATE_BY_ID, &id))
                .await?
                .ok_or_else(|| BusinessError::UnknownObject(id.clone()))?;
            let key = RecordKey::new(tables::TEMPLATE, &business_id, key);
            let mut template: Template = service
                .repo
                .get(&key)
                .await?
                .ok_or_else(|| BusinessError::UnknownObject(id.clone()))?;
            template.status = new.status;
            service.repo.put(&key, &template).await?;
            Ok(json!({ "id": id, "status": template.status }))
        }
        .await,
    )
}

/// Every (number, app) pair that may have dead letters.
async fn queues(service: &Service) -> BusinessResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (number_id, ()) in service.repo.list::<()>(tables::ALL, "numbers").await? {
        let Some(number) = service
            .repo
            .get::<PhoneNumber>(&tables::single(tables::NUMBER, &number_id))
            .await?
        else {
            continue;
        };
        let Some(business) = service
            .repo
            .get::<Business>(&tables::single(tables::BUSINESS, &number.business_id))
            .await?
        else {
            continue;
        };
        let mut apps: Vec<String> = business
            .subscribed_apps
            .into_iter()
            .map(|s| s.app_id)
            .collect();
        if !apps.contains(&business.app_id) {
            apps.push(business.app_id);
        }
        out.extend(apps.into_iter().map(|app| (number_id.clone(), app)));
    }
    Ok(out)
}

fn summary(number: &str, app: &str, seq: u64, item: &WebhookItem) -> Value {
    json!({
        "number": number, "app": app, "seq": seq, "conversation": item.conversation,
        "created_ms": item.created_ms, "attempts": item.attempts, "last_error": item.last_error,
    })
}

async fn list_dead(State(service): State<Arc<Service>>, headers: HeaderMap) -> Response {
    respond(
        async {
            authorize(&service, &headers)?;
            let mut data = Vec::new();
            for (number, app) in queues(&service).await? {
                let items: Vec<(u64, WebhookItem)> = service
                    .repo
                    .read_queue(&tables::dead_letters(&number, &app), 0, 10_000)
                    .await?;
                data.extend(
                    items
                        .iter()
                        .map(|(seq, item)| summary(&number, &app, *seq, item)),
                );
            }
            Ok(json!({ "data": data }))
        }
        .await,
    )
}

async fn find_dead(
    service: &Service,
    number: &str,
    app: &str,
    seq: u64,
) -> BusinessResult<WebhookItem> {
    let items: Vec<(u64, WebhookItem)> = service
        .repo
        .read_queue(&tables::dead_letters(number, app), seq.saturating_sub(1), 1)
        .await?;
    items
        .into_iter()
        .find(|(s, _)| *s == seq)
        .map(|(_, item)| item)
        .ok_or_else(|| BusinessError::UnknownObject(format!("dead letter {number}/{app}/{seq}")))
}

async fn show_dead(
    State(service): State<Arc<Service>>,
    Path((number, app, seq)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            authorize(&service, &headers)?;
            let item = find_dead(&service, &number, &app, seq).await?;
            let mut out = summary(&number, &app, seq, &item);
            out["payload"] = crate::webhooks::payload::envelope(&item.business_id, &item.value);
            Ok(out)
        }
        .await,
    )
}

async fn replay_dead(
    State(service): State<Arc<Service>>,
    Path((number, app, seq)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            authorize(&service, &headers)?;
            let mut item = find_dead(&service, &number, &app, seq).await?;
            let now = service.clock.now_ms();
            // A replay starts a fresh retry period.
            item.created_ms = now;
            item.attempts = 0;
            item.last_error = None;
            service
                .repo
                .append(&tables::webhooks(&number, &app), &[(item, None)], now)
                .await?;
            service
                .repo
                .remove(&tables::dead_letters(&number, &app), &[seq])
                .await?;
            if let Some(runtime) = service.runtime(&number) {
                runtime.hooks.waker(&app).notify_one();
            }
            Ok(json!({ "success": true }))
        }
        .await,
    )
}
