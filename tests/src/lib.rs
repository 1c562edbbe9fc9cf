//! Helpers shared by the end-to-end tests: servers started in the test process on port 0 (or as
//! a child process, for crash tests), registered clients, and waiting for events.
//!
//! Waits have generous deadlines only so that a broken build fails instead of hanging; no test
//! asserts on timing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use courier_bus::Bus;
use courier_client::{Client, Event, StateFile};
use courier_protocol::PhoneNumber;
use courier_server::accounts::CodeSender;
use courier_server::{Config, Extensions, RunningServer};
use courier_store::Store;
use tempfile::TempDir;
use tokio::sync::mpsc;

/// How long any single wait may take before the test is declared stuck.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Records the verification codes a server "sends".
#[derive(Default)]
pub struct CodeBook {
    codes: Mutex<HashMap<String, String>>,
}

impl CodeSender for CodeBook {
    fn send(&self, phone: &PhoneNumber, code: &str) -> Result<(), String> {
        self.codes
            .lock()
            .map_err(|_| "poisoned".to_owned())?
            .insert(phone.to_string(), code.to_owned());
        Ok(())
    }
}

impl CodeBook {
    pub fn code_for(&self, phone: &str) -> String {
        let phone = PhoneNumber::parse(phone).expect("valid phone").to_string();
        self.codes
            .lock()
            .expect("code book")
            .get(&phone)
            .cloned()
            .unwrap_or_else(|| panic!("no code was sent to {phone}"))
    }
}

/// A configuration for tests: port 0, data in `data_dir`, two arbiters.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::default();
    config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.store.data_dir = data_dir.to_path_buf();
    config.actors.arbiters = 2;
    config.server.drain_timeout_secs = 5;
    config.business.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config
}

/// A server running inside the test process.
pub struct TestServer {
    server: Option<RunningServer>,
    pub codes: Arc<CodeBook>,
    pub dir: TempDir,
    pub config: Config,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// Starts a server after `tweak` adjusted the test configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::start_node(tweak, Arc::new(CodeBook::default()), None, None).await
    }

    /// Starts a server with `extensions` (its code sender replaced by the test's code book).
    pub async fn start_with_extensions(
        tweak: impl FnOnce(&mut Config),
        mut extensions: Extensions,
    ) -> TestServer {
        let codes = Arc::new(CodeBook::default());
        extensions.code_sender = Arc::clone(&codes) as Arc<dyn CodeSender>;
        TestServer::launch(tweak, codes, extensions).await
    }

    /// Starts one node of a cluster in this process: on `bus` (cluster mode) with `store`
    /// shared with the other nodes, and `codes` shared so that any node can verify a code.
    pub async fn start_node(
        tweak: impl FnOnce(&mut Config),
        codes: Arc<CodeBook>,
        store: Option<Arc<dyn Store>>,
        bus: Option<Arc<dyn Bus>>,
    ) -> TestServer {
        let extensions = Extensions {
            code_sender: Arc::clone(&codes) as Arc<dyn CodeSender>,
            store,
            bus,
            ..Extensions::default()
        };
        TestServer::launch(tweak, codes, extensions).await
    }

    async fn launch(
        tweak: impl FnOnce(&mut Config),
        codes: Arc<CodeBook>,
        extensions: Extensions,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let server = courier_server::start(config.clone(), extensions)
            .await
            .expect("server starts");
        TestServer {
            server: Some(server),
            codes,
            dir,
            config,
        }
    }

    pub fn running(&self) -> &RunningServer {
        self.server.as_ref().expect("server running")
    }

    pub fn addr(&self) -> SocketAddr {
        self.running().local_addr()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn gateway_url(&self) -> String {
        format!("ws://{}{}", self.addr(), courier_protocol::GATEWAY_PATH)
    }

    /// Registers `phone` with state kept in memory.
    pub async fn register(&self, phone: &str) -> Client {
        self.register_with(phone, StateFile::memory()).await
    }

    /// Registers `phone` with state kept in `dir`.
    pub async fn register_at(&self, phone: &str, dir: &Path) -> Client {
        self.register_with(phone, StateFile::at(dir)).await
    }

    pub async fn register_with(&self, phone: &str, file: StateFile) -> Client {
        let url = self.url();
        Client::request_code(&url, phone)
            .await
            .expect("code requested");
        let code = self.codes.code_for(phone);
        Client::register(&url, phone, &code, "test", file)
            .await
            .expect("registered")
    }

    /// Drains and stops the server; its data directory stays for inspection.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

/// A port of 127.0.0.1 free at the time of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A fresh, valid phone number.
pub fn unique_phone() -> String {
    let n = u64::from_le_bytes(
        uuid::Uuid::new_v4().as_bytes()[..8]
            .try_into()
            .expect("8 bytes"),
    );
    format!("+1555{:07}", n % 10_000_000)
}

/// The next event, or a panic after [`DEADLINE`].
pub async fn next_event(events: &mut mpsc::Receiver<Event>) -> Event {
    tokio::time::timeout(DEADLINE, events.recv())
        .await
        .expect("an event within the deadline")
        .expect("the connection's event stream is open")
}

/// Skips events until one matches `wanted`, and returns it.
pub async fn wait_for(
    events: &mut mpsc::Receiver<Event>,
    mut wanted: impl FnMut(&Event) -> bool,
) -> Event {
    loop {
        let event = next_event(events).await;
        if wanted(&event) {
            return event;
        }
    }
}

/// The next `count` text messages (other events skipped): (sender, id, text).
pub async fn messages(
    events: &mut mpsc::Receiver<Event>,
    count: usize,
) -> Vec<(courier_protocol::UserId, String, String)> {
    let mut found = Vec::with_capacity(count);
    while found.len() < count {
        if let Event::Message { from, id, text, .. } = next_event(events).await {
            found.push((from, id, text));
        }
    }
    found
}

/// The server binary running as a child process, for crash tests.
pub struct ChildServer {
    child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    binary: PathBuf,
    /// Settings beyond address and data directory (`COURIER_*` variables).
    env: Vec<(String, String)>,
}

impl ChildServer {
    /// Starts `binary` on a free port of 127.0.0.1 with data in `data_dir`; waits until ready.
    pub async fn spawn(binary: &Path, data_dir: &Path) -> ChildServer {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        ChildServer::spawn_at(binary, data_dir, addr).await
    }

    /// Starts `binary` on `addr` (to restart on the same address).
    pub async fn spawn_at(binary: &Path, data_dir: &Path, addr: SocketAddr) -> ChildServer {
        ChildServer::spawn_with(binary, data_dir, addr, Vec::new()).await
    }

    /// Starts `binary` on `addr` with extra settings (cluster nodes).
    pub async fn spawn_with(
        binary: &Path,
        data_dir: &Path,
        addr: SocketAddr,
        mut env: Vec<(String, String)>,
    ) -> ChildServer {
        if !env.iter().any(|(k, _)| k == "COURIER_BUSINESS__LISTEN") {
            // Its own port, kept across restarts (the default 8090 would collide).
            env.push((
                "COURIER_BUSINESS__LISTEN".into(),
                SocketAddr::from(([127, 0, 0, 1], free_port())).to_string(),
            ));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("log"))
            .expect("log file");
        let child = Command::new(binary)
            .env("COURIER_SERVER__LISTEN", addr.to_string())
            .env("COURIER_STORE__DATA_DIR", data_dir)
            .env("COURIER_ACTORS__ARBITERS", "2")
            .env("COURIER_LOG__FILTER", "warn")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("server binary starts");
        let server = ChildServer {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
            binary: binary.to_path_buf(),
            env,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.addr);
        let http = reqwest::Client::new();
        let started = std::time::Instant::now();
        loop {
            if let Ok(response) = http.get(&url).send().await
                && response.status().is_success()
            {
                return;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "server at {} not ready",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The base URL of the business API this server runs.
    pub fn business_url(&self) -> String {
        let (_, addr) = self
            .env
            .iter()
            .find(|(k, _)| k == "COURIER_BUSINESS__LISTEN")
            .expect("spawn_with sets the business listener");
        format!("http://{addr}")
    }

    /// The admin token: the configured one, or the one the server wrote to its data directory.
    pub fn admin_token(&self) -> String {
        if let Some((_, token)) = self
            .env
            .iter()
            .find(|(k, _)| k == "COURIER_SERVER__ADMIN_TOKEN")
        {
            return token.clone();
        }
        std::fs::read_to_string(self.data_dir.join("admin.token"))
            .expect("admin token")
            .trim()
            .to_owned()
    }

    /// Registers `phone`, reading the code through the admin API.
    pub async fn register(&self, phone: &str, file: StateFile) -> Client {
        let url = self.url();
        Client::request_code(&url, phone)
            .await
            .expect("code requested");
        let code = courier_client::Api::new(&url)
            .expect("api")
            .pending_code(&self.admin_token(), phone)
            .await
            .expect("pending code")
            .code;
        Client::register(&url, phone, &code, "test", file)
            .await
            .expect("registered")
    }

    /// SIGKILL: no drain, no flush.
    /// SIGTERM and wait for the graceful drain to end.
    pub fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.child.wait();
    }

    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL sent");
        self.child.wait().expect("server reaped");
    }

    /// Starts the same binary again on the same address and data.
    pub async fn restart(&mut self) {
        let next =
            ChildServer::spawn_with(&self.binary, &self.data_dir, self.addr, self.env.clone())
                .await;
        *self = next;
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        // Already dead after kill9; otherwise stop it so no server outlives its test.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address of a service the cluster tests need (`var`, or `default`), checked to be
/// listening: a clear failure names the script that starts it.
pub fn cluster_service(var: &str, default: &str) -> String {
    let addr = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    let reachable = addr.parse::<SocketAddr>().is_ok_and(|parsed| {
        std::net::TcpStream::connect_timeout(&parsed, Duration::from_secs(2)).is_ok()
    });
    assert!(
        reachable,
        "nothing listens on {addr} ({var}): start Kafka and Cassandra with \
         ops/cluster/kafka.sh start and ops/cluster/cassandra.sh start (ops/test.sh does)"
    );
    addr
}

/// Server processes in cluster mode on the Kafka and Cassandra of `COURIER_TEST_KAFKA` and
/// `COURIER_TEST_CQL`, on a fresh keyspace and fresh topics.
pub struct ChildCluster {
    pub nodes: Vec<ChildServer>,
    pub dir: TempDir,
}

impl ChildCluster {
    /// Starts `count` nodes of `binary`; `extra` settings apply to every node.
    pub async fn start(binary: &Path, count: usize, extra: &[(&str, &str)]) -> ChildCluster {
        let kafka = cluster_service("COURIER_TEST_KAFKA", "127.0.0.1:19092");
        let cql = cluster_service("COURIER_TEST_CQL", "127.0.0.1:19042");
        let run = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("t{}", &run[..12]);
        let dir = tempfile::tempdir().expect("temp dir");
        let mut nodes = Vec::new();
        for i in 1..=count {
            let data = dir.path().join(format!("node-{i}"));
            std::fs::create_dir_all(&data).expect("node dir");
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let mut env: Vec<(String, String)> = [
                ("COURIER_STORE__BACKEND", "cql".to_owned()),
                ("COURIER_STORE__CQL_CONTACT_POINTS", cql.clone()),
                ("COURIER_STORE__CQL_KEYSPACE", name.clone()),
                ("COURIER_STORE__CQL_REPLICATION_FACTOR", "1".into()),
                ("COURIER_CLUSTER__BUS", "kafka".into()),
                ("COURIER_CLUSTER__NODE_ID", format!("node-{i}")),
                ("COURIER_CLUSTER__KAFKA_BROKERS", kafka.clone()),
                ("COURIER_CLUSTER__TOPIC_PREFIX", name.clone()),
                ("COURIER_CLUSTER__PARTITIONS", "12".into()),
                ("COURIER_CLUSTER__KAFKA_SESSION_TIMEOUT_MS", "3000".into()),
                ("COURIER_SERVER__ADMIN_TOKEN", format!("admin-{run}")),
            ]
            .map(|(k, v)| (k.to_owned(), v))
            .to_vec();
            env.extend(
                extra
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            );
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            nodes.push(ChildServer::spawn_with(binary, &data, addr, env).await);
        }
        ChildCluster { nodes, dir }
    }

    /// Registers a user on node `node` with state in the cluster's directory.
    pub async fn user(&self, node: usize) -> Client {
        let phone = unique_phone();
        let state = StateFile::at(self.dir.path().join(format!("user-{phone}")));
        self.nodes[node].register(&phone, state).await
    }
}
