//! A business number's device on the platform, run by this service (the hosted model of the
//! Cloud API: the business delegates its device, keys included, to the API service).
//!
//! Layout:
//! - this file: [`NumberRuntime`]: the number's SDK client, its connection (kept open,
//!   reconnected with backoff), the contact cache, and the tasks it runs;
//! - `state_store`: the SDK's device state, sealed, in the business store;
//! - `outbox`: sends what the API accepted, in order per recipient;
//! - `inbound`: customer messages and receipts, persisted as webhooks before the SDK acks;
//! - `hooks`: queuing webhooks for every subscribed app, once each;
//! - `register`: making a phone number a platform account with this service as its device.

pub mod hooks;
pub mod inbound;
pub mod outbox;
pub mod register;
pub mod state_store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use courier_client::{Client, ConnectOptions, Event, Messenger};
use courier_protocol::{PhoneNumber as E164, UserId};
use courier_store::business::RecordKey;
use tokio::sync::{Notify, watch};

use crate::clock::SharedClock;
use crate::error::{BusinessError, BusinessResult};
use crate::limits::NumberLimits;
use crate::metrics::Metrics;
use crate::repo::Repo;
use crate::repo::model::{Contact, PhoneNumber};
use crate::repo::tables;
use crate::shutdown::Shutdown;
use crate::webhooks::dispatcher::Dispatch;

use self::hooks::NumberHooks;

/// Everything the service runs for one number it owns.
pub struct NumberRuntime {
    pub number: PhoneNumber,
    pub client: Client,
    pub limits: NumberLimits,
    pub hooks: NumberHooks,
    pub repo: Repo,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub window_ms: u64,
    /// The open connection, if any.
    messenger: watch::Sender<Option<Arc<Messenger>>>,
    outbox_wake: Notify,
    contacts: Mutex<ContactCache>,
    shutdown: Shutdown,
}

#[derive(Default)]
struct ContactCache {
    by_phone: HashMap<String, Contact>,
    by_user: HashMap<String, Contact>,
}

/// Contacts remembered in memory before the cache starts over.
const CONTACT_CACHE: usize = 200_000;

impl NumberRuntime {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        number: PhoneNumber,
        client: Client,
        limits: NumberLimits,
        repo: Repo,
        clock: SharedClock,
        metrics: Arc<Metrics>,
        window_ms: u64,
        shutdown: Shutdown,
    ) -> Arc<Self> {
        let hooks = NumberHooks::new(repo.clone(), number.business_id.clone(), number.id.clone());
        Arc::new(NumberRuntime {
            number,
            client,
            limits,
            hooks,
            repo,
            clock,
            metrics,
            window_ms,
            messenger: watch::Sender::new(None),
            outbox_wake: Notify::new(),
            contacts: Mutex::new(ContactCache::default()),
            shutdown,
        })
    }

    /// Starts the connection, the outbox and a webhook dispatcher per subscribed app.
    pub async fn start(self: &Arc<Self>, dispatch: &Arc<Dispatch>) -> BusinessResult<()> {
        tokio::spawn(Arc::clone(self).keep_connected());
        tokio::spawn(Arc::clone(self).run_outbox());
        self.start_dispatchers(dispatch).await
    }

    /// Starts a dispatcher for every subscribed app that has none yet.
    pub async fn start_dispatchers(
        self: &Arc<Self>,
        dispatch: &Arc<Dispatch>,
    ) -> BusinessResult<()> {
        // Called when the subscriptions changed: read them again.
        self.hooks.forget_apps();
        for app in self.hooks.subscribed_apps().await? {
            if !self.hooks.claim_dispatcher(&app) {
                continue;
            }
            tokio::spawn(Arc::clone(dispatch).run_queue(
                self.number.business_id.clone(),
                self.number.id.clone(),
                app.clone(),
                self.hooks.waker(&app),
                self.shutdown.clone(),
            ));
        }
        Ok(())
    }

    pub fn wake_outbox(&self) {
        self.outbox_wake.notify_one();
    }

    /// The current connection; waits up to `patience` for one.
    pub async fn messenger(&self, patience: Duration) -> Option<Arc<Messenger>> {
        let mut receiver = self.messenger.subscribe();
        let found = tokio::time::timeout(patience, receiver.wait_for(|m| m.is_some())).await;
        match found {
            Ok(Ok(messenger)) => messenger.clone(),
            _ => None,
        }
    }

    async fn keep_connected(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        let handler: Arc<dyn courier_client::DeliveryHandler> =
            Arc::new(inbound::Inbound::new(Arc::clone(&self)));
        while !self.shutdown.is_stopping() {
            let connected = self
                .client
                .connect_with_handler(&ConnectOptions::default(), Arc::clone(&handler))
                .await;
            match connected {
                Ok((messenger, mut events)) => {
                    backoff = Duration::from_millis(100);
                    tracing::info!(number = %self.number.id, "business device connected");
                    self.messenger.send_replace(Some(Arc::new(messenger)));
                    self.wake_outbox();
                    let closed = loop {
                        tokio::select! {
                            event = events.recv() => match event {
                                Some(Event::Closed { code, reason }) => break format!("{code} {reason}"),
                                Some(_) => {}
                                None => break "event stream ended".to_owned(),
                            },
                            _ = self.shutdown.wait() => break "shutting down".to_owned(),
                        }
                    };
                    let old = self.messenger.send_replace(None);
                    if let Some(old) = old.and_then(Arc::into_inner) {
                        old.close().await;
                    }
                    tracing::info!(number = %self.number.id, %closed, "business device disconnected");
                }
                Err(error) => {
                    tracing::warn!(number = %self.number.id, %error, "business device cannot connect");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.shutdown.wait() => break,
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    fn remember(&self, contact: Contact, phone: &str) {
        let mut cache = self.contacts.lock().unwrap_or_else(|p| p.into_inner());
        if cache.by_user.len() >= CONTACT_CACHE {
            *cache = ContactCache::default();
        }
        cache.by_phone.insert(phone.to_owned(), contact.clone());
        cache.by_user.insert(contact.user_id.clone(), contact);
    }

    /// The account registered with `phone` (any format with a country code), or `None`.
    pub async fn contact_by_phone(&self, phone: &str) -> BusinessResult<Option<Contact>> {
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        let parsed = E164::parse(&format!("+{digits}"))
            .map_err(|e| {
                BusinessError::Invalid(format!("to: {phone:?} is not a phone number: {e}"))
            })?
            .to_string();
        if let Some(found) = self
            .contacts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_phone
            .get(&parsed)
        {
            return Ok(Some(found.clone()));
        }
        let credentials = self.client.credentials();
        match self.client.api().lookup(&credentials, &parsed).await {
            Ok(entry) => {
                let contact = Contact {
                    user_id: entry.user_id.to_string(),
                    wa_id: parsed.trim_start_matches('+').to_owned(),
                };
                self.remember(contact.clone(), &parsed);
                Ok(Some(contact))
            }
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(BusinessError::Unavailable(format!("directory: {error}"))),
        }
    }

    /// The contact of a user id (their phone number), from the cache, the store or the
    /// platform's directory.
    pub async fn contact_by_user(&self, user: UserId) -> BusinessResult<Option<Contact>> {
        let key = user.to_string();
        if let Some(found) = self
            .contacts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_user
            .get(&key)
        {
            return Ok(Some(found.clone()));
        }
        let record = tables::single(tables::CONTACT, &key);
        if let Some(contact) = self.repo.get::<Contact>(&record).await? {
            let phone = format!("+{}", contact.wa_id);
            self.remember(contact.clone(), &phone);
            return Ok(Some(contact));
        }
        let credentials = self.client.credentials();
        match self.client.api().lookup_user(&credentials, user).await {
            Ok(entry) => {
                let contact = Contact {
                    user_id: key,
                    wa_id: entry.phone.trim_start_matches('+').to_owned(),
                };
                self.repo.put(&record, &contact).await?;
                self.remember(contact.clone(), &entry.phone);
                Ok(Some(contact))
            }
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(BusinessError::Unavailable(format!("directory: {error}"))),
        }
    }

    /// When `user` last wrote to this number.
    pub async fn last_inbound(&self, user: &str) -> BusinessResult<Option<u64>> {
        self.repo
            .get(&RecordKey::new(tables::WINDOW, &self.number.id, user))
            .await
    }
}

fn is_not_found(error: &courier_client::ClientError) -> bool {
    matches!(error, courier_client::ClientError::Api { status: 404, .. })
}
