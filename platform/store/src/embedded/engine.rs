//! The fjall database and its keyspaces, the locks that make read-modify-write operations
//! atomic, and the write batch every operation commits.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode};

use super::Durability;
use super::codec::DeviceKey;
use super::device_cache::DeviceCache;
use crate::error::{StoreError, StoreResult};

impl From<fjall::Error> for StoreError {
    fn from(error: fjall::Error) -> Self {
        StoreError::Unavailable(format!("embedded engine: {error}"))
    }
}

/// One keyspace per record kind (see the key layout in the module docs of `embedded`).
pub(super) struct Keyspaces {
    pub accounts: Keyspace,
    pub phones: Keyspace,
    pub devices: Keyspace,
    pub device_keys: Keyspace,
    pub prekeys: Keyspace,
    pub codes: Keyspace,
    pub queue: Keyspace,
    pub queue_meta: Keyspace,
    pub dedupe: Keyspace,
    pub groups: Keyspace,
    pub group_invites: Keyspace,
    pub group_messages: Keyspace,
    pub group_dedupe: Keyspace,
    pub group_receipts: Keyspace,
    pub business_records: Keyspace,
    pub business_queue: Keyspace,
    pub business_queue_meta: Keyspace,
    pub business_unique: Keyspace,
}

/// Locks around read-modify-write sequences. They guard no data, only the window between
/// reading records and committing the batch built from them. Order when several are held:
/// `accounts`, then `keys`, then `groups`, then `queues` (`codes` is never held with another).
/// `groups` guards the group keyspaces (records, invites, messages, their dedupe records and
/// receipts); a group message takes it, then `queues` for the reference entries.
/// `business_records` and `business_queues` guard the business keyspaces and are never held
/// with another lock.
#[derive(Default)]
pub(super) struct Locks {
    pub accounts: Mutex<()>,
    pub keys: Mutex<()>,
    pub codes: Mutex<()>,
    pub groups: Mutex<()>,
    pub queues: Mutex<()>,
    /// Record writes: an insert's existence check and its commit see no write in between.
    pub business_records: Mutex<()>,
    /// Business queues: seq allocation, unique key checks, the unique-key sweep.
    pub business_queues: Mutex<()>,
}

/// Largest memtable of a keyspace before it is flushed to disk.
const MEMTABLE_BYTES: u64 = 8 * 1024 * 1024;

/// The synchronous core of the store; `EmbeddedStore` decides on which thread it runs.
pub(super) struct Engine {
    pub db: Database,
    pub ks: Keyspaces,
    pub locks: Locks,
    durability: Durability,
    /// Journal syncs so far (group commits with `Sync`).
    syncs: AtomicU64,
    pub device_cache: DeviceCache,
    /// `queue_meta` records written since the store opened (see `queues`); updated only by
    /// writers holding `locks.queues`, after their batch commits.
    pub queue_metas: Mutex<HashMap<DeviceKey, (u64, u64)>>,
}

/// Takes a lock that guards no data, so a panic elsewhere (poisoning) leaves nothing to repair.
pub(super) fn lock(mutex: &Mutex<()>) -> MutexGuard<'_, ()> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Engine {
    pub fn open(path: &Path, durability: Durability) -> StoreResult<Self> {
        let db = Database::builder(path).open()?;
        // Small memtables: the hot keyspaces (queues, de-duplication) see a steady stream of
        // writes and tombstones; flushing 8 MiB at a time keeps both the in-memory lookups and
        // the pauses of a flush short (64 MiB memtables stalled writes for a second or more
        // under load, see docs/benchmarks.md).
        let keyspace = |name: &str| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES)
            })
        };
        let ks = Keyspaces {
            accounts: keyspace("accounts")?,
            phones: keyspace("phones")?,
            devices: keyspace("devices")?,
            device_keys: keyspace("device_keys")?,
            prekeys: keyspace("prekeys")?,
            codes: keyspace("codes")?,
            queue: keyspace("queue")?,
            queue_meta: keyspace("queue_meta")?,
            dedupe: keyspace("dedupe")?,
            groups: keyspace("groups")?,
            group_invites: keyspace("group_invites")?,
            group_messages: keyspace("group_messages")?,
            group_dedupe: keyspace("group_dedupe")?,
            group_receipts: keyspace("group_receipts")?,
            business_records: keyspace("business_records")?,
            business_queue: keyspace("business_queue")?,
            business_queue_meta: keyspace("business_queue_meta")?,
            business_unique: keyspace("business_unique")?,
        };
        Ok(Engine {
            db,
            ks,
            locks: Locks::default(),
            durability,
            syncs: AtomicU64::new(0),
            device_cache: DeviceCache::default(),
            queue_metas: Mutex::new(HashMap::new()),
        })
    }

    /// A batch that, once committed, is in the journal and handed to the OS (`Process`), or in
    /// the journal's buffer until the group committer syncs it (`Sync`).
    pub fn batch(&self) -> OwnedWriteBatch {
        let persist = match self.durability {
            Durability::Process => Some(PersistMode::Buffer),
            Durability::Sync => None,
        };
        self.db.batch().durability(persist)
    }

    /// Makes every committed batch durable with one `fdatasync` of the journal.
    pub fn sync(&self) -> StoreResult<()> {
        self.db.persist(PersistMode::SyncData)?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Journal syncs made so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Number of keys under `prefix`.
    pub fn count_prefix(keyspace: &Keyspace, prefix: &[u8]) -> StoreResult<u64> {
        let mut count = 0u64;
        for guard in keyspace.prefix(prefix) {
            guard.key()?;
            count += 1;
        }
        Ok(count)
    }
}
