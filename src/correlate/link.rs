//! Linking: keys found together in one exchange belong to one transaction.
//! A key never seen before joins the transaction of a key it came with; two
//! transactions that turn out to be linked are merged into the one that
//! already has a root key (else the older one).

use smallvec::SmallVec;

use crate::config::KeyKind;
use crate::extract::Key;
use crate::state::{KeyHash, KeyRefs, Stamp, TxId, TxRef};

use super::Correlator;

/// Up to this many keys in one exchange are linked pairwise (so each knows
/// its direct neighbours); beyond it, every key is linked to the first one
/// only, bounding the links of a large batch message.
const PAIRWISE_LIMIT: usize = 8;

/// Splits an exchange's keys into the groups that are each linked into one
/// transaction. Normally that is one group of all keys. A message carrying
/// several root keys (a batch of orders) must not fuse those orders into
/// one transaction: each root key is then its own group, and the other keys
/// of such a message, whose owner cannot be told, are left unlinked.
pub(super) fn groups<'a>(keys: &'a [Key], root: &KeyKind) -> SmallVec<[&'a [Key]; 1]> {
    let roots = keys.iter().filter(|k| &k.kind == root).count();
    if roots > 1 {
        keys.iter()
            .filter(|k| &k.kind == root)
            .map(std::slice::from_ref)
            .collect()
    } else if keys.is_empty() {
        SmallVec::new()
    } else {
        smallvec::smallvec![keys]
    }
}

impl Correlator {
    /// Finds or creates the transaction for `keys`, merging every
    /// transaction they already belong to, and records their links; gives
    /// the transaction and where `keys` are in its keys (the exchange's
    /// [`KeyRefs`], found once here for the links and the timeline).
    /// `None` only for an empty `keys`, which [`groups`] never yields.
    pub(super) fn link(&mut self, keys: &[Key], at: Stamp) -> Option<(TxRef, KeyRefs)> {
        // Where each key is indexed now, and its hash: a key already
        // indexed to the surviving transaction needs no `attach` (merging
        // only moves keys into it), and one that does is not hashed again.
        let mut found: SmallVec<[(Option<TxRef>, KeyHash); 8]> = keys
            .iter()
            .map(|k| {
                let hash = self.store.key_hash(k);
                (self.store.find_hashed(k, hash), hash)
            })
            .collect();
        let mut owners: SmallVec<[TxRef; 4]> = found.iter().filter_map(|(id, _)| *id).collect();
        owners.sort_unstable();
        owners.dedup();

        let id = match self.survivor(&owners) {
            Some(id) => id,
            None => {
                let at_name = keys
                    .iter()
                    .position(|k| k.kind == self.config.root)
                    .unwrap_or(0);
                let name = keys.get(at_name)?;
                self.metrics.created.inc();
                let id = self.store.create_hashed(name, found[at_name].1, at);
                // The name is attached by the creation.
                found[at_name].0 = Some(id);
                id
            }
        };
        for other in owners.iter().filter(|&&o| o != id) {
            self.store.merge(id, *other);
            self.schedule.forward(*other, id);
            self.metrics.merged.inc();
        }
        let attach: SmallVec<[(&Key, KeyHash); 8]> = keys
            .iter()
            .zip(&found)
            .filter(|(_, (indexed, _))| *indexed != Some(id))
            .map(|(key, &(_, hash))| (key, hash))
            .collect();
        match attach.as_slice() {
            [] => {}
            &[(key, hash)] => self.store.attach_hashed(id, key, hash),
            several => self.store.attach_all_hashed(id, several),
        }
        Some((id, self.record_links(id, keys)))
    }

    /// Of several transactions about to be merged, the one that survives:
    /// the one with a root key, else the oldest.
    fn survivor(&self, owners: &[TxRef]) -> Option<TxRef> {
        owners
            .iter()
            .copied()
            .min_by_key(|id| match self.store.get(*id) {
                Some(tx) => (!tx.has_root(), tx.first_seen, tx.id),
                None => (true, Stamp::default(), TxId(0)),
            })
    }

    /// Links `keys` in transaction `id` (naming it by its root key once
    /// one comes); returns their positions in its keys.
    fn record_links(&mut self, id: TxRef, keys: &[Key]) -> KeyRefs {
        let root_kind = self.config.root.clone();
        let Some(tx) = self.store.get_mut(id) else {
            return KeyRefs::new(&[]);
        };
        if !tx.has_root() {
            if let Some(root) = keys.iter().find(|k| k.kind == root_kind) {
                tx.rename(root.clone());
                tx.set_root(Some(root.clone()));
            }
        }
        let positions: SmallVec<[u32; KeyRefs::INLINE]> = keys
            .iter()
            .filter_map(|k| tx.position(k))
            .map(|p| p as u32)
            .collect();
        // All links in one growth of the transaction's list.
        let at = |p: &u32| *p as usize;
        if positions.len() <= PAIRWISE_LIMIT {
            tx.link_all(
                positions
                    .iter()
                    .enumerate()
                    .flat_map(|(i, a)| positions[i + 1..].iter().map(move |b| (at(a), at(b)))),
            );
        } else if let Some((first, rest)) = positions.split_first() {
            tx.link_all(rest.iter().map(|b| (at(first), at(b))));
        }
        KeyRefs::new(&positions)
    }
}
