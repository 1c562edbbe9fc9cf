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
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
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

/// A finished send, as the loop collects them.
type Done = (String, u64, OutboundMessage, Outcome);

impl NumberRuntime {
    pub(super) async fn run_outbox(self: Arc<Self>) {
        let queue = tables::outbox(&self.number.id);
        let mut loaded_up_to = 0u64;
        let mut waiting: HashMap<String, VecDeque<(u64, OutboundMessage)>> = HashMap::new();
        let mut busy: HashSet<String> = HashSet::new();
        let mut in_flight = FuturesUnordered::new();
        let mut retry_soon = false;
        // The outbox may hold more than is loaded: at start, when woken, after a full read.
        let mut more = true;
        loop {
            if more {
                match self
                    .repo
                    .read_queue::<OutboundMessage>(&queue, loaded_up_to, READ_BATCH)
                    .await
                {
                    Ok(items) => {
                        more = items.len() == READ_BATCH;
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
            }
            if busy.len() < MAX_IN_FLIGHT && waiting.len() > busy.len() {
                let ready: Vec<String> = waiting
                    .keys()
                    .filter(|r| !busy.contains(*r))
                    .take(MAX_IN_FLIGHT - busy.len())
                    .cloned()
                    .collect();
                if let Some(messenger) = self.messenger(Duration::from_millis(1)).await {
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
            }
            let pause = if retry_soon {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(1)
            };
            retry_soon = false;
            tokio::select! {
                Some(first) = in_flight.next() => {
                    // Every send that has finished by now is recorded in one batch.
                    let mut done = vec![first];
                    while let Some(Some(next)) = in_flight.next().now_or_never() {
                        done.push(next);
                    }
                    let left = self.finish(&queue, &done).await;
                    for (recipient, seq, _, _) in done {
                        busy.remove(&recipient);
                        if left.contains(&seq) {
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
                }
                _ = self.outbox_wake.notified() => more = true,
                _ = tokio::time::sleep(pause) => more = true,
                _ = self.shutdown.wait() => break,
            }
        }
    }

    /// Records how the sends in `done` ended, in one status append and one removal; the seqs
    /// of the messages that left the outbox (the others are sent again).
    async fn finish(&self, queue: &str, done: &[Done]) -> HashSet<u64> {
        let now = self.clock.now_ms();
        let sent = [Status::Sent];
        let mut entries = Vec::with_capacity(done.len());
        let mut failed = Vec::new();
        for (_, seq, message, outcome) in done {
            match outcome {
                Outcome::Sent => {
                    self.metrics.sent(Duration::from_millis(
                        now.saturating_sub(message.accepted_ms),
                    ));
                    entries.push((*seq, message.wamid.as_str(), &sent[..], ""));
                }
                Outcome::Failed(code, details) => {
                    failed.push((
                        *seq,
                        message.wamid.as_str(),
                        [Status::Failed { code: *code }],
                        details.as_str(),
                    ));
                }
                Outcome::Retry(reason) => {
                    tracing::debug!(number = %self.number.id, wamid = %message.wamid, %reason, "send deferred");
                }
            }
        }
        let mut statuses: Vec<(&str, &[Status], &str)> =
            entries.iter().map(|(_, w, s, d)| (*w, *s, *d)).collect();
        statuses.extend(failed.iter().map(|(_, w, s, d)| (*w, &s[..], *d)));
        let seqs: Vec<u64> = entries
            .iter()
            .map(|(seq, ..)| *seq)
            .chain(failed.iter().map(|(seq, ..)| *seq))
            .collect();
        if seqs.is_empty() {
            return HashSet::new();
        }
        // The statuses first: a crash before the removal sends again and reports nothing twice.
        if let Err(error) = self.hooks.statuses_many(&self.number, &statuses, now).await {
            tracing::warn!(number = %self.number.id, %error, "cannot queue statuses");
            return HashSet::new();
        }
        for (_, statuses, _) in &statuses {
            for status in *statuses {
                self.metrics.status(status.name());
            }
        }
        match self.repo.remove(queue, &seqs).await {
            Ok(()) => seqs.into_iter().collect(),
            Err(error) => {
                tracing::warn!(number = %self.number.id, %error, "cannot remove sent messages");
                HashSet::new()
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
