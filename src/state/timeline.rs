//! A transaction's exchange timeline: its most recent exchanges, oldest
//! first, each held in a 40-byte record.
//!
//! A store holds up to `max_exchanges_per_transaction` of these per
//! transaction, a million transactions deep, so the common exchange is
//! packed and nothing is lost: whatever does not fit the packed form is
//! kept exactly in one out-of-line box that is absent for the common
//! exchange.
//!
//! - the start time is a signed 48-bit nanosecond offset from the
//!   timeline's base (the first exchange pushed into an empty timeline:
//!   ± 39 hours); a time beyond that is kept exactly out of line;
//! - the duration is `u32` nanoseconds (up to 4.29 s); a longer one is
//!   kept exactly out of line;
//! - the path is an index into the timeline's list of distinct paths
//!   (the exchanges of a transaction usually go to a few endpoints); when
//!   256 distinct paths are in use the path is kept out of line;
//! - the keys are up to 7 positions below 16 in the transaction's `keys`,
//!   a nibble each, in the order carried; more, or further, out of line;
//! - config names are 2-byte [`NameId`]s (an absent one is a niche), the
//!   method and the upstream error share one byte (an extension method's
//!   text is kept out of line), extraction problems are out of line.
//!
//! Readers see an [`ExchangeRecord`], a view that gives every value back
//! exactly as it was pushed.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use thin_vec::ThinVec;

use super::transaction::{KeyRefs, NameId, Stamp};
use crate::config::{kind, Milestone, Operation, System};
use crate::extract::Problem;
use crate::proxy::UpstreamError;

/// A transaction's most recent exchanges, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    records: VecDeque<Packed>,
    /// Start times are offsets from this: the start of the first exchange
    /// pushed while the timeline was empty.
    base: Stamp,
    /// The distinct paths the records point to by index (at most 256).
    paths: ThinVec<Box<str>>,
}

/// What an exchange's record is made from.
#[derive(Debug, Clone)]
pub struct NewExchange<'a> {
    pub id: u64,
    pub at: SystemTime,
    pub system: &'a System,
    pub operation: Option<&'a Operation>,
    pub method: &'a http::Method,
    pub path: &'a str,
    pub status: u16,
    pub error: Option<UpstreamError>,
    pub duration: Duration,
    pub keys: KeyRefs,
    pub milestone: Option<&'a Milestone>,
    pub problems: &'a [Problem],
}

/// One exchange of a [`Timeline`] as readers see it: the values it was
/// pushed with.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeRecord<'a> {
    pub id: u64,
    /// The status the client saw (502/504 when the upstream failed).
    pub status: u16,
    /// Why the upstream failed, when it did.
    pub error: Option<UpstreamError>,
    pub system: NameId<kind::System>,
    pub operation: Option<NameId<kind::Operation>>,
    pub milestone: Option<NameId<kind::Milestone>>,
    packed: &'a Packed,
    timeline: &'a Timeline,
}

/// An exchange as the timeline holds it (40 bytes).
#[derive(Debug, Clone)]
struct Packed {
    id: u64,
    /// What does not fit the packed fields; `None` for the common exchange.
    spilled: Option<Box<Spilled>>,
    /// The low 32 bits of the start's offset from the timeline's base.
    at_low: u32,
    duration_nanos: u32,
    /// The high 16 bits (sign included) of the start's offset.
    at_high: i16,
    status: u16,
    system: NameId<kind::System>,
    operation: Option<NameId<kind::Operation>>,
    milestone: Option<NameId<kind::Milestone>>,
    keys: PackedKeys,
    /// Index into the timeline's `paths`.
    path: u8,
    /// The method's code (low nibble) and the upstream error's (high).
    method_error: u8,
}

/// What an exchange has that does not fit [`Packed`], kept exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Spilled {
    /// An extension method's text (`PROPFIND`).
    method: Option<Box<str>>,
    /// Extraction problems, in the order found.
    problems: Box<[Problem]>,
    /// A start too far from the timeline's base.
    at: Option<Stamp>,
    /// A duration beyond `u32::MAX` nanoseconds.
    duration: Option<Duration>,
    /// Keys beyond what [`PackedKeys`] holds.
    keys: Option<Box<[u32]>>,
    /// A path when 256 distinct paths are in use.
    path: Option<Box<str>>,
}

/// The methods a record keeps as a code (its position here).
const STANDARD_METHODS: [http::Method; 9] = [
    http::Method::GET,
    http::Method::POST,
    http::Method::PUT,
    http::Method::DELETE,
    http::Method::PATCH,
    http::Method::HEAD,
    http::Method::OPTIONS,
    http::Method::CONNECT,
    http::Method::TRACE,
];

/// The code of a method not in [`STANDARD_METHODS`] (its text is spilled).
const EXTENSION_METHOD: u8 = 0xF;

/// The code of `error`: its position in [`UpstreamError::ALL`] plus one
/// (code 0: none).
fn error_code(error: UpstreamError) -> u8 {
    error.index() as u8 + 1
}

/// How many distinct paths a timeline indexes.
const MAX_PATHS: usize = 256;

/// Offsets of 48 bits, signed.
const OFFSET_BITS: u32 = 48;

/// Up to [`PackedKeys::MAX`] key positions below 16, one nibble each
/// after a nibble of count, in the order carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PackedKeys(u32);

impl PackedKeys {
    const MAX: usize = 7;

    /// The positions, if they fit.
    fn new(positions: impl Iterator<Item = usize> + Clone) -> Option<Self> {
        let mut bits = 0u32;
        let mut len = 0usize;
        for p in positions {
            if len == Self::MAX || p > 0xF {
                return None;
            }
            bits |= (p as u32) << (4 + 4 * len);
            len += 1;
        }
        Some(PackedKeys(bits | len as u32))
    }

    fn iter(self) -> impl Iterator<Item = usize> {
        let len = (self.0 & 0xF) as usize;
        (0..len).map(move |i| ((self.0 >> (4 + 4 * i)) & 0xF) as usize)
    }
}

/// The fields of an exchange, decoded: what [`Timeline::pack`] packs.
struct Fields<'a, K> {
    id: u64,
    at: Stamp,
    duration: Duration,
    status: u16,
    error: Option<UpstreamError>,
    system: NameId<kind::System>,
    operation: Option<NameId<kind::Operation>>,
    milestone: Option<NameId<kind::Milestone>>,
    /// A code of [`STANDARD_METHODS`], or the extension method's text.
    method: Result<u8, &'a str>,
    path: &'a str,
    keys: K,
    problems: &'a [Problem],
}

#[cfg(test)]
impl<'a> NewExchange<'a> {
    /// A `POST` of `path` that took 2 ms, answered 200, for tests.
    pub(crate) fn example(
        system: &'a System,
        id: u64,
        at: SystemTime,
        path: &'a str,
        keys: KeyRefs,
    ) -> Self {
        NewExchange {
            id,
            at,
            system,
            operation: None,
            method: &http::Method::POST,
            path,
            status: 200,
            error: None,
            duration: Duration::from_millis(2),
            keys,
            milestone: None,
            problems: &[],
        }
    }
}

impl Timeline {
    /// How many exchanges it holds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The exchanges, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = ExchangeRecord<'_>> + ExactSizeIterator {
        self.records.iter().map(|p| self.view(p))
    }

    /// The exchange at `index` (0: the oldest).
    pub fn get(&self, index: usize) -> Option<ExchangeRecord<'_>> {
        self.records.get(index).map(|p| self.view(p))
    }

    /// Appends `new` (see [`Timeline::drop_oldest_beyond`] for the bound).
    pub fn push(&mut self, new: NewExchange<'_>) {
        let method = STANDARD_METHODS
            .iter()
            .position(|m| m == new.method)
            .map_or(Err(new.method.as_str()), |p| Ok(p as u8));
        let fields = Fields {
            id: new.id,
            at: Stamp::new(new.at),
            duration: new.duration,
            status: new.status,
            error: new.error,
            system: NameId::new(new.system),
            operation: new.operation.map(NameId::new),
            milestone: new.milestone.map(NameId::new),
            method,
            path: new.path,
            keys: new.keys.iter(),
            problems: new.problems,
        };
        let packed = self.pack(fields);
        self.records.push_back(packed);
    }

    /// Drops the oldest exchanges beyond `bound`; returns how many.
    pub fn drop_oldest_beyond(&mut self, bound: usize) -> usize {
        let over = self.records.len().saturating_sub(bound);
        self.records.drain(..over);
        over
    }

    /// Takes in the exchanges of `other` (a transaction merged into this
    /// one), each key position `p` replaced by `moved[p]` (positions with
    /// no entry are left out), and puts all in time order (ties by id).
    pub fn absorb(&mut self, other: &Timeline, moved: &[u32]) {
        for x in other.iter() {
            let spilled = x.packed.spilled.as_deref();
            let method = match x.packed.method_error & 0xF {
                EXTENSION_METHOD => Err(spilled.and_then(|s| s.method.as_deref()).unwrap_or("")),
                code => Ok(code),
            };
            let keys = KeyRefs::new(
                &x.keys()
                    .filter_map(|p| moved.get(p).copied())
                    .collect::<Vec<u32>>(),
            );
            let packed = self.pack(Fields {
                id: x.id,
                at: x.stamp(),
                duration: x.duration(),
                status: x.status,
                error: x.error,
                system: x.system,
                operation: x.operation,
                milestone: x.milestone,
                method,
                path: x.path(),
                keys: keys.iter(),
                problems: x.problems(),
            });
            self.records.push_back(packed);
        }
        let base = self.base;
        self.records
            .make_contiguous()
            .sort_by_key(|p| (p.stamp(base), p.id));
    }

    fn view<'a>(&'a self, packed: &'a Packed) -> ExchangeRecord<'a> {
        let error = match packed.method_error >> 4 {
            0 => None,
            code => UpstreamError::ALL.get(usize::from(code) - 1).copied(),
        };
        ExchangeRecord {
            id: packed.id,
            status: packed.status,
            error,
            system: packed.system,
            operation: packed.operation,
            milestone: packed.milestone,
            packed,
            timeline: self,
        }
    }

    /// The packed record of `fields`, spilling what does not fit.
    fn pack<K: Iterator<Item = usize> + Clone>(&mut self, fields: Fields<'_, K>) -> Packed {
        if self.records.is_empty() {
            // Nothing refers to the base or the paths any more.
            self.base = fields.at;
            self.paths.clear();
        }
        // Allocated only when something does not fit.
        let mut spilled: Option<Box<Spilled>> = None;
        fn spill(spilled: &mut Option<Box<Spilled>>) -> &mut Spilled {
            spilled.get_or_insert_with(Box::default)
        }
        let offset = i128::from(fields.at.nanos()) - i128::from(self.base.nanos());
        let limit = 1i128 << (OFFSET_BITS - 1);
        let offset = if (-limit..limit).contains(&offset) {
            offset as i64
        } else {
            spill(&mut spilled).at = Some(fields.at);
            0
        };
        let duration_nanos = match u32::try_from(fields.duration.as_nanos()) {
            Ok(nanos) => nanos,
            Err(_) => {
                spill(&mut spilled).duration = Some(fields.duration);
                0
            }
        };
        let keys = PackedKeys::new(fields.keys.clone()).unwrap_or_else(|| {
            spill(&mut spilled).keys = Some(fields.keys.map(|p| p as u32).collect());
            PackedKeys(0)
        });
        let path = self.path_index(fields.path).unwrap_or_else(|| {
            spill(&mut spilled).path = Some(fields.path.into());
            0
        });
        let method = match fields.method {
            Ok(code) => code,
            Err(text) => {
                spill(&mut spilled).method = Some(text.into());
                EXTENSION_METHOD
            }
        };
        let error = fields.error.map_or(0, error_code);
        if !fields.problems.is_empty() {
            spill(&mut spilled).problems = fields.problems.into();
        }
        Packed {
            id: fields.id,
            spilled,
            at_low: offset as u32,
            at_high: (offset >> 32) as i16,
            duration_nanos,
            status: fields.status,
            system: fields.system,
            operation: fields.operation,
            milestone: fields.milestone,
            keys,
            path,
            method_error: method | (error << 4),
        }
    }

    /// The index of `path` in `paths`, added if new; `None` when 256
    /// distinct paths are in use by the records.
    fn path_index(&mut self, path: &str) -> Option<u8> {
        if let Some(at) = self.paths.iter().rposition(|p| &**p == path) {
            return u8::try_from(at).ok();
        }
        if self.paths.len() == MAX_PATHS {
            self.drop_unused_paths();
        }
        if self.paths.len() == MAX_PATHS {
            return None;
        }
        self.paths.push(path.into());
        u8::try_from(self.paths.len() - 1).ok()
    }

    /// Forgets the paths no record points to (records that fell off the
    /// timeline), renumbering the records' indexes.
    fn drop_unused_paths(&mut self) {
        let mut used = [false; MAX_PATHS];
        for p in self.records.iter().filter(|p| !p.path_spilled()) {
            used[usize::from(p.path)] = true;
        }
        let mut renumbered = [0u8; MAX_PATHS];
        let mut kept = ThinVec::with_capacity(used.iter().filter(|&&u| u).count());
        for (old, path) in std::mem::take(&mut self.paths).into_iter().enumerate() {
            if used[old] {
                renumbered[old] = kept.len() as u8;
                kept.push(path);
            }
        }
        self.paths = kept;
        for p in self.records.iter_mut().filter(|p| !p.path_spilled()) {
            p.path = renumbered[usize::from(p.path)];
        }
    }
}

impl Packed {
    fn path_spilled(&self) -> bool {
        self.spilled.as_ref().is_some_and(|s| s.path.is_some())
    }

    fn stamp(&self, base: Stamp) -> Stamp {
        match self.spilled.as_ref().and_then(|s| s.at) {
            Some(at) => at,
            None => {
                let offset = (i64::from(self.at_high) << 32) | i64::from(self.at_low);
                Stamp::from_nanos(base.nanos().wrapping_add_signed(offset))
            }
        }
    }
}

impl<'a> ExchangeRecord<'a> {
    fn spilled(&self) -> Option<&'a Spilled> {
        self.packed.spilled.as_deref()
    }

    fn stamp(&self) -> Stamp {
        self.packed.stamp(self.timeline.base)
    }

    /// When the exchange started.
    pub fn at(&self) -> SystemTime {
        self.stamp().time()
    }

    /// How long it took, as the client saw it.
    pub fn duration(&self) -> Duration {
        self.spilled()
            .and_then(|s| s.duration)
            .unwrap_or(Duration::from_nanos(u64::from(self.packed.duration_nanos)))
    }

    /// The request method (`POST`, or an extension method's text).
    pub fn method(&self) -> &'a str {
        match STANDARD_METHODS.get(usize::from(self.packed.method_error & 0xF)) {
            Some(method) => method.as_str(),
            None => self
                .spilled()
                .and_then(|s| s.method.as_deref())
                .unwrap_or_default(),
        }
    }

    /// The request path.
    pub fn path(&self) -> &'a str {
        match self.spilled().and_then(|s| s.path.as_deref()) {
            Some(path) => path,
            None => self
                .timeline
                .paths
                .get(usize::from(self.packed.path))
                .map_or("", |p| p),
        }
    }

    /// The exchange's keys, in the order it carried them, as positions in
    /// the transaction's `keys`.
    pub fn keys(&self) -> impl Iterator<Item = usize> + 'a {
        let spilled: &[u32] = self
            .spilled()
            .and_then(|s| s.keys.as_deref())
            .unwrap_or(&[]);
        self.packed
            .keys
            .iter()
            .chain(spilled.iter().map(|&p| p as usize))
    }

    /// Extraction problems (`malformed_json` …), in the order found.
    pub fn problems(&self) -> &'a [Problem] {
        self.spilled().map_or(&[], |s| &s.problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Symbols;

    fn wms() -> System {
        let mut systems: Symbols<kind::System> = Default::default();
        systems.intern("wms").expect("intern")
    }

    fn exchange<'a>(
        system: &'a System,
        id: u64,
        at: SystemTime,
        path: &'a str,
        keys: &[u32],
    ) -> NewExchange<'a> {
        NewExchange::example(system, id, at, path, KeyRefs::new(keys))
    }

    const T0: Duration = Duration::new(1_800_000_000, 123_456_789);

    #[test]
    fn a_record_is_40_bytes() {
        assert_eq!(std::mem::size_of::<Packed>(), 40);
    }

    #[test]
    fn every_upstream_error_reads_back() {
        let wms = wms();
        let at = SystemTime::UNIX_EPOCH + T0;
        let mut timeline = Timeline::default();
        for error in UpstreamError::ALL {
            let mut new = exchange(&wms, 1, at, "/a", &[]);
            new.error = Some(error);
            timeline.push(new);
        }
        let read: Vec<Option<UpstreamError>> = timeline.iter().map(|x| x.error).collect();
        let expected: Vec<Option<UpstreamError>> = UpstreamError::ALL.map(Some).into();
        assert_eq!(read, expected);
    }

    #[test]
    fn the_common_exchange_spills_nothing_and_reads_back_exactly() {
        let wms = wms();
        let at = SystemTime::UNIX_EPOCH + T0;
        let mut timeline = Timeline::default();
        timeline.push(exchange(&wms, 1, at, "/a", &[0]));
        let later = at + Duration::new(3_600, 1);
        let mut new = exchange(&wms, 2, later, "/a", &[2, 0, 1]);
        new.duration = Duration::new(4, 294_967_295);
        new.error = Some(UpstreamError::Protocol);
        new.status = 502;
        timeline.push(new);
        let x = timeline.get(1).expect("pushed");
        assert!(x.spilled().is_none(), "{:?}", x.spilled());
        assert_eq!(x.at(), later);
        assert_eq!(x.duration(), Duration::new(4, 294_967_295));
        assert_eq!((x.status, x.error), (502, Some(UpstreamError::Protocol)));
        assert_eq!(x.method(), "POST");
        assert_eq!(x.keys().collect::<Vec<_>>(), [2, 0, 1]);
        assert_eq!(timeline.paths.len(), 1, "one path shared by both");
    }

    #[test]
    fn what_does_not_fit_is_kept_exactly_out_of_line() {
        let wms = wms();
        let at = SystemTime::UNIX_EPOCH + T0;
        let mut timeline = Timeline::default();
        timeline.push(exchange(&wms, 1, at, "/a", &[]));
        // 40 hours later: beyond the ± 39 h of an offset; and before.
        let far = at + Duration::new(40 * 3_600, 7);
        let early = at - Duration::new(40 * 3_600, 3);
        let near_early = at - Duration::new(3_600, 3);
        let propfind = http::Method::from_bytes(b"PROPFIND").expect("token");
        let many: Vec<u32> = vec![16, 0, 3, 3, 1, 2, 5, 6];
        let mut odd = exchange(&wms, 2, far, "/b", &many);
        odd.duration = Duration::new(4, 294_967_296);
        odd.method = &propfind;
        let problems = [
            Problem::Truncated,
            Problem::MalformedJson,
            Problem::Truncated,
        ];
        odd.problems = &problems;
        timeline.push(odd);
        timeline.push(exchange(&wms, 3, early, "/c", &[1, 2, 3, 4, 5, 6, 7, 8]));
        timeline.push(exchange(&wms, 4, near_early, "/c", &[15]));

        let x = timeline.get(1).expect("pushed");
        assert_eq!(x.at(), far);
        assert_eq!(x.duration(), Duration::new(4, 294_967_296));
        assert_eq!(x.method(), "PROPFIND");
        assert_eq!(x.keys().collect::<Vec<_>>(), [16, 0, 3, 3, 1, 2, 5, 6]);
        assert_eq!(x.problems(), problems, "order and repeats kept");
        assert_eq!(x.path(), "/b");
        let y = timeline.get(2).expect("pushed");
        assert_eq!(y.at(), early);
        assert_eq!(y.keys().collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6, 7, 8]);
        let z = timeline.get(3).expect("pushed");
        assert!(z.spilled().is_none(), "an hour before the base fits");
        assert_eq!((z.at(), z.path()), (near_early, "/c"));
        assert_eq!(z.keys().collect::<Vec<_>>(), [15]);
    }

    #[test]
    fn paths_are_shared_and_unused_ones_make_room() {
        let wms = wms();
        let at = SystemTime::UNIX_EPOCH + T0;
        let mut timeline = Timeline::default();
        let paths: Vec<String> = (0..300).map(|n| format!("/p/{n}")).collect();
        // A bound of 10: the paths of dropped exchanges become unused.
        for (n, path) in paths.iter().enumerate() {
            timeline.push(exchange(&wms, n as u64, at, path, &[]));
            timeline.drop_oldest_beyond(10);
        }
        let kept: Vec<&str> = timeline.iter().map(|x| x.path()).collect();
        let expected: Vec<&str> = paths[290..].iter().map(String::as_str).collect();
        assert_eq!(kept, expected);
        assert!(timeline.records.iter().all(|p| !p.path_spilled()));
        assert!(timeline.paths.len() <= MAX_PATHS);

        // 300 distinct paths all in use: those beyond 256 are spilled.
        let mut full = Timeline::default();
        for (n, path) in paths.iter().enumerate() {
            full.push(exchange(&wms, n as u64, at, path, &[]));
        }
        full.push(exchange(&wms, 300, at, "/p/3", &[]));
        let read: Vec<&str> = full.iter().map(|x| x.path()).collect();
        let mut expected: Vec<&str> = paths.iter().map(String::as_str).collect();
        expected.push("/p/3");
        assert_eq!(read, expected);
        assert_eq!(full.records.iter().filter(|p| p.path_spilled()).count(), 44);
    }

    #[test]
    fn absorbing_rebases_remaps_and_orders_by_time() {
        let wms = wms();
        let at = SystemTime::UNIX_EPOCH + T0;
        let mut target = Timeline::default();
        target.push(exchange(&wms, 5, at + Duration::from_secs(10), "/t", &[0]));
        let mut other = Timeline::default();
        other.push(exchange(&wms, 3, at, "/o", &[0, 1]));
        other.push(exchange(&wms, 9, at + Duration::from_secs(20), "/t", &[1]));
        target.absorb(&other, &[4, 2]);
        let read: Vec<(u64, SystemTime, &str, Vec<usize>)> = target
            .iter()
            .map(|x| (x.id, x.at(), x.path(), x.keys().collect()))
            .collect();
        assert_eq!(
            read,
            vec![
                (3, at, "/o", vec![4, 2]),
                (5, at + Duration::from_secs(10), "/t", vec![0]),
                (9, at + Duration::from_secs(20), "/t", vec![2]),
            ]
        );
        assert_eq!(target.paths.len(), 2, "/t is shared");
    }
}
