//! Webhook subscriptions, both ways the Cloud API offers them:
//! - the app's callback: `POST|GET|DELETE /{app-id}/subscriptions` (`object`, `callback_url`,
//!   `verify_token`, `fields`), with an app access token from `GET /oauth/access_token`;
//! - the business subscribing an app: `POST|GET|DELETE /{waba-id}/subscribed_apps`, optionally
//!   with an `override_callback_uri` and its `verify_token`.
//!
//! A callback is registered only after it passed the verification request
//! ([`crate::webhooks::outbound::Outbound::verify_callback`]); a failure is error 2200.

use axum::http::Method;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::Call;
use super::auth::Caller;
use crate::error::{BusinessError, BusinessResult};
use crate::repo::model::{App, Business, Subscription};
use crate::repo::tables;
use crate::service::Service;

/// `GET /oauth/access_token?grant_type=client_credentials&client_id=…&client_secret=…`.
pub async fn app_token(service: &Service, call: &Call) -> BusinessResult<Value> {
    let param = |name: &str| {
        call.params
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    };
    if param("grant_type") != "client_credentials" {
        return Err(BusinessError::Invalid(
            "grant_type must be client_credentials".into(),
        ));
    }
    let app: Option<App> = service
        .repo
        .get(&tables::single(tables::APP, param("client_id")))
        .await?;
    match app {
        Some(app)
            if bool::from(
                app.secret
                    .as_bytes()
                    .ct_eq(param("client_secret").as_bytes()),
            ) =>
        {
            Ok(
                json!({ "access_token": format!("{}|{}", app.id, app.secret), "token_type": "bearer" }),
            )
        }
        _ => Err(BusinessError::Unauthenticated(
            "Error validating client secret.".into(),
        )),
    }
}

async fn load_app(service: &Service, caller: &Caller, app_id: &str) -> BusinessResult<App> {
    let app: App = service
        .repo
        .get(&tables::single(tables::APP, app_id))
        .await?
        .ok_or_else(|| BusinessError::UnknownObject(app_id.to_owned()))?;
    match caller {
        Caller::App { app_id: own } if own == app_id => Ok(app),
        Caller::Business { business_id, .. } if *business_id == app.business_id => Ok(app),
        _ => Err(BusinessError::UnknownObject(app_id.to_owned())),
    }
}

fn text(body: &Value, name: &str) -> Option<String> {
    body.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// `/{app-id}/subscriptions`.
pub async fn app(
    service: &Service,
    caller: &Caller,
    app_id: &str,
    call: &mut Call,
) -> BusinessResult<Value> {
    let mut app = load_app(service, caller, app_id).await?;
    let key = tables::single(tables::APP, app_id);
    match call.method {
        Method::POST => {
            let body = call.json(service.config.max_body_bytes).await?;
            let object = text(&body, "object").unwrap_or_default();
            if object != "whatsapp_business_account" {
                return Err(BusinessError::Invalid(
                    "object must be whatsapp_business_account".into(),
                ));
            }
            let callback = text(&body, "callback_url").ok_or_else(|| {
                BusinessError::Invalid("The parameter callback_url is required.".into())
            })?;
            let verify_token = text(&body, "verify_token").ok_or_else(|| {
                BusinessError::Invalid("The parameter verify_token is required.".into())
            })?;
            let fields: Vec<String> = match body.get("fields") {
                Some(Value::String(list)) => list
                    .split(',')
                    .map(|f| f.trim().to_owned())
                    .filter(|f| !f.is_empty())
                    .collect(),
                Some(Value::Array(list)) => list
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                _ => vec!["messages".to_owned()],
            };
            service
                .outbound
                .verify_callback(&callback, &verify_token)
                .await?;
            app.callback_url = Some(callback);
            app.verify_token = Some(verify_token);
            app.fields = fields;
            service.repo.put(&key, &app).await?;
            restart_dispatchers(service, &app.business_id).await?;
            Ok(json!({ "success": true }))
        }
        Method::DELETE => {
            app.callback_url = None;
            app.verify_token = None;
            service.repo.put(&key, &app).await?;
            Ok(json!({ "success": true }))
        }
        _ => {
            let data: Vec<Value> = app
                .callback_url
                .iter()
                .map(|url| {
                    json!({
                        "object": "whatsapp_business_account",
                        "callback_url": url,
                        "active": true,
                        "fields": app.fields.iter().map(|f| json!({ "name": f, "version": "v23.0" })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            Ok(json!({ "data": data }))
        }
    }
}

/// `/{waba-id}/subscribed_apps`: the business subscribes its own app.
pub async fn waba(
    service: &Service,
    caller: &Caller,
    business_id: &str,
    call: &mut Call,
) -> BusinessResult<Value> {
    caller.owns(business_id, business_id)?;
    let key = tables::single(tables::BUSINESS, business_id);
    let mut business: Business = service
        .repo
        .get(&key)
        .await?
        .ok_or_else(|| BusinessError::UnknownObject(business_id.to_owned()))?;
    let app_id = business.app_id.clone();
    match call.method {
        Method::POST => {
            let body = call.json(service.config.max_body_bytes).await?;
            let override_uri = text(&body, "override_callback_uri");
            if let Some(uri) = &override_uri {
                let token = text(&body, "verify_token").ok_or_else(|| {
                    BusinessError::Invalid(
                        "verify_token is required with override_callback_uri".into(),
                    )
                })?;
                service.outbound.verify_callback(uri, &token).await?;
            }
            business.subscribed_apps.retain(|s| s.app_id != app_id);
            business.subscribed_apps.push(Subscription {
                app_id,
                override_callback_uri: override_uri,
            });
            service.repo.put(&key, &business).await?;
            restart_dispatchers(service, business_id).await?;
            Ok(json!({ "success": true }))
        }
        Method::DELETE => {
            business.subscribed_apps.retain(|s| s.app_id != app_id);
            service.repo.put(&key, &business).await?;
            restart_dispatchers(service, business_id).await?;
            Ok(json!({ "success": true }))
        }
        _ => {
            let data: Vec<Value> = business
                .subscribed_apps
                .iter()
                .map(|s| {
                    let mut entry = json!({ "whatsapp_business_api_data": { "id": s.app_id, "name": business.name } });
                    if let Some(uri) = &s.override_callback_uri {
                        entry["override_callback_uri"] = json!(uri);
                    }
                    entry
                })
                .collect();
            Ok(json!({ "data": data }))
        }
    }
}

/// Makes every number of the business read its subscriptions again and run a dispatcher for
/// each subscribed app.
async fn restart_dispatchers(service: &Service, business_id: &str) -> BusinessResult<()> {
    for runtime in service.runtimes() {
        if runtime.number.business_id == business_id {
            runtime.start_dispatchers(&service.dispatch).await?;
        }
    }
    Ok(())
}
