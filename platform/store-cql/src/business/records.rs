//! Business records in `business_records`: one partition per `(table, partition)`, the key as
//! clustering column.

use bytes::Bytes;
use courier_store::StoreResult;
use courier_store::business::RecordKey;

use crate::CqlStore;

/// Most records one read of a partition asks for.
const LIST_PAGE: usize = 1000;

impl CqlStore {
    pub(crate) async fn put_record_impl(&self, key: &RecordKey, value: Bytes) -> StoreResult<()> {
        self.db
            .execute(
                &self.st.record_put,
                (&key.table, &key.partition, &key.key, value),
            )
            .await
            .map(drop)
    }

    /// INSERT IF NOT EXISTS under the key's stripe: racing inserts in this process queue up
    /// instead of contending in Paxos, and those of other processes lose the transaction.
    pub(crate) async fn insert_record_impl(
        &self,
        key: &RecordKey,
        value: Bytes,
    ) -> StoreResult<bool> {
        let _record = self.locks.business_records.lock(key).await;
        let outcome = self
            .db
            .lwt(
                &self.st.record_insert,
                (&key.table, &key.partition, &key.key, value),
                "business_records",
            )
            .await?;
        Ok(outcome.applied)
    }

    pub(crate) async fn get_record_impl(&self, key: &RecordKey) -> StoreResult<Option<Bytes>> {
        let row: Option<(Bytes,)> = self
            .db
            .maybe_row(
                &self.st.record_get,
                (&key.table, &key.partition, &key.key),
                "business_records",
            )
            .await?;
        Ok(row.map(|(value,)| value))
    }

    pub(crate) async fn delete_record_impl(&self, key: &RecordKey) -> StoreResult<()> {
        self.db
            .execute(
                &self.st.record_delete,
                (&key.table, &key.partition, &key.key),
            )
            .await
            .map(drop)
    }

    /// Reads the partition in pages of at most [`LIST_PAGE`] rows, each page after the last
    /// key of the one before.
    pub(crate) async fn list_records_impl(
        &self,
        table: &str,
        partition: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Bytes)>> {
        let mut records: Vec<(String, Bytes)> = Vec::new();
        // `None`: from the smallest key, "" included.
        let mut from: Option<String> = after.map(str::to_owned);
        while records.len() < limit {
            let want = (limit - records.len()).min(LIST_PAGE);
            let values = (table, partition, from.as_deref().unwrap_or(""), want as i32);
            let statement = match from {
                Some(_) => &self.st.records_after,
                None => &self.st.records_from,
            };
            let rows: Vec<(String, Bytes)> =
                self.db.rows(statement, values, "business_records").await?;
            let got = rows.len();
            if let Some((last, _)) = rows.last() {
                from = Some(last.clone());
            }
            records.extend(rows);
            if got < want {
                break;
            }
        }
        Ok(records)
    }
}
