//! Arbiters, placement and activation of user and group actors.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;

use actix::dev::{MessageResponse, ToEnvelope};
use actix::{Actor, Addr, ArbiterHandle, Context, Handler, MailboxError, Message, System};
use courier_protocol::{DeviceAddress, GroupId, UserId};
use courier_store::{EnqueueOutcome, NewEntry};
use tokio::sync::oneshot;

use super::ActorEnv;
use super::group::GroupActor;
use super::group_messages as gmsg;
use super::messages::{self as msg, Connect, Disconnect, EntriesQueued, Retire};
use super::user::UserActor;
use crate::cluster::ClusterNode;
use crate::cluster::wire::{Remote, WireResult};
use crate::error::DeliveryError;
use crate::gateway::outbound::OutboundSender;

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

    /// The running actors whose id `select` picks.
    fn select(&self, select: impl Fn(&K) -> bool) -> Vec<(K, Addr<A>)> {
        let mut found = Vec::new();
        for shard in &self.shards {
            let shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            found.extend(
                shard
                    .iter()
                    .filter(|(id, _)| select(id))
                    .map(|(id, addr)| (*id, addr.clone())),
            );
        }
        found
    }
}

/// A message handed to an actor with the channel for its answer: sent without waiting for
/// mailbox room, so that messages keep the order they were handed over in (cluster commands of
/// one partition).
pub struct Routed<M: Message> {
    pub message: M,
    pub reply: oneshot::Sender<M::Result>,
}

impl<M: Message> Message for Routed<M> {
    type Result = ();
}

macro_rules! routed_handlers {
    ($actor:ty: $($message:ty),+ $(,)?) => {
        $(
            impl Handler<Routed<$message>> for $actor {
                type Result = ();

                fn handle(&mut self, routed: Routed<$message>, ctx: &mut Self::Context) {
                    let response = <$actor as Handler<$message>>::handle(self, routed.message, ctx);
                    MessageResponse::<$actor, $message>::handle(response, ctx, Some(routed.reply));
                }
            }
        )+
    };
}

routed_handlers!(UserActor: msg::Submit, msg::SubmitReceipt, msg::Connect, msg::Disconnect,
    msg::AckUpTo, msg::PrivacyChanged, msg::EnqueueEntries);
routed_handlers!(GroupActor: gmsg::CreateGroup, gmsg::UpdateGroup, gmsg::JoinByInvite,
    gmsg::GetGroup, gmsg::SendToGroup, gmsg::MemberDelivered, gmsg::MemberRead,
    gmsg::GetMessageInfo);

/// Finds, activates and places user and group actors.
pub struct Registry {
    env: Arc<ActorEnv>,
    arbiters: Vec<ArbiterHandle>,
    users: ActorMap<UserId, UserActor>,
    groups: ActorMap<GroupId, GroupActor>,
    hasher: std::collections::hash_map::RandomState,
    system: System,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Set in cluster mode: actors live on the nodes that own their shard partitions.
    cluster: OnceLock<Arc<ClusterNode>>,
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
            cluster: OnceLock::new(),
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

    /// Puts this registry in cluster mode: from now on commands go through `node`.
    pub fn set_cluster(&self, node: Arc<ClusterNode>) {
        // Set once, at start-up.
        let _ = self.cluster.set(node);
    }

    pub fn cluster(&self) -> Option<&Arc<ClusterNode>> {
        self.cluster.get()
    }

    /// Sends `message` to `user`'s actor and waits for the answer. A full mailbox makes this
    /// wait (backpressure). If the actor stopped in between (passivation), the message goes to a
    /// freshly activated one; handlers are idempotent, so a retry is safe. In cluster mode the
    /// actor may be on another node.
    pub async fn ask<M>(
        self: &Arc<Self>,
        user: UserId,
        message: M,
    ) -> Result<M::Result, DeliveryError>
    where
        M: Remote + Clone,
        M::Result: WireResult + Send,
        UserActor: Handler<M>,
        <UserActor as Actor>::Context: ToEnvelope<UserActor, M>,
    {
        match self.cluster.get() {
            Some(cluster) => cluster.ask(user.to_string(), message).await,
            None => retry(|| self.user(user), message).await,
        }
    }

    /// [`Registry::ask`] for a group actor.
    pub async fn ask_group<M>(
        self: &Arc<Self>,
        group: GroupId,
        message: M,
    ) -> Result<M::Result, DeliveryError>
    where
        M: Remote + Clone,
        M::Result: WireResult + Send,
        GroupActor: Handler<M>,
        <GroupActor as Actor>::Context: ToEnvelope<GroupActor, M>,
    {
        match self.cluster.get() {
            Some(cluster) => cluster.ask(group.to_string(), message).await,
            None => retry(|| self.group(group), message).await,
        }
    }

    /// Hands `message` to `user`'s actor for an effect nobody waits to see: in cluster mode
    /// once the bus holds it durably, locally once the actor applied it (so that a busy actor
    /// slows its sender down).
    pub async fn tell<M>(self: &Arc<Self>, user: UserId, message: M) -> Result<(), DeliveryError>
    where
        M: Remote + Clone + Message<Result = ()>,
        UserActor: Handler<M>,
        <UserActor as Actor>::Context: ToEnvelope<UserActor, M>,
    {
        match self.cluster.get() {
            Some(cluster) => cluster.tell(user.to_string(), message).await,
            None => retry(|| self.user(user), message).await,
        }
    }

    /// A hint for `user`'s actor wherever it runs, if it runs (typing, changed devices).
    pub async fn hint<M>(self: &Arc<Self>, user: UserId, message: M)
    where
        M: Remote + Message<Result = ()>,
        UserActor: Handler<M>,
        <UserActor as Actor>::Context: ToEnvelope<UserActor, M>,
    {
        match self.cluster.get() {
            Some(cluster) => {
                if let Err(error) = cluster.tell(user.to_string(), message).await {
                    tracing::debug!(%user, %error, "hint not sent");
                }
            }
            None => self.notify(user, message),
        }
    }

    /// Attaches a connection of this node to its user's actor.
    pub async fn connect(
        self: &Arc<Self>,
        device: DeviceAddress,
        conn: u64,
        outbound: OutboundSender,
    ) -> Result<(), DeliveryError> {
        match self.cluster.get() {
            Some(cluster) => cluster.attach(device, conn, outbound).await,
            None => {
                let connect = Connect {
                    device: device.device,
                    conn,
                    outbound,
                };
                retry(|| self.user(device.user), connect).await
            }
        }
    }

    /// Detaches a closed connection of this node.
    pub async fn disconnect(
        self: &Arc<Self>,
        device: DeviceAddress,
        conn: u64,
    ) -> Result<(), DeliveryError> {
        match self.cluster.get() {
            Some(cluster) => cluster.detach(device, conn).await,
            None => {
                let disconnect = Disconnect {
                    device: device.device,
                    conn,
                };
                retry(|| self.user(device.user), disconnect).await
            }
        }
    }

    /// Queues entries on other users' devices. Locally one atomic store write, after which the
    /// running actors of those users get the entries with their sequence numbers, so that they
    /// push them from memory instead of reading their queues again; in a cluster one durable
    /// command per user, applied by the actor that is the single writer of that user's queues.
    pub async fn enqueue_for(
        &self,
        entries: Vec<(DeviceAddress, NewEntry)>,
    ) -> Result<(), DeliveryError> {
        if entries.is_empty() {
            return Ok(());
        }
        match self.cluster.get() {
            Some(cluster) => cluster.enqueue_for(entries).await,
            None => {
                let outcomes = self.env.store.enqueue(entries.clone()).await?;
                self.hand_over_queued(entries, outcomes);
                Ok(())
            }
        }
    }

    /// Gives entries just queued, with their outcomes, to the running actors of their users.
    fn hand_over_queued(
        &self,
        entries: Vec<(DeviceAddress, NewEntry)>,
        outcomes: Vec<EnqueueOutcome>,
    ) {
        let mut by_user: HashMap<UserId, EntriesQueued> = HashMap::new();
        for (entry, outcome) in entries.into_iter().zip(outcomes) {
            let queued = by_user
                .entry(entry.0.user)
                .or_insert_with(|| EntriesQueued {
                    entries: Vec::new(),
                    outcomes: Vec::new(),
                });
            queued.entries.push(entry);
            queued.outcomes.push(outcome);
        }
        for (user, queued) in by_user {
            self.notify(user, queued);
        }
    }

    /// Whether actors are sharded over the nodes of a cluster.
    pub fn is_clustered(&self) -> bool {
        self.cluster.get().is_some()
    }

    /// Announces a presence change to watchers on every node.
    pub fn publish_presence(&self, user: UserId, online: bool, last_seen_ms: u64) {
        match self.cluster.get() {
            Some(cluster) => cluster.publish_presence(user, online, last_seen_ms),
            None => self.env.presence.apply(user, online, last_seen_ms),
        }
    }

    /// Hands `message` to `user`'s actor on this node (activating it) without waiting for room:
    /// for cluster commands, which must keep their order.
    pub fn local_send<M>(self: &Arc<Self>, user: UserId, message: M) -> oneshot::Receiver<M::Result>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        UserActor: Handler<Routed<M>>,
    {
        let (reply, rx) = oneshot::channel();
        if let Some(cluster) = self.cluster.get()
            && !cluster.owns(cluster.partition_of_user(user))
            && self.active(user).is_none()
        {
            // The partition moved away: no second writer of this user's queues here.
            return rx;
        }
        self.user(user).do_send(Routed { message, reply });
        rx
    }

    /// [`Registry::local_send`] for a group actor.
    pub fn local_send_group<M>(
        self: &Arc<Self>,
        group: GroupId,
        message: M,
    ) -> oneshot::Receiver<M::Result>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        GroupActor: Handler<Routed<M>>,
    {
        let (reply, rx) = oneshot::channel();
        if let Some(cluster) = self.cluster.get()
            && !cluster.owns(cluster.partition_of_group(group))
            && self.groups.active(group, self.hash(&group)).is_none()
        {
            return rx;
        }
        self.group(group).do_send(Routed { message, reply });
        rx
    }

    /// Stops the actors of shard partitions that moved to another node, once each finished what
    /// it had under way (their effects are persisted when this returns).
    pub async fn retire(&self, partitions: &[u32]) {
        let Some(cluster) = self.cluster.get() else {
            return;
        };
        let users = self
            .users
            .select(|user| partitions.contains(&cluster.partition_of_user(*user)));
        let groups = self
            .groups
            .select(|group| partitions.contains(&cluster.partition_of_group(*group)));
        let mut waits = Vec::with_capacity(users.len() + groups.len());
        for (user, addr) in users {
            self.users.deregister(user, self.hash(&user), &addr);
            waits.push(addr.send(Retire));
        }
        let mut group_waits = Vec::with_capacity(groups.len());
        for (group, addr) in groups {
            self.groups.deregister(group, self.hash(&group), &addr);
            group_waits.push(addr.send(Retire));
        }
        // An actor that stopped meanwhile has nothing left to finish.
        let _ = futures_util::future::join_all(waits).await;
        let _ = futures_util::future::join_all(group_waits).await;
    }

    /// Hands a hint to `user`'s actor if it runs on this node; drops it otherwise (a stopped
    /// actor loads everything from storage when it starts again). Hints bypass the mailbox
    /// bound: they are small and idempotent, and waiting for room could deadlock two actors
    /// hinting each other.
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

    /// Hands a message to `group`'s actor without waiting for its effect (from other actors,
    /// which must never wait on each other): locally into its mailbox, in a cluster once the
    /// bus holds it durably.
    pub async fn tell_group<M>(
        self: &Arc<Self>,
        group: GroupId,
        message: M,
    ) -> Result<(), DeliveryError>
    where
        M: Remote + Message<Result = ()>,
        GroupActor: Handler<M>,
        <GroupActor as Actor>::Context: ToEnvelope<GroupActor, M>,
    {
        match self.cluster.get() {
            Some(cluster) => cluster.tell(group.to_string(), message).await,
            None => {
                self.group(group).do_send(message);
                Ok(())
            }
        }
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
