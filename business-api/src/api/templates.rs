//! Message templates: `POST|GET|DELETE /{waba-id}/message_templates`, `GET|POST
//! /{template-id}`. There is no human review here: a template is `APPROVED` on creation when
//! the business auto-approves (the default), else `PENDING` until an operator decides
//! (`courier-business admin template status`).

use axum::http::Method;
use courier_store::business::RecordKey;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Call;
use super::auth::Caller;
use crate::error::{BusinessError, BusinessResult};
use crate::repo::model::{Business, Template, TemplateStatus};
use crate::repo::tables;
use crate::service::Service;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    name: String,
    language: String,
    category: String,
    components: Vec<Value>,
    /// `POSITIONAL` (the default) or `NAMED`; kept and shown with the template.
    #[serde(default)]
    parameter_format: Option<String>,
    // Accepted for compatibility; without human review they change nothing here.
    #[serde(default)]
    #[allow(dead_code)]
    allow_category_change: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    message_send_ttl_seconds: Option<Value>,
}

fn check_text(what: &str, component: &Value, max: usize) -> BusinessResult<()> {
    let text = component["text"]
        .as_str()
        .ok_or_else(|| BusinessError::Invalid(format!("the {what} component needs a text")))?;
    if text.is_empty() || text.chars().count() > max {
        return Err(BusinessError::Invalid(format!(
            "the {what} text must be 1 to {max} characters"
        )));
    }
    Ok(())
}

/// Checks components the way the Cloud API does for what this deployment can render.
fn check_components(components: &[Value]) -> BusinessResult<()> {
    let mut body = 0;
    for component in components {
        let kind = component["type"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_uppercase();
        match kind.as_str() {
            "BODY" => {
                body += 1;
                check_text("BODY", component, 1024)?;
            }
            "HEADER" => match component["format"]
                .as_str()
                .map(str::to_ascii_uppercase)
                .as_deref()
            {
                Some("TEXT") | None => check_text("HEADER", component, 60)?,
                Some(other) => {
                    return Err(BusinessError::Unsupported(format!(
                        "{other} headers need the media service, which this deployment does not have yet"
                    )));
                }
            },
            "FOOTER" => check_text("FOOTER", component, 60)?,
            "BUTTONS" => {
                let buttons = component["buttons"]
                    .as_array()
                    .ok_or_else(|| BusinessError::Invalid("BUTTONS needs a buttons list".into()))?;
                if buttons.is_empty() || buttons.len() > 10 {
                    return Err(BusinessError::Invalid(
                        "a template has 1 to 10 buttons".into(),
                    ));
                }
                for button in buttons {
                    let kind = button["type"]
                        .as_str()
                        .unwrap_or_default()
                        .to_ascii_uppercase();
                    if !matches!(kind.as_str(), "QUICK_REPLY" | "URL" | "PHONE_NUMBER") {
                        return Err(BusinessError::Unsupported(format!(
                            "button type {kind:?} is not supported"
                        )));
                    }
                    let text = button["text"].as_str().unwrap_or_default();
                    if text.is_empty() || text.chars().count() > 25 {
                        return Err(BusinessError::Invalid(
                            "button text must be 1 to 25 characters".into(),
                        ));
                    }
                }
            }
            other => {
                return Err(BusinessError::Invalid(format!(
                    "unknown component type {other:?}"
                )));
            }
        }
    }
    if body != 1 {
        return Err(BusinessError::Invalid(
            "a template needs exactly one BODY component".into(),
        ));
    }
    Ok(())
}

fn describe(template: &Template) -> Value {
    json!({
        "id": template.id,
        "name": template.name,
        "language": template.language,
        "status": template.status,
        "category": template.category,
        "parameter_format": template.parameter_format,
        "components": template.components,
    })
}

pub async fn handle(
    service: &Service,
    caller: &Caller,
    business_id: &str,
    call: &mut Call,
) -> BusinessResult<Value> {
    caller.owns(business_id, business_id)?;
    match call.method {
        Method::POST => create(service, business_id, call).await,
        Method::DELETE => remove(service, business_id, call).await,
        _ => {
            let filter_name = call.params.get("name").cloned();
            let filter_status = call.params.get("status").cloned();
            let data: Vec<Value> = service
                .repo
                .list::<Template>(tables::TEMPLATE, business_id)
                .await?
                .into_iter()
                .map(|(_, t)| t)
                .filter(|t| filter_name.as_ref().is_none_or(|n| &t.name == n))
                .filter(|t| {
                    filter_status
                        .as_ref()
                        .is_none_or(|s| describe(t)["status"] == json!(s))
                })
                .map(|t| describe(&t))
                .collect();
            Ok(json!({ "data": data, "paging": { "cursors": { "before": "", "after": "" } } }))
        }
    }
}

async fn create(service: &Service, business_id: &str, call: &mut Call) -> BusinessResult<Value> {
    let body = call.json(service.config.max_body_bytes).await?;
    let request: Create = serde_json::from_value(body)
        .map_err(|e| BusinessError::Invalid(format!("the request body is not valid: {e}")))?;
    if request.name.is_empty()
        || request.name.len() > 512
        || !request
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(BusinessError::Invalid(
            "name must be 1 to 512 lowercase letters, digits and underscores".into(),
        ));
    }
    let category = request.category.to_ascii_uppercase();
    if !matches!(
        category.as_str(),
        "MARKETING" | "UTILITY" | "AUTHENTICATION"
    ) {
        return Err(BusinessError::Invalid(format!(
            "category must be MARKETING, UTILITY or AUTHENTICATION, not {:?}",
            request.category
        )));
    }
    if request.language.is_empty() || request.language.len() > 16 || request.language.contains('/')
    {
        return Err(BusinessError::Invalid(
            "language must be a language code such as en_US".into(),
        ));
    }
    let parameter_format = request
        .parameter_format
        .as_deref()
        .unwrap_or("POSITIONAL")
        .to_ascii_uppercase();
    if !matches!(parameter_format.as_str(), "POSITIONAL" | "NAMED") {
        return Err(BusinessError::Invalid(format!(
            "parameter_format must be POSITIONAL or NAMED, not {:?}",
            request.parameter_format.unwrap_or_default()
        )));
    }
    check_components(&request.components)?;
    let business: Business = service.repo.require(tables::BUSINESS, business_id).await?;
    let template = Template {
        id: crate::ids::object_id()?,
        business_id: business_id.to_owned(),
        name: request.name.clone(),
        language: request.language.clone(),
        category,
        status: if business.auto_approve_templates {
            TemplateStatus::Approved
        } else {
            TemplateStatus::Pending
        },
        components: request.components,
        parameter_format,
        created_ms: service.clock.now_ms(),
    };
    let key = RecordKey::new(
        tables::TEMPLATE,
        business_id,
        format!("{}/{}", template.name, template.language),
    );
    if !service.repo.insert(&key, &template).await? {
        return Err(BusinessError::Invalid(format!(
            "Message template \"{}\" already exists in {}",
            template.name, template.language
        )));
    }
    service
        .repo
        .put(
            &tables::single(tables::TEMPLATE_BY_ID, &template.id),
            &(business_id, &key.key),
        )
        .await?;
    Ok(json!({ "id": template.id, "status": template.status, "category": template.category }))
}

async fn remove(service: &Service, business_id: &str, call: &Call) -> BusinessResult<Value> {
    let name = call
        .params
        .get("name")
        .ok_or_else(|| BusinessError::Invalid("The parameter name is required.".into()))?;
    let only_id = call.params.get("hsm_id");
    let mut removed = 0;
    for (key, template) in service
        .repo
        .list::<Template>(tables::TEMPLATE, business_id)
        .await?
    {
        if &template.name != name || only_id.is_some_and(|id| id != &template.id) {
            continue;
        }
        service
            .repo
            .delete(&RecordKey::new(tables::TEMPLATE, business_id, key))
            .await?;
        service
            .repo
            .delete(&tables::single(tables::TEMPLATE_BY_ID, &template.id))
            .await?;
        removed += 1;
    }
    if removed == 0 {
        return Err(BusinessError::Template {
            code: 132001,
            message: format!("no template named {name:?}"),
        });
    }
    Ok(json!({ "success": true }))
}

/// The template an id names, after checking the caller owns it.
pub async fn find(
    service: &Service,
    caller: &Caller,
    id: &str,
) -> BusinessResult<(RecordKey, Template)> {
    let (business_id, key): (String, String) = service
        .repo
        .get(&tables::single(tables::TEMPLATE_BY_ID, id))
        .await?
        .ok_or_else(|| BusinessError::UnknownObject(id.to_owned()))?;
    caller.owns(&business_id, id)?;
    let key = RecordKey::new(tables::TEMPLATE, &business_id, key);
    let template = service
        .repo
        .get::<Template>(&key)
        .await?
        .ok_or_else(|| BusinessError::UnknownObject(id.to_owned()))?;
    Ok((key, template))
}

pub async fn get(service: &Service, caller: &Caller, id: &str) -> BusinessResult<Value> {
    Ok(describe(&find(service, caller, id).await?.1))
}

/// `POST /{template-id}`: new components (and category) for an existing template.
pub async fn edit(
    service: &Service,
    caller: &Caller,
    id: &str,
    call: &mut Call,
) -> BusinessResult<Value> {
    let (key, mut template) = find(service, caller, id).await?;
    let body = call.json(service.config.max_body_bytes).await?;
    if let Some(components) = body.get("components") {
        let components = components
            .as_array()
            .ok_or_else(|| BusinessError::Invalid("components must be a list".into()))?
            .clone();
        check_components(&components)?;
        template.components = components;
    }
    if let Some(category) = body.get("category").and_then(Value::as_str) {
        template.category = category.to_ascii_uppercase();
    }
    service.repo.put(&key, &template).await?;
    Ok(json!({ "success": true }))
}
