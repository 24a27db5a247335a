//! Token-bucket rate limits for upload and download, and parsing of `8mbit`-style rates.

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

/// Parses a rate such as `8mbit`, `2MiB`, `500k`, `1.5MB/s` into bytes per second.
///
/// Decimal prefixes (k, M, G) are powers of 1000, binary ones (KiB, MiB, GiB)
/// powers of 1024; a `bit` suffix means bits. `0`, `none` and `unlimited` mean no limit.
pub fn parse_rate(s: &str) -> Result<Option<u64>, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix("/s").unwrap_or(&t).trim();
    if t.is_empty() {
        return Err("empty rate".into());
    }
    if matches!(t, "none" | "unlimited") {
        return Ok(None);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| {
        format!("{s:?}: expected a number followed by a unit such as 8mbit or 2MiB")
    })?;
    let unit = unit.trim();
    let (scale, bits) = match unit {
        "" | "b" => (1.0, false),
        "k" | "kb" => (1e3, false),
        "m" | "mb" => (1e6, false),
        "g" | "gb" => (1e9, false),
        "kib" => (1024.0, false),
        "mib" => (1024.0 * 1024.0, false),
        "gib" => (1024.0 * 1024.0 * 1024.0, false),
        "bit" => (1.0, true),
        "kbit" => (1e3, true),
        "mbit" => (1e6, true),
        "gbit" => (1e9, true),
        other => {
            return Err(format!(
            "{s:?}: unknown unit {other:?}; use B, kB, MB, GB, KiB, MiB, GiB, kbit, mbit or gbit"
        ))
        }
    };
    let bytes = value * scale / if bits { 8.0 } else { 1.0 };
    if !bytes.is_finite() || !(0.0..=1e15).contains(&bytes) {
        return Err(format!("{s:?}: rate out of range"));
    }
    if bytes == 0.0 {
        return Ok(None);
    }
    Ok(Some(bytes.max(1.0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_rate("8mbit"), Ok(Some(1_000_000)));
        assert_eq!(parse_rate("2MiB"), Ok(Some(2 * 1024 * 1024)));
        assert_eq!(parse_rate("500k"), Ok(Some(500_000)));
        assert_eq!(parse_rate("1.5MB/s"), Ok(Some(1_500_000)));
        assert_eq!(parse_rate("1234"), Ok(Some(1234)));
        assert_eq!(parse_rate("0"), Ok(None));
        assert_eq!(parse_rate("unlimited"), Ok(None));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("10 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_rate("").is_err());
    }

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
