//! Where each record and queue lives. `""` as partition means "one record per key, never
//! listed"; other partitions are what gets listed together.
//!
//! | table | partition | key | value |
//! |---|---|---|---|
//! | `business` | `""` | WABA id | [`Business`](super::model::Business) |
//! | `app` | `""` | app id | [`App`](super::model::App) |
//! | `all` | `businesses` or `numbers` | WABA or phone-number id | `()` (what exists) |
//! | `number` | `""` | phone-number id | [`PhoneNumber`](super::model::PhoneNumber) |
//! | `numbers_of` | WABA id | phone-number id | `()` |
//! | `number_by_phone` | `""` | E.164 | phone-number id (claimed with insert) |
//! | `token` | `""` | SHA-256 of the token | [`Token`](super::model::Token) |
//! | `tokens_of` | WABA id | token id | SHA-256 of the token |
//! | `template` | WABA id | `name/language` | [`Template`](super::model::Template) |
//! | `template_by_id` | `""` | template id | `[waba, name/language]` |
//! | `media` | `""` | media id | [`Media`](super::model::Media) |
//! | `media_chunk` | media id | chunk index (8 digits) | bytes (base64 in JSON) |
//! | `device` | phone-number id | state piece | the number's device state |
//! | `window` | phone-number id | customer user id | last inbound time (ms) |
//! | `sent` | phone-number id | wamid | [`SentMessage`](super::model::SentMessage) |
//! | `contact` | `""` | user id | [`Contact`](super::model::Contact) |
//! | `inbound` | phone-number id | inbound wamid | [`Inbound`](super::model::Inbound) |
//!
//! | queue | items |
//! |---|---|
//! | `outbox/<number>` | [`OutboundMessage`](super::model::OutboundMessage): accepted, not yet sent |
//! | `webhooks/<number>/<app>` | [`WebhookItem`](super::model::WebhookItem): not yet delivered |
//! | `dead/<number>/<app>` | [`WebhookItem`](super::model::WebhookItem): given up on |

use courier_store::business::RecordKey;

pub const BUSINESS: &str = "business";
pub const ALL: &str = "all";
pub const APP: &str = "app";
pub const NUMBER: &str = "number";
pub const NUMBERS_OF: &str = "numbers_of";
pub const NUMBER_BY_PHONE: &str = "number_by_phone";
pub const TOKEN: &str = "token";
pub const TOKENS_OF: &str = "tokens_of";
pub const TEMPLATE: &str = "template";
pub const TEMPLATE_BY_ID: &str = "template_by_id";
pub const MEDIA: &str = "media";
pub const MEDIA_CHUNK: &str = "media_chunk";
pub const DEVICE: &str = "device";
pub const WINDOW: &str = "window";
pub const SENT: &str = "sent";
pub const CONTACT: &str = "contact";
pub const INBOUND: &str = "inbound";

pub fn single(table: &str, key: &str) -> RecordKey {
    RecordKey::new(table, "", key)
}

pub fn outbox(number: &str) -> String {
    format!("outbox/{number}")
}

pub fn webhooks(number: &str, app: &str) -> String {
    format!("webhooks/{number}/{app}")
}

pub fn dead_letters(number: &str, app: &str) -> String {
    format!("dead/{number}/{app}")
}
