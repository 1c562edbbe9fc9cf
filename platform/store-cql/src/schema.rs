//! The keyspace, the schema and its migrations.
//!
//! Migrations are an ordered list of CQL statements per version. `schema_migrations` records the
//! versions applied. Every statement is idempotent (`IF NOT EXISTS`), and a lease row in
//! `schema_lock` (a lightweight transaction with a TTL, so a node that dies holding it does not
//! block the others for long) makes one node at a time apply the missing versions: several
//! nodes may start together.

use std::time::Duration;

use courier_store::{StoreError, StoreResult};
use scylla::client::session::Session;
use scylla::statement::Statement;
use scylla::value::{CqlValue, Row};
use tracing::info;
use uuid::Uuid;

use crate::config::CqlConfig;
use crate::error::{DecodeContext, Driver, corrupt};

/// How long one DDL statement may take (schema changes are slow: each waits for agreement).
const DDL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a node waits for another to finish migrating before giving up.
const MIGRATION_WAIT: Duration = Duration::from_secs(120);

/// Seconds a migration lease lasts if its holder dies.
const LEASE_TTL_SECS: i32 = 120;

pub(crate) struct Migration {
    pub version: i32,
    pub description: &'static str,
    pub statements: &'static [&'static str],
}

/// The tables written before any migration: what migrations need to run.
const BOOTSTRAP: &[&str] = &[
    // One row per applied migration version.
    "CREATE TABLE IF NOT EXISTS schema_migrations (
        version int PRIMARY KEY, description text, applied_at timestamp)",
    // The migration lease: one row, taken with INSERT IF NOT EXISTS USING TTL.
    "CREATE TABLE IF NOT EXISTS schema_lock (name text PRIMARY KEY, owner uuid)",
];

/// Every migration, in order. Sizes assume a WhatsApp-like load: a few devices per user,
/// queues drained within days, groups of up to about a thousand members.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "accounts, keys, codes, queues, groups",
        statements: &[
            // Partition: user. One small row per account; `next_device_id` is allocated with a
            // lightweight transaction so device ids are never reused.
            "CREATE TABLE IF NOT EXISTS accounts (
            user_id uuid PRIMARY KEY, phone text, created_at bigint,
            last_seen_visible boolean, last_seen bigint, next_device_id int)",
            // Partition: phone (E.164). One row; the first registration claims it with
            // INSERT IF NOT EXISTS, so one phone number has one account.
            "CREATE TABLE IF NOT EXISTS phones (phone text PRIMARY KEY, user_id uuid)",
            // Partition: user; clustering: device id. A handful of rows per user; a
            // re-registration removes the older devices with one range tombstone.
            "CREATE TABLE IF NOT EXISTS devices (
            user_id uuid, device_id int, name text, credential_hash blob, created_at bigint,
            PRIMARY KEY (user_id, device_id))",
            // Partition: user; clustering: device id. Identity and signed prekey, ~200 bytes per
            // device; removed with the devices by one range tombstone.
            "CREATE TABLE IF NOT EXISTS device_keys (
            user_id uuid, device_id int, identity_ed25519 blob, identity_x25519 blob,
            signed_prekey_id int, signed_prekey blob, signed_prekey_signature blob,
            PRIMARY KEY (user_id, device_id))",
            // Partition: device; clustering: key id. Up to a few hundred 32-byte keys; each take
            // is a DELETE ... IF (lightweight transaction), so a key is handed out once.
            "CREATE TABLE IF NOT EXISTS one_time_prekeys (
            user_id uuid, device_id int, key_id int, public_key blob,
            PRIMARY KEY ((user_id, device_id), key_id))",
            // Partition: phone. The pending code and the issue times of the rate-limit window;
            // every write is a compare-and-set on `revision`, so a code is consumed once. The row
            // is always written whole; TTL: until `keep_until` (the code and the window are over).
            "CREATE TABLE IF NOT EXISTS codes (
            phone text PRIMARY KEY, revision uuid, code text, expires_at bigint, attempts int,
            issued_at frozen<list<bigint>>, keep_until bigint)",
            // Partition: device. The next seq to allocate and the acknowledged watermark: reads
            // start past the watermark, never over the tombstones below it. Never deleted (16
            // bytes), so seqs are never reused.
            "CREATE TABLE IF NOT EXISTS queue_meta (
            user_id uuid, device_id int, next_seq bigint, acked_seq bigint,
            PRIMARY KEY ((user_id, device_id)))",
            // Partition: (device, seq / 4096); clustering: seq. An offline device's backlog spreads
            // over partitions of at most 4096 entries (a few MB); acknowledgements delete ranges
            // (`seq <= ?`) and whole partitions, never single rows. TTL: the entry's expiry.
            "CREATE TABLE IF NOT EXISTS queue (
            user_id uuid, device_id int, bucket bigint, seq bigint, enqueued_at bigint,
            expires_at bigint, payload blob,
            PRIMARY KEY ((user_id, device_id, bucket), seq))",
            // Partition: one de-duplication key (recipient device, sender device, client message
            // id): point reads, no wide partition for a busy recipient. TTL: the entry's expiry.
            "CREATE TABLE IF NOT EXISTS dedupe (
            user_id uuid, device_id int, sender_user uuid, sender_device int,
            client_message_id text, seq bigint, expires_at bigint,
            PRIMARY KEY ((user_id, device_id, sender_user, sender_device, client_message_id)))",
            // Partition: group. The record as JSON (its group actor replaces it whole, at most
            // ~100 KB for a thousand members) and its current invite code.
            "CREATE TABLE IF NOT EXISTS groups (group_id uuid PRIMARY KEY, invite_code text, record text)",
            // Partition: invite code. Claimed with INSERT IF NOT EXISTS, so a code resolves to one
            // group; lookups check it against the group's record.
            "CREATE TABLE IF NOT EXISTS group_invites (code text PRIMARY KEY, group_id uuid)",
            // Partition: (group, message_seq / 1024); clustering: message seq, newest first. Each
            // body is stored once (the member queues hold references); a busy group's month spreads
            // over partitions of at most 1024 bodies. TTL: the message's expiry.
            "CREATE TABLE IF NOT EXISTS group_messages (
            group_id uuid, bucket bigint, message_seq bigint, expires_at bigint, body blob,
            PRIMARY KEY ((group_id, bucket), message_seq))
            WITH CLUSTERING ORDER BY (message_seq DESC)",
            // Partition: group; clustering: bucket, newest first. The buckets of group_messages
            // that may hold messages (one row per 1024 messages), for the highest stored seq;
            // sweeps remove the rows of emptied buckets.
            "CREATE TABLE IF NOT EXISTS group_message_buckets (
            group_id uuid, bucket bigint, touched_at bigint,
            PRIMARY KEY (group_id, bucket)) WITH CLUSTERING ORDER BY (bucket DESC)",
            // Partition: one group de-duplication key (group, sender device, client message id).
            // TTL: the message's expiry.
            "CREATE TABLE IF NOT EXISTS group_dedupe (
            group_id uuid, sender_user uuid, sender_device int, client_message_id text,
            message_seq bigint, expires_at bigint,
            PRIMARY KEY ((group_id, sender_user, sender_device, client_message_id)))",
            // Partition: (group, message seq); clustering: user, kind, time. Receipts are only
            // inserted (never read-modify-written): the earliest time of each kind wins at read
            // time, whatever the order of arrival. A few rows per member (a thousand members: ~50
            // KB). The message's expiry is static; TTL: the message's expiry.
            "CREATE TABLE IF NOT EXISTS group_receipts (
            group_id uuid, message_seq bigint, user_id uuid, kind tinyint, at bigint,
            expires_at bigint static,
            PRIMARY KEY ((group_id, message_seq), user_id, kind, at))",
        ],
    },
    Migration {
        version: 2,
        description: "business records and queues",
        statements: &[
            // Partition: (table, partition) of a business record; clustering: its key, in
            // bytewise order (text compares by its UTF-8 bytes). What the business API lists
            // together (the tokens or templates of a business) is one partition of a few
            // hundred rows; `""` partitions hold one record per key and are never listed.
            // Puts and deletes are plain writes; inserts are INSERT IF NOT EXISTS.
            "CREATE TABLE IF NOT EXISTS business_records (
                record_table text, record_partition text, record_key text, value blob,
                PRIMARY KEY ((record_table, record_partition), record_key))",
            // Partition: one queue (its name behind a '/': CQL refuses an empty partition
            // key, and "" names a queue). Rows, in clustering order: the meta row (seq -1,
            // unique_key ''; never deleted) with the next seq, which every append takes in a
            // conditional batch, and the head (no item below it); the recorded unique keys
            // (seq 0, the key); the items (seq >= 1, unique_key ''). So an append's seqs,
            // items and unique keys are one lightweight transaction on one partition, and
            // every read of the meta row (the transaction's own included) is a point read
            // that never walks the tombstones of removed items, which a static column's
            // read would. Queues drain within minutes; unique keys stay until swept or
            // past their TTL, a day after `unique_until` (`layout::backstop_ttl`): a webhook
            // queue holds the inbound message ids of the last 35 days, some 100 bytes each
            // (10 MB for 3,000 inbound messages a day).
            "CREATE TABLE IF NOT EXISTS business_queues (
                queue text, seq bigint, unique_key text, value blob, unique_until bigint,
                next_seq bigint, head_seq bigint,
                PRIMARY KEY (queue, seq, unique_key))",
        ],
    },
];

/// `Invalid` unless `name` can be an unquoted keyspace name.
pub(crate) fn check_keyspace_name(name: &str) -> StoreResult<()> {
    let valid = !name.is_empty()
        && name.len() <= 48
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphabetic());
    if valid {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "keyspace name {name:?}: letters, digits and '_', at most 48, starting with a letter"
        )))
    }
}

/// The CREATE KEYSPACE statement of `config`.
pub(crate) fn create_keyspace_cql(config: &CqlConfig) -> String {
    let replication = match &config.datacenter {
        Some(dc) => format!(
            "{{'class': 'NetworkTopologyStrategy', '{}': {}}}",
            dc.replace('\'', "''"),
            config.replication_factor
        ),
        None => format!(
            "{{'class': 'SimpleStrategy', 'replication_factor': {}}}",
            config.replication_factor
        ),
    };
    let mut cql = format!(
        "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {replication}",
        config.keyspace
    );
    if config.scylla_extensions {
        // Lightweight transactions on tablet keyspaces came late to ScyllaDB: keep vnodes.
        cql.push_str(" AND tablets = {'enabled': false}");
    }
    cql
}

async fn ddl(session: &Session, cql: &str) -> StoreResult<()> {
    let mut statement = Statement::new(cql);
    statement.set_request_timeout(Some(DDL_TIMEOUT));
    session.query_unpaged(statement, ()).await.store_err()?;
    Ok(())
}

/// Creates the keyspace if missing, makes it the session's keyspace and applies the missing
/// migrations.
pub(crate) async fn prepare_keyspace(session: &Session, config: &CqlConfig) -> StoreResult<()> {
    check_keyspace_name(&config.keyspace)?;
    ddl(session, &create_keyspace_cql(config)).await?;
    session
        .use_keyspace(&config.keyspace, false)
        .await
        .map_err(|e| StoreError::Unavailable(format!("cannot use keyspace: {e}")))?;
    for cql in BOOTSTRAP {
        ddl(session, cql).await?;
    }
    if missing_versions(session).await?.is_empty() {
        return Ok(());
    }
    let owner = Uuid::new_v4();
    acquire_lease(session, owner).await?;
    let outcome = apply_missing(session).await;
    release_lease(session, owner).await?;
    outcome
}

async fn missing_versions(session: &Session) -> StoreResult<Vec<i32>> {
    let mut statement = Statement::new("SELECT version FROM schema_migrations");
    statement.set_request_timeout(Some(DDL_TIMEOUT));
    let result = session.query_unpaged(statement, ()).await.store_err()?;
    let rows = result.into_rows_result().decoding("schema_migrations")?;
    let applied = rows
        .rows::<(i32,)>()
        .decoding("schema_migrations")?
        .map(|row| row.map(|(v,)| v).decoding("schema_migrations"))
        .collect::<StoreResult<Vec<i32>>>()?;
    Ok(MIGRATIONS
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect())
}

async fn acquire_lease(session: &Session, owner: Uuid) -> StoreResult<()> {
    let started = tokio::time::Instant::now();
    loop {
        let result = session
            .query_unpaged(
                format!(
                    "INSERT INTO schema_lock (name, owner) VALUES ('migrations', ?) \
                     IF NOT EXISTS USING TTL {LEASE_TTL_SECS}"
                ),
                (owner,),
            )
            .await
            .store_err()?;
        let rows = result.into_rows_result().decoding("schema_lock")?;
        // `[applied]` comes first, then (when not applied) the current row.
        let applied = rows
            .maybe_first_row::<Row>()
            .decoding("schema_lock")?
            .and_then(|row| row.columns.into_iter().next().flatten())
            == Some(CqlValue::Boolean(true));
        if applied {
            return Ok(());
        }
        if started.elapsed() > MIGRATION_WAIT {
            return Err(StoreError::Unavailable(
                "another node holds the schema migration lease for too long".into(),
            ));
        }
        info!("another node is migrating the schema; waiting");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn release_lease(session: &Session, owner: Uuid) -> StoreResult<()> {
    session
        .query_unpaged(
            "DELETE FROM schema_lock WHERE name = 'migrations' IF owner = ?",
            (owner,),
        )
        .await
        .store_err()?;
    Ok(())
}

/// Under the lease: the versions still missing, in order.
async fn apply_missing(session: &Session) -> StoreResult<()> {
    let missing = missing_versions(session).await?;
    for migration in MIGRATIONS.iter().filter(|m| missing.contains(&m.version)) {
        info!(
            version = migration.version,
            "applying schema migration: {}", migration.description
        );
        for cql in migration.statements {
            ddl(session, cql).await?;
        }
        session
            .query_unpaged(
                "INSERT INTO schema_migrations (version, description, applied_at) \
                 VALUES (?, ?, toTimestamp(now()))",
                (migration.version, migration.description),
            )
            .await
            .store_err()?;
    }
    if !missing_versions(session).await?.is_empty() {
        return Err(corrupt(
            "schema_migrations",
            "migrations applied but not recorded",
        ));
    }
    Ok(())
}

/// The tables a store writes, for tests that empty a keyspace.
pub fn data_tables() -> impl Iterator<Item = &'static str> {
    MIGRATIONS
        .iter()
        .flat_map(|m| m.statements.iter())
        .filter_map(|cql| {
            let rest = cql.strip_prefix("CREATE TABLE IF NOT EXISTS ")?;
            rest.split([' ', '(']).next()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_names_are_checked() {
        assert!(check_keyspace_name("courier").is_ok());
        assert!(check_keyspace_name("courier_test_3").is_ok());
        for bad in ["", "1abc", "a-b", "a;DROP", &"k".repeat(49)] {
            assert!(check_keyspace_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn replication_follows_the_datacenter_setting() {
        let mut config = CqlConfig {
            keyspace: "courier".into(),
            replication_factor: 1,
            ..CqlConfig::default()
        };
        assert_eq!(
            create_keyspace_cql(&config),
            "CREATE KEYSPACE IF NOT EXISTS courier WITH replication = \
             {'class': 'SimpleStrategy', 'replication_factor': 1}"
        );
        config.datacenter = Some("eu-west".into());
        config.replication_factor = 3;
        config.scylla_extensions = true;
        assert_eq!(
            create_keyspace_cql(&config),
            "CREATE KEYSPACE IF NOT EXISTS courier WITH replication = \
             {'class': 'NetworkTopologyStrategy', 'eu-west': 3} AND tablets = {'enabled': false}"
        );
    }

    #[test]
    fn every_table_is_listed_once() {
        let tables: Vec<&str> = data_tables().collect();
        assert_eq!(tables.len(), 17);
        assert!(tables.contains(&"queue") && tables.contains(&"group_receipts"));
        assert!(tables.contains(&"business_records") && tables.contains(&"business_queues"));
        let mut sorted = tables.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), tables.len());
    }
}
