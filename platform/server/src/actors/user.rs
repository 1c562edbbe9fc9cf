//! The user actor: one per user, owner of its devices' queues and connected sessions.
//!
//! Incoming messages are appended to the durable queue of every recipient device before the
//! sender hears "sent". Connected devices get entries pushed in queue order, at most
//! `push_window` unacknowledged at a time; a cumulative ack removes the acknowledged range from
//! the store and turns each acknowledged message into a delivered receipt queued for its sender.
//! Handlers that touch storage block the mailbox until they finish ([`AtomicResponse`] and
//! `ctx.wait`), so each actor applies its messages one at a time and in order.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use courier_protocol::v1::{
    CiphertextType, Envelope, QueueEmpty, Receipt, ReceiptType, ServerFrame, TypingEvent, delivery,
    server_frame,
};
use courier_protocol::{DeviceAddress, DeviceId, GroupId, UserId};
use courier_store::{EnqueueOutcome, NewEntry, QueuedEntry, Store};
use tokio::time::Instant;

use super::ActorEnv;
use super::group_messages::MemberDelivered;
use super::messages::*;
use super::registry::Registry;
use crate::clock::now_ms;
use crate::error::DeliveryError;
use crate::gateway::frames::{decode_payload, delivery_frame, envelope_payload, receipt_payload};
use crate::gateway::outbound::{Outbound, OutboundSender};
use crate::metrics::FrameKind;

/// How often an actor retries stalled pushes and checks whether it is idle.
const TICK: Duration = Duration::from_secs(5);
/// Longest client message id accepted.
const MAX_CLIENT_MESSAGE_ID: usize = 128;
/// Most message ids in one receipt.
pub const MAX_RECEIPT_IDS: usize = 256;

/// Where a pushed entry came from: what its acknowledgement turns into.
#[derive(Clone, Debug)]
enum Origin {
    /// A one-to-one message: a delivered receipt for its sender device and client id.
    Direct(DeviceAddress, String),
    /// A group message: the group actor records the delivery and tells the sender.
    Group(GroupId, u64),
    /// A receipt or a group event: nothing.
    Nothing,
}

/// A pushed entry not yet acknowledged.
struct InFlight {
    seq: u64,
    enqueued_at: u64,
    origin: Origin,
}

/// A queue entry ready to push: group references resolved to the stored message.
struct Resolved {
    seq: u64,
    enqueued_at: u64,
    /// `None` when a referenced group message has expired: the entry is skipped.
    payload: Option<Bytes>,
    origin: Origin,
}

/// The first byte of a stored `Delivery` whose content is a `StoredGroupRef` (field 15,
/// length-delimited).
const GROUP_REF_TAG: u8 = (15 << 3) | 2;

/// Resolves group references among `entries` by reading the messages they point at.
async fn resolve(
    store: &dyn Store,
    entries: Vec<QueuedEntry>,
    now: u64,
) -> Result<Vec<Resolved>, courier_store::StoreError> {
    let mut resolved = Vec::with_capacity(entries.len());
    for entry in entries {
        if entry.payload.first() != Some(&GROUP_REF_TAG) {
            let origin = origin_of(&entry.payload);
            resolved.push(Resolved {
                seq: entry.seq,
                enqueued_at: entry.enqueued_at,
                payload: Some(entry.payload),
                origin,
            });
            continue;
        }
        let reference = match decode_payload(&entry.payload) {
            Ok(delivery::Content::StoredGroupRef(reference)) => reference
                .group_id
                .parse::<GroupId>()
                .ok()
                .map(|group| (group, reference.message_seq)),
            _ => None,
        };
        let (payload, origin) = match reference {
            Some((group, message_seq)) => (
                store.group_message(group, message_seq, now).await?,
                Origin::Group(group, message_seq),
            ),
            None => {
                tracing::error!(seq = entry.seq, "undecodable group reference");
                (None, Origin::Nothing)
            }
        };
        resolved.push(Resolved {
            seq: entry.seq,
            enqueued_at: entry.enqueued_at,
            payload,
            origin,
        });
    }
    Ok(resolved)
}

/// One connected device.
struct Session {
    conn: u64,
    outbound: OutboundSender,
    /// Highest seq pushed on this connection.
    pushed_up_to: u64,
    acked_up_to: u64,
    in_flight: VecDeque<InFlight>,
    /// Everything queued up to now has been pushed.
    drained: bool,
    queue_empty_sent: bool,
}

pub struct UserActor {
    user: UserId,
    registry: Arc<Registry>,
    env: Arc<ActorEnv>,
    /// The user's current devices, loaded on first need.
    devices: Option<Arc<Vec<DeviceId>>>,
    last_seen_visible: Option<bool>,
    /// Boxed: a map allocates several slots even for the usual one device, and a session is
    /// large; idle connections at scale pay for every empty slot.
    sessions: HashMap<DeviceId, Box<Session>>,
    last_activity: Instant,
}

impl UserActor {
    pub fn new(user: UserId, registry: Arc<Registry>) -> Self {
        let env = Arc::clone(registry.env());
        UserActor {
            user,
            registry,
            env,
            devices: None,
            last_seen_visible: None,
            sessions: HashMap::new(),
            last_activity: Instant::now(),
        }
    }

    fn touch(&mut self) {
        self.last_activity = Instant::now();
    }

    fn address(&self, device: DeviceId) -> DeviceAddress {
        DeviceAddress::new(self.user, device)
    }

    /// Pushes a freshly queued entry straight from memory when the session is caught up, or
    /// leaves it to [`Self::pump`].
    fn offer_new_entry(
        &mut self,
        device: DeviceId,
        seq: u64,
        enqueued_at: u64,
        payload: &Bytes,
        origin: Origin,
    ) -> bool {
        let window = self.env.push_window;
        let Some(session) = self.sessions.get_mut(&device) else {
            return false;
        };
        let caught_up = session.drained && seq == session.pushed_up_to + 1;
        if caught_up && session.in_flight.len() < window {
            let frame = Outbound {
                bytes: delivery_frame(seq, payload),
                kind: FrameKind::Delivery,
            };
            if session.outbound.offer(frame) {
                session.pushed_up_to = seq;
                session.in_flight.push_back(InFlight {
                    seq,
                    enqueued_at,
                    origin,
                });
                self.env.metrics.entry_pushed();
                return false;
            }
        }
        session.drained = false;
        true
    }

    /// Pushes entries this actor just queued (those whose outcome is `Queued`) to connected
    /// devices, straight from memory when they are caught up, else by reading the queue (group
    /// references are always resolved from the queue). Returns how many were queued; the caller
    /// counts them in the metrics if it wrote them.
    fn take_new_entries(
        &mut self,
        entries: &[(DeviceAddress, NewEntry)],
        outcomes: Vec<EnqueueOutcome>,
        ctx: &mut Context<Self>,
        origin: impl Fn(&NewEntry) -> Origin,
    ) -> u64 {
        let mut queued = 0;
        for ((address, entry), outcome) in entries.iter().zip(outcomes) {
            let EnqueueOutcome::Queued { seq } = outcome else {
                continue;
            };
            queued += 1;
            let needs_pump = if entry.payload.first() == Some(&GROUP_REF_TAG) {
                if let Some(session) = self.sessions.get_mut(&address.device) {
                    session.drained = false;
                }
                true
            } else {
                self.offer_new_entry(
                    address.device,
                    seq,
                    entry.enqueued_at,
                    &entry.payload,
                    origin(entry),
                )
            };
            if needs_pump {
                self.pump(address.device, ctx);
            }
        }
        queued
    }

    /// Reads the device's queue past what was pushed and pushes it, up to the window.
    fn pump(&mut self, device: DeviceId, ctx: &mut Context<Self>) {
        let window = self.env.push_window;
        let Some(session) = self.sessions.get(&device) else {
            return;
        };
        if session.drained || session.in_flight.len() >= window {
            return;
        }
        let limit = window - session.in_flight.len();
        let after = session.pushed_up_to;
        let conn = session.conn;
        let store = Arc::clone(&self.env.store);
        let address = self.address(device);
        ctx.wait(
            async move {
                let now = now_ms();
                let entries = store.read_queue(address, after, limit, now).await?;
                resolve(store.as_ref(), entries, now).await
            }
            .into_actor(self)
            .map(move |result, actor, ctx| match result {
                Ok(entries) => actor.push_entries(device, conn, after, limit, entries, ctx),
                Err(error) => {
                    tracing::warn!(%address, %error, "could not read a queue; will retry")
                }
            }),
        );
    }

    fn push_entries(
        &mut self,
        device: DeviceId,
        conn: u64,
        after: u64,
        limit: usize,
        entries: Vec<Resolved>,
        ctx: &mut Context<Self>,
    ) {
        let metrics = Arc::clone(&self.env.metrics);
        let Some(session) = self.sessions.get_mut(&device) else {
            return;
        };
        // The connection changed or something was pushed meanwhile: this read is stale.
        if session.conn != conn || session.pushed_up_to != after {
            return;
        }
        let complete = entries.len() < limit;
        let mut stalled = false;
        for entry in entries {
            let Some(payload) = &entry.payload else {
                // The group message it pointed at has expired: nothing to deliver.
                session.pushed_up_to = entry.seq;
                continue;
            };
            let frame = Outbound {
                bytes: delivery_frame(entry.seq, payload),
                kind: FrameKind::Delivery,
            };
            if !session.outbound.offer(frame) {
                stalled = true;
                break;
            }
            session.pushed_up_to = entry.seq;
            session.in_flight.push_back(InFlight {
                seq: entry.seq,
                enqueued_at: entry.enqueued_at,
                origin: entry.origin,
            });
            metrics.entry_pushed();
        }
        if stalled {
            return;
        }
        if complete {
            session.drained = true;
            if !session.queue_empty_sent {
                let frame = ServerFrame {
                    body: Some(server_frame::Body::QueueEmpty(QueueEmpty {})),
                };
                session.queue_empty_sent = session
                    .outbound
                    .offer(Outbound::frame(&frame, FrameKind::QueueEmpty));
            }
        } else {
            self.pump(device, ctx);
        }
    }

    fn pump_all(&mut self, ctx: &mut Context<Self>) {
        let devices: Vec<DeviceId> = self.sessions.keys().copied().collect();
        for device in devices {
            self.pump(device, ctx);
        }
    }

    fn publish_presence(&self, online: bool, last_seen: u64) {
        let shown = if self.last_seen_visible.unwrap_or(true) {
            last_seen
        } else {
            0
        };
        self.registry.publish_presence(self.user, online, shown);
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        // Sessions of a node that went silent (cluster mode) are gone with it.
        let before = self.sessions.len();
        self.sessions.retain(|_, session| {
            let keep = !session.outbound.is_routed() || session.outbound.reachable();
            if !keep {
                // If the node is alive after all (its liveness messages were late), the device
                // reconnects and attaches again.
                session.outbound.close(
                    courier_protocol::close::GOING_AWAY,
                    "delivery interrupted; reconnect",
                );
            }
            keep
        });
        if before > 0 && self.sessions.is_empty() {
            self.publish_presence(false, now_ms());
        }
        // Pushes that stalled on a full outbound queue resume here.
        for session in self.sessions.values_mut() {
            if !session.queue_empty_sent {
                session.drained = false;
            }
        }
        self.pump_all(ctx);
        if self.sessions.is_empty() && self.last_activity.elapsed() >= self.env.idle {
            self.registry.deregister(self.user, &ctx.address());
            ctx.stop();
        }
    }
}

/// What acknowledging a stored one-to-one entry leads to.
fn origin_of(payload: &[u8]) -> Origin {
    match decode_payload(payload) {
        Ok(delivery::Content::Envelope(envelope)) => match envelope.sender_user.parse() {
            Ok(user) => Origin::Direct(
                DeviceAddress::new(user, envelope.sender_device),
                envelope.client_message_id,
            ),
            Err(_) => Origin::Nothing,
        },
        Ok(_) => Origin::Nothing,
        Err(error) => {
            tracing::error!(%error, "undecodable queue entry");
            Origin::Nothing
        }
    }
}

impl Actor for UserActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.env.metrics.actor_started();
        ctx.run_interval(TICK, |actor, ctx| actor.tick(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.env.metrics.actor_stopped();
        // Connections reached through the cluster stay open: they attach to the actor's next
        // owner. Local ones close with the server.
        for session in self.sessions.values().filter(|s| !s.outbound.is_routed()) {
            session
                .outbound
                .close(courier_protocol::close::GOING_AWAY, "server shutting down");
        }
    }
}

/// Loads the devices of `user`; `UnknownRecipient` if the user does not exist.
async fn load_devices(
    store: &dyn Store,
    user: UserId,
) -> Result<Arc<Vec<DeviceId>>, DeliveryError> {
    let devices: Vec<DeviceId> = store
        .devices(user)
        .await?
        .into_iter()
        .map(|d| d.address.device)
        .collect();
    if devices.is_empty() {
        return Err(DeliveryError::UnknownRecipient);
    }
    Ok(Arc::new(devices))
}

/// Checks that `message` carries one ciphertext per current device.
fn check_devices(
    devices: &[DeviceId],
    message: &courier_protocol::v1::SendMessage,
) -> Result<(), DeliveryError> {
    let given: Vec<DeviceId> = message.ciphertexts.iter().map(|c| c.device_id).collect();
    let missing: Vec<u32> = devices
        .iter()
        .copied()
        .filter(|d| !given.contains(d))
        .collect();
    let mut stale: Vec<u32> = given
        .iter()
        .copied()
        .filter(|d| !devices.contains(d))
        .collect();
    stale.dedup();
    if missing.is_empty() && stale.is_empty() && given.len() == devices.len() {
        return Ok(());
    }
    if missing.is_empty() && stale.is_empty() {
        return Err(DeliveryError::InvalidArgument(
            "a device appears more than once".into(),
        ));
    }
    Err(DeliveryError::DeviceMismatch { missing, stale })
}

fn validate_message(message: &courier_protocol::v1::SendMessage) -> Result<(), DeliveryError> {
    let invalid = |m: &str| Err(DeliveryError::InvalidArgument(m.to_owned()));
    if message.client_message_id.is_empty()
        || message.client_message_id.len() > MAX_CLIENT_MESSAGE_ID
    {
        return invalid("client_message_id must have 1 to 128 bytes");
    }
    if message.ciphertexts.is_empty() {
        return invalid("no ciphertexts");
    }
    for ciphertext in &message.ciphertexts {
        if ciphertext.body.is_empty() {
            return invalid("empty ciphertext");
        }
        match CiphertextType::try_from(ciphertext.r#type) {
            Ok(CiphertextType::Prekey | CiphertextType::Message) => {}
            _ => return invalid("unknown ciphertext type"),
        }
    }
    Ok(())
}

impl Handler<Submit> for UserActor {
    type Result = AtomicResponse<Self, Result<Accepted, DeliveryError>>;

    fn handle(&mut self, submit: Submit, _ctx: &mut Self::Context) -> Self::Result {
        self.touch();
        let store = Arc::clone(&self.env.store);
        let cached = self.devices.clone();
        let user = self.user;
        let retention = self.env.retention_ms;
        let work = async move {
            validate_message(&submit.message)?;
            let mut devices = match cached {
                Some(devices) => devices,
                None => load_devices(store.as_ref(), user).await?,
            };
            if check_devices(&devices, &submit.message).is_err() {
                // The cache may be stale: decide on fresh data.
                devices = load_devices(store.as_ref(), user).await?;
                check_devices(&devices, &submit.message)?;
            }
            let now = now_ms();
            let message = &submit.message;
            let mut entries = Vec::with_capacity(message.ciphertexts.len());
            for ciphertext in &message.ciphertexts {
                let payload = envelope_payload(Envelope {
                    sender_user: submit.from.user.to_string(),
                    sender_device: submit.from.device,
                    client_message_id: message.client_message_id.clone(),
                    timestamp_ms: message.timestamp_ms,
                    server_timestamp_ms: now,
                    r#type: ciphertext.r#type,
                    ciphertext: ciphertext.body.clone(),
                });
                entries.push((
                    DeviceAddress::new(user, ciphertext.device_id),
                    NewEntry {
                        dedupe: Some((submit.from, message.client_message_id.clone())),
                        enqueued_at: now,
                        expires_at: now + retention,
                        payload,
                    },
                ));
            }
            let outcomes = store.enqueue(entries.clone()).await?;
            Ok((
                devices,
                entries,
                outcomes,
                submit.from,
                message.client_message_id.clone(),
                now,
            ))
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            |result: Result<_, DeliveryError>, actor, ctx| {
                if matches!(result, Err(DeliveryError::UnknownRecipient))
                    && actor.sessions.is_empty()
                {
                    // No such user: do not keep an actor alive for a name anyone can invent.
                    actor.registry.deregister(actor.user, &ctx.address());
                    ctx.stop();
                }
                let (devices, entries, outcomes, from, client_message_id, now) = result?;
                actor.devices = Some(devices);
                let queued = actor.take_new_entries(&entries, outcomes, ctx, |_| {
                    Origin::Direct(from, client_message_id.clone())
                });
                actor.env.metrics.entries_queued(queued);
                let duplicate = queued == 0;
                if !duplicate {
                    actor.env.metrics.message_accepted();
                }
                Ok(Accepted {
                    server_timestamp_ms: now,
                    duplicate,
                })
            },
        )))
    }
}

impl Handler<SubmitReceipt> for UserActor {
    type Result = AtomicResponse<Self, Result<(), DeliveryError>>;

    fn handle(&mut self, receipt: SubmitReceipt, _ctx: &mut Self::Context) -> Self::Result {
        self.touch();
        let store = Arc::clone(&self.env.store);
        let user = self.user;
        let retention = self.env.retention_ms;
        let work = async move {
            if receipt.message_ids.is_empty() || receipt.message_ids.len() > MAX_RECEIPT_IDS {
                return Err(DeliveryError::InvalidArgument(format!(
                    "a receipt names 1 to {MAX_RECEIPT_IDS} messages"
                )));
            }
            let devices = load_devices(store.as_ref(), user).await?;
            let now = now_ms();
            let payload = receipt_payload(Receipt {
                r#type: receipt.kind as i32,
                from_user: receipt.from.user.to_string(),
                from_device: receipt.from.device,
                client_message_ids: receipt.message_ids.as_ref().clone(),
                timestamp_ms: now,
                group_id: String::new(),
            });
            let entries: Vec<_> = devices
                .iter()
                .map(|device| {
                    (
                        DeviceAddress::new(user, *device),
                        NewEntry {
                            dedupe: None,
                            enqueued_at: now,
                            expires_at: now + retention,
                            payload: payload.clone(),
                        },
                    )
                })
                .collect();
            let outcomes = store.enqueue(entries.clone()).await?;
            Ok((devices, entries, outcomes))
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            |result: Result<_, DeliveryError>, actor, ctx| {
                let (devices, entries, outcomes) = result?;
                actor.devices = Some(devices);
                let queued = actor.take_new_entries(&entries, outcomes, ctx, |_| Origin::Nothing);
                actor.env.metrics.entries_queued(queued);
                Ok(())
            },
        )))
    }
}

impl Handler<Connect> for UserActor {
    type Result = ();

    fn handle(&mut self, connect: Connect, ctx: &mut Self::Context) {
        self.touch();
        if self
            .sessions
            .get(&connect.device)
            .is_some_and(|s| s.conn == connect.conn)
        {
            // The same connection attached again (its node saw this actor's shard move).
            return;
        }
        let was_offline = self.sessions.is_empty();
        let session = Session {
            conn: connect.conn,
            outbound: connect.outbound,
            pushed_up_to: 0,
            acked_up_to: 0,
            in_flight: VecDeque::new(),
            drained: false,
            queue_empty_sent: false,
        };
        if let Some(old) = self.sessions.insert(connect.device, Box::new(session)) {
            old.outbound.close(
                courier_protocol::close::REPLACED,
                "replaced by a newer connection",
            );
        }
        if was_offline {
            self.publish_presence(true, 0);
        }
        if self.last_seen_visible.is_none() {
            let store = Arc::clone(&self.env.store);
            let user = self.user;
            ctx.wait(
                async move { store.account(user).await }
                    .into_actor(self)
                    .map(|result, actor, _| {
                        if let Ok(Some(account)) = result {
                            actor.last_seen_visible = Some(account.last_seen_visible);
                        }
                    }),
            );
        }
        self.pump(connect.device, ctx);
    }
}

impl Handler<Disconnect> for UserActor {
    type Result = ();

    fn handle(&mut self, disconnect: Disconnect, ctx: &mut Self::Context) {
        self.touch();
        let current = self
            .sessions
            .get(&disconnect.device)
            .is_some_and(|s| s.conn == disconnect.conn);
        if !current {
            if self.sessions.is_empty() && self.registry.is_clustered() {
                // The session was attached to this actor's previous owner: the user went
                // offline all the same.
                self.publish_presence(false, now_ms());
            }
            return;
        }
        self.sessions.remove(&disconnect.device);
        if self.sessions.is_empty() {
            let now = now_ms();
            self.publish_presence(false, now);
            let store = Arc::clone(&self.env.store);
            let user = self.user;
            ctx.spawn(
                async move {
                    if let Err(error) = store.set_last_seen(user, now).await {
                        tracing::warn!(%user, %error, "could not record last seen");
                    }
                }
                .into_actor(self),
            );
        }
    }
}

impl Handler<AckUpTo> for UserActor {
    // Atomic: the ack is answered (and, in a cluster, its record completed) once it is applied.
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, ack: AckUpTo, _ctx: &mut Self::Context) -> Self::Result {
        self.touch();
        let nothing = || AtomicResponse::new(Box::pin(actix::fut::ready(())));
        let Some(session) = self.sessions.get_mut(&ack.device) else {
            return nothing();
        };
        if session.conn != ack.conn {
            return nothing();
        }
        // Only what was pushed on this connection can be acknowledged on it.
        let up_to = ack.up_to.min(session.pushed_up_to);
        if up_to <= session.acked_up_to {
            return nothing();
        }
        let now = now_ms();
        let mut receipts: HashMap<UserId, Vec<String>> = HashMap::new();
        let mut group_deliveries = Vec::new();
        let mut acked = 0u64;
        while session.in_flight.front().is_some_and(|f| f.seq <= up_to) {
            let Some(entry) = session.in_flight.pop_front() else {
                break;
            };
            acked += 1;
            let latency = now.saturating_sub(entry.enqueued_at) as f64 / 1000.0;
            match entry.origin {
                Origin::Direct(sender, client_message_id) => {
                    self.env.metrics.delivery_latency(latency);
                    receipts
                        .entry(sender.user)
                        .or_default()
                        .push(client_message_id);
                }
                Origin::Group(group, message_seq) => {
                    self.env.metrics.delivery_latency(latency);
                    group_deliveries.push((group, message_seq));
                }
                Origin::Nothing => {}
            }
        }
        session.acked_up_to = up_to;
        let store = Arc::clone(&self.env.store);
        let registry = Arc::clone(&self.registry);
        let from = DeviceAddress::new(self.user, ack.device);
        let retention = self.env.retention_ms;
        let work = async move {
            // Receipts are queued before the range is removed: a crash in between repeats a
            // receipt (clients ignore repeats) but never loses a message.
            let mut entries = Vec::new();
            for (sender, ids) in receipts {
                for chunk in ids.chunks(MAX_RECEIPT_IDS) {
                    let payload = receipt_payload(Receipt {
                        r#type: ReceiptType::Delivered as i32,
                        from_user: from.user.to_string(),
                        from_device: from.device,
                        client_message_ids: chunk.to_vec(),
                        timestamp_ms: now,
                        group_id: String::new(),
                    });
                    for device in store.devices(sender).await? {
                        entries.push((
                            device.address,
                            NewEntry {
                                dedupe: None,
                                enqueued_at: now,
                                expires_at: now + retention,
                                payload: payload.clone(),
                            },
                        ));
                    }
                }
            }
            let receipts = entries.len() as u64;
            registry.enqueue_for(entries).await?;
            // Group deliveries are handed to the groups' actors before the range goes, so that
            // a crash in between repeats them rather than losing them.
            for (group, message_seq) in group_deliveries {
                let delivered = MemberDelivered {
                    member: from,
                    message_seq,
                };
                registry.tell_group(group, delivered).await?;
            }
            store.ack_queue(from, up_to).await?;
            Ok::<_, DeliveryError>(receipts)
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            move |result, actor, ctx| {
                match result {
                    Ok(receipts) => {
                        // The senders' actors got the receipts from the registry (pushed from
                        // memory when their devices are caught up).
                        actor.env.metrics.entries_queued(receipts);
                        actor.env.metrics.entries_acked(acked);
                    }
                    Err(error) => {
                        // The entries stay queued and are pushed again on the next connection.
                        tracing::warn!(device = %from, %error, "could not apply an ack");
                    }
                }
                actor.pump_all(ctx);
            },
        )))
    }
}

impl Handler<TypingNotice> for UserActor {
    type Result = ();

    fn handle(&mut self, notice: TypingNotice, _ctx: &mut Self::Context) {
        let frame = ServerFrame {
            body: Some(server_frame::Body::Typing(TypingEvent {
                from_user: notice.from.to_string(),
                typing: notice.typing,
            })),
        };
        for session in self.sessions.values() {
            // Typing is best effort: dropped when the connection is backed up.
            session
                .outbound
                .offer(Outbound::frame(&frame, FrameKind::Other));
        }
    }
}

impl Handler<EntriesQueued> for UserActor {
    type Result = ();

    fn handle(&mut self, queued: EntriesQueued, ctx: &mut Self::Context) {
        self.touch();
        self.take_new_entries(&queued.entries, queued.outcomes, ctx, |entry| {
            origin_of(&entry.payload)
        });
    }
}

impl Handler<QueueChanged> for UserActor {
    type Result = ();

    fn handle(&mut self, _: QueueChanged, ctx: &mut Self::Context) {
        self.touch();
        for session in self.sessions.values_mut() {
            session.drained = false;
        }
        self.pump_all(ctx);
    }
}

impl Handler<DevicesChanged> for UserActor {
    type Result = ();

    fn handle(&mut self, _: DevicesChanged, ctx: &mut Self::Context) {
        self.touch();
        self.devices = None;
        let store = Arc::clone(&self.env.store);
        let user = self.user;
        ctx.wait(
            async move { store.devices(user).await }
                .into_actor(self)
                .map(|result, actor, _| {
                    let Ok(devices) = result else {
                        return;
                    };
                    let current: Vec<DeviceId> = devices.iter().map(|d| d.address.device).collect();
                    actor.sessions.retain(|device, session| {
                        let keep = current.contains(device);
                        if !keep {
                            session
                                .outbound
                                .close(courier_protocol::close::DEVICE_REMOVED, "device removed");
                        }
                        keep
                    });
                    actor.devices = Some(Arc::new(current));
                }),
        );
    }
}

impl Handler<EnqueueEntries> for UserActor {
    type Result = AtomicResponse<Self, Result<(), DeliveryError>>;

    fn handle(&mut self, enqueue: EnqueueEntries, _ctx: &mut Self::Context) -> Self::Result {
        self.touch();
        let store = Arc::clone(&self.env.store);
        let user = self.user;
        let entries: Vec<(DeviceAddress, NewEntry)> = enqueue
            .entries
            .iter()
            .map(|(device, entry)| (DeviceAddress::new(user, *device), entry.clone()))
            .collect();
        let work = async move {
            let outcomes = store.enqueue(entries.clone()).await?;
            Ok::<_, DeliveryError>((entries, outcomes))
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(|result, actor, ctx| {
            let (entries, outcomes) = result?;
            let queued =
                actor.take_new_entries(&entries, outcomes, ctx, |entry| origin_of(&entry.payload));
            actor.env.metrics.entries_queued(queued);
            Ok(())
        })))
    }
}

impl Handler<Retire> for UserActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Self::Context) {
        // Handlers that write block the mailbox until they finish, so everything handed over
        // before this message is persisted by now.
        ctx.stop();
    }
}

impl Handler<PrivacyChanged> for UserActor {
    type Result = ();

    fn handle(&mut self, change: PrivacyChanged, _ctx: &mut Self::Context) {
        self.last_seen_visible = Some(change.last_seen_visible);
    }
}
