//! Group commit for [`Durability::Sync`](super::Durability::Sync).
//!
//! One thread owns every write. Callers send it their operation and await its answer. The thread
//! takes whatever is waiting (up to [`MAX_GROUP`] operations), runs each one (each commits its
//! own atomic batch to the journal buffer, visible to readers at once), makes the whole group
//! durable with a single `fdatasync`, and only then answers everyone in the group. Operations
//! that arrive during the sync form the next group, so the group grows with the number of
//! writes in flight and the cost of one sync is shared by all of them.
//!
//! Because operations run one after another on this thread, the engine's locks are never
//! contended in this mode, and no tokio worker ever blocks on the journal while it is synced.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::engine::Engine;
use crate::error::{StoreError, StoreResult};

/// Most operations made durable by one sync.
const MAX_GROUP: usize = 1024;

/// What the committer calls once the group's sync is done (`Err` holds why it failed).
type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&Engine) -> Completion + Send>;

pub(super) struct GroupCommitter {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl GroupCommitter {
    pub fn start(engine: Arc<Engine>) -> StoreResult<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("courier-store-commit".into())
            .spawn(move || run(&engine, &queue))
            .map_err(|e| StoreError::Unavailable(format!("cannot start group committer: {e}")))?;
        Ok(GroupCommitter {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `op` on the committer thread and answers once what it wrote is durable.
    pub async fn submit<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> StoreResult<T> + Send + 'static,
    {
        let stopped = || StoreError::Unavailable("embedded store is closing".into());
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |engine| {
            let result = catch_unwind(AssertUnwindSafe(|| op(engine))).unwrap_or_else(|_| {
                Err(StoreError::Unavailable("store operation panicked".into()))
            });
            Box::new(move |synced| {
                let outcome = match synced {
                    Ok(()) => result,
                    Err(why) => Err(StoreError::Unavailable(format!(
                        "journal sync failed: {why}"
                    ))),
                };
                // The caller may have given up waiting; the write stands either way.
                let _ = answer.send(outcome);
            })
        });
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

impl Drop for GroupCommitter {
    /// Lets the thread finish the operations already sent, then waits for it, so that the
    /// database is closed when the store is dropped.
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the group committer of the embedded store panicked");
        }
    }
}

fn run(engine: &Engine, queue: &mpsc::Receiver<Job>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while let Ok(first) = queue.recv() {
        group.push(first(engine));
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job(engine)),
                Err(_) => break,
            }
        }
        let synced = engine.sync().map_err(|e| e.to_string());
        if let Err(why) = &synced {
            tracing::error!(error = %why, "embedded store: journal sync failed");
        }
        for complete in group.drain(..) {
            complete(synced.clone());
        }
    }
}
