//! Expiry: finding and removing the records whose `expires_at` has passed, keyspace by keyspace.
//!
//! A sweep scans a keyspace in chunks on the blocking pool ([`Engine::scan_expired`]) and removes
//! what it found with one batch per chunk ([`Engine::remove_expired`]), re-checking each record
//! under the lock its writers hold.

use std::ops::Bound;

use fjall::Keyspace;

use super::codec::{
    decode_dedupe, decode_group_dedupe, decode_group_receipt, decode_u64, entry_expires_at,
    group_message_expires_at,
};
use super::engine::{Engine, lock};
use crate::error::StoreResult;
use crate::model::Millis;

/// Which keyspace a sweep works through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SweepTarget {
    Queue,
    Dedupe,
    GroupMessages,
    GroupDedupe,
    GroupReceipts,
    /// Unique keys of business queues, swept by `BusinessStore::sweep_unique` only.
    BusinessUnique,
}

impl SweepTarget {
    /// Every target of [`Store::sweep_expired`](crate::Store::sweep_expired), in the order it
    /// takes them.
    pub const ALL: [SweepTarget; 5] = [
        SweepTarget::Queue,
        SweepTarget::Dedupe,
        SweepTarget::GroupMessages,
        SweepTarget::GroupDedupe,
        SweepTarget::GroupReceipts,
    ];

    /// When a record of this keyspace expires.
    fn expires_at(self, value: &[u8]) -> StoreResult<Millis> {
        match self {
            SweepTarget::Queue => entry_expires_at(value),
            SweepTarget::Dedupe => decode_dedupe(value).map(|(_, expires_at)| expires_at),
            SweepTarget::GroupMessages => group_message_expires_at(value),
            SweepTarget::GroupDedupe => decode_group_dedupe(value).map(|(_, at)| at),
            SweepTarget::GroupReceipts => decode_group_receipt(value).map(|t| t.expires_at),
            SweepTarget::BusinessUnique => decode_u64("business_unique", value),
        }
    }
}

/// One step of a sweep: expired keys found, and where to continue (`None`: done).
pub(super) struct SweepScan {
    pub expired: Vec<Vec<u8>>,
    pub resume_after: Option<Vec<u8>>,
}

impl Engine {
    fn sweep_keyspace(&self, target: SweepTarget) -> &Keyspace {
        match target {
            SweepTarget::Queue => &self.ks.queue,
            SweepTarget::Dedupe => &self.ks.dedupe,
            SweepTarget::GroupMessages => &self.ks.group_messages,
            SweepTarget::GroupDedupe => &self.ks.group_dedupe,
            SweepTarget::GroupReceipts => &self.ks.group_receipts,
            SweepTarget::BusinessUnique => &self.ks.business_unique,
        }
    }

    /// Scans up to `max_scanned` records after `resume_after` for ones expired at `now`.
    pub fn scan_expired(
        &self,
        target: SweepTarget,
        resume_after: Option<Vec<u8>>,
        now: Millis,
        max_scanned: usize,
    ) -> StoreResult<SweepScan> {
        let start = match resume_after {
            Some(key) => Bound::Excluded(key),
            None => Bound::Unbounded,
        };
        let mut expired = Vec::new();
        let mut last = None;
        let mut scanned = 0;
        for guard in self
            .sweep_keyspace(target)
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
        {
            let (key, value) = guard.into_inner()?;
            if target.expires_at(&value)? <= now {
                expired.push(key.to_vec());
            }
            scanned += 1;
            if scanned == max_scanned {
                last = Some(key.to_vec());
                break;
            }
        }
        Ok(SweepScan {
            expired,
            resume_after: last,
        })
    }

    /// Removes the records of `keys` that still exist and are still expired at `now`; returns
    /// how many it removed. Re-checked under the lock of the keyspace's writers (queues for
    /// `queue` and `dedupe`, groups for the group keyspaces, business queues for
    /// `business_unique`), so a record rewritten since the
    /// scan, or an entry ack removed, is neither deleted nor counted.
    pub fn remove_expired(
        &self,
        target: SweepTarget,
        keys: Vec<Vec<u8>>,
        now: Millis,
    ) -> StoreResult<u64> {
        let keyspace = self.sweep_keyspace(target);
        let _writers = match target {
            SweepTarget::Queue | SweepTarget::Dedupe => lock(&self.locks.queues),
            SweepTarget::GroupMessages | SweepTarget::GroupDedupe | SweepTarget::GroupReceipts => {
                lock(&self.locks.groups)
            }
            SweepTarget::BusinessUnique => lock(&self.locks.business_queues),
        };
        let mut batch = self.batch();
        let mut removed = 0;
        for key in keys {
            let Some(value) = keyspace.get(&key)? else {
                continue;
            };
            if target.expires_at(&value)? > now {
                continue;
            }
            match target {
                // Queue keys are written exactly once (seqs are never reused): weak tombstones.
                SweepTarget::Queue => batch.remove_weak(keyspace, key),
                // The others may be written again under the same key (a dedupe record after
                // expiry, a receipt on every update, a message seq after its group emptied, a
                // unique key appended again).
                _ => batch.remove(keyspace, key),
            }
            removed += 1;
        }
        batch.commit()?;
        Ok(removed)
    }
}
