//! Arbiters, placement and activation of user actors.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use actix::dev::ToEnvelope;
use actix::{Actor, Addr, ArbiterHandle, Handler, MailboxError, Message, System};
use courier_protocol::UserId;

use super::ActorEnv;
use super::user::UserActor;
use crate::error::DeliveryError;

const SHARDS: usize = 64;

/// Finds, activates and places user actors.
pub struct Registry {
    env: Arc<ActorEnv>,
    arbiters: Vec<ArbiterHandle>,
    shards: Vec<Mutex<HashMap<UserId, Addr<UserActor>>>>,
    hasher: std::collections::hash_map::RandomState,
    system: System,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Registry {
    /// Starts `arbiter_count` arbiters on an actor system of their own.
    pub fn start(env: Arc<ActorEnv>, arbiter_count: usize) -> std::io::Result<Arc<Registry>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("courier-actors".into())
            .spawn(move || {
                let runner = actix_rt::System::new();
                let arbiters: Vec<actix::Arbiter> = (0..arbiter_count.max(1))
                    .map(|_| actix::Arbiter::new())
                    .collect();
                let handles = arbiters.iter().map(|a| a.handle()).collect::<Vec<_>>();
                // The receiver waits for exactly this message.
                let _ = tx.send((System::current(), handles));
                if let Err(error) = runner.run() {
                    tracing::error!(%error, "actor system ended with an error");
                }
                drop(arbiters);
            })?;
        let (system, arbiters) = rx
            .recv()
            .map_err(|_| std::io::Error::other("the actor system did not start"))?;
        Ok(Arc::new(Registry {
            env,
            arbiters,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            system,
            thread: Mutex::new(Some(thread)),
        }))
    }

    pub fn env(&self) -> &Arc<ActorEnv> {
        &self.env
    }

    fn hash(&self, user: &UserId) -> usize {
        self.hasher.hash_one(user) as usize
    }

    fn shard(&self, user: &UserId) -> MutexGuard<'_, HashMap<UserId, Addr<UserActor>>> {
        let index = self.hash(user) % SHARDS;
        // A poisoned shard only holds addresses; keep using it.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The actor of `user`, activated on its arbiter if it is not running.
    pub fn user(self: &Arc<Self>, user: UserId) -> Addr<UserActor> {
        let mut shard = self.shard(&user);
        if let Some(addr) = shard.get(&user)
            && addr.connected()
        {
            return addr.clone();
        }
        let arbiter = &self.arbiters[self.hash(&user) % self.arbiters.len()];
        let registry = Arc::clone(self);
        let capacity = self.env.mailbox_capacity;
        let addr = UserActor::start_in_arbiter(arbiter, move |ctx| {
            ctx.set_mailbox_capacity(capacity);
            UserActor::new(user, registry)
        });
        shard.insert(user, addr.clone());
        addr
    }

    /// The actor of `user` if it is running (for hints that need no activation).
    pub fn active(&self, user: UserId) -> Option<Addr<UserActor>> {
        self.shard(&user)
            .get(&user)
            .filter(|addr| addr.connected())
            .cloned()
    }

    /// Called by an actor that passivates: forget it, unless a newer actor took its place.
    pub fn deregister(&self, user: UserId, addr: &Addr<UserActor>) {
        let mut shard = self.shard(&user);
        if shard.get(&user) == Some(addr) {
            shard.remove(&user);
        }
    }

    /// Sends `message` to `user`'s actor and waits for the answer. A full mailbox makes this
    /// wait (backpressure). If the actor stopped in between (passivation), the message goes to a
    /// freshly activated one; handlers are idempotent, so a retry is safe.
    pub async fn ask<M>(
        self: &Arc<Self>,
        user: UserId,
        message: M,
    ) -> Result<M::Result, DeliveryError>
    where
        M: Message + Clone + Send + 'static,
        M::Result: Send,
        UserActor: Handler<M>,
        <UserActor as Actor>::Context: ToEnvelope<UserActor, M>,
    {
        for _ in 0..3 {
            match self.user(user).send(message.clone()).await {
                Ok(result) => return Ok(result),
                Err(MailboxError::Closed) => continue,
                Err(MailboxError::Timeout) => return Err(DeliveryError::Busy),
            }
        }
        Err(DeliveryError::Busy)
    }

    /// Hands a hint to `user`'s actor if it runs; drops it otherwise (a stopped actor loads
    /// everything from storage when it starts again).
    pub fn notify<M>(&self, user: UserId, message: M)
    where
        M: Message<Result = ()> + Send + 'static,
        UserActor: Handler<M>,
        <UserActor as Actor>::Context: ToEnvelope<UserActor, M>,
    {
        if let Some(addr) = self.active(user) {
            addr.do_send(message);
        }
    }

    /// Number of registered actors.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops every actor and the arbiters, and waits for their thread.
    pub fn shutdown(&self) {
        self.system.stop();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("the actor system thread panicked");
        }
    }
}
