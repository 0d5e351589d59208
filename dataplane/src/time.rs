//! Wall-clock time as the pure components see it.
//!
//! Leases outlive the process and failover compares clocks between servers, so every component
//! works in wall-clock time: milliseconds since the Unix epoch. Only the I/O shells read the
//! clock ([`Time::now`]); everything else takes `now` as an argument.

use std::time::{SystemTime, UNIX_EPOCH};

/// A point in wall-clock time, in milliseconds since the Unix epoch.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub u64);

impl Time {
    /// The system clock now. Only I/O code calls this.
    pub fn now() -> Time {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Time(d.as_millis() as u64)
    }

    /// A time from whole seconds since the epoch.
    pub const fn from_secs(secs: u64) -> Time {
        Time(secs.saturating_mul(1000))
    }

    /// Whole seconds since the epoch (rounded down).
    pub const fn secs(self) -> u64 {
        self.0 / 1000
    }

    /// Milliseconds since the epoch.
    pub const fn millis(self) -> u64 {
        self.0
    }

    /// This time plus `secs` seconds (saturating).
    pub const fn plus_secs(self, secs: u64) -> Time {
        Time(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    /// This time plus `ms` milliseconds (saturating).
    pub const fn plus_millis(self, ms: u64) -> Time {
        Time(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub const fn millis_since(self, earlier: Time) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}
