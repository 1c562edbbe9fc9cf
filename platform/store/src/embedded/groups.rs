//! Groups: records and their invite index, group messages (one body, a reference per member
//! device queue), their de-duplication records and receipts.
//!
//! Every read-modify-write here holds the groups lock; a group message also takes the queues lock
//! (after it) to append its reference entries with [`Engine::append_entries`].

use crate::rules::{check_invite_code, earliest};
use bytes::Bytes;
use courier_protocol::{DeviceAddress, GroupId, UserId};

use super::codec::{
    MAX_GROUP_BODY_BYTES, ReceiptTimes, decode_group_dedupe, decode_group_message,
    decode_group_receipt, encode_dedupe, encode_group_message, encode_group_receipt, from_json,
    group_dedupe_key, group_from_bytes, group_message_expires_at, group_message_key,
    group_receipt_key, message_seq_of_key, receipt_user_of_key, to_json,
};
use super::engine::{Engine, lock};
use super::queues::key_entries;
use crate::error::{StoreError, StoreResult};
use crate::model::{
    GroupEnqueueOutcome, GroupReceiptKind, GroupReceiptRecord, GroupRecord,
    MAX_CLIENT_MESSAGE_ID_BYTES, Millis, NewEntry,
};

impl Engine {
    fn group_record(&self, id: GroupId) -> StoreResult<Option<GroupRecord>> {
        match self.ks.groups.get(id.as_bytes())? {
            Some(bytes) => Ok(Some(from_json("groups", &bytes)?)),
            None => Ok(None),
        }
    }

    /// The group an invite code points to in the index.
    fn invite_owner(&self, code: &str) -> StoreResult<Option<GroupId>> {
        match self.ks.group_invites.get(code)? {
            Some(bytes) => Ok(Some(group_from_bytes("group_invites", &bytes)?)),
            None => Ok(None),
        }
    }

    /// Writes the record and moves the invite index with it, in one batch: the previous code
    /// is removed (if it still points to this group), the new one is added. A code that points
    /// to another group is refused (`Invalid`), so the index never loses another group's code.
    pub fn put_group(&self, group: GroupRecord) -> StoreResult<()> {
        if let Some(code) = &group.invite_code {
            check_invite_code(code)?;
        }
        let value = to_json("groups", &group)?;
        let _groups = lock(&self.locks.groups);
        let previous_code = self
            .group_record(group.id)?
            .and_then(|previous| previous.invite_code);
        let mut batch = self.batch();
        if let Some(code) = &group.invite_code {
            match self.invite_owner(code)? {
                Some(owner) if owner != group.id => {
                    return Err(StoreError::Invalid(format!(
                        "invite code already used by group {owner}"
                    )));
                }
                Some(_) => {}
                None => batch.insert(
                    &self.ks.group_invites,
                    code.as_str(),
                    group.id.as_bytes().to_vec(),
                ),
            }
        }
        if let Some(previous) = previous_code
            && group.invite_code.as_ref() != Some(&previous)
            && self.invite_owner(&previous)? == Some(group.id)
        {
            batch.remove(&self.ks.group_invites, previous.as_str());
        }
        batch.insert(&self.ks.groups, group.id.as_bytes().to_vec(), value);
        Ok(batch.commit()?)
    }

    pub fn group(&self, id: GroupId) -> StoreResult<Option<GroupRecord>> {
        self.group_record(id)
    }

    pub fn group_by_invite(&self, code: &str) -> StoreResult<Option<GroupId>> {
        if check_invite_code(code).is_err() {
            return Ok(None); // no such code can be stored
        }
        self.invite_owner(code)
    }

    /// The last key under the group's prefix of `group_messages`.
    pub fn last_group_message_seq(&self, group: GroupId) -> StoreResult<u64> {
        match self.ks.group_messages.prefix(group.as_bytes()).next_back() {
            Some(guard) => message_seq_of_key(&guard.key()?),
            None => Ok(0),
        }
    }

    /// Under the groups lock: the group dedupe check, then (queues lock) the reference entries;
    /// body, group dedupe record, entries, their dedupe records and `queue_meta` in one batch.
    pub fn enqueue_group_message(
        &self,
        group: GroupId,
        message_seq: u64,
        (sender, client_message_id): (DeviceAddress, String),
        body: Bytes,
        expires_at: Millis,
        entries: Vec<(DeviceAddress, NewEntry)>,
    ) -> StoreResult<GroupEnqueueOutcome> {
        if message_seq == 0 {
            return Err(StoreError::Invalid("group message seqs start at 1".into()));
        }
        if body.len() > MAX_GROUP_BODY_BYTES {
            return Err(StoreError::Invalid(format!(
                "group message body of {} bytes",
                body.len()
            )));
        }
        // Keys are built before taking the locks: an invalid id fails without waiting.
        let dedupe = group_dedupe_key(&group, &sender, &client_message_id)?;
        let keyed = key_entries(entries)?;
        // The time of the send, for the dedupe check (entries carry it; see the trait docs).
        let sent_at = keyed.iter().map(|k| k.enqueued_at()).min().unwrap_or(0);
        let message_key = group_message_key(&group, message_seq);

        let _groups = lock(&self.locks.groups);
        if let Some(value) = self.ks.group_dedupe.get(&dedupe)? {
            let (first_seq, first_expires_at) = decode_group_dedupe(&value)?;
            if first_expires_at > sent_at {
                return Ok(GroupEnqueueOutcome::Duplicate {
                    message_seq: first_seq,
                });
            }
        }
        if self.ks.group_messages.contains_key(message_key)? {
            return Err(StoreError::Invalid(format!(
                "group {group} already has a message {message_seq}"
            )));
        }
        let _queues = lock(&self.locks.queues);
        let mut batch = self.batch();
        batch.insert(
            &self.ks.group_messages,
            message_key,
            encode_group_message(expires_at, &body),
        );
        batch.insert(
            &self.ks.group_dedupe,
            dedupe,
            encode_dedupe(message_seq, expires_at),
        );
        let (outcomes, metas) = self.append_entries(&mut batch, keyed)?;
        batch.commit()?;
        self.remember(metas);
        Ok(GroupEnqueueOutcome::Queued { entries: outcomes })
    }

    pub fn group_message(
        &self,
        group: GroupId,
        message_seq: u64,
        now: Millis,
    ) -> StoreResult<Option<Bytes>> {
        let Some(value) = self
            .ks
            .group_messages
            .get(group_message_key(&group, message_seq))?
        else {
            return Ok(None);
        };
        let (expires_at, body) = decode_group_message(&value)?;
        Ok((expires_at > now).then_some(body))
    }

    pub fn group_message_seq(
        &self,
        group: GroupId,
        sender: DeviceAddress,
        client_message_id: &str,
    ) -> StoreResult<Option<u64>> {
        if client_message_id.len() > MAX_CLIENT_MESSAGE_ID_BYTES {
            return Ok(None); // no such id can be stored
        }
        let key = group_dedupe_key(&group, &sender, client_message_id)?;
        match self.ks.group_dedupe.get(key)? {
            Some(value) => Ok(Some(decode_group_dedupe(&value)?.0)),
            None => Ok(None),
        }
    }

    /// Keeps the earliest non-zero time of each kind; a read also counts as a delivery. Nothing
    /// is written for an unknown or expired message, or when nothing changes.
    pub fn record_group_receipt(
        &self,
        group: GroupId,
        message_seq: u64,
        user: UserId,
        kind: GroupReceiptKind,
        at: Millis,
    ) -> StoreResult<()> {
        let key = group_receipt_key(&group, message_seq, &user);
        let _groups = lock(&self.locks.groups);
        let Some(message) = self
            .ks
            .group_messages
            .get(group_message_key(&group, message_seq))?
        else {
            return Ok(());
        };
        let expires_at = group_message_expires_at(&message)?;
        if expires_at <= at {
            return Ok(());
        }
        let before = match self.ks.group_receipts.get(key)? {
            Some(value) => decode_group_receipt(&value)?,
            None => ReceiptTimes {
                delivered_at: 0,
                read_at: 0,
                expires_at,
            },
        };
        let mut after = ReceiptTimes {
            delivered_at: earliest(before.delivered_at, at),
            expires_at,
            ..before
        };
        if kind == GroupReceiptKind::Read {
            after.read_at = earliest(before.read_at, at);
        }
        if after == before || (after.delivered_at == 0 && after.read_at == 0) {
            return Ok(());
        }
        let mut batch = self.batch();
        batch.insert(&self.ks.group_receipts, key, encode_group_receipt(&after));
        Ok(batch.commit()?)
    }

    /// The message's receipts, ordered by user id.
    pub fn group_receipts(
        &self,
        group: GroupId,
        message_seq: u64,
    ) -> StoreResult<Vec<GroupReceiptRecord>> {
        self.ks
            .group_receipts
            .prefix(group_message_key(&group, message_seq))
            .map(|guard| {
                let (key, value) = guard.into_inner()?;
                let times = decode_group_receipt(&value)?;
                Ok(GroupReceiptRecord {
                    user: receipt_user_of_key(&key)?,
                    delivered_at: times.delivered_at,
                    read_at: times.read_at,
                })
            })
            .collect()
    }
}
