//! Time, injectable: the judge's window and the rollback timestamps read a [`Clock`], so tests
//! and the simulator can run hours of traffic in milliseconds.
//!
//! Routing never reads the clock. Recording reads it rarely: each thread looks at the clock
//! once every 1 to 64 of its records (a countdown paced to the thread's rate, so a thread at
//! one record a second still looks every second), to tell when the periodic evaluation is
//! due.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// A source of time for a gate.
///
/// # Example
/// ```
/// use promotion_gates::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// clock.advance(Duration::from_secs(90));
/// assert_eq!(clock.monotonic(), Duration::from_secs(90));
/// ```
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Time since an arbitrary fixed origin; never goes backwards. (One that does, against
    /// this contract, pauses the gate's periodic evaluations for about an evaluation interval
    /// and starts the window's spans again from the earlier time; memory stays bounded.)
    fn monotonic(&self) -> Duration;
    /// Wall-clock time, for rollback events. A time outside what a state store holds
    /// (nanoseconds since the Unix epoch in an `i64`: 1677-09-21 to 2262-04-11) is taken as
    /// the nearer end of that range, so that every process and a restart read an event at the
    /// time its gate holds.
    fn wall(&self) -> SystemTime;
}

/// `time` within the wall times a gate records: what nanoseconds since the Unix epoch in an
/// `i64` hold (see [`Clock::wall`]).
pub(crate) fn recordable(time: SystemTime) -> SystemTime {
    let limit = Duration::from_nanos(i64::MAX.unsigned_abs());
    let clamped = match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) if after > limit => SystemTime::UNIX_EPOCH.checked_add(limit),
        Err(before) if before.duration() > limit => SystemTime::UNIX_EPOCH.checked_sub(limit),
        _ => None,
    };
    clamped.unwrap_or(time)
}

/// The real clock: [`Instant`] for the window, [`SystemTime`] for events.
///
/// # Example
/// ```
/// use promotion_gates::{Clock, SystemClock};
/// let clock = SystemClock::new();
/// assert!(clock.monotonic() <= clock.monotonic());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose monotonic origin is now.
    ///
    /// # Example
    /// ```
    /// let _ = promotion_gates::SystemClock::new();
    /// ```
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to; shareable across threads.
///
/// Its wall time is the moment it was made plus the time it was advanced.
///
/// # Example
/// ```
/// use promotion_gates::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let start = clock.wall();
/// clock.set(Duration::from_millis(1500));
/// assert_eq!(clock.wall().duration_since(start).unwrap(), Duration::from_millis(1500));
/// ```
#[derive(Debug)]
pub struct ManualClock {
    nanos: AtomicU64,
    wall_origin: SystemTime,
}

impl ManualClock {
    /// A clock at monotonic zero.
    ///
    /// # Example
    /// ```
    /// use promotion_gates::{Clock, ManualClock};
    /// assert_eq!(ManualClock::new().monotonic().as_nanos(), 0);
    /// ```
    pub fn new() -> Self {
        Self {
            nanos: AtomicU64::new(0),
            wall_origin: SystemTime::now(),
        }
    }

    /// Moves the clock forward by `by` (saturating at about 584 years).
    ///
    /// # Example
    /// ```
    /// use promotion_gates::{Clock, ManualClock};
    /// let clock = ManualClock::new();
    /// clock.advance(std::time::Duration::from_millis(3));
    /// assert_eq!(clock.monotonic().as_millis(), 3);
    /// ```
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // fetch_update with a closure that always returns Some cannot fail.
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_add(by))
            });
    }

    /// Sets the clock to `at`, if that is not earlier than now (time never goes backwards).
    ///
    /// # Example
    /// ```
    /// use promotion_gates::{Clock, ManualClock};
    /// use std::time::Duration;
    /// let clock = ManualClock::new();
    /// clock.set(Duration::from_secs(5));
    /// clock.set(Duration::from_secs(1)); // ignored
    /// assert_eq!(clock.monotonic(), Duration::from_secs(5));
    /// ```
    pub fn set(&self, at: Duration) {
        let at = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_max(at, Ordering::AcqRel);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn monotonic(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Acquire))
    }

    fn wall(&self) -> SystemTime {
        self.wall_origin + self.monotonic()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_times_past_what_a_store_holds_are_taken_at_its_ends() {
        let epoch = SystemTime::UNIX_EPOCH;
        let limit = Duration::from_nanos(i64::MAX.unsigned_abs());
        let year = Duration::from_secs(31_556_952);
        let (latest, earliest) = (epoch + limit, epoch - limit);
        assert_eq!(recordable(epoch + 1_000 * year), latest);
        assert_eq!(recordable(epoch - 1_000 * year), earliest);
        for inside in [epoch, epoch + 56 * year, epoch - year, latest, earliest] {
            assert_eq!(recordable(inside), inside);
        }
    }
}
