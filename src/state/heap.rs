//! A binary min-heap held in chunks of [`CHUNK`] entries, for orders with
//! an entry per transaction (the expiry order).
//!
//! std's `BinaryHeap` is one `Vec`: growing past its capacity copies every
//! entry into a new allocation twice as large, and the kernel zeroes each
//! of its pages as the copy first touches it. At a million transactions
//! that held the correlator (and with it, on one CPU, the proxy) for
//! 10.8 ms; at 200 k, 3.5 ms. Here growing allocates one more chunk and
//! never moves what is held. An entry costs the same; the chunk is found
//! by a shift, one more load per step of a sift.

/// Entries per chunk: 4 096 (64 KiB of 16-byte entries).
const SHIFT: u32 = 12;
const CHUNK: usize = 1 << SHIFT;

/// See the module documentation. The least entry is on top.
#[derive(Debug)]
pub(super) struct Heap<T> {
    /// Full chunks, then the one being filled, then at most one empty one
    /// kept so that pushes and pops at a chunk's edge do not allocate and
    /// free it in turn.
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Heap<T> {
    fn default() -> Self {
        Heap {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T: Ord + Copy> Heap<T> {
    /// Entries held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The least entry.
    pub(super) fn peek(&self) -> Option<T> {
        (self.len > 0).then(|| self.at(0))
    }

    /// Adds `entry`: placed last, then moved up past every greater parent
    /// (one compare when it is not less than its parent, as an entry of a
    /// recent time is).
    pub(super) fn push(&mut self, entry: T) {
        let chunk = self.len >> SHIFT;
        if chunk == self.chunks.len() {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks[chunk].push(entry);
        let mut hole = self.len;
        self.len += 1;
        while hole > 0 {
            let parent = (hole - 1) / 2;
            let above = self.at(parent);
            if above <= entry {
                break;
            }
            self.set(hole, above);
            hole = parent;
        }
        self.set(hole, entry);
    }

    /// Removes and returns the least entry: the last one takes its place
    /// and moves down past every lesser child.
    pub(super) fn pop(&mut self) -> Option<T> {
        let last = self
            .chunks
            .get_mut((self.len.checked_sub(1)?) >> SHIFT)?
            .pop()?;
        self.len -= 1;
        // Keep one empty chunk after the last used one, free any other.
        if self.chunks.len() > (self.len >> SHIFT) + 2 {
            self.chunks.pop();
        }
        if self.len == 0 {
            return Some(last);
        }
        let top = self.at(0);
        self.sift_down(last);
        Some(top)
    }

    /// Replaces the least entry with `entry` (which then moves down past
    /// every lesser child: no compare past the top's children when it is
    /// still the least), as a pop then a push would, in one sift. Pushes
    /// `entry` when the heap is empty.
    pub(super) fn replace_top(&mut self, entry: T) {
        if self.len == 0 {
            self.push(entry);
        } else {
            self.sift_down(entry);
        }
    }

    /// Puts `entry` on top (whose entry has been taken), then moves it
    /// down past every lesser child.
    fn sift_down(&mut self, entry: T) {
        let mut hole = 0;
        loop {
            let left = 2 * hole + 1;
            if left >= self.len {
                break;
            }
            let right = left + 1;
            let child = if right < self.len && self.at(right) < self.at(left) {
                right
            } else {
                left
            };
            let below = self.at(child);
            if entry <= below {
                break;
            }
            self.set(hole, below);
            hole = child;
        }
        self.set(hole, entry);
    }

    /// The entry at position `at` (below `len`).
    #[inline]
    fn at(&self, at: usize) -> T {
        self.chunks[at >> SHIFT][at & (CHUNK - 1)]
    }

    /// Puts `entry` at position `at` (below `len`).
    #[inline]
    fn set(&mut self, at: usize, entry: T) {
        self.chunks[at >> SHIFT][at & (CHUNK - 1)] = entry;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    #[test]
    fn pushes_and_pops_match_std_across_chunk_edges() {
        let mut rng = crate::test_rng::Rng(0x0bad_c0ff_ee15_600d);
        let mut heap = Heap::default();
        let mut model = BinaryHeap::new();
        // Grow to three chunks and more, shrink to nothing, grow again;
        // mostly rising values (as times of updates are), some not, ties.
        for round in 0..3 {
            let mut value = 0u64;
            for _ in 0..(3 * CHUNK + 100) {
                value += rng.below(4) as u64;
                let entry = match rng.below(8) {
                    0 => rng.below(1_000) as u64,
                    _ => value,
                };
                match rng.below(6) {
                    0 | 1 => assert_eq!(heap.pop(), model.pop().map(|Reverse(e)| e)),
                    2 => {
                        // A top moved to a later time, as the expiry
                        // order moves a transaction updated since.
                        let later = heap.peek().map_or(entry, |top| top + rng.below(50) as u64);
                        heap.replace_top(later);
                        model.pop();
                        model.push(Reverse(later));
                    }
                    _ => {}
                }
                heap.push(entry);
                model.push(Reverse(entry));
                assert_eq!(heap.peek(), model.peek().map(|&Reverse(e)| e));
            }
            while let Some(Reverse(expected)) = model.pop() {
                assert_eq!(heap.pop(), Some(expected), "round {round}");
            }
            assert_eq!(heap.pop(), None);
            assert_eq!(heap.len(), 0);
            // Emptied: one chunk kept for the next pushes, no more.
            assert!(heap.chunks.len() <= 2, "{} chunks kept", heap.chunks.len());
        }
    }
}
