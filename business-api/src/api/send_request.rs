//! The body of `POST /{phone-number-id}/messages`, as the Cloud API defines it, and its
//! validation. Unknown fields are refused (code 100), as the Cloud API refuses them.

use serde::Deserialize;
use serde_json::Value;

use crate::error::{BusinessError, BusinessResult};

/// Longest text body (the Cloud API's limit).
pub const MAX_TEXT_CHARS: usize = 4096;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    pub messaging_product: Option<String>,
    pub recipient_type: Option<String>,
    pub to: Option<String>,
    /// The recipient's business-scoped user id (as webhooks carry it, or the platform user id)
    /// instead of `to`.
    pub recipient: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub context: Option<ContextParam>,
    pub biz_opaque_callback_data: Option<String>,
    pub recipient_identity_key_hash: Option<String>,
    pub text: Option<TextParam>,
    pub reaction: Option<ReactionParam>,
    pub interactive: Option<InteractiveParam>,
    pub template: Option<TemplateParam>,
    // Mark as read: {"messaging_product", "status": "read", "message_id", "typing_indicator"}.
    pub status: Option<String>,
    pub message_id: Option<String>,
    pub typing_indicator: Option<TypingParam>,
    // Kinds that need media, location or contacts: accepted as JSON, refused by type.
    pub image: Option<Value>,
    pub audio: Option<Value>,
    pub video: Option<Value>,
    pub document: Option<Value>,
    pub sticker: Option<Value>,
    pub location: Option<Value>,
    pub contacts: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextParam {
    pub message_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextParam {
    pub body: String,
    #[serde(default)]
    pub preview_url: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReactionParam {
    pub message_id: String,
    pub emoji: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypingParam {
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InteractiveParam {
    #[serde(rename = "type")]
    pub kind: String,
    pub header: Option<HeaderParam>,
    pub body: Option<TextOnly>,
    pub footer: Option<TextOnly>,
    pub action: ActionParam,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderParam {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
    // Media headers come with the media issue.
    pub image: Option<Value>,
    pub video: Option<Value>,
    pub document: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextOnly {
    pub text: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionParam {
    pub buttons: Option<Vec<ButtonParam>>,
    pub button: Option<String>,
    pub sections: Option<Vec<SectionParam>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ButtonParam {
    #[serde(rename = "type")]
    pub kind: String,
    pub reply: ReplyParam,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyParam {
    pub id: String,
    pub title: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SectionParam {
    pub title: Option<String>,
    pub rows: Vec<RowParam>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowParam {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateParam {
    pub name: String,
    pub language: LanguageParam,
    #[serde(default)]
    pub components: Vec<ComponentParam>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanguageParam {
    pub code: String,
    pub policy: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentParam {
    #[serde(rename = "type")]
    pub kind: String,
    pub sub_type: Option<String>,
    pub index: Option<Value>,
    #[serde(default)]
    pub parameters: Vec<ParameterParam>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterParam {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
    pub payload: Option<String>,
    pub parameter_name: Option<String>,
    pub currency: Option<Value>,
    pub date_time: Option<Value>,
    pub image: Option<Value>,
    pub video: Option<Value>,
    pub document: Option<Value>,
}

/// What a request asks for.
#[derive(Debug)]
pub enum SendAction<'a> {
    /// Mark a received message as read (optionally showing a typing indicator).
    MarkRead { message_id: &'a str, typing: bool },
    /// Send a message of `kind` to `to` (a phone number or wa_id) or `recipient` (a user id).
    Message { kind: &'a str, to: Recipient<'a> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recipient<'a> {
    Phone(&'a str),
    UserId(&'a str),
}

pub fn invalid(details: impl Into<String>) -> BusinessError {
    BusinessError::Invalid(details.into())
}

impl SendRequest {
    /// Checks the envelope fields and says what the request asks for.
    pub fn action(&self) -> BusinessResult<SendAction<'_>> {
        match self.messaging_product.as_deref() {
            Some("whatsapp") => {}
            Some(other) => {
                return Err(invalid(format!(
                    "messaging_product must be \"whatsapp\", not {other:?}"
                )));
            }
            None => return Err(invalid("The parameter messaging_product is required.")),
        }
        if let Some(status) = &self.status {
            if status != "read" {
                return Err(invalid(format!("status must be \"read\", not {status:?}")));
            }
            let message_id = self
                .message_id
                .as_deref()
                .ok_or_else(|| invalid("The parameter message_id is required."))?;
            let typing = match &self.typing_indicator {
                None => false,
                Some(t) if t.kind == "text" => true,
                Some(t) => {
                    return Err(invalid(format!(
                        "typing_indicator.type must be \"text\", not {:?}",
                        t.kind
                    )));
                }
            };
            return Ok(SendAction::MarkRead { message_id, typing });
        }
        match self.recipient_type.as_deref() {
            None | Some("individual") => {}
            Some(other) => {
                return Err(BusinessError::Unsupported(format!(
                    "recipient_type {other:?} is not supported; use \"individual\""
                )));
            }
        }
        if self.recipient_identity_key_hash.is_some() {
            return Err(BusinessError::Unsupported(
                "recipient_identity_key_hash is not supported by this deployment".into(),
            ));
        }
        let to = match (self.to.as_deref(), self.recipient.as_deref()) {
            (Some(to), _) if !to.is_empty() => Recipient::Phone(to),
            (_, Some(user)) if !user.is_empty() => Recipient::UserId(user),
            _ => return Err(invalid("The parameter to is required.")),
        };
        let kind = self.kind.as_deref().unwrap_or("text");
        Ok(SendAction::Message { kind, to })
    }
}

/// Parses a body, turning every JSON problem into a Graph error that says where it is.
pub fn parse(body: &[u8]) -> BusinessResult<SendRequest> {
    serde_json::from_slice(body).map_err(|e| invalid(format!("the request body is not valid: {e}")))
}
