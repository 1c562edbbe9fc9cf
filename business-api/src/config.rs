//! Configuration of the business API, parsed once into types.
//!
//! Embedded in the server it is the `[business]` section of the server's configuration
//! (`COURIER_BUSINESS__<KEY>`); the standalone `courier-business` binary reads the same keys
//! from its own file and from `COURIER_BUSINESS__<KEY>` variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Everything the business API reads from configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusinessConfig {
    /// Serve the business API (the embedded server starts it beside the consumer API).
    pub enabled: bool,
    /// In cluster mode, whether this node runs the business API. Set it on one node only:
    /// business numbers have no cluster owner yet, and two nodes running the API would both
    /// bring up every number's device. Ignored by a single node.
    pub cluster_node: bool,
    /// The business API's own listener: a separate trust domain from the consumer API.
    pub listen: SocketAddr,
    /// The public base URL of this listener, used in media download links; empty means
    /// `http://<listen>`.
    pub public_url: String,
    /// The platform's consumer API, which the business numbers' devices connect to. Empty in
    /// the embedded server: it fills in its own address.
    pub platform_url: String,
    /// The platform's admin token, to fetch registration codes for business numbers. Empty in
    /// the embedded server: it passes its own.
    pub platform_admin_token: String,
    /// Where the key that encrypts business data at rest is kept: a file holding 64 hex
    /// digits (created with a fresh key, mode 0600, when missing). Relative paths are under
    /// the data directory.
    pub data_key_file: PathBuf,
    /// The key itself, 64 hex digits; overrides `data_key_file` (for secrets injected by an
    /// orchestrator through `COURIER_BUSINESS__DATA_KEY`).
    pub data_key: String,
    /// Token of the admin API (`/admin/v1/*`); empty means one is generated into
    /// `<data_dir>/business-admin.token`.
    pub admin_token: String,
    /// Messages per second one number may send (Meta's default tier is 80).
    pub throughput_per_number: u32,
    /// Messages a number may send to one recipient in a burst, and the sustained rate after
    /// it (Meta: 45 in 6 s, then one per 6 s).
    pub pair_burst: u32,
    pub pair_per_minute: u32,
    /// The customer-service window: free-form messages only this long after the customer's
    /// last message.
    pub service_window_hours: u64,
    /// Request body limit of the API (JSON and uploads).
    pub max_body_bytes: usize,
    /// Largest media upload, and largest file fetched for a `link`.
    pub max_media_bytes: usize,
    /// How long a media download URL stays valid.
    pub media_url_ttl_secs: u64,
    /// How long media is kept after upload (Meta: 30 days).
    pub media_retention_days: u64,
    /// Webhook delivery settings.
    pub webhooks: WebhookConfig,
    /// Refuse callbacks and media links that resolve to private, link-local or loopback
    /// addresses (server-side request forgery). Off for development and tests on loopback.
    pub refuse_private_addresses: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// One POST may take this long before it counts as failed.
    pub timeout_ms: u64,
    /// Requests in flight to one callback URL at once.
    pub concurrency_per_callback: usize,
    /// First retry delay; each further retry doubles it (with jitter) up to `max_backoff_secs`.
    pub initial_backoff_ms: u64,
    pub max_backoff_secs: u64,
    /// Give up (dead-letter) a webhook this long after it was created (Meta: 7 days).
    pub max_age_secs: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            timeout_ms: 10_000,
            concurrency_per_callback: 64,
            initial_backoff_ms: 1_000,
            max_backoff_secs: 3_600,
            max_age_secs: 7 * 24 * 3_600,
        }
    }
}

impl Default for BusinessConfig {
    fn default() -> Self {
        BusinessConfig {
            enabled: true,
            cluster_node: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            public_url: String::new(),
            platform_url: String::new(),
            platform_admin_token: String::new(),
            data_key_file: PathBuf::from("business.key"),
            data_key: String::new(),
            admin_token: String::new(),
            throughput_per_number: 80,
            pair_burst: 45,
            pair_per_minute: 10,
            service_window_hours: 24,
            max_body_bytes: 16 * 1024 * 1024,
            max_media_bytes: 16 * 1024 * 1024,
            media_url_ttl_secs: 300,
            media_retention_days: 30,
            webhooks: WebhookConfig::default(),
            refuse_private_addresses: false,
        }
    }
}

impl BusinessConfig {
    pub fn service_window(&self) -> Duration {
        Duration::from_secs(self.service_window_hours * 3_600)
    }

    /// The base URL clients reach this listener at.
    pub fn public_base(&self, bound: SocketAddr) -> String {
        if self.public_url.is_empty() {
            format!("http://{bound}")
        } else {
            self.public_url.trim_end_matches('/').to_owned()
        }
    }
}
