//! Every statement the store runs, prepared once at connect.

use std::time::Duration;

use courier_store::{StoreError, StoreResult};
use futures_util::future::try_join_all;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use crate::config::CqlConfig;
use crate::error::Driver;

/// The shortest client-side timeout of a full-table scan page.
const SCAN_TIMEOUT: Duration = Duration::from_secs(60);

/// Rows per page of a scan.
const SCAN_PAGE_ROWS: i32 = 1000;

/// How a statement runs.
#[derive(Clone, Copy)]
enum Kind {
    /// A read or an idempotent write at the configured consistency.
    Plain,
    /// A lightweight transaction (serial consistency from the config; never retried blindly).
    Lwt,
    /// A read that sees the latest outcome of lightweight transactions (`SERIAL`).
    SerialRead,
    /// A paged full-table scan with a long timeout.
    Scan,
}

struct Preparer<'a> {
    session: &'a Session,
    config: &'a CqlConfig,
}

impl Preparer<'_> {
    async fn prepare(&self, kind: Kind, cql: &str) -> StoreResult<PreparedStatement> {
        let cql = qualify(cql, &self.config.keyspace);
        let cql = match kind {
            Kind::Scan => scan_cql(&cql, self.config.scylla_extensions),
            _ => cql,
        };
        let mut statement = self.session.prepare(cql).await.store_err()?;
        match kind {
            Kind::Plain => statement.set_is_idempotent(true),
            Kind::Lwt => {
                statement.set_is_idempotent(false);
                statement.set_serial_consistency(Some(self.config.serial_consistency()));
            }
            Kind::SerialRead => {
                statement.set_is_idempotent(true);
                statement.set_consistency(self.config.serial_read_consistency());
            }
            Kind::Scan => {
                statement.set_is_idempotent(true);
                statement.set_page_size(SCAN_PAGE_ROWS);
                statement.set_request_timeout(Some(self.config.request_timeout.max(SCAN_TIMEOUT)));
            }
        }
        Ok(statement)
    }
}

/// `cql` with every table name qualified by `keyspace` (the word after `FROM`, `INTO` or
/// `UPDATE`). Unqualified names in prepared statements are ambiguous: Cassandra may hand a
/// session a statement prepared by another client for the same text in another keyspace, and a
/// read would then look at the other keyspace's table.
fn qualify(cql: &str, keyspace: &str) -> String {
    let mut out = Vec::new();
    let mut table_next = false;
    for word in cql.split_whitespace() {
        if table_next && !word.contains('.') {
            out.push(format!("{keyspace}.{word}"));
        } else {
            out.push(word.to_owned());
        }
        table_next = ["FROM", "INTO", "UPDATE"]
            .iter()
            .any(|k| word.eq_ignore_ascii_case(k));
    }
    out.join(" ")
}

/// A scan's CQL: with ScyllaDB extensions, the server-side timeout is raised to match the
/// client's.
fn scan_cql(cql: &str, scylla_extensions: bool) -> String {
    if scylla_extensions {
        format!("{cql} USING TIMEOUT {}s", SCAN_TIMEOUT.as_secs())
    } else {
        cql.to_owned()
    }
}

macro_rules! statements {
    ($($name:ident: $kind:ident $cql:literal;)+) => {
        pub(crate) struct Statements {
            $(pub $name: PreparedStatement,)+
        }

        impl Statements {
            pub async fn prepare(session: &Session, config: &CqlConfig) -> StoreResult<Self> {
                let preparer = Preparer { session, config };
                let all = [$((Kind::$kind, $cql)),+];
                let mut prepared =
                    try_join_all(all.iter().map(|&(kind, cql)| preparer.prepare(kind, cql)))
                        .await?
                        .into_iter();
                let mut next = || {
                    prepared
                        .next()
                        .ok_or_else(|| StoreError::Unavailable("a statement was not prepared".into()))
                };
                Ok(Statements {
                    $($name: next()?,)+
                })
            }
        }
    };
}

statements! {
    // ---- accounts, devices ----
    phone_get: Plain "SELECT user_id FROM phones WHERE phone = ?";
    phone_claim: Lwt "INSERT INTO phones (phone, user_id) VALUES (?, ?) IF NOT EXISTS";
    account_get: Plain "SELECT phone, created_at, last_seen_visible, last_seen, next_device_id \
        FROM accounts WHERE user_id = ?";
    account_get_serial: SerialRead "SELECT phone, created_at, last_seen_visible, last_seen, \
        next_device_id FROM accounts WHERE user_id = ?";
    account_create: Lwt "INSERT INTO accounts (user_id, phone, created_at, last_seen_visible, \
        last_seen, next_device_id) VALUES (?, ?, ?, true, 0, 2) IF NOT EXISTS";
    account_next_device: Lwt "UPDATE accounts SET next_device_id = ? WHERE user_id = ? \
        IF next_device_id = ?";
    account_set_visible: Plain "UPDATE accounts SET last_seen_visible = ? WHERE user_id = ?";
    account_set_last_seen: Plain "UPDATE accounts SET last_seen = ? WHERE user_id = ?";
    devices_of_user: Plain "SELECT device_id, name, credential_hash, created_at FROM devices \
        WHERE user_id = ?";
    device_get: Plain "SELECT device_id, name, credential_hash, created_at FROM devices \
        WHERE user_id = ? AND device_id = ?";
    device_insert: Plain "INSERT INTO devices (user_id, device_id, name, credential_hash, \
        created_at) VALUES (?, ?, ?, ?, ?)";
    devices_delete_below: Plain "DELETE FROM devices WHERE user_id = ? AND device_id < ?";
    device_delete: Plain "DELETE FROM devices WHERE user_id = ? AND device_id = ?";
    device_keys_delete_below: Plain "DELETE FROM device_keys WHERE user_id = ? AND device_id < ?";
    prekeys_delete_device: Plain "DELETE FROM one_time_prekeys WHERE user_id = ? AND device_id = ?";

    // ---- codes ----
    code_get: Plain "SELECT revision, code, expires_at, attempts, issued_at, keep_until \
        FROM codes WHERE phone = ?";
    code_get_serial: SerialRead "SELECT revision, code, expires_at, attempts, issued_at, \
        keep_until FROM codes WHERE phone = ?";
    code_insert: Lwt "INSERT INTO codes (revision, code, expires_at, attempts, issued_at, \
        keep_until, phone) VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?";
    code_update: Lwt "UPDATE codes USING TTL ? SET revision = ?, code = ?, expires_at = ?, \
        attempts = ?, issued_at = ?, keep_until = ? WHERE phone = ? IF revision = ?";

    // ---- keys ----
    device_keys_get: Plain "SELECT identity_ed25519, identity_x25519, signed_prekey_id, \
        signed_prekey, signed_prekey_signature FROM device_keys WHERE user_id = ? AND device_id = ?";
    device_keys_put: Plain "INSERT INTO device_keys (user_id, device_id, identity_ed25519, \
        identity_x25519, signed_prekey_id, signed_prekey, signed_prekey_signature) \
        VALUES (?, ?, ?, ?, ?, ?, ?)";
    signed_prekey_put: Plain "UPDATE device_keys SET signed_prekey_id = ?, signed_prekey = ?, \
        signed_prekey_signature = ? WHERE user_id = ? AND device_id = ?";
    prekey_put: Plain "INSERT INTO one_time_prekeys (user_id, device_id, key_id, public_key) \
        VALUES (?, ?, ?, ?)";
    prekey_count: Plain "SELECT COUNT(*) FROM one_time_prekeys WHERE user_id = ? AND device_id = ?";
    prekey_candidates: Plain "SELECT key_id, public_key FROM one_time_prekeys \
        WHERE user_id = ? AND device_id = ? LIMIT 16";
    prekey_take: Lwt "DELETE FROM one_time_prekeys WHERE user_id = ? AND device_id = ? \
        AND key_id = ? IF public_key = ?";

    // ---- queues ----
    meta_get: Plain "SELECT next_seq, acked_seq FROM queue_meta WHERE user_id = ? AND device_id = ?";
    meta_set_next: Plain "UPDATE queue_meta SET next_seq = ? WHERE user_id = ? AND device_id = ?";
    meta_set_acked: Plain "UPDATE queue_meta SET acked_seq = ? WHERE user_id = ? AND device_id = ?";
    queue_insert: Plain "INSERT INTO queue (user_id, device_id, bucket, seq, enqueued_at, \
        expires_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?";
    queue_read: Plain "SELECT seq, enqueued_at, expires_at, payload FROM queue \
        WHERE user_id = ? AND device_id = ? AND bucket = ? AND seq >= ? LIMIT ?";
    queue_count: Plain "SELECT COUNT(*) FROM queue WHERE user_id = ? AND device_id = ? \
        AND bucket = ? AND seq > ?";
    queue_delete_bucket: Plain "DELETE FROM queue WHERE user_id = ? AND device_id = ? \
        AND bucket = ?";
    queue_delete_up_to: Plain "DELETE FROM queue WHERE user_id = ? AND device_id = ? \
        AND bucket = ? AND seq <= ?";
    dedupe_get: Plain "SELECT seq, expires_at FROM dedupe WHERE user_id = ? AND device_id = ? \
        AND sender_user = ? AND sender_device = ? AND client_message_id = ?";
    dedupe_put: Plain "INSERT INTO dedupe (user_id, device_id, sender_user, sender_device, \
        client_message_id, seq, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?";

    // ---- groups ----
    group_get: Plain "SELECT record FROM groups WHERE group_id = ?";
    group_put: Plain "INSERT INTO groups (group_id, invite_code, record) VALUES (?, ?, ?)";
    invite_get: Plain "SELECT group_id FROM group_invites WHERE code = ?";
    invite_claim: Lwt "INSERT INTO group_invites (code, group_id) VALUES (?, ?) IF NOT EXISTS";
    invite_take_over: Lwt "UPDATE group_invites SET group_id = ? WHERE code = ? IF group_id = ?";
    invite_release: Lwt "DELETE FROM group_invites WHERE code = ? IF group_id = ?";
    group_message_get: Plain "SELECT expires_at, body FROM group_messages \
        WHERE group_id = ? AND bucket = ? AND message_seq = ?";
    group_message_expiry: Plain "SELECT expires_at FROM group_messages \
        WHERE group_id = ? AND bucket = ? AND message_seq = ?";
    group_message_put: Plain "INSERT INTO group_messages (group_id, bucket, message_seq, \
        expires_at, body) VALUES (?, ?, ?, ?, ?) USING TTL ?";
    group_message_last: Plain "SELECT message_seq FROM group_messages \
        WHERE group_id = ? AND bucket = ? LIMIT 1";
    group_buckets: Plain "SELECT bucket FROM group_message_buckets WHERE group_id = ?";
    group_bucket_put: Plain "INSERT INTO group_message_buckets (group_id, bucket, touched_at) \
        VALUES (?, ?, ?)";
    group_dedupe_get: Plain "SELECT message_seq, expires_at FROM group_dedupe \
        WHERE group_id = ? AND sender_user = ? AND sender_device = ? AND client_message_id = ?";
    group_dedupe_put: Plain "INSERT INTO group_dedupe (group_id, sender_user, sender_device, \
        client_message_id, message_seq, expires_at) VALUES (?, ?, ?, ?, ?, ?) USING TTL ?";
    receipt_put: Plain "INSERT INTO group_receipts (group_id, message_seq, user_id, kind, at, \
        expires_at) VALUES (?, ?, ?, ?, ?, ?) USING TTL ?";
    receipts_get: Plain "SELECT user_id, kind, at FROM group_receipts \
        WHERE group_id = ? AND message_seq = ?";

    // ---- business records ----
    record_put: Plain "INSERT INTO business_records (record_table, record_partition, \
        record_key, value) VALUES (?, ?, ?, ?)";
    record_insert: Lwt "INSERT INTO business_records (record_table, record_partition, \
        record_key, value) VALUES (?, ?, ?, ?) IF NOT EXISTS";
    record_get: Plain "SELECT value FROM business_records WHERE record_table = ? \
        AND record_partition = ? AND record_key = ?";
    record_delete: Plain "DELETE FROM business_records WHERE record_table = ? \
        AND record_partition = ? AND record_key = ?";
    records_from: Plain "SELECT record_key, value FROM business_records WHERE record_table = ? \
        AND record_partition = ? AND record_key >= ? LIMIT ?";
    records_after: Plain "SELECT record_key, value FROM business_records WHERE record_table = ? \
        AND record_partition = ? AND record_key > ? LIMIT ?";

    // ---- business queues ----
    bq_meta_get: Plain "SELECT next_seq, head_seq FROM business_queues WHERE queue = ? \
        AND seq = -1 AND unique_key = ''";
    bq_meta_get_serial: SerialRead "SELECT next_seq, head_seq FROM business_queues \
        WHERE queue = ? AND seq = -1 AND unique_key = ''";
    bq_unique_get: Plain "SELECT unique_key, unique_until FROM business_queues \
        WHERE queue = ? AND seq = 0 AND unique_key IN ?";
    bq_unique_get_serial: SerialRead "SELECT unique_key, unique_until FROM business_queues \
        WHERE queue = ? AND seq = 0 AND unique_key IN ?";
    bq_take_seqs: Lwt "UPDATE business_queues SET next_seq = ? WHERE queue = ? AND seq = -1 \
        AND unique_key = '' IF next_seq = ?";
    bq_item_put: Plain "INSERT INTO business_queues (queue, seq, unique_key, value) \
        VALUES (?, ?, '', ?)";
    bq_unique_record: Lwt "INSERT INTO business_queues (queue, seq, unique_key, unique_until) \
        VALUES (?, 0, ?, ?) IF NOT EXISTS USING TTL ?";
    bq_unique_renew: Lwt "UPDATE business_queues USING TTL ? SET unique_until = ? \
        WHERE queue = ? AND seq = 0 AND unique_key = ? IF unique_until = ?";
    bq_items_read: Plain "SELECT seq, value FROM business_queues WHERE queue = ? AND seq >= ? \
        LIMIT ?";
    bq_items_written: Plain "SELECT seq, WRITETIME(value) FROM business_queues \
        WHERE queue = ? AND seq IN ?";
    bq_first_item: Plain "SELECT seq FROM business_queues WHERE queue = ? AND seq >= ? LIMIT 1";
    bq_item_delete: Plain "DELETE FROM business_queues USING TIMESTAMP ? WHERE queue = ? \
        AND seq = ? AND unique_key = ''";
    bq_set_head: Plain "UPDATE business_queues SET head_seq = ? WHERE queue = ? AND seq = -1 \
        AND unique_key = ''";

    // ---- scans and sweeps ----
    scan_queue: Scan "SELECT user_id, device_id, bucket, seq, expires_at FROM queue";
    queue_delete_row: Plain "DELETE FROM queue WHERE user_id = ? AND device_id = ? \
        AND bucket = ? AND seq = ?";
    scan_dedupe: Scan "SELECT user_id, device_id, sender_user, sender_device, \
        client_message_id, expires_at, WRITETIME(expires_at) FROM dedupe";
    dedupe_delete: Plain "DELETE FROM dedupe USING TIMESTAMP ? WHERE user_id = ? \
        AND device_id = ? AND sender_user = ? AND sender_device = ? AND client_message_id = ?";
    scan_group_messages: Scan "SELECT group_id, bucket, message_seq, expires_at \
        FROM group_messages";
    group_message_delete: Plain "DELETE FROM group_messages WHERE group_id = ? AND bucket = ? \
        AND message_seq = ?";
    group_bucket_written: Plain "SELECT WRITETIME(touched_at) FROM group_message_buckets \
        WHERE group_id = ? AND bucket = ?";
    group_bucket_delete: Plain "DELETE FROM group_message_buckets USING TIMESTAMP ? \
        WHERE group_id = ? AND bucket = ?";
    scan_group_dedupe: Scan "SELECT group_id, sender_user, sender_device, client_message_id, \
        expires_at, WRITETIME(expires_at) FROM group_dedupe";
    group_dedupe_delete: Plain "DELETE FROM group_dedupe USING TIMESTAMP ? WHERE group_id = ? \
        AND sender_user = ? AND sender_device = ? AND client_message_id = ?";
    scan_receipts: Scan "SELECT DISTINCT group_id, message_seq, expires_at FROM group_receipts";
    receipts_delete: Plain "DELETE FROM group_receipts WHERE group_id = ? AND message_seq = ?";
    scan_bq_unique: Scan "SELECT queue, seq, unique_key, unique_until, WRITETIME(unique_until) \
        FROM business_queues";
    bq_unique_delete: Plain "DELETE FROM business_queues USING TIMESTAMP ? WHERE queue = ? \
        AND seq = 0 AND unique_key = ?";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_raise_the_server_timeout_only_on_scylla() {
        assert_eq!(scan_cql("SELECT a FROM t", false), "SELECT a FROM t");
        assert_eq!(
            scan_cql("SELECT a FROM t", true),
            "SELECT a FROM t USING TIMEOUT 60s"
        );
    }

    #[test]
    fn table_names_are_qualified_by_the_keyspace() {
        assert_eq!(
            qualify("SELECT a, b FROM devices WHERE user_id = ?", "ks"),
            "SELECT a, b FROM ks.devices WHERE user_id = ?"
        );
        assert_eq!(
            qualify("INSERT INTO phones (p) VALUES (?) IF NOT EXISTS", "ks"),
            "INSERT INTO ks.phones (p) VALUES (?) IF NOT EXISTS"
        );
        assert_eq!(
            qualify("UPDATE accounts SET x = ? WHERE u = ?", "ks"),
            "UPDATE ks.accounts SET x = ? WHERE u = ?"
        );
        assert_eq!(
            qualify("DELETE FROM dedupe USING TIMESTAMP ? WHERE k = ?", "ks"),
            "DELETE FROM ks.dedupe USING TIMESTAMP ? WHERE k = ?"
        );
        assert_eq!(
            qualify("SELECT x FROM other.t", "ks"),
            "SELECT x FROM other.t"
        );
    }
}
