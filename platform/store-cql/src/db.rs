//! [`Db`]: the session and the few ways the store runs a prepared statement (rows, one row,
//! a lightweight transaction or conditional batch, a scan, a group of writes), each mapping
//! driver errors once.

use std::sync::Arc;

use courier_store::StoreResult;
use futures_util::StreamExt;
use futures_util::future::try_join_all;
use scylla::client::pager::TypedRowStream;
use scylla::client::session::Session;
use scylla::deserialize::row::DeserializeRow;
use scylla::response::query_result::QueryResult;
use scylla::serialize::batch::BatchValues;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::Batch;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};

use crate::error::{DecodeContext, Driver, corrupt};

/// How many requests a store keeps in flight for one call (a fan-out, a sweep step).
pub(crate) const MAX_IN_FLIGHT: usize = 64;

#[derive(Clone)]
pub(crate) struct Db {
    pub session: Arc<Session>,
}

impl Db {
    pub async fn execute(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> StoreResult<QueryResult> {
        self.session
            .execute_unpaged(statement, values)
            .await
            .store_err()
    }

    /// Every row of an unpaged read (a partition or a bounded slice of one).
    pub async fn rows<R>(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
        table: &'static str,
    ) -> StoreResult<Vec<R>>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm>,
    {
        let result = self.execute(statement, values).await?;
        let rows = result.into_rows_result().decoding(table)?;
        rows.rows::<R>()
            .decoding(table)?
            .map(|row| row.decoding(table))
            .collect()
    }

    /// The first row of a read, if any.
    pub async fn maybe_row<R>(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
        table: &'static str,
    ) -> StoreResult<Option<R>>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm>,
    {
        let result = self.execute(statement, values).await?;
        let rows = result.into_rows_result().decoding(table)?;
        rows.maybe_first_row::<R>().decoding(table)
    }

    /// Runs a lightweight transaction: whether it applied, and the current values the cluster
    /// sent back when it did not.
    pub async fn lwt(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
        table: &'static str,
    ) -> StoreResult<Lwt> {
        let result = self.execute(statement, values).await?;
        Lwt::from_result(result, table)
    }

    /// Runs a conditional batch: one lightweight transaction over the statements of one
    /// partition, which all apply or none does. Whether it applied.
    pub async fn lwt_batch(
        &self,
        batch: &Batch,
        values: impl BatchValues,
        table: &'static str,
    ) -> StoreResult<bool> {
        let result = self.session.batch(batch, values).await.store_err()?;
        Ok(Lwt::from_result(result, table)?.applied)
    }

    /// Starts a paged scan (the pages are fetched as [`Scan::next_chunk`] asks).
    pub async fn scan<R>(
        &self,
        statement: &PreparedStatement,
        table: &'static str,
    ) -> StoreResult<Scan<R>>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm> + 'static,
    {
        let pager = self
            .session
            .execute_iter(statement.clone(), ())
            .await
            .store_err()?;
        let rows = pager.rows_stream::<R>().decoding(table)?;
        Ok(Scan { rows })
    }

    /// Runs independent writes with at most [`MAX_IN_FLIGHT`] in flight.
    pub async fn execute_all<V>(
        &self,
        statement: &PreparedStatement,
        values: impl IntoIterator<Item = V>,
    ) -> StoreResult<()>
    where
        V: SerializeRow,
    {
        let values: Vec<V> = values.into_iter().collect();
        let mut values = values.into_iter().peekable();
        while values.peek().is_some() {
            let chunk: Vec<V> = values.by_ref().take(MAX_IN_FLIGHT).collect();
            try_join_all(chunk.into_iter().map(|v| self.execute(statement, v))).await?;
        }
        Ok(())
    }
}

/// The outcome of a lightweight transaction.
pub(crate) struct Lwt {
    pub applied: bool,
    names: Vec<String>,
    row: Row,
}

impl Lwt {
    fn from_result(result: QueryResult, table: &'static str) -> StoreResult<Lwt> {
        let rows = result.into_rows_result().decoding(table)?;
        let names: Vec<String> = rows
            .column_specs()
            .iter()
            .map(|spec| spec.name().to_owned())
            .collect();
        let row = rows
            .maybe_first_row::<Row>()
            .decoding(table)?
            .ok_or_else(|| corrupt(table, "a lightweight transaction returned no row"))?;
        let applied = match names
            .iter()
            .position(|n| n == "[applied]")
            .and_then(|i| row.columns.get(i).cloned().flatten())
        {
            Some(CqlValue::Boolean(applied)) => applied,
            other => return Err(corrupt(table, format!("[applied] column is {other:?}"))),
        };
        Ok(Lwt {
            applied,
            names,
            row,
        })
    }

    /// A column of the current row sent back with a transaction that did not apply.
    pub fn column(&self, name: &str) -> Option<&CqlValue> {
        let index = self.names.iter().position(|n| n == name)?;
        self.row.columns.get(index)?.as_ref()
    }

    pub fn uuid(&self, name: &str) -> Option<uuid::Uuid> {
        match self.column(name) {
            Some(CqlValue::Uuid(id)) => Some(*id),
            _ => None,
        }
    }
}

/// A paged scan in progress.
pub(crate) struct Scan<R> {
    rows: TypedRowStream<R>,
}

impl<R> Scan<R>
where
    R: for<'f, 'm> DeserializeRow<'f, 'm> + 'static,
{
    /// The next up to `max` rows that `keep` maps to something, and whether the scan is over.
    pub async fn next_chunk<V>(
        &mut self,
        max: usize,
        mut keep: impl FnMut(R) -> Option<V>,
    ) -> StoreResult<(Vec<V>, bool)> {
        let mut chunk = Vec::new();
        while chunk.len() < max {
            match self.rows.next().await {
                Some(row) => chunk.extend(keep(row.store_err()?)),
                None => return Ok((chunk, true)),
            }
        }
        Ok((chunk, false))
    }
}
