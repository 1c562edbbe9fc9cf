//! The HTTP API: Graph-style paths `/{version}/{object-id}` and `/{version}/{object-id}/{edge}`
//! (any `v<major>.<minor>` version), dispatched by edge and by the kind of object the id
//! names; the admin API under `/admin/v1`; media downloads; health, metrics and the OpenAPI
//! document of what is implemented.
//!
//! Layout: this file, the router and dispatch; `auth`, who is calling; `send_request` and
//! `messages`, `POST /{number}/messages`; `media`; `profile`; `templates`; `numbers`;
//! `subscriptions` (apps, callbacks, app tokens); `admin`; `openapi`.
//!
//! Every error answer is a Graph error object ([`crate::error::GraphError`]), including broken
//! JSON, oversized bodies, unknown paths and unknown methods.

pub mod admin;
pub mod auth;
pub mod media;
pub mod messages;
pub mod numbers;
pub mod openapi;
pub mod profile;
pub mod send_request;
pub mod subscriptions;
pub mod templates;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::Value;

use crate::error::{BusinessError, BusinessResult};
use crate::repo::tables;
use crate::service::Service;

use self::auth::Caller;

/// A request as the handlers see it: parameters from the query string and, for JSON or form
/// bodies, the body.
pub struct Call {
    pub method: Method,
    pub headers: HeaderMap,
    pub params: HashMap<String, String>,
    /// Behind a mutex only so that a `&Call` may be held across an await (`Request`'s body is
    /// `Send` but not `Sync`); it is taken once, through `&mut self`, never locked.
    pub request: std::sync::Mutex<Option<Request>>,
}

impl Call {
    /// The request itself, once: later calls answer `None`.
    pub fn take_request(&mut self) -> Option<Request> {
        self.request
            .get_mut()
            .map_or_else(|poisoned| poisoned.into_inner().take(), Option::take)
    }

    /// The body, read whole within the service's limit.
    pub async fn body(&mut self, limit: usize) -> BusinessResult<Bytes> {
        let Some(request) = self.take_request() else {
            return Ok(Bytes::new());
        };
        axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| {
                BusinessError::Invalid(format!("the request body is over {limit} bytes or broken"))
            })
    }

    /// The body as JSON (empty body: `{}`), with the query parameters merged under it.
    pub async fn json(&mut self, limit: usize) -> BusinessResult<Value> {
        let body = self.body(limit).await?;
        let mut value: Value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Default::default())
        } else if is_form(&self.headers) {
            let pairs: HashMap<String, String> = serde_urlencoded_pairs(&body)?;
            serde_json::to_value(pairs).unwrap_or_default()
        } else {
            serde_json::from_slice(&body).map_err(|e| {
                BusinessError::Invalid(format!("the request body is not valid JSON: {e}"))
            })?
        };
        if let Value::Object(map) = &mut value {
            for (key, param) in &self.params {
                if key != "access_token" {
                    map.entry(key.clone())
                        .or_insert_with(|| Value::String(param.clone()));
                }
            }
        }
        Ok(value)
    }
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

fn serde_urlencoded_pairs(body: &[u8]) -> BusinessResult<HashMap<String, String>> {
    let text = std::str::from_utf8(body)
        .map_err(|_| BusinessError::Invalid("form body is not UTF-8".into()))?;
    let url = reqwest::Url::parse(&format!("http://form/?{text}"))
        .map_err(|_| BusinessError::Invalid("form body does not parse".into()))?;
    Ok(url.query_pairs().into_owned().collect())
}

pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi::document))
        .route("/media/{media_id}", get(media::download))
        .nest("/admin/v1", admin::router())
        .route("/{version}/{id}", any(object))
        .route("/{version}/{id}/{edge}", any(edge))
        .fallback(unknown_path)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&service),
            count_answers,
        ))
        .with_state(service)
}

async fn count_answers(
    State(service): State<Arc<Service>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    service.metrics.request(response.status().as_u16());
    response
}

async fn metrics(State(service): State<Arc<Service>>) -> String {
    service.metrics.render()
}

async fn unknown_path() -> Response {
    BusinessError::Invalid("Unknown path components".into()).into_response()
}

fn check_version(version: &str) -> BusinessResult<()> {
    let valid = version
        .strip_prefix('v')
        .and_then(|v| v.split_once('.'))
        .is_some_and(|(major, minor)| {
            !major.is_empty()
                && !minor.is_empty()
                && major.bytes().all(|b| b.is_ascii_digit())
                && minor.bytes().all(|b| b.is_ascii_digit())
        });
    if valid {
        Ok(())
    } else {
        Err(BusinessError::Invalid(format!(
            "Unknown path components: /{version}"
        )))
    }
}

/// What an object id names.
#[derive(Debug, PartialEq, Eq)]
pub enum ObjectKind {
    Number,
    Business,
    App,
    Media,
    Template,
}

async fn kind_of(service: &Service, id: &str) -> BusinessResult<ObjectKind> {
    let exists = |table: &'static str| async move {
        service
            .repo
            .store()
            .get_record(&tables::single(table, id))
            .await
            .map(|found| found.is_some())
    };
    for (table, kind) in [
        (tables::NUMBER, ObjectKind::Number),
        (tables::BUSINESS, ObjectKind::Business),
        (tables::MEDIA, ObjectKind::Media),
        (tables::TEMPLATE_BY_ID, ObjectKind::Template),
        (tables::APP, ObjectKind::App),
    ] {
        if exists(table).await? {
            return Ok(kind);
        }
    }
    Err(BusinessError::UnknownObject(id.to_owned()))
}

fn call(
    method: Method,
    headers: HeaderMap,
    params: HashMap<String, String>,
    request: Request,
) -> Call {
    Call {
        method,
        headers,
        params,
        request: std::sync::Mutex::new(Some(request)),
    }
}

async fn caller(service: &Service, call: &Call) -> BusinessResult<Caller> {
    service
        .authenticate(
            &call.headers,
            call.params.get("access_token").map(String::as_str),
        )
        .await
}

async fn object(
    State(service): State<Arc<Service>>,
    Path((version, id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    method: Method,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let mut call = call(method, headers, params, request);
    let answer = async {
        check_version(&version)?;
        let caller = caller(&service, &call).await?;
        let kind = kind_of(&service, &id).await?;
        match (call.method.clone(), kind) {
            (Method::GET, ObjectKind::Media) => media::get(&service, &caller, &id).await,
            (Method::DELETE, ObjectKind::Media) => media::delete(&service, &caller, &id).await,
            (Method::GET, ObjectKind::Number) => numbers::get(&service, &caller, &id).await,
            (Method::GET, ObjectKind::Business) => numbers::business(&service, &caller, &id).await,
            (Method::GET, ObjectKind::Template) => templates::get(&service, &caller, &id).await,
            (Method::POST, ObjectKind::Template) => {
                templates::edit(&service, &caller, &id, &mut call).await
            }
            _ => Err(unsupported_method(&call.method, &id)),
        }
    };
    into_response(answer.await)
}

async fn edge(
    State(service): State<Arc<Service>>,
    Path((version, id, edge)): Path<(String, String, String)>,
    Query(params): Query<HashMap<String, String>>,
    method: Method,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let mut call = call(method, headers, params, request);
    let answer = async {
        check_version(&version)?;
        if id == "oauth" && edge == "access_token" && call.method == Method::GET {
            return subscriptions::app_token(&service, &call).await;
        }
        let caller = caller(&service, &call).await?;
        let method = call.method.clone();
        match (method, edge.as_str()) {
            (Method::POST, "messages") => messages::send(&service, &caller, &id, &mut call).await,
            (Method::POST, "media") => media::upload(&service, &caller, &id, &mut call).await,
            (Method::GET | Method::POST, "whatsapp_business_profile") => {
                profile::handle(&service, &caller, &id, &mut call).await
            }
            (Method::GET | Method::POST | Method::DELETE, "message_templates") => {
                templates::handle(&service, &caller, &id, &mut call).await
            }
            (Method::GET, "phone_numbers") => numbers::list(&service, &caller, &id).await,
            (Method::GET | Method::POST | Method::DELETE, "subscribed_apps") => {
                subscriptions::waba(&service, &caller, &id, &mut call).await
            }
            (Method::GET | Method::POST | Method::DELETE, "subscriptions") => {
                subscriptions::app(&service, &caller, &id, &mut call).await
            }
            _ => Err(unsupported_method(&call.method, &format!("{id}/{edge}"))),
        }
    };
    into_response(answer.await)
}

fn unsupported_method(method: &Method, path: &str) -> BusinessError {
    BusinessError::Invalid(format!("Unsupported {method} request on {path}"))
}

fn into_response(answer: BusinessResult<Value>) -> Response {
    match answer {
        Ok(value) => axum::Json(value).into_response(),
        Err(error) => error.into_response(),
    }
}
