//! What reaches a business number: customer messages and receipts for the business's own
//! messages. The SDK calls [`Inbound::deliver`] before it acknowledges a delivery to the
//! platform, so each one is persisted as webhook records first; an error leaves the delivery
//! unacknowledged and the platform delivers it again.
//!
//! A customer message's webhook id is derived from the sender device and its client message
//! id ([`crate::ids::inbound_wamid`]) and is the queue item's unique key, so a redelivery
//! makes no second webhook. Receipts from every device of the customer collapse into one
//! `delivered` and one `read` per message, in that order (a `read` first queues both).

use std::sync::Arc;

use async_trait::async_trait;
use courier_client::{ClientError, ClientResult, Event, ReceiptKind};
use courier_protocol::v1::Content;
use courier_protocol::{DeviceId, UserId};
use courier_store::business::RecordKey;

use super::NumberRuntime;
use crate::error::BusinessResult;
use crate::ids;
use crate::repo::model::Inbound as InboundRecord;
use crate::repo::tables;
use crate::webhooks::payload::{self, Customer, Status};

pub struct Inbound {
    runtime: Arc<NumberRuntime>,
}

impl Inbound {
    pub fn new(runtime: Arc<NumberRuntime>) -> Self {
        Inbound { runtime }
    }

    async fn message(
        &self,
        from: UserId,
        device: DeviceId,
        id: &str,
        sent_at_ms: u64,
        content: &Content,
    ) -> BusinessResult<()> {
        let runtime = &self.runtime;
        let now = runtime.clock.now_ms();
        let Some(contact) = runtime.contact_by_user(from).await? else {
            // The sender's account is gone already; nobody to answer.
            tracing::info!(number = %runtime.number.id, %from, "message from an unknown account dropped");
            return Ok(());
        };
        let wamid = ids::inbound_wamid(&format!("{from}.{device}"), id);
        let record = RecordKey::new(tables::INBOUND, &runtime.number.id, &wamid);
        runtime
            .repo
            .put(
                &record,
                &InboundRecord {
                    from_user: from.to_string(),
                    client_message_id: id.to_owned(),
                    received_ms: now,
                },
            )
            .await?;
        let name = if content.sender_name.is_empty() {
            contact.wa_id.as_str()
        } else {
            content.sender_name.as_str()
        };
        let customer = Customer {
            user_id: &contact.user_id,
            wa_id: &contact.wa_id,
            name,
        };
        let sent_at = if sent_at_ms == 0 {
            now
        } else {
            sent_at_ms.min(now)
        };
        let value = payload::message_value(&runtime.number, &customer, &wamid, sent_at, content);
        let new = runtime
            .hooks
            .queue(&contact.wa_id, vec![(value, Some(wamid))], now)
            .await?;
        if new > 0 {
            runtime.metrics.inbound();
        }
        // The window opens with the customer's message (repeats change nothing that matters).
        runtime
            .repo
            .put(
                &RecordKey::new(tables::WINDOW, &runtime.number.id, from.to_string()),
                &now,
            )
            .await
    }

    async fn receipt(&self, kind: ReceiptKind, ids: &[String]) -> BusinessResult<()> {
        let runtime = &self.runtime;
        let now = runtime.clock.now_ms();
        let statuses: &[Status] = match kind {
            ReceiptKind::Delivered => &[Status::Delivered],
            ReceiptKind::Read => &[Status::Delivered, Status::Read],
        };
        for wamid in ids {
            let new = runtime
                .hooks
                .statuses(&runtime.number, wamid, statuses, "", now)
                .await?;
            if new > 0 {
                runtime.metrics.status(statuses[statuses.len() - 1].name());
            }
        }
        Ok(())
    }
}

#[async_trait]
impl courier_client::DeliveryHandler for Inbound {
    async fn deliver(&self, event: &Event) -> ClientResult<()> {
        let outcome = match event {
            Event::Message {
                from,
                device,
                id,
                sent_at_ms,
                content,
                ..
            } => self.message(*from, *device, id, *sent_at_ms, content).await,
            Event::Receipt {
                kind,
                ids,
                group: None,
                ..
            } => self.receipt(*kind, ids).await,
            _ => Ok(()),
        };
        outcome.map_err(|error| ClientError::Storage(format!("business webhook store: {error}")))
    }
}
