//! Wall-clock time in milliseconds, the unit stored everywhere.

use std::time::{SystemTime, UNIX_EPOCH};

use courier_store::Millis;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}
