//! Assembling and running the business API: the sealed store, the numbers' devices, the
//! webhook dispatchers and the HTTP listener. [`start`] returns a [`RunningBusiness`]
//! (tests start it on port 0); [`RunningBusiness::shutdown`] stops it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use courier_client::Client;
use courier_store::BusinessStore;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::clock::SharedClock;
use crate::config::BusinessConfig;
use crate::device::NumberRuntime;
use crate::device::register::Platform;
use crate::device::state_store::SealedStateStore;
use crate::error::{BusinessError, BusinessResult};
use crate::limits::NumberLimits;
use crate::metrics::Metrics;
use crate::repo::Repo;
use crate::repo::model::PhoneNumber;
use crate::repo::tables;
use crate::seal::Sealer;
use crate::shutdown::Shutdown;
use crate::webhooks::dispatcher::Dispatch;
use crate::webhooks::outbound::Outbound;

/// What the embedding program provides besides configuration.
pub struct Deps {
    pub store: Arc<dyn BusinessStore>,
    pub clock: SharedClock,
    pub platform: Platform,
    /// Where generated files (data key, admin token) go.
    pub data_dir: PathBuf,
}

/// The running service's shared state.
pub struct Service {
    pub config: BusinessConfig,
    pub repo: Repo,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub outbound: Outbound,
    pub dispatch: Arc<Dispatch>,
    pub platform: Platform,
    pub admin_token: String,
    pub public_base: String,
    pub shutdown: Shutdown,
    numbers: RwLock<HashMap<String, Arc<NumberRuntime>>>,
}

pub struct RunningBusiness {
    local_addr: SocketAddr,
    service: Arc<Service>,
    http: JoinHandle<()>,
}

impl RunningBusiness {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Stops accepting, stops the devices and dispatchers (what is queued stays queued).
    pub async fn shutdown(self) {
        self.service.shutdown.begin();
        // The HTTP task ends with the shutdown signal; a panic in it has nothing left to say.
        let _ = tokio::time::timeout(Duration::from_secs(10), self.http).await;
    }
}

fn data_key(config: &BusinessConfig, data_dir: &std::path::Path) -> BusinessResult<Sealer> {
    if !config.data_key.is_empty() {
        return Sealer::from_hex(&config.data_key);
    }
    let path = if config.data_key_file.is_absolute() {
        config.data_key_file.clone()
    } else {
        data_dir.join(&config.data_key_file)
    };
    Sealer::from_file(&path)
}

fn admin_token(config: &BusinessConfig, data_dir: &std::path::Path) -> BusinessResult<String> {
    if !config.admin_token.is_empty() {
        return Ok(config.admin_token.clone());
    }
    let path = data_dir.join("business-admin.token");
    match std::fs::read_to_string(&path) {
        Ok(token) => Ok(token.trim().to_owned()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let token = crate::ids::secret()?;
            crate::seal::write_private(&path, &token)?;
            tracing::info!(path = %path.display(), "wrote the business admin token");
            Ok(token)
        }
        Err(error) => Err(BusinessError::Config(format!(
            "cannot read {}: {error}",
            path.display()
        ))),
    }
}

/// Starts the service: binds `config.listen` (port 0 picks one) and brings up every number.
pub async fn start(config: BusinessConfig, deps: Deps) -> BusinessResult<RunningBusiness> {
    let sealer = data_key(&config, &deps.data_dir)?;
    let admin_token = admin_token(&config, &deps.data_dir)?;
    let repo = Repo::new(deps.store, sealer);
    let metrics = Arc::new(Metrics::new());
    let outbound = Outbound::new(
        Duration::from_millis(config.webhooks.timeout_ms),
        config.refuse_private_addresses,
    )?;
    let dispatch = Dispatch::new(
        repo.clone(),
        outbound.clone(),
        config.webhooks.clone(),
        deps.clock.clone(),
        Arc::clone(&metrics),
    );
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| BusinessError::Config(format!("cannot listen on {}: {e}", config.listen)))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| BusinessError::Config(format!("cannot read the bound address: {e}")))?;
    let service = Arc::new(Service {
        public_base: config.public_base(local_addr),
        config,
        repo,
        clock: deps.clock,
        metrics,
        outbound,
        dispatch,
        platform: deps.platform,
        admin_token,
        shutdown: Shutdown::new(),
        numbers: RwLock::new(HashMap::new()),
    });
    for (id, ()) in service.repo.list::<()>(tables::ALL, "numbers").await? {
        if let Err(error) = service.activate(&id).await {
            tracing::error!(number = %id, %error, "cannot bring up a business number");
        }
    }
    let router = crate::api::router(Arc::clone(&service));
    let http = tokio::spawn({
        let shutdown = service.shutdown.clone();
        async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                shutdown.wait().await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "business API listener failed");
            }
        }
    });
    tracing::info!(%local_addr, "business API listening");
    Ok(RunningBusiness {
        local_addr,
        service,
        http,
    })
}

impl Service {
    /// The runtime of a number this node runs.
    pub fn runtime(&self, number_id: &str) -> Option<Arc<NumberRuntime>> {
        let numbers = self.numbers.read().unwrap_or_else(|p| p.into_inner());
        numbers.get(number_id).cloned()
    }

    pub fn runtimes(&self) -> Vec<Arc<NumberRuntime>> {
        let numbers = self.numbers.read().unwrap_or_else(|p| p.into_inner());
        numbers.values().cloned().collect()
    }

    fn limits(&self) -> NumberLimits {
        NumberLimits::new(
            self.config.throughput_per_number,
            self.config.pair_burst,
            self.config.pair_per_minute,
        )
    }

    /// Opens a registered number's device and starts its tasks.
    pub async fn activate(&self, number_id: &str) -> BusinessResult<Arc<NumberRuntime>> {
        if let Some(running) = self.runtime(number_id) {
            return Ok(running);
        }
        let number: PhoneNumber = self.repo.require(tables::NUMBER, number_id).await?;
        let state = Arc::new(SealedStateStore::new(self.repo.clone(), number_id));
        let client = Client::open_with_store(state)
            .await
            .map_err(|e| BusinessError::Corrupt(format!("device of number {number_id}: {e}")))?;
        self.run(number, client).await
    }

    /// Starts the tasks of a number whose device is `client`.
    pub async fn run(
        &self,
        number: PhoneNumber,
        client: Client,
    ) -> BusinessResult<Arc<NumberRuntime>> {
        let id = number.id.clone();
        let runtime = NumberRuntime::new(
            number,
            client,
            self.limits(),
            self.repo.clone(),
            self.clock.clone(),
            Arc::clone(&self.metrics),
            self.config.service_window().as_millis() as u64,
            self.shutdown.clone(),
        );
        {
            let mut numbers = self.numbers.write().unwrap_or_else(|p| p.into_inner());
            if let Some(existing) = numbers.get(&id) {
                return Ok(Arc::clone(existing));
            }
            numbers.insert(id, Arc::clone(&runtime));
        }
        runtime.start(&self.dispatch).await?;
        Ok(runtime)
    }
}
