//! `POST /{phone-number-id}/messages`: send a message, or mark a received one as read.
//!
//! A message is checked (body, recipient, the 24-hour window for free-form messages, the
//! number's throughput and the pair rate), then written to the number's outbox, and only then
//! answered with its `wamid`: from that answer on it is not lost. Sending happens behind
//! ([`crate::device::outbox`]); its statuses arrive as webhooks. A recipient with no account
//! is answered like any other, then reported `failed` with 131026, as the Cloud API does.

use std::sync::Arc;

use courier_protocol::UserId;
use courier_protocol::v1::{Content, content};
use courier_store::business::RecordKey;
use prost::Message as _;
use serde_json::{Value, json};

use super::Call;
use super::auth::Caller;
use super::send_request::{self, Recipient, SendAction};
use crate::compose;
use crate::device::NumberRuntime;
use crate::error::{BusinessError, BusinessResult};
use crate::ids;
use crate::limits::within_window;
use crate::repo::model::{Contact, Inbound, OutboundMessage, SentMessage, Template};
use crate::repo::tables;
use crate::service::Service;
use crate::webhooks::payload::Status;

/// The number's runtime, after checking the caller may use it.
pub async fn number_for(
    service: &Service,
    caller: &Caller,
    id: &str,
) -> BusinessResult<Arc<NumberRuntime>> {
    let number = service
        .repo
        .require::<crate::repo::model::PhoneNumber>(tables::NUMBER, id)
        .await?;
    caller.owns(&number.business_id, id)?;
    match service.runtime(id) {
        Some(runtime) => Ok(runtime),
        None => service.activate(id).await,
    }
}

pub async fn send(
    service: &Service,
    caller: &Caller,
    number_id: &str,
    call: &mut Call,
) -> BusinessResult<Value> {
    let runtime = number_for(service, caller, number_id).await?;
    let body = call.body(service.config.max_body_bytes).await?;
    let request = send_request::parse(&body)?;
    match request.action()? {
        SendAction::MarkRead { message_id, typing } => {
            mark_read(&runtime, message_id, typing).await
        }
        SendAction::Message { kind, to } => {
            let input = match to {
                Recipient::Phone(p) | Recipient::UserId(p) => p.to_owned(),
            };
            let contact = match to {
                Recipient::Phone(phone) => runtime.contact_by_phone(phone).await?,
                Recipient::UserId(user) => {
                    // The business-scoped form webhooks carry, or the platform's own.
                    let user: UserId = ids::user_of_bsuid(user)
                        .as_deref()
                        .unwrap_or(user)
                        .parse()
                        .map_err(|_| {
                            BusinessError::Invalid(format!("recipient {user:?} is not a user id"))
                        })?;
                    runtime.contact_by_user(user).await?
                }
            };
            let now = service.clock.now_ms();
            let template = match (kind, &request.template) {
                ("template", Some(param)) => {
                    let key = RecordKey::new(
                        tables::TEMPLATE,
                        &runtime.number.business_id,
                        format!("{}/{}", param.name, param.language.code),
                    );
                    service.repo.get::<Template>(&key).await?
                }
                _ => None,
            };
            let mut content = compose::compose(
                &request,
                kind,
                &runtime.number.verified_name,
                template.as_ref(),
            )?;
            resolve_references(&runtime, &mut content).await?;
            let wamid = ids::wamid()?;
            let Some(contact) = contact else {
                let wa_id: String = input.chars().filter(char::is_ascii_digit).collect();
                // Sends to numbers without an account count against the limits too.
                runtime.limits.admit(&wa_id, now)?;
                undeliverable(
                    &runtime,
                    &wamid,
                    &wa_id,
                    request.biz_opaque_callback_data.clone(),
                )
                .await?;
                return Ok(answer(&input, &wa_id, &wamid, kind));
            };
            // Templates may open a conversation; everything else needs the customer's window.
            if kind != "template" {
                let last = runtime.last_inbound(&contact.user_id).await?;
                if !within_window(last, runtime.window_ms, now) {
                    return Err(BusinessError::OutsideWindow(
                        "Message failed to send because more than 24 hours have passed since the \
                         customer last replied to this number."
                            .into(),
                    ));
                }
            }
            runtime.limits.admit(&contact.user_id, now)?;
            accept(
                &runtime,
                &contact,
                &wamid,
                content.encode_to_vec(),
                request.biz_opaque_callback_data.clone(),
                now,
            )
            .await?;
            service.metrics.accepted();
            Ok(answer(&input, &contact.wa_id, &wamid, kind))
        }
    }
}

fn answer(input: &str, wa_id: &str, wamid: &str, kind: &str) -> Value {
    let mut message = json!({ "id": wamid });
    if kind == "template" {
        message["message_status"] = json!("accepted");
    }
    json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": input, "wa_id": wa_id }],
        "messages": [message],
    })
}

/// What statuses of `wamid` are reported against (recipient, tracker).
async fn record_sent(
    runtime: &NumberRuntime,
    wamid: &str,
    sent: &SentMessage,
) -> BusinessResult<()> {
    runtime
        .repo
        .put(
            &RecordKey::new(tables::SENT, &runtime.number.id, wamid),
            sent,
        )
        .await
}

/// Durably accepts a message: its status record, then its outbox entry.
async fn accept(
    runtime: &NumberRuntime,
    contact: &Contact,
    wamid: &str,
    content: Vec<u8>,
    tracker: Option<String>,
    now: u64,
) -> BusinessResult<()> {
    let sent = SentMessage {
        to_user: contact.user_id.clone(),
        to_wa_id: contact.wa_id.clone(),
        accepted_ms: now,
        tracker,
    };
    record_sent(runtime, wamid, &sent).await?;
    let message = OutboundMessage {
        wamid: wamid.to_owned(),
        to_user: contact.user_id.clone(),
        to_wa_id: contact.wa_id.clone(),
        content,
        accepted_ms: now,
    };
    runtime
        .repo
        .append(&tables::outbox(&runtime.number.id), &[(message, None)], now)
        .await?;
    runtime.wake_outbox();
    Ok(())
}

/// The customer's message a business names by its wamid, as the platform names it.
async fn inbound(runtime: &NumberRuntime, wamid: &str) -> BusinessResult<Option<Inbound>> {
    runtime
        .repo
        .get(&RecordKey::new(tables::INBOUND, &runtime.number.id, wamid))
        .await
}

/// Replies and reactions name messages by wamid; the customer's device knows a customer's
/// message by its platform message id, and a business's own message by its wamid (which is
/// its platform message id).
async fn resolve_references(runtime: &NumberRuntime, content: &mut Content) -> BusinessResult<()> {
    if let Some(context) = &mut content.context {
        match inbound(runtime, &context.message_id).await? {
            // Empty: the receiver of the reply (the customer) wrote the quoted message.
            Some(found) => context.message_id = found.client_message_id,
            None => context.from_user = runtime.number.user_id.clone(),
        }
    }
    if let Some(content::Body::Reaction(reaction)) = &mut content.body
        && let Some(found) = inbound(runtime, &reaction.message_id).await?
    {
        reaction.message_id = found.client_message_id;
    }
    Ok(())
}

/// A message to a number without an account: reported `failed` (131026).
async fn undeliverable(
    runtime: &NumberRuntime,
    wamid: &str,
    wa_id: &str,
    tracker: Option<String>,
) -> BusinessResult<()> {
    let now = runtime.clock.now_ms();
    let sent = SentMessage {
        to_user: String::new(),
        to_wa_id: wa_id.to_owned(),
        accepted_ms: now,
        tracker,
    };
    record_sent(runtime, wamid, &sent).await?;
    runtime
        .hooks
        .statuses(
            &runtime.number,
            wamid,
            &[Status::Failed { code: 131026 }],
            "the recipient is not a registered user",
            now,
        )
        .await?;
    Ok(())
}

async fn mark_read(
    runtime: &NumberRuntime,
    message_id: &str,
    typing: bool,
) -> BusinessResult<Value> {
    let inbound: Inbound = inbound(runtime, message_id).await?.ok_or_else(|| {
        BusinessError::Invalid(format!(
            "message_id {message_id:?} is not a message this number received"
        ))
    })?;
    let from: UserId = inbound
        .from_user
        .parse()
        .map_err(|_| BusinessError::Corrupt("stored sender id".into()))?;
    let messenger = runtime
        .messenger(std::time::Duration::from_secs(5))
        .await
        .ok_or_else(|| BusinessError::Unavailable("the number's device is not connected".into()))?;
    messenger
        .mark_read(from, vec![inbound.client_message_id])
        .await
        .map_err(|e| BusinessError::Unavailable(format!("read receipt: {e}")))?;
    if typing {
        // Typing is best effort, as on the platform.
        if let Err(error) = messenger.typing(from, true).await {
            tracing::debug!(%error, "typing indicator not sent");
        }
    }
    Ok(json!({ "success": true }))
}
