//! The sending rules of a number, held by the node that owns the number: throughput per
//! number, the pair rate per recipient, and the customer-service window.
//!
//! Rate limits are token buckets on the injected clock. The window is decided from the time
//! of the customer's last message, which the inbound path records ([`crate::repo::tables::WINDOW`]).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::clock::Millis;
use crate::error::{BusinessError, BusinessResult};

/// A token bucket: `capacity` tokens, refilled at `per_sec`.
#[derive(Clone, Debug)]
struct Bucket {
    tokens: f64,
    updated_ms: Millis,
}

impl Bucket {
    fn full(capacity: f64, now: Millis) -> Self {
        Bucket {
            tokens: capacity,
            updated_ms: now,
        }
    }

    fn refill(&mut self, capacity: f64, per_sec: f64, now: Millis) {
        let elapsed = now.saturating_sub(self.updated_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * per_sec).min(capacity);
        self.updated_ms = self.updated_ms.max(now);
    }

    /// Takes a token, or says how many seconds until one is there.
    fn take(&mut self, capacity: f64, per_sec: f64, now: Millis) -> Result<(), u64> {
        self.refill(capacity, per_sec, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let wait = if per_sec > 0.0 {
            ((1.0 - self.tokens) / per_sec).ceil() as u64
        } else {
            u64::MAX
        };
        Err(wait.max(1))
    }
}

/// Limits of one number.
#[derive(Debug)]
pub struct NumberLimits {
    throughput: f64,
    pair_burst: f64,
    pair_per_sec: f64,
    state: Mutex<LimitState>,
}

#[derive(Debug)]
struct LimitState {
    number: Option<Bucket>,
    pairs: HashMap<String, Bucket>,
}

/// Pair buckets kept before idle (full) ones are dropped.
const MAX_PAIRS: usize = 100_000;

impl NumberLimits {
    pub fn new(throughput_per_sec: u32, pair_burst: u32, pair_per_minute: u32) -> Self {
        NumberLimits {
            throughput: f64::from(throughput_per_sec.max(1)),
            pair_burst: f64::from(pair_burst.max(1)),
            pair_per_sec: f64::from(pair_per_minute) / 60.0,
            state: Mutex::new(LimitState {
                number: None,
                pairs: HashMap::new(),
            }),
        }
    }

    /// Admits one message to `recipient` now, or says which limit it hit (nothing is taken
    /// from either bucket then).
    pub fn admit(&self, recipient: &str, now: Millis) -> BusinessResult<()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (throughput, burst, pair_rate) = (self.throughput, self.pair_burst, self.pair_per_sec);
        let mut number = state
            .number
            .take()
            .unwrap_or_else(|| Bucket::full(throughput, now));
        let mut probe = number.clone();
        if let Err(wait) = probe.take(throughput, throughput, now) {
            state.number = Some(number);
            return Err(BusinessError::RateLimited {
                code: 130429,
                message: format!(
                    "this number may send {throughput} messages per second; retry later"
                ),
                retry_after_secs: wait,
            });
        }
        if state.pairs.len() >= MAX_PAIRS {
            state.pairs.retain(|_, bucket| {
                bucket.refill(burst, pair_rate, now);
                bucket.tokens < burst
            });
        }
        let pair = state
            .pairs
            .entry(recipient.to_owned())
            .or_insert_with(|| Bucket::full(burst, now));
        if let Err(wait) = pair.take(burst, pair_rate, now) {
            state.number = Some(number);
            return Err(BusinessError::RateLimited {
                code: 131056,
                message: "too many messages to this recipient in a short time; retry later".into(),
                retry_after_secs: wait,
            });
        }
        number = probe;
        state.number = Some(number);
        Ok(())
    }
}

/// Whether a free-form message may go to a customer whose last message came at
/// `last_inbound_ms` (None: never wrote).
pub fn within_window(last_inbound_ms: Option<Millis>, window_ms: u64, now: Millis) -> bool {
    match last_inbound_ms {
        Some(at) => now < at.saturating_add(window_ms),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_limit_refills_with_time() {
        let limits = NumberLimits::new(80, 1000, 6000);
        for i in 0..80 {
            limits.admit(&format!("r{i}"), 1_000).unwrap();
        }
        let error = limits.admit("r-next", 1_000).unwrap_err();
        assert!(matches!(
            error,
            BusinessError::RateLimited { code: 130429, .. }
        ));
        // 100 ms later, 8 more tokens.
        for i in 0..8 {
            limits.admit(&format!("s{i}"), 1_100).unwrap();
        }
        assert!(limits.admit("s-next", 1_100).is_err());
    }

    #[test]
    fn pair_limit_is_per_recipient_and_takes_nothing_when_refused() {
        let limits = NumberLimits::new(1000, 3, 10);
        for _ in 0..3 {
            limits.admit("alice", 0).unwrap();
        }
        let error = limits.admit("alice", 0).unwrap_err();
        match error {
            BusinessError::RateLimited {
                code,
                retry_after_secs,
                ..
            } => {
                assert_eq!(code, 131056);
                assert_eq!(retry_after_secs, 6);
            }
            other => panic!("{other:?}"),
        }
        limits.admit("bob", 0).unwrap();
        // 10 per minute: one more after 6 s.
        limits.admit("alice", 6_000).unwrap();
        assert!(limits.admit("alice", 6_000).is_err());
    }

    #[test]
    fn window_is_24_hours_after_the_last_customer_message() {
        let day = 24 * 3_600_000;
        assert!(!within_window(None, day, 5));
        assert!(within_window(Some(1_000), day, 1_000 + day - 1));
        assert!(!within_window(Some(1_000), day, 1_000 + day));
    }
}
