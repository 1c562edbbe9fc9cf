//! The conformance suite against the in-process bus.

use std::sync::Arc;

use courier_bus::conformance::TestCluster;
use courier_bus::{Bus, InProcessHub};

async fn fresh_cluster() -> Box<dyn TestCluster> {
    Box::new(InProcessHub::new(8))
}

async fn unreachable_bus() -> Arc<dyn Bus> {
    let hub = InProcessHub::new(8);
    hub.set_available(false);
    hub.join("node-a")
}

mod conformance {
    courier_bus::conformance_tests!(super::fresh_cluster, super::unreachable_bus);
}
