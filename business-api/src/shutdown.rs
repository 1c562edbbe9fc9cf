//! Stopping the service: a value handed down to every task, which each awaits in its loop.

use tokio::sync::watch;

#[derive(Clone)]
pub struct Shutdown {
    signal: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        let (signal, _) = watch::channel(false);
        Shutdown { signal }
    }

    pub fn begin(&self) {
        self.signal.send_replace(true);
    }

    pub fn is_stopping(&self) -> bool {
        *self.signal.borrow()
    }

    /// Completes once the stop has begun.
    pub async fn wait(&self) {
        let mut receiver = self.signal.subscribe();
        // An error means the sender is gone, which is a stop too.
        let _ = receiver.wait_for(|stopping| *stopping).await;
    }
}
