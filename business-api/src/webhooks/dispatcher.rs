//! Delivering one webhook queue (`webhooks/<number>/<app>`) to the app's callback.
//!
//! - **Order per conversation.** Items are grouped by conversation (the customer); only the
//!   oldest item of a conversation is in flight, so a customer's messages and statuses reach
//!   the receiver in the order they happened. Conversations proceed independently.
//! - **Concurrency per callback.** Deliveries to one callback URL share a semaphore of
//!   `concurrency_per_callback` permits, whichever queue they come from (on this node).
//! - **Retries.** A failed POST (transport error, timeout, any non-2xx) is retried after an
//!   exponential backoff with full jitter, capped at `max_backoff_secs`; the conversation waits
//!   meanwhile. An item older than `max_age_secs` (by the injected clock) that fails again is
//!   moved to the dead-letter queue `dead/<number>/<app>`, where an operator can inspect and
//!   replay it.
//! - **Durability.** An item leaves the queue only after its callback answered 2xx (or it was
//!   dead-lettered), so a crash or restart redelivers: at-least-once, and the `id` in the
//!   payload lets receivers drop repeats.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{Notify, Semaphore};

use super::outbound::{DeliveryFailure, Outbound};
use super::payload;
use crate::clock::SharedClock;
use crate::config::WebhookConfig;
use crate::error::BusinessResult;
use crate::metrics::Metrics;
use crate::repo::Repo;
use crate::repo::model::{App, Business, WebhookItem};
use crate::repo::tables;
use crate::shutdown::Shutdown;

/// Items read from the store per step.
const READ_BATCH: usize = 1024;
/// How long a resolved callback target is reused before it is read again.
const TARGET_TTL: Duration = Duration::from_secs(2);

/// What the dispatchers of this node share.
pub struct Dispatch {
    pub repo: Repo,
    pub outbound: Outbound,
    pub config: WebhookConfig,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    callbacks: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Where a queue's webhooks go now.
#[derive(Clone)]
struct Target {
    url: Option<String>,
    secret: String,
    read_at: tokio::time::Instant,
}

impl Dispatch {
    pub fn new(
        repo: Repo,
        outbound: Outbound,
        config: WebhookConfig,
        clock: SharedClock,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Dispatch {
            repo,
            outbound,
            config,
            clock,
            metrics,
            callbacks: Mutex::new(HashMap::new()),
        })
    }

    fn permits(&self, url: &str) -> Arc<Semaphore> {
        let mut callbacks = self.callbacks.lock().unwrap_or_else(|p| p.into_inner());
        callbacks
            .entry(url.to_owned())
            .or_insert_with(|| {
                Arc::new(Semaphore::new(self.config.concurrency_per_callback.max(1)))
            })
            .clone()
    }

    /// The callback of `app` for `business`: the business's override, else the app's own.
    async fn target(&self, business_id: &str, app_id: &str) -> BusinessResult<Target> {
        let app: Option<App> = self.repo.get(&tables::single(tables::APP, app_id)).await?;
        let business: Option<Business> = self
            .repo
            .get(&tables::single(tables::BUSINESS, business_id))
            .await?;
        let Some(app) = app else {
            return Ok(Target {
                url: None,
                secret: String::new(),
                read_at: tokio::time::Instant::now(),
            });
        };
        let subscription = business
            .as_ref()
            .and_then(|b| b.subscribed_apps.iter().find(|s| s.app_id == app_id));
        let url = match subscription {
            Some(s) => s.override_callback_uri.clone().or(app.callback_url.clone()),
            None => None,
        };
        Ok(Target {
            url,
            secret: app.secret,
            read_at: tokio::time::Instant::now(),
        })
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let base = self.config.initial_backoff_ms.max(1);
        let cap = self.config.max_backoff_secs.saturating_mul(1000).max(base);
        let exp = base
            .saturating_mul(1u64 << attempts.saturating_sub(1).min(30))
            .min(cap);
        // Full jitter: anywhere in [exp/2, exp], so retries of many queues spread out.
        let random = u64::from_be_bytes(crate::ids::random_bytes().unwrap_or([0; 8]));
        Duration::from_millis(exp / 2 + random % (exp / 2 + 1))
    }

    /// Runs the queue of `number` for `app` until shutdown; `wake` is notified on appends.
    pub async fn run_queue(
        self: Arc<Self>,
        business_id: String,
        number_id: String,
        app_id: String,
        wake: Arc<Notify>,
        shutdown: Shutdown,
    ) {
        let queue = tables::webhooks(&number_id, &app_id);
        let mut run = QueueRun {
            dispatch: Arc::clone(&self),
            queue,
            dead: tables::dead_letters(&number_id, &app_id),
            business_id,
            app_id,
            loaded_up_to: 0,
            conversations: HashMap::new(),
            busy: HashSet::new(),
            waiting: HashMap::new(),
            target: None,
        };
        let mut in_flight = FuturesUnordered::new();
        loop {
            if let Err(error) = run.load().await {
                tracing::warn!(queue = %run.queue, %error, "cannot read the webhook queue");
            }
            for delivery in run.start_ready().await {
                in_flight.push(delivery);
            }
            let next_retry = run.next_retry();
            tokio::select! {
                Some((conversation, seq, outcome)) = in_flight.next() => {
                    run.finish(conversation, seq, outcome).await;
                }
                _ = wake.notified() => {}
                _ = tokio::time::sleep_until(next_retry) => {}
                _ = shutdown.wait() => break,
            }
        }
        // Deliveries in flight are dropped: their items stay queued and go again later.
    }
}

type Outcome = Result<(), DeliveryFailure>;
type Delivery = std::pin::Pin<Box<dyn std::future::Future<Output = (String, u64, Outcome)> + Send>>;

struct Pending {
    seq: u64,
    item: WebhookItem,
}

struct QueueRun {
    dispatch: Arc<Dispatch>,
    queue: String,
    dead: String,
    business_id: String,
    app_id: String,
    loaded_up_to: u64,
    conversations: HashMap<String, VecDeque<Pending>>,
    /// Conversations with a delivery in flight.
    busy: HashSet<String>,
    /// Conversations waiting for a retry: when, and how many attempts so far.
    waiting: HashMap<String, (tokio::time::Instant, u32)>,
    target: Option<Target>,
}

impl QueueRun {
    async fn load(&mut self) -> BusinessResult<()> {
        loop {
            let items: Vec<(u64, WebhookItem)> = self
                .dispatch
                .repo
                .read_queue(&self.queue, self.loaded_up_to, READ_BATCH)
                .await?;
            let full = items.len() == READ_BATCH;
            for (seq, item) in items {
                self.loaded_up_to = seq;
                self.conversations
                    .entry(item.conversation.clone())
                    .or_default()
                    .push_back(Pending { seq, item });
            }
            if !full {
                return Ok(());
            }
        }
    }

    async fn current_target(&mut self) -> Option<Target> {
        if let Some(target) = &self.target
            && target.read_at.elapsed() < TARGET_TTL
        {
            return Some(target.clone());
        }
        match self.dispatch.target(&self.business_id, &self.app_id).await {
            Ok(target) => {
                self.target = Some(target.clone());
                Some(target)
            }
            Err(error) => {
                tracing::warn!(app = %self.app_id, %error, "cannot read the callback target");
                None
            }
        }
    }

    fn next_retry(&self) -> tokio::time::Instant {
        let idle = tokio::time::Instant::now() + Duration::from_secs(1);
        self.waiting
            .values()
            .map(|(at, _)| *at)
            .min()
            .unwrap_or(idle)
            .min(idle)
    }

    /// Starts the head item of every conversation that is neither in flight nor waiting.
    async fn start_ready(&mut self) -> Vec<Delivery> {
        let now = tokio::time::Instant::now();
        let ready: Vec<String> = self
            .conversations
            .keys()
            .filter(|c| !self.busy.contains(*c))
            .filter(|c| self.waiting.get(*c).is_none_or(|(at, _)| *at <= now))
            .cloned()
            .collect();
        if ready.is_empty() {
            return Vec::new();
        }
        let Some(target) = self.current_target().await else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for conversation in ready {
            let Some(head) = self
                .conversations
                .get(&conversation)
                .and_then(|q| q.front())
            else {
                continue;
            };
            let body = payload::envelope(&head.item.business_id, &head.item.value);
            let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
            let signature = payload::signature(&target.secret, &body);
            let seq = head.seq;
            let url = target.url.clone();
            let dispatch = Arc::clone(&self.dispatch);
            self.busy.insert(conversation.clone());
            out.push(Box::pin(async move {
                let outcome = match url {
                    None => Err(DeliveryFailure::Refused(
                        "no callback URL is subscribed".into(),
                    )),
                    Some(url) => {
                        let permits = dispatch.permits(&url);
                        let _permit = permits.acquire_owned().await;
                        let started = std::time::Instant::now();
                        let outcome = dispatch.outbound.post_webhook(&url, body, &signature).await;
                        dispatch
                            .metrics
                            .webhook_attempt(outcome.is_ok(), started.elapsed());
                        outcome
                    }
                };
                (conversation, seq, outcome)
            }) as Delivery);
        }
        out
    }

    async fn finish(&mut self, conversation: String, seq: u64, outcome: Outcome) {
        self.busy.remove(&conversation);
        match outcome {
            Ok(()) => {
                if let Err(error) = self.dispatch.repo.remove(&self.queue, &[seq]).await {
                    // It stays queued and is delivered again: at-least-once.
                    tracing::warn!(queue = %self.queue, %error, "cannot remove a delivered webhook");
                    return;
                }
                self.waiting.remove(&conversation);
                self.pop(&conversation);
            }
            Err(failure) => {
                let attempts = self.waiting.get(&conversation).map_or(0, |(_, n)| *n) + 1;
                let Some(head) = self
                    .conversations
                    .get(&conversation)
                    .and_then(|q| q.front())
                else {
                    return;
                };
                let age_ms = self
                    .dispatch
                    .clock
                    .now_ms()
                    .saturating_sub(head.item.created_ms);
                if age_ms >= self.dispatch.config.max_age_secs.saturating_mul(1000) {
                    self.dead_letter(&conversation, attempts, failure.to_string())
                        .await;
                    return;
                }
                tracing::debug!(queue = %self.queue, attempts, %failure, "webhook delivery failed");
                let at = tokio::time::Instant::now() + self.dispatch.backoff(attempts);
                self.waiting.insert(conversation, (at, attempts));
            }
        }
    }

    async fn dead_letter(&mut self, conversation: &str, attempts: u32, error: String) {
        let Some(head) = self.conversations.get(conversation).and_then(|q| q.front()) else {
            return;
        };
        let mut item = head.item.clone();
        item.attempts = attempts;
        item.last_error = Some(error);
        let seq = head.seq;
        let now = self.dispatch.clock.now_ms();
        let moved = async {
            self.dispatch
                .repo
                .append(&self.dead, &[(item, None)], now)
                .await?;
            self.dispatch.repo.remove(&self.queue, &[seq]).await
        };
        match moved.await {
            Ok(()) => {
                tracing::warn!(queue = %self.queue, seq, "webhook given up: moved to the dead letters");
                self.dispatch.metrics.webhook_dead_lettered();
                self.waiting.remove(conversation);
                self.pop(conversation);
            }
            Err(error) => {
                tracing::warn!(queue = %self.queue, %error, "cannot dead-letter a webhook")
            }
        }
    }

    fn pop(&mut self, conversation: &str) {
        if let Some(queue) = self.conversations.get_mut(conversation) {
            queue.pop_front();
            if queue.is_empty() {
                self.conversations.remove(conversation);
            }
        }
    }
}
