//! The keyspace pool of the CQL tests: leases, emptying, and the store configuration.

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use courier_store_cql::{CqlConfig, CqlStore, data_tables};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::value::{CqlValue, Row};
use uuid::Uuid;

const POOL_KEYSPACE: &str = "courier_test_pool";
/// A lease outlives its process by at most this long (there is no hook at exit); each test
/// renews the lease of the keyspace it takes, and a test takes a few seconds.
const LEASE_TTL_SECS: u32 = 60;

/// This process, as a lease holder.
static HOLDER: LazyLock<Uuid> = LazyLock::new(Uuid::new_v4);

/// Keyspaces this process leased and no test uses now.
static FREE: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn address() -> String {
    std::env::var("COURIER_TEST_CQL").unwrap_or_else(|_| "127.0.0.1:19042".to_owned())
}

fn unreachable(error: impl std::fmt::Display) -> ! {
    panic!(
        "no CQL cluster at {} ({error}); start one with `ops/cluster/cassandra.sh start` \
         (or point COURIER_TEST_CQL at one)",
        address()
    )
}

pub fn config_for(keyspace: &str) -> CqlConfig {
    CqlConfig {
        contact_points: vec![address()],
        keyspace: keyspace.to_owned(),
        replication_factor: 1,
        request_timeout: Duration::from_secs(30),
        ..CqlConfig::default()
    }
}

pub async fn connect_or_explain(config: &CqlConfig) -> CqlStore {
    match CqlStore::connect(config).await {
        Ok(store) => store,
        Err(courier_store::StoreError::Unavailable(e)) => unreachable(e),
        Err(e) => panic!("connect to keyspace {}: {e}", config.keyspace),
    }
}

async fn admin_session() -> Session {
    SessionBuilder::new()
        .known_node(address())
        .connection_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap_or_else(|e| unreachable(e))
}

async fn run(session: &Session, cql: &str) {
    let mut statement = scylla::statement::Statement::new(cql);
    statement.set_request_timeout(Some(Duration::from_secs(60)));
    session
        .query_unpaged(statement, ())
        .await
        .unwrap_or_else(|e| panic!("{cql}: {e}"));
}

/// Whether a lightweight transaction applied (`[applied]` comes first).
async fn lwt(
    session: &Session,
    cql: &str,
    values: impl scylla::serialize::row::SerializeRow,
) -> bool {
    let result = session
        .query_unpaged(cql, values)
        .await
        .unwrap_or_else(|e| panic!("{cql}: {e}"));
    let row = result
        .into_rows_result()
        .expect("rows")
        .maybe_first_row::<Row>()
        .expect("a row");
    row.and_then(|r| r.columns.into_iter().next().flatten()) == Some(CqlValue::Boolean(true))
}

/// A keyspace leased by this process until the process ends; back to the pool on drop.
pub struct Lease {
    keyspace: String,
}

impl Lease {
    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Ok(mut free) = FREE.lock() {
            free.push(std::mem::take(&mut self.keyspace));
        }
    }
}

async fn lease(session: &Session) -> Lease {
    let reused = FREE.lock().ok().and_then(|mut free| free.pop());
    if let Some(keyspace) = reused {
        let renewed = lwt(
            session,
            &format!(
                "UPDATE {POOL_KEYSPACE}.leases USING TTL {LEASE_TTL_SECS} SET holder = ? \
                 WHERE name = ? IF holder = ?"
            ),
            (*HOLDER, keyspace.as_str(), *HOLDER),
        )
        .await;
        if renewed {
            return Lease { keyspace };
        }
    }
    run(
        session,
        &format!(
            "CREATE KEYSPACE IF NOT EXISTS {POOL_KEYSPACE} WITH replication = \
             {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        ),
    )
    .await;
    run(
        session,
        &format!(
            "CREATE TABLE IF NOT EXISTS {POOL_KEYSPACE}.leases (name text PRIMARY KEY, holder uuid)"
        ),
    )
    .await;
    for n in 0.. {
        let keyspace = format!("courier_test_{n}");
        let taken = lwt(
            session,
            &format!(
                "INSERT INTO {POOL_KEYSPACE}.leases (name, holder) VALUES (?, ?) \
                 IF NOT EXISTS USING TTL {LEASE_TTL_SECS}"
            ),
            (keyspace.as_str(), *HOLDER),
        )
        .await;
        if taken {
            return Lease { keyspace };
        }
    }
    unreachable!("the pool is unbounded")
}

/// Empties the tables of `keyspace` that hold anything.
async fn empty(session: &Session, keyspace: &str) {
    for table in data_tables() {
        let probe = format!("SELECT * FROM {keyspace}.{table} LIMIT 1");
        let result = session
            .query_unpaged(probe.as_str(), ())
            .await
            .unwrap_or_else(|e| panic!("{probe}: {e}"));
        if result.into_rows_result().expect("rows").rows_num() > 0 {
            run(session, &format!("TRUNCATE {keyspace}.{table}")).await;
        }
    }
}

/// A store on an empty keyspace of its own for as long as the lease lives.
pub async fn fresh_store() -> (CqlStore, Lease) {
    let session = admin_session().await;
    let lease = lease(&session).await;
    let store = connect_or_explain(&config_for(lease.keyspace())).await;
    empty(&session, lease.keyspace()).await;
    (store, lease)
}

/// A leased keyspace that does not exist (dropped if it did).
pub async fn lease_dropped_keyspace() -> Lease {
    let session = admin_session().await;
    let lease = lease(&session).await;
    run(
        &session,
        &format!("DROP KEYSPACE IF EXISTS {}", lease.keyspace()),
    )
    .await;
    lease
}

pub async fn applied_migrations(keyspace: &str) -> Vec<i32> {
    let session = admin_session().await;
    let result = session
        .query_unpaged(
            format!("SELECT version FROM {keyspace}.schema_migrations"),
            (),
        )
        .await
        .expect("schema_migrations");
    let mut versions: Vec<i32> = result
        .into_rows_result()
        .expect("rows")
        .rows::<(i32,)>()
        .expect("versions")
        .map(|row| row.expect("a version").0)
        .collect();
    versions.sort_unstable();
    versions
}
