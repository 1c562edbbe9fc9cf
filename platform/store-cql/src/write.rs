//! [`WriteSet`]: the writes of one store operation, applied as one logged batch when they fit,
//! otherwise phase by phase.
//!
//! A logged batch is atomic: after a crash either every write of it lands or none does. The
//! cluster refuses logged batches above `batch_size_fail_threshold` (50 KiB by default), so a
//! set larger than [`LOGGED_BATCH_BUDGET`] (a 64 KiB payload, a group message to thousands of
//! devices) is written in three phases instead:
//! 1. [`Phase::Reserve`]: the queues' next seqs, so a crash can leave a gap, never a reuse;
//! 2. [`Phase::Data`]: entries and bodies, one single-partition unlogged batch per partition,
//!    many in flight;
//! 3. [`Phase::Commit`]: the dedupe records, which make a retry a duplicate, last: a crash
//!    before them lets the caller's retry write everything again (a duplicate delivery, never a
//!    lost entry).
//!
//! Such a write is not atomic under a crash: part of it may land while the caller got an
//! error, and the caller's retry completes it.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use courier_store::StoreResult;
use futures_util::future::try_join_all;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;

use crate::db::{Db, MAX_IN_FLIGHT};
use crate::error::Driver;

/// Largest estimated size of a set written as one logged batch (below the default 50 KiB
/// `batch_size_fail_threshold`, with room for the estimate's slack).
pub(crate) const LOGGED_BATCH_BUDGET: usize = 40 * 1024;

/// Most statements in one logged batch.
const MAX_BATCH_STATEMENTS: usize = 1024;

/// Estimated bytes of one statement besides its blobs and texts: keys, numbers, and the
/// per-cell timestamps and TTLs the cluster counts in a batch's size (a queue row with a
/// 24-byte payload measured about 150 bytes in all).
pub(crate) const ROW_OVERHEAD: usize = 128;

/// When a write goes if its set is too large for one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Phase {
    Reserve,
    Data,
    Commit,
}

type Values = Box<dyn SerializeRow + Send + Sync>;

struct Write {
    phase: Phase,
    partition: u64,
    statement: PreparedStatement,
    values: Values,
    bytes: usize,
}

/// The writes of one operation, in the order they were added.
#[derive(Default)]
pub(crate) struct WriteSet {
    writes: Vec<Write>,
}

/// A partition identity for grouping writes: the table and the partition key's values.
pub(crate) fn partition_of(table: &str, key: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    table.hash(&mut hasher);
    key.hash(&mut hasher);
    hasher.finish()
}

impl WriteSet {
    /// Adds a write of about `payload_bytes` of blobs and texts to `partition`.
    pub fn push(
        &mut self,
        phase: Phase,
        partition: u64,
        statement: &PreparedStatement,
        values: impl SerializeRow + Send + Sync + 'static,
        payload_bytes: usize,
    ) {
        self.writes.push(Write {
            phase,
            partition,
            statement: statement.clone(),
            values: Box::new(values),
            bytes: payload_bytes + ROW_OVERHEAD,
        });
    }

    /// Whether the set goes as one logged batch.
    pub fn fits_one_batch(&self) -> bool {
        fits_one_batch(self.writes.iter().map(|w| w.bytes), self.writes.len())
    }

    pub async fn apply(self, db: &Db) -> StoreResult<()> {
        match self.writes.len() {
            0 => Ok(()),
            1 => {
                let write = &self.writes[0];
                db.execute(&write.statement, &write.values).await?;
                Ok(())
            }
            _ if self.fits_one_batch() => {
                let mut writes = self.writes;
                writes.sort_by_key(|w| w.phase); // stable: the order within a phase stays
                run_batch(db, BatchType::Logged, &writes).await
            }
            _ => self.apply_in_phases(db).await,
        }
    }

    async fn apply_in_phases(self, db: &Db) -> StoreResult<()> {
        for phase in [Phase::Reserve, Phase::Data, Phase::Commit] {
            let mut by_partition: HashMap<u64, Vec<&Write>> = HashMap::new();
            let mut order = Vec::new();
            for write in self.writes.iter().filter(|w| w.phase == phase) {
                let group = by_partition.entry(write.partition).or_default();
                if group.is_empty() {
                    order.push(write.partition);
                }
                group.push(write);
            }
            let mut groups: Vec<Vec<&Write>> = order
                .into_iter()
                .filter_map(|p| by_partition.remove(&p))
                .collect();
            while !groups.is_empty() {
                let rest = groups.split_off(groups.len().min(MAX_IN_FLIGHT));
                try_join_all(groups.iter().map(|group| run_group(db, group))).await?;
                groups = rest;
            }
        }
        Ok(())
    }
}

/// Whether statements of these estimated sizes go as one logged batch.
fn fits_one_batch(sizes: impl Iterator<Item = usize>, statements: usize) -> bool {
    statements <= MAX_BATCH_STATEMENTS && sizes.sum::<usize>() <= LOGGED_BATCH_BUDGET
}

/// One partition's writes: the statement alone, or an unlogged batch (atomic and isolated
/// within one partition).
async fn run_group(db: &Db, group: &[&Write]) -> StoreResult<()> {
    match group {
        [single] => db
            .execute(&single.statement, &single.values)
            .await
            .map(drop),
        _ => {
            let mut batch = Batch::new(BatchType::Unlogged);
            for write in group {
                batch.append_statement(write.statement.clone());
            }
            batch.set_is_idempotent(true);
            let values: Vec<&Values> = group.iter().map(|w| &w.values).collect();
            db.session.batch(&batch, values).await.store_err().map(drop)
        }
    }
}

async fn run_batch(db: &Db, batch_type: BatchType, writes: &[Write]) -> StoreResult<()> {
    let mut batch = Batch::new(batch_type);
    for write in writes {
        batch.append_statement(write.statement.clone());
    }
    // Every write of the store's batches sets fixed values: running one twice is harmless.
    batch.set_is_idempotent(true);
    let values: Vec<&Values> = writes.iter().map(|w| &w.values).collect();
    db.session.batch(&batch, values).await.store_err().map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(statements: usize, payload: usize) -> impl Iterator<Item = usize> {
        std::iter::repeat_n(payload + ROW_OVERHEAD, statements)
    }

    #[test]
    fn small_sets_go_as_one_batch_large_ones_in_phases() {
        // A message to a few devices: entry, dedupe record and next seq per device.
        assert!(fits_one_batch(sizes(3 * 8, 300), 3 * 8));
        // A group message to 200 devices: under the cluster's 50 KiB limit only by estimate
        // slack, so it goes in phases (it measured 50.4 KiB as one batch).
        assert!(!fits_one_batch(sizes(2 * 200 + 3, 24), 2 * 200 + 3));
        // One 64 KiB payload.
        assert!(!fits_one_batch(sizes(2, 64 * 1024), 2));
        assert!(!fits_one_batch(
            sizes(MAX_BATCH_STATEMENTS + 1, 0),
            MAX_BATCH_STATEMENTS + 1
        ));
    }
}
