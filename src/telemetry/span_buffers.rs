//! The buffers spans are written into, recycled: the span observer writes
//! each span into a `Vec<u8>` that travels through the export queue; once
//! the export task has sent its batch, it hands the batch's buffers back
//! ([`SpanBuffers::recycle`], one lock for the whole batch) and the
//! observer takes them all at once when its own stash runs out
//! ([`BufferStash::take`], one lock per refill), so a span costs no
//! allocation once traffic has warmed the pool up. At most
//! [`MAX_POOLED`] buffers are kept, none grown beyond
//! [`MAX_KEPT_CAPACITY`] (a span with very long URLs is freed, not kept).

use std::sync::{Arc, Mutex, PoisonError};

use super::otlp_trace::EncodedSpan;

/// Most buffers the pool keeps; the ones returned beyond it are freed.
/// Two default batches: the observer needs about one batch of buffers
/// between two returns. With [`MAX_KEPT_CAPACITY`], at most 4 MiB stay
/// allocated after a burst (about 1.5 MiB with the bench's spans).
pub const MAX_POOLED: usize = 1024;

/// Buffers that grew past this many bytes are freed rather than kept.
pub const MAX_KEPT_CAPACITY: usize = 4096;

/// The pool the export task returns buffers to. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct SpanBuffers {
    returned: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl SpanBuffers {
    /// Keeps the buffers of `spans`, which are done with (exported or
    /// dropped), for the observer to write new spans into.
    pub fn recycle(&self, spans: impl Iterator<Item = EncodedSpan>) {
        let mut returned = self.returned.lock().unwrap_or_else(PoisonError::into_inner);
        for span in spans {
            if returned.len() >= MAX_POOLED {
                break;
            }
            let buffer = span.into_buffer();
            if buffer.capacity() <= MAX_KEPT_CAPACITY {
                returned.push(buffer);
            }
        }
    }

    /// Buffers the pool holds now.
    pub fn pooled(&self) -> usize {
        self.returned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The observer's end of a [`SpanBuffers`] pool: buffers taken one by
/// one from a stash refilled with everything the pool holds.
#[derive(Debug, Default)]
pub struct BufferStash {
    pool: SpanBuffers,
    stash: Vec<Vec<u8>>,
}

impl BufferStash {
    /// A stash refilled from `pool`.
    pub fn new(pool: SpanBuffers) -> Self {
        BufferStash {
            pool,
            stash: Vec::new(),
        }
    }

    /// The pool this stash is refilled from.
    pub fn pool(&self) -> &SpanBuffers {
        &self.pool
    }

    /// An empty buffer: a returned one when there is any, else a new one
    /// (not allocated until written to).
    pub fn take(&mut self) -> Vec<u8> {
        if self.stash.is_empty() {
            let mut returned = self
                .pool
                .returned
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            std::mem::swap(&mut *returned, &mut self.stash);
        }
        let mut buffer = self.stash.pop().unwrap_or_default();
        buffer.clear();
        buffer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::otlp_trace::{Kind, SpanWriter};
    use opentelemetry::trace::{SpanId, TraceId};
    use std::time::SystemTime;

    fn span(stash: &mut BufferStash, name: &str) -> EncodedSpan {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        SpanWriter::in_buffer(
            stash.take(),
            TraceId::from(1),
            SpanId::from(2),
            name,
            Kind::Internal,
            (now, now),
        )
        .finish(0, false)
    }

    #[test]
    fn returned_buffers_are_written_again_and_hold_only_the_new_span() {
        let pool = SpanBuffers::default();
        let mut stash = BufferStash::new(pool.clone());
        let first = span(&mut stash, &"a long first name ".repeat(10));
        let short = span(&mut BufferStash::default(), "b");
        let address = first.as_bytes().as_ptr();
        pool.recycle(std::iter::once(first));
        assert_eq!(pool.pooled(), 1);
        let again = span(&mut stash, "b");
        // The same memory, and nothing of the first span left in it.
        assert_eq!(again.as_bytes().as_ptr(), address);
        assert_eq!(again, short);
        assert_eq!(pool.pooled(), 0);
    }

    #[test]
    fn the_pool_keeps_a_bounded_number_of_ordinary_buffers() {
        let pool = SpanBuffers::default();
        let mut stash = BufferStash::new(pool.clone());
        let big = span(&mut stash, &"x".repeat(MAX_KEPT_CAPACITY + 1));
        pool.recycle(std::iter::once(big));
        assert_eq!(pool.pooled(), 0, "a grown buffer is freed");
        let many = (0..MAX_POOLED + 10).map(|_| span(&mut stash, "s"));
        pool.recycle(many.collect::<Vec<_>>().into_iter());
        assert_eq!(pool.pooled(), MAX_POOLED);
    }
}
