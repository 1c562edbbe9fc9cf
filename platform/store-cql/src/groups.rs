//! Groups: records and their invite codes, group messages (one body, a reference per member
//! device queue), their de-duplication records and receipts.
//!
//! A group's writes come from its group actor (one process at a time); the group's in-process
//! lock orders them. Invite codes are claimed with lightweight transactions, so two groups can
//! never both hold one; a lookup also checks the code against the group's record, so a claim
//! left behind by a crash between the claim and the record write resolves to nothing and is
//! taken over by the next group that wants the code.

use courier_store::rules::{check_invite_code, earliest};
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use courier_protocol::{DeviceAddress, GroupId, UserId};
use courier_store::{
    EnqueueOutcome, GroupEnqueueOutcome, GroupReceiptKind, GroupReceiptRecord, GroupRecord,
    MAX_CLIENT_MESSAGE_ID_BYTES, Millis, NewEntry, StoreError, StoreResult,
};

use crate::CqlStore;
use crate::error::corrupt;
use crate::layout::{
    backstop_ttl, group_message_bucket, seq_to_cql, u64_from_cql, u64_to_cql, wall_clock_ms,
};
use crate::queues::{check_client_message_id, check_entries};
use crate::write::{Phase, WriteSet, partition_of};

/// The largest group message body stored (a mutation must stay well under the cluster's
/// limit, half a commit log segment: 16 MiB by default).
pub(crate) const MAX_GROUP_BODY_BYTES: usize = 8 * 1024 * 1024;

/// How often `put_group` retries claiming a code whose holder changed meanwhile.
const MAX_CLAIM_ATTEMPTS: usize = 8;

const DELIVERED: i8 = 0;
const READ: i8 = 1;

/// Folds receipt rows (user, kind, time) into one record per user, ordered by user id: the
/// earliest time of each kind, a read counting as a delivery.
fn fold_receipts(rows: impl IntoIterator<Item = (UserId, i8, Millis)>) -> Vec<GroupReceiptRecord> {
    let mut by_user: BTreeMap<UserId, (Millis, Millis)> = BTreeMap::new();
    for (user, kind, at) in rows {
        let (delivered, read) = by_user.entry(user).or_insert((0, 0));
        *delivered = earliest(*delivered, at);
        if kind == READ {
            *read = earliest(*read, at);
        }
    }
    by_user
        .into_iter()
        .map(|(user, (delivered_at, read_at))| GroupReceiptRecord {
            user,
            delivered_at,
            read_at,
        })
        .collect()
}

impl CqlStore {
    pub(crate) async fn group_impl(&self, id: GroupId) -> StoreResult<Option<GroupRecord>> {
        let row: Option<(String,)> = self
            .db
            .maybe_row(&self.st.group_get, (id.0,), "groups")
            .await?;
        row.map(|(json,)| serde_json::from_str(&json).map_err(|e| corrupt("groups", e)))
            .transpose()
    }

    /// Claims `code` for `group`: `Ok` if it now points to the group, `Invalid` if another
    /// group's record holds it.
    async fn claim_invite(&self, code: &str, group: GroupId) -> StoreResult<()> {
        for _ in 0..MAX_CLAIM_ATTEMPTS {
            let claim = self
                .db
                .lwt(&self.st.invite_claim, (code, group.0), "group_invites")
                .await?;
            if claim.applied {
                return Ok(());
            }
            let Some(holder) = claim.uuid("group_id").map(GroupId) else {
                continue; // released meanwhile
            };
            if holder == group {
                return Ok(());
            }
            let holds = self
                .group_impl(holder)
                .await?
                .is_some_and(|record| record.invite_code.as_deref() == Some(code));
            if holds {
                return Err(StoreError::Invalid(format!(
                    "invite code already used by group {holder}"
                )));
            }
            // A stale claim (its group moved on, or crashed before writing its record).
            let taken = self
                .db
                .lwt(
                    &self.st.invite_take_over,
                    (group.0, code, holder.0),
                    "group_invites",
                )
                .await?;
            if taken.applied {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(format!(
            "invite code {code:?} keeps changing hands"
        )))
    }

    /// Claims the new code, writes the record, then releases the previous code.
    pub(crate) async fn put_group_impl(&self, group: GroupRecord) -> StoreResult<()> {
        if let Some(code) = &group.invite_code {
            check_invite_code(code)?;
        }
        let json = serde_json::to_string(&group).map_err(|e| corrupt("groups", e))?;
        let _group = self.locks.groups.lock(&group.id).await;
        let previous_code = self
            .group_impl(group.id)
            .await?
            .and_then(|previous| previous.invite_code);
        if let Some(code) = &group.invite_code {
            self.claim_invite(code, group.id).await?;
        }
        self.db
            .execute(
                &self.st.group_put,
                (group.id.0, group.invite_code.as_deref(), json),
            )
            .await?;
        if let Some(previous) = previous_code
            && group.invite_code.as_ref() != Some(&previous)
        {
            self.db
                .lwt(
                    &self.st.invite_release,
                    (previous.as_str(), group.id.0),
                    "group_invites",
                )
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn group_by_invite_impl(&self, code: &str) -> StoreResult<Option<GroupId>> {
        if check_invite_code(code).is_err() {
            return Ok(None); // no such code can be stored
        }
        let row: Option<(uuid::Uuid,)> = self
            .db
            .maybe_row(&self.st.invite_get, (code,), "group_invites")
            .await?;
        let Some((holder,)) = row else {
            return Ok(None);
        };
        let holder = GroupId(holder);
        let current = self
            .group_impl(holder)
            .await?
            .is_some_and(|record| record.invite_code.as_deref() == Some(code));
        Ok(current.then_some(holder))
    }

    pub(crate) async fn last_group_message_seq_impl(&self, group: GroupId) -> StoreResult<u64> {
        let buckets: Vec<(i64,)> = self
            .db
            .rows(&self.st.group_buckets, (group.0,), "group_message_buckets")
            .await?;
        for (bucket,) in buckets {
            let last: Option<(i64,)> = self
                .db
                .maybe_row(
                    &self.st.group_message_last,
                    (group.0, bucket),
                    "group_messages",
                )
                .await?;
            if let Some((seq,)) = last {
                return Ok(u64_from_cql(seq));
            }
        }
        Ok(0)
    }

    /// The `expires_at` of a stored message, if any.
    async fn group_message_expiry(
        &self,
        group: GroupId,
        message_seq: u64,
    ) -> StoreResult<Option<Millis>> {
        let Ok(seq) = seq_to_cql(message_seq, "message seq") else {
            return Ok(None); // none can be stored
        };
        let bucket = seq_to_cql(group_message_bucket(message_seq), "bucket")?;
        let row: Option<(i64,)> = self
            .db
            .maybe_row(
                &self.st.group_message_expiry,
                (group.0, bucket, seq),
                "group_messages",
            )
            .await?;
        Ok(row.map(|(at,)| u64_from_cql(at)))
    }

    async fn group_dedupe_record(
        &self,
        group: GroupId,
        sender: DeviceAddress,
        client_message_id: &str,
    ) -> StoreResult<Option<(u64, Millis)>> {
        let row: Option<(i64, i64)> = self
            .db
            .maybe_row(
                &self.st.group_dedupe_get,
                (
                    group.0,
                    sender.user.0,
                    sender.device as i32,
                    client_message_id,
                ),
                "group_dedupe",
            )
            .await?;
        Ok(row.map(|(seq, at)| (u64_from_cql(seq), u64_from_cql(at))))
    }

    pub(crate) async fn enqueue_group_message_impl(
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
        let seq = seq_to_cql(message_seq, "group message seq")?;
        if body.len() > MAX_GROUP_BODY_BYTES {
            return Err(StoreError::Invalid(format!(
                "group message body of {} bytes (at most {MAX_GROUP_BODY_BYTES})",
                body.len()
            )));
        }
        check_client_message_id(&client_message_id)?;
        check_entries(&entries)?;
        // The time of the send, for the dedupe check (entries carry it; see the trait docs).
        let sent_at = entries
            .iter()
            .map(|(_, e)| e.enqueued_at)
            .min()
            .unwrap_or(0);

        let _group = self.locks.groups.lock(&group).await;
        if let Some((first_seq, first_expires_at)) = self
            .group_dedupe_record(group, sender, &client_message_id)
            .await?
            && first_expires_at > sent_at
        {
            return Ok(GroupEnqueueOutcome::Duplicate {
                message_seq: first_seq,
            });
        }
        if self
            .group_message_expiry(group, message_seq)
            .await?
            .is_some()
        {
            return Err(StoreError::Invalid(format!(
                "group {group} already has a message {message_seq}"
            )));
        }

        let devices: BTreeSet<DeviceAddress> = entries.iter().map(|(a, _)| *a).collect();
        let _devices = self.locks.devices.lock_all(devices.iter()).await;
        let wall = wall_clock_ms();
        let ttl = backstop_ttl(expires_at, wall);
        let bucket = group_message_bucket(message_seq);
        let bucket_cql = seq_to_cql(bucket, "bucket")?;
        let mut writes = WriteSet::default();
        let body_len = body.len();
        writes.push(
            Phase::Data,
            partition_of("group_messages", &(group, bucket)),
            &self.st.group_message_put,
            (group.0, bucket_cql, seq, u64_to_cql(expires_at), body, ttl),
            body_len,
        );
        writes.push(
            Phase::Data,
            partition_of("group_message_buckets", &group),
            &self.st.group_bucket_put,
            (group.0, bucket_cql, u64_to_cql(wall)),
            0,
        );
        let outcomes: Vec<EnqueueOutcome> = self.plan_entries(entries, &mut writes).await?;
        let id_len = client_message_id.len();
        writes.push(
            Phase::Commit,
            partition_of("group_dedupe", &(group, sender, &client_message_id)),
            &self.st.group_dedupe_put,
            (
                group.0,
                sender.user.0,
                sender.device as i32,
                client_message_id,
                seq,
                u64_to_cql(expires_at),
                ttl,
            ),
            id_len,
        );
        writes.apply(&self.db).await?;
        Ok(GroupEnqueueOutcome::Queued { entries: outcomes })
    }

    pub(crate) async fn group_message_impl(
        &self,
        group: GroupId,
        message_seq: u64,
        now: Millis,
    ) -> StoreResult<Option<Bytes>> {
        let Ok(seq) = seq_to_cql(message_seq, "message seq") else {
            return Ok(None);
        };
        let bucket = seq_to_cql(group_message_bucket(message_seq), "bucket")?;
        let row: Option<(i64, Bytes)> = self
            .db
            .maybe_row(
                &self.st.group_message_get,
                (group.0, bucket, seq),
                "group_messages",
            )
            .await?;
        Ok(row.and_then(|(expires_at, body)| (u64_from_cql(expires_at) > now).then_some(body)))
    }

    pub(crate) async fn group_message_seq_impl(
        &self,
        group: GroupId,
        sender: DeviceAddress,
        client_message_id: &str,
    ) -> StoreResult<Option<u64>> {
        if client_message_id.len() > MAX_CLIENT_MESSAGE_ID_BYTES {
            return Ok(None); // no such id can be stored
        }
        Ok(self
            .group_dedupe_record(group, sender, client_message_id)
            .await?
            .map(|(seq, _)| seq))
    }

    /// Inserts one receipt row; the earliest time of each kind wins when read. Nothing is
    /// written for time 0 or a message unknown or expired at `at`.
    pub(crate) async fn record_group_receipt_impl(
        &self,
        group: GroupId,
        message_seq: u64,
        user: UserId,
        kind: GroupReceiptKind,
        at: Millis,
    ) -> StoreResult<()> {
        if at == 0 {
            return Ok(());
        }
        let Some(expires_at) = self.group_message_expiry(group, message_seq).await? else {
            return Ok(());
        };
        if expires_at <= at {
            return Ok(());
        }
        let kind = match kind {
            GroupReceiptKind::Delivered => DELIVERED,
            GroupReceiptKind::Read => READ,
        };
        let ttl = backstop_ttl(expires_at, wall_clock_ms());
        self.db
            .execute(
                &self.st.receipt_put,
                (
                    group.0,
                    seq_to_cql(message_seq, "message seq")?,
                    user.0,
                    kind,
                    u64_to_cql(at),
                    u64_to_cql(expires_at),
                    ttl,
                ),
            )
            .await
            .map(drop)
    }

    pub(crate) async fn group_receipts_impl(
        &self,
        group: GroupId,
        message_seq: u64,
    ) -> StoreResult<Vec<GroupReceiptRecord>> {
        let Ok(seq) = seq_to_cql(message_seq, "message seq") else {
            return Ok(Vec::new());
        };
        let rows: Vec<(uuid::Uuid, i8, i64)> = self
            .db
            .rows(&self.st.receipts_get, (group.0, seq), "group_receipts")
            .await?;
        Ok(fold_receipts(rows.into_iter().map(|(user, kind, at)| {
            (UserId(user), kind, u64_from_cql(at))
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_fold_to_the_earliest_time_of_each_kind() {
        let (a, b) = (UserId::from_bytes([2; 16]), UserId::from_bytes([1; 16]));
        let folded = fold_receipts([
            (a, DELIVERED, 20),
            (a, READ, 30),
            (a, DELIVERED, 10),
            (b, READ, 80),
            (b, DELIVERED, 70),
            (b, READ, 90),
        ]);
        assert_eq!(
            folded,
            vec![
                GroupReceiptRecord {
                    user: b,
                    delivered_at: 70,
                    read_at: 80
                },
                GroupReceiptRecord {
                    user: a,
                    delivered_at: 10,
                    read_at: 30
                },
            ],
            "ordered by user id; a read implies delivery"
        );
        let read_only = fold_receipts([(a, READ, 60)]);
        assert_eq!(read_only[0].delivered_at, 60);
        assert_eq!(read_only[0].read_at, 60);
    }
}
