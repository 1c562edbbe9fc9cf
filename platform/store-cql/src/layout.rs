//! Pure arithmetic of the data model: partition buckets, TTL backstops, and the conversions
//! between the trait's unsigned numbers and CQL's signed ones.

use std::ops::RangeInclusive;
use std::time::{SystemTime, UNIX_EPOCH};

use courier_store::{Millis, StoreError, StoreResult};

/// Queue entries per queue partition: `(device, seq / QUEUE_BUCKET_SPAN)`. A device that is
/// offline for weeks spreads over several partitions, and a fully acknowledged bucket goes with
/// one partition tombstone.
pub(crate) const QUEUE_BUCKET_SPAN: u64 = 4096;

/// Group messages per message partition: `(group, message_seq / GROUP_MESSAGE_BUCKET_SPAN)`.
pub(crate) const GROUP_MESSAGE_BUCKET_SPAN: u64 = 1024;

/// Added to every TTL: the backstop only fires a day after the record's `expires_at` by the wall
/// clock, so a caller whose "now" lags the wall clock still reads what the contract promises.
pub(crate) const TTL_GRACE_SECS: u64 = 86_400;

/// Cassandra's and ScyllaDB's longest TTL (20 years).
const MAX_TTL_SECS: u64 = 630_720_000;

/// Cassandra's latest expiry time in its default (4.x-compatible) storage mode: 2038-01-19.
/// A TTL reaching past it is refused, so such records get no TTL at all.
const MAX_EXPIRY_EPOCH_SECS: u64 = i32::MAX as u64 - 1;

/// The queue bucket of a sequence number.
pub(crate) fn queue_bucket(seq: u64) -> u64 {
    seq / QUEUE_BUCKET_SPAN
}

/// The buckets holding the seqs `first..=last` (empty when `first > last`).
pub(crate) fn queue_buckets(first: u64, last: u64) -> RangeInclusive<u64> {
    if first > last {
        #[allow(clippy::reversed_empty_ranges)] // the empty range, on purpose
        return 1..=0;
    }
    queue_bucket(first)..=queue_bucket(last)
}

/// The highest seq a queue bucket can hold.
pub(crate) fn queue_bucket_last_seq(bucket: u64) -> u64 {
    bucket
        .checked_add(1)
        .and_then(|next| next.checked_mul(QUEUE_BUCKET_SPAN))
        .map_or(u64::MAX, |next_first| next_first - 1)
}

/// How an acknowledgement of `up_to` deletes one bucket it touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BucketDelete {
    /// Every seq the bucket can ever hold is acknowledged: one partition tombstone.
    Whole,
    /// One range tombstone `seq <= up_to`.
    UpTo(u64),
}

/// What an acknowledgement from watermark `acked` to `up_to` deletes, bucket by bucket.
pub(crate) fn ack_deletes(acked: u64, up_to: u64) -> Vec<(u64, BucketDelete)> {
    queue_buckets(acked.saturating_add(1), up_to)
        .map(|bucket| {
            if queue_bucket_last_seq(bucket) <= up_to {
                (bucket, BucketDelete::Whole)
            } else {
                (bucket, BucketDelete::UpTo(up_to))
            }
        })
        .collect()
}

/// The group message bucket of a message seq.
pub(crate) fn group_message_bucket(message_seq: u64) -> u64 {
    message_seq / GROUP_MESSAGE_BUCKET_SPAN
}

/// The TTL (seconds; 0 = none) of a record that expires at `expires_at` by the caller's clock,
/// written when the wall clock says `wall_now`.
///
/// The TTL is only a backstop that spares sweeps most of their work: reads always compare the
/// stored `expires_at` with the caller's "now", and [`Store::sweep_expired`] deletes what the
/// contract says. So a record gets no TTL when its `expires_at` is already past by the wall
/// clock (the caller's clock is elsewhere; only a sweep may remove it) or too far ahead for the
/// database; otherwise the time left plus [`TTL_GRACE_SECS`].
///
/// [`Store::sweep_expired`]: courier_store::Store::sweep_expired
pub(crate) fn backstop_ttl(expires_at: Millis, wall_now: Millis) -> i32 {
    if expires_at <= wall_now {
        return 0;
    }
    let left_secs = (expires_at - wall_now).div_ceil(1000);
    let ttl = left_secs.saturating_add(TTL_GRACE_SECS);
    let expiry = (wall_now / 1000).saturating_add(ttl);
    if ttl > MAX_TTL_SECS || expiry > MAX_EXPIRY_EPOCH_SECS {
        return 0;
    }
    // At most MAX_TTL_SECS, so it fits.
    i32::try_from(ttl).unwrap_or(0)
}

/// The wall clock in milliseconds since the epoch (TTLs only; the contract's times come from
/// the caller).
pub(crate) fn wall_clock_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A sequence number as a CQL `bigint`; `Invalid` beyond `i64::MAX` (the clustering order of
/// larger ones would be wrong).
pub(crate) fn seq_to_cql(seq: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(seq).map_err(|_| StoreError::Invalid(format!("{what} {seq} is too large")))
}

/// A time or count as a CQL `bigint`, bit for bit (never a clustering key, so order does not
/// matter).
pub(crate) fn u64_to_cql(value: u64) -> i64 {
    value as i64
}

/// The inverse of [`u64_to_cql`] and [`seq_to_cql`].
pub(crate) fn u64_from_cql(value: i64) -> u64 {
    value as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_buckets_split_seqs_in_spans() {
        assert_eq!(queue_bucket(1), 0);
        assert_eq!(queue_bucket(QUEUE_BUCKET_SPAN - 1), 0);
        assert_eq!(queue_bucket(QUEUE_BUCKET_SPAN), 1);
        assert_eq!(queue_bucket_last_seq(0), QUEUE_BUCKET_SPAN - 1);
        assert_eq!(queue_bucket_last_seq(2), 3 * QUEUE_BUCKET_SPAN - 1);
        assert_eq!(queue_buckets(1, 5), 0..=0);
        assert_eq!(queue_buckets(4000, 9000), 0..=2);
        assert!(queue_buckets(6, 5).is_empty());
        assert_eq!(queue_bucket_last_seq(u64::MAX), u64::MAX);
    }

    #[test]
    fn acks_drop_whole_buckets_and_cut_the_last_one() {
        assert_eq!(ack_deletes(0, 3), vec![(0, BucketDelete::UpTo(3))]);
        assert_eq!(
            ack_deletes(3, QUEUE_BUCKET_SPAN + 10),
            vec![
                (0, BucketDelete::Whole),
                (1, BucketDelete::UpTo(QUEUE_BUCKET_SPAN + 10))
            ]
        );
        let end_of_first = QUEUE_BUCKET_SPAN - 1;
        assert_eq!(
            ack_deletes(100, end_of_first),
            vec![(0, BucketDelete::Whole)],
            "the last seq of a bucket acknowledged: the whole partition goes"
        );
        assert_eq!(
            ack_deletes(end_of_first, QUEUE_BUCKET_SPAN),
            vec![(1, BucketDelete::UpTo(QUEUE_BUCKET_SPAN))],
            "a fully acknowledged bucket is not deleted again"
        );
        assert!(ack_deletes(5, 5).is_empty());
    }

    #[test]
    fn group_message_buckets() {
        assert_eq!(group_message_bucket(1), 0);
        assert_eq!(group_message_bucket(GROUP_MESSAGE_BUCKET_SPAN), 1);
        assert_eq!(group_message_bucket(300), 0);
    }

    #[test]
    fn ttl_is_a_generous_backstop() {
        let wall = 1_800_000_000_000;
        assert_eq!(
            backstop_ttl(wall + 60_000, wall),
            60 + TTL_GRACE_SECS as i32
        );
        assert_eq!(
            backstop_ttl(wall + 1, wall),
            1 + TTL_GRACE_SECS as i32,
            "rounded up"
        );
        assert_eq!(backstop_ttl(wall, wall), 0, "due now: no TTL");
        assert_eq!(
            backstop_ttl(wall - 30 * 86_400_000, wall),
            0,
            "in the past by the wall clock: left to sweeps"
        );
        assert_eq!(
            backstop_ttl(wall + 30 * 365 * 86_400_000, wall),
            0,
            "beyond the longest TTL: none rather than one that ends early"
        );
        let near_2038 = (MAX_EXPIRY_EPOCH_SECS - 10 * 86_400) * 1000;
        assert_eq!(
            backstop_ttl(near_2038 + 20 * 86_400_000, near_2038),
            0,
            "an expiry past 2038 would be refused by Cassandra's default storage mode"
        );
        assert!(backstop_ttl(near_2038 + 1000, near_2038) > 0);
    }

    #[test]
    fn cql_numbers_round_trip() {
        for value in [0, 1, i64::MAX as u64, u64::MAX] {
            assert_eq!(u64_from_cql(u64_to_cql(value)), value);
        }
        assert_eq!(seq_to_cql(7, "seq").unwrap(), 7);
        assert!(seq_to_cql(u64::MAX, "seq").is_err());
    }
}
