//! `GET /openapi.json`: an OpenAPI 3 document of the API as implemented, generated from
//! [`ENDPOINTS`]. A test walks the same table against the router, so the document cannot
//! list a path or method the service does not serve.

use serde_json::{Map, Value, json};

/// Method, path (Graph style, `{Version}` is any `v<major>.<minor>`), summary.
pub const ENDPOINTS: &[(&str, &str, &str)] = &[
    (
        "post",
        "/{Version}/{Phone-Number-ID}/messages",
        "Send a message, or mark one as read",
    ),
    (
        "post",
        "/{Version}/{Phone-Number-ID}/media",
        "Upload media (multipart/form-data)",
    ),
    (
        "get",
        "/{Version}/{Media-ID}",
        "Media metadata and a short-lived download URL",
    ),
    ("delete", "/{Version}/{Media-ID}", "Delete media"),
    (
        "get",
        "/{Version}/{Phone-Number-ID}/whatsapp_business_profile",
        "Get the business profile",
    ),
    (
        "post",
        "/{Version}/{Phone-Number-ID}/whatsapp_business_profile",
        "Update the business profile",
    ),
    ("get", "/{Version}/{Phone-Number-ID}", "Get a phone number"),
    (
        "get",
        "/{Version}/{WABA-ID}/phone_numbers",
        "List the business's phone numbers",
    ),
    ("get", "/{Version}/{WABA-ID}", "Get the business account"),
    (
        "get",
        "/{Version}/{WABA-ID}/message_templates",
        "List templates",
    ),
    (
        "post",
        "/{Version}/{WABA-ID}/message_templates",
        "Create a template",
    ),
    (
        "delete",
        "/{Version}/{WABA-ID}/message_templates",
        "Delete templates by name (and hsm_id)",
    ),
    ("get", "/{Version}/{TEMPLATE_ID}", "Get a template"),
    ("post", "/{Version}/{TEMPLATE_ID}", "Edit a template"),
    (
        "get",
        "/{Version}/{WABA-ID}/subscribed_apps",
        "List subscribed apps",
    ),
    (
        "post",
        "/{Version}/{WABA-ID}/subscribed_apps",
        "Subscribe the business's app (optional override_callback_uri)",
    ),
    (
        "delete",
        "/{Version}/{WABA-ID}/subscribed_apps",
        "Unsubscribe the business's app",
    ),
    (
        "get",
        "/{Version}/{Application-ID}/subscriptions",
        "The app's webhook subscription",
    ),
    (
        "post",
        "/{Version}/{Application-ID}/subscriptions",
        "Set the app's callback (verified first)",
    ),
    (
        "delete",
        "/{Version}/{Application-ID}/subscriptions",
        "Remove the app's callback",
    ),
    (
        "get",
        "/{Version}/oauth/access_token",
        "An app access token (client credentials)",
    ),
    (
        "get",
        "/media/{Media-ID}",
        "Download media (URL from GET /{Media-ID}, bearer token)",
    ),
];

fn parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect()
}

pub fn build() -> Value {
    let mut paths = Map::new();
    for (method, path, summary) in ENDPOINTS {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = json!({
            "summary": summary,
            "parameters": parameters(path),
            "security": [{ "bearer": [] }],
            "responses": {
                "200": { "description": "Success" },
                "default": {
                    "description": "A Graph API error object",
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/GraphError" } } },
                },
            },
        });
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Courier business API (WhatsApp Cloud API compatible)",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "GraphError": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "message": { "type": "string" },
                                "type": { "type": "string" },
                                "code": { "type": "integer" },
                                "error_subcode": { "type": "integer" },
                                "error_data": { "type": "object" },
                                "fbtrace_id": { "type": "string" },
                            },
                        },
                    },
                },
            },
        },
    })
}

pub async fn document() -> axum::Json<Value> {
    axum::Json(build())
}
