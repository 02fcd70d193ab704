//! A lock-free classic Prometheus histogram for the per-exchange hot path.
//!
//! `prometheus-client`'s own `Histogram` takes a mutex (and checks its
//! native-histogram state) on every observation; an exchange observes
//! four of them from the proxy's and the extractor's threads. This one has
//! its bucket bounds fixed at construction and keeps every figure in an
//! atomic, so an observation is a bounds search and two atomic adds:
//!
//! - one `AtomicU64` count per bucket (not cumulative; the encoder makes
//!   them cumulative, exactly as for `prometheus-client`'s histogram);
//! - the sum as `f64` bits in an `AtomicU64`, added with a compare-and-swap
//!   loop. A fixed-point integer sum would need a scale per histogram (body
//!   sizes in bytes next to durations in seconds) and would round small
//!   durations; the CAS keeps the sum the same `f64` additions the mutex
//!   version performs, only their order varies between racing threads;
//! - no separate count: `_count` is the sum of the bucket counts when the
//!   histogram is encoded, so `_count` always equals the `+Inf` bucket even
//!   while observations race with a scrape (the sum may then lag or lead by
//!   the racing observations, as it may with any lock-free client).
//!
//! [`AtomicHistogram`] implements [`EncodeMetric`] through the same
//! [`MetricEncoder::encode_histogram`] call as `prometheus-client`'s
//! histogram, so the exposition (`_bucket{le=…}`, `+Inf`, `_sum`, `_count`)
//! and everything that reads it back (the OTLP metrics snapshot) is
//! unchanged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// A classic histogram whose observations take no lock. Clones share the
/// same counts (like `prometheus-client`'s metrics), so a handle resolved
/// once from a `Family` keeps feeding the registered series.
#[derive(Debug, Clone)]
pub struct AtomicHistogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds, ascending, the last one `+Inf`.
    bounds: Box<[f64]>,
    /// Observations per bucket, indexed like `bounds`.
    counts: Box<[AtomicU64]>,
    /// The sum of all observations, as `f64::to_bits`.
    sum: AtomicU64,
}

impl AtomicHistogram {
    /// A histogram with the given upper bounds, taken as
    /// `prometheus-client`'s `Histogram::new` takes them: non-finite bounds
    /// are dropped and a `+Inf` bucket is appended. Bounds are expected in
    /// ascending order.
    pub fn new(buckets: impl IntoIterator<Item = f64>) -> Self {
        let bounds: Box<[f64]> = buckets
            .into_iter()
            .filter(|bound| bound.is_finite())
            .chain(std::iter::once(f64::INFINITY))
            .collect();
        let counts = bounds.iter().map(|_| AtomicU64::new(0)).collect();
        Self {
            inner: Arc::new(Inner {
                bounds,
                counts,
                sum: AtomicU64::new(0f64.to_bits()),
            }),
        }
    }

    /// Records `value`: into the first bucket whose bound is ≥ `value` (NaN
    /// into `+Inf`, as `prometheus-client` does), and into the sum.
    pub fn observe(&self, value: f64) {
        let inner = &*self.inner;
        let last = inner.counts.len() - 1;
        let index = inner
            .bounds
            .iter()
            .position(|bound| *bound >= value)
            .unwrap_or(last);
        if let Some(count) = inner.counts.get(index) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        let mut current = inner.sum.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + value).to_bits();
            match inner.sum.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
    }

    /// The sum, count and per-bucket `(bound, count)` pairs, as
    /// [`MetricEncoder::encode_histogram`] takes them.
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let inner = &*self.inner;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .zip(inner.counts.iter())
            .map(|(bound, count)| (*bound, count.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = f64::from_bits(inner.sum.load(Ordering::Relaxed));
        (sum, count, buckets)
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use prometheus_client::encoding::text::encode;
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::{Registry, Unit};

    const BOUNDS: [f64; 6] = [0.005, 0.01, 0.1, 1.0, 10.0, f64::INFINITY];

    #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Labels {
        system: &'static str,
    }

    /// Both histograms, registered under the same name with the same
    /// observations in their own registries; the two expositions.
    fn expositions(values: &[f64], family: bool) -> (String, String) {
        let ours = AtomicHistogram::new(BOUNDS);
        let theirs = Histogram::new(BOUNDS);
        let mut our_registry = Registry::with_prefix("waybill");
        let mut their_registry = Registry::with_prefix("waybill");
        if family {
            let our_family =
                Family::<Labels, AtomicHistogram, fn() -> AtomicHistogram>::new_with_constructor(
                    || AtomicHistogram::new(BOUNDS),
                );
            let their_family =
                Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
                    Histogram::new(BOUNDS)
                });
            our_registry.register_with_unit("handle", "help", Unit::Seconds, our_family.clone());
            their_registry.register_with_unit(
                "handle",
                "help",
                Unit::Seconds,
                their_family.clone(),
            );
            for (i, value) in values.iter().enumerate() {
                let system = if i % 2 == 0 { "erp" } else { "wms" };
                our_family.get_or_create(&Labels { system }).observe(*value);
                their_family
                    .get_or_create(&Labels { system })
                    .observe(*value);
            }
        } else {
            our_registry.register("size", "help", ours.clone());
            their_registry.register("size", "help", theirs.clone());
            for value in values {
                ours.observe(*value);
                theirs.observe(*value);
            }
        }
        let mut our_text = String::new();
        let mut their_text = String::new();
        encode(&mut our_text, &our_registry).expect("encodes");
        encode(&mut their_text, &their_registry).expect("encodes");
        (our_text, their_text)
    }

    #[test]
    fn exposition_equals_prometheus_client_histogram() {
        let values = [
            0.0, 0.005, 0.0051, 0.02, 0.1, 0.7, 1.0, 3.5, 10.0, 12.0, 1e9, -1.0,
        ];
        let (ours, theirs) = expositions(&values, false);
        assert!(ours.contains("waybill_size_bucket{le=\"+Inf\"}"), "{ours}");
        assert_eq!(ours, theirs);
    }

    #[test]
    fn family_exposition_equals_prometheus_client_histogram() {
        let values = [0.001, 0.004, 0.009, 0.05, 0.5, 2.0, 20.0, 0.3];
        let (ours, theirs) = expositions(&values, true);
        assert!(ours.contains("system=\"wms\""), "{ours}");
        // A family writes its series in its hash map's order, which differs
        // between two families: compare series by series, each in order.
        assert_eq!(by_series(&ours), by_series(&theirs));
    }

    /// The exposition's lines grouped by the series' `system` label (""
    /// for the family's header lines), each group in the order written.
    fn by_series(text: &str) -> std::collections::BTreeMap<&str, Vec<&str>> {
        let mut series = std::collections::BTreeMap::<&str, Vec<&str>>::new();
        for line in text.lines() {
            let system = line
                .split_once("system=\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map_or("", |(system, _)| system);
            series.entry(system).or_default().push(line);
        }
        series
    }

    #[test]
    fn empty_and_nan_expositions_equal_prometheus_client_histogram() {
        let (ours, theirs) = expositions(&[], false);
        assert_eq!(ours, theirs);
        let (ours, theirs) = expositions(&[0.2, f64::NAN], false);
        assert!(ours.contains("NaN"), "{ours}");
        assert_eq!(ours, theirs);
    }

    #[test]
    fn concurrent_observations_sum_exactly() {
        const THREADS: u64 = 4;
        const PER_THREAD: u64 = 20_000;
        let histogram = AtomicHistogram::new(BOUNDS);
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let histogram = histogram.clone();
                scope.spawn(move || {
                    for i in 0..PER_THREAD {
                        // Multiples of 1/4 up to a few thousand: every
                        // partial sum is exact in an f64, in any order.
                        histogram.observe(((thread * PER_THREAD + i) % 64) as f64 / 4.0);
                    }
                });
            }
        });
        let (sum, count, buckets) = histogram.snapshot();
        let expected_sum: f64 = (0..THREADS * PER_THREAD)
            .map(|n| (n % 64) as f64 / 4.0)
            .sum();
        assert_eq!(count, THREADS * PER_THREAD);
        assert_eq!(sum, expected_sum);
        // 0 → the 0.005 bucket; 0.25..=1.0 → the 1.0 bucket; 1.25..=10 → 10;
        // above 10 → +Inf. Each residue occurs count / 64 times.
        let per_residue = THREADS * PER_THREAD / 64;
        let in_bucket = |bound: f64| {
            buckets
                .iter()
                .find(|(b, _)| *b == bound)
                .map(|(_, n)| *n)
                .unwrap_or(u64::MAX)
        };
        assert_eq!(in_bucket(0.005), per_residue);
        assert_eq!(in_bucket(0.01), 0);
        assert_eq!(in_bucket(1.0), 4 * per_residue);
        assert_eq!(in_bucket(10.0), 36 * per_residue);
        assert_eq!(in_bucket(f64::INFINITY), 23 * per_residue);
    }
}
