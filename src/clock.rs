//! The wall clock. Every stage that stamps a time reads it from a [`Clock`]
//! handed in at construction, never from a global, so the demo can compress
//! hours into seconds and tests can control time.
//!
//! A time the stages carry is a [`Stamp`]: integer nanoseconds since the
//! Unix epoch, read once where an exchange is stamped and compared,
//! subtracted and encoded as a `u64` from there on (the store, its
//! timeline and expiry order, the spans). It becomes a `SystemTime` or
//! RFC 3339 text only at the edges (the admin API, snapshots, journals).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A source of wall-clock time, cheap to clone and share between tasks.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl Clock {
    /// The real system clock.
    pub fn system() -> Self {
        Clock(Arc::new(SystemTime::now))
    }

    /// A clock that starts at the real time now and runs `speed` times faster.
    /// Used by the demo so a day of logistics fits into seconds.
    pub fn scaled(speed: f64) -> Self {
        let origin = SystemTime::now();
        let started = std::time::Instant::now();
        let speed = if speed.is_finite() && speed > 0.0 {
            speed
        } else {
            1.0
        };
        Clock(Arc::new(move || {
            origin + Duration::from_secs_f64(started.elapsed().as_secs_f64() * speed)
        }))
    }

    /// A clock driven by the caller, for tests: returns whatever the closure says.
    pub fn from_fn(f: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        Clock(Arc::new(f))
    }

    /// The current time on this clock.
    pub fn now(&self) -> SystemTime {
        (self.0)()
    }

    /// The current time on this clock, as a [`Stamp`].
    pub fn stamp(&self) -> Stamp {
        Stamp::new(self.now())
    }
}

/// A time as nanoseconds since the Unix epoch: 8 bytes where a
/// `SystemTime` takes 16, exact to the nanosecond until the year 2554
/// (later saturates); a time before 1970 is held as the epoch. Ordering,
/// differences and encoding are integer operations, where a `SystemTime`'s
/// go through a library call each (`Timespec::sub_timespec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Stamp(u64);

impl Stamp {
    /// The stamp of `time`.
    pub fn new(time: SystemTime) -> Self {
        Stamp(
            time.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, nanos_of),
        )
    }

    /// The time again.
    pub fn time(self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(self.0)
    }

    /// Nanoseconds since the epoch.
    pub fn nanos(self) -> u64 {
        self.0
    }

    /// The stamp `nanos` nanoseconds after the epoch.
    pub fn from_nanos(nanos: u64) -> Self {
        Stamp(nanos)
    }

    /// How long after `earlier` this is (zero when it is not later).
    pub fn since(self, earlier: Stamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// The stamp `by` after this one (saturating).
    pub fn plus(self, by: Duration) -> Stamp {
        Stamp(self.0.saturating_add(nanos_of(by)))
    }
}

/// The nanoseconds of `duration`, saturating at `u64::MAX` (no 128-bit
/// arithmetic).
fn nanos_of(duration: Duration) -> u64 {
    duration
        .as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(duration.subsec_nanos()))
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// A clock that stands still until the caller moves it, for tests and
/// benchmarks that must not wait for real minutes.
#[derive(Clone, Debug)]
pub struct ManualClock {
    start: SystemTime,
    /// Milliseconds after `start`.
    offset: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: SystemTime) -> Self {
        ManualClock {
            start,
            offset: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The [`Clock`] to hand to the stages; it reads this manual clock.
    pub fn clock(&self) -> Clock {
        let (start, offset) = (self.start, Arc::clone(&self.offset));
        Clock::from_fn(move || start + Duration::from_millis(offset.load(Ordering::Acquire)))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let millis = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.offset.fetch_add(millis, Ordering::AcqRel);
    }

    /// Sets the clock to `since_start` after its start.
    pub fn set(&self, since_start: Duration) {
        let millis = u64::try_from(since_start.as_millis()).unwrap_or(u64::MAX);
        self.offset.store(millis, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_exact_to_the_nanosecond_and_saturates() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_800_000_000, 1);
        let stamp = Stamp::new(t);
        assert_eq!(stamp.nanos(), 1_800_000_000_000_000_001);
        assert_eq!(stamp.time(), t);
        let later = Stamp::new(t + Duration::from_nanos(1));
        assert!(stamp < later);
        assert_eq!(later.since(stamp), Duration::from_nanos(1));
        assert_eq!(stamp.since(later), Duration::ZERO);
        assert_eq!(
            stamp.plus(Duration::new(2, 5)).nanos(),
            1_800_000_002_000_000_006
        );
        assert_eq!(stamp.plus(Duration::MAX).nanos(), u64::MAX);
        let before_epoch = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(Stamp::new(before_epoch), Stamp::default());
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 40);
        assert_eq!(Stamp::new(far).nanos(), u64::MAX);
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let manual = ManualClock::new(start);
        let clock = manual.clock();
        assert_eq!(clock.now(), start);
        manual.advance(Duration::from_secs(90));
        assert_eq!(clock.now(), start + Duration::from_secs(90));
        manual.set(Duration::from_secs(5));
        assert_eq!(clock.now(), start + Duration::from_secs(5));
    }

    #[test]
    fn scaled_clock_runs_faster_than_real_time() {
        let clock = Clock::scaled(1000.0);
        let a = clock.now();
        std::thread::sleep(Duration::from_millis(5));
        let b = clock.now();
        let elapsed = b.duration_since(a).unwrap_or_default();
        assert!(elapsed >= Duration::from_secs(4), "elapsed {elapsed:?}");
    }
}
