//! A token bucket limiting the frames one connection may send.

use tokio::time::Instant;

/// Allows `rate` frames per second on average, with bursts up to `burst`.
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32) -> Self {
        TokenBucket {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn refills_at_the_configured_rate() {
        let mut bucket = TokenBucket::new(10, 5);
        for _ in 0..5 {
            assert!(bucket.try_take());
        }
        assert!(!bucket.try_take(), "burst exhausted");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(bucket.try_take(), "one token after 1/rate seconds");
        assert!(!bucket.try_take());
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..5 {
            assert!(bucket.try_take());
        }
        assert!(!bucket.try_take(), "never more than the burst");
    }
}
