//! Pacing of new exchanges at a target rate, in virtual time.
//!
//! Slot `k` (k = 0, 1, …) is due at `start + k / rate` seconds. [`Pacer::take`] hands out the
//! slots that are due and that the caller can use now; slots that are due but cannot be used
//! (the outstanding window is full, or the loop woke late) wait as a backlog, which is capped so
//! that a stall is never followed by an unbounded burst. Slots dropped from the backlog are
//! counted in [`Pacer::missed`]: they make the offered rate fall short of the target, and the
//! report says so.
//!
//! Times are nanoseconds on the caller's monotonic clock; the pacer never reads a clock.

const NANOS: u128 = 1_000_000_000;

/// Hands out start slots at `rate` per second.
#[derive(Clone, Debug)]
pub struct Pacer {
    rate: u64,
    start: u64,
    issued: u64,
    max_backlog: u64,
    missed: u64,
}

impl Pacer {
    /// A pacer issuing `rate` slots per second (at least 1) from `start` (ns), keeping at most
    /// `max_backlog` (at least 1) due-but-unused slots.
    pub fn new(rate: u64, start: u64, max_backlog: u64) -> Pacer {
        Pacer {
            rate: rate.max(1),
            start,
            issued: 0,
            max_backlog: max_backlog.max(1),
            missed: 0,
        }
    }

    /// The backlog a run at `rate` should allow: 10 ms worth of slots, at least 16. Enough to
    /// absorb a late wake-up of the event loop (its sleeps have millisecond granularity), small
    /// enough that a server stall is not answered with a flood.
    pub fn default_backlog(rate: u64) -> u64 {
        (rate / 100).max(16)
    }

    /// The target rate, slots per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Slots due by `now` since the start (issued, missed or waiting).
    fn due_total(&self, now: u64) -> u64 {
        if now < self.start {
            return 0;
        }
        let elapsed = u128::from(now - self.start);
        let k = elapsed * u128::from(self.rate) / NANOS + 1;
        u64::try_from(k).unwrap_or(u64::MAX)
    }

    /// Take up to `available` of the slots due at `now`; returns how many were taken.
    pub fn take(&mut self, now: u64, available: u64) -> u64 {
        let due = self.due_total(now);
        let mut backlog = due.saturating_sub(self.issued);
        if backlog > self.max_backlog {
            let drop = backlog - self.max_backlog;
            self.missed += drop;
            self.issued += drop;
            backlog = self.max_backlog;
        }
        let n = backlog.min(available);
        self.issued += n;
        n
    }

    /// When the next slot not yet taken is (or was) due, in ns.
    pub fn next_due(&self) -> u64 {
        let t = (u128::from(self.issued) * NANOS).div_ceil(u128::from(self.rate));
        self.start
            .saturating_add(u64::try_from(t).unwrap_or(u64::MAX))
    }

    /// Slots dropped from the backlog so far (never started).
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// Slots handed out or missed so far.
    pub fn issued(&self) -> u64 {
        self.issued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn issues_exactly_the_rate_over_a_second() {
        // 1000/s polled every 100 µs: one slot per ms, never two at once.
        let mut p = Pacer::new(1000, 0, 100);
        let mut total = 0;
        let mut t = 0;
        while t < 1000 * MS {
            let n = p.take(t, u64::MAX);
            assert!(n <= 1, "burst of {n} at {t}");
            total += n;
            t += 100_000;
        }
        assert_eq!(total, 1000);
        assert_eq!(p.missed(), 0);
    }

    #[test]
    fn first_slot_is_due_at_start_and_not_before() {
        let mut p = Pacer::new(10, 5 * MS, 4);
        assert_eq!(p.take(0, 10), 0);
        assert_eq!(p.next_due(), 5 * MS);
        assert_eq!(p.take(5 * MS, 10), 1);
        assert_eq!(p.next_due(), 105 * MS);
        assert_eq!(p.take(105 * MS - 1, 10), 0);
        assert_eq!(p.take(105 * MS, 10), 1);
    }

    #[test]
    fn fractional_intervals_do_not_drift() {
        // 3/s: slots at 0, 333.33.., 666.66.. ms; next_due rounds up to whole ns.
        let mut p = Pacer::new(3, 0, 10);
        assert_eq!(p.take(0, 10), 1);
        assert_eq!(p.next_due(), 333_333_334);
        assert_eq!(p.take(333_333_333, 10), 0);
        assert_eq!(p.take(333_333_334, 10), 1);
        assert_eq!(p.take(999_999_999, 10), 1);
        assert_eq!(p.take(1_000_000_000, 10), 1);
        // after 100 s exactly 301 slots have been due
        let n = p.take(100_000 * MS, u64::MAX);
        assert_eq!(p.issued(), 301);
        assert_eq!(n + 4 + p.missed(), 301);
    }

    #[test]
    fn late_wakeup_catches_up_within_the_backlog() {
        let mut p = Pacer::new(10_000, 0, 100);
        assert_eq!(p.take(0, u64::MAX), 1);
        // woke 5 ms late: 50 slots due, all within the backlog
        assert_eq!(p.take(5 * MS, u64::MAX), 50);
        assert_eq!(p.missed(), 0);
    }

    #[test]
    fn long_stall_is_capped_and_counted() {
        let mut p = Pacer::new(10_000, 0, 100);
        assert_eq!(p.take(0, u64::MAX), 1);
        // 1 s stall: 10 000 slots due, only 100 may go at once, the rest are missed
        assert_eq!(p.take(1000 * MS, u64::MAX), 100);
        assert_eq!(p.missed(), 10_000 - 100);
        assert_eq!(p.issued(), 10_001);
        // and the schedule continues from there
        assert_eq!(p.take(1000 * MS, u64::MAX), 0);
        assert_eq!(p.take(1000 * MS + 100_000, u64::MAX), 1);
    }

    #[test]
    fn unused_slots_wait_while_the_window_is_full() {
        let mut p = Pacer::new(1000, 0, 16);
        assert_eq!(p.take(0, 0), 0);
        assert_eq!(p.take(9 * MS, 3), 3);
        // 10 due, 3 taken: 7 wait
        assert_eq!(p.take(9 * MS, u64::MAX), 7);
        assert_eq!(p.missed(), 0);
        // window full for 30 ms: the backlog is capped at 16
        assert_eq!(p.take(39 * MS, 0), 0);
        assert_eq!(p.missed(), 40 - 10 - 16);
        assert_eq!(p.take(39 * MS, u64::MAX), 16);
    }

    #[test]
    fn default_backlog_is_ten_ms() {
        assert_eq!(Pacer::default_backlog(100), 16);
        assert_eq!(Pacer::default_backlog(50_000), 500);
    }

    #[test]
    fn zero_rate_is_treated_as_one() {
        let mut p = Pacer::new(0, 0, 0);
        assert_eq!(p.rate(), 1);
        assert_eq!(p.take(0, 5), 1);
        assert_eq!(p.take(999 * MS, 5), 0);
        assert_eq!(p.take(1000 * MS, 5), 1);
    }
}
