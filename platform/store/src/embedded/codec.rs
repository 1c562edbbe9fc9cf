//! Keys and values of the embedded store: how each record is laid out in its keyspace.
//!
//! Fixed-width numbers are big-endian so that keys sort numerically. Small metadata records are
//! JSON; the queue entry, on the hot path, and the group records that come with every group
//! message are hand-rolled binary layouts.

use bytes::Bytes;
use courier_protocol::{DeviceAddress, DeviceId, GroupId, UserId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{StoreError, StoreResult};
use crate::model::{
    Account, MAX_CLIENT_MESSAGE_ID_BYTES, Millis, NewEntry, QueuedEntry, VerificationCode,
};

/// Length of [`DeviceAddress::to_key`].
pub(super) const DEVICE_KEY_LEN: usize = 20;

pub(super) type DeviceKey = [u8; DEVICE_KEY_LEN];

/// Format tag of [`encode_entry`], so the layout can evolve.
const ENTRY_V1: u8 = 1;
const ENTRY_HEADER_LEN: usize = 1 + 8 + 8;

/// `accounts` value: the account and the next device id it hands out (never reused).
#[derive(Serialize, Deserialize)]
pub(super) struct AccountRecord {
    pub account: Account,
    pub next_device_id: DeviceId,
}

/// `codes` value: the pending code and when codes were issued inside the rate-limit window.
#[derive(Default, Serialize, Deserialize)]
pub(super) struct CodeRecord {
    pub pending: Option<VerificationCode>,
    pub issued_at: Vec<Millis>,
}

pub(super) fn to_json<T: Serialize>(what: &'static str, value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
        what,
        detail: format!("cannot encode: {e}"),
    })
}

pub(super) fn from_json<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(what, e))
}

pub(super) fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: detail.to_string(),
    }
}

fn be_u64(what: &'static str, bytes: &[u8]) -> StoreResult<u64> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| corrupt(what, format!("expected 8 bytes, found {}", bytes.len())))?;
    Ok(u64::from_be_bytes(array))
}

pub(super) fn user_from_bytes(what: &'static str, bytes: &[u8]) -> StoreResult<UserId> {
    let array: [u8; 16] = bytes.try_into().map_err(|_| {
        corrupt(
            what,
            format!("expected a 16-byte user id, found {}", bytes.len()),
        )
    })?;
    Ok(UserId::from_bytes(array))
}

/// The device id at the end of a `devices` key.
pub(super) fn device_id_of_key(key: &[u8]) -> StoreResult<DeviceId> {
    let tail: [u8; 4] = key
        .get(16..DEVICE_KEY_LEN)
        .and_then(|tail| tail.try_into().ok())
        .ok_or_else(|| corrupt("devices", format!("key of {} bytes", key.len())))?;
    Ok(DeviceId::from_be_bytes(tail))
}

/// `prekeys` key: device key, then the prekey id big-endian.
pub(super) fn prekey_key(device: &DeviceKey, id: u32) -> [u8; DEVICE_KEY_LEN + 4] {
    let mut key = [0u8; DEVICE_KEY_LEN + 4];
    key[..DEVICE_KEY_LEN].copy_from_slice(device);
    key[DEVICE_KEY_LEN..].copy_from_slice(&id.to_be_bytes());
    key
}

pub(super) fn prekey_id_of_key(key: &[u8]) -> StoreResult<u32> {
    let tail: [u8; 4] = key
        .get(DEVICE_KEY_LEN..)
        .and_then(|tail| tail.try_into().ok())
        .ok_or_else(|| corrupt("prekeys", format!("key of {} bytes", key.len())))?;
    Ok(u32::from_be_bytes(tail))
}

/// `queue` key: device key, then the sequence number big-endian.
pub(super) fn queue_key(device: &DeviceKey, seq: u64) -> [u8; DEVICE_KEY_LEN + 8] {
    let mut key = [0u8; DEVICE_KEY_LEN + 8];
    key[..DEVICE_KEY_LEN].copy_from_slice(device);
    key[DEVICE_KEY_LEN..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// `queue` value: format tag, `enqueued_at`, `expires_at` (u64 big-endian each), payload.
pub(super) fn encode_entry(entry: &NewEntry) -> Vec<u8> {
    let mut value = Vec::with_capacity(ENTRY_HEADER_LEN + entry.payload.len());
    value.push(ENTRY_V1);
    value.extend_from_slice(&entry.enqueued_at.to_be_bytes());
    value.extend_from_slice(&entry.expires_at.to_be_bytes());
    value.extend_from_slice(&entry.payload);
    value
}

/// `expires_at` of an encoded queue entry, without copying its payload.
pub(super) fn entry_expires_at(value: &[u8]) -> StoreResult<Millis> {
    match value {
        [ENTRY_V1, header @ ..] if header.len() >= 16 => be_u64("queue", &header[8..16]),
        _ => Err(corrupt("queue", "unknown entry layout")),
    }
}

pub(super) fn decode_entry(key: &[u8], value: &[u8]) -> StoreResult<QueuedEntry> {
    let seq = key
        .get(DEVICE_KEY_LEN..)
        .ok_or_else(|| corrupt("queue", "short key"))
        .and_then(|tail| be_u64("queue", tail))?;
    match value {
        [ENTRY_V1, rest @ ..] if rest.len() >= 16 => Ok(QueuedEntry {
            seq,
            enqueued_at: be_u64("queue", &rest[..8])?,
            expires_at: be_u64("queue", &rest[8..16])?,
            payload: Bytes::copy_from_slice(&rest[16..]),
        }),
        _ => Err(corrupt("queue", "unknown entry layout")),
    }
}

/// `queue_meta` value: the next sequence number of the device queue, then the highest
/// acknowledged one (absent in records written before acknowledgements were tracked: 0).
pub(super) fn decode_queue_meta(value: &[u8]) -> StoreResult<(u64, u64)> {
    match value.len() {
        8 => Ok((be_u64("queue_meta", value)?, 0)),
        16 => Ok((
            be_u64("queue_meta", &value[..8])?,
            be_u64("queue_meta", &value[8..])?,
        )),
        _ => Err(corrupt("queue_meta", "unexpected length")),
    }
}

pub(super) fn encode_queue_meta(next: u64, acked: u64) -> [u8; 16] {
    let mut value = [0u8; 16];
    value[..8].copy_from_slice(&next.to_be_bytes());
    value[8..].copy_from_slice(&acked.to_be_bytes());
    value
}

/// `Invalid` for a client message id longer than [`MAX_CLIENT_MESSAGE_ID_BYTES`].
fn check_client_message_id(client_message_id: &str) -> StoreResult<()> {
    if client_message_id.len() > MAX_CLIENT_MESSAGE_ID_BYTES {
        return Err(StoreError::Invalid(format!(
            "client message id of {} bytes (at most {MAX_CLIENT_MESSAGE_ID_BYTES})",
            client_message_id.len()
        )));
    }
    Ok(())
}

/// `dedupe` key: recipient device key, sender device key, client message id.
pub(super) fn dedupe_key(
    recipient: &DeviceKey,
    sender: &DeviceAddress,
    client_message_id: &str,
) -> StoreResult<Vec<u8>> {
    check_client_message_id(client_message_id)?;
    let mut key = Vec::with_capacity(2 * DEVICE_KEY_LEN + client_message_id.len());
    key.extend_from_slice(recipient);
    key.extend_from_slice(&sender.to_key());
    key.extend_from_slice(client_message_id.as_bytes());
    Ok(key)
}

/// `dedupe` and `group_dedupe` value: the sequence number (queue or group message), then when
/// the record expires.
pub(super) fn encode_dedupe(seq: u64, expires_at: Millis) -> [u8; 16] {
    let mut value = [0u8; 16];
    value[..8].copy_from_slice(&seq.to_be_bytes());
    value[8..].copy_from_slice(&expires_at.to_be_bytes());
    value
}

/// `(seq, expires_at)` of a `dedupe` value.
pub(super) fn decode_dedupe(value: &[u8]) -> StoreResult<(u64, Millis)> {
    decode_seq_and_expiry("dedupe", value)
}

/// `(message_seq, expires_at)` of a `group_dedupe` value.
pub(super) fn decode_group_dedupe(value: &[u8]) -> StoreResult<(u64, Millis)> {
    decode_seq_and_expiry("group_dedupe", value)
}

fn decode_seq_and_expiry(what: &'static str, value: &[u8]) -> StoreResult<(u64, Millis)> {
    if value.len() != 16 {
        return Err(corrupt(what, format!("value of {} bytes", value.len())));
    }
    Ok((be_u64(what, &value[..8])?, be_u64(what, &value[8..])?))
}

// ---- groups ---------------------------------------------------------------------------------

/// Length of a group id in keys ([`GroupId::as_bytes`]).
pub(super) const GROUP_ID_LEN: usize = 16;

/// Length of a `group_messages` key, and of the prefix of a message's `group_receipts` keys.
pub(super) const GROUP_MESSAGE_KEY_LEN: usize = GROUP_ID_LEN + 8;

/// Format tag of [`encode_group_message`], so the layout can evolve.
const GROUP_MESSAGE_V1: u8 = 1;
const GROUP_MESSAGE_HEADER_LEN: usize = 1 + 8;

/// Length of a `group_receipts` value: `delivered_at`, `read_at`, `expires_at`.
const GROUP_RECEIPT_LEN: usize = 3 * 8;

/// Longest group message body the embedded engine can keep in one value (fjall's limit is
/// 2^32 - 1 bytes, header included).
pub(super) const MAX_GROUP_BODY_BYTES: usize = u32::MAX as usize - GROUP_MESSAGE_HEADER_LEN;

pub(super) fn group_from_bytes(what: &'static str, bytes: &[u8]) -> StoreResult<GroupId> {
    let array: [u8; GROUP_ID_LEN] = bytes.try_into().map_err(|_| {
        corrupt(
            what,
            format!("expected a 16-byte group id, found {}", bytes.len()),
        )
    })?;
    Ok(GroupId::from_bytes(array))
}

/// `group_messages` key: group id, then the message sequence number big-endian. Also the
/// prefix of the message's `group_receipts` keys.
pub(super) fn group_message_key(group: &GroupId, message_seq: u64) -> [u8; GROUP_MESSAGE_KEY_LEN] {
    let mut key = [0u8; GROUP_MESSAGE_KEY_LEN];
    key[..GROUP_ID_LEN].copy_from_slice(group.as_bytes());
    key[GROUP_ID_LEN..].copy_from_slice(&message_seq.to_be_bytes());
    key
}

/// The message sequence number of a `group_messages` key.
pub(super) fn message_seq_of_key(key: &[u8]) -> StoreResult<u64> {
    match key.get(GROUP_ID_LEN..) {
        Some(tail) => be_u64("group_messages", tail),
        None => Err(corrupt(
            "group_messages",
            format!("key of {} bytes", key.len()),
        )),
    }
}

/// `group_messages` value: format tag, `expires_at` (u64 big-endian), body.
pub(super) fn encode_group_message(expires_at: Millis, body: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(GROUP_MESSAGE_HEADER_LEN + body.len());
    value.push(GROUP_MESSAGE_V1);
    value.extend_from_slice(&expires_at.to_be_bytes());
    value.extend_from_slice(body);
    value
}

/// `expires_at` of an encoded group message, without copying its body.
pub(super) fn group_message_expires_at(value: &[u8]) -> StoreResult<Millis> {
    match value {
        [GROUP_MESSAGE_V1, rest @ ..] if rest.len() >= 8 => be_u64("group_messages", &rest[..8]),
        _ => Err(corrupt("group_messages", "unknown message layout")),
    }
}

/// `(expires_at, body)` of an encoded group message.
pub(super) fn decode_group_message(value: &[u8]) -> StoreResult<(Millis, Bytes)> {
    let expires_at = group_message_expires_at(value)?;
    let body = Bytes::copy_from_slice(&value[GROUP_MESSAGE_HEADER_LEN..]);
    Ok((expires_at, body))
}

/// `group_dedupe` key: group id, sender device key, client message id.
pub(super) fn group_dedupe_key(
    group: &GroupId,
    sender: &DeviceAddress,
    client_message_id: &str,
) -> StoreResult<Vec<u8>> {
    check_client_message_id(client_message_id)?;
    let mut key = Vec::with_capacity(GROUP_ID_LEN + DEVICE_KEY_LEN + client_message_id.len());
    key.extend_from_slice(group.as_bytes());
    key.extend_from_slice(&sender.to_key());
    key.extend_from_slice(client_message_id.as_bytes());
    Ok(key)
}

/// `group_receipts` key: group id, message sequence number, user id.
pub(super) fn group_receipt_key(
    group: &GroupId,
    message_seq: u64,
    user: &UserId,
) -> [u8; GROUP_MESSAGE_KEY_LEN + 16] {
    let mut key = [0u8; GROUP_MESSAGE_KEY_LEN + 16];
    key[..GROUP_MESSAGE_KEY_LEN].copy_from_slice(&group_message_key(group, message_seq));
    key[GROUP_MESSAGE_KEY_LEN..].copy_from_slice(user.as_bytes());
    key
}

/// The user of a `group_receipts` key.
pub(super) fn receipt_user_of_key(key: &[u8]) -> StoreResult<UserId> {
    let tail = key.get(GROUP_MESSAGE_KEY_LEN..).unwrap_or_default();
    user_from_bytes("group_receipts", tail)
}

/// A `group_receipts` value: when the member received and read the message (0 = not yet), and
/// when the record expires (with its message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ReceiptTimes {
    pub delivered_at: Millis,
    pub read_at: Millis,
    pub expires_at: Millis,
}

/// `group_receipts` value: `delivered_at`, `read_at`, `expires_at` (u64 big-endian each).
pub(super) fn encode_group_receipt(times: &ReceiptTimes) -> [u8; GROUP_RECEIPT_LEN] {
    let mut value = [0u8; GROUP_RECEIPT_LEN];
    value[..8].copy_from_slice(&times.delivered_at.to_be_bytes());
    value[8..16].copy_from_slice(&times.read_at.to_be_bytes());
    value[16..].copy_from_slice(&times.expires_at.to_be_bytes());
    value
}

pub(super) fn decode_group_receipt(value: &[u8]) -> StoreResult<ReceiptTimes> {
    const WHAT: &str = "group_receipts";
    if value.len() != GROUP_RECEIPT_LEN {
        return Err(corrupt(WHAT, format!("value of {} bytes", value.len())));
    }
    Ok(ReceiptTimes {
        delivered_at: be_u64(WHAT, &value[..8])?,
        read_at: be_u64(WHAT, &value[8..16])?,
        expires_at: be_u64(WHAT, &value[16..])?,
    })
}

// ---- business ---------------------------------------------------------------------------

/// Appends `name` with its length in front (u16 big-endian), so that no name is a prefix of
/// another's encoding: a partition `a` and a partition `ab`, or a name holding any byte at all,
/// can never share keys. The caller has checked the length (at most 512 bytes).
fn push_name(key: &mut Vec<u8>, name: &str) {
    let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(&name.as_bytes()[..usize::from(len)]);
}

/// The prefix of every `business_records` key of one partition: table, then partition, each
/// length-prefixed. The record key follows it unencoded, so within a partition the keyspace's
/// bytewise order is the keys' bytewise order.
pub(super) fn record_partition_prefix(table: &str, partition: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + table.len() + partition.len());
    push_name(&mut key, table);
    push_name(&mut key, partition);
    key
}

/// `business_records` key: [`record_partition_prefix`], then the record key.
pub(super) fn record_key(table: &str, partition: &str, record: &str) -> Vec<u8> {
    let mut key = record_partition_prefix(table, partition);
    key.extend_from_slice(record.as_bytes());
    key
}

/// The record key of a `business_records` key whose partition prefix is `prefix_len` long.
pub(super) fn record_name_of_key(key: &[u8], prefix_len: usize) -> StoreResult<String> {
    let tail = key
        .get(prefix_len..)
        .ok_or_else(|| corrupt("business_records", "short key"))?;
    String::from_utf8(tail.to_vec()).map_err(|e| corrupt("business_records", e))
}

/// The prefix of a business queue's keys in `business_queue` and `business_unique`: the queue
/// name, length-prefixed. Also the `business_queue_meta` key.
pub(super) fn business_queue_prefix(queue: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + queue.len() + 8);
    push_name(&mut key, queue);
    key
}

/// `business_queue` key: [`business_queue_prefix`], then the seq big-endian.
pub(super) fn business_item_key(prefix: &[u8], seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 8);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The seq at the end of a `business_queue` key.
pub(super) fn business_item_seq(key: &[u8]) -> StoreResult<u64> {
    let tail = key
        .len()
        .checked_sub(8)
        .and_then(|start| key.get(start..))
        .ok_or_else(|| corrupt("business_queue", "short key"))?;
    be_u64("business_queue", tail)
}

/// `business_unique` key: [`business_queue_prefix`], then the unique key.
pub(super) fn business_unique_key(prefix: &[u8], unique: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + unique.len());
    key.extend_from_slice(prefix);
    key.extend_from_slice(unique.as_bytes());
    key
}

/// `business_unique` value: `unique_until`; `business_queue_meta` value: the next seq (u64
/// big-endian each).
pub(super) fn decode_u64(what: &'static str, value: &[u8]) -> StoreResult<u64> {
    be_u64(what, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_entries_round_trip() {
        let device = DeviceAddress::new(UserId::random(), 3).to_key();
        let entry = NewEntry {
            dedupe: None,
            enqueued_at: 17,
            expires_at: u64::MAX - 1,
            payload: Bytes::from_static(b"ciphertext"),
        };
        let key = queue_key(&device, 42);
        let value = encode_entry(&entry);
        assert_eq!(value.len(), ENTRY_HEADER_LEN + 10);
        let decoded = decode_entry(&key, &value).unwrap();
        assert_eq!(decoded.seq, 42);
        assert_eq!(decoded.enqueued_at, 17);
        assert_eq!(decoded.expires_at, u64::MAX - 1);
        assert_eq!(decoded.payload, entry.payload);
        assert_eq!(entry_expires_at(&value).unwrap(), u64::MAX - 1);
    }

    #[test]
    fn malformed_values_are_corrupt_not_panics() {
        let device = [0u8; DEVICE_KEY_LEN];
        let key = queue_key(&device, 1);
        for bad in [&b""[..], &[9, 0, 0][..], &[ENTRY_V1, 1, 2, 3][..]] {
            assert!(matches!(
                decode_entry(&key, bad),
                Err(StoreError::Corrupt { .. })
            ));
            assert!(entry_expires_at(bad).is_err());
        }
        assert!(decode_dedupe(&[1, 2, 3]).is_err());
        assert!(decode_queue_meta(&[1]).is_err());
        assert_eq!(decode_queue_meta(&7u64.to_be_bytes()).unwrap(), (7, 0));
        assert_eq!(decode_queue_meta(&encode_queue_meta(9, 4)).unwrap(), (9, 4));
        assert!(device_id_of_key(&[0; 3]).is_err());
        assert!(user_from_bytes("phones", &[0; 15]).is_err());
    }

    #[test]
    fn queue_keys_sort_by_device_then_seq() {
        let device = DeviceAddress::new(UserId::random(), 1).to_key();
        assert!(queue_key(&device, 2) < queue_key(&device, 10));
        assert!(queue_key(&device, u64::MAX) < queue_key(&[0xff; DEVICE_KEY_LEN], 0));
    }

    #[test]
    fn long_client_message_ids_are_refused() {
        let device = [0u8; DEVICE_KEY_LEN];
        let sender = DeviceAddress::new(UserId::random(), 1);
        let long = "x".repeat(MAX_CLIENT_MESSAGE_ID_BYTES + 1);
        assert!(matches!(
            dedupe_key(&device, &sender, &long),
            Err(StoreError::Invalid(_))
        ));
        let key = dedupe_key(&device, &sender, "m1").unwrap();
        assert_eq!(key.len(), 2 * DEVICE_KEY_LEN + 2);
    }

    #[test]
    fn group_records_round_trip_and_sort() {
        let group = GroupId::random();
        let key = group_message_key(&group, 300);
        assert_eq!(message_seq_of_key(&key).unwrap(), 300);
        assert!(group_message_key(&group, 2) < group_message_key(&group, 10));
        let value = encode_group_message(T0_TEST, b"body");
        assert_eq!(value.len(), GROUP_MESSAGE_HEADER_LEN + 4);
        assert_eq!(group_message_expires_at(&value).unwrap(), T0_TEST);
        assert_eq!(
            decode_group_message(&value).unwrap(),
            (T0_TEST, Bytes::from_static(b"body"))
        );
        assert_eq!(
            decode_group_message(&encode_group_message(1, b"")).unwrap(),
            (1, Bytes::new())
        );

        let user = UserId::random();
        let receipt_key = group_receipt_key(&group, 300, &user);
        assert!(receipt_key.starts_with(&key));
        assert_eq!(receipt_user_of_key(&receipt_key).unwrap(), user);
        let times = ReceiptTimes {
            delivered_at: 1,
            read_at: 2,
            expires_at: 3,
        };
        assert_eq!(
            decode_group_receipt(&encode_group_receipt(&times)).unwrap(),
            times
        );

        let sender = DeviceAddress::new(UserId::random(), 2);
        let dedupe = group_dedupe_key(&group, &sender, "m1").unwrap();
        assert_eq!(dedupe.len(), GROUP_ID_LEN + DEVICE_KEY_LEN + 2);
        let long = "x".repeat(MAX_CLIENT_MESSAGE_ID_BYTES + 1);
        assert!(matches!(
            group_dedupe_key(&group, &sender, &long),
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(decode_group_dedupe(&encode_dedupe(7, 9)).unwrap(), (7, 9));
        assert_eq!(
            group_from_bytes("group_invites", group.as_bytes()).unwrap(),
            group
        );
    }

    #[test]
    fn malformed_group_records_are_corrupt_not_panics() {
        for bad in [&b""[..], &[9, 0][..], &[GROUP_MESSAGE_V1, 1, 2][..]] {
            assert!(matches!(
                decode_group_message(bad),
                Err(StoreError::Corrupt { .. })
            ));
            assert!(group_message_expires_at(bad).is_err());
        }
        assert!(decode_group_receipt(&[0; 23]).is_err());
        assert!(decode_group_dedupe(&[0; 15]).is_err());
        assert!(message_seq_of_key(&[0; 20]).is_err());
        assert!(receipt_user_of_key(&[0; 30]).is_err());
        assert!(group_from_bytes("group_invites", &[0; 3]).is_err());
    }

    #[test]
    fn business_keys_keep_partitions_apart_and_keys_in_order() {
        let a = record_partition_prefix("t", "a");
        let ab = record_partition_prefix("t", "ab");
        assert!(!ab.starts_with(&a) && !a.starts_with(&ab));
        // Keys that would collide if names were only joined by a separator.
        assert_ne!(record_key("t", "a\0b", "c"), record_key("t", "a", "b\0c"));
        assert_ne!(record_key("t\0a", "b", "c"), record_key("t", "a\0b", "c"));
        assert!(record_key("t", "a", "b").starts_with(&a));
        assert!(!record_key("t", "ab", "").starts_with(&a));
        let mut keys = ["b", "a", "", "ab", "a\u{e9}", "B", "a\0"];
        let mut encoded: Vec<Vec<u8>> = keys.iter().map(|k| record_key("t", "p", k)).collect();
        keys.sort_unstable();
        encoded.sort_unstable();
        let prefix_len = record_partition_prefix("t", "p").len();
        let decoded: Vec<String> = encoded
            .iter()
            .map(|k| record_name_of_key(k, prefix_len).unwrap())
            .collect();
        assert_eq!(decoded, keys, "bytewise order of keys within a partition");

        let q = business_queue_prefix("q");
        assert!(business_item_key(&q, 2) < business_item_key(&q, 10));
        assert_eq!(business_item_seq(&business_item_key(&q, 77)).unwrap(), 77);
        assert!(!business_item_key(&business_queue_prefix("qq"), 1).starts_with(&q));
        assert!(business_item_seq(&[1, 2]).is_err());
        assert!(record_name_of_key(&[0, 1, 0xff], 2).is_err(), "not UTF-8");
        assert!(decode_u64("business_unique", &[0; 7]).is_err());
    }

    const T0_TEST: Millis = 1_700_000_000_000;
}
