//! A client connection's view of the listener's shutdown: whether it has
//! come is one atomic load. `CancellationToken::is_cancelled` takes the
//! token's lock, and polling its `cancelled()` wait takes that lock and
//! the `Notify`'s (to refresh the waker) on every client read that waits:
//! ~240 instructions per exchange. [`Shutdown::watch`] registers the
//! connection's task with the token once; the wake-up sets a flag the
//! connection then reads.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// The shutdown as one connection's task sees it. That task (the one
/// that made it: it keeps the task's waker) is the only one to wait on
/// it; the engine serves each connection on one task.
pub(super) struct Shutdown<'t> {
    /// The token's wait, registered once with [`Came`] as its waker;
    /// kept (not polled again) so that the registration lasts.
    _wait: Pin<Box<WaitForCancellationFuture<'t>>>,
    came: Arc<Came>,
}

/// The waker the token's wait wakes: it notes that shutdown came, then
/// wakes the connection's task.
struct Came {
    flag: AtomicBool,
    task: Waker,
}

impl Wake for Came {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.flag.store(true, Ordering::Release);
        self.task.wake_by_ref();
    }
}

impl<'t> Shutdown<'t> {
    /// Watches `token` for the current task.
    pub(super) async fn watch(token: &'t CancellationToken) -> Shutdown<'t> {
        let mut wait = Box::pin(token.cancelled());
        let came = std::future::poll_fn(|cx| {
            let came = Arc::new(Came {
                flag: AtomicBool::new(false),
                task: cx.waker().clone(),
            });
            let waker = Waker::from(Arc::clone(&came));
            if wait
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready()
            {
                came.flag.store(true, Ordering::Release);
            }
            Poll::Ready(came)
        })
        .await;
        Shutdown { _wait: wait, came }
    }

    /// Whether shutdown has come.
    pub(super) fn came(&self) -> bool {
        self.came.flag.load(Ordering::Acquire)
    }

    /// Completes once shutdown has come. No waker is registered here: the
    /// watch wakes the connection's task, which polls this again.
    pub(super) fn arrival(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |_| {
            if self.came() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watch_sees_the_shutdown_and_wakes_its_task() {
        let token = CancellationToken::new();
        let shutdown = Shutdown::watch(&token).await;
        assert!(!shutdown.came());
        let cancel = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            cancel.cancel();
        });
        // Woken by the watch alone: `arrival` registers no waker (were
        // the task not woken, only the minute's timer would wake it, and
        // it is polled first).
        tokio::select! {
            biased;
            () = tokio::time::sleep(std::time::Duration::from_secs(60)) => {
                panic!("the task was not woken")
            }
            () = shutdown.arrival() => {}
        }
        assert!(shutdown.came());
    }

    #[tokio::test]
    async fn a_watch_made_after_the_shutdown_has_seen_it() {
        let token = CancellationToken::new();
        token.cancel();
        let shutdown = Shutdown::watch(&token).await;
        assert!(shutdown.came());
        shutdown.arrival().await;
    }
}
