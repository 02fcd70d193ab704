//! The transaction record and what it holds: keys and the links between
//! them, milestones per object, measures per object, completed flows and
//! the exchange timeline.
//! A transaction serializes, with the config's [`Names`], to the JSON the
//! admin API returns ([`Transaction::json`]).
//!
//! A store holds a million of these, so the bulky parts are compact: each
//! key is held once, in `keys`, and links and the exchange timeline refer
//! to it by position ([`KeyRefs`]); exchange and milestone records keep
//! config names (system, operation, milestone) as 2-byte [`NameId`]s (an
//! absent one too); the timeline delta-encodes each exchange in ~10-20 bytes
//! ([`super::timeline`]). The JSON is the same as if every key and name
//! were written out in place.

use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroU16;
use std::time::{Duration, SystemTime};

pub use crate::clock::Stamp;

use opentelemetry::trace::TraceId;
use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};
use smallvec::SmallVec;
use thin_vec::ThinVec;

use crate::config::{
    kind, Amount, Config, ExceptionKind, FlowName, KeyKind, MeasureName, Milestone, Operation,
    Role, Symbol, Symbols, System, Unit,
};
use crate::extract::Key;
use crate::proxy::UpstreamError;
use crate::telemetry::trace_id;

use super::keys::{KeyBlock, KeyJson, KeyView};
pub use super::reached::Reached;
use super::timeline::{ExchangeRecord, Timeline};

/// Identity of a transaction inside one store; not a business identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TxId(pub u64);

/// A config name as a record keeps it: the index of its [`Symbol`]
/// ([`Symbol::id`]), 2 bytes where the symbol is a pointer (8), and
/// `Option<NameId>` 2 bytes too (the index is held plus one,
/// [`Symbol::id_plus_one`], so zero is the niche of `None`; a config
/// declares at most `u16::MAX` names of a kind). The name is read back through
/// the config's tables ([`Names`]) when a record is resolved or
/// serialized; comparing with a symbol needs no table.
pub struct NameId<T> {
    id_plus_one: NonZeroU16,
    _kind: PhantomData<fn() -> T>,
}

impl<T> NameId<T> {
    /// The id of `symbol`.
    pub fn new(symbol: &Symbol<T>) -> Self {
        NameId {
            id_plus_one: symbol.id_plus_one(),
            _kind: PhantomData,
        }
    }

    /// The id held plus one (never zero): how a [`super::keys::KeyBlock`]
    /// writes it.
    pub(super) fn plus_one(self) -> NonZeroU16 {
        self.id_plus_one
    }

    /// The id written as [`NameId::plus_one`].
    pub(super) fn from_plus_one(id_plus_one: NonZeroU16) -> Self {
        NameId {
            id_plus_one,
            _kind: PhantomData,
        }
    }

    /// The symbol's index ([`Symbol::id`]).
    pub fn index(self) -> usize {
        usize::from(self.id_plus_one.get() - 1)
    }

    /// Whether this is the id of `symbol`.
    pub fn is(&self, symbol: &Symbol<T>) -> bool {
        self.index() == symbol.id()
    }

    /// The symbol, from the table of its kind (`None` only for a table of
    /// another config).
    pub fn get(self, table: &Symbols<T>) -> Option<&Symbol<T>> {
        table.by_id(self.index())
    }
}

impl<T> Clone for NameId<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for NameId<T> {}
impl<T> PartialEq for NameId<T> {
    fn eq(&self, other: &Self) -> bool {
        self.id_plus_one == other.id_plus_one
    }
}
impl<T> Eq for NameId<T> {}
impl<T> fmt::Debug for NameId<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.index())
    }
}

/// The config's tables of the names records keep as [`NameId`]s: what
/// resolves and serializes them.
#[derive(Clone, Copy)]
pub struct Names<'a> {
    pub systems: &'a Symbols<kind::System>,
    pub operations: &'a Symbols<kind::Operation>,
    pub milestones: &'a Symbols<kind::Milestone>,
    pub flows: &'a Symbols<kind::Flow>,
    pub key_kinds: &'a Symbols<kind::KeyKind>,
}

impl<'a> Names<'a> {
    /// The tables of `config`.
    pub fn of(config: &'a Config) -> Self {
        Names {
            systems: &config.systems,
            operations: &config.operations,
            milestones: &config.milestones,
            flows: &config.flow_names,
            key_kinds: &config.key_kinds,
        }
    }
}

/// The key that names a transaction ([`Transaction::name`]), read in
/// place from its keys: it compares, displays and serializes as the
/// [`Key`] it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name<'a> {
    pub kind: &'a KeyKind,
    pub value: &'a str,
}

impl<'a> Name<'a> {
    /// The name of `key`.
    pub fn of(key: &'a Key) -> Self {
        Name {
            kind: &key.kind,
            value: &key.value,
        }
    }

    /// Whether this is `key`.
    pub fn is(self, key: &Key) -> bool {
        self.kind == &key.kind && self.value == &*key.value
    }

    /// The [`Key`] (allocates its text).
    pub fn to_key(self) -> Key {
        Key::new(self.kind.clone(), self.value)
    }

    /// The key's text as a span writes it (`order:SO-1`), in pieces:
    /// its kind's prefix (`order:`) from `prefixes` (by kind id), else
    /// the kind and `:`.
    pub fn text<'p>(self, prefixes: &'p [String]) -> [&'p str; 3]
    where
        'a: 'p,
    {
        match prefixes.get(self.kind.id()) {
            Some(prefix) => [prefix, "", self.value],
            None => [self.kind.as_str(), ":", self.value],
        }
    }
}

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

impl Serialize for Name<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Key", 2)?;
        st.serialize_field("kind", self.kind.as_str())?;
        st.serialize_field("value", self.value)?;
        st.end()
    }
}

/// Whether a transaction still has work ahead of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Some object has not reached a terminal milestone yet.
    Open,
    /// Every object of the terminal milestones' kind has reached one.
    Complete,
}

impl Status {
    /// The name used in the API and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Complete => "complete",
        }
    }
}

/// The set of keys linked together by exchanges that carried more than one,
/// and everything observed about them.
///
/// What most transactions never get (a root key other than the name,
/// former names, measures, exceptions, attempts, a stuck milestone,
/// exchanges dropped off the timeline) is kept in one optional box
/// ([`Rare`]), absent for the common transaction: the record stays in
/// jemalloc's 192-byte class. Those parts are read and changed through
/// accessors.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub id: TxId,
    /// The key that names the transaction ([`Transaction::name`]): the
    /// first key of the root kind seen, or until one is seen, the first
    /// key seen at all. One of `keys`, held as its position there and its
    /// kind (what writes it out without the config's tables), not as a
    /// copy of its text. Changed only through [`Transaction::rename`],
    /// which keeps `trace` in step.
    name_kind: KeyKind,
    name_at: u32,
    /// The trace ID of `name` ([`trace_id`]), derived when the name is set
    /// or changes (created, renamed, loaded from a snapshot: always through
    /// [`Transaction::new`] and [`Transaction::rename`]) so the span path
    /// reads it instead of hashing the name per exchange. Bytes, not a
    /// `TraceId` (a `u128`, 16-byte aligned, which would pad the record).
    trace: [u8; 16],
    /// The root key is the name (the usual case once it is seen); when it
    /// is another key it is in [`Rare::root`].
    root_is_name: bool,
    pub status: Status,
    /// The latest milestone of an open transaction (where it is now);
    /// `None` once complete or before any milestone
    /// ([`Transaction::current`]; set through `TxMut::set_current`).
    current: Option<NameId<kind::Milestone>>,
    /// Exchanges that fell off the bounded timeline (saturates at
    /// `u32::MAX`).
    exchanges_dropped: u32,
    /// Every key, in the order first seen, in one allocation (read as
    /// [`KeyView`]s; added through the store, which indexes them).
    pub keys: KeyBlock,
    /// Pairs of keys seen together in one exchange, as positions in
    /// `keys`: how the set was built, and how a milestone finds its object
    /// (a tracking number's shipment). See [`Transaction::link`].
    pub links: ThinVec<(u32, u32)>,
    /// Milestones in the order they were first recorded.
    pub milestones: Vec<Reached>,
    /// Flows measured so far.
    pub flows: ThinVec<MeasuredFlow>,
    /// What most transactions never get; `None` while all of it is empty.
    rare: Option<Box<Rare>>,
    /// The most recent exchanges, oldest first (bounded).
    pub exchanges: Timeline,
    pub first_seen: Stamp,
    pub last_updated: Stamp,
}

/// The parts of a [`Transaction`] that most transactions never get, in one
/// box (see there).
#[derive(Debug, Clone, Default)]
pub(super) struct Rare {
    /// The first key of the root kind seen, when it is not the name (a
    /// snapshot's; the correlator renames a transaction to its root).
    root: Option<Key>,
    /// Names the transaction went by before (before its root key was seen,
    /// or of transactions merged into it): its earlier trace IDs derive
    /// from them, so later spans link to those traces.
    former_names: Vec<Key>,
    /// Measure values per object, measure and role (a re-sent invoice
    /// replaces its value), in the order first recorded.
    measures: Vec<MeasureRecord>,
    /// Exceptions opened on this transaction, open and resolved.
    exceptions: Vec<ExceptionRecord>,
    /// Attempts of operations that tell retries from duplicates.
    attempts: Vec<Attempt>,
    /// The milestone the transaction has been resting at for longer than
    /// that milestone's `stuck_after`, if any.
    stuck: Option<Milestone>,
}

impl Rare {
    fn is_empty(&self) -> bool {
        self.root.is_none()
            && self.former_names.is_empty()
            && self.measures.is_empty()
            && self.exceptions.is_empty()
            && self.attempts.is_empty()
            && self.stuck.is_none()
    }
}

/// One milestone reached by one object.
#[derive(Debug, Clone, Serialize)]
pub struct MilestoneRecord {
    pub milestone: Milestone,
    /// The key the milestone is about (`shipped` → a shipment).
    pub object: Key,
    /// When it first happened (the exchange's start).
    #[serde(serialize_with = "rfc3339_stamp")]
    pub at: Stamp,
    pub system: System,
    pub operation: Option<Operation>,
    /// The exchange that recorded it first.
    pub exchange: u64,
    /// How many later exchanges marked the same milestone on the same object.
    pub repeats: u32,
}

/// The value of one measure in one role on one object: the quoted freight
/// cost of a shipment, its invoiced cost, its weight.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeasureRecord {
    pub measure: MeasureName,
    pub role: Role,
    /// The key the value is about (the milestone's object).
    pub object: Key,
    /// Exact decimal, serialized as a string (`"12.5"`).
    pub amount: Amount,
    /// A declared currency, `kg` or `count`.
    pub unit: Unit,
    /// The milestone it came with.
    pub milestone: Milestone,
    pub system: System,
    /// The exchange that carried the current value.
    pub exchange: u64,
    /// When the current value arrived.
    #[serde(serialize_with = "rfc3339")]
    pub at: SystemTime,
    /// How many later exchanges reported it again (a re-sent invoice); the
    /// latest value replaces the earlier one, never adds to it.
    pub revisions: u32,
}

/// One measured flow on one object.
#[derive(Debug, Clone, Serialize)]
pub struct FlowRecord {
    pub flow: FlowName,
    /// The object of the flow's end milestone.
    pub object: Key,
    #[serde(serialize_with = "rfc3339_stamp")]
    pub started: Stamp,
    #[serde(serialize_with = "rfc3339_stamp")]
    pub ended: Stamp,
    #[serde(rename = "duration_seconds", serialize_with = "seconds")]
    pub duration: Duration,
    pub within_slo: bool,
}

/// One measured flow on one object, as a transaction holds it: the
/// [`FlowRecord`] it stands for with the object as a position in `keys`,
/// the times as [`Stamp`]s, the duration derived from them and the flow's
/// name as a [`NameId`] (24 bytes instead of 88).
/// [`Transaction::flow_record`] gives the record back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasuredFlow {
    pub flow: NameId<kind::Flow>,
    started: Stamp,
    ended: Stamp,
    object: u32,
    pub within_slo: bool,
}

impl MeasuredFlow {
    /// From the start milestone to the end milestone (zero when the end
    /// came first).
    pub fn duration(&self) -> Duration {
        self.ended.since(self.started)
    }

    /// Where the object is in the transaction's `keys`.
    pub fn object_position(&self) -> usize {
        self.object as usize
    }

    /// Points the object at `map[p]` for its position `p` (a merge moving
    /// keys); false when `map` has no such position.
    pub fn remap(&mut self, map: &[u32]) -> bool {
        remap(&mut self.object, map)
    }
}

/// Replaces the position `at` by `map[at]`; false when `map` has none.
pub(super) fn remap(at: &mut u32, map: &[u32]) -> bool {
    match map.get(*at as usize) {
        Some(&to) => {
            *at = to;
            true
        }
        None => false,
    }
}

/// Something a person must own: a gap between systems.
#[derive(Debug, Clone, Serialize)]
pub struct ExceptionRecord {
    /// Unique per sidecar.
    pub id: u64,
    pub kind: ExceptionKind,
    /// The system whose people must act.
    pub owner: System,
    /// The key the exception is about.
    pub object: Key,
    /// What happened, in words.
    pub reason: String,
    #[serde(serialize_with = "rfc3339")]
    pub opened: SystemTime,
    #[serde(serialize_with = "rfc3339_opt")]
    pub resolved: Option<SystemTime>,
    /// The exchanges involved.
    pub evidence: Vec<u64>,
    /// What closes it by itself.
    pub resolution: Resolution,
}

impl ExceptionRecord {
    /// Still open?
    pub fn is_open(&self) -> bool {
        self.resolved.is_none()
    }
}

/// What resolves an exception without a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "on")]
pub enum Resolution {
    /// The milestone arriving on the object (or, when `object` is `None`,
    /// anywhere in the transaction).
    Milestone {
        milestone: Milestone,
        object: Option<Key>,
    },
    /// A successful attempt of the operation on the object.
    Success { operation: Operation, object: Key },
    /// Only a person can close it (a duplicate shipment must be cancelled).
    Manual,
    /// The object's quoted and actual values of the measure coming within
    /// the measure's variance tolerance (a corrected invoice).
    Measure { measure: MeasureName, object: Key },
}

/// The attempts of one operation on one object.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub operation: Operation,
    pub object: Key,
    /// Failed attempts since the last success.
    pub failures: u32,
    pub successes: u32,
    /// Retries: attempts that followed a failure.
    pub retries: u32,
    /// Duplicates: successes after the first with a new idempotency key.
    pub duplicates: u32,
    #[serde(serialize_with = "rfc3339_opt")]
    pub first_failure: Option<SystemTime>,
    /// Idempotency keys of the successful attempts (bounded).
    pub idempotency_keys: Vec<String>,
}

/// Positions in a transaction's `keys`, in a given order: up to
/// [`KeyRefs::INLINE`] positions below 256 are held inline (the usual
/// exchange: 1–4 keys), more on the heap, behind a thin pointer: 16
/// bytes in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRefs {
    Inline { len: u8, at: [u8; KeyRefs::INLINE] },
    Heap(Box<ManyRefs>),
}

/// The positions of a [`KeyRefs`] that do not fit inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManyRefs(Box<[u32]>);

impl KeyRefs {
    /// Positions held without a heap allocation.
    pub const INLINE: usize = 14;

    /// The positions `positions`, in that order.
    pub fn new(positions: &[u32]) -> Self {
        let mut at = [0u8; Self::INLINE];
        if positions.len() <= Self::INLINE {
            let mut inline = true;
            for (slot, &p) in at.iter_mut().zip(positions) {
                match u8::try_from(p) {
                    Ok(p) => *slot = p,
                    Err(_) => inline = false,
                }
            }
            if inline {
                return KeyRefs::Inline {
                    len: positions.len() as u8,
                    at,
                };
            }
        }
        KeyRefs::Heap(Box::new(ManyRefs(positions.into())))
    }

    /// The positions, in order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + Clone + '_ {
        let (inline, heap): (&[u8], &[u32]) = match self {
            KeyRefs::Inline { len, at } => (&at[..usize::from(*len)], &[]),
            KeyRefs::Heap(positions) => (&[], &positions.0),
        };
        inline
            .iter()
            .map(|&p| usize::from(p))
            .chain(heap.iter().map(|&p| p as usize))
    }

    /// The same references with every position `p` replaced by `map[p]`.
    pub fn remap(&self, map: &[u32]) -> Self {
        let positions: Vec<u32> = self.iter().filter_map(|p| map.get(p).copied()).collect();
        KeyRefs::new(&positions)
    }
}

impl Transaction {
    /// A new transaction named by `name`.
    /// It holds the name as its first key (the store indexes it).
    pub fn new(id: TxId, name: Key, now: SystemTime) -> Self {
        Self::named(id, &name, Stamp::new(now))
    }

    /// [`Transaction::new`] with the name borrowed (its text is copied
    /// into the keys, its kind shared).
    pub(super) fn named(id: TxId, name: &Key, now: Stamp) -> Self {
        Transaction {
            id,
            trace: trace_id(name).to_bytes(),
            keys: KeyBlock::of([KeyView::of(name)]),
            name_kind: name.kind.clone(),
            name_at: 0,
            root_is_name: false,
            status: Status::Open,
            current: None,
            exchanges_dropped: 0,
            links: ThinVec::new(),
            milestones: Vec::new(),
            flows: ThinVec::new(),
            rare: None,
            exchanges: Timeline::default(),
            first_seen: now,
            last_updated: now,
        }
    }

    /// The trace ID of the transaction's name: [`trace_id`]`(self.name())`,
    /// kept from when the name was last set.
    pub fn trace_id(&self) -> TraceId {
        let trace = TraceId::from_bytes(self.trace);
        debug_assert_eq!(trace, trace_id(&self.name().to_key()), "stale trace ID");
        trace
    }

    /// The key that names the transaction: the first key of the root kind
    /// seen, or until one is seen, the first key seen at all.
    pub fn name(&self) -> Name<'_> {
        Name {
            kind: &self.name_kind,
            // The name is one of the keys (see `name_at`).
            value: self
                .keys
                .get(self.name_at as usize)
                .map_or("", |k| k.value()),
        }
    }

    /// Renames the transaction, remembering the old name (the root key
    /// stays what it was). The name is one of the keys: one that is not
    /// yet is added to them (the store indexes only the keys it attaches,
    /// so callers rename to those).
    pub fn rename(&mut self, name: Key) {
        if !self.name_view().is_some_and(|v| v.is(&name)) {
            let root = self.root().map(Name::to_key);
            let old = self.name().to_key();
            self.trace = trace_id(&name).to_bytes();
            self.name_at = self.add_key(KeyView::of(&name)) as u32;
            self.name_kind = name.kind.clone();
            let former = &mut self.rare_mut().former_names;
            if !former.contains(&old) {
                former.push(old);
            }
            self.rare_mut().former_names.retain(|k| k != &name);
            self.set_root(root);
        }
    }

    /// Replaces the keys (a snapshot's); the name stays one of them (added
    /// at the end if `keys` lacks it).
    pub fn set_keys(&mut self, keys: KeyBlock) {
        let name = self.name().to_key();
        self.keys = keys;
        self.name_at = self.add_key(KeyView::of(&name)) as u32;
    }

    /// The name as one of the keys (compared without reading it as text).
    fn name_view(&self) -> Option<KeyView<'_>> {
        self.keys.get(self.name_at as usize)
    }

    /// Whether a key of the root kind has been seen ([`Transaction::root`]).
    pub fn has_root(&self) -> bool {
        self.root_is_name || self.rare.as_ref().is_some_and(|rare| rare.root.is_some())
    }

    /// The first key of the root kind seen, if any yet.
    pub fn root(&self) -> Option<Name<'_>> {
        if self.root_is_name {
            Some(self.name())
        } else {
            self.rare
                .as_ref()
                .and_then(|rare| rare.root.as_ref())
                .map(Name::of)
        }
    }

    /// Sets the root key (kept as a flag when it is the name).
    pub fn set_root(&mut self, root: Option<Key>) {
        self.root_is_name = root
            .as_ref()
            .is_some_and(|r| self.name_view().is_some_and(|v| v.is(r)));
        let other = root.filter(|_| !self.root_is_name);
        if other.is_some() || self.rare.is_some() {
            self.rare_mut().root = other;
            self.tidy();
        }
    }

    /// Names the transaction went by before (before its root key was seen,
    /// or of transactions merged into it): its earlier trace IDs derive
    /// from them, so later spans link to those traces.
    pub fn former_names(&self) -> &[Key] {
        self.rare.as_ref().map_or(&[], |rare| &rare.former_names)
    }

    /// Sets the former names (a snapshot's).
    pub fn set_former_names(&mut self, names: Vec<Key>) {
        self.rare_mut().former_names = names;
        self.tidy();
    }

    /// Measure values per object, measure and role (a re-sent invoice
    /// replaces its value), in the order first recorded.
    pub fn measures(&self) -> &[MeasureRecord] {
        self.rare_part(|rare| &rare.measures)
    }

    /// Adds the value of a measure not recorded yet (see
    /// [`Transaction::measure_mut`]).
    pub fn push_measure(&mut self, record: MeasureRecord) {
        self.rare_mut().measures.push(record);
    }

    /// Exceptions opened on this transaction, open and resolved.
    pub fn exceptions(&self) -> &[ExceptionRecord] {
        self.rare_part(|rare| &rare.exceptions)
    }

    /// The exceptions, to change (resolve) in place.
    pub fn exceptions_mut(&mut self) -> &mut [ExceptionRecord] {
        self.rare_part_mut(|rare| &mut rare.exceptions)
    }

    /// Adds an exception (see `Store::open_exception`, which counts it).
    pub(super) fn push_exception(&mut self, exception: ExceptionRecord) {
        self.rare_mut().exceptions.push(exception);
    }

    /// Attempts of operations that tell retries from duplicates.
    pub fn attempts(&self) -> &[Attempt] {
        self.rare_part(|rare| &rare.attempts)
    }

    /// The attempts, to change in place.
    pub fn attempts_mut(&mut self) -> &mut [Attempt] {
        self.rare_part_mut(|rare| &mut rare.attempts)
    }

    /// Adds an attempt; returns its position in [`Transaction::attempts`].
    pub fn push_attempt(&mut self, attempt: Attempt) -> usize {
        let attempts = &mut self.rare_mut().attempts;
        attempts.push(attempt);
        attempts.len() - 1
    }

    /// The milestone the transaction has been resting at for longer than
    /// that milestone's `stuck_after`, if any.
    pub fn stuck(&self) -> Option<&Milestone> {
        self.rare.as_ref().and_then(|rare| rare.stuck.as_ref())
    }

    /// Sets the stuck milestone, returning the one before (the store keeps
    /// its gauges: see `TxMut::set_stuck`).
    pub(super) fn replace_stuck(&mut self, stuck: Option<Milestone>) -> Option<Milestone> {
        if stuck.is_none() && self.rare.is_none() {
            return None;
        }
        let before = std::mem::replace(&mut self.rare_mut().stuck, stuck);
        self.tidy();
        before
    }

    /// The latest milestone of an open transaction (where it is now);
    /// `None` once complete or before any milestone. Resolved through the
    /// config's milestones ([`Names`]).
    pub fn current(&self) -> Option<NameId<kind::Milestone>> {
        self.current
    }

    /// Sets the current milestone, returning the one before (the store
    /// keeps its gauges: see `TxMut::set_current`).
    pub(super) fn replace_current(
        &mut self,
        current: Option<NameId<kind::Milestone>>,
    ) -> Option<NameId<kind::Milestone>> {
        std::mem::replace(&mut self.current, current)
    }

    /// Exchanges that fell off the bounded timeline (saturates at
    /// `u32::MAX`).
    pub fn exchanges_dropped(&self) -> u32 {
        self.exchanges_dropped
    }

    /// Counts `dropped` more exchanges fallen off the timeline.
    pub(super) fn count_dropped(&mut self, dropped: usize) {
        self.exchanges_dropped = self
            .exchanges_dropped
            .saturating_add(u32::try_from(dropped).unwrap_or(u32::MAX));
    }

    /// Adds `names` to the former names, leaving out the current name and
    /// names already there (a merge).
    pub(super) fn add_former_names<'k>(&mut self, names: impl Iterator<Item = &'k Key>) {
        for former in names {
            if !self.name_view().is_some_and(|v| v.is(former))
                && !self.former_names().contains(former)
            {
                self.rare_mut().former_names.push(former.clone());
            }
        }
    }

    /// Takes the rare parts out (a merge moving them into another
    /// transaction with [`Transaction::absorb_rare`]).
    pub(super) fn take_rare(&mut self) -> Option<Box<Rare>> {
        self.rare.take()
    }

    /// Moves the measures, exceptions and attempts of `rare` (another
    /// transaction's, [`Transaction::take_rare`]) into this one: of two
    /// values for one object, measure and role the later wins, as a
    /// re-sent one would, and revisions add up; exceptions stay in id
    /// order. Root and former names are the merge's to decide.
    pub(super) fn absorb_rare(&mut self, rare: Option<Box<Rare>>) {
        let Some(rare) = rare else {
            return;
        };
        let Rare {
            measures,
            exceptions,
            attempts,
            ..
        } = *rare;
        for record in measures {
            match self.measure_mut(&record.measure, record.role, &record.object) {
                Some(existing) => {
                    let revisions = existing.revisions + record.revisions + 1;
                    if record.at > existing.at {
                        *existing = record;
                    }
                    existing.revisions = revisions;
                }
                None => self.push_measure(record),
            }
        }
        if !exceptions.is_empty() {
            let own = &mut self.rare_mut().exceptions;
            own.extend(exceptions);
            own.sort_by_key(|e| e.id);
        }
        if !attempts.is_empty() {
            self.rare_mut().attempts.extend(attempts);
        }
    }

    /// Sets the measures, exceptions and attempts (a snapshot's).
    pub(super) fn set_records(
        &mut self,
        measures: Vec<MeasureRecord>,
        exceptions: Vec<ExceptionRecord>,
        attempts: Vec<Attempt>,
    ) {
        let rare = self.rare_mut();
        rare.measures = measures;
        rare.exceptions = exceptions;
        rare.attempts = attempts;
        self.tidy();
    }

    /// One list of the rare parts (empty when there are none).
    fn rare_part<T>(&self, part: fn(&Rare) -> &Vec<T>) -> &[T] {
        self.rare.as_deref().map_or(&[], |rare| part(rare))
    }

    /// One list of the rare parts, to change in place.
    fn rare_part_mut<T>(&mut self, part: fn(&mut Rare) -> &mut Vec<T>) -> &mut [T] {
        self.rare.as_deref_mut().map_or(&mut [], |rare| part(rare))
    }

    /// The rare parts, created empty when absent.
    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Drops the rare parts when all of them are empty again.
    fn tidy(&mut self) {
        if self.rare.as_ref().is_some_and(|rare| rare.is_empty()) {
            self.rare = None;
        }
    }

    /// The record of `milestone` on `object`, if reached.
    pub fn milestone_mut(&mut self, milestone: &Milestone, object: &Key) -> Option<&mut Reached> {
        let object = self.position(object)?;
        self.milestone_at_mut(NameId::new(milestone), object)
    }

    /// The record of `milestone` on the key at position `object`, if reached.
    pub fn milestone_at_mut(
        &mut self,
        milestone: NameId<kind::Milestone>,
        object: usize,
    ) -> Option<&mut Reached> {
        self.milestones
            .iter_mut()
            .find(|m| m.milestone() == milestone && m.object_position() == object)
    }

    /// The object `reached` is about, one of `keys`.
    pub fn milestone_object(&self, reached: &Reached) -> Option<KeyView<'_>> {
        self.keys.get(reached.object_position())
    }

    /// The full record of `reached`, one of `milestones`, its names read
    /// from `names`.
    pub fn milestone_record(&self, reached: &Reached, names: Names<'_>) -> Option<MilestoneRecord> {
        let object = self.milestone_object(reached)?.to_key(names.key_kinds)?;
        Self::milestone_record_on(reached, object, names)
    }

    /// The full record of `reached` with its object given as the [`Key`]
    /// it is (no copy of the text made).
    pub fn milestone_record_on(
        reached: &Reached,
        object: Key,
        names: Names<'_>,
    ) -> Option<MilestoneRecord> {
        let operation = match reached.operation() {
            Some(id) => Some(id.get(names.operations)?.clone()),
            None => None,
        };
        Some(MilestoneRecord {
            milestone: reached.milestone().get(names.milestones)?.clone(),
            object,
            at: reached.stamp(),
            system: reached.system().get(names.systems)?.clone(),
            operation,
            exchange: reached.exchange(),
            repeats: reached.repeats(),
        })
    }

    /// Adds `record` to `milestones`; false (and nothing added) when its
    /// object is not one of `keys` (milestones are only ever recorded on
    /// a transaction's keys).
    pub fn push_milestone(&mut self, record: &MilestoneRecord) -> bool {
        let Some(object) = self.position(&record.object) else {
            return false;
        };
        self.push_milestone_at(record, object);
        true
    }

    /// Adds `record`, whose object is the key at position `object`, to
    /// `milestones` (the caller found the position).
    pub fn push_milestone_at(&mut self, record: &MilestoneRecord, object: usize) {
        self.milestones.push(Reached::new(
            NameId::new(&record.milestone),
            NameId::new(&record.system),
            record.operation.as_ref().map(NameId::new),
            record.exchange,
            record.at,
            object as u32,
            record.repeats,
        ));
    }

    /// The full record of `flow`, one of `flows`, its name read from
    /// `names`.
    pub fn flow_record(&self, flow: &MeasuredFlow, names: Names<'_>) -> Option<FlowRecord> {
        Some(FlowRecord {
            flow: flow.flow.get(names.flows)?.clone(),
            object: self
                .keys
                .get(flow.object_position())?
                .to_key(names.key_kinds)?,
            started: flow.started,
            ended: flow.ended,
            duration: flow.duration(),
            within_slo: flow.within_slo,
        })
    }

    /// Adds `record` to `flows` (exact growth: a transaction completes a
    /// few); false (and nothing added) when its object is not one of `keys`
    /// (flows end on milestones, recorded on the transaction's keys).
    pub fn push_flow(&mut self, record: &FlowRecord) -> bool {
        let Some(object) = self.position(&record.object) else {
            return false;
        };
        self.push_flow_at(record, object);
        true
    }

    /// Adds `record`, whose object is the key at position `object`, to
    /// `flows` (the caller found the position).
    pub fn push_flow_at(&mut self, record: &FlowRecord, object: usize) {
        self.flows.reserve_exact(1);
        self.flows.push(MeasuredFlow {
            flow: NameId::new(&record.flow),
            started: record.started,
            ended: record.ended,
            object: object as u32,
            within_slo: record.within_slo,
        });
    }

    /// Has `flow` been measured on `object`?
    pub fn measured(&self, flow: &FlowName, object: &Key) -> bool {
        self.position(object)
            .is_some_and(|at| self.measured_at(flow, at))
    }

    /// Has `flow` been measured on the key at position `object`?
    pub fn measured_at(&self, flow: &FlowName, object: usize) -> bool {
        self.flows
            .iter()
            .any(|f| f.flow.is(flow) && f.object_position() == object)
    }

    /// The value of `measure` in `role` on `object`, if recorded.
    pub fn measure_mut(
        &mut self,
        measure: &MeasureName,
        role: Role,
        object: &Key,
    ) -> Option<&mut MeasureRecord> {
        self.rare
            .as_mut()?
            .measures
            .iter_mut()
            .find(|m| &m.measure == measure && m.role == role && &m.object == object)
    }

    /// Has `milestone` been reached on `object` (on any object when `None`)?
    pub fn reached(&self, milestone: &Milestone, object: Option<&Key>) -> bool {
        let object = match object {
            Some(key) => match self.position(key) {
                Some(at) => Some(at),
                None => return false,
            },
            None => None,
        };
        self.reached_at(milestone, object)
    }

    /// Has `milestone` been reached on the key at position `object` (on
    /// any object when `None`)?
    pub fn reached_at(&self, milestone: &Milestone, object: Option<usize>) -> bool {
        self.milestones
            .iter()
            .any(|m| m.milestone().is(milestone) && object.is_none_or(|o| m.object_position() == o))
    }

    /// Keys linked directly to `key` by some exchange.
    pub fn neighbours<'a>(&'a self, key: &Key) -> impl Iterator<Item = KeyView<'a>> + 'a {
        self.neighbours_at(self.position(key))
    }

    /// Keys linked directly to the key at position `at` (none for `None`).
    pub fn neighbours_at(&self, at: Option<usize>) -> impl Iterator<Item = KeyView<'_>> + '_ {
        let at = at.map(|p| p as u32);
        self.links
            .iter()
            .filter_map(move |&(a, b)| match at {
                Some(at) if a == at => Some(b),
                Some(at) if b == at => Some(a),
                _ => None,
            })
            .filter_map(|p| self.keys.get(p as usize))
    }

    /// Where `key` is in `keys`.
    pub fn position(&self, key: &Key) -> Option<usize> {
        self.keys.position(KeyView::of(key))
    }

    /// Adds `key` to `keys` unless it is there; returns its position.
    /// Only the store calls this (it indexes the key).
    pub(super) fn add_key(&mut self, key: KeyView<'_>) -> usize {
        match self.keys.position(key) {
            Some(at) => at,
            None => self.keys.push(key),
        }
    }

    /// Adds each of `keys` that is not among `keys` yet (nor earlier in
    /// `keys`), in one reallocation of the key block. Only the store calls
    /// this (it indexes the keys).
    pub(super) fn add_keys(&mut self, keys: &[KeyView<'_>]) {
        let mut new: SmallVec<[KeyView<'_>; KeyRefs::INLINE]> = SmallVec::new();
        for &key in keys {
            if !new.contains(&key) && self.keys.position(key).is_none() {
                new.push(key);
            }
        }
        self.keys.push_all(&new);
    }

    /// The positions of `keys` in `keys`, in order; keys the transaction
    /// does not have are left out.
    pub fn key_refs(&self, keys: &[Key]) -> KeyRefs {
        let positions = keys
            .iter()
            .filter_map(|k| self.position(k))
            .map(|p| p as u32);
        if keys.len() <= KeyRefs::INLINE {
            // No allocation for the usual few keys.
            let mut at = [0u32; KeyRefs::INLINE];
            let mut len = 0;
            for p in positions {
                at[len] = p;
                len += 1;
            }
            KeyRefs::new(&at[..len])
        } else {
            KeyRefs::new(&positions.collect::<Vec<u32>>())
        }
    }

    /// Records that the keys at positions `a` and `b` were seen together
    /// (no-op for a key with itself or a pair already linked).
    pub fn link(&mut self, a: usize, b: usize) {
        self.link_all(std::iter::once((a, b)));
    }

    /// Links every pair of `pairs` as [`link`](Self::link) does, growing
    /// the links once for all the new ones (exact growth).
    pub fn link_all(&mut self, pairs: impl Iterator<Item = (usize, usize)>) {
        let mut new: SmallVec<[(u32, u32); 8]> = SmallVec::new();
        for (a, b) in pairs {
            let (a, b) = (a as u32, b as u32);
            let known = |&(x, y): &(u32, u32)| (x, y) == (a, b) || (x, y) == (b, a);
            if a != b && !self.links.iter().any(known) && !new.iter().any(known) {
                new.push((a, b));
            }
        }
        if !new.is_empty() {
            self.links.reserve_exact(new.len());
            self.links.extend(new);
        }
    }

    /// The pairs of linked keys.
    pub fn linked_keys(&self) -> impl Iterator<Item = (KeyView<'_>, KeyView<'_>)> + '_ {
        self.links
            .iter()
            .filter_map(|&(a, b)| Some((self.keys.get(a as usize)?, self.keys.get(b as usize)?)))
    }

    /// The keys of `exchange`, one of this transaction's.
    pub fn exchange_keys<'a>(
        &'a self,
        exchange: ExchangeRecord<'a>,
    ) -> impl Iterator<Item = KeyView<'a>> + 'a {
        exchange.keys().filter_map(|p| self.keys.get(p))
    }

    /// The last milestone recorded, for listings.
    pub fn last_milestone(&self) -> Option<&Reached> {
        self.milestones.iter().max_by_key(|m| m.stamp())
    }
}

impl Transaction {
    /// The transaction as the admin API writes it, config names read from
    /// `names`.
    pub fn json<'a>(&'a self, names: Names<'a>) -> TransactionJson<'a> {
        TransactionJson { tx: self, names }
    }
}

/// A [`Transaction`] with the config names to write it out
/// ([`Transaction::json`]).
pub struct TransactionJson<'a> {
    tx: &'a Transaction,
    names: Names<'a>,
}

impl Serialize for TransactionJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (tx, names) = (self.tx, self.names);
        tx.serialize_with(names, s)
    }
}

impl Transaction {
    fn serialize_with<S: Serializer>(&self, names: Names<'_>, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Transaction", 17)?;
        st.serialize_field("name", &self.name())?;
        st.serialize_field("root", &self.root())?;
        st.serialize_field("former_names", self.former_names())?;
        st.serialize_field("status", &self.status)?;
        st.serialize_field("keys", &self.keys_json(names))?;
        st.serialize_field("links", &Links(self, names))?;
        st.serialize_field("milestones", &Milestones(self, names))?;
        st.serialize_field("measures", self.measures())?;
        st.serialize_field("flows", &Flows(self, names))?;
        st.serialize_field("exceptions", self.exceptions())?;
        st.serialize_field("attempts", self.attempts())?;
        st.serialize_field(
            "current",
            &self.current.and_then(|m| m.get(names.milestones)),
        )?;
        st.serialize_field("stuck", &self.stuck())?;
        st.serialize_field("exchanges", &Exchanges(self, names))?;
        st.serialize_field("exchanges_dropped", &self.exchanges_dropped)?;
        st.serialize_field("first_seen", &Rfc3339(self.first_seen.time()))?;
        st.serialize_field("last_updated", &Rfc3339(self.last_updated.time()))?;
        st.end()
    }
}

impl Transaction {
    /// The keys as the API writes them (each as its [`Key`]'s JSON).
    pub fn keys_json<'a>(&'a self, names: Names<'a>) -> Vec<KeyJson<'a>> {
        self.keys.iter().map(|k| k.json(names.key_kinds)).collect()
    }
}

/// A transaction's links, written as pairs of keys.
struct Links<'a>(&'a Transaction, Names<'a>);

impl Serialize for Links<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let kinds = self.1.key_kinds;
        s.collect_seq(
            self.0
                .linked_keys()
                .map(|(a, b)| (a.json(kinds), b.json(kinds))),
        )
    }
}

/// A transaction's milestones, each with its object written out.
struct Milestones<'a>(&'a Transaction, Names<'a>);

impl Serialize for Milestones<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Milestones(tx, names) = *self;
        s.collect_seq(
            tx.milestones
                .iter()
                .filter_map(|m| tx.milestone_record(m, names)),
        )
    }
}

/// A transaction's flows, each with its object and name written out.
struct Flows<'a>(&'a Transaction, Names<'a>);

impl Serialize for Flows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Flows(tx, names) = *self;
        s.collect_seq(tx.flows.iter().filter_map(|f| tx.flow_record(f, names)))
    }
}

/// A transaction's exchanges, each with its keys written out.
struct Exchanges<'a>(&'a Transaction, Names<'a>);

impl Serialize for Exchanges<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Exchanges(tx, names) = *self;
        let mut seq = s.serialize_seq(Some(tx.exchanges.len()))?;
        for exchange in tx.exchanges.iter() {
            seq.serialize_element(&ExchangeJson {
                tx,
                exchange,
                names,
            })?;
        }
        seq.end()
    }
}

struct ExchangeJson<'a> {
    tx: &'a Transaction,
    exchange: ExchangeRecord<'a>,
    names: Names<'a>,
}

impl Serialize for ExchangeJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (x, names) = (self.exchange, self.names);
        let mut st = s.serialize_struct("ExchangeRecord", 12)?;
        st.serialize_field("id", &x.id)?;
        st.serialize_field("at", &Rfc3339(x.at()))?;
        st.serialize_field("system", &x.system.get(names.systems))?;
        st.serialize_field(
            "operation",
            &x.operation.and_then(|o| o.get(names.operations)),
        )?;
        st.serialize_field("method", x.method())?;
        st.serialize_field("path", x.path())?;
        st.serialize_field("status", &x.status)?;
        st.serialize_field("error", &x.error.map(UpstreamError::as_str))?;
        st.serialize_field("duration_seconds", &x.duration().as_secs_f64())?;
        let keys: Vec<KeyJson<'_>> = self
            .tx
            .exchange_keys(x)
            .map(|k| k.json(names.key_kinds))
            .collect();
        st.serialize_field("keys", &keys)?;
        st.serialize_field(
            "milestone",
            &x.milestone.and_then(|m| m.get(names.milestones)),
        )?;
        let problems: Vec<&str> = x.problems().iter().map(|p| p.as_str()).collect();
        st.serialize_field("problems", &problems)?;
        st.end()
    }
}

/// A time written as RFC 3339 with milliseconds.
struct Rfc3339(SystemTime);

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        rfc3339(&self.0, s)
    }
}

fn rfc3339<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

fn rfc3339_stamp<S: Serializer>(t: &Stamp, s: S) -> Result<S::Ok, S::Error> {
    rfc3339(&t.time(), s)
}

fn rfc3339_opt<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

fn seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_refs_keep_their_order_inline_and_on_the_heap() {
        let few = [3, 0, 2];
        let refs = KeyRefs::new(&few);
        assert!(matches!(refs, KeyRefs::Inline { .. }));
        assert_eq!(refs.iter().collect::<Vec<_>>(), vec![3, 0, 2]);

        let many: Vec<u32> = (0..20).rev().collect();
        let refs = KeyRefs::new(&many);
        assert!(matches!(refs, KeyRefs::Heap(_)));
        assert_eq!(
            refs.iter().collect::<Vec<_>>(),
            many.iter().map(|&p| p as usize).collect::<Vec<_>>()
        );

        let far = KeyRefs::new(&[1, 300]);
        assert!(matches!(far, KeyRefs::Heap(_)), "300 does not fit a byte");
        assert_eq!(far.iter().collect::<Vec<_>>(), vec![1, 300]);
    }

    #[test]
    fn timeline_records_stay_compact() {
        assert_eq!(std::mem::size_of::<Option<NameId<kind::System>>>(), 2);
        assert_eq!(std::mem::size_of::<KeyRefs>(), 16);
        assert_eq!(std::mem::size_of::<Stamp>(), 8);
        assert!(std::mem::size_of::<Reached>() <= 24);
        assert!(std::mem::size_of::<MeasuredFlow>() <= 24);
        // 192 is an allocation size class of jemalloc (the binary's
        // allocator); the next is 224.
        assert!(
            std::mem::size_of::<Transaction>() <= 192,
            "{}",
            std::mem::size_of::<Transaction>()
        );
    }

    #[test]
    fn rare_parts_are_boxed_only_while_some_is_set() {
        let mut kinds: Symbols<kind::KeyKind> = Symbols::default();
        let order = Key::new(kinds.intern("order").expect("intern"), "SO-1");
        let ship = Key::new(kinds.intern("shipment").expect("intern"), "SH-1");
        let mut milestones: Symbols<kind::Milestone> = Symbols::default();
        let packed = milestones.intern("packed").expect("intern");
        let mut tx = Transaction::new(TxId(1), ship.clone(), SystemTime::UNIX_EPOCH);
        assert!(tx.rare.is_none());
        assert_eq!(tx.root(), None);

        // A root that is not the name is held in the box.
        tx.set_root(Some(order.clone()));
        assert!(tx.rare.is_some());
        assert_eq!(tx.root(), Some(Name::of(&order)));
        // Renaming to the root makes it a flag; the old name is remembered.
        tx.rename(order.clone());
        assert_eq!(tx.name(), Name::of(&order));
        assert_eq!(tx.root(), Some(Name::of(&order)));
        // The name is one of the keys, read in place.
        assert_eq!(
            tx.keys.keys(&kinds).collect::<Vec<_>>(),
            [ship.clone(), order.clone()]
        );
        assert_eq!(tx.former_names(), std::slice::from_ref(&ship));
        assert_eq!(tx.trace_id(), trace_id(&order));
        tx.set_former_names(Vec::new());
        assert!(tx.rare.is_none(), "the root is the name: nothing rare left");

        assert_eq!(tx.replace_stuck(Some(packed.clone())), None);
        assert_eq!(tx.stuck(), Some(&packed));
        assert_eq!(tx.replace_stuck(None), Some(packed));
        assert!(tx.rare.is_none());

        // Renaming away from the root keeps the root.
        tx.rename(ship.clone());
        assert_eq!(
            (tx.name(), tx.root()),
            (Name::of(&ship), Some(Name::of(&order)))
        );
        assert_eq!(tx.keys.len(), 2, "no key added twice");
        assert_eq!(tx.former_names(), std::slice::from_ref(&order));
        assert_eq!(tx.trace_id(), trace_id(&ship));
        tx.set_root(None);
        assert_eq!(tx.root(), None);
    }

    #[test]
    fn the_name_stays_one_of_the_keys_and_writes_out_as_its_key() {
        let mut kinds: Symbols<kind::KeyKind> = Symbols::default();
        let order = Key::new(kinds.intern("order").expect("intern"), "SO-1");
        let ship = Key::new(kinds.intern("shipment").expect("intern"), "SH-1");
        let mut tx = Transaction::new(TxId(1), order.clone(), SystemTime::UNIX_EPOCH);
        assert_eq!(
            tx.keys.keys(&kinds).collect::<Vec<_>>(),
            std::slice::from_ref(&order)
        );
        // A snapshot's keys, the name elsewhere among them, then without it.
        tx.set_keys(KeyBlock::of([KeyView::of(&ship), KeyView::of(&order)]));
        assert_eq!((tx.name(), tx.keys.len()), (Name::of(&order), 2));
        tx.set_keys(KeyBlock::of([KeyView::of(&ship)]));
        assert_eq!(tx.name(), Name::of(&order));
        assert_eq!(
            tx.keys.keys(&kinds).collect::<Vec<_>>(),
            [ship, order.clone()]
        );
        assert_eq!(tx.name().to_string(), order.to_string());
        assert_eq!(
            serde_json::to_value(tx.name()).expect("json"),
            serde_json::to_value(&order).expect("json")
        );
        let prefixes = ["order:".to_owned()];
        assert_eq!(tx.name().text(&prefixes).concat(), "order:SO-1");
        assert_eq!(tx.name().text(&[]).concat(), "order:SO-1");
    }

    #[test]
    fn remapped_key_refs_point_where_the_map_says() {
        let refs = KeyRefs::new(&[0, 2]);
        let moved = refs.remap(&[5, 6, 7]);
        assert_eq!(moved.iter().collect::<Vec<_>>(), vec![5, 7]);
    }
}
