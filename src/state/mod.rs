//! The state stage: where transactions live. This is the in-memory store,
//! bounded by a TTL on idle transactions and a maximum count (the least
//! recently updated is evicted first); every removal is counted by reason.
//! One task (the correlator) owns it; nothing else mutates it.
//! [`durable`] makes it survive restarts: the correlator journals what it
//! applies and snapshots the store (see `docs/state.md`); [`shared`] makes
//! several sidecars share one picture through a replicated log in Redis.

pub mod durable;
mod expiry;
mod heap;
mod index;
mod keys;
mod reached;
pub mod shared;
mod slab;
mod timeline;
mod transaction;

pub use index::KeyHash;
pub use keys::{KeyBlock, KeyJson, KeyView};
pub use slab::TxRef;
pub use timeline::{ExchangeRecord, NewExchange, Problems, Timeline};
pub use transaction::{
    Attempt, ExceptionRecord, FlowRecord, KeyRefs, ManyRefs, MeasureRecord, MeasuredFlow,
    MilestoneRecord, Name, NameId, Names, Reached, Resolution, Stamp, Status, Transaction,
    TransactionJson, TxId,
};

use smallvec::SmallVec;
use std::time::SystemTime;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::config::{kind, ExceptionKind, StateConfig, Symbols, System};
use crate::extract::Key;

/// Why a transaction left the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Removal {
    /// Untouched for longer than the TTL.
    Ttl,
    /// Evicted to stay within `max_transactions`.
    Capacity,
}

impl Removal {
    fn as_str(self) -> &'static str {
        match self {
            Removal::Ttl => "ttl",
            Removal::Capacity => "capacity",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ExceptionLabel {
    kind: String,
    owner: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MilestoneLabel {
    milestone: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The store's self-instrumentation.
struct StateMetrics {
    open: Gauge,
    complete: Gauge,
    keys: Gauge,
    removed_ttl: Counter,
    removed_capacity: Counter,
    /// Open exceptions held, by kind and owner.
    exceptions_open: Family<ExceptionLabel, Gauge>,
    /// Transactions resting too long at a milestone, by that milestone.
    stuck: Family<MilestoneLabel, Gauge>,
    /// Open transactions by their latest milestone.
    in_flight: Family<MilestoneLabel, Gauge>,
    /// The `stuck` and `in_flight` gauge of each milestone used so far, by
    /// milestone index: resolved once, not per update.
    stuck_by_id: Vec<Option<Gauge>>,
    in_flight_by_id: Vec<Option<Gauge>>,
}

impl StateMetrics {
    fn new(registry: &mut Registry) -> Self {
        let transactions = Family::<StatusLabel, Gauge>::default();
        registry.register(
            "waybill_state_transactions",
            "Transactions held in the state store, by status (open, complete)",
            transactions.clone(),
        );
        let gauge = |s: Status| {
            transactions
                .get_or_create(&StatusLabel { status: s.as_str() })
                .clone()
        };
        let keys = Gauge::default();
        registry.register(
            "waybill_state_keys",
            "Business keys indexed in the state store",
            keys.clone(),
        );
        let removed = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "waybill_state_removed",
            "Transactions removed from the state store, by reason (ttl, capacity)",
            removed.clone(),
        );
        let handle = |r: Removal| {
            removed
                .get_or_create(&ReasonLabel { reason: r.as_str() })
                .clone()
        };
        let exceptions_open = Family::<ExceptionLabel, Gauge>::default();
        registry.register(
            "waybill_exceptions_open",
            "Exceptions open in held transactions, by kind and owner system",
            exceptions_open.clone(),
        );
        let stuck = Family::<MilestoneLabel, Gauge>::default();
        registry.register(
            "waybill_transactions_stuck",
            "Open transactions resting at a milestone longer than its stuck_after, by milestone",
            stuck.clone(),
        );
        let in_flight = Family::<MilestoneLabel, Gauge>::default();
        registry.register(
            "waybill_transactions_in_flight",
            "Open transactions by the latest milestone they reached",
            in_flight.clone(),
        );
        StateMetrics {
            exceptions_open,
            stuck,
            in_flight,
            stuck_by_id: Vec::new(),
            in_flight_by_id: Vec::new(),
            open: gauge(Status::Open),
            complete: gauge(Status::Complete),
            keys,
            removed_ttl: handle(Removal::Ttl),
            removed_capacity: handle(Removal::Capacity),
        }
    }
}

impl StateMetrics {
    fn exception_gauge(&self, exception: &ExceptionRecord) -> Gauge {
        self.exceptions_open
            .get_or_create(&ExceptionLabel {
                kind: exception.kind.to_string(),
                owner: exception.owner.to_string(),
            })
            .clone()
    }

    fn in_flight_gauge(&mut self, milestone: &crate::config::Milestone) -> &Gauge {
        milestone_gauge(&self.in_flight, &mut self.in_flight_by_id, milestone)
    }

    fn stuck_gauge(&mut self, milestone: &crate::config::Milestone) -> &Gauge {
        milestone_gauge(&self.stuck, &mut self.stuck_by_id, milestone)
    }

    /// The in-flight gauge of the milestone of id `milestone`, resolved
    /// when a transaction was first counted at it.
    fn in_flight_by_id(&self, milestone: NameId<kind::Milestone>) -> Option<&Gauge> {
        self.in_flight_by_id.get(milestone.index())?.as_ref()
    }

    /// Takes a transaction that leaves the store off the stuck and
    /// in-flight gauges.
    fn forget(&mut self, tx: &Transaction) {
        if let Some(milestone) = tx.stuck() {
            self.stuck_gauge(milestone).dec();
        }
        if let Some(gauge) = tx.current().and_then(|m| self.in_flight_by_id(m)) {
            gauge.dec();
        }
    }

    /// Sets the gauges of transactions by status and of keys.
    fn publish(&self, held: usize, complete: usize, keys: usize) {
        let gauge = |g: &Gauge, n: usize| g.set(i64::try_from(n).unwrap_or(i64::MAX));
        gauge(&self.open, held - complete);
        gauge(&self.complete, complete);
        gauge(&self.keys, keys);
    }
}

/// The gauge of `milestone` in `family`, looked up by name the first time
/// only (the series appears on first use, as with `get_or_create`).
fn milestone_gauge<'a>(
    family: &Family<MilestoneLabel, Gauge>,
    resolved: &'a mut Vec<Option<Gauge>>,
    milestone: &crate::config::Milestone,
) -> &'a Gauge {
    let index = milestone.id();
    if resolved.len() <= index {
        resolved.resize(index + 1, None);
    }
    resolved[index].get_or_insert_with(|| {
        family
            .get_or_create(&MilestoneLabel {
                milestone: milestone.to_string(),
            })
            .clone()
    })
}

/// The transaction in slot `slot` of `transactions` if it has `key` among
/// its keys: how the key index confirms a check match.
fn holder(transactions: &slab::Slab, key: KeyView<'_>, slot: u32) -> Option<TxRef> {
    transactions
        .at_slot(slot)
        .filter(|(_, tx)| tx.keys.position(key).is_some())
        .map(|(at, _)| at)
}

/// Transactions, the index from every key to its transaction, and the
/// order of last updates that drives expiry and eviction.
pub struct Store {
    limits: StateConfig,
    /// Held in place, addressed by slot ([`TxRef`]): no id map, no box.
    transactions: slab::Slab,
    /// Keys come from traffic: std's SipHash, so a partner or an attacker
    /// who studies the process cannot send colliding keys that turn every
    /// lookup into a scan (foldhash is only "minimally DoS-resistant").
    /// Holds no copy of the keys (see [`index`]).
    index: index::KeyIndex,
    /// The least recently updated transaction: the next to expire or evict.
    by_update: expiry::Expiry,
    next_id: u64,
    /// How many held transactions are complete, kept for the gauges.
    complete: usize,
    metrics: StateMetrics,
}

impl Store {
    /// An empty store with the given bounds; registers its metrics.
    pub fn new(limits: StateConfig, registry: &mut Registry) -> Self {
        Store {
            limits,
            transactions: slab::Slab::default(),
            index: index::KeyIndex::default(),
            by_update: expiry::Expiry::default(),
            next_id: 1,
            complete: 0,
            metrics: StateMetrics::new(registry),
        }
    }

    /// Creates the open-exception gauge of every (kind, owner) the config
    /// can open at zero, so boards show 0 rather than no data before the
    /// first exception of a kind.
    pub fn declare_exceptions(&self, possible: &[(ExceptionKind, System)]) {
        for (kind, owner) in possible {
            drop(self.metrics.exceptions_open.get_or_create(&ExceptionLabel {
                kind: kind.to_string(),
                owner: owner.to_string(),
            }));
        }
    }

    /// Puts back transactions saved from a store (a snapshot), rebuilding
    /// the key index, the expiry order and every gauge; `next_id` is the
    /// id the next new transaction gets; `milestones` names the
    /// transactions' current milestones (the config's).
    pub fn restore(
        &mut self,
        transactions: Vec<Transaction>,
        next_id: u64,
        milestones: &Symbols<kind::Milestone>,
    ) {
        for tx in transactions {
            let keys = tx.keys.clone();
            let at = self.transactions.insert(tx);
            for key in keys.iter() {
                self.index_key(self.index.hash(key), key, at);
            }
            let Some(tx) = self.transactions.get(at) else {
                continue;
            };
            let id = tx.id;
            self.by_update.push(tx.last_updated, at, &self.transactions);
            if tx.status == Status::Complete {
                self.complete += 1;
            }
            if let Some(milestone) = tx.stuck() {
                self.metrics.stuck_gauge(milestone).inc();
            }
            if let Some(milestone) = tx.current().and_then(|m| m.get(milestones)) {
                self.metrics.in_flight_gauge(milestone).inc();
            }
            for exception in tx.exceptions().iter().filter(|e| e.is_open()) {
                self.metrics.exception_gauge(exception).inc();
            }
            self.next_id = self.next_id.max(id.0 + 1);
        }
        self.next_id = self.next_id.max(next_id);
        self.refresh_gauges();
    }

    /// The id the next new transaction gets (saved in snapshots).
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// When the next transaction expires by TTL, if any is held.
    pub fn next_expiry(&mut self) -> Option<SystemTime> {
        self.by_update
            .oldest(&self.transactions)
            .and_then(|(last, _)| last.checked_add(self.limits.ttl))
    }

    /// The transaction `key` belongs to.
    pub fn find(&self, key: &Key) -> Option<TxRef> {
        self.find_hashed(key, self.key_hash(key))
    }

    /// The hash of `key` in this store's key index: computed once, it makes
    /// [`Store::find_hashed`] and [`Store::attach_hashed`] hash nothing.
    pub fn key_hash(&self, key: &Key) -> KeyHash {
        self.index.hash(KeyView::of(key))
    }

    /// The transaction `key`, of hash `hash` ([`Store::key_hash`]), belongs to.
    pub fn find_hashed(&self, key: &Key, hash: KeyHash) -> Option<TxRef> {
        let key = KeyView::of(key);
        self.index
            .get(hash, |slot| holder(&self.transactions, key, slot))
    }

    /// The transaction `id` refers to.
    pub fn get(&self, id: TxRef) -> Option<&Transaction> {
        self.transactions.get(id)
    }

    /// Whether transaction `id` is still held (`get(id).is_some()`, from a
    /// compact array of tags, without reading the transaction).
    pub fn holds(&self, id: TxRef) -> bool {
        self.transactions.holds(id)
    }

    /// Mutable access for recording milestones, flows and exchanges.
    /// Keys are added with [`Store::attach_hashed`] and times with [`Store::touch`],
    /// so the indexes stay right.
    pub fn get_mut(&mut self, id: TxRef) -> Option<&mut Transaction> {
        self.transactions.get_mut(id)
    }

    /// Transaction `id`, looked up once, to read and change through one
    /// handle (see [`TxMut`]).
    pub fn entry(&mut self, id: TxRef) -> Option<TxMut<'_>> {
        self.by_update.compact(&self.transactions);
        let held = self.transactions.len();
        let keys = self.index.len();
        let tx = self.transactions.get_mut(id)?;
        Some(TxMut {
            tx,
            id,
            limits: &self.limits,
            complete: &mut self.complete,
            metrics: &mut self.metrics,
            held,
            keys,
        })
    }

    /// Every transaction, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Transaction> {
        self.transactions.iter().map(|(_, tx)| tx)
    }

    /// How many transactions are held.
    pub fn len(&self) -> usize {
        self.transactions.len()
    }

    /// True when no transaction is held.
    pub fn is_empty(&self) -> bool {
        self.transactions.len() == 0
    }

    /// Starts a transaction named by `name` (which is attached to it),
    /// evicting the least recently updated one if the store is full;
    /// `hash` is the name's ([`Store::key_hash`]).
    pub fn create_hashed(&mut self, name: &Key, hash: KeyHash, now: Stamp) -> TxRef {
        while self.transactions.len() >= self.limits.max_transactions.max(1) {
            let Some((_, oldest)) = self.by_update.oldest(&self.transactions) else {
                break;
            };
            self.remove(oldest, Removal::Capacity);
        }
        let id = TxId(self.next_id);
        self.next_id += 1;
        // The new transaction holds its name as its first key: only the
        // index is told.
        let at = self.transactions.insert(Transaction::named(id, name, now));
        self.index_key(hash, KeyView::of(name), at);
        self.by_update.compact(&self.transactions);
        self.by_update.push(now, at, &self.transactions);
        self.refresh_gauges();
        at
    }

    /// Adds `key`, of hash `hash` ([`Store::key_hash`]), to transaction
    /// `id` (no-op when it is already there).
    pub fn attach_hashed(&mut self, id: TxRef, key: &Key, hash: KeyHash) {
        let Some(tx) = self.transactions.get_mut(id) else {
            return;
        };
        // A key the transaction has already (a merge moved it, or the
        // exchange carried it twice) is only pointed at it: no probe of
        // the index to ask first, the setting probes once.
        let key = KeyView::of(key);
        tx.add_key(key);
        self.index_key(hash, key, id);
        self.refresh_gauges();
    }

    /// [`Store::attach_hashed`] for each of `keys` (with its hash), the
    /// transaction's key block grown once for all of them.
    pub fn attach_all_hashed(&mut self, id: TxRef, keys: &[(&Key, KeyHash)]) {
        let Some(tx) = self.transactions.get_mut(id) else {
            return;
        };
        let views: SmallVec<[KeyView<'_>; 4]> =
            keys.iter().map(|(key, _)| KeyView::of(key)).collect();
        tx.add_keys(&views);
        for (&key, &(_, hash)) in views.iter().zip(keys) {
            self.index_key(hash, key, id);
        }
        self.refresh_gauges();
    }

    /// Records that transaction `id` changed at `now`.
    pub fn touch(&mut self, id: TxRef, now: Stamp) {
        if let Some(mut tx) = self.entry(id) {
            tx.touch(now);
        }
    }

    /// Moves everything of `from` into `into` and forgets `from`: keys,
    /// links, milestones (repeats of the same milestone on the same object
    /// are summed), measures (of two values for one object, measure and
    /// role the later wins, as a re-sent one would), flows and exchanges.
    pub fn merge(&mut self, into: TxRef, from: TxRef) {
        if into == from {
            return;
        }
        let Some(mut absorbed) = self.transactions.remove(from) else {
            return;
        };
        if absorbed.status == Status::Complete {
            self.complete -= 1;
        }
        self.metrics.forget(&absorbed);
        let Some(target) = self.transactions.get_mut(into) else {
            return;
        };
        // Where each of the absorbed transaction's keys is in the target.
        let moved: Vec<u32> = absorbed
            .keys
            .iter()
            .map(|key| target.add_key(key) as u32)
            .collect();
        if !target.has_root() {
            if let Some(root) = absorbed.root().map(Name::to_key) {
                target.rename(root.clone());
                target.set_root(Some(root));
            }
        }
        let absorbed_name = absorbed.name().to_key();
        target.add_former_names(absorbed.former_names().iter().chain([&absorbed_name]));
        // Measures, exceptions and attempts (the name, root and former
        // names are read above).
        let rare = absorbed.take_rare();
        let absorbed_dropped = absorbed.exchanges_dropped();
        for &(a, b) in &absorbed.links {
            if let (Some(&a), Some(&b)) = (moved.get(a as usize), moved.get(b as usize)) {
                target.link(a as usize, b as usize);
            }
        }
        for mut record in absorbed.milestones {
            if !record.remap(&moved) {
                continue;
            }
            match target.milestone_at_mut(record.milestone(), record.object_position()) {
                Some(existing) => {
                    let repeats = existing
                        .repeats()
                        .saturating_add(record.repeats())
                        .saturating_add(1);
                    if record.at() < existing.at() {
                        *existing = record;
                    }
                    existing.set_repeats(repeats);
                }
                None => target.milestones.push(record),
            }
        }
        target.milestones.sort_by_key(|m| m.at());
        target.absorb_rare(rare);
        target.flows.extend(
            absorbed
                .flows
                .into_iter()
                .filter_map(|mut flow| flow.remap(&moved).then_some(flow)),
        );
        target.exchanges.absorb(&absorbed.exchanges, &moved);
        let dropped = target
            .exchanges
            .drop_oldest_beyond(self.limits.max_exchanges_per_transaction);
        target.count_dropped(absorbed_dropped as usize);
        target.count_dropped(dropped);
        target.first_seen = target.first_seen.min(absorbed.first_seen);
        for key in absorbed.keys.iter() {
            self.index.set(self.index.hash(key), into.slot(), |slot| {
                slot == from.slot() || holder(&self.transactions, key, slot).is_some()
            });
        }
        self.touch(into, absorbed.last_updated);
        self.refresh_gauges();
    }

    /// Removes every transaction idle for longer than the TTL at `now`;
    /// returns how many were removed.
    pub fn expire(&mut self, now: SystemTime) -> usize {
        let mut removed = 0;
        while let Some((last, id)) = self.by_update.oldest(&self.transactions) {
            let idle = now.duration_since(last).unwrap_or_default();
            if idle < self.limits.ttl {
                break;
            }
            self.remove(id, Removal::Ttl);
            removed += 1;
        }
        removed
    }

    fn remove(&mut self, id: TxRef, why: Removal) {
        let Some(tx) = self.transactions.remove(id) else {
            return;
        };
        if tx.status == Status::Complete {
            self.complete -= 1;
        }
        self.metrics.forget(&tx);
        for exception in tx.exceptions().iter().filter(|e| e.is_open()) {
            self.metrics.exception_gauge(exception).dec();
        }
        for key in tx.keys.iter() {
            self.index.remove(self.index.hash(key), id.slot());
        }
        match why {
            Removal::Ttl => self.metrics.removed_ttl.inc(),
            Removal::Capacity => self.metrics.removed_capacity.inc(),
        };
        self.refresh_gauges();
    }

    /// Adds an open exception to transaction `id`.
    pub fn open_exception(&mut self, id: TxRef, exception: ExceptionRecord) {
        if let Some(tx) = self.transactions.get_mut(id) {
            self.metrics.exception_gauge(&exception).inc();
            tx.push_exception(exception);
        }
    }

    /// Resolves exception `exception` of transaction `id` at `at`; returns
    /// the resolved record, or `None` if it was not open.
    pub fn resolve_exception(
        &mut self,
        id: TxRef,
        exception: u64,
        at: SystemTime,
    ) -> Option<ExceptionRecord> {
        let tx = self.transactions.get_mut(id)?;
        let record = tx
            .exceptions_mut()
            .iter_mut()
            .find(|e| e.id == exception && e.is_open())?;
        record.resolved = Some(at.max(record.opened));
        self.metrics.exception_gauge(record).dec();
        Some(record.clone())
    }

    /// Marks transaction `id` stuck at `milestone`, or not stuck (`None`).
    pub fn set_stuck(&mut self, id: TxRef, milestone: Option<crate::config::Milestone>) {
        if let Some(mut tx) = self.entry(id) {
            tx.set_stuck(milestone);
        }
    }

    /// Indexes `key`, of hash `hash`, to transaction `at` (which holds it),
    /// replacing the entry of another transaction that has it too.
    fn index_key(&mut self, hash: KeyHash, key: KeyView<'_>, at: TxRef) {
        let transactions = &self.transactions;
        self.index.set(hash, at.slot(), |slot| {
            holder(transactions, key, slot).is_some()
        });
    }

    fn refresh_gauges(&self) {
        self.metrics
            .publish(self.transactions.len(), self.complete, self.index.len());
    }
}

/// One transaction of a [`Store`], looked up once ([`Store::entry`]): it
/// reads as the [`Transaction`], and what changes through it keeps the
/// timeline bound, the status count, the gauges and the expiry order
/// right. Keys are added with [`Store::attach_hashed`].
pub struct TxMut<'a> {
    tx: &'a mut Transaction,
    id: TxRef,
    limits: &'a StateConfig,
    complete: &'a mut usize,
    metrics: &'a mut StateMetrics,
    /// Transactions and keys held (unchanged while the handle lives).
    held: usize,
    keys: usize,
}

impl std::ops::Deref for TxMut<'_> {
    type Target = Transaction;
    fn deref(&self) -> &Transaction {
        self.tx
    }
}

impl std::ops::DerefMut for TxMut<'_> {
    fn deref_mut(&mut self) -> &mut Transaction {
        self.tx
    }
}

impl TxMut<'_> {
    /// Where the transaction is held.
    pub fn id(&self) -> TxRef {
        self.id
    }

    /// Records that the transaction changed at `now` (the expiry order
    /// reads it when the transaction's entry comes to its top).
    pub fn touch(&mut self, now: Stamp) {
        let tx = &mut *self.tx;
        tx.last_updated = tx.last_updated.max(now);
    }

    /// Appends `exchange` to the timeline, dropping the oldest beyond the
    /// configured bound.
    pub fn push_exchange(&mut self, exchange: NewExchange<'_>) {
        let bound = self.limits.max_exchanges_per_transaction;
        let tx = &mut *self.tx;
        tx.exchanges.push(exchange);
        let dropped = tx.exchanges.drop_oldest_beyond(bound);
        tx.count_dropped(dropped);
    }

    /// Sets where the open transaction is now (`None` once complete).
    pub fn set_current(&mut self, milestone: Option<crate::config::Milestone>) {
        let to = milestone.as_ref().map(NameId::new);
        if self.tx.current() == to {
            return;
        }
        if let Some(now) = &milestone {
            self.metrics.in_flight_gauge(now).inc();
        }
        if let Some(gauge) = self
            .tx
            .replace_current(to)
            .and_then(|before| self.metrics.in_flight_by_id(before))
        {
            gauge.dec();
        }
    }

    /// Marks the transaction stuck at `milestone`, or not stuck (`None`).
    pub fn set_stuck(&mut self, milestone: Option<crate::config::Milestone>) {
        if self.tx.stuck() == milestone.as_ref() {
            return;
        }
        if let Some(now) = &milestone {
            self.metrics.stuck_gauge(now).inc();
        }
        if let Some(before) = self.tx.replace_stuck(milestone) {
            self.metrics.stuck_gauge(&before).dec();
        }
    }

    /// Sets the status; returns the previous one.
    pub fn set_status(&mut self, status: Status) -> Status {
        let before = std::mem::replace(&mut self.tx.status, status);
        match (before, status) {
            (Status::Open, Status::Complete) => *self.complete += 1,
            (Status::Complete, Status::Open) => *self.complete -= 1,
            _ => return before,
        }
        self.metrics.publish(self.held, *self.complete, self.keys);
        before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{kind, Symbols};
    use std::time::Duration;

    fn store(max: usize, ttl: Duration) -> (Store, Symbols<kind::KeyKind>) {
        let mut registry = Registry::default();
        let limits = StateConfig {
            ttl,
            max_transactions: max,
            max_exchanges_per_transaction: 4,
            store: Default::default(),
        };
        let mut kinds = Symbols::default();
        kinds.intern("order").expect("intern");
        kinds.intern("shipment").expect("intern");
        (Store::new(limits, &mut registry), kinds)
    }

    fn key(kinds: &Symbols<kind::KeyKind>, kind: &str, value: &str) -> Key {
        Key::new(kinds.get(kind).expect("declared"), value)
    }

    /// A store, a time, and an order and a shipment key to put in it.
    fn order_and_shipment() -> (Store, Symbols<kind::KeyKind>, SystemTime, Key, Key) {
        let (store, kinds) = store(10, Duration::from_secs(3600));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let order = key(&kinds, "order", "SO-1");
        let ship = key(&kinds, "shipment", "SH-1");
        (store, kinds, t0, order, ship)
    }

    /// A transaction named by `name`, the way the correlator creates one.
    fn create(store: &mut Store, name: Key, at: SystemTime) -> TxRef {
        let hash = store.key_hash(&name);
        store.create_hashed(&name, hash, Stamp::new(at))
    }

    /// `key` added to transaction `id`, the way the correlator adds one.
    fn attach(store: &mut Store, id: TxRef, key: &Key) {
        let hash = store.key_hash(key);
        store.attach_hashed(id, key, hash);
    }

    #[test]
    fn a_full_store_evicts_the_least_recently_updated_transaction() {
        let (mut store, kinds) = store(2, Duration::from_secs(3600));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let a = create(&mut store, key(&kinds, "order", "A"), t0);
        let b = create(
            &mut store,
            key(&kinds, "order", "B"),
            t0 + Duration::from_secs(1),
        );
        store.touch(a, Stamp::new(t0 + Duration::from_secs(2)));
        let c = create(
            &mut store,
            key(&kinds, "order", "C"),
            t0 + Duration::from_secs(3),
        );
        assert!(store.get(a).is_some());
        assert!(store.get(b).is_none(), "B was least recently updated");
        assert!(store.get(c).is_some());
        assert_eq!(store.find(&key(&kinds, "order", "B")), None);
        assert_eq!(store.metrics.removed_capacity.get(), 1);
    }

    #[test]
    fn idle_transactions_expire_after_the_ttl() {
        let (mut store, kinds) = store(10, Duration::from_secs(60));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let a = create(&mut store, key(&kinds, "order", "A"), t0);
        let b = create(
            &mut store,
            key(&kinds, "order", "B"),
            t0 + Duration::from_secs(30),
        );
        assert_eq!(store.expire(t0 + Duration::from_secs(59)), 0);
        assert_eq!(store.expire(t0 + Duration::from_secs(60)), 1);
        assert!(store.get(a).is_none());
        assert!(store.get(b).is_some());
        assert_eq!(store.metrics.removed_ttl.get(), 1);
    }

    #[test]
    fn an_update_postpones_expiry_and_the_order_stays_bounded() {
        let ttl = Duration::from_secs(60);
        let (mut store, kinds) = store(10, ttl);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let a = create(&mut store, key(&kinds, "order", "A"), t0);
        let b = create(
            &mut store,
            key(&kinds, "order", "B"),
            t0 + Duration::from_secs(10),
        );
        store.touch(a, Stamp::new(t0 + Duration::from_secs(20)));
        // A's entry of t0 is stale: B is the next to expire.
        assert_eq!(
            store.next_expiry(),
            Some(t0 + Duration::from_secs(10) + ttl)
        );
        assert_eq!(store.expire(t0 + Duration::from_secs(75)), 1);
        assert!(store.get(a).is_some(), "updated at t0 + 20");
        assert!(store.get(b).is_none());
        assert_eq!(
            store.next_expiry(),
            Some(t0 + Duration::from_secs(20) + ttl)
        );

        // An update adds no entry: the one of A moves when it comes to the
        // top.
        for s in 21..5_000 {
            store.touch(a, Stamp::new(t0 + Duration::from_secs(s)));
        }
        assert_eq!(store.by_update.len(), 1, "A's entry alone");
        assert_eq!(
            store.next_expiry(),
            Some(t0 + Duration::from_secs(4_999) + ttl)
        );
        assert_eq!(store.by_update.len(), 1);
        assert_eq!(store.expire(t0 + Duration::from_secs(4_999) + ttl), 1);
        assert!(store.is_empty());
        assert_eq!(store.next_expiry(), None);
    }

    #[test]
    fn merging_moves_every_key_to_the_surviving_transaction() {
        let (mut store, kinds, t0, order, ship) = order_and_shipment();
        let a = create(&mut store, order.clone(), t0);
        let b = create(&mut store, ship.clone(), t0 + Duration::from_secs(5));
        store.merge(a, b);
        assert_eq!(store.find(&ship), Some(a));
        assert_eq!(store.len(), 1);
        let tx = store.get(a).expect("merged");
        assert_eq!(tx.keys.keys(&kinds).collect::<Vec<_>>(), vec![order, ship]);
    }

    #[test]
    fn a_key_attached_again_is_held_once_and_indexed_to_the_last_attach() {
        let (mut store, kinds, t0, order, ship) = order_and_shipment();
        let a = create(&mut store, order.clone(), t0);
        attach(&mut store, a, &ship);
        attach(&mut store, a, &ship);
        attach(&mut store, a, &order);
        let held = |store: &Store| {
            store
                .get(a)
                .expect("held")
                .keys
                .keys(&kinds)
                .collect::<Vec<_>>()
        };
        assert_eq!(held(&store), vec![order.clone(), ship.clone()]);
        assert_eq!(store.find(&ship), Some(a));

        // Another transaction takes the key; attaching it back to the
        // first points the index there again without a second copy.
        let b = create(&mut store, key(&kinds, "order", "SO-2"), t0);
        attach(&mut store, b, &ship);
        assert_eq!(store.find(&ship), Some(b));
        attach(&mut store, a, &ship);
        assert_eq!(store.find(&ship), Some(a));
        assert_eq!(held(&store), vec![order, ship]);
    }

    fn exchange(id: u64, system: &System, at: SystemTime, keys: KeyRefs) -> NewExchange<'_> {
        NewExchange::example(system, id, at, "/x", keys)
    }

    #[test]
    fn an_exchange_whose_upstream_failed_shows_why_in_the_api() {
        let (mut store, kinds) = store(10, Duration::from_secs(3600));
        let mut systems: Symbols<kind::System> = Symbols::default();
        let wms = systems.intern("wms").expect("intern");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let id = create(&mut store, key(&kinds, "order", "SO-1"), t0);
        let tx = store.get_mut(id).expect("created");
        let mut failed = exchange(1, &wms, t0, KeyRefs::new(&[]));
        failed.status = 504;
        failed.error = Some(crate::proxy::UpstreamError::Timeout);
        tx.exchanges.push(failed);
        tx.exchanges.push(exchange(2, &wms, t0, KeyRefs::new(&[])));
        let (operations, milestones, flows) =
            (Symbols::default(), Symbols::default(), Symbols::default());
        let names = Names {
            systems: &systems,
            operations: &operations,
            milestones: &milestones,
            flows: &flows,
            key_kinds: &kinds,
        };
        let json = serde_json::to_value(tx.json(names)).expect("serializable");
        assert_eq!(json["exchanges"][0]["system"], "wms");
        assert_eq!(json["exchanges"][0]["error"], "timeout");
        assert_eq!(json["exchanges"][0]["status"], 504);
        assert!(json["exchanges"][1]["error"].is_null());
    }

    #[test]
    fn merging_keeps_each_exchange_and_link_pointing_at_the_same_keys() {
        let (mut store, kinds) = store(10, Duration::from_secs(3600));
        let mut systems: Symbols<kind::System> = Symbols::default();
        let wms = systems.intern("wms").expect("intern");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let order = key(&kinds, "order", "SO-1");
        let ship = key(&kinds, "shipment", "SH-1");
        let ship2 = key(&kinds, "shipment", "SH-2");
        let a = create(&mut store, order.clone(), t0);
        attach(&mut store, a, &ship2);
        let b = create(&mut store, ship.clone(), t0);
        attach(&mut store, b, &order);
        assert_eq!(store.find(&order), Some(b), "the order moved to b");
        let tx_b = store.get_mut(b).expect("b");
        let (s, o) = (tx_b.position(&ship), tx_b.position(&order));
        tx_b.link(s.expect("ship"), o.expect("order"));
        let refs = tx_b.key_refs(&[order.clone(), ship.clone()]);
        store
            .entry(b)
            .expect("held")
            .push_exchange(exchange(7, &wms, t0, refs));

        store.merge(a, b);
        let tx = store.get(a).expect("merged");
        let order_key = order.clone();
        assert_eq!(
            tx.keys.keys(&kinds).collect::<Vec<_>>(),
            vec![order.clone(), ship2, ship.clone()]
        );
        let (order, ship) = (KeyView::of(&order), KeyView::of(&ship));
        let linked: Vec<_> = tx.linked_keys().collect();
        assert_eq!(linked, vec![(ship, order)]);
        let exchange = tx.exchanges.iter().find(|x| x.id == 7).expect("moved");
        let keys: Vec<_> = tx.exchange_keys(exchange).collect();
        assert_eq!(keys, vec![order, ship]);
        let neighbours: Vec<_> = tx.neighbours(&order_key).collect();
        assert_eq!(neighbours, vec![ship]);
    }
}
