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
}

impl NumberHooks {
    pub fn new(repo: Repo, business_id: String, number_id: String) -> Self {
        NumberHooks {
            repo,
            business_id,
            number_id,
            wakers: Mutex::new(HashMap::new()),
            dispatched: Mutex::new(HashSet::new()),
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
        let business: Option<Business> = self
            .repo
            .get(&tables::single(tables::BUSINESS, &self.business_id))
            .await?;
        Ok(business
            .map(|b| b.subscribed_apps.into_iter().map(|s| s.app_id).collect())
            .unwrap_or_default())
    }

    /// Queues `values` (each with its unique key) for every subscribed app, in order.
    /// Returns how many were new (for the first app; the same keys decide for every app).
    pub async fn queue(
        &self,
        conversation: &str,
        values: Vec<(Value, Option<String>)>,
        now: Millis,
    ) -> BusinessResult<usize> {
        let apps = self.subscribed_apps().await?;
        let items: Vec<(WebhookItem, Option<(String, Millis)>)> = values
            .into_iter()
            .map(|(value, unique)| {
                let item = WebhookItem {
                    business_id: self.business_id.clone(),
                    conversation: conversation.to_owned(),
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
        let key = courier_store::business::RecordKey::new(tables::SENT, &self.number_id, wamid);
        let Some(sent) = self.repo.get::<SentMessage>(&key).await? else {
            return Ok(0);
        };
        let values = statuses
            .iter()
            .map(|status| {
                let value = payload::status_value(number, &sent, wamid, *status, now, details);
                (value, Some(format!("status/{wamid}/{}", status.name())))
            })
            .collect();
        self.queue(&sent.to_wa_id, values, now).await
    }
}
