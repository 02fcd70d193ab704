//! A write lock for a group of metrics one operation always writes
//! together (the extractor's exchange counter, duration and two body-size
//! histograms): one atomic read-modify-write to take it, a plain store to
//! release it, and plain stores for every figure in between, instead of
//! one atomic add per figure (seven per exchange for those four metrics).
//!
//! Correctness rests on one rule, the caller's: **every writer of a metric
//! written under a [`WriteLock`] holds that same lock** (the metric is
//! never written through another handle or without the lock). Readers, the
//! scrape, take no lock: every figure is an atomic, so each value read is
//! one that was written; figures of the same group may be read between two
//! writers' updates (a `_sum` may lead or lag its buckets by an
//! observation), as with any lock-free client.
//!
//! The lock spins: the section it guards is a handful of loads and stores
//! (no allocation, no call that can block or panic), so a waiter retries
//! with a spin hint and, should the holder have been preempted, yields its
//! thread after a few attempts. No `unsafe`: the guarded figures are
//! atomics written with relaxed loads and stores, ordered by the lock's
//! acquire and release.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Spin attempts before a waiter yields its thread.
const SPINS: u32 = 64;

/// The lock of one group of metrics; see the module documentation.
#[derive(Debug, Default)]
pub struct WriteLock {
    held: AtomicBool,
}

/// Proof that a [`WriteLock`] is held; releases it when dropped.
#[derive(Debug)]
pub struct Held<'a> {
    lock: &'a WriteLock,
}

impl WriteLock {
    /// Takes the lock, waiting while another writer holds it.
    pub fn lock(&self) -> Held<'_> {
        let mut spins = 0;
        while self
            .held
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        Held { lock: self }
    }
}

/// A metric and the [`WriteLock`] of the group it leads, registered as
/// the metric (it encodes exactly as `M`): a `Family` of them hands every
/// holder of a label set's series the same lock, for that series and for
/// the other metrics of its group (the proxy's handle time per system,
/// with the response counters of that system's listeners). Clones share
/// the lock (and the metric, as `prometheus-client`'s metrics do).
#[derive(Debug, Clone, Default)]
pub struct Locked<M> {
    metric: M,
    lock: Arc<WriteLock>,
}

impl<M> Locked<M> {
    /// `metric` with a lock of its own.
    pub fn new(metric: M) -> Self {
        Locked {
            metric,
            lock: Arc::default(),
        }
    }

    /// The metric, to be written only while [`Locked::lock`] is held.
    pub fn metric(&self) -> &M {
        &self.metric
    }

    /// Takes the group's lock.
    pub fn lock(&self) -> Held<'_> {
        self.lock.lock()
    }
}

impl<M: TypedMetric> TypedMetric for Locked<M> {
    const TYPE: MetricType = M::TYPE;
}

impl<M: EncodeMetric> EncodeMetric for Locked<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.metric.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.metric.metric_type()
    }

    fn is_empty(&self) -> bool {
        self.metric.is_empty()
    }
}

impl Held<'_> {
    /// Adds `n` to `figure` (wrapping), a plain load and store: the
    /// figure's writers all hold this lock.
    pub fn add(&self, figure: &AtomicU64, n: u64) {
        figure.store(
            figure.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Counts one in `counter`, whose writers all hold this lock.
    pub fn inc(&self, counter: &Counter) {
        self.add(counter.inner(), 1);
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.lock.held.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_holding_the_lock_lose_no_update() {
        const THREADS: u64 = 4;
        const PER_THREAD: u64 = 50_000;
        let lock = WriteLock::default();
        let counter = Counter::<u64>::default();
        let sum = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let (lock, counter, sum) = (&lock, counter.clone(), &sum);
                scope.spawn(move || {
                    for i in 0..PER_THREAD {
                        let held = lock.lock();
                        held.inc(&counter);
                        held.add(sum, thread * PER_THREAD + i);
                    }
                });
            }
        });
        let n = THREADS * PER_THREAD;
        assert_eq!(counter.get(), n);
        assert_eq!(sum.load(Ordering::Relaxed), n * (n - 1) / 2);
        // Released after the last writer: it can be taken again at once.
        assert!(lock
            .held
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok());
    }
}
