//! The outbox of a number: what the API accepted, sent by the number's device.
//!
//! An accepted message is in `outbox/<number>` before the API answers. This task reads the
//! outbox in order, sends each message end-to-end encrypted with its `wamid` as the client
//! message id, and removes it once the platform answered "sent" (then a `sent` status is
//! queued) or refused it for good (then a `failed` status). A crash in between sends it
//! again after the restart; the platform de-duplicates by the client message id.
//!
//! Messages to one recipient go one at a time, in acceptance order; up to
//! [`MAX_IN_FLIGHT`] recipients are served at once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use courier_client::ClientError;
use courier_protocol::UserId;
use courier_protocol::v1::{Content, ErrorCode};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use prost::Message as _;

use super::NumberRuntime;
use crate::repo::model::OutboundMessage;
use crate::repo::tables;
use crate::webhooks::payload::Status;

/// Recipients with a send in flight at once.
pub const MAX_IN_FLIGHT: usize = 128;
const READ_BATCH: usize = 1024;

/// How a send ended.
enum Outcome {
    Sent,
    /// Refused for good: report `failed` with this Cloud API code.
    Failed(u32, String),
    /// Try again later (no connection, the platform pushed back).
    Retry(String),
}

fn classify(result: Result<courier_client::Sent, ClientError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Sent,
        Err(ClientError::Rejected { code, message }) => match code {
            ErrorCode::UnknownRecipient => Outcome::Failed(131026, message),
            ErrorCode::Busy
            | ErrorCode::Unavailable
            | ErrorCode::RateLimited
            | ErrorCode::Internal => Outcome::Retry(message),
            ErrorCode::DeviceMismatch => Outcome::Retry(message),
            other => Outcome::Failed(131000, format!("{other:?}: {message}")),
        },
        Err(ClientError::Api {
            status: 404,
            message,
            ..
        }) => Outcome::Failed(131026, message),
        Err(ClientError::Crypto(error)) => Outcome::Failed(
            131026,
            format!("no usable session with the recipient: {error}"),
        ),
        Err(error) => Outcome::Retry(error.to_string()),
    }
}

impl NumberRuntime {
    pub(super) async fn run_outbox(self: Arc<Self>) {
        let queue = tables::outbox(&self.number.id);
        let mut loaded_up_to = 0u64;
        let mut waiting: HashMap<String, VecDeque<(u64, OutboundMessage)>> = HashMap::new();
        let mut busy: HashSet<String> = HashSet::new();
        let mut in_flight = FuturesUnordered::new();
        let mut retry_soon = false;
        loop {
            match self
                .repo
                .read_queue::<OutboundMessage>(&queue, loaded_up_to, READ_BATCH)
                .await
            {
                Ok(items) => {
                    for (seq, message) in items {
                        loaded_up_to = seq;
                        waiting
                            .entry(message.to_user.clone())
                            .or_default()
                            .push_back((seq, message));
                    }
                }
                Err(error) => {
                    tracing::warn!(number = %self.number.id, %error, "cannot read the outbox")
                }
            }
            let ready: Vec<String> = waiting
                .keys()
                .filter(|r| !busy.contains(*r))
                .take(MAX_IN_FLIGHT.saturating_sub(busy.len()))
                .cloned()
                .collect();
            if !ready.is_empty()
                && let Some(messenger) = self.messenger(Duration::from_millis(1)).await
            {
                for recipient in ready {
                    let Some((seq, message)) =
                        waiting.get(&recipient).and_then(|q| q.front()).cloned()
                    else {
                        continue;
                    };
                    busy.insert(recipient.clone());
                    let messenger = Arc::clone(&messenger);
                    in_flight.push(async move {
                        let outcome = send(&messenger, &message).await;
                        (recipient, seq, message, outcome)
                    });
                }
            }
            let pause = if retry_soon {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(1)
            };
            retry_soon = false;
            tokio::select! {
                Some((recipient, seq, message, outcome)) = in_flight.next() => {
                    busy.remove(&recipient);
                    if self.finish(&queue, seq, &message, outcome).await {
                        if let Some(q) = waiting.get_mut(&recipient) {
                            q.pop_front();
                            if q.is_empty() {
                                waiting.remove(&recipient);
                            }
                        }
                    } else {
                        retry_soon = true;
                    }
                }
                _ = self.outbox_wake.notified() => {}
                _ = tokio::time::sleep(pause) => {}
                _ = self.shutdown.wait() => break,
            }
        }
    }

    /// Records how a send ended; `true` if the message left the outbox.
    async fn finish(
        &self,
        queue: &str,
        seq: u64,
        message: &OutboundMessage,
        outcome: Outcome,
    ) -> bool {
        let now = self.clock.now_ms();
        let (statuses, details) = match outcome {
            Outcome::Sent => {
                self.metrics.sent(Duration::from_millis(
                    now.saturating_sub(message.accepted_ms),
                ));
                (vec![Status::Sent], String::new())
            }
            Outcome::Failed(code, details) => (vec![Status::Failed { code }], details),
            Outcome::Retry(reason) => {
                tracing::debug!(number = %self.number.id, wamid = %message.wamid, %reason, "send deferred");
                return false;
            }
        };
        // The status first: a crash before the removal sends again and reports nothing twice.
        if let Err(error) = self
            .hooks
            .statuses(&self.number, &message.wamid, &statuses, &details, now)
            .await
        {
            tracing::warn!(number = %self.number.id, %error, "cannot queue a status");
            return false;
        }
        for status in &statuses {
            self.metrics.status(status.name());
        }
        match self.repo.remove(queue, &[seq]).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(number = %self.number.id, %error, "cannot remove a sent message");
                false
            }
        }
    }
}

async fn send(messenger: &courier_client::Messenger, message: &OutboundMessage) -> Outcome {
    let Ok(to) = message.to_user.parse::<UserId>() else {
        return Outcome::Failed(131026, "the recipient is not a platform user".into());
    };
    let content = match Content::decode(message.content.as_slice()) {
        Ok(content) => content,
        Err(error) => {
            return Outcome::Failed(131000, format!("stored content does not decode: {error}"));
        }
    };
    classify(messenger.send_content_as(to, &message.wamid, content).await)
}
