//! Sliding-window byte rates, the numbers the choker ranks peers by.
//!
//! Time is passed in, and memory is a fixed ring of slots however much traffic arrives.

use std::time::{Duration, Instant};

/// Bytes per second over a sliding window, fed with time passed in.
#[derive(Clone, Debug)]
pub struct RateMeter {
    /// Bytes per slot; slot number `k` (counted from `origin`) lives at `k % len`.
    slots: Box<[u64]>,
    /// Length of one slot; the window is `slot * slots.len()`.
    slot: Duration,
    /// Time of the first record: slot 0 starts here.
    origin: Option<Instant>,
    /// Number of the newest slot written; the ring holds `head - len + 1 ..= head`.
    head: u64,
    /// Sum of every slot in the ring, kept in step so `rate` need not add them up.
    sum: u128,
    total: u64,
    last: Option<Instant>,
}

impl RateMeter {
    /// A meter averaging over `window` (at least 1 ms), in slots of at most 1 s.
    pub fn new(window: Duration) -> Self {
        let window = window.max(MIN_WINDOW);
        // ceil(window / MAX_SLOT) slots, capped so a long window coarsens its slots instead of
        // growing the ring.
        let count = window
            .as_nanos()
            .div_ceil(MAX_SLOT.as_nanos())
            .clamp(1, u128::from(MAX_SLOTS));
        let count = u32::try_from(count).unwrap_or(MAX_SLOTS);
        Self {
            slots: vec![0; count as usize].into_boxed_slice(),
            slot: window / count,
            origin: None,
            head: 0,
            sum: 0,
            total: 0,
            last: None,
        }
    }

    /// The window actually averaged over (the requested one, rounded to whole slots).
    pub fn window(&self) -> Duration {
        self.slot
            .checked_mul(self.slot_count_u32())
            .unwrap_or(Duration::MAX)
    }

    /// Counts `bytes` as received (or sent) at `now`.
    pub fn record(&mut self, now: Instant, bytes: u64) {
        let origin = *self.origin.get_or_insert(now);
        // A clock that steps back lands in the newest slot rather than rewriting history.
        let slot = self.slot_number(origin, now).max(self.head);
        self.advance(slot);
        let i = self.index(slot);
        if let Some(count) = self.slots.get_mut(i) {
            let before = *count;
            *count = count.saturating_add(bytes);
            self.sum += u128::from(*count - before);
        }
        self.total = self.total.saturating_add(bytes);
        self.last = Some(self.last.map_or(now, |last| last.max(now)));
    }

    /// Bytes per second over the window ending at `now`, or over the time since the first
    /// record if that is shorter, so a fresh peer is not under-rated.
    pub fn rate(&self, now: Instant) -> u64 {
        let Some(origin) = self.origin else {
            return 0;
        };
        let len = self.slot_count();
        let current = self.slot_number(origin, now).max(self.head);
        // Slots before `oldest` have slid out of the window; the range is empty once the
        // newest record is a whole window old.
        let oldest = current.saturating_sub(len - 1);
        // The ring holds `head - len + 1 ..= head` (older ones are zero): subtract the
        // slots that slid out since the last record, at most one window's worth.
        let ring_oldest = self.head.saturating_sub(len - 1);
        let bytes: u128 = if oldest > self.head {
            0
        } else {
            let stale: u128 = (ring_oldest..oldest)
                .map(|k| u128::from(self.slots.get(self.index(k)).copied().unwrap_or(0)))
                .sum();
            self.sum - stale
        };
        // At least one slot, so a burst at the first instant does not read as infinite.
        let span = now
            .saturating_duration_since(origin)
            .min(self.window())
            .max(self.slot);
        let per_sec = bytes.saturating_mul(NANOS_PER_SEC) / span.as_nanos().max(1);
        u64::try_from(per_sec).unwrap_or(u64::MAX)
    }

    /// All bytes ever recorded (saturating).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The latest time anything was recorded at.
    pub fn last_record(&self) -> Option<Instant> {
        self.last
    }

    /// Makes `to` the newest slot, zeroing the slots it reuses from an older lap of the ring.
    fn advance(&mut self, to: u64) {
        if to <= self.head {
            return;
        }
        if to - self.head >= self.slot_count() {
            // A gap of a whole window or more: everything is stale, and this stays O(slots).
            self.slots.fill(0);
            self.sum = 0;
        } else {
            for k in self.head + 1..=to {
                let i = self.index(k);
                if let Some(count) = self.slots.get_mut(i) {
                    self.sum -= u128::from(*count);
                    *count = 0;
                }
            }
        }
        self.head = to;
    }

    /// Which slot `now` falls in, counting from the one starting at `origin`.
    fn slot_number(&self, origin: Instant, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(origin).as_nanos() / self.slot.as_nanos().max(1);
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }

    fn index(&self, slot: u64) -> usize {
        // The remainder is below the slot count, which fits in u32.
        usize::try_from(slot % self.slot_count()).unwrap_or(0)
    }

    fn slot_count(&self) -> u64 {
        u64::from(self.slot_count_u32())
    }

    fn slot_count_u32(&self) -> u32 {
        u32::try_from(self.slots.len()).unwrap_or(MAX_SLOTS)
    }
}

/// The finest (and usual) slot length.
const MAX_SLOT: Duration = Duration::from_secs(1);
/// Ring size cap: five minutes at full resolution; longer windows get longer slots.
const MAX_SLOTS: u32 = 300;
/// Shorter windows would make slots of zero length.
const MIN_WINDOW: Duration = Duration::from_millis(1);
const NANOS_PER_SEC: u128 = 1_000_000_000;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(k: u64) -> Duration {
        Duration::from_secs(k)
    }

    fn ms(k: u64) -> Duration {
        Duration::from_millis(k)
    }

    #[test]
    fn empty_meter_reads_zero() {
        let t0 = Instant::now();
        let meter = RateMeter::new(secs(20));
        assert_eq!(meter.rate(t0), 0);
        assert_eq!(meter.total(), 0);
        assert_eq!(meter.last_record(), None);
        assert_eq!(meter.window(), secs(20));
    }

    #[test]
    fn steady_rate_is_measured() {
        let t0 = Instant::now();
        let mut meter = RateMeter::new(secs(20));
        // 10 KiB every 100 ms for a minute: 100 KiB/s.
        for k in 0..600 {
            meter.record(t0 + ms(100 * k), 10 * 1024);
        }
        let now = t0 + ms(59_950);
        assert_eq!(meter.rate(now), 100 * 1024);
        // Between records the window only loses a fraction of its oldest slot.
        for extra in [0, 30, 50] {
            let rate = meter.rate(now + ms(extra));
            assert!((95 * 1024..=100 * 1024).contains(&rate), "rate {rate}");
        }
    }

    #[test]
    fn fresh_peer_is_rated_over_elapsed_time() {
        let t0 = Instant::now();
        let mut meter = RateMeter::new(secs(20));
        for k in 0..5 {
            meter.record(t0 + secs(k), 1000);
        }
        // 5000 bytes over 5 s, not over the 20 s window.
        assert_eq!(meter.rate(t0 + secs(5)), 1000);
        // A single burst at the first instant counts over one slot, not zero time.
        let mut burst = RateMeter::new(secs(20));
        burst.record(t0, 4096);
        assert_eq!(burst.rate(t0), 4096);
    }

    #[test]
    fn decays_to_zero_after_the_window() {
        let t0 = Instant::now();
        let mut meter = RateMeter::new(secs(20));
        for k in 0..30 {
            meter.record(t0 + secs(k), 1000);
        }
        let last = t0 + secs(29);
        assert_eq!(meter.rate(last), 1000);
        // Half a window later, half the bytes are still inside it.
        assert_eq!(meter.rate(last + secs(10)), 500);
        assert!(meter.rate(last + secs(19)) > 0);
        assert_eq!(meter.rate(last + secs(20)), 0);
        assert_eq!(meter.rate(last + secs(1_000_000)), 0);
    }

    #[test]
    fn long_gap_clears_stale_slots() {
        let t0 = Instant::now();
        let mut meter = RateMeter::new(secs(20));
        for k in 0..20 {
            meter.record(t0 + secs(k), 1_000_000);
        }
        // Exactly one ring lap later each new record lands in a slot that held old bytes.
        let later = t0 + secs(19 + 20);
        meter.record(later, 2000);
        assert_eq!(meter.rate(later), 100);
        // Far beyond a lap: still cleared, still cheap.
        let much_later = t0 + secs(10_000_000);
        meter.record(much_later, 4000);
        assert_eq!(meter.rate(much_later), 200);
    }

    #[test]
    fn short_gap_keeps_recent_slots() {
        let t0 = Instant::now();
        let mut meter = RateMeter::new(secs(20));
        for k in 0..20 {
            meter.record(t0 + secs(k), 1000);
        }
        // Silent for 5 s: slots 0..=4 slide out, the 15 after them stay.
        meter.record(t0 + secs(24), 5000);
        assert_eq!(meter.rate(t0 + secs(24)), (15 * 1000 + 5000) / 20);
    }

    #[test]
    fn total_counts_everything_and_saturates() {
        let t0 = Instant::now();
        let mut meter = RateMeter::new(secs(20));
        for k in 0..100 {
            meter.record(t0 + secs(k), 7);
        }
        assert_eq!(meter.total(), 700);
        assert_eq!(meter.last_record(), Some(t0 + secs(99)));
        meter.record(t0 + secs(100), u64::MAX);
        meter.record(t0 + secs(100), u64::MAX);
        assert_eq!(meter.total(), u64::MAX);
        assert!(meter.rate(t0 + secs(100)) >= u64::MAX / 20);
    }

    #[test]
    fn clock_stepping_back_counts_in_the_newest_slot() {
        let t0 = Instant::now();
        let mut meter = RateMeter::new(secs(20));
        meter.record(t0, 1000);
        meter.record(t0 + secs(10), 1000);
        meter.record(t0 + secs(3), 1000);
        assert_eq!(meter.total(), 3000);
        assert_eq!(meter.last_record(), Some(t0 + secs(10)));
        assert_eq!(meter.rate(t0 + secs(10)), 300);
        // Querying in the past does not panic and sees the same slots.
        assert_eq!(meter.rate(t0 + secs(5)), 600);
        // The late-stamped record sits in slot 10, so it leaves the window with slot 10.
        assert_eq!(meter.rate(t0 + secs(29)), 2000 / 20);
        assert_eq!(meter.rate(t0 + secs(30)), 0);
        // Before the first record: same slots, elapsed time counts as one slot.
        assert_eq!(meter.rate(t0.checked_sub(secs(1)).unwrap_or(t0)), 3000);
    }

    #[test]
    fn window_shorter_than_a_slot_is_one_slot() {
        let t0 = Instant::now();
        let mut meter = RateMeter::new(ms(500));
        assert_eq!(meter.window(), ms(500));
        meter.record(t0, 100);
        assert_eq!(meter.rate(t0), 200);
        assert_eq!(meter.rate(t0 + ms(499)), 200);
        assert_eq!(meter.rate(t0 + ms(500)), 0);

        let mut zero = RateMeter::new(Duration::ZERO);
        assert_eq!(zero.window(), MIN_WINDOW);
        zero.record(t0, 1);
        assert_eq!(zero.rate(t0), 1000);
        assert_eq!(zero.rate(t0 + ms(1)), 0);
    }

    #[test]
    fn long_window_keeps_the_ring_bounded() {
        let t0 = Instant::now();
        let mut meter = RateMeter::new(secs(3600));
        assert_eq!(meter.slots.len(), MAX_SLOTS as usize);
        assert_eq!(meter.window(), secs(3600));
        for k in 0..7200 {
            meter.record(t0 + secs(k), 10);
        }
        assert_eq!(meter.slots.len(), MAX_SLOTS as usize);
        assert_eq!(meter.rate(t0 + secs(7199)), 10);

        let huge = RateMeter::new(Duration::MAX);
        assert_eq!(huge.slots.len(), MAX_SLOTS as usize);
        assert_eq!(huge.rate(t0), 0);
    }

    proptest! {
        /// The meter never claims more than was recorded in the window, over the time it
        /// covers; and it never forgets bytes newer than the window minus one slot.
        #[test]
        fn rate_is_bounded_by_bytes_in_window(
            window_ms in 1u64..30_000,
            records in prop::collection::vec((0u64..5_000, 0u64..1_000_000), 1..60),
            query_ms in prop::collection::vec(0u64..40_000, 1..8),
        ) {
            let t0 = Instant::now();
            let mut meter = RateMeter::new(ms(window_ms));
            let window = meter.window();
            let mut log = Vec::new();
            let mut now = t0;
            for (gap, bytes) in records {
                now += ms(gap);
                meter.record(now, bytes);
                log.push((now, bytes));
                // The running sum `rate` relies on stays equal to the ring's contents.
                prop_assert_eq!(meter.sum, meter.slots.iter().map(|&b| u128::from(b)).sum::<u128>());
                for &q in &query_ms {
                    let at = now + ms(q);
                    let rate = u128::from(meter.rate(at));
                    let in_window: u128 = log
                        .iter()
                        .filter(|(t, _)| *t + window > at)
                        .map(|(_, b)| u128::from(*b))
                        .sum();
                    let elapsed = at.duration_since(log[0].0).min(window);
                    if !elapsed.is_zero() {
                        prop_assert!(
                            rate * elapsed.as_nanos() <= in_window * NANOS_PER_SEC,
                            "rate {rate} > {in_window} bytes over {elapsed:?}"
                        );
                    }
                    let surely_counted: u128 = log
                        .iter()
                        .filter(|(t, _)| *t + window >= at + MAX_SLOT)
                        .map(|(_, b)| u128::from(*b))
                        .sum();
                    prop_assert!(
                        rate >= surely_counted * NANOS_PER_SEC / window.as_nanos(),
                        "rate {rate} < {surely_counted} bytes over {window:?}"
                    );
                    if at >= now + window {
                        prop_assert_eq!(rate, 0);
                    }
                }
            }
            prop_assert_eq!(meter.total(), log.iter().map(|(_, b)| *b).sum::<u64>());
        }
    }
}
