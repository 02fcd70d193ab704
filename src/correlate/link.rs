//! Linking: keys found together in one exchange belong to one transaction.
//! A key never seen before joins the transaction of a key it came with; two
//! transactions that turn out to be linked are merged into the one that
//! already has a root key (else the older one).

use std::time::SystemTime;

use crate::config::KeyKind;
use crate::extract::Key;
use crate::state::TxId;

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
pub(super) fn groups(keys: &[Key], root: &KeyKind) -> Vec<Vec<Key>> {
    let roots: Vec<&Key> = keys.iter().filter(|k| &k.kind == root).collect();
    if roots.len() > 1 {
        roots.into_iter().map(|k| vec![k.clone()]).collect()
    } else if keys.is_empty() {
        Vec::new()
    } else {
        vec![keys.to_vec()]
    }
}

impl Correlator {
    /// Finds or creates the transaction for `keys`, merging every
    /// transaction they already belong to, and records their links.
    /// `None` only for an empty `keys`, which [`groups`] never yields.
    pub(super) fn link(&mut self, keys: &[Key], at: SystemTime) -> Option<TxId> {
        let mut owners: Vec<TxId> = keys.iter().filter_map(|k| self.store.find(k)).collect();
        owners.sort_unstable();
        owners.dedup();

        let id = match self.survivor(&owners) {
            Some(id) => id,
            None => {
                let name = keys
                    .iter()
                    .find(|k| k.kind == self.config.root)
                    .or_else(|| keys.first())?
                    .clone();
                self.metrics.created.inc();
                self.store.create(name, at)
            }
        };
        for other in owners.iter().filter(|&&o| o != id) {
            self.store.merge(id, *other);
            self.metrics.merged.inc();
        }
        for key in keys {
            self.store.attach(id, key);
        }
        self.record_links(id, keys);
        Some(id)
    }

    /// Of several transactions about to be merged, the one that survives:
    /// the one with a root key, else the oldest.
    fn survivor(&self, owners: &[TxId]) -> Option<TxId> {
        owners
            .iter()
            .copied()
            .min_by_key(|id| match self.store.get(*id) {
                Some(tx) => (tx.root.is_none(), tx.first_seen, *id),
                None => (true, SystemTime::UNIX_EPOCH, *id),
            })
    }

    fn record_links(&mut self, id: TxId, keys: &[Key]) {
        let root_kind = self.config.root.clone();
        let Some(tx) = self.store.get_mut(id) else {
            return;
        };
        if tx.root.is_none() {
            if let Some(root) = keys.iter().find(|k| k.kind == root_kind) {
                tx.root = Some(root.clone());
                tx.rename(root.clone());
            }
        }
        let mut add = |a: &Key, b: &Key| {
            if a != b
                && !tx
                    .links
                    .iter()
                    .any(|(x, y)| (x == a && y == b) || (x == b && y == a))
            {
                tx.links.push((a.clone(), b.clone()));
            }
        };
        if keys.len() <= PAIRWISE_LIMIT {
            for (i, a) in keys.iter().enumerate() {
                for b in &keys[i + 1..] {
                    add(a, b);
                }
            }
        } else if let Some((first, rest)) = keys.split_first() {
            for b in rest {
                add(first, b);
            }
        }
    }
}
