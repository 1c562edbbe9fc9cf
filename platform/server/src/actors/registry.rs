//! Arbiters, placement and activation of user and group actors.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use actix::dev::ToEnvelope;
use actix::{Actor, Addr, ArbiterHandle, Context, Handler, MailboxError, Message, System};
use courier_protocol::{GroupId, UserId};

use super::ActorEnv;
use super::group::GroupActor;
use super::user::UserActor;
use crate::error::DeliveryError;

const SHARDS: usize = 64;

/// The running actors of one kind, by id, in shards.
struct ActorMap<K, A: Actor> {
    shards: Vec<Mutex<HashMap<K, Addr<A>>>>,
}

impl<K: Hash + Eq + Copy, A: Actor<Context = Context<A>>> ActorMap<K, A> {
    fn new() -> Self {
        ActorMap {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, hash: usize) -> MutexGuard<'_, HashMap<K, Addr<A>>> {
        // A poisoned shard only holds addresses; keep using it.
        self.shards[hash % SHARDS]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The running actor of `id`, or a new one made by `start`.
    fn get_or_start(&self, id: K, hash: usize, start: impl FnOnce() -> Addr<A>) -> Addr<A> {
        let mut shard = self.shard(hash);
        if let Some(addr) = shard.get(&id)
            && addr.connected()
        {
            return addr.clone();
        }
        let addr = start();
        shard.insert(id, addr.clone());
        addr
    }

    fn active(&self, id: K, hash: usize) -> Option<Addr<A>> {
        self.shard(hash)
            .get(&id)
            .filter(|addr| addr.connected())
            .cloned()
    }

    /// Forgets `addr` unless a newer actor took its place.
    fn deregister(&self, id: K, hash: usize, addr: &Addr<A>) {
        let mut shard = self.shard(hash);
        if shard.get(&id) == Some(addr) {
            shard.remove(&id);
        }
    }
}

/// Finds, activates and places user and group actors.
pub struct Registry {
    env: Arc<ActorEnv>,
    arbiters: Vec<ArbiterHandle>,
    users: ActorMap<UserId, UserActor>,
    groups: ActorMap<GroupId, GroupActor>,
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
            users: ActorMap::new(),
            groups: ActorMap::new(),
            hasher: Default::default(),
            system,
            thread: Mutex::new(Some(thread)),
        }))
    }

    pub fn env(&self) -> &Arc<ActorEnv> {
        &self.env
    }

    fn hash<K: Hash>(&self, id: &K) -> usize {
        self.hasher.hash_one(id) as usize
    }

    fn arbiter(&self, hash: usize) -> &ArbiterHandle {
        &self.arbiters[hash % self.arbiters.len()]
    }

    /// The actor of `user`, activated on its arbiter if it is not running.
    pub fn user(self: &Arc<Self>, user: UserId) -> Addr<UserActor> {
        let hash = self.hash(&user);
        self.users.get_or_start(user, hash, || {
            let registry = Arc::clone(self);
            let capacity = self.env.mailbox_capacity;
            UserActor::start_in_arbiter(self.arbiter(hash), move |ctx| {
                ctx.set_mailbox_capacity(capacity);
                UserActor::new(user, registry)
            })
        })
    }

    /// The actor of `group`, activated on its arbiter if it is not running.
    pub fn group(self: &Arc<Self>, group: GroupId) -> Addr<GroupActor> {
        let hash = self.hash(&group);
        self.groups.get_or_start(group, hash, || {
            let registry = Arc::clone(self);
            let capacity = self.env.mailbox_capacity;
            GroupActor::start_in_arbiter(self.arbiter(hash), move |ctx| {
                ctx.set_mailbox_capacity(capacity);
                GroupActor::new(group, registry)
            })
        })
    }

    /// The actor of `user` if it is running (for hints that need no activation).
    pub fn active(&self, user: UserId) -> Option<Addr<UserActor>> {
        self.users.active(user, self.hash(&user))
    }

    /// Called by a user actor that passivates.
    pub fn deregister(&self, user: UserId, addr: &Addr<UserActor>) {
        self.users.deregister(user, self.hash(&user), addr);
    }

    /// Called by a group actor that passivates.
    pub fn deregister_group(&self, group: GroupId, addr: &Addr<GroupActor>) {
        self.groups.deregister(group, self.hash(&group), addr);
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
        retry(|| self.user(user), message).await
    }

    /// [`Registry::ask`] for a group actor.
    pub async fn ask_group<M>(
        self: &Arc<Self>,
        group: GroupId,
        message: M,
    ) -> Result<M::Result, DeliveryError>
    where
        M: Message + Clone + Send + 'static,
        M::Result: Send,
        GroupActor: Handler<M>,
        <GroupActor as Actor>::Context: ToEnvelope<GroupActor, M>,
    {
        retry(|| self.group(group), message).await
    }

    /// Hands a hint to `user`'s actor if it runs; drops it otherwise (a stopped actor loads
    /// everything from storage when it starts again). Hints bypass the mailbox bound: they are
    /// small and idempotent, and waiting for room could deadlock two actors hinting each other.
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

    /// Hands a message to `group`'s actor, activating it, without waiting (from other actors,
    /// which must never wait on each other).
    pub fn tell_group<M>(self: &Arc<Self>, group: GroupId, message: M)
    where
        M: Message<Result = ()> + Send + 'static,
        GroupActor: Handler<M>,
        <GroupActor as Actor>::Context: ToEnvelope<GroupActor, M>,
    {
        self.group(group).do_send(message);
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

/// Asks the actor `addr()` returns, again with a fresh one if it stopped meanwhile.
async fn retry<A, M>(addr: impl Fn() -> Addr<A>, message: M) -> Result<M::Result, DeliveryError>
where
    A: Actor + Handler<M>,
    M: Message + Clone + Send + 'static,
    M::Result: Send,
    A::Context: ToEnvelope<A, M>,
{
    for _ in 0..3 {
        match addr().send(message.clone()).await {
            Ok(result) => return Ok(result),
            Err(MailboxError::Closed) => continue,
            Err(MailboxError::Timeout) => return Err(DeliveryError::Busy),
        }
    }
    Err(DeliveryError::Busy)
}
