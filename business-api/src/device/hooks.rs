//! Queuing webhooks for a number: one item per subscribed app, each in the app's queue for
//! this number, with a unique key where a repeat must not make a second webhook (an inbound
//! message's id; a message's status, so that each status is reported once and statuses only
//! move forward).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::Notify;

use crate::clock::Millis;
use crate::error::BusinessResult;
use crate::repo::Repo;
use crate::repo::model::{Business, SentMessage, WebhookItem};
use crate::repo::tables;
use crate::webhooks::payload::{self, Status};

/// How long unique keys keep repeats out: longer than the platform keeps a message queued.
pub const UNIQUE_FOR_MS: Millis = 35 * 24 * 3_600_000;

/// The webhook queues of one number.
pub struct NumberHooks {
    pub repo: Repo,
    pub business_id: String,
    pub number_id: String,
    /// Wakes the dispatcher of each app's queue.
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    /// Apps whose queue has a dispatcher running.
    dispatched: Mutex<HashSet<String>>,
    /// The subscribed apps, read once and kept until [`NumberHooks::forget_apps`] (called
    /// whenever the subscriptions change).
    apps: Mutex<Option<Vec<String>>>,
}

/// One webhook to queue: its conversation, its `value`, and its unique key if a repeat must
/// make no second webhook.
pub type Queued = (String, Value, Option<String>);

impl NumberHooks {
    pub fn new(repo: Repo, business_id: String, number_id: String) -> Self {
        NumberHooks {
            repo,
            business_id,
            number_id,
            wakers: Mutex::new(HashMap::new()),
            dispatched: Mutex::new(HashSet::new()),
            apps: Mutex::new(None),
        }
    }

    /// Claims the dispatcher of `app`'s queue: `true` the first time only.
    pub fn claim_dispatcher(&self, app: &str) -> bool {
        let mut dispatched = self.dispatched.lock().unwrap_or_else(|p| p.into_inner());
        dispatched.insert(app.to_owned())
    }

    /// The waker of `app`'s queue (created on first use).
    pub fn waker(&self, app: &str) -> Arc<Notify> {
        let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(wakers.entry(app.to_owned()).or_default())
    }

    /// The apps subscribed to the business now.
    pub async fn subscribed_apps(&self) -> BusinessResult<Vec<String>> {
        if let Some(apps) = self.apps.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(apps);
        }
        let business: Option<Business> = self
            .repo
            .get(&tables::single(tables::BUSINESS, &self.business_id))
            .await?;
        let apps: Vec<String> = business
            .map(|b| b.subscribed_apps.into_iter().map(|s| s.app_id).collect())
            .unwrap_or_default();
        *self.apps.lock().unwrap_or_else(|p| p.into_inner()) = Some(apps.clone());
        Ok(apps)
    }

    /// Reads the subscribed apps again on next use.
    pub fn forget_apps(&self) {
        *self.apps.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Queues `values` (each with its unique key) for every subscribed app, in order.
    /// Returns how many were new (for the first app; the same keys decide for every app).
    pub async fn queue(
        &self,
        conversation: &str,
        values: Vec<(Value, Option<String>)>,
        now: Millis,
    ) -> BusinessResult<usize> {
        let items = values
            .into_iter()
            .map(|(value, unique)| (conversation.to_owned(), value, unique))
            .collect();
        self.queue_many(items, now).await
    }

    /// Queues webhooks of any conversations in one append per app, in order.
    pub async fn queue_many(&self, values: Vec<Queued>, now: Millis) -> BusinessResult<usize> {
        if values.is_empty() {
            return Ok(0);
        }
        let apps = self.subscribed_apps().await?;
        let items: Vec<(WebhookItem, Option<(String, Millis)>)> = values
            .into_iter()
            .map(|(conversation, value, unique)| {
                let item = WebhookItem {
                    business_id: self.business_id.clone(),
                    conversation,
                    created_ms: now,
                    value,
                    last_error: None,
                    attempts: 0,
                };
                (item, unique.map(|key| (key, now + UNIQUE_FOR_MS)))
            })
            .collect();
        let mut new = None;
        for app in &apps {
            let queue = tables::webhooks(&self.number_id, app);
            let outcomes = self.repo.append(&queue, &items, now).await?;
            let appended = outcomes
                .iter()
                .filter(|o| matches!(o, courier_store::business::Appended::New(_)))
                .count();
            new.get_or_insert(appended);
            if appended > 0 {
                self.waker(app).notify_one();
            }
        }
        Ok(new.unwrap_or(0))
    }

    /// Queues the statuses of `wamid` (each once), if it is a message this number sent.
    pub async fn statuses(
        &self,
        number: &crate::repo::model::PhoneNumber,
        wamid: &str,
        statuses: &[Status],
        details: &str,
        now: Millis,
    ) -> BusinessResult<usize> {
        self.statuses_many(number, &[(wamid, statuses, details)], now)
            .await
    }

    /// Queues the statuses of several messages (wamid, statuses, details) in one append.
    pub async fn statuses_many(
        &self,
        number: &crate::repo::model::PhoneNumber,
        entries: &[(&str, &[Status], &str)],
        now: Millis,
    ) -> BusinessResult<usize> {
        let sent = futures_util::future::join_all(entries.iter().map(|(wamid, _, _)| {
            let key =
                courier_store::business::RecordKey::new(tables::SENT, &self.number_id, *wamid);
            async move { self.repo.get::<SentMessage>(&key).await }
        }))
        .await;
        let mut values = Vec::new();
        for ((wamid, statuses, details), sent) in entries.iter().zip(sent) {
            let Some(sent) = sent? else {
                continue;
            };
            for status in *statuses {
                let value = payload::status_value(number, &sent, wamid, *status, now, details);
                let unique = format!("status/{wamid}/{}", status.name());
                values.push((sent.to_wa_id.clone(), value, Some(unique)));
            }
        }
        self.queue_many(values, now).await
    }
}
