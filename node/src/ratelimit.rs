//! Token-bucket rate limits for upload and download.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A shared token bucket; tokens may go negative so big sends reserve and wait their turn.
#[derive(Debug)]
pub struct RateLimiter {
    bucket: Option<Mutex<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// A limiter of `bytes_per_sec`, or one that never waits for `None`.
    pub fn new(bytes_per_sec: Option<u64>) -> Self {
        let bucket = bytes_per_sec.filter(|&r| r > 0).map(|r| {
            let rate = r as f64;
            // A burst of a tenth of a second, at least one chunk, keeps caps smooth without stalling.
            let burst = (rate / 10.0).max(256.0 * 1024.0);
            Mutex::new(Bucket {
                rate,
                burst,
                tokens: burst,
                last: Instant::now(),
            })
        });
        Self { bucket }
    }

    /// Unlimited.
    pub fn unlimited() -> Self {
        Self::new(None)
    }

    /// True when a limit is set.
    pub fn is_limited(&self) -> bool {
        self.bucket.is_some()
    }

    /// Waits until `bytes` may pass.
    pub async fn acquire(&self, bytes: usize) {
        let Some(bucket) = &self.bucket else {
            return;
        };
        let wait = {
            let mut b = match bucket.lock() {
                Ok(b) => b,
                Err(poisoned) => poisoned.into_inner(),
            };
            let now = Instant::now();
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.last = now;
            b.tokens = (b.tokens + elapsed * b.rate).min(b.burst);
            b.tokens -= bytes as f64;
            if b.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-b.tokens / b.rate)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limiter_paces_to_the_rate() {
        let lim = RateLimiter::new(Some(1_000_000));
        let start = Instant::now();
        // Burst (256 KiB) passes at once; the remaining bytes take their time.
        for _ in 0..20 {
            lim.acquire(100_000).await;
        }
        let took = start.elapsed().as_secs_f64();
        let expected = (2_000_000.0 - 262_144.0) / 1_000_000.0;
        assert!(
            (took - expected).abs() < 0.05,
            "took {took}s, expected {expected}s"
        );
    }
}
