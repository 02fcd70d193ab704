//! A milestone reached by one object, as a transaction holds it: a
//! 24-byte record that loses no value.
//!
//! The common milestone is packed: the exchange that recorded it in 48
//! bits, the object's position in the transaction's `keys` and the count
//! of repeats in 16 bits each, the time as a [`Stamp`], config names as
//! [`NameId`]s. A milestone whose exchange, object or repeats do not fit
//! is kept exactly in one out-of-line box instead (the box takes the
//! place of the packed fields, so the record stays 24 bytes).

use std::time::SystemTime;

use super::transaction::{remap, NameId, Stamp};
use crate::config::kind;

/// One milestone reached by one object: the
/// [`MilestoneRecord`](super::MilestoneRecord) it stands for with the
/// object as a position in the transaction's `keys`, the time as a
/// [`Stamp`] and the config names as [`NameId`]s (24 bytes instead of
/// 80). [`Transaction::milestone_record`](super::Transaction::milestone_record)
/// gives the record back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reached(Repr);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Repr {
    Packed(Packed),
    Spilled(Box<Exact>),
}

/// The config names of a milestone (6 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Names {
    milestone: NameId<kind::Milestone>,
    system: NameId<kind::System>,
    operation: Option<NameId<kind::Operation>>,
}

/// The common milestone (24 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Packed {
    at: Stamp,
    /// The low 32 bits of the exchange that recorded it first.
    exchange_low: u32,
    /// The high 16 bits of that exchange.
    exchange_high: u16,
    names: Names,
    object: u16,
    repeats: u16,
}

/// Every value of a milestone, exactly: what [`Packed`] is unpacked to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Exact {
    at: Stamp,
    exchange: u64,
    names: Names,
    object: u32,
    repeats: u32,
}

/// Exchanges the packed form holds: below 2^48.
const EXCHANGE_BITS: u32 = 48;

impl Exact {
    /// The packed form, or the exact one boxed when a value does not fit.
    fn into_repr(self) -> Repr {
        let fits = self.exchange >> EXCHANGE_BITS == 0;
        match (
            u16::try_from(self.object),
            u16::try_from(self.repeats),
            fits,
        ) {
            (Ok(object), Ok(repeats), true) => Repr::Packed(Packed {
                at: self.at,
                exchange_low: self.exchange as u32,
                exchange_high: (self.exchange >> 32) as u16,
                names: self.names,
                object,
                repeats,
            }),
            _ => Repr::Spilled(Box::new(self)),
        }
    }
}

impl Packed {
    fn exact(&self) -> Exact {
        Exact {
            at: self.at,
            exchange: u64::from(self.exchange_high) << 32 | u64::from(self.exchange_low),
            names: self.names,
            object: u32::from(self.object),
            repeats: u32::from(self.repeats),
        }
    }
}

impl Reached {
    /// The record of `milestone` first marked by `exchange` at `at`
    /// through `system`/`operation`, on the key at position `object`,
    /// marked again `repeats` times.
    pub fn new(
        milestone: NameId<kind::Milestone>,
        system: NameId<kind::System>,
        operation: Option<NameId<kind::Operation>>,
        exchange: u64,
        at: Stamp,
        object: u32,
        repeats: u32,
    ) -> Self {
        Reached(
            Exact {
                at,
                exchange,
                names: Names {
                    milestone,
                    system,
                    operation,
                },
                object,
                repeats,
            }
            .into_repr(),
        )
    }

    /// Every value, unpacked.
    fn exact(&self) -> Exact {
        match &self.0 {
            Repr::Packed(p) => p.exact(),
            Repr::Spilled(e) => (**e).clone(),
        }
    }

    /// Changes the values through `change`, packing them again.
    fn update(&mut self, change: impl FnOnce(&mut Exact)) {
        let mut exact = self.exact();
        change(&mut exact);
        self.0 = exact.into_repr();
    }

    fn names(&self) -> Names {
        match &self.0 {
            Repr::Packed(p) => p.names,
            Repr::Spilled(e) => e.names,
        }
    }

    pub fn milestone(&self) -> NameId<kind::Milestone> {
        self.names().milestone
    }

    pub fn system(&self) -> NameId<kind::System> {
        self.names().system
    }

    pub fn operation(&self) -> Option<NameId<kind::Operation>> {
        self.names().operation
    }

    /// The exchange that recorded it first.
    pub fn exchange(&self) -> u64 {
        match &self.0 {
            Repr::Packed(p) => p.exact().exchange,
            Repr::Spilled(e) => e.exchange,
        }
    }

    /// When it first happened, as a stamp.
    pub fn stamp(&self) -> Stamp {
        match &self.0 {
            Repr::Packed(p) => p.at,
            Repr::Spilled(e) => e.at,
        }
    }

    /// When it first happened.
    pub fn at(&self) -> SystemTime {
        self.stamp().time()
    }

    /// Where the object is in the transaction's `keys`.
    pub fn object_position(&self) -> usize {
        match &self.0 {
            Repr::Packed(p) => usize::from(p.object),
            Repr::Spilled(e) => e.object as usize,
        }
    }

    /// How many later exchanges marked the same milestone on the same
    /// object.
    pub fn repeats(&self) -> u32 {
        match &self.0 {
            Repr::Packed(p) => u32::from(p.repeats),
            Repr::Spilled(e) => e.repeats,
        }
    }

    /// Counts one more repeat (saturating at `u32::MAX`).
    pub fn add_repeat(&mut self) {
        match &mut self.0 {
            Repr::Packed(p) if p.repeats < u16::MAX => p.repeats += 1,
            _ => self.update(|e| e.repeats = e.repeats.saturating_add(1)),
        }
    }

    /// Sets the count of repeats.
    pub fn set_repeats(&mut self, repeats: u32) {
        self.update(|e| e.repeats = repeats);
    }

    /// Points the object at `map[p]` for its position `p` (a merge moving
    /// keys); false when `map` has no such position.
    pub fn remap(&mut self, map: &[u32]) -> bool {
        let mut moved = false;
        self.update(|e| moved = remap(&mut e.object, map));
        moved
    }

    /// Whether the values are kept out of line (for tests).
    #[cfg(test)]
    pub(crate) fn is_spilled(&self) -> bool {
        matches!(self.0, Repr::Spilled(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Symbols;
    use std::time::Duration;

    fn ids() -> (
        NameId<kind::Milestone>,
        NameId<kind::System>,
        NameId<kind::Operation>,
    ) {
        let mut milestones = Symbols::<kind::Milestone>::default();
        let mut systems = Symbols::<kind::System>::default();
        let mut operations = Symbols::<kind::Operation>::default();
        (
            NameId::new(&milestones.intern("shipped").expect("a name")),
            NameId::new(&systems.intern("wms").expect("a name")),
            NameId::new(&operations.intern("wms.ship").expect("a name")),
        )
    }

    fn values(r: &Reached) -> (u64, SystemTime, usize, u32) {
        (r.exchange(), r.at(), r.object_position(), r.repeats())
    }

    #[test]
    fn a_milestone_is_24_bytes() {
        assert_eq!(std::mem::size_of::<Reached>(), 24);
    }

    #[test]
    fn every_value_comes_back_packed_or_spilled() {
        let (m, s, o) = ids();
        let at = SystemTime::UNIX_EPOCH + Duration::new(1_800_000_000, 7);
        let cases = [
            (17, 3, 0, false),
            ((1 << 48) - 1, 65_535, 65_535, false),
            (1 << 48, 0, 0, true),
            (u64::MAX, 1, 2, true),
            (5, 65_536, 0, true),
            (5, 0, 65_536, true),
            (5, u32::MAX, u32::MAX, true),
        ];
        for (exchange, object, repeats, spilled) in cases {
            let r = Reached::new(m, s, Some(o), exchange, Stamp::new(at), object, repeats);
            assert_eq!(r.is_spilled(), spilled, "{exchange} {object} {repeats}");
            assert_eq!(values(&r), (exchange, at, object as usize, repeats));
            assert_eq!((r.milestone(), r.system(), r.operation()), (m, s, Some(o)));
        }
    }

    #[test]
    fn repeats_past_16_bits_spill_and_stay_exact() {
        let (m, s, _) = ids();
        let at = SystemTime::UNIX_EPOCH;
        let mut r = Reached::new(m, s, None, 9, Stamp::new(at), 1, 65_534);
        r.add_repeat();
        assert!(!r.is_spilled());
        r.add_repeat();
        assert!(r.is_spilled());
        assert_eq!(values(&r), (9, at, 1, 65_536));
        r.set_repeats(2);
        assert!(!r.is_spilled(), "fits again");
        assert_eq!(r.repeats(), 2);
        assert!(r.remap(&[4, 70_000]));
        assert!(r.is_spilled());
        assert_eq!(r.object_position(), 70_000);
        assert!(!r.remap(&[0]));
        assert_eq!(r.operation(), None);
    }
}
