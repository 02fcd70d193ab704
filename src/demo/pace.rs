//! The demo's business clock: compressed while the orders are driven, then
//! back to real time, so what the sidecar recorded stays put while someone
//! browses it with `--keep-running` (at full speed the store's two-week TTL
//! would pass in seconds and every transaction would expire).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::time::Instant;

use crate::clock::Clock;

/// A clock whose speed can change without ever jumping back or forth.
#[derive(Clone)]
pub struct Pace(Arc<Mutex<Gear>>);

/// The current gear: business time `business` at real instant `real`,
/// advancing `speed` business seconds per real second from there.
struct Gear {
    real: Instant,
    business: SystemTime,
    speed: f64,
}

impl Gear {
    fn now(&self) -> SystemTime {
        self.business + self.real.elapsed().mul_f64(self.speed)
    }
}

impl Pace {
    /// Starts at the real time now, running `speed` times faster.
    pub fn new(speed: f64) -> Self {
        Pace(Arc::new(Mutex::new(Gear {
            real: Instant::now(),
            business: SystemTime::now(),
            speed: sane(speed),
        })))
    }

    /// The business time now.
    pub fn now(&self) -> SystemTime {
        self.lock().now()
    }

    /// From now on, run at `speed`; time continues from where it is.
    pub fn shift(&self, speed: f64) {
        let mut gear = self.lock();
        gear.business = gear.now();
        gear.real = Instant::now();
        gear.speed = sane(speed);
    }

    /// A [`Clock`] reading this pace, for the sidecar and the driver.
    pub fn clock(&self) -> Clock {
        let pace = self.clone();
        Clock::from_fn(move || pace.now())
    }

    fn lock(&self) -> MutexGuard<'_, Gear> {
        // The guarded value is always consistent (plain assignments).
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn sane(speed: f64) -> f64 {
    if speed.is_finite() && speed > 0.0 {
        speed
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn shifting_gear_keeps_time_continuous() {
        let pace = Pace::new(1000.0);
        let start = pace.now();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let fast = pace.now().duration_since(start).unwrap_or_default();
        assert!(fast >= Duration::from_secs(20), "{fast:?}");
        pace.shift(1.0);
        let shifted = pace.now();
        assert!(shifted >= start + Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let slow = pace
            .clock()
            .now()
            .duration_since(shifted)
            .unwrap_or_default();
        assert!(
            slow >= Duration::from_millis(20) && slow < Duration::from_secs(5),
            "{slow:?}"
        );
    }
}
