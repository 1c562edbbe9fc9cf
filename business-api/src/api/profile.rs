//! `GET|POST /{phone-number-id}/whatsapp_business_profile`: the profile consumers see.

use axum::http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Call;
use super::auth::Caller;
use crate::error::{BusinessError, BusinessResult};
use crate::repo::model::{BusinessProfile, PhoneNumber};
use crate::repo::tables;
use crate::service::Service;

/// The Cloud API's verticals.
const VERTICALS: &[&str] = &[
    "UNDEFINED",
    "OTHER",
    "AUTO",
    "BEAUTY",
    "APPAREL",
    "EDU",
    "ENTERTAIN",
    "EVENT_PLAN",
    "FINANCE",
    "GROCERY",
    "GOVT",
    "HOTEL",
    "HEALTH",
    "NONPROFIT",
    "PROF_SERVICES",
    "RETAIL",
    "TRAVEL",
    "RESTAURANT",
    "NOT_A_BIZ",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Update {
    messaging_product: Option<String>,
    about: Option<String>,
    address: Option<String>,
    description: Option<String>,
    email: Option<String>,
    profile_picture_handle: Option<String>,
    websites: Option<Vec<String>>,
    vertical: Option<String>,
}

fn limited(name: &str, value: Option<String>, max: usize) -> BusinessResult<Option<String>> {
    match value {
        Some(v) if v.chars().count() > max => Err(BusinessError::Invalid(format!(
            "{name} is longer than {max} characters"
        ))),
        other => Ok(other),
    }
}

pub async fn handle(
    service: &Service,
    caller: &Caller,
    id: &str,
    call: &mut Call,
) -> BusinessResult<Value> {
    let key = tables::single(tables::NUMBER, id);
    let mut number: PhoneNumber = service
        .repo
        .get(&key)
        .await?
        .ok_or_else(|| BusinessError::UnknownObject(id.to_owned()))?;
    caller.owns(&number.business_id, id)?;
    if call.method == Method::GET {
        let mut profile = serde_json::to_value(&number.profile)?;
        profile["messaging_product"] = json!("whatsapp");
        return Ok(json!({ "data": [profile] }));
    }
    let body = call.json(service.config.max_body_bytes).await?;
    let update: Update = serde_json::from_value(body)
        .map_err(|e| BusinessError::Invalid(format!("the request body is not valid: {e}")))?;
    if update.messaging_product.as_deref() != Some("whatsapp") {
        return Err(BusinessError::Invalid(
            "The parameter messaging_product is required.".into(),
        ));
    }
    if update.profile_picture_handle.is_some() {
        return Err(BusinessError::Unsupported(
            "profile pictures need the media service, which this deployment does not have yet"
                .into(),
        ));
    }
    let profile: &mut BusinessProfile = &mut number.profile;
    if let Some(about) = limited("about", update.about, 139)? {
        profile.about = Some(about);
    }
    if let Some(address) = limited("address", update.address, 256)? {
        profile.address = Some(address);
    }
    if let Some(description) = limited("description", update.description, 512)? {
        profile.description = Some(description);
    }
    if let Some(email) = limited("email", update.email, 128)? {
        if !email.contains('@') {
            return Err(BusinessError::Invalid(
                "email is not an email address".into(),
            ));
        }
        profile.email = Some(email);
    }
    if let Some(websites) = update.websites {
        if websites.len() > 2 {
            return Err(BusinessError::Invalid("at most 2 websites".into()));
        }
        for site in &websites {
            if !(site.starts_with("http://") || site.starts_with("https://")) || site.len() > 256 {
                return Err(BusinessError::Invalid(format!(
                    "website {site:?} must be an http(s) URL"
                )));
            }
        }
        profile.websites = websites;
    }
    if let Some(vertical) = update.vertical {
        if !VERTICALS.contains(&vertical.as_str()) {
            return Err(BusinessError::Invalid(format!(
                "vertical {vertical:?} is not one of {VERTICALS:?}"
            )));
        }
        profile.vertical = Some(vertical);
    }
    service.repo.put(&key, &number).await?;
    Ok(json!({ "success": true }))
}
