//! The group actor: one per group. It applies membership changes one at a time (so concurrent
//! adds and removes end in one state, and every member receives the same events in the same
//! order) and fans each group message out: the ciphertext is stored once and every member
//! device's queue gets a small reference to it.
//!
//! Everything the actor keeps (the group record, the last message number, members' devices) is
//! rebuilt from storage when it starts, so a group can move between nodes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use courier_protocol::v1::{
    Delivery, GroupEnvelope, GroupEvent, GroupInfo, MemberReceipt, Receipt, ReceiptType,
    StoredGroupRef, delivery,
};
use courier_protocol::{DeviceAddress, DeviceId, GroupId, UserId};
use courier_store::{GroupEnqueueOutcome, GroupRecord, NewEntry, Store};
use prost::Message as _;
use tokio::time::Instant;

use super::ActorEnv;
use super::group_messages::*;
use super::group_rules::{self, Change};
use super::messages::{Accepted, QueueChanged};
use super::registry::Registry;
use crate::clock::now_ms;
use crate::error::DeliveryError;
use crate::gateway::frames::{decode_payload, receipt_payload};

/// How often an idle group actor checks whether to stop.
const TICK: Duration = Duration::from_secs(10);
/// How long members' device lists are trusted before they are read again.
const DEVICES_FRESH_FOR: Duration = Duration::from_secs(30);
/// Longest client message id accepted.
const MAX_CLIENT_MESSAGE_ID: usize = 128;

/// What the actor knows once loaded.
#[derive(Clone)]
struct Loaded {
    /// `None` until the group is created.
    record: Option<Arc<GroupRecord>>,
    last_message_seq: u64,
    devices: Arc<HashMap<UserId, Vec<DeviceId>>>,
    devices_read_at: Instant,
}

pub struct GroupActor {
    id: GroupId,
    registry: Arc<Registry>,
    env: Arc<ActorEnv>,
    loaded: Option<Loaded>,
    last_activity: Instant,
}

impl GroupActor {
    pub fn new(id: GroupId, registry: Arc<Registry>) -> Self {
        let env = Arc::clone(registry.env());
        GroupActor {
            id,
            registry,
            env,
            loaded: None,
            last_activity: Instant::now(),
        }
    }

    fn touch(&mut self) {
        self.last_activity = Instant::now();
    }

    /// Stops an actor that was activated for a group that does not exist, so that requests for
    /// invented ids do not keep actors alive.
    fn forget_if_unknown<T>(&mut self, result: &Result<T, DeliveryError>, ctx: &mut Context<Self>) {
        let exists = self.loaded.as_ref().is_some_and(|l| l.record.is_some());
        if matches!(result, Err(DeliveryError::UnknownGroup)) && !exists {
            self.registry.deregister_group(self.id, &ctx.address());
            ctx.stop();
        }
    }

    fn nudge(&self, users: impl IntoIterator<Item = UserId>) {
        for user in users {
            self.registry.notify(user, QueueChanged);
        }
    }
}

impl Actor for GroupActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(TICK, |actor, ctx| {
            if actor.last_activity.elapsed() >= actor.env.idle {
                actor.registry.deregister_group(actor.id, &ctx.address());
                ctx.stop();
            }
        });
    }
}

/// Reads the group and its members' devices.
async fn load(store: &dyn Store, id: GroupId) -> Result<Loaded, DeliveryError> {
    let record = store.group(id).await?.map(Arc::new);
    let last_message_seq = store.last_group_message_seq(id).await?;
    let devices = match &record {
        Some(record) => read_devices(store, record).await?,
        None => HashMap::new(),
    };
    Ok(Loaded {
        record,
        last_message_seq,
        devices: Arc::new(devices),
        devices_read_at: Instant::now(),
    })
}

async fn read_devices(
    store: &dyn Store,
    record: &GroupRecord,
) -> Result<HashMap<UserId, Vec<DeviceId>>, DeliveryError> {
    let mut devices = HashMap::with_capacity(record.members.len());
    for member in &record.members {
        let list = store
            .devices(member.user)
            .await?
            .into_iter()
            .map(|d| d.address.device)
            .collect();
        devices.insert(member.user, list);
    }
    Ok(devices)
}

/// `loaded`, or what storage says.
async fn current(
    store: &dyn Store,
    id: GroupId,
    loaded: Option<Loaded>,
) -> Result<Loaded, DeliveryError> {
    match loaded {
        Some(loaded) => Ok(loaded),
        None => load(store, id).await,
    }
}

/// The encoded `Delivery` content of a group event for `viewer`.
fn event_payload(record: &GroupRecord, change: &Change, by: UserId, viewer: UserId) -> Bytes {
    let event = GroupEvent {
        group_id: record.id.to_string(),
        revision: record.revision,
        actor: by.to_string(),
        kind: change.kind as i32,
        users: change.users.iter().map(|u| u.to_string()).collect(),
        timestamp_ms: now_ms(),
        group: Some(group_rules::info_for(record, viewer)),
    };
    Bytes::from(
        Delivery {
            seq: 0,
            content: Some(delivery::Content::GroupEvent(event)),
        }
        .encode_to_vec(),
    )
}

/// Writes a changed group and queues its event for every member and every departed user.
async fn commit_change(
    store: &dyn Store,
    queues: &Registry,
    record: &GroupRecord,
    change: &Change,
    by: UserId,
    retention_ms: u64,
) -> Result<(HashMap<UserId, Vec<DeviceId>>, Vec<UserId>), DeliveryError> {
    store.put_group(record.clone()).await?;
    let devices = read_devices(store, record).await?;
    let now = now_ms();
    let mut audience: Vec<UserId> = record.members.iter().map(|m| m.user).collect();
    audience.extend(change.departed.iter().copied());
    let mut entries = Vec::new();
    for user in &audience {
        let payload = event_payload(record, change, by, *user);
        let user_devices = match devices.get(user) {
            Some(list) => list.clone(),
            None => store
                .devices(*user)
                .await?
                .into_iter()
                .map(|d| d.address.device)
                .collect(),
        };
        for device in user_devices {
            entries.push((
                DeviceAddress::new(*user, device),
                NewEntry {
                    dedupe: None,
                    enqueued_at: now,
                    expires_at: now + retention_ms,
                    payload: payload.clone(),
                },
            ));
        }
    }
    queues.enqueue_for(entries).await?;
    Ok((devices, audience))
}

/// Makes sure every user exists.
async fn check_users_exist(store: &dyn Store, users: &[String]) -> Result<(), DeliveryError> {
    for user in users {
        let id: UserId = user
            .parse()
            .map_err(|e: courier_protocol::ids::InvalidUserId| {
                DeliveryError::InvalidArgument(e.to_string())
            })?;
        if store.account(id).await?.is_none() {
            return Err(DeliveryError::InvalidArgument(format!("no such user {id}")));
        }
    }
    Ok(())
}

/// A new random invite code: 128 bits, URL-safe.
fn invite_code() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // Without randomness no code is safe; an empty one never matches.
        return String::new();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

type ChangeResult = Result<(Loaded, GroupInfo, Vec<UserId>), DeliveryError>;

impl GroupActor {
    /// Runs a change computed by `decide` from the current record, commits it, and answers with
    /// the group as `by` sees it afterwards.
    fn change(
        &mut self,
        by: UserId,
        decide: impl FnOnce(Option<&GroupRecord>) -> Result<(GroupRecord, Change), DeliveryError>
        + 'static,
        precheck: Option<Vec<String>>,
    ) -> AtomicResponse<Self, Result<GroupInfo, DeliveryError>> {
        self.touch();
        let store = Arc::clone(&self.env.store);
        let registry = Arc::clone(&self.registry);
        let id = self.id;
        let loaded = self.loaded.clone();
        let retention = self.env.retention_ms;
        let work = async move {
            let mut loaded = current(store.as_ref(), id, loaded).await?;
            if let Some(users) = precheck {
                check_users_exist(store.as_ref(), &users).await?;
            }
            let (record, change) = decide(loaded.record.as_deref())?;
            let (devices, audience) =
                commit_change(store.as_ref(), &registry, &record, &change, by, retention).await?;
            let info = group_rules::info_for(&record, by);
            loaded.record = Some(Arc::new(record));
            loaded.devices = Arc::new(devices);
            loaded.devices_read_at = Instant::now();
            Ok((loaded, info, audience))
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            |result: ChangeResult, actor, ctx| {
                actor.forget_if_unknown(&result, ctx);
                let (loaded, info, audience) = result?;
                actor.loaded = Some(loaded);
                actor.nudge(audience);
                Ok(info)
            },
        )))
    }
}

impl Handler<CreateGroup> for GroupActor {
    type Result = AtomicResponse<Self, Result<GroupInfo, DeliveryError>>;

    fn handle(&mut self, create: CreateGroup, _ctx: &mut Self::Context) -> Self::Result {
        let id = self.id;
        let limit = self.env.group_size_limit;
        let by = create.by.user;
        let members = create.create.members.clone();
        let precheck = members.clone();
        self.change(
            by,
            move |existing| {
                if existing.is_some() {
                    return Err(DeliveryError::InvalidArgument("the group exists".into()));
                }
                let members: Vec<UserId> = members
                    .iter()
                    .map(|u| u.parse())
                    .collect::<Result<_, _>>()
                    .map_err(|e: courier_protocol::ids::InvalidUserId| {
                        DeliveryError::InvalidArgument(e.to_string())
                    })?;
                group_rules::create(
                    id,
                    by,
                    &create.create.subject,
                    &members,
                    create.create.settings.as_ref(),
                    limit,
                    now_ms(),
                )
            },
            Some(precheck),
        )
    }
}

impl Handler<UpdateGroup> for GroupActor {
    type Result = AtomicResponse<Self, Result<GroupInfo, DeliveryError>>;

    fn handle(&mut self, update: UpdateGroup, _ctx: &mut Self::Context) -> Self::Result {
        use courier_protocol::v1::group_update::Change as C;
        let by = update.by.user;
        let precheck = match &update.update.change {
            Some(C::AddMembers(list)) => Some(list.users.clone()),
            _ => None,
        };
        self.change(
            by,
            move |existing| {
                let record = existing.ok_or(DeliveryError::UnknownGroup)?;
                let change = update.update.change.as_ref().ok_or_else(|| {
                    DeliveryError::InvalidArgument("an update needs a change".into())
                })?;
                group_rules::apply(record, by, change, now_ms(), invite_code)
            },
            precheck,
        )
    }
}

impl Handler<JoinByInvite> for GroupActor {
    type Result = AtomicResponse<Self, Result<GroupInfo, DeliveryError>>;

    fn handle(&mut self, join: JoinByInvite, _ctx: &mut Self::Context) -> Self::Result {
        let by = join.by.user;
        self.change(
            by,
            move |existing| {
                let record = existing.ok_or(DeliveryError::UnknownGroup)?;
                group_rules::join(record, by, &join.code, now_ms())
            },
            None,
        )
    }
}

impl Handler<GetGroup> for GroupActor {
    type Result = AtomicResponse<Self, Result<GroupInfo, DeliveryError>>;

    fn handle(&mut self, get: GetGroup, _ctx: &mut Self::Context) -> Self::Result {
        self.touch();
        let store = Arc::clone(&self.env.store);
        let id = self.id;
        let loaded = self.loaded.clone();
        let work = async move { current(store.as_ref(), id, loaded).await };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            move |result: Result<Loaded, DeliveryError>, actor, ctx| {
                let loaded = result?;
                actor.loaded = Some(loaded.clone());
                let record = loaded.record.clone().ok_or(DeliveryError::UnknownGroup);
                actor.forget_if_unknown(&record, ctx);
                let record = record?;
                if !group_rules::is_member(&record, get.by.user) {
                    return Err(DeliveryError::NotAMember);
                }
                Ok(group_rules::info_for(&record, get.by.user))
            },
        )))
    }
}

impl Handler<SendToGroup> for GroupActor {
    type Result = AtomicResponse<Self, Result<Accepted, DeliveryError>>;

    fn handle(&mut self, send: SendToGroup, _ctx: &mut Self::Context) -> Self::Result {
        self.touch();
        let store = Arc::clone(&self.env.store);
        let registry = Arc::clone(&self.registry);
        let id = self.id;
        let loaded = self.loaded.clone();
        let retention = self.env.retention_ms;
        let work = async move {
            let message = &send.send;
            if message.client_message_id.is_empty()
                || message.client_message_id.len() > MAX_CLIENT_MESSAGE_ID
            {
                return Err(DeliveryError::InvalidArgument(
                    "client_message_id must have 1 to 128 bytes".into(),
                ));
            }
            if message.ciphertext.is_empty() {
                return Err(DeliveryError::InvalidArgument("empty ciphertext".into()));
            }
            let mut loaded = current(store.as_ref(), id, loaded).await?;
            let record = loaded.record.clone().ok_or(DeliveryError::UnknownGroup)?;
            if !group_rules::is_member(&record, send.from.user) {
                return Err(DeliveryError::NotAMember);
            }
            if loaded.devices_read_at.elapsed() >= DEVICES_FRESH_FOR {
                loaded.devices = Arc::new(read_devices(store.as_ref(), &record).await?);
                loaded.devices_read_at = Instant::now();
            }
            let now = now_ms();
            let message_seq = loaded.last_message_seq + 1;
            let body = Bytes::from(
                Delivery {
                    seq: 0,
                    content: Some(delivery::Content::GroupEnvelope(GroupEnvelope {
                        group_id: id.to_string(),
                        sender_user: send.from.user.to_string(),
                        sender_device: send.from.device,
                        client_message_id: message.client_message_id.clone(),
                        timestamp_ms: message.timestamp_ms,
                        server_timestamp_ms: now,
                        ciphertext: message.ciphertext.clone(),
                    })),
                }
                .encode_to_vec(),
            );
            let reference = Bytes::from(
                Delivery {
                    seq: 0,
                    content: Some(delivery::Content::StoredGroupRef(StoredGroupRef {
                        group_id: id.to_string(),
                        message_seq,
                    })),
                }
                .encode_to_vec(),
            );
            let expires_at = now + retention;
            let mut entries = Vec::new();
            for member in &record.members {
                for device in loaded.devices.get(&member.user).into_iter().flatten() {
                    let address = DeviceAddress::new(member.user, *device);
                    // Every member device but the sending one.
                    if address == send.from {
                        continue;
                    }
                    entries.push((
                        address,
                        NewEntry {
                            dedupe: None,
                            enqueued_at: now,
                            expires_at,
                            payload: reference.clone(),
                        },
                    ));
                }
            }
            let fan_out = entries.len() as u64;
            let sender = (send.from, message.client_message_id.clone());
            let outcome = if registry.is_clustered() {
                // Member queues have their own writers (their users' actors, anywhere in the
                // cluster): store the body once, then hand each member its references. A repeat
                // of the send hands them again (a crash may have cut the first hand-over short);
                // the members' actors keep one reference each.
                let outcome = store
                    .enqueue_group_message(
                        id,
                        message_seq,
                        sender.clone(),
                        body,
                        expires_at,
                        Vec::new(),
                    )
                    .await?;
                let seq = match outcome {
                    GroupEnqueueOutcome::Duplicate { message_seq } => message_seq,
                    GroupEnqueueOutcome::Queued { .. } => message_seq,
                };
                let references = group_references(id, seq, &sender, &entries);
                registry.enqueue_for(references).await?;
                outcome
            } else {
                store
                    .enqueue_group_message(id, message_seq, sender, body, expires_at, entries)
                    .await?
            };
            let members: Vec<UserId> = record.members.iter().map(|m| m.user).collect();
            Ok((loaded, outcome, message_seq, members, fan_out, now))
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            |result: Result<_, DeliveryError>, actor, ctx| {
                actor.forget_if_unknown(&result, ctx);
                if matches!(
                    result,
                    Err(DeliveryError::Internal(_) | DeliveryError::Unavailable(_))
                ) {
                    // The write may have landed or the numbering drifted: read it all again.
                    actor.loaded = None;
                }
                let (mut loaded, outcome, message_seq, members, fan_out, now) = result?;
                let duplicate = matches!(outcome, GroupEnqueueOutcome::Duplicate { .. });
                if !duplicate {
                    loaded.last_message_seq = message_seq;
                    actor.env.metrics.group_message(fan_out);
                    actor.nudge(members);
                }
                actor.loaded = Some(loaded);
                Ok(Accepted {
                    server_timestamp_ms: now,
                    duplicate,
                })
            },
        )))
    }
}

/// The member queue entries of a group message as handed to other actors in a cluster: each
/// points at message `seq` and carries a de-duplication key of its own (the sender device and
/// `group:<id>:<client id>`), so that a repeated hand-over queues nothing twice.
fn group_references(
    group: GroupId,
    seq: u64,
    sender: &(DeviceAddress, String),
    entries: &[(DeviceAddress, NewEntry)],
) -> Vec<(DeviceAddress, NewEntry)> {
    let payload = Bytes::from(
        Delivery {
            seq: 0,
            content: Some(delivery::Content::StoredGroupRef(StoredGroupRef {
                group_id: group.to_string(),
                message_seq: seq,
            })),
        }
        .encode_to_vec(),
    );
    let key = format!("group:{group}:{}", sender.1);
    entries
        .iter()
        .map(|(address, entry)| {
            (
                *address,
                NewEntry {
                    dedupe: Some((sender.0, key.clone())),
                    payload: payload.clone(),
                    ..entry.clone()
                },
            )
        })
        .collect()
}

/// Records a receipt and queues it for the message's sender.
async fn record_and_forward(
    store: &dyn Store,
    queues: &Registry,
    group: GroupId,
    message_seq: u64,
    member: DeviceAddress,
    read: bool,
    retention_ms: u64,
) -> Result<Option<UserId>, DeliveryError> {
    let now = now_ms();
    store
        .record_group_receipt(group, message_seq, member.user, receipt_kind(read), now)
        .await?;
    let Some(body) = store.group_message(group, message_seq, now).await? else {
        return Ok(None);
    };
    let Ok(delivery::Content::GroupEnvelope(envelope)) = decode_payload(&body) else {
        return Ok(None);
    };
    let Ok(sender) = envelope.sender_user.parse::<UserId>() else {
        return Ok(None);
    };
    if sender == member.user {
        return Ok(None);
    }
    let payload = receipt_payload(Receipt {
        r#type: if read {
            ReceiptType::Read as i32
        } else {
            ReceiptType::Delivered as i32
        },
        from_user: member.user.to_string(),
        from_device: member.device,
        client_message_ids: vec![envelope.client_message_id],
        timestamp_ms: now,
        group_id: group.to_string(),
    });
    let entries = store
        .devices(sender)
        .await?
        .into_iter()
        .map(|device| {
            (
                device.address,
                NewEntry {
                    dedupe: None,
                    enqueued_at: now,
                    expires_at: now + retention_ms,
                    payload: payload.clone(),
                },
            )
        })
        .collect();
    queues.enqueue_for(entries).await?;
    Ok(Some(sender))
}

impl Handler<MemberDelivered> for GroupActor {
    // Atomic: answered (in a cluster: its record completed) once the receipt is recorded.
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, delivered: MemberDelivered, _ctx: &mut Self::Context) -> Self::Result {
        self.touch();
        let store = Arc::clone(&self.env.store);
        let registry = Arc::clone(&self.registry);
        let id = self.id;
        let retention = self.env.retention_ms;
        let work = async move {
            record_and_forward(
                store.as_ref(),
                &registry,
                id,
                delivered.message_seq,
                delivered.member,
                false,
                retention,
            )
            .await
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            |result, actor, _ctx| match result {
                Ok(Some(sender)) => actor.nudge([sender]),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(group = %actor.id, %error, "delivery receipt lost")
                }
            },
        )))
    }
}

impl Handler<MemberRead> for GroupActor {
    type Result = AtomicResponse<Self, Result<(), DeliveryError>>;

    fn handle(&mut self, read: MemberRead, _ctx: &mut Self::Context) -> Self::Result {
        self.touch();
        let store = Arc::clone(&self.env.store);
        let registry = Arc::clone(&self.registry);
        let id = self.id;
        let loaded = self.loaded.clone();
        let retention = self.env.retention_ms;
        let work = async move {
            if read.message_ids.is_empty() || read.message_ids.len() > super::user::MAX_RECEIPT_IDS
            {
                return Err(DeliveryError::InvalidArgument(format!(
                    "a receipt names 1 to {} messages",
                    super::user::MAX_RECEIPT_IDS
                )));
            }
            let loaded = current(store.as_ref(), id, loaded).await?;
            let record = loaded.record.clone().ok_or(DeliveryError::UnknownGroup)?;
            if !group_rules::is_member(&record, read.member.user) {
                return Err(DeliveryError::NotAMember);
            }
            let sender_devices = store.devices(read.sender).await?;
            let mut notified = None;
            for client_message_id in read.message_ids.iter() {
                for device in &sender_devices {
                    let seq = store
                        .group_message_seq(id, device.address, client_message_id)
                        .await?;
                    if let Some(seq) = seq {
                        notified = record_and_forward(
                            store.as_ref(),
                            &registry,
                            id,
                            seq,
                            read.member,
                            true,
                            retention,
                        )
                        .await?
                        .or(notified);
                    }
                }
            }
            Ok((loaded, notified))
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            |result: Result<_, DeliveryError>, actor, _ctx| {
                let (loaded, notified) = result?;
                actor.loaded = Some(loaded);
                actor.nudge(notified);
                Ok(())
            },
        )))
    }
}

impl Handler<super::messages::Retire> for GroupActor {
    type Result = ();

    fn handle(&mut self, _: super::messages::Retire, ctx: &mut Self::Context) {
        // Changes and sends block the mailbox until they are written: nothing is under way.
        ctx.stop();
    }
}

impl Handler<GetMessageInfo> for GroupActor {
    type Result = AtomicResponse<Self, Result<Vec<MemberReceipt>, DeliveryError>>;

    fn handle(&mut self, get: GetMessageInfo, _ctx: &mut Self::Context) -> Self::Result {
        self.touch();
        let store = Arc::clone(&self.env.store);
        let id = self.id;
        let loaded = self.loaded.clone();
        let work = async move {
            let loaded = current(store.as_ref(), id, loaded).await?;
            let record = loaded.record.clone().ok_or(DeliveryError::UnknownGroup)?;
            if !group_rules::is_member(&record, get.by.user) {
                return Err(DeliveryError::NotAMember);
            }
            let seq = store
                .group_message_seq(id, get.by, &get.client_message_id)
                .await?
                .ok_or_else(|| {
                    DeliveryError::InvalidArgument(
                        "no message with this id from this device in the group".into(),
                    )
                })?;
            let receipts = store.group_receipts(id, seq).await?;
            let members = record
                .members
                .iter()
                .filter(|m| m.user != get.by.user)
                .map(|m| {
                    let found = receipts.iter().find(|r| r.user == m.user);
                    MemberReceipt {
                        user: m.user.to_string(),
                        delivered_at_ms: found.map(|r| r.delivered_at).unwrap_or(0),
                        read_at_ms: found.map(|r| r.read_at).unwrap_or(0),
                    }
                })
                .collect();
            Ok((loaded, members))
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            |result: Result<_, DeliveryError>, actor, _ctx| {
                let (loaded, members) = result?;
                actor.loaded = Some(loaded);
                Ok(members)
            },
        )))
    }
}
