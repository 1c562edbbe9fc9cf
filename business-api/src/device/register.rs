//! Making a phone number a platform account whose one device is this service: the platform
//! sends a verification code to the number; the operator either passes the code they
//! received, or (where the operator also runs the platform, as in the embedded server) the
//! service reads it through the platform's admin API. The device's keys are generated here and
//! kept sealed in the business store ([`super::state_store`]).

use std::sync::Arc;

use courier_client::{Api, Client, StateStore};

use crate::error::{BusinessError, BusinessResult};

/// How the platform is reached.
#[derive(Clone, Debug)]
pub struct Platform {
    pub url: String,
    /// The platform's admin token; empty if this service may not read codes.
    pub admin_token: String,
}

/// Registers `phone` on the platform with a new device; `code` as received by SMS, or `None`
/// to read it through the admin API.
pub async fn register_number(
    platform: &Platform,
    phone: &str,
    code: Option<&str>,
    state: Arc<dyn StateStore>,
) -> BusinessResult<Client> {
    let unavailable = |what: &str, e: courier_client::ClientError| {
        BusinessError::Unavailable(format!("platform {what}: {e}"))
    };
    let code = match code {
        Some(code) => code.to_owned(),
        None => {
            if platform.admin_token.is_empty() {
                return Err(BusinessError::Invalid(
                    "a verification code is needed: this service has no platform admin token to \
                     read it"
                        .into(),
                ));
            }
            Client::request_code(&platform.url, phone)
                .await
                .map_err(|e| request_error(e, "requesting a code"))?;
            Api::new(&platform.url)
                .map_err(|e| unavailable("URL", e))?
                .pending_code(&platform.admin_token, phone)
                .await
                .map_err(|e| unavailable("admin API", e))?
                .code
        }
    };
    Client::register_with_store(&platform.url, phone, &code, "business-api", state)
        .await
        .map_err(|e| request_error(e, "registration"))
}

fn request_error(error: courier_client::ClientError, what: &str) -> BusinessError {
    match error {
        courier_client::ClientError::Api {
            status, message, ..
        } if (400..500).contains(&status) => BusinessError::Invalid(format!("{what}: {message}")),
        other => BusinessError::Unavailable(format!("{what}: {other}")),
    }
}
