//! The conformance suite: the behaviour every [`Bus`] implementation shows.
//!
//! Each case is a public async function that takes a fresh [`TestCluster`] (one new, empty bus
//! that members join) and panics on a violation; [`publish_to_an_unreachable_bus_is_unavailable`]
//! takes a member of a bus whose dependency is down instead.
//! [`conformance_tests!`](crate::conformance_tests) expands to one `#[tokio::test]` per case:
//!
//! ```ignore
//! async fn fresh_cluster() -> Box<dyn TestCluster> { /* ... */ }
//! async fn unreachable_bus() -> Arc<dyn Bus> { /* ... */ }
//!
//! mod conformance {
//!     courier_bus::conformance_tests!(super::fresh_cluster, super::unreachable_bus);
//! }
//! ```
//!
//! The calling crate needs `tokio` (features `macros`, `rt-multi-thread`) as a (dev-)dependency.
//! Waits are bounded by [`PATIENCE`] (a Kafka rebalance takes seconds), and polled.
//!
//! Layout: `recorder` holds the [`Recorder`] handler the cases use, `cases` the cases; this file
//! the cluster traits, the macro and the waiting helper.
//!
//! This module is compiled in every build (it is how other crates test their backends), so it
//! uses no test-only dependency.

mod cases;
mod recorder;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Bus, InProcessBus, InProcessHub, KafkaBus};

pub use self::cases::*;
pub use self::recorder::{Event, Recorder};

/// The longest any single wait of the suite lasts before it fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// One fresh bus for one test case: members join it under the node ids the case chooses.
#[async_trait::async_trait]
pub trait TestCluster: Send + Sync {
    /// A new member (not started) with node id `node_id`.
    async fn join(&self, node_id: &str) -> Arc<dyn TestMember>;
}

/// A member as the suite drives it: a [`Bus`] that can also be killed.
#[async_trait::async_trait]
pub trait TestMember: Bus {
    /// Simulates a kill: no `revoked`, no commit; the member is gone and its partitions move.
    async fn crash(&self);
}

#[async_trait::async_trait]
impl TestMember for InProcessBus {
    async fn crash(&self) {
        InProcessBus::crash(self).await;
    }
}

#[async_trait::async_trait]
impl TestMember for KafkaBus {
    async fn crash(&self) {
        KafkaBus::crash(self).await;
    }
}

#[async_trait::async_trait]
impl TestCluster for InProcessHub {
    async fn join(&self, node_id: &str) -> Arc<dyn TestMember> {
        InProcessHub::join(self, node_id)
    }
}

/// Expands to one `#[tokio::test]` per conformance case: `$cluster` makes a fresh
/// `Box<dyn TestCluster>` per case, `$unreachable` an `Arc<dyn Bus>` whose dependency is down.
#[macro_export]
macro_rules! conformance_tests {
    (@cases $cluster:expr; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let cluster = ($cluster)().await;
                $crate::conformance::$case(cluster).await;
            }
        )+
    };
    ($cluster:expr, $unreachable:expr) => {
        $crate::conformance_tests!(@cases $cluster;
            records_of_a_partition_arrive_in_order_once,
            a_backlog_published_before_start_arrives_in_order,
            two_members_split_the_partitions_and_records_reach_the_owner,
            node_messages_reach_the_named_node_with_the_sender,
            a_clean_leave_revokes_first_and_hands_over_only_uncompleted_records,
            a_crashed_members_uncommitted_records_go_to_the_new_owner,
        );

        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn publish_to_an_unreachable_bus_is_unavailable() {
            let bus = ($unreachable)().await;
            $crate::conformance::publish_to_an_unreachable_bus_is_unavailable(bus).await;
        }
    };
}

/// Polls `condition` every 20 ms until it holds; panics naming `what` after [`PATIENCE`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
