//! The wall clock. Every stage that stamps a time reads it from a [`Clock`]
//! handed in at construction, never from a global, so the demo can compress
//! hours into seconds and tests can control time.

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
