//! Assembling and running the server: storage, actors, router, background sweeps, drain.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use courier_bus::{Bus, BusError, KafkaBus, KafkaConfig};
use courier_business::RunningBusiness;
use courier_store::embedded::EmbeddedStore;
use courier_store::{BusinessStore, Store, StoreError};
use courier_store_cql::{CqlConfig, CqlStore};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::accounts::{Accounts, CodeSender, LogCodeSender};
use crate::actors::ActorEnv;
use crate::actors::registry::Registry;
use crate::clock::now_ms;
use crate::cluster::ClusterNode;
use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::presence::PresenceHub;
use crate::shutdown::Shutdown;
use crate::state::AppState;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("message bus: {0}")]
    Bus(#[from] BusError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let context = context.into();
    move |source| ServerError::Io { context, source }
}

/// A started server.
pub struct RunningServer {
    local_addr: SocketAddr,
    state: Arc<AppState>,
    http: JoinHandle<()>,
    sweeper: JoinHandle<()>,
    business: Option<RunningBusiness>,
}

/// Options that are not configuration (they are code, chosen by the embedding program).
pub struct Extensions {
    pub code_sender: Arc<dyn CodeSender>,
    /// A store to use instead of the configured one (several nodes of one test process share
    /// one).
    pub store: Option<Arc<dyn Store>>,
    /// A bus to join instead of the configured one: the server runs in cluster mode on it
    /// (tests join several nodes to one in-process hub).
    pub bus: Option<Arc<dyn Bus>>,
    /// The business API's store when `store` is given (the configured store serves both
    /// otherwise); without one, the business API does not start.
    pub business_store: Option<Arc<dyn BusinessStore>>,
    /// The clock of the business API (tests move it); the wall clock if `None`.
    pub business_clock: Option<courier_business::clock::SharedClock>,
}

impl Default for Extensions {
    fn default() -> Self {
        Extensions {
            code_sender: Arc::new(LogCodeSender),
            store: None,
            bus: None,
            business_store: None,
            business_clock: None,
        }
    }
}

/// The configured stores: the platform's and the business API's (each backend serves both).
async fn open_store(
    config: &Config,
    data_dir: &Path,
) -> Result<(Arc<dyn Store>, Option<Arc<dyn BusinessStore>>), ServerError> {
    if config.store.backend == "cql" {
        let store = config.store.clone();
        let consistency = store
            .cql_consistency
            .parse()
            .map_err(|e| ConfigError::Invalid(format!("store.cql_consistency: {e}")))?;
        let cql = CqlConfig {
            contact_points: store
                .cql_contact_points
                .split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
            keyspace: store.cql_keyspace,
            replication_factor: store.cql_replication_factor,
            datacenter: Some(store.cql_datacenter).filter(|dc| !dc.is_empty()),
            consistency,
            scylla_extensions: store.cql_scylla,
            request_timeout: Duration::from_millis(store.cql_request_timeout_ms),
        };
        let cql = Arc::new(CqlStore::connect(&cql).await?);
        return Ok((cql.clone(), Some(cql)));
    }
    let embedded = Arc::new(EmbeddedStore::open(
        &data_dir.join("store"),
        config.store.durability,
    )?);
    Ok((embedded.clone(), Some(embedded)))
}

/// The configured bus, if the server runs in cluster mode.
async fn open_bus(config: &Config) -> Result<Option<Arc<dyn Bus>>, ServerError> {
    if config.cluster.bus != "kafka" {
        return Ok(None);
    }
    let cluster = &config.cluster;
    let mut kafka = KafkaConfig::new(
        &cluster.kafka_brokers,
        &cluster.topic_prefix,
        cluster.partitions,
        &config.node_id(),
    );
    kafka.session_timeout_ms = cluster.kafka_session_timeout_ms as u32;
    kafka.delivery_timeout_ms = cluster.kafka_delivery_timeout_ms as u32;
    kafka.replication_factor = match cluster.kafka_replication_factor {
        0 => None,
        factor => Some(factor as u16),
    };
    Ok(Some(Arc::new(KafkaBus::connect(kafka).await?)))
}

/// Starts the server described by `config`: opens storage, starts actors, binds the listener
/// (port 0 picks a free port; see [`RunningServer::local_addr`]).
pub async fn start(config: Config, extensions: Extensions) -> Result<RunningServer, ServerError> {
    let data_dir = config.store.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(io_error(format!(
        "cannot create data directory {}",
        data_dir.display()
    )))?;
    let (store, business_store) = match extensions.store {
        Some(store) => (store, extensions.business_store),
        None => open_store(&config, &data_dir).await?,
    };
    let bus = match extensions.bus {
        Some(bus) => Some(bus),
        None => open_bus(&config).await?,
    };
    let admin_token = admin_token(&config, &data_dir)?;
    let metrics = Arc::new(Metrics::new());
    let presence = Arc::new(PresenceHub::default());
    let env = Arc::new(ActorEnv {
        store: Arc::clone(&store),
        metrics: Arc::clone(&metrics),
        presence: Arc::clone(&presence),
        push_window: config.gateway.push_window,
        retention_ms: config.retention().as_millis() as u64,
        idle: Duration::from_secs(config.actors.idle_secs),
        mailbox_capacity: config.actors.mailbox_capacity,
        group_size_limit: config.groups.size_limit,
    });
    let registry = Registry::start(env, config.arbiter_count())
        .map_err(io_error("cannot start the actor system"))?;
    if let Some(bus) = bus {
        let ask_timeout = Duration::from_millis(config.cluster.ask_timeout_ms);
        let node = ClusterNode::new(bus, Arc::clone(&presence), ask_timeout);
        registry.set_cluster(Arc::clone(&node));
        node.start(Arc::clone(&registry)).await?;
        tracing::info!(node = node.node_id(), "joined the cluster");
    }
    let listener = bind(config.server.listen, config.server.listen_backlog).map_err(io_error(
        format!("cannot listen on {}", config.server.listen),
    ))?;
    let local_addr = listener
        .local_addr()
        .map_err(io_error("cannot read the bound address"))?;
    let accounts = Accounts::new(
        Arc::clone(&store),
        config.registration.clone(),
        extensions.code_sender,
    );
    let shutdown = Shutdown::new();
    let sweep_every = Duration::from_secs(config.store.sweep_interval_secs.max(1));
    let state = Arc::new(AppState::new(
        config,
        Arc::clone(&store),
        accounts,
        registry,
        presence,
        metrics,
        shutdown.clone(),
        admin_token,
    ));
    let router = crate::http::router(Arc::clone(&state));
    let http = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            // Chat frames are small and latency-bound: no Nagle delay on any connection.
            let listener = listener.tap_io(|tcp| {
                if let Err(error) = tcp.set_nodelay(true) {
                    tracing::debug!(%error, "could not set TCP_NODELAY");
                }
            });
            let serve = axum::serve(listener, router)
                .with_graceful_shutdown(async move { shutdown.wait().await });
            if let Err(error) = serve.await {
                tracing::error!(%error, "HTTP server failed");
            }
        }
    });
    let sweeper = tokio::spawn({
        let store = Arc::clone(&store);
        let shutdown = shutdown.clone();
        let metrics = Arc::clone(&state.metrics);
        async move {
            let mut every = tokio::time::interval(sweep_every);
            loop {
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = every.tick() => {}
                }
                match store.sweep_expired(now_ms()).await {
                    Ok(0) => {}
                    Ok(removed) => tracing::info!(removed, "expired queue entries swept"),
                    Err(error) => tracing::warn!(%error, "sweep of expired entries failed"),
                }
                // Re-counting corrects any drift of the gauge (expiry, re-registrations).
                match store.count_queued_entries().await {
                    Ok(depth) => metrics.set_queue_depth(depth),
                    Err(error) => tracing::warn!(%error, "could not count queued entries"),
                }
            }
        }
    });
    tracing::info!(%local_addr, "courier server listening");
    let business = start_business(
        &state,
        local_addr,
        business_store,
        extensions.business_clock,
        &data_dir,
    )
    .await?;
    Ok(RunningServer {
        local_addr,
        state,
        http,
        sweeper,
        business,
    })
}

/// Starts the business API on its own listener, its numbers' devices connecting to this
/// server's own address, when configured and when there is a business store (every
/// configured backend has one; a store given in [`Extensions`] may come without).
async fn start_business(
    state: &AppState,
    local_addr: SocketAddr,
    store: Option<Arc<dyn BusinessStore>>,
    clock: Option<courier_business::clock::SharedClock>,
    data_dir: &Path,
) -> Result<Option<RunningBusiness>, ServerError> {
    let mut config = state.config.business.clone();
    if !config.enabled {
        return Ok(None);
    }
    if state.registry.cluster().is_some() && !config.cluster_node {
        tracing::info!(
            "business API not started on this node: in a cluster it runs on the one node with \
             business.cluster_node = true"
        );
        return Ok(None);
    }
    let Some(store) = store else {
        tracing::warn!(
            "business API not started: the store given to the server has no business store \
             beside it (pass one in Extensions::business_store, or set business.enabled = false)"
        );
        return Ok(None);
    };
    if config.platform_url.is_empty() {
        config.platform_url = format!("http://{local_addr}");
    }
    if config.platform_admin_token.is_empty() {
        config.platform_admin_token = state.admin_token.clone();
    }
    let deps = courier_business::Deps {
        store,
        clock: clock.unwrap_or_else(|| Arc::new(courier_business::clock::SystemClock)),
        platform: courier_business::device::register::Platform {
            url: config.platform_url.clone(),
            admin_token: config.platform_admin_token.clone(),
        },
        data_dir: data_dir.to_owned(),
    };
    // The consumer platform keeps serving if the business API cannot start (a wrong data key,
    // its port taken): the failure is logged, and the business API stays down.
    match courier_business::start(config, deps).await {
        Ok(running) => Ok(Some(running)),
        Err(error) => {
            tracing::error!(%error, "the business API did not start");
            Ok(None)
        }
    }
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// The business API, if this server runs it.
    pub fn business(&self) -> Option<&RunningBusiness> {
        self.business.as_ref()
    }

    /// Graceful drain: refuse new work, close connections with "going away", wait for them
    /// (up to the configured drain timeout), stop actors, close storage.
    pub async fn shutdown(self) {
        if let Some(business) = self.business {
            // Its devices are clients of this server: they go first.
            business.shutdown().await;
        }
        let state = self.state;
        let grace = Duration::from_millis(state.config.server.unready_grace_ms);
        if !grace.is_zero() {
            // Load balancers see /readyz fail and stop sending new connections first.
            state.shutdown.mark_unready();
            tracing::info!(?grace, "unready; draining after the grace period");
            tokio::time::sleep(grace).await;
        }
        state.shutdown.begin();
        let timeout = Duration::from_secs(state.config.server.drain_timeout_secs);
        if tokio::time::timeout(timeout, state.shutdown.connections_closed())
            .await
            .is_err()
        {
            tracing::warn!("drain timeout: some connections did not close in time");
        }
        if let Err(error) = self.http.await {
            tracing::error!(%error, "HTTP task failed");
        }
        self.sweeper.abort();
        if let Some(cluster) = state.registry.cluster() {
            // Partitions go to the other nodes once this node's actors finished their work.
            cluster.shutdown().await;
        }
        let registry = Arc::clone(&state.registry);
        // Joining the actor thread blocks; keep it off the async workers.
        if let Err(error) = tokio::task::spawn_blocking(move || registry.shutdown()).await {
            tracing::error!(%error, "actor shutdown failed");
        }
        tracing::info!("courier server stopped");
    }
}

/// A listener with a backlog sized for connection storms (the default of 1024 overflows when
/// thousands of devices reconnect at once, and an overflow costs a client a one-second SYN
/// retransmission).
fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// The admin token from configuration, or the one in `<data_dir>/admin.token` (created with a
/// random value on first start, readable by the owner only).
fn admin_token(config: &Config, data_dir: &Path) -> Result<String, ServerError> {
    if !config.server.admin_token.is_empty() {
        return Ok(config.server.admin_token.clone());
    }
    let path = data_dir.join("admin.token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        let token = token.trim().to_owned();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|e| io_error("no randomness")(std::io::Error::other(e.to_string())))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .map_err(io_error(format!("cannot write {}", path.display())))?;
    file.write_all(token.as_bytes())
        .map_err(io_error(format!("cannot write {}", path.display())))?;
    Ok(token)
}
