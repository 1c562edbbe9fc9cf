//! Phone numbers and businesses: `GET /{phone-number-id}`, `GET /{waba-id}/phone_numbers`,
//! `GET /{waba-id}`.

use serde_json::{Value, json};

use super::auth::Caller;
use crate::error::BusinessResult;
use crate::repo::model::{Business, PhoneNumber};
use crate::repo::tables;
use crate::service::Service;

fn describe(number: &PhoneNumber) -> Value {
    json!({
        "id": number.id,
        "display_phone_number": number.phone,
        "verified_name": number.verified_name,
        "quality_rating": "GREEN",
        "code_verification_status": "VERIFIED",
        "platform_type": "CLOUD_API",
        "throughput": { "level": "STANDARD" },
    })
}

pub async fn get(service: &Service, caller: &Caller, id: &str) -> BusinessResult<Value> {
    let number: PhoneNumber = service.repo.require(tables::NUMBER, id).await?;
    caller.owns(&number.business_id, id)?;
    Ok(describe(&number))
}

pub async fn list(service: &Service, caller: &Caller, business_id: &str) -> BusinessResult<Value> {
    caller.owns(caller.business()?, business_id)?;
    caller.owns(business_id, business_id)?;
    let mut data = Vec::new();
    for (id, ()) in service
        .repo
        .list::<()>(tables::NUMBERS_OF, business_id)
        .await?
    {
        if let Some(number) = service
            .repo
            .get::<PhoneNumber>(&tables::single(tables::NUMBER, &id))
            .await?
        {
            data.push(describe(&number));
        }
    }
    Ok(json!({ "data": data }))
}

pub async fn business(service: &Service, caller: &Caller, id: &str) -> BusinessResult<Value> {
    caller.owns(id, id)?;
    let business: Business = service.repo.require(tables::BUSINESS, id).await?;
    Ok(json!({ "id": business.id, "name": business.name }))
}
