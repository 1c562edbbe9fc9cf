//! Graceful drain: a value handed down to every connection.
//!
//! [`Shutdown::begin`] flips the server to draining (readiness fails, new upgrades are refused)
//! and tells every connection to close with "going away"; [`Shutdown::connections_closed`]
//! waits until the last connection guard is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{Notify, watch};

#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

struct Inner {
    signal: watch::Sender<bool>,
    draining: AtomicBool,
    open: AtomicUsize,
    all_closed: Notify,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        let (signal, _) = watch::channel(false);
        Shutdown {
            inner: Arc::new(Inner {
                signal,
                draining: AtomicBool::new(false),
                open: AtomicUsize::new(0),
                all_closed: Notify::new(),
            }),
        }
    }

    /// Stops answering ready (`/readyz` 503, new gateway upgrades refused) while everything else
    /// keeps working, so that load balancers move traffic away before connections are closed.
    pub fn mark_unready(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Starts the drain: unready, and every connection is told to close.
    pub fn begin(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
        self.inner.signal.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// A receiver whose `changed()` completes when the drain begins.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.inner.signal.subscribe()
    }

    /// Completes once the drain has begun.
    pub async fn wait(&self) {
        let mut receiver = self.subscribe();
        // An error means the sender is gone, which cannot happen while `self` lives.
        let _ = receiver.wait_for(|draining| *draining).await;
    }

    /// Counts a connection as open until the guard is dropped.
    pub fn connection_guard(&self) -> ConnectionGuard {
        self.inner.open.fetch_add(1, Ordering::SeqCst);
        ConnectionGuard {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Completes when no connection is open.
    pub async fn connections_closed(&self) {
        loop {
            let notified = self.inner.all_closed.notified();
            if self.inner.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

pub struct ConnectionGuard {
    inner: Arc<Inner>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.inner.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.all_closed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_every_connection() {
        let shutdown = Shutdown::new();
        let a = shutdown.connection_guard();
        let b = shutdown.connection_guard();
        let waiter = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.connections_closed().await }
        });
        shutdown.mark_unready();
        assert!(shutdown.is_draining());
        shutdown.begin();
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one connection is still open");
        drop(b);
        waiter.await.unwrap();
    }
}
