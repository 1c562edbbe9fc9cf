//! [`Recorder`]: a [`BusHandler`] that logs what it is given, with a completion policy.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::{BusHandler, Completion, Partition, ShardRecord};

/// What a [`Recorder`] was given, in order; each event carries a stamp from a clock shared by
/// the recorders of one case, so that events of different members can be ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Assigned(Vec<Partition>),
    Revoked(Vec<Partition>),
    Record(ShardRecord),
    Node { from: String, payload: Bytes },
}

type Rule = Box<dyn Fn(&ShardRecord) -> bool + Send + Sync>;

/// A handler that records every call. A record is completed at once if `complete_now` says
/// so; otherwise its completion is held, and at revoke the held ones that `complete_at_revoke`
/// accepts are completed (newest first, to exercise out-of-order completion) while the others
/// are dropped (their effect is lost).
pub struct Recorder {
    clock: Arc<AtomicU64>,
    complete_now: Rule,
    complete_at_revoke: Rule,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    events: Vec<(u64, Event)>,
    owned: BTreeSet<Partition>,
    held: Vec<(ShardRecord, Completion)>,
    busy: BTreeSet<Partition>,
    overlapping_calls: Vec<Partition>,
    records_of_unowned: Vec<Partition>,
}

impl Recorder {
    /// Completes every record at once.
    pub fn completing(clock: &Arc<AtomicU64>) -> Arc<Self> {
        Self::with_rules(clock, |_| true, |_| false)
    }

    /// Completes the records `now` accepts at once, the held ones `at_revoke` accepts at revoke.
    pub fn with_rules(
        clock: &Arc<AtomicU64>,
        now: impl Fn(&ShardRecord) -> bool + Send + Sync + 'static,
        at_revoke: impl Fn(&ShardRecord) -> bool + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            clock: Arc::clone(clock),
            complete_now: Box::new(now),
            complete_at_revoke: Box::new(at_revoke),
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn log(&self, state: &mut State, event: Event) {
        let stamp = self.clock.fetch_add(1, Ordering::SeqCst);
        state.events.push((stamp, event));
    }

    /// Every event so far, stamped.
    pub fn events(&self) -> Vec<(u64, Event)> {
        self.state().events.clone()
    }

    /// The partitions owned now (assigned and not revoked since).
    pub fn owned(&self) -> BTreeSet<Partition> {
        self.state().owned.clone()
    }

    /// The records received so far, by partition, in arrival order.
    pub fn records(&self) -> BTreeMap<Partition, Vec<ShardRecord>> {
        let mut records: BTreeMap<Partition, Vec<ShardRecord>> = BTreeMap::new();
        for (_, event) in &self.state().events {
            if let Event::Record(record) = event {
                records
                    .entry(record.partition)
                    .or_default()
                    .push(record.clone());
            }
        }
        records
    }

    /// The number of records received so far.
    pub fn record_count(&self) -> usize {
        self.state()
            .events
            .iter()
            .filter(|(_, event)| matches!(event, Event::Record(_)))
            .count()
    }

    /// The node messages received so far, as (sender, payload).
    pub fn node_messages(&self) -> Vec<(String, Bytes)> {
        self.state()
            .events
            .iter()
            .filter_map(|(_, event)| match event {
                Event::Node { from, payload } => Some((from.clone(), payload.clone())),
                _ => None,
            })
            .collect()
    }

    /// The stamp of the first `Assigned` / `Revoked` event (stamped `after` or later) that names
    /// `partition`.
    pub fn stamp_of(&self, revoked: bool, partition: Partition, after: u64) -> Option<u64> {
        self.state()
            .events
            .iter()
            .find_map(|(stamp, event)| match event {
                Event::Revoked(list) if revoked && *stamp >= after && list.contains(&partition) => {
                    Some(*stamp)
                }
                Event::Assigned(list)
                    if !revoked && *stamp >= after && list.contains(&partition) =>
                {
                    Some(*stamp)
                }
                _ => None,
            })
    }

    /// Panics if two record calls of one partition overlapped, or a record came for a partition
    /// not owned.
    pub fn assert_well_ordered_calls(&self, who: &str) {
        let state = self.state();
        assert!(
            state.overlapping_calls.is_empty(),
            "{who}: record calls of partitions {:?} overlapped",
            state.overlapping_calls
        );
        assert!(
            state.records_of_unowned.is_empty(),
            "{who}: records of partitions {:?} arrived while not owned",
            state.records_of_unowned
        );
    }
}

#[async_trait::async_trait]
impl BusHandler for Recorder {
    async fn assigned(&self, partitions: Vec<Partition>) {
        let mut state = self.state();
        state.owned.extend(partitions.iter().copied());
        self.log(&mut state, Event::Assigned(partitions));
    }

    async fn revoked(&self, partitions: Vec<Partition>) {
        let mut state = self.state();
        for partition in &partitions {
            state.owned.remove(partition);
        }
        let held = std::mem::take(&mut state.held);
        let (leaving, staying): (Vec<_>, Vec<_>) = held
            .into_iter()
            .partition(|(record, _)| partitions.contains(&record.partition));
        state.held = staying;
        for (record, completion) in leaving.into_iter().rev() {
            if (self.complete_at_revoke)(&record) {
                completion.done();
            }
        }
        self.log(&mut state, Event::Revoked(partitions));
    }

    async fn record(&self, record: ShardRecord, completion: Completion) {
        let partition = record.partition;
        {
            let mut state = self.state();
            if !state.busy.insert(partition) {
                state.overlapping_calls.push(partition);
            }
            if !state.owned.contains(&partition) {
                state.records_of_unowned.push(partition);
            }
            self.log(&mut state, Event::Record(record.clone()));
        }
        // Give a concurrent call of the same partition the chance to show itself.
        tokio::task::yield_now().await;
        let mut state = self.state();
        state.busy.remove(&partition);
        if (self.complete_now)(&record) {
            completion.done();
        } else {
            state.held.push((record, completion));
        }
    }

    async fn node_message(&self, from: String, payload: Bytes) {
        let mut state = self.state();
        self.log(&mut state, Event::Node { from, payload });
    }
}
