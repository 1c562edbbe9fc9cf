//! Cluster mode: actors sharded over nodes by the bus, connections on any node.
//!
//! - A user or group id hashes to a shard partition ([`courier_bus::partition_for`] of its
//!   string form). The node whose bus consumer owns the partition runs that actor; every
//!   command for the actor is a durable record on its partition ([`wire`] has the contract).
//! - A gateway node publishes the commands of its connections ([`ClusterNode::ask`] waits for
//!   the owner's answer, [`ClusterNode::tell`] only for the durable append) and attaches each
//!   connection to its user's owner, which pushes frames back as node messages.
//! - The owner applies a record, persists its effect, then marks it done: the bus commits
//!   offsets only past done records, so a crash redelivers (deduplicated by the store), never
//!   loses.
//! - When partitions move, the old owner retires their actors (finishing what is under way)
//!   and the new owner announces itself ([`wire::Owns`] broadcast): every node attaches its
//!   connections of users in those partitions again, and pushes resume from the durable queues.
//! - Presence changes and liveness go to every node (broadcast); a session of a node that went
//!   silent is dropped by its owner.
//!
//! `docs/cluster.md` describes the routing with the failure cases.

pub mod wire;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use courier_bus::{Bus, BusHandler, Completion, Partition, ShardRecord, partition_for};
use courier_protocol::cluster::v1 as pb;
use courier_protocol::{DeviceAddress, GroupId, UserId};
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};

use crate::actors::group::GroupActor;
use crate::actors::group_messages::*;
use crate::actors::messages::*;
use crate::actors::registry::{Registry, Routed};
use crate::actors::user::UserActor;
use crate::clock::now_ms;
use crate::error::DeliveryError;
use crate::gateway::outbound::{ConnectionLink, Outbound, OutboundSender, RoutedConnection};
use crate::metrics::FrameKind;
use crate::presence::PresenceHub;
use wire::{Remote, WireError, WireResult, device_address, entries_from_wire};

/// How often a node tells the others it is alive.
const ALIVE_EVERY: Duration = Duration::from_secs(2);
/// A node not heard from for this long is taken for dead: its sessions are dropped.
const DEAD_AFTER: Duration = Duration::from_secs(10);
/// Retry delays for commands whose effect must persist (queue entries) while storage is down.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// A connection of this node's gateway, as the cluster layer knows it.
struct LocalConnection {
    device: DeviceAddress,
    outbound: OutboundSender,
}

/// A future answer of a local actor, encoded for the wire.
type ReplyFuture = Pin<Box<dyn Future<Output = pb::Reply> + Send>>;

/// This node's part of the cluster.
pub struct ClusterNode {
    me: Weak<ClusterNode>,
    bus: Arc<dyn Bus>,
    node_id: Arc<str>,
    started_at: u64,
    partitions: u32,
    ask_timeout: Duration,
    registry: OnceLock<Arc<Registry>>,
    presence: Arc<PresenceHub>,
    next_request: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<pb::Reply>>>,
    connections: Mutex<HashMap<u64, LocalConnection>>,
    /// When each other node was last heard of.
    peers: Mutex<HashMap<String, Instant>>,
    /// The partitions this node owns now.
    owned: Mutex<Vec<Partition>>,
    /// Which node (and incarnation) owns each partition, as last announced (`Alive`).
    owners: Mutex<HashMap<Partition, (String, u64)>>,
    outboxes: Mutex<HashMap<String, mpsc::UnboundedSender<pb::NodeMessage>>>,
    /// The task that tells the others this node is alive (stopped at shutdown).
    alive: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps hold routing bookkeeping only; a panic elsewhere leaves them usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn bus_error(error: courier_bus::BusError) -> DeliveryError {
    DeliveryError::Unavailable(format!("message bus: {error}"))
}

impl ClusterNode {
    pub fn new(
        bus: Arc<dyn Bus>,
        presence: Arc<PresenceHub>,
        ask_timeout: Duration,
    ) -> Arc<ClusterNode> {
        Arc::new_cyclic(|me| ClusterNode {
            me: me.clone(),
            node_id: Arc::from(bus.node_id()),
            partitions: bus.partitions(),
            bus,
            started_at: now_ms(),
            ask_timeout,
            registry: OnceLock::new(),
            presence,
            // Unique across restarts: a late answer to the previous incarnation must not match.
            next_request: AtomicU64::new(now_ms() << 16),
            pending: Mutex::new(HashMap::new()),
            connections: Mutex::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            owned: Mutex::new(Vec::new()),
            owners: Mutex::new(HashMap::new()),
            outboxes: Mutex::new(HashMap::new()),
            alive: Mutex::new(None),
        })
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Joins the bus: from now on this node owns partitions and receives node messages.
    pub async fn start(
        self: &Arc<Self>,
        registry: Arc<Registry>,
    ) -> Result<(), courier_bus::BusError> {
        // Only the first registry counts; a node is started once.
        let _ = self.registry.set(registry);
        self.bus
            .start(Arc::clone(self) as Arc<dyn BusHandler>)
            .await?;
        let node = Arc::clone(self);
        let alive = tokio::spawn(async move {
            let mut every = tokio::time::interval(ALIVE_EVERY);
            let mut silent_since: Option<Instant> = None;
            loop {
                every.tick().await;
                let alive = pb::node_message::Body::Alive(pb::Alive {
                    node: node.node_id.to_string(),
                    started_at_ms: node.started_at,
                    partitions: lock(&node.owned).clone(),
                });
                if node.broadcast(alive).await {
                    // Others may have taken this node for dead and dropped its sessions.
                    if silent_since
                        .take()
                        .is_some_and(|at| at.elapsed() >= DEAD_AFTER / 2)
                    {
                        node.reattach_all();
                    }
                } else {
                    silent_since.get_or_insert_with(Instant::now);
                }
            }
        });
        *lock(&self.alive) = Some(alive);
        Ok(())
    }

    /// Leaves the cluster: partitions go to the other nodes.
    pub async fn shutdown(&self) {
        if let Some(alive) = lock(&self.alive).take() {
            alive.abort();
        }
        self.bus.shutdown().await;
    }

    /// Whether this node owns `partition` now.
    pub fn owns(&self, partition: Partition) -> bool {
        lock(&self.owned).contains(&partition)
    }

    pub fn partition_of_user(&self, user: UserId) -> Partition {
        partition_for(user.to_string().as_bytes(), self.partitions)
    }

    pub fn partition_of_group(&self, group: GroupId) -> Partition {
        partition_for(group.to_string().as_bytes(), self.partitions)
    }

    fn registry(&self) -> Option<&Arc<Registry>> {
        self.registry.get()
    }

    async fn publish(
        &self,
        target: String,
        command: pb::ShardCommand,
    ) -> Result<(), DeliveryError> {
        let partition = partition_for(target.as_bytes(), self.partitions);
        let payload = Bytes::from(command.encode_to_vec());
        self.bus
            .publish(partition, Bytes::from(target.into_bytes()), payload)
            .await
            .map_err(bus_error)
    }

    /// Sends `message` to the actor of `target` (a user or group id) and waits for its answer.
    pub async fn ask<M>(&self, target: String, message: M) -> Result<M::Result, DeliveryError>
    where
        M: Remote,
        M::Result: WireResult + Send,
    {
        let request_id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(request_id, tx);
        let command = pb::ShardCommand {
            reply: Some(pb::ReplyTo {
                node: self.node_id.to_string(),
                request_id,
            }),
            target: target.clone(),
            body: Some(message.to_wire()),
        };
        if let Err(error) = self.publish(target, command).await {
            lock(&self.pending).remove(&request_id);
            return Err(error);
        }
        match tokio::time::timeout(self.ask_timeout, rx).await {
            Ok(Ok(reply)) => Ok(M::Result::from_reply(reply)),
            _ => {
                lock(&self.pending).remove(&request_id);
                // The command is durable: it may still be applied. A retry with the same client
                // message id is de-duplicated.
                Err(DeliveryError::Unavailable(
                    "no answer from the node that owns the recipient; retry".into(),
                ))
            }
        }
    }

    /// Hands `message` to the actor of `target` durably, without waiting for its effect.
    pub async fn tell<M>(&self, target: String, message: M) -> Result<(), DeliveryError>
    where
        M: Remote,
        M::Result: WireResult + Send,
    {
        let command = pb::ShardCommand {
            reply: None,
            target: target.clone(),
            body: Some(message.to_wire()),
        };
        self.publish(target, command).await
    }

    /// Registers a connection of this node and attaches it to its user's owner.
    pub async fn attach(
        &self,
        device: DeviceAddress,
        conn: u64,
        outbound: OutboundSender,
    ) -> Result<(), DeliveryError> {
        lock(&self.connections).insert(conn, LocalConnection { device, outbound });
        self.send_attach(device, conn).await
    }

    async fn send_attach(&self, device: DeviceAddress, conn: u64) -> Result<(), DeliveryError> {
        let command = pb::ShardCommand {
            reply: None,
            target: device.user.to_string(),
            body: Some(pb::shard_command::Body::Attach(pb::Attach {
                device: device.device,
                conn,
                node: self.node_id.to_string(),
            })),
        };
        self.publish(device.user.to_string(), command).await
    }

    /// Forgets a closed connection of this node and detaches it from its user's owner.
    pub async fn detach(&self, device: DeviceAddress, conn: u64) -> Result<(), DeliveryError> {
        lock(&self.connections).remove(&conn);
        let detach = Disconnect {
            device: device.device,
            conn,
        };
        self.tell(device.user.to_string(), detach).await
    }

    /// Entries for other users' queues: one durable command per user, applied by its owner.
    pub async fn enqueue_for(
        &self,
        entries: Vec<(DeviceAddress, courier_store::NewEntry)>,
    ) -> Result<(), DeliveryError> {
        let mut by_user: HashMap<UserId, Vec<(u32, courier_store::NewEntry)>> = HashMap::new();
        for (address, entry) in entries {
            by_user
                .entry(address.user)
                .or_default()
                .push((address.device, entry));
        }
        let sends = by_user.into_iter().map(|(user, entries)| {
            let message = EnqueueEntries {
                user,
                entries: Arc::new(entries),
            };
            self.tell(user.to_string(), message)
        });
        for result in futures_util::future::join_all(sends).await {
            result?;
        }
        Ok(())
    }

    /// Tells every node (this one included) of a presence change.
    pub fn publish_presence(self: &Arc<Self>, user: UserId, online: bool, last_seen_ms: u64) {
        let node = Arc::clone(self);
        tokio::spawn(async move {
            let body = pb::node_message::Body::Presence(pb::Presence {
                user: user.to_string(),
                online,
                last_seen_ms,
            });
            node.broadcast(body).await;
        });
    }

    /// Sends `body` to every node; `false` if the bus refused it.
    async fn broadcast(&self, body: pb::node_message::Body) -> bool {
        let batch = pb::NodeBatch {
            messages: vec![pb::NodeMessage { body: Some(body) }],
        };
        match self.bus.broadcast(Bytes::from(batch.encode_to_vec())).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "broadcast failed");
                false
            }
        }
    }

    /// Attaches every connection of this node again.
    fn reattach_all(&self) {
        let all: Vec<u32> = (0..self.partitions).collect();
        self.reattach(&all);
    }

    /// Queues a node message for `node`, in order; a task per destination sends what piled up
    /// as one batch.
    fn send_to(&self, node: &str, message: pb::NodeMessage) {
        let mut outboxes = lock(&self.outboxes);
        if let Some(tx) = outboxes.get(node)
            && tx.send(message.clone()).is_ok()
        {
            return;
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<pb::NodeMessage>();
        // A fresh channel takes the message.
        let _ = tx.send(message);
        outboxes.insert(node.to_owned(), tx);
        let bus = Arc::clone(&self.bus);
        let me = self.me.clone();
        let destination = node.to_owned();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut messages = vec![first];
                while messages.len() < 512 {
                    match rx.try_recv() {
                        Ok(next) => messages.push(next),
                        Err(_) => break,
                    }
                }
                let lost = interrupted_sessions(&messages);
                let payload = Bytes::from(pb::NodeBatch { messages }.encode_to_vec());
                if let Err(error) = bus.send_to_node(&destination, payload).await {
                    tracing::warn!(node = %destination, %error, "node messages lost");
                    if let Some(node) = me.upgrade() {
                        node.interrupted(&destination, lost);
                    }
                }
            }
        });
    }

    /// Writes a frame of another node's actor to a connection of this node. Returns the
    /// session to detach when the connection is gone.
    fn deliver_frame(&self, frame: pb::ConnectionFrame) -> Option<(DeviceAddress, u64)> {
        let connections = lock(&self.connections);
        let Some(connection) = connections.get(&frame.conn) else {
            return device_address(frame.device.as_ref())
                .ok()
                .map(|device| (device, frame.conn));
        };
        let kind = FrameKind::from_code(frame.kind);
        let taken = connection.outbound.offer(Outbound {
            bytes: Bytes::from(frame.frame),
            kind,
        });
        if !taken && kind == FrameKind::Delivery {
            // The owner counts this delivery as pushed: a later cumulative ack would skip it.
            // The device reconnects and everything unacknowledged is pushed again.
            connection
                .outbound
                .close(courier_protocol::close::GOING_AWAY, INTERRUPTED);
        }
        None
    }

    fn on_node_message(&self, message: pb::NodeMessage) {
        use pb::node_message::Body;
        match message.body {
            Some(Body::Reply(reply)) => {
                if let Some(tx) = lock(&self.pending).remove(&reply.request_id) {
                    // The asker may have timed out meanwhile.
                    let _ = tx.send(reply);
                }
            }
            Some(Body::Frame(frame)) => {
                if let Some((device, conn)) = self.deliver_frame(frame)
                    && let Some(node) = self.me.upgrade()
                {
                    // Not ours (any more): the owner should stop pushing to it.
                    tokio::spawn(async move {
                        let detach = Disconnect {
                            device: device.device,
                            conn,
                        };
                        if let Err(error) = node.tell(device.user.to_string(), detach).await {
                            tracing::debug!(%error, "could not detach a stale session");
                        }
                    });
                }
            }
            Some(Body::Close(close)) => {
                if let Some(connection) = lock(&self.connections).get(&close.conn) {
                    connection
                        .outbound
                        .close(close.code as u16, close_reason(&close.reason));
                }
            }
            Some(Body::Presence(presence)) => {
                if let Ok(user) = presence.user.parse::<UserId>() {
                    self.presence
                        .apply(user, presence.online, presence.last_seen_ms);
                }
            }
            // A fresh assignment (perhaps to a restarted node of the same id): attach again.
            Some(Body::Owns(owns)) if owns.node != *self.node_id => {
                self.reattach(&owns.partitions);
            }
            Some(Body::Owns(_)) => {}
            Some(Body::Alive(alive)) => {
                self.owner_news(&alive.node, alive.started_at_ms, &alive.partitions);
                lock(&self.peers).insert(alive.node, Instant::now());
            }
            None => {}
        }
    }

    /// `node` (incarnation `started_at`) owns `partitions`: connections of this node whose users
    /// moved to it, or whose owner restarted, attach there. (This node attaches its own
    /// connections when it is assigned partitions.)
    fn owner_news(&self, node: &str, started_at: u64, partitions: &[u32]) {
        if node == &*self.node_id {
            return;
        }
        let owner = (node.to_owned(), started_at);
        let moved: Vec<u32> = {
            let mut owners = lock(&self.owners);
            partitions
                .iter()
                .copied()
                .filter(|p| owners.insert(*p, owner.clone()).as_ref() != Some(&owner))
                .collect()
        };
        if !moved.is_empty() {
            self.reattach(&moved);
        }
    }

    /// Frames for these sessions of `node` were lost (the bus refused them): a cumulative ack
    /// past the gap would remove what the device never got. So the owner forgets the sessions
    /// and asks `node` to close the connections (retrying while the bus is down); devices
    /// reconnect and everything unacknowledged is pushed again.
    fn interrupted(&self, node: &str, sessions: Vec<(u64, DeviceAddress)>) {
        let Some(registry) = self.registry() else {
            return;
        };
        for (conn, device) in &sessions {
            let detach = Disconnect {
                device: device.device,
                conn: *conn,
            };
            registry.notify(device.user, detach);
        }
        let bus = Arc::clone(&self.bus);
        let destination = node.to_owned();
        tokio::spawn(async move {
            let messages = sessions
                .iter()
                .map(|(conn, _)| pb::NodeMessage {
                    body: Some(pb::node_message::Body::Close(pb::CloseConnection {
                        conn: *conn,
                        code: courier_protocol::close::GOING_AWAY as u32,
                        reason: INTERRUPTED.into(),
                    })),
                })
                .collect();
            let payload = Bytes::from(pb::NodeBatch { messages }.encode_to_vec());
            let mut delay = RETRY_FIRST;
            let give_up = Instant::now() + DEAD_AFTER * 6;
            while let Err(error) = bus.send_to_node(&destination, payload.clone()).await {
                if Instant::now() >= give_up {
                    tracing::warn!(node = %destination, %error, "could not close interrupted connections");
                    return;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_MAX);
            }
        });
    }

    /// Attaches this node's connections of users in `partitions` again (their owner changed).
    fn reattach(&self, partitions: &[u32]) {
        let devices: Vec<(DeviceAddress, u64)> = lock(&self.connections)
            .iter()
            .filter(|(_, c)| partitions.contains(&self.partition_of_user(c.device.user)))
            .map(|(conn, c)| (c.device, *conn))
            .collect();
        let Some(node) = self.me.upgrade() else {
            return;
        };
        if devices.is_empty() {
            return;
        }
        tokio::spawn(async move {
            for (device, conn) in devices {
                // It may have closed meanwhile: a late attach would replace a newer session.
                if !lock(&node.connections).contains_key(&conn) {
                    continue;
                }
                if let Err(error) = node.send_attach(device, conn).await {
                    tracing::warn!(%device, %error, "could not attach a connection again");
                }
            }
        });
    }

    /// Hands one command to the local actor it addresses, at once (so that the commands of a
    /// partition reach their actors in order), and returns its answer, which comes once the
    /// effect is persisted.
    fn dispatch(&self, command: pb::ShardCommand) -> Result<ReplyFuture, WireError> {
        use pb::shard_command::Body;
        let registry = Arc::clone(
            self.registry()
                .ok_or_else(|| WireError("the node is not started".into()))?,
        );
        let body = command
            .body
            .ok_or_else(|| WireError("a command without a body".into()))?;
        let target = command.target;
        let user = || {
            target
                .parse::<UserId>()
                .map_err(|e| WireError(e.to_string()))
        };
        let group = || {
            target
                .parse::<GroupId>()
                .map_err(|e| WireError(e.to_string()))
        };
        let done = || -> ReplyFuture { Box::pin(async { ().to_reply() }) };
        Ok(match body {
            Body::Submit(submit) => {
                let message = Submit {
                    from: device_address(submit.from.as_ref())?,
                    message: Arc::new(
                        submit
                            .message
                            .ok_or_else(|| WireError("a submit without a message".into()))?,
                    ),
                };
                to_user(&registry, user()?, message)
            }
            Body::SubmitReceipt(receipt) => {
                let message = SubmitReceipt {
                    from: device_address(receipt.from.as_ref())?,
                    kind: wire::receipt_type(receipt.kind),
                    message_ids: Arc::new(receipt.message_ids),
                };
                to_user(&registry, user()?, message)
            }
            Body::Attach(attach) => {
                let link = self
                    .me
                    .upgrade()
                    .ok_or_else(|| WireError("the node is stopping".into()))?;
                let outbound = OutboundSender::routed(RoutedConnection {
                    node: Arc::from(attach.node.as_str()),
                    conn: attach.conn,
                    device: DeviceAddress::new(user()?, attach.device),
                    link: link as Arc<dyn ConnectionLink>,
                });
                let connect = Connect {
                    device: attach.device,
                    conn: attach.conn,
                    outbound,
                };
                to_user(&registry, user()?, connect)
            }
            Body::Detach(detach) => {
                let message = Disconnect {
                    device: detach.device,
                    conn: detach.conn,
                };
                to_user(&registry, user()?, message)
            }
            Body::Ack(ack) => {
                let message = AckUpTo {
                    device: ack.device,
                    conn: ack.conn,
                    up_to: ack.up_to,
                };
                to_user(&registry, user()?, message)
            }
            Body::Typing(typing) => {
                let from = typing
                    .from_user
                    .parse::<UserId>()
                    .map_err(|e| WireError(e.to_string()))?;
                let notice = TypingNotice {
                    from,
                    typing: typing.typing,
                };
                // Typing reaches only users online now; nobody is activated for it.
                registry.notify(user()?, notice);
                done()
            }
            Body::Enqueue(enqueue) => {
                let message = entries_from_wire(user()?, enqueue.entries)?;
                let partition = self.partition_of_user(message.user);
                let first = registry.local_send(message.user, message.clone());
                let me = self.me.clone();
                Box::pin(async move {
                    let mut result = first.await;
                    let mut delay = RETRY_FIRST;
                    loop {
                        match result {
                            Ok(Ok(())) => break,
                            Ok(Err(DeliveryError::Unavailable(_) | DeliveryError::Busy))
                            | Err(_) => {
                                // Storage is down or the actor stopped: the entries must land,
                                // but only through the partition's owner. Once it moved away,
                                // the record (not completed before the hand-over) goes to the
                                // next owner.
                                tracing::warn!(user = %message.user, ?delay, "queue write postponed");
                                tokio::time::sleep(delay).await;
                                delay = (delay * 2).min(RETRY_MAX);
                                if !me.upgrade().is_some_and(|node| node.owns(partition)) {
                                    break;
                                }
                                result = registry.local_send(message.user, message.clone()).await;
                            }
                            Ok(Err(error)) => {
                                tracing::error!(user = %message.user, %error, "queue entries refused");
                                break;
                            }
                        }
                    }
                    ().to_reply()
                })
            }
            Body::DevicesChanged(_) => {
                registry.notify(user()?, DevicesChanged);
                done()
            }
            Body::PrivacyChanged(change) => {
                let message = PrivacyChanged {
                    last_seen_visible: change.last_seen_visible,
                };
                to_user(&registry, user()?, message)
            }
            Body::CreateGroup(create) => {
                let message = CreateGroup {
                    by: device_address(create.by.as_ref())?,
                    create: Arc::new(create.create.unwrap_or_default()),
                };
                to_group(&registry, group()?, message)
            }
            Body::UpdateGroup(update) => {
                let message = UpdateGroup {
                    by: device_address(update.by.as_ref())?,
                    update: Arc::new(update.update.unwrap_or_default()),
                };
                to_group(&registry, group()?, message)
            }
            Body::JoinByInvite(join) => {
                let message = JoinByInvite {
                    by: device_address(join.by.as_ref())?,
                    code: join.code,
                };
                to_group(&registry, group()?, message)
            }
            Body::GetGroup(get) => {
                let message = GetGroup {
                    by: device_address(get.by.as_ref())?,
                };
                to_group(&registry, group()?, message)
            }
            Body::SendToGroup(send) => {
                let message = SendToGroup {
                    from: device_address(send.from.as_ref())?,
                    send: Arc::new(send.send.unwrap_or_default()),
                };
                to_group(&registry, group()?, message)
            }
            Body::MemberDelivered(delivered) => {
                let message = MemberDelivered {
                    member: device_address(delivered.member.as_ref())?,
                    message_seq: delivered.message_seq,
                };
                to_group(&registry, group()?, message)
            }
            Body::MemberRead(read) => {
                let message = MemberRead {
                    member: device_address(read.member.as_ref())?,
                    sender: read
                        .sender
                        .parse::<UserId>()
                        .map_err(|e| WireError(e.to_string()))?,
                    message_ids: Arc::new(read.message_ids),
                };
                to_group(&registry, group()?, message)
            }
            Body::GetMessageInfo(info) => {
                let message = GetMessageInfo {
                    by: device_address(info.by.as_ref())?,
                    client_message_id: info.client_message_id,
                };
                to_group(&registry, group()?, message)
            }
        })
    }

    fn answer(&self, reply_to: Option<pb::ReplyTo>, mut reply: pb::Reply) {
        let Some(reply_to) = reply_to else {
            return;
        };
        reply.request_id = reply_to.request_id;
        let message = pb::NodeMessage {
            body: Some(pb::node_message::Body::Reply(reply)),
        };
        if *reply_to.node == *self.node_id {
            self.on_node_message(message);
        } else {
            self.send_to(&reply_to.node, message);
        }
    }
}

/// The close reason of a connection whose frames were lost between nodes.
const INTERRUPTED: &str = "delivery interrupted; reconnect";

/// The sessions (connection, device) that frames in `messages` were for.
fn interrupted_sessions(messages: &[pb::NodeMessage]) -> Vec<(u64, DeviceAddress)> {
    let mut sessions: Vec<(u64, DeviceAddress)> = Vec::new();
    for message in messages {
        if let Some(pb::node_message::Body::Frame(frame)) = &message.body
            && let Ok(device) = device_address(frame.device.as_ref())
            && !sessions.iter().any(|(conn, _)| *conn == frame.conn)
        {
            sessions.push((frame.conn, device));
        }
    }
    sessions
}

/// Close reasons cross the wire as text; the connection API takes static strings.
fn close_reason(reason: &str) -> &'static str {
    match reason {
        INTERRUPTED => INTERRUPTED,
        "replaced by a newer connection" => "replaced by a newer connection",
        "device removed" => "device removed",
        "server shutting down" => "server shutting down",
        _ => "closed by the server",
    }
}

impl ConnectionLink for ClusterNode {
    fn frame(&self, connection: &RoutedConnection, outbound: Outbound) -> bool {
        if *connection.node == *self.node_id {
            return match lock(&self.connections).get(&connection.conn) {
                Some(local) => local.outbound.offer(outbound),
                None => false,
            };
        }
        let message = pb::NodeMessage {
            body: Some(pb::node_message::Body::Frame(pb::ConnectionFrame {
                conn: connection.conn,
                frame: outbound.bytes.to_vec(),
                kind: outbound.kind.code(),
                device: Some(wire::device_ref(connection.device)),
            })),
        };
        self.send_to(&connection.node, message);
        true
    }

    fn close(&self, node: &str, conn: u64, code: u16, reason: &'static str) {
        if node == &*self.node_id {
            if let Some(connection) = lock(&self.connections).get(&conn) {
                connection.outbound.close(code, reason);
            }
            return;
        }
        let message = pb::NodeMessage {
            body: Some(pb::node_message::Body::Close(pb::CloseConnection {
                conn,
                code: code as u32,
                reason: reason.to_owned(),
            })),
        };
        self.send_to(node, message);
    }

    fn reachable(&self, node: &str, conn: u64) -> bool {
        if node == &*self.node_id {
            return lock(&self.connections).contains_key(&conn);
        }
        // A node not heard of yet (just started, or this node just started) gets the same grace
        // from its first mention.
        let mut peers = lock(&self.peers);
        let heard = peers.entry(node.to_owned()).or_insert_with(Instant::now);
        heard.elapsed() < DEAD_AFTER
    }
}

/// Hands `message` to `user`'s actor here and answers with its result.
fn to_user<M>(registry: &Arc<Registry>, user: UserId, message: M) -> ReplyFuture
where
    M: actix::Message + Clone + Send + 'static,
    M::Result: WireResult + Send,
    UserActor: actix::Handler<Routed<M>>,
{
    let first = registry.local_send(user, message.clone());
    let registry = Arc::clone(registry);
    answer_of(first, move || registry.local_send(user, message.clone()))
}

/// Hands `message` to `group`'s actor here and answers with its result.
fn to_group<M>(registry: &Arc<Registry>, group: GroupId, message: M) -> ReplyFuture
where
    M: actix::Message + Clone + Send + 'static,
    M::Result: WireResult + Send,
    GroupActor: actix::Handler<Routed<M>>,
{
    let first = registry.local_send_group(group, message.clone());
    let registry = Arc::clone(registry);
    answer_of(first, move || {
        registry.local_send_group(group, message.clone())
    })
}

/// The encoded answer of a message handed to a local actor. An actor that stopped with the
/// message still in its mailbox (it passivated in that moment) gets it again through a fresh
/// actor; if that fails too, the answer is "busy" (the asker retries).
fn answer_of<R>(
    first: oneshot::Receiver<R>,
    again: impl Fn() -> oneshot::Receiver<R> + Send + 'static,
) -> ReplyFuture
where
    R: WireResult + Send + 'static,
{
    Box::pin(async move {
        let mut rx = first;
        for _ in 0..3 {
            match rx.await {
                Ok(result) => return result.to_reply(),
                Err(_) => rx = again(),
            }
        }
        pb::Reply {
            status: courier_protocol::v1::ErrorCode::Busy as i32,
            message: "the actor stopped; retry".into(),
            ..Default::default()
        }
    })
}

#[async_trait]
impl BusHandler for ClusterNode {
    async fn assigned(&self, partitions: Vec<Partition>) {
        tracing::info!(node = %self.node_id, count = partitions.len(), "partitions assigned");
        {
            let mut owned = lock(&self.owned);
            owned.extend(partitions.iter().copied());
            owned.sort_unstable();
            owned.dedup();
        }
        let owns = pb::node_message::Body::Owns(pb::Owns {
            node: self.node_id.to_string(),
            partitions: partitions.clone(),
        });
        self.broadcast(owns).await;
        // Connections of this node attach to the actors starting here.
        if let Some(node) = self.me.upgrade() {
            node.reattach(&partitions);
        }
    }

    async fn revoked(&self, partitions: Vec<Partition>) {
        tracing::info!(node = %self.node_id, count = partitions.len(), "partitions revoked");
        lock(&self.owned).retain(|p| !partitions.contains(p));
        if let Some(registry) = self.registry() {
            registry.retire(&partitions).await;
        }
    }

    async fn record(&self, record: ShardRecord, completion: Completion) {
        let command = match pb::ShardCommand::decode(record.payload.as_ref()) {
            Ok(command) => command,
            Err(error) => {
                tracing::error!(partition = record.partition, offset = record.offset, %error, "undecodable shard record skipped");
                completion.done();
                return;
            }
        };
        let reply_to = command.reply.clone();
        match self.dispatch(command) {
            Ok(answer) => {
                let Some(node) = self.me.upgrade() else {
                    return;
                };
                tokio::spawn(async move {
                    let reply = answer.await;
                    completion.done();
                    node.answer(reply_to, reply);
                });
            }
            Err(error) => {
                tracing::error!(partition = record.partition, offset = record.offset, %error, "shard record skipped");
                completion.done();
            }
        }
    }

    async fn node_message(&self, _from: String, payload: Bytes) {
        match pb::NodeBatch::decode(payload.as_ref()) {
            Ok(batch) => {
                for message in batch.messages {
                    self.on_node_message(message);
                }
            }
            Err(error) => tracing::error!(%error, "undecodable node message skipped"),
        }
    }
}
