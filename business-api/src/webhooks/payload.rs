//! The Cloud API's webhook payloads: the `value` of a `changes[]` entry for a customer's
//! message or for a status of the business's own message, the envelope around it, and its
//! `X-Hub-Signature-256`.

use courier_protocol::v1::{Content, content, interactive_reply};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::clock::Millis;
use crate::repo::model::{PhoneNumber, SentMessage};

/// A consumer as webhooks name them (`user_id` is the platform's; webhooks carry it in the
/// business-scoped shape, [`crate::ids::bsuid`]).
#[derive(Clone, Debug)]
pub struct Customer<'a> {
    pub user_id: &'a str,
    pub wa_id: &'a str,
    /// The push name the customer's app sent, or their number.
    pub name: &'a str,
}

fn metadata(number: &PhoneNumber) -> Value {
    json!({
        "display_phone_number": number.display_phone_number(),
        "phone_number_id": number.id,
    })
}

fn contacts(customer: &Customer<'_>) -> Value {
    json!([{
        "profile": { "name": customer.name },
        "wa_id": customer.wa_id,
        "user_id": crate::ids::bsuid(customer.user_id),
    }])
}

fn seconds(ms: Millis) -> String {
    (ms / 1000).to_string()
}

/// The `value` announcing a customer's message.
pub fn message_value(
    number: &PhoneNumber,
    customer: &Customer<'_>,
    id: &str,
    sent_at_ms: Millis,
    content: &Content,
) -> Value {
    let mut message = json!({
        "from": customer.wa_id,
        "from_user_id": crate::ids::bsuid(customer.user_id),
        "id": id,
        "timestamp": seconds(sent_at_ms),
    });
    let (kind, body) = match &content.body {
        Some(content::Body::Text(text)) => ("text", json!({ "body": text.body })),
        Some(content::Body::Reaction(reaction)) => (
            "reaction",
            json!({ "message_id": reaction.message_id, "emoji": reaction.emoji }),
        ),
        Some(content::Body::InteractiveReply(reply)) => {
            match interactive_reply::Kind::try_from(reply.kind) {
                Ok(interactive_reply::Kind::Button) => (
                    "interactive",
                    json!({ "type": "button_reply",
                            "button_reply": { "id": reply.id, "title": reply.title } }),
                ),
                Ok(interactive_reply::Kind::List) => (
                    "interactive",
                    json!({ "type": "list_reply",
                            "list_reply": { "id": reply.id, "title": reply.title,
                                            "description": reply.description } }),
                ),
                Ok(interactive_reply::Kind::TemplateButton) => (
                    "button",
                    json!({ "payload": reply.id, "text": reply.title }),
                ),
                _ => unsupported(),
            }
        }
        _ => unsupported(),
    };
    message["type"] = json!(kind);
    if kind == "unsupported" {
        message["errors"] = body;
    } else {
        message[kind] = body;
    }
    if let Some(context) = &content.context {
        message["context"] = json!({
            "from": number.display_phone_number(),
            "id": context.message_id,
        });
    }
    json!({
        "messaging_product": "whatsapp",
        "metadata": metadata(number),
        "contacts": contacts(customer),
        "messages": [message],
    })
}

fn unsupported() -> (&'static str, Value) {
    (
        "unsupported",
        json!([{
            "code": 131051,
            "title": "Message type unknown",
            "message": "Message type unknown",
            "error_data": { "details": "Message type is currently not supported." },
        }]),
    )
}

/// A status of one of the business's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Sent,
    Delivered,
    Read,
    Failed { code: u32 },
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Read => "read",
            Status::Failed { .. } => "failed",
        }
    }
}

/// The `value` announcing a status of message `wamid`.
pub fn status_value(
    number: &PhoneNumber,
    sent: &SentMessage,
    wamid: &str,
    status: Status,
    at_ms: Millis,
    details: &str,
) -> Value {
    let mut entry = json!({
        "id": wamid,
        "status": status.name(),
        "timestamp": seconds(at_ms),
        "recipient_id": sent.to_wa_id,
        "recipient_user_id": crate::ids::bsuid(&sent.to_user),
        "conversation": {
            "id": conversation_id(&number.id, &sent.to_user),
            "origin": { "type": "service" },
        },
        "pricing": { "billable": false, "pricing_model": "PMP", "category": "service" },
    });
    if let Some(tracker) = &sent.tracker {
        entry["biz_opaque_callback_data"] = json!(tracker);
    }
    if let Status::Failed { code } = status {
        let title = crate::error::GraphError::title(code);
        entry["errors"] = json!([{
            "code": code,
            "title": title,
            "message": title,
            "error_data": { "details": details },
        }]);
    }
    let customer = Customer {
        user_id: &sent.to_user,
        wa_id: &sent.to_wa_id,
        name: &sent.to_wa_id,
    };
    json!({
        "messaging_product": "whatsapp",
        "metadata": metadata(number),
        "contacts": contacts(&customer),
        "statuses": [entry],
    })
}

/// A stable id for the conversation of a number with a customer.
pub fn conversation_id(number_id: &str, user: &str) -> String {
    let digest = <Sha256 as sha2::Digest>::digest(format!("{number_id}/{user}").as_bytes());
    hex::encode(&digest[..16])
}

/// The body POSTed to a callback: one entry, one change.
pub fn envelope(business_id: &str, value: &Value) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": business_id,
            "changes": [{ "value": value, "field": "messages" }],
        }],
    })
}

/// `X-Hub-Signature-256`: `sha256=` and the hex HMAC-SHA256 of the raw body under the app
/// secret.
pub fn signature(app_secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(app_secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_an_independent_hmac() {
        // printf '{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature("secret", br#"{"a":1}"#),
            "sha256=aa9e2e3575f5d7098b6caccd790888c36d5fdb63342a73bada2d6a51747a8494"
        );
    }
}
