//! Groups over the gateway: management requests (answered by `GroupResult`), group messages
//! with Sender Keys, and the group side of receiving.
//!
//! Sending a group message ([`Messenger::send_group_text`]):
//! 1. refresh the group's description (so a member who just joined gets the key);
//! 2. make sure this device has a current Sender Key, rotating it if the membership shrank
//!    since it was created ([`Groups::prepare_sender`]);
//! 3. send the key (`Content.sender_key`) over the pairwise sessions to every member whose
//!    devices do not all hold it, one `SendMessage` per user, and wait for each to be "sent":
//!    queues keep per-device order, so every member device gets the key before the message;
//! 4. encrypt the `Content` once with the Sender Key and send it as a `GroupSend`.
//!
//! Receiving: a Sender Key arrives in a pairwise message and is stored per (group, sender
//! device); a `GroupEnvelope` is de-duplicated, decrypted with it and written to the history;
//! a `GroupEvent` updates the stored description (newer revisions only) and the key state.

use courier_crypto::SenderKeyDistribution as Distribution;
use courier_protocol::v1::{
    self, Content, ErrorCode, GroupCreate, GroupInfoRequest, GroupSend, GroupUpdate, JoinGroup,
    Leave, MemberList, MessageInfoRequest, ReceiptType, SendReceipt, Text, client_frame, content,
    group_update,
};
use courier_protocol::{DeviceAddress, DeviceId, GroupId, UserId};
use futures_util::StreamExt;
use prost::Message as _;

use crate::client::{Client, Event, Sent, now_ms};
use crate::error::{ClientError, ClientResult};
use crate::groups::{
    GroupChange, GroupEventKind, GroupInfo, GroupSettings, KeyAction, MemberReceipt,
};
use crate::history::HistoryRecord;
use crate::messenger::{Answer, Messenger, check_status};
use crate::state::{DeviceState, PendingDelivery};

/// Sender Key distributions in flight at once (each a `SendMessage` waiting for "sent").
const DISTRIBUTION_CONCURRENCY: usize = 16;

/// Client message ids of Sender Key distributions start with this, so that the delivered
/// receipts the server generates for them are recognised and not shown as receipts of
/// messages the user never wrote.
pub(crate) const KEY_MESSAGE_PREFIX: &str = "sk-";

impl Client {
    /// The stored description of a group, as of the last event or answer seen.
    pub fn group(&self, group: GroupId) -> Option<GroupInfo> {
        self.state().groups().info(group).cloned()
    }

    /// Every group this device knows, in id order (including ones it has left).
    pub fn groups(&self) -> Vec<GroupInfo> {
        self.state().groups().infos().cloned().collect()
    }

    /// Stores a description from an answer if it is newer than the stored one.
    async fn observe_group(&self, info: GroupInfo) -> ClientResult<()> {
        let changed = {
            let mut state = self.state();
            let me = state.address().user;
            // An unchanged group marked changed costs an extra item in the next save only.
            state.groups_mut(info.id).observe_info(info, me)
        };
        if changed {
            self.persist().await?;
        }
        Ok(())
    }

    /// A group message: de-duplicated, decrypted with the sender device's key, recorded and
    /// saved. Public so that an envelope obtained another way (a backup, a test holding the
    /// server's stored copy) goes through exactly the path a pushed one takes.
    pub async fn receive_group_envelope(
        &self,
        envelope: v1::GroupEnvelope,
    ) -> ClientResult<Option<Event>> {
        let event = self.receive_group_envelope_now(envelope)?;
        if let Some(event) = &event {
            self.handed_over(event);
        }
        self.persist().await?;
        Ok(event)
    }

    /// [`Client::receive_group_envelope`] without the save (the caller saves).
    pub(crate) fn receive_group_envelope_now(
        &self,
        envelope: v1::GroupEnvelope,
    ) -> ClientResult<Option<Event>> {
        let (Ok(group), Ok(user)) = (
            envelope.group_id.parse::<GroupId>(),
            envelope.sender_user.parse::<UserId>(),
        ) else {
            // Acknowledged and dropped: it would come back on every connection otherwise.
            tracing::warn!(group = %envelope.group_id, sender = %envelope.sender_user,
                "group message with a bad group or sender id");
            return Ok(None);
        };
        let sender = DeviceAddress::new(user, envelope.sender_device);
        let id = envelope.client_message_id;
        let mut state = self.state();
        if sender == state.address() {
            // Our own message.
            return Ok(None);
        }
        if state.has_seen_group(group, sender, &id) {
            // Redelivered after a lost ack: recorded already; handed over again only if the
            // application never had it.
            return Ok(state
                .pending(Some(group), sender, &id)
                .and_then(crate::client::pending_event));
        }
        let decrypted = state
            .groups_mut(group)
            .decrypt(group, sender, &envelope.ciphertext);
        let text = decrypted.and_then(|plaintext| match Content::decode(plaintext.as_slice()) {
            Ok(Content {
                body: Some(content::Body::Text(text)),
                ..
            }) => Ok((text.body, plaintext)),
            Ok(_) => Err("unsupported content".to_owned()),
            Err(error) => Err(format!("undecodable content: {error}")),
        });
        // History first, then the state that marks it seen (as for 1:1 messages).
        match &text {
            Ok((text, plaintext)) => {
                self.inner.history.append(&HistoryRecord::group_incoming(
                    &id,
                    envelope.timestamp_ms,
                    group.to_string(),
                    user.to_string(),
                    text,
                ))?;
                state.remember_pending(PendingDelivery {
                    from: sender,
                    group: Some(group),
                    id: id.clone(),
                    sent_at_ms: envelope.timestamp_ms,
                    content: plaintext.clone(),
                });
            }
            Err(_) => {
                state.remember_group(group, sender, &id);
            }
        }
        drop(state);
        Ok(Some(match text {
            Ok((text, _)) => Event::GroupMessage {
                group,
                from: user,
                device: envelope.sender_device,
                id,
                sent_at_ms: envelope.timestamp_ms,
                text,
            },
            Err(error) => Event::DecryptionFailed {
                from: sender,
                id,
                error: format!("group {group}: {error}"),
            },
        }))
    }

    /// A membership or settings change: applied to the stored group once per revision.
    pub(crate) fn receive_group_event(&self, event: v1::GroupEvent) -> ClientResult<Option<Event>> {
        let Ok(group) = event.group_id.parse::<GroupId>() else {
            tracing::warn!(group = %event.group_id, "group event with a bad group id");
            return Ok(None);
        };
        let info = match event.group.map(GroupInfo::from_wire).transpose() {
            Ok(Some(info)) if info.id == group => Some(info),
            Ok(Some(_)) => {
                tracing::warn!(%group, "group event describing another group");
                None
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%group, %error, "group event with a bad description");
                None
            }
        };
        let change = GroupChange {
            group,
            revision: event.revision,
            kind: GroupEventKind::try_from(event.kind).unwrap_or(GroupEventKind::Unspecified),
            actor: event.actor.parse().ok(),
            users: event.users.iter().filter_map(|u| u.parse().ok()).collect(),
            info,
        };
        let mut state = self.state();
        let me = state.address().user;
        if !state.groups_mut(group).apply_event(&change, me) {
            return Ok(None);
        }
        drop(state);
        Ok(Some(Event::GroupEvent {
            group,
            revision: change.revision,
            kind: change.kind,
            actor: change.actor,
            users: change.users,
        }))
    }
}

/// A Sender Key from a member device (inside a pairwise message): stored for its group. The
/// caller saves the state. Keys for a group this user is known not to be in are ignored.
pub(crate) fn accept_sender_key(
    state: &mut DeviceState,
    sender: DeviceAddress,
    key: &v1::SenderKeyDistribution,
) -> Result<Option<Event>, String> {
    let group: GroupId = key
        .group_id
        .parse()
        .map_err(|_| format!("sender key for a bad group id {:?}", key.group_id))?;
    let me = state.address();
    let not_member = state
        .groups()
        .info(group)
        .is_some_and(|info| !info.is_member(me.user));
    if sender == me || not_member {
        return Ok(None);
    }
    let distribution =
        Distribution::from_bytes(&key.distribution).map_err(|e| format!("bad sender key: {e}"))?;
    state
        .groups_mut(group)
        .add_distribution(group, sender, &distribution)
        .map_err(|e| format!("bad sender key: {e}"))?;
    Ok(Some(Event::GroupKeyReceived {
        group,
        from: sender,
    }))
}

/// Errors that say a member cannot be reached at all (no account, no device with keys): the
/// member is skipped rather than blocking the group.
fn unreachable(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Rejected {
            code: ErrorCode::UnknownRecipient,
            ..
        } | ClientError::Api { status: 404, .. }
    )
}

fn users(list: &[UserId]) -> MemberList {
    MemberList {
        users: list.iter().map(|u| u.to_string()).collect(),
    }
}

impl Messenger {
    /// Creates a group with this user as its first admin and `members` besides.
    pub async fn create_group(&self, subject: &str, members: &[UserId]) -> ClientResult<GroupInfo> {
        self.create_group_with(subject, members, GroupSettings::default())
            .await
    }

    /// [`Self::create_group`] with settings.
    pub async fn create_group_with(
        &self,
        subject: &str,
        members: &[UserId],
        settings: GroupSettings,
    ) -> ClientResult<GroupInfo> {
        let body = client_frame::Body::CreateGroup(GroupCreate {
            subject: subject.to_owned(),
            members: users(members).users,
            settings: Some(settings.to_wire()),
        });
        self.group_request(body).await
    }

    pub async fn add_members(&self, group: GroupId, members: &[UserId]) -> ClientResult<GroupInfo> {
        self.update_group(group, group_update::Change::AddMembers(users(members)))
            .await
    }

    /// Admins only. The next group message of every remaining member uses a fresh key.
    pub async fn remove_members(
        &self,
        group: GroupId,
        members: &[UserId],
    ) -> ClientResult<GroupInfo> {
        self.update_group(group, group_update::Change::RemoveMembers(users(members)))
            .await
    }

    /// Leaves the group; this device drops the group's keys.
    pub async fn leave_group(&self, group: GroupId) -> ClientResult<()> {
        let body = client_frame::Body::UpdateGroup(GroupUpdate {
            group_id: group.to_string(),
            change: Some(group_update::Change::Leave(Leave {})),
        });
        self.group_request_optional(body).await?;
        self.client.state().groups_mut(group).drop_keys(group);
        self.client.persist().await
    }

    pub async fn promote(&self, group: GroupId, members: &[UserId]) -> ClientResult<GroupInfo> {
        self.update_group(group, group_update::Change::Promote(users(members)))
            .await
    }

    pub async fn demote(&self, group: GroupId, members: &[UserId]) -> ClientResult<GroupInfo> {
        self.update_group(group, group_update::Change::Demote(users(members)))
            .await
    }

    pub async fn set_subject(&self, group: GroupId, subject: &str) -> ClientResult<GroupInfo> {
        self.update_group(group, group_update::Change::SetSubject(subject.to_owned()))
            .await
    }

    /// Replaces both settings (admins only).
    pub async fn set_group_settings(
        &self,
        group: GroupId,
        settings: GroupSettings,
    ) -> ClientResult<GroupInfo> {
        self.update_group(group, group_update::Change::SetSettings(settings.to_wire()))
            .await
    }

    /// A new invite code (admins only; it replaces any earlier one).
    pub async fn create_invite(&self, group: GroupId) -> ClientResult<String> {
        let info = self
            .update_group(group, group_update::Change::CreateInvite(true))
            .await?;
        info.invite_code.ok_or_else(|| {
            ClientError::Protocol("the server created an invite but sent no code".into())
        })
    }

    /// Revokes the invite code (admins only).
    pub async fn revoke_invite(&self, group: GroupId) -> ClientResult<GroupInfo> {
        self.update_group(group, group_update::Change::RevokeInvite(true))
            .await
    }

    /// Joins the group an invite code belongs to.
    pub async fn join_group(&self, invite_code: &str) -> ClientResult<GroupInfo> {
        let body = client_frame::Body::JoinGroup(JoinGroup {
            invite_code: invite_code.to_owned(),
        });
        self.group_request(body).await
    }

    /// The group as the server has it now (also stored locally).
    pub async fn group_info(&self, group: GroupId) -> ClientResult<GroupInfo> {
        let body = client_frame::Body::GetGroup(GroupInfoRequest {
            group_id: group.to_string(),
        });
        self.group_request(body).await
    }

    /// Who has received and read a group message this user sent.
    pub async fn message_info(
        &self,
        group: GroupId,
        client_message_id: &str,
    ) -> ClientResult<Vec<MemberReceipt>> {
        let body = client_frame::Body::MessageInfo(MessageInfoRequest {
            group_id: group.to_string(),
            client_message_id: client_message_id.to_owned(),
        });
        let answer = self.request_any(body).await?;
        answer.check()?;
        let Answer::Info(info) = answer else {
            return Err(ClientError::Protocol(format!(
                "expected a MessageInfo, got {answer:?}"
            )));
        };
        let when = |ms: u64| (ms > 0).then_some(ms);
        Ok(info
            .members
            .into_iter()
            .filter_map(|member| {
                Some(MemberReceipt {
                    user: member.user.parse().ok()?,
                    delivered_at_ms: when(member.delivered_at_ms),
                    read_at_ms: when(member.read_at_ms),
                })
            })
            .collect())
    }

    /// Tells `sender` that this user read these messages of theirs in `group`.
    pub async fn mark_group_read(
        &self,
        group: GroupId,
        sender: UserId,
        ids: Vec<String>,
    ) -> ClientResult<()> {
        let frame = client_frame::Body::Receipt(SendReceipt {
            recipient: sender.to_string(),
            r#type: ReceiptType::Read as i32,
            client_message_ids: ids,
            group_id: group.to_string(),
        });
        self.expect_ok(frame).await
    }

    /// Sends a text to every member of `group`, encrypted once with this device's Sender Key
    /// (created, rotated and distributed first as needed); returns once it is "sent".
    pub async fn send_group_text(&self, group: GroupId, text: &str) -> ClientResult<Sent> {
        let _turn = self.group_sends.lock().await;
        let me = self.client.address();
        let info = self.group_info(group).await?;
        if !info.is_member(me.user) {
            return Err(ClientError::Rejected {
                code: ErrorCode::NotAMember,
                message: format!("this user is not a member of group {group}"),
            });
        }
        let action = self
            .client
            .state()
            .groups_mut(group)
            .prepare_sender(group)?;
        if action != KeyAction::Kept {
            self.client.persist().await?;
        }
        if action != KeyAction::Kept {
            tracing::debug!(%group, ?action, "new sender key");
        }
        self.distribute_sender_key(group, action).await?;

        let id = uuid::Uuid::new_v4().to_string();
        let recipients = info
            .members
            .iter()
            .filter(|m| m.user != me.user)
            .map(|m| m.user.to_string())
            .collect();
        self.client
            .inner
            .history
            .append(&HistoryRecord::group_outgoing(
                &id,
                now_ms(),
                group.to_string(),
                recipients,
                text,
            ))?;
        let plaintext = Content {
            body: Some(content::Body::Text(Text {
                body: text.to_owned(),
            })),
            ..Default::default()
        }
        .encode_to_vec();
        let ciphertext = self
            .client
            .state()
            .groups_mut(group)
            .encrypt(group, &plaintext)?;
        // Saved before it leaves: a message key is never used twice after a crash.
        self.client.persist().await?;
        let result = self
            .request(client_frame::Body::GroupSend(GroupSend {
                group_id: group.to_string(),
                client_message_id: id.clone(),
                timestamp_ms: now_ms(),
                ciphertext,
            }))
            .await?;
        check_status(result.status, &result.message)?;
        self.client.inner.history.append(&HistoryRecord::status(
            &id,
            result.server_timestamp_ms,
            "sent",
            None,
        ))?;
        Ok(Sent {
            id,
            server_timestamp_ms: result.server_timestamp_ms,
            duplicate: result.duplicate,
        })
    }

    /// Sends this device's current key for `group` to every member (and own other device)
    /// that lacks it, and waits until each is "sent".
    async fn distribute_sender_key(&self, group: GroupId, action: KeyAction) -> ClientResult<()> {
        let me = self.client.address();
        let needing = |own: &[DeviceId]| {
            let state = self.client.state();
            state.groups().users_needing_key(
                group,
                me,
                |user| Client::session_devices(&state, user),
                own,
            )
        };
        let mut needing_users = needing(&[]);
        // This user's other devices are asked for only when there is something to send anyway.
        if action != KeyAction::Kept || !needing_users.is_empty() {
            let own = self.own_other_devices().await;
            if !own.is_empty() {
                needing_users = needing(&own);
            }
        }
        if needing_users.is_empty() {
            return Ok(());
        }
        let (chain_id, distribution) = self
            .client
            .state()
            .groups()
            .distribution(group)
            .ok_or_else(|| ClientError::Usage(format!("no sender key for group {group}")))?;
        let plaintext = Content {
            body: Some(content::Body::SenderKey(v1::SenderKeyDistribution {
                group_id: group.to_string(),
                distribution,
            })),
            ..Default::default()
        }
        .encode_to_vec();
        let plaintext = &plaintext;
        let results: Vec<_> = futures_util::stream::iter(needing_users)
            .map(|user| async move {
                let id = format!("{KEY_MESSAGE_PREFIX}{}", uuid::Uuid::new_v4());
                (user, self.send_content(user, &id, plaintext).await)
            })
            .buffer_unordered(DISTRIBUTION_CONCURRENCY)
            .collect()
            .await;
        let mut first_error = None;
        {
            let mut state = self.client.state();
            for (user, result) in results {
                match result {
                    Ok((_, devices)) => state
                        .groups_mut(group)
                        .record_distribution(group, chain_id, user, &devices),
                    Err(error) if unreachable(&error) => {
                        tracing::warn!(%group, %user, %error, "member unreachable; sender key not sent");
                    }
                    Err(error) => {
                        first_error.get_or_insert(error);
                    }
                }
            }
        }
        self.client.persist().await?;
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// This user's devices other than this one, from the directory (none if it cannot say).
    async fn own_other_devices(&self) -> Vec<DeviceId> {
        let client = &self.client;
        let me = client.address();
        match client
            .api()
            .lookup(&client.credentials(), &client.phone())
            .await
        {
            Ok(entry) => entry
                .devices
                .into_iter()
                .filter(|device| *device != me.device)
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot list this user's devices; own devices skipped");
                Vec::new()
            }
        }
    }

    async fn update_group(
        &self,
        group: GroupId,
        change: group_update::Change,
    ) -> ClientResult<GroupInfo> {
        let body = client_frame::Body::UpdateGroup(GroupUpdate {
            group_id: group.to_string(),
            change: Some(change),
        });
        self.group_request(body).await
    }

    /// A request answered by a `GroupResult` that must carry the group.
    async fn group_request(&self, body: client_frame::Body) -> ClientResult<GroupInfo> {
        self.group_request_optional(body)
            .await?
            .ok_or_else(|| ClientError::Protocol("GroupResult without the group".into()))
    }

    /// A request answered by a `GroupResult`; its group, if any, is stored.
    async fn group_request_optional(
        &self,
        body: client_frame::Body,
    ) -> ClientResult<Option<GroupInfo>> {
        let answer = self.request_any(body).await?;
        answer.check()?;
        let Answer::Group(result) = answer else {
            return Err(ClientError::Protocol(format!(
                "expected a GroupResult, got {answer:?}"
            )));
        };
        let Some(info) = result.group else {
            return Ok(None);
        };
        let info = GroupInfo::from_wire(info)?;
        self.client.observe_group(info.clone()).await?;
        Ok(Some(info))
    }
}

#[cfg(test)]
mod tests;
