//! The records of the business API. Everything here is stored sealed ([`crate::seal`]).

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// A WhatsApp Business Account: the business, its numbers, templates and subscribed apps.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Business {
    pub id: String,
    pub name: String,
    pub created_ms: Millis,
    /// The business's own app (its tokens act for it: `subscribed_apps`, app token).
    pub app_id: String,
    /// Apps whose callbacks receive this business's webhooks.
    #[serde(default)]
    pub subscribed_apps: Vec<Subscription>,
    /// Template approval: `true` approves on creation (there is no human review here).
    #[serde(default = "yes")]
    pub auto_approve_templates: bool,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Subscription {
    pub app_id: String,
    /// `override_callback_uri` of `POST /{waba-id}/subscribed_apps`, verified when set.
    #[serde(default)]
    pub override_callback_uri: Option<String>,
}

/// An app: the holder of a webhook callback and of the secret that signs it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct App {
    pub id: String,
    /// The business that created it (its tokens manage it).
    pub business_id: String,
    pub secret: String,
    #[serde(default)]
    pub callback_url: Option<String>,
    #[serde(default)]
    pub verify_token: Option<String>,
    #[serde(default)]
    pub fields: Vec<String>,
}

/// A business phone number, which is a platform account with one device: this service.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PhoneNumber {
    pub id: String,
    pub business_id: String,
    /// E.164, with `+`.
    pub phone: String,
    pub verified_name: String,
    /// The platform account of the number.
    pub user_id: String,
    pub created_ms: Millis,
    #[serde(default)]
    pub profile: BusinessProfile,
}

impl PhoneNumber {
    /// The number as the Cloud API shows it in `metadata.display_phone_number`: digits only.
    pub fn display_phone_number(&self) -> String {
        self.phone.trim_start_matches('+').to_owned()
    }
}

/// `GET /{phone-number-id}/whatsapp_business_profile`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BusinessProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub about: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_picture_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub websites: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vertical: Option<String>,
}

/// A system-user access token, stored under its hash.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Token {
    pub id: String,
    pub business_id: String,
    pub name: String,
    pub created_ms: Millis,
    #[serde(default)]
    pub expires_ms: Option<Millis>,
    #[serde(default)]
    pub revoked_ms: Option<Millis>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TemplateStatus {
    Pending,
    Approved,
    Rejected,
    Paused,
    Disabled,
}

/// A message template with its components, as the Cloud API describes them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Template {
    pub id: String,
    pub business_id: String,
    pub name: String,
    pub language: String,
    pub category: String,
    pub status: TemplateStatus,
    pub components: Vec<serde_json::Value>,
    /// `POSITIONAL` (`{{1}}` placeholders) or `NAMED` (`{{name}}`), as created; templates
    /// stored before it was kept are positional.
    #[serde(default = "positional")]
    pub parameter_format: String,
    pub created_ms: Millis,
}

fn positional() -> String {
    "POSITIONAL".to_owned()
}

/// Uploaded media: metadata; the bytes are in `media_chunk` records.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Media {
    pub id: String,
    pub business_id: String,
    pub phone_number_id: String,
    pub mime_type: String,
    pub sha256: String,
    pub file_size: u64,
    pub chunks: u32,
    pub created_ms: Millis,
    pub expires_ms: Millis,
}

/// A message the API accepted, waiting in the outbox to be sent by the number's device.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OutboundMessage {
    pub wamid: String,
    /// The recipient's platform user id and wa_id (digits of the phone number).
    pub to_user: String,
    pub to_wa_id: String,
    /// The encoded `courier.v1.Content` (the plaintext that gets end-to-end encrypted).
    #[serde(with = "base64_bytes")]
    pub content: Vec<u8>,
    pub accepted_ms: Millis,
}

/// What the service remembers of a message it sent, to report its statuses.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SentMessage {
    pub to_user: String,
    pub to_wa_id: String,
    pub accepted_ms: Millis,
    /// `biz_opaque_callback_data` of the send, echoed in its statuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracker: Option<String>,
}

/// A consumer as the business sees them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Contact {
    pub user_id: String,
    pub wa_id: String,
}

/// A customer's message as the platform named it, to mark it read later.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Inbound {
    pub from_user: String,
    pub client_message_id: String,
    pub received_ms: Millis,
}

/// One webhook notification waiting for delivery: the `value` of a `changes[]` entry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WebhookItem {
    /// The business (WABA) id: `entry[].id`.
    pub business_id: String,
    /// The conversation (customer wa_id) it belongs to; delivered in order per conversation.
    pub conversation: String,
    pub created_ms: Millis,
    /// `changes[].value`.
    pub value: serde_json::Value,
    /// Why it was given up on (dead letters only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default)]
    pub attempts: u32,
}

pub(crate) mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

pub(crate) use base64_bytes as b64;
