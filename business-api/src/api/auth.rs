//! Who is calling: a system-user access token (scoped to one business), or an app access
//! token (`<app-id>|<app-secret>`, as `GET /oauth/access_token` hands out) for the app's own
//! subscriptions. Tokens come in `Authorization: Bearer …` or an `access_token` parameter,
//! as the Graph API accepts both.

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::error::{BusinessError, BusinessResult};
use crate::ids;
use crate::repo::model::{App, Token};
use crate::repo::tables;
use crate::service::Service;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A system-user token of this business.
    Business {
        business_id: String,
        token_id: String,
    },
    /// An app token.
    App { app_id: String },
}

impl Caller {
    /// The business the caller acts for; an app token acts for none.
    pub fn business(&self) -> BusinessResult<&str> {
        match self {
            Caller::Business { business_id, .. } => Ok(business_id),
            Caller::App { .. } => Err(BusinessError::Forbidden(
                "an app access token cannot act for a business; use a system-user token".into(),
            )),
        }
    }

    /// Checks that an object belonging to `owner` may be seen by the caller; another
    /// business's object looks as if it did not exist.
    pub fn owns(&self, owner: &str, object: &str) -> BusinessResult<()> {
        match self {
            Caller::Business { business_id, .. } if business_id == owner => Ok(()),
            _ => Err(BusinessError::UnknownObject(object.to_owned())),
        }
    }
}

fn bearer(headers: &HeaderMap, query_token: Option<&str>) -> BusinessResult<String> {
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| BusinessError::Unauthenticated("malformed Authorization header".into()))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("OAuth "))
            .ok_or_else(|| {
                BusinessError::Unauthenticated("the Authorization header must be Bearer".into())
            })?;
        return Ok(token.trim().to_owned());
    }
    match query_token {
        Some(token) if !token.is_empty() => Ok(token.to_owned()),
        _ => Err(BusinessError::Unauthenticated(
            "An access token is required to request this resource.".into(),
        )),
    }
}

impl Service {
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
    ) -> BusinessResult<Caller> {
        let token = bearer(headers, query_token)?;
        if let Some((app_id, secret)) = token.split_once('|') {
            let app: Option<App> = self.repo.get(&tables::single(tables::APP, app_id)).await?;
            return match app {
                Some(app) if bool::from(app.secret.as_bytes().ct_eq(secret.as_bytes())) => {
                    Ok(Caller::App { app_id: app.id })
                }
                _ => Err(BusinessError::Unauthenticated(
                    "invalid app access token".into(),
                )),
            };
        }
        let record: Option<Token> = self
            .repo
            .get(&tables::single(tables::TOKEN, &ids::token_hash(&token)))
            .await?;
        let Some(record) = record else {
            return Err(BusinessError::Unauthenticated(
                "Invalid OAuth access token - Cannot parse access token".into(),
            ));
        };
        if record.revoked_ms.is_some() {
            return Err(BusinessError::Unauthenticated(
                "the access token has been revoked".into(),
            ));
        }
        if record
            .expires_ms
            .is_some_and(|at| self.clock.now_ms() >= at)
        {
            return Err(BusinessError::Unauthenticated(
                "Session has expired: the access token expired".into(),
            ));
        }
        Ok(Caller::Business {
            business_id: record.business_id,
            token_id: record.id,
        })
    }
}
