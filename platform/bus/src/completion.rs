//! Completions and the per-partition ledger that turns them into a committable offset.
//!
//! A [`Ledger`] lives for one ownership of one partition (a fresh one per assignment, so a
//! completion that arrives after its partition moved away cannot touch the new owner's state).
//! Delivered offsets are tracked in delivery order; completions mark them, in any order, and the
//! committable offset is the one after the longest completed prefix.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Records delivered but not completed, per partition, before the bus stops delivering more and
/// waits: bounds what an owner holds in memory when its effects stall.
pub(crate) const MAX_UNCOMPLETED: usize = 8192;

/// Marks one record's effect as persisted. Dropping it without [`done`](Completion::done) leaves
/// the record uncommitted: it comes again after a crash or to the next owner. Cheap, `Send`,
/// `'static`.
#[derive(Debug)]
pub struct Completion {
    ledger: Arc<Ledger>,
    offset: i64,
}

impl Completion {
    /// The record's effect is persisted: it may be committed (once every earlier record of its
    /// partition is done too).
    pub fn done(self) {
        self.ledger.complete(self.offset);
    }
}

/// The delivered records of one partition during one ownership.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    state: Mutex<LedgerState>,
    /// Wakes a delivery waiting for room, and waiters on a fence.
    room: Notify,
    /// Where an advancing committable offset is written at once (the in-process bus), unless
    /// fenced.
    sink: Option<Arc<AtomicI64>>,
}

#[derive(Debug, Default)]
struct LedgerState {
    /// Offsets delivered and not yet part of the completed prefix, in delivery order, with
    /// their "done" mark.
    open: VecDeque<(i64, bool)>,
    /// The offset after the completed prefix: what a commit records (the next to consume).
    committable: Option<i64>,
    /// No more completions count: the ownership ended (revoke finished, or crash).
    fenced: bool,
}

impl Ledger {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A ledger that writes its committable offset into `sink` as it advances.
    pub(crate) fn with_sink(sink: Arc<AtomicI64>) -> Arc<Self> {
        Arc::new(Self {
            sink: Some(sink),
            ..Self::default()
        })
    }

    fn lock(&self) -> MutexGuard<'_, LedgerState> {
        // The state stays consistent across a panic in another holder (no multi-step update
        // can be observed half done), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Tracks `offset` as delivered and returns its completion. Offsets must increase.
    pub(crate) fn track(self: &Arc<Self>, offset: i64) -> Completion {
        self.lock().open.push_back((offset, false));
        Completion {
            ledger: Arc::clone(self),
            offset,
        }
    }

    fn complete(&self, offset: i64) {
        let mut state = self.lock();
        if state.fenced {
            return;
        }
        let Ok(index) = state.open.binary_search_by_key(&offset, |&(o, _)| o) else {
            return;
        };
        state.open[index].1 = true;
        let before = state.committable;
        while let Some(&(front, true)) = state.open.front() {
            state.open.pop_front();
            state.committable = Some(front + 1);
        }
        if state.committable != before {
            if let (Some(sink), Some(next)) = (&self.sink, state.committable) {
                sink.fetch_max(next, Ordering::SeqCst);
            }
            drop(state);
            self.room.notify_waiters();
        }
    }

    /// The offset after the completed prefix, if any record was completed.
    pub(crate) fn committable(&self) -> Option<i64> {
        self.lock().committable
    }

    /// Ends the ownership: later completions are ignored, and a delivery waiting for room gives
    /// up. Returns the final committable offset.
    pub(crate) fn fence(&self) -> Option<i64> {
        let committable = {
            let mut state = self.lock();
            state.fenced = true;
            state.committable
        };
        self.room.notify_waiters();
        committable
    }

    /// Waits until fewer than [`MAX_UNCOMPLETED`] records are open. Returns false if the ledger
    /// was fenced meanwhile (stop delivering).
    pub(crate) async fn wait_for_room(&self) -> bool {
        loop {
            let notified = self.room.notified();
            {
                let state = self.lock();
                if state.fenced {
                    return false;
                }
                if state.open.len() < MAX_UNCOMPLETED {
                    return true;
                }
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committable_offset_follows_the_completed_prefix() {
        let ledger = Ledger::new();
        let completions: Vec<_> = [3, 4, 7, 8].into_iter().map(|o| ledger.track(o)).collect();
        let mut completions = completions.into_iter();
        let (c3, c4, c7, c8) = (
            completions.next().unwrap(),
            completions.next().unwrap(),
            completions.next().unwrap(),
            completions.next().unwrap(),
        );
        c4.done();
        assert_eq!(ledger.committable(), None);
        c3.done();
        assert_eq!(ledger.committable(), Some(5));
        c8.done();
        assert_eq!(ledger.committable(), Some(5));
        drop(c7);
        assert_eq!(ledger.fence(), Some(5));
    }

    #[test]
    fn completions_after_the_fence_do_not_count() {
        let sink = Arc::new(AtomicI64::new(0));
        let ledger = Ledger::with_sink(Arc::clone(&sink));
        let first = ledger.track(0);
        let second = ledger.track(1);
        first.done();
        assert_eq!(sink.load(Ordering::SeqCst), 1);
        ledger.fence();
        second.done();
        assert_eq!(ledger.committable(), Some(1));
        assert_eq!(sink.load(Ordering::SeqCst), 1);
    }
}
