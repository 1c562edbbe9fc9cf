//! What request handlers and connections share.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use courier_store::Store;
use tokio::sync::Semaphore;

use crate::accounts::Accounts;
use crate::actors::registry::Registry;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::presence::PresenceHub;
use crate::shutdown::Shutdown;

pub struct AppState {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub accounts: Accounts,
    pub registry: Arc<Registry>,
    pub presence: Arc<PresenceHub>,
    pub metrics: Arc<Metrics>,
    pub shutdown: Shutdown,
    pub admin_token: String,
    /// One permit per open gateway connection.
    pub connection_slots: Arc<Semaphore>,
    connection_ids: AtomicU64,
}

impl AppState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        accounts: Accounts,
        registry: Arc<Registry>,
        presence: Arc<PresenceHub>,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
        admin_token: String,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(config.gateway.max_connections));
        AppState {
            config,
            store,
            accounts,
            registry,
            presence,
            metrics,
            shutdown,
            admin_token,
            connection_slots: slots,
            // Unique across restarts too: in a cluster, other nodes address connections by id.
            connection_ids: AtomicU64::new(crate::clock::now_ms() << 16),
        }
    }

    pub fn next_connection_id(&self) -> u64 {
        self.connection_ids.fetch_add(1, Ordering::Relaxed)
    }
}
