//! Rate and time left from recent samples of a growing count (bytes or chunks).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back a rate looks: long enough to smooth bursts, short enough to follow a change.
const WINDOW: Duration = Duration::from_secs(10);
/// Samples closer together than this are merged (keeps the window bounded).
const SPACING: Duration = Duration::from_millis(200);
/// Below this span the rate is noise; report none.
const MIN_SPAN: Duration = Duration::from_millis(900);

/// A count's recent history; at most WINDOW / SPACING + 2 samples.
#[derive(Debug, Default)]
pub struct Meter {
    samples: VecDeque<(Instant, u64)>,
}

impl Meter {
    /// Records that the count was `value` at `now`.
    pub fn record(&mut self, now: Instant, value: u64) {
        if self.samples.back().is_some_and(|last| value < last.1) {
            // The count went back (a restart); history says nothing about now.
            self.samples.clear();
        }
        let n = self.samples.len();
        // The newest sample moves forward until it is SPACING after the one before it.
        if n >= 2
            && self.samples[n - 1]
                .0
                .saturating_duration_since(self.samples[n - 2].0)
                < SPACING
        {
            self.samples[n - 1] = (now, value);
            return;
        }
        self.samples.push_back((now, value));
        while self.samples.len() > 2 && now.saturating_duration_since(self.samples[1].0) >= WINDOW {
            self.samples.pop_front();
        }
    }

    /// Units per second over the window, once it spans about a second.
    pub fn per_sec(&self) -> Option<f64> {
        let (t0, v0) = *self.samples.front()?;
        let (t1, v1) = *self.samples.back()?;
        let span = t1.saturating_duration_since(t0);
        (span >= MIN_SPAN).then(|| (v1 - v0) as f64 / span.as_secs_f64())
    }

    /// Seconds until the count reaches `target` at the current rate; None while unknown or stalled.
    pub fn eta_secs(&self, target: u64) -> Option<u64> {
        let rate = self.per_sec()?;
        let now = self.samples.back()?.1;
        if now >= target {
            return Some(0);
        }
        (rate > 0.0).then(|| ((target - now) as f64 / rate).ceil() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_eta_follow_the_samples_and_stay_bounded() {
        let t = Instant::now();
        let mut m = Meter::default();
        m.record(t, 0);
        assert_eq!(m.per_sec(), None, "one sample says nothing");
        m.record(t + Duration::from_secs(1), 100);
        assert_eq!(m.per_sec(), Some(100.0));
        assert_eq!(m.eta_secs(1000), Some(9));
        for s in 1..200u64 {
            m.record(t + Duration::from_millis(1000 + s * 100), 100 + s * 10);
        }
        assert!(m.samples.len() <= 60, "{} samples kept", m.samples.len());
        // 10 units per 100 ms over the last window.
        let r = m.per_sec().unwrap();
        assert!((r - 100.0).abs() < 15.0, "{r}");
    }

    #[test]
    fn a_stall_has_no_eta_and_a_restart_forgets_history() {
        let t = Instant::now();
        let mut m = Meter::default();
        m.record(t, 50);
        m.record(t + Duration::from_secs(2), 50);
        assert_eq!(m.per_sec(), Some(0.0));
        assert_eq!(m.eta_secs(100), None);
        m.record(t + Duration::from_secs(3), 10);
        assert_eq!(m.per_sec(), None);
    }
}
