//! Interned names from the config: systems, key kinds, milestones, operations,
//! flows and exception kinds. A [`Symbol`] compares and hashes by a small
//! index assigned at load time (cheap on the hot path) and still prints and
//! serializes as the name the integration engineer wrote.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::num::NonZeroU16;
use std::sync::Arc;

/// A name declared in the config, of the kind given by the tag `T`.
///
/// One pointer wide: every copy shares the one [`Entry`] allocated when the
/// name was declared, so the records that hold many symbols (a transaction's
/// milestones and exchanges, every key's kind) stay small.
pub struct Symbol<T> {
    entry: Arc<Entry>,
    _kind: PhantomData<fn() -> T>,
}

/// What a declared name is: its index (held plus one: at most
/// `u16::MAX` names of a kind, see [`Symbols::intern`]) and its text.
struct Entry {
    id_plus_one: NonZeroU16,
    name: Arc<str>,
}

impl<T> Symbol<T> {
    /// Index of this name in its [`Symbols`] table.
    pub fn id(&self) -> usize {
        usize::from(self.entry.id_plus_one.get() - 1)
    }

    /// The index plus one, never zero: how a record keeps the name in 2
    /// bytes with `None` as the zero (`state::NameId`).
    pub fn id_plus_one(&self) -> NonZeroU16 {
        self.entry.id_plus_one
    }

    /// The name as written in the config.
    pub fn as_str(&self) -> &str {
        &self.entry.name
    }

    /// The name, shared rather than copied (for span attributes).
    pub fn shared_name(&self) -> Arc<str> {
        Arc::clone(&self.entry.name)
    }
}

impl<T> Clone for Symbol<T> {
    fn clone(&self) -> Self {
        Symbol {
            entry: Arc::clone(&self.entry),
            _kind: PhantomData,
        }
    }
}

impl<T> PartialEq for Symbol<T> {
    fn eq(&self, other: &Self) -> bool {
        self.entry.id_plus_one == other.entry.id_plus_one
    }
}
impl<T> Eq for Symbol<T> {}

impl<T> Hash for Symbol<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.entry.id_plus_one.hash(state);
    }
}

impl<T> PartialOrd for Symbol<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Symbol<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.entry.id_plus_one.cmp(&other.entry.id_plus_one)
    }
}

impl<T> fmt::Debug for Symbol<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<T> fmt::Display for Symbol<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<T> serde::Serialize for Symbol<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The table of every declared name of one kind, in declaration order.
pub struct Symbols<T> {
    all: Vec<Symbol<T>>,
}

impl<T> Default for Symbols<T> {
    fn default() -> Self {
        Symbols { all: Vec::new() }
    }
}

impl<T> Clone for Symbols<T> {
    fn clone(&self) -> Self {
        Symbols {
            all: self.all.clone(),
        }
    }
}

impl<T> fmt::Debug for Symbols<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.all).finish()
    }
}

/// More names of one kind than a `u16` holds (index plus one) were
/// declared.
#[derive(Debug, thiserror::Error)]
#[error("more than {} names declared", u16::MAX)]
pub struct TooManySymbols;

impl<T> Symbols<T> {
    /// Declares `name`, returning the existing symbol when it was declared before.
    pub fn intern(&mut self, name: &str) -> Result<Symbol<T>, TooManySymbols> {
        if let Some(existing) = self.get(name) {
            return Ok(existing);
        }
        let id_plus_one = u16::try_from(self.all.len() + 1)
            .ok()
            .and_then(NonZeroU16::new)
            .ok_or(TooManySymbols)?;
        let symbol = Symbol {
            entry: Arc::new(Entry {
                id_plus_one,
                name: Arc::from(name),
            }),
            _kind: PhantomData,
        };
        self.all.push(symbol.clone());
        Ok(symbol)
    }

    /// The symbol declared as `name`, if any. Used at load time only.
    pub fn get(&self, name: &str) -> Option<Symbol<T>> {
        self.all.iter().find(|s| s.as_str() == name).cloned()
    }

    /// The symbol of index `id` ([`Symbol::id`]), if declared: how records
    /// that keep only the index read the name back.
    pub fn by_id(&self, id: usize) -> Option<&Symbol<T>> {
        self.all.get(id)
    }

    /// Every declared symbol in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = &Symbol<T>> {
        self.all.iter()
    }

    /// How many names were declared.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// True when nothing was declared.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The declared names joined by `, `, for "expected one of …" messages.
    pub fn names(&self) -> String {
        self.all
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Tags that give each kind of name its own [`Symbol`] type.
pub mod kind {
    /// A system: `erp`, `wms`, `carrier` …
    pub enum System {}
    /// A key kind: `order`, `shipment`, `tracking` …
    pub enum KeyKind {}
    /// A milestone: `order_released`, `shipped` …
    pub enum Milestone {}
    /// An operation (a route's name): `carrier.buy_label` …
    pub enum Operation {}
    /// A flow: `order_to_ship` …
    pub enum Flow {}
    /// An exception kind: `missing_goods_issue` …
    pub enum Exception {}
    /// A business measure: `freight_cost`, `shipped_weight` …
    pub enum Measure {}
    /// The unit a measure is stored in: a declared currency, `kg`, `count`.
    pub enum Unit {}
}

/// A declared system.
pub type System = Symbol<kind::System>;
/// A declared key kind.
pub type KeyKind = Symbol<kind::KeyKind>;
/// A declared milestone.
pub type Milestone = Symbol<kind::Milestone>;
/// A route's name, safe as a metric label.
pub type Operation = Symbol<kind::Operation>;
/// A declared flow.
pub type FlowName = Symbol<kind::Flow>;
/// A declared exception kind.
pub type ExceptionKind = Symbol<kind::Exception>;
/// A declared measure.
pub type MeasureName = Symbol<kind::Measure>;
/// A unit measures are stored in (a metric label value).
pub type Unit = Symbol<kind::Unit>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_the_same_name_twice_gives_one_symbol() {
        let mut table: Symbols<kind::KeyKind> = Symbols::default();
        let a = table.intern("order").expect("intern");
        let b = table.intern("shipment").expect("intern");
        let again = table.intern("order").expect("intern");
        assert_eq!(a, again);
        assert_ne!(a, b);
        assert_eq!(table.len(), 2);
        assert_eq!(table.names(), "order, shipment");
        assert_eq!(b.to_string(), "shipment");
    }

    #[test]
    fn a_symbol_and_an_optional_one_are_one_pointer_wide() {
        let pointer = std::mem::size_of::<usize>();
        assert_eq!(std::mem::size_of::<Symbol<kind::System>>(), pointer);
        assert_eq!(std::mem::size_of::<Option<Symbol<kind::System>>>(), pointer);
    }
}
