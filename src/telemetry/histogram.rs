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
//! - the sum as an **integer** number of ticks, added with one
//!   `fetch_add` (no compare-and-swap loop): nanoseconds for a histogram
//!   of seconds ([`AtomicHistogram::seconds`]), bytes for one of bytes
//!   ([`AtomicHistogram::bytes`]). A duration or a size adds its exact
//!   integer ([`AtomicHistogram::observe_duration`],
//!   [`AtomicHistogram::observe_u64`]), so racing threads sum exactly, in
//!   any order; the encoder divides by the ticks per unit. A value given as
//!   an `f64` ([`AtomicHistogram::observe`]) adds its nearest tick (a
//!   duration from `as_secs_f64` rounds back to its nanoseconds); NaN adds
//!   nothing to the sum (it still counts, in `+Inf`), where
//!   `prometheus-client`'s sum would become NaN. The tick sum wraps after
//!   2⁶³ ticks (292 years of summed durations);
//! - no separate count: `_count` is the sum of the bucket counts when the
//!   histogram is encoded, so `_count` always equals the `+Inf` bucket even
//!   while observations race with a scrape (the sum may then lag or lead by
//!   the racing observations, as it may with any lock-free client).
//!
//! [`AtomicHistogram`] implements [`EncodeMetric`] through the same
//! [`MetricEncoder::encode_histogram`] call as `prometheus-client`'s
//! histogram, so the exposition (`_bucket{le=…}`, `+Inf`, `_sum`, `_count`)
//! and everything that reads it back (the OTLP metrics snapshot) is
//! unchanged; the sum, divided from exact ticks, may differ from
//! `prometheus-client`'s running `f64` sum in its last digits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

use super::write_lock::Held;

/// Ticks of the sum per second in a histogram of seconds.
const NANOS_PER_SECOND: u64 = 1_000_000_000;

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
    /// The sum of all observations in ticks (two's complement, wrapping:
    /// a negative value subtracts).
    sum: AtomicU64,
    /// Ticks per unit of the observed values (1 for bytes, 10⁹ for seconds).
    ticks_per_unit: u64,
}

impl AtomicHistogram {
    /// A histogram of seconds, its sum kept in nanoseconds. Bounds are
    /// taken as `prometheus-client`'s `Histogram::new` takes them:
    /// non-finite bounds are dropped and a `+Inf` bucket is appended.
    /// Bounds are expected in ascending order.
    pub fn seconds(buckets: impl IntoIterator<Item = f64>) -> Self {
        Self::with_ticks(buckets, NANOS_PER_SECOND)
    }

    /// A histogram of whole units (bytes), its sum kept in those units.
    /// Bounds as for [`AtomicHistogram::seconds`].
    pub fn bytes(buckets: impl IntoIterator<Item = f64>) -> Self {
        Self::with_ticks(buckets, 1)
    }

    fn with_ticks(buckets: impl IntoIterator<Item = f64>, ticks_per_unit: u64) -> Self {
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
                sum: AtomicU64::new(0),
                ticks_per_unit,
            }),
        }
    }

    /// Records `value` (in the histogram's unit): into the first bucket
    /// whose bound is ≥ `value` (NaN into `+Inf`, as `prometheus-client`
    /// does), and its nearest tick into the sum.
    pub fn observe(&self, value: f64) {
        // `as` saturates, and maps NaN to 0.
        let ticks = (value * self.inner.ticks_per_unit as f64).round() as i64;
        self.record(value, ticks as u64);
    }

    /// Records a duration, exactly, in a histogram of seconds.
    pub fn observe_duration(&self, duration: Duration) {
        let (value, ticks) = self.duration_ticks(duration);
        self.record(value, ticks);
    }

    /// Records a whole number of units (bytes), exactly.
    pub fn observe_u64(&self, value: u64) {
        // Precision loss above 2^53 is of no concern for the bucket.
        self.record(value as f64, value.wrapping_mul(self.inner.ticks_per_unit));
    }

    /// Records a duration, exactly, in a histogram of seconds, with two
    /// plain stores instead of two atomic adds: for a histogram whose
    /// every writer holds the same [`WriteLock`](super::write_lock::WriteLock) (see there).
    pub fn observe_duration_held(&self, held: &Held<'_>, duration: Duration) {
        let (value, ticks) = self.duration_ticks(duration);
        self.record_held(held, value, ticks);
    }

    /// Records a whole number of units, exactly, as
    /// [`AtomicHistogram::observe_duration_held`] does.
    pub fn observe_u64_held(&self, held: &Held<'_>, value: u64) {
        self.record_held(
            held,
            value as f64,
            value.wrapping_mul(self.inner.ticks_per_unit),
        );
    }

    /// A duration's value in seconds (for its bucket) and its ticks.
    fn duration_ticks(&self, duration: Duration) -> (f64, u64) {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let ticks = match self.inner.ticks_per_unit {
            NANOS_PER_SECOND => nanos,
            per_unit => {
                let ticks = u128::from(nanos) * u128::from(per_unit) / u128::from(NANOS_PER_SECOND);
                u64::try_from(ticks).unwrap_or(u64::MAX)
            }
        };
        (duration.as_secs_f64(), ticks)
    }

    /// One observation: `value` picks the bucket, `ticks` add to the sum.
    fn record(&self, value: f64, ticks: u64) {
        let inner = &*self.inner;
        if let Some(count) = inner.counts.get(inner.bucket(value)) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        inner.sum.fetch_add(ticks, Ordering::Relaxed);
    }

    /// [`AtomicHistogram::record`] by writers that hold one lock.
    fn record_held(&self, held: &Held<'_>, value: f64, ticks: u64) {
        let inner = &*self.inner;
        if let Some(count) = inner.counts.get(inner.bucket(value)) {
            held.add(count, 1);
        }
        held.add(&inner.sum, ticks);
    }

    /// The sum, count and per-bucket `(bound, count)` pairs, as
    /// [`MetricEncoder::encode_histogram`] takes them.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let inner = &*self.inner;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .zip(inner.counts.iter())
            .map(|(bound, count)| (*bound, count.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let ticks = inner.sum.load(Ordering::Relaxed) as i64;
        let sum = ticks as f64 / inner.ticks_per_unit as f64;
        (sum, count, buckets)
    }
}

impl Inner {
    /// The index of the first bound ≥ `value`, `+Inf`'s for NaN. A
    /// linear search: observations mostly fall in the first few buckets
    /// (a branch-free count over every bound measured 55 instructions more
    /// per observation, and no faster).
    fn bucket(&self, value: f64) -> usize {
        let last = self.bounds.len() - 1;
        self.bounds
            .iter()
            .position(|bound| *bound >= value)
            .unwrap_or(last)
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

    use std::collections::BTreeMap;

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

    /// Both histograms (ours of seconds), registered under the same name
    /// with the same observations in their own registries; the two
    /// expositions.
    fn expositions(values: &[f64], family: bool) -> (String, String) {
        let ours = AtomicHistogram::seconds(BOUNDS);
        let theirs = Histogram::new(BOUNDS);
        let mut our_registry = Registry::with_prefix("waybill");
        let mut their_registry = Registry::with_prefix("waybill");
        if family {
            let our_family =
                Family::<Labels, AtomicHistogram, fn() -> AtomicHistogram>::new_with_constructor(
                    || AtomicHistogram::seconds(BOUNDS),
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

    /// An exposition's lines by series (name and labels; a family writes
    /// its series in its hash map's order, which differs between two
    /// families), each with its value; the `#` lines in order under "#".
    fn series(text: &str) -> BTreeMap<String, String> {
        let mut series = BTreeMap::new();
        let mut comments = String::new();
        for line in text.lines() {
            if line.starts_with('#') {
                comments.push_str(line);
                comments.push('\n');
            } else if let Some((name, value)) = line.rsplit_once(' ') {
                series.insert(name.to_owned(), value.to_owned());
            }
        }
        series.insert("#".to_owned(), comments);
        series
    }

    /// Both expositions have the same lines and series, every value equal
    /// except the sums, which (divided from exact ticks here, a running
    /// `f64` sum there) agree to 1e-12 relative.
    fn assert_same_exposition(ours: &str, theirs: &str) {
        let (ours, theirs) = (series(ours), series(theirs));
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>()
        );
        for (name, value) in &ours {
            let other = &theirs[name];
            if name.contains("_sum") {
                let (a, b): (f64, f64) = (value.parse().expect("a"), other.parse().expect("b"));
                assert!(
                    (a - b).abs() <= 1e-12 * a.abs().max(b.abs()),
                    "{name}: {value} vs {other}"
                );
            } else {
                assert_eq!(value, other, "{name}");
            }
        }
    }

    #[test]
    fn exposition_equals_prometheus_client_histogram() {
        let values = [
            0.0, 0.005, 0.0051, 0.02, 0.1, 0.7, 1.0, 3.5, 10.0, 12.0, 1e9, -1.0, 0.0123,
        ];
        let (ours, theirs) = expositions(&values, false);
        assert!(
            ours.contains("waybill_size_bucket{le=\"+Inf\"} 13"),
            "{ours}"
        );
        assert_same_exposition(&ours, &theirs);
    }

    #[test]
    fn family_exposition_equals_prometheus_client_histogram() {
        let values = [0.001, 0.004, 0.009, 0.05, 0.5, 2.0, 20.0, 0.3];
        let (ours, theirs) = expositions(&values, true);
        assert!(ours.contains("system=\"wms\""), "{ours}");
        assert_same_exposition(&ours, &theirs);
    }

    #[test]
    fn empty_exposition_equals_prometheus_client_histogram() {
        let (ours, theirs) = expositions(&[], false);
        assert_eq!(ours, theirs);
    }

    #[test]
    fn nan_counts_in_inf_but_leaves_the_sum() {
        let histogram = AtomicHistogram::seconds(BOUNDS);
        histogram.observe(0.25);
        histogram.observe(f64::NAN);
        let (sum, count, buckets) = histogram.snapshot();
        assert_eq!((sum, count), (0.25, 2));
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 1)));
    }

    #[test]
    fn durations_and_sizes_sum_exactly() {
        let seconds = AtomicHistogram::seconds(BOUNDS);
        let bytes = AtomicHistogram::bytes([64.0, 1024.0]);
        // 0.1 s ten times: a running f64 sum drifts, the ticks do not.
        for _ in 0..10 {
            seconds.observe_duration(Duration::from_millis(100));
        }
        bytes.observe_u64(64);
        bytes.observe_u64(65);
        bytes.observe_u64(5_000);
        let (sum, count, buckets) = seconds.snapshot();
        assert_eq!((sum, count), (1.0, 10));
        assert_eq!(buckets[2], (0.1, 10), "{buckets:?}");
        let (sum, count, buckets) = bytes.snapshot();
        assert_eq!((sum, count), (5_129.0, 3));
        assert_eq!(buckets, [(64.0, 1), (1024.0, 1), (f64::INFINITY, 1)]);
        // What a running f64 sum makes of the same: not 1.
        assert_ne!((0..10).map(|_| 0.1).sum::<f64>(), 1.0);
    }

    #[test]
    fn concurrent_observations_sum_exactly() {
        const THREADS: u64 = 4;
        const PER_THREAD: u64 = 20_000;
        let histogram = AtomicHistogram::seconds(BOUNDS);
        let sizes = AtomicHistogram::bytes([64.0, 1024.0]);
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let histogram = histogram.clone();
                let sizes = sizes.clone();
                scope.spawn(move || {
                    for i in 0..PER_THREAD {
                        let n = (thread * PER_THREAD + i) % 64;
                        // n / 4 seconds, as a float and as a duration.
                        if i % 2 == 0 {
                            histogram.observe(n as f64 / 4.0);
                        } else {
                            histogram.observe_duration(Duration::from_millis(n * 250));
                        }
                        sizes.observe_u64(n * 100);
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
        let (sum, count, buckets) = sizes.snapshot();
        assert_eq!(count, THREADS * PER_THREAD);
        assert_eq!(sum, expected_sum * 400.0);
        // 0 → 64; 100..=1000 → 1024; 1100..=6300 → +Inf.
        let counts: Vec<u64> = buckets.iter().map(|(_, n)| *n).collect();
        assert_eq!(counts, [per_residue, 10 * per_residue, 53 * per_residue]);
    }
}
