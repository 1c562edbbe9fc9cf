//! Rules of the storage contract that do not depend on the backend, shared by every
//! implementation so that they cannot drift apart.

use crate::business::{MAX_QUEUE_NAME_BYTES, MAX_RECORD_NAME_BYTES, QueueItem, RecordKey};
use crate::error::{StoreError, StoreResult};
use crate::model::{
    CodeCheck, IssueOutcome, IssuePolicy, MAX_INVITE_CODE_BYTES, Millis, VerificationCode,
};

/// `Invalid` for a code that cannot be an invite code (empty or too long).
pub fn check_invite_code(code: &str) -> StoreResult<()> {
    if code.is_empty() || code.len() > MAX_INVITE_CODE_BYTES {
        return Err(StoreError::Invalid(format!(
            "invite code of {} bytes (1 to {MAX_INVITE_CODE_BYTES})",
            code.len()
        )));
    }
    Ok(())
}

/// `Invalid` for a table name, partition or record key longer than
/// [`MAX_RECORD_NAME_BYTES`].
pub fn check_record_name(what: &str, name: &str) -> StoreResult<()> {
    if name.len() > MAX_RECORD_NAME_BYTES {
        return Err(StoreError::Invalid(format!(
            "{what} of {} bytes (at most {MAX_RECORD_NAME_BYTES})",
            name.len()
        )));
    }
    Ok(())
}

/// `Invalid` unless every part of `key` fits [`check_record_name`].
pub fn check_record_key(key: &RecordKey) -> StoreResult<()> {
    check_record_name("table name", &key.table)?;
    check_record_name("partition", &key.partition)?;
    check_record_name("record key", &key.key)
}

/// `Invalid` for a queue name or unique key longer than [`MAX_QUEUE_NAME_BYTES`].
pub fn check_queue_name(what: &str, name: &str) -> StoreResult<()> {
    if name.len() > MAX_QUEUE_NAME_BYTES {
        return Err(StoreError::Invalid(format!(
            "{what} of {} bytes (at most {MAX_QUEUE_NAME_BYTES})",
            name.len()
        )));
    }
    Ok(())
}

/// `Invalid` (before anything is read or written) for an over-long queue name or unique key.
pub fn check_append(queue: &str, items: &[QueueItem]) -> StoreResult<()> {
    check_queue_name("queue name", queue)?;
    for unique in items.iter().filter_map(|item| item.unique.as_ref()) {
        check_queue_name("unique key", &unique.key)?;
    }
    Ok(())
}

/// Whether a recorded unique key still keeps a new item out at `now`: until `unique_until`,
/// exclusive.
pub fn unique_key_holds(unique_until: Millis, now: Millis) -> bool {
    unique_until > now
}

/// The earlier of two times where 0 means "not yet".
pub fn earliest(a: Millis, b: Millis) -> Millis {
    match (a, b) {
        (0, b) => b,
        (a, 0) => a,
        (a, b) => a.min(b),
    }
}

/// Applies the issuing window to the times codes were issued for one number: forgets those
/// outside the window, then either records `now` (`None`: a code may be issued) or says how
/// long to wait (`Some(RateLimited)`).
pub fn admit_code(
    issued_at: &mut Vec<Millis>,
    now: Millis,
    policy: IssuePolicy,
) -> Option<IssueOutcome> {
    issued_at.retain(|&at| at.saturating_add(policy.window_ms) > now);
    if issued_at.len() >= policy.max_per_window as usize {
        let oldest = issued_at.iter().copied().min().unwrap_or(now);
        let retry_after_ms = oldest.saturating_add(policy.window_ms).saturating_sub(now);
        return Some(IssueOutcome::RateLimited {
            retry_after_ms: retry_after_ms.max(1),
        });
    }
    issued_at.push(now);
    None
}

/// Checks `guess` against the pending code of a number and updates it: a valid code is
/// consumed, a wrong guess counts, and the last allowed wrong guess burns the code.
pub fn check_guess(
    pending: &mut Option<VerificationCode>,
    guess: &str,
    now: Millis,
    max_attempts: u32,
) -> CodeCheck {
    let Some(code) = pending.as_mut() else {
        return CodeCheck::Missing;
    };
    if code.expires_at <= now {
        return CodeCheck::Expired;
    }
    if constant_time_eq(code.code.as_bytes(), guess.as_bytes()) {
        *pending = None;
        return CodeCheck::Valid;
    }
    code.attempts = code.attempts.saturating_add(1);
    let attempts_left = max_attempts.saturating_sub(code.attempts);
    if attempts_left == 0 {
        *pending = None;
    }
    CodeCheck::Wrong { attempts_left }
}

/// Compares without an early exit, so timing does not tell how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_codes_compare_equal() {
        assert!(constant_time_eq(b"123456", b"123456"));
        assert!(!constant_time_eq(b"123456", b"123457"));
        assert!(!constant_time_eq(b"123456", b"12345"));
    }

    #[test]
    fn guesses_consume_count_and_burn() {
        let code = |attempts| {
            Some(VerificationCode {
                code: "123456".into(),
                expires_at: 100,
                attempts,
            })
        };
        let mut pending = code(0);
        assert_eq!(check_guess(&mut pending, "123456", 50, 3), CodeCheck::Valid);
        assert_eq!(pending, None, "consumed");
        assert_eq!(
            check_guess(&mut pending, "123456", 50, 3),
            CodeCheck::Missing
        );
        let mut pending = code(1);
        assert_eq!(
            check_guess(&mut pending, "000000", 50, 3),
            CodeCheck::Wrong { attempts_left: 1 }
        );
        assert_eq!(
            check_guess(&mut pending, "000000", 50, 3),
            CodeCheck::Wrong { attempts_left: 0 }
        );
        assert_eq!(pending, None, "burnt");
        let mut pending = code(0);
        assert_eq!(
            check_guess(&mut pending, "123456", 100, 3),
            CodeCheck::Expired
        );
        assert!(pending.is_some(), "an expired code is left to expire");
    }

    #[test]
    fn invite_codes_are_checked() {
        assert!(check_invite_code("").is_err());
        assert!(check_invite_code(&"c".repeat(MAX_INVITE_CODE_BYTES)).is_ok());
        assert!(check_invite_code(&"c".repeat(MAX_INVITE_CODE_BYTES + 1)).is_err());
    }

    #[test]
    fn business_names_are_checked() {
        let long = "n".repeat(MAX_RECORD_NAME_BYTES + 1);
        let longest = "n".repeat(MAX_RECORD_NAME_BYTES);
        assert!(check_record_key(&RecordKey::new(&*longest, &*longest, &*longest)).is_ok());
        assert!(check_record_key(&RecordKey::new("", "", "")).is_ok());
        for key in [
            RecordKey::new(&*long, "p", "k"),
            RecordKey::new("t", &*long, "k"),
            RecordKey::new("t", "p", &*long),
        ] {
            assert!(matches!(
                check_record_key(&key),
                Err(StoreError::Invalid(_))
            ));
        }
        let unique = |key: &str| QueueItem {
            value: Default::default(),
            unique: Some(crate::business::UniqueKey {
                key: key.to_owned(),
                unique_until: 1,
            }),
        };
        let longest = "q".repeat(MAX_QUEUE_NAME_BYTES);
        let long = "q".repeat(MAX_QUEUE_NAME_BYTES + 1);
        assert!(check_append(&longest, &[unique(&longest)]).is_ok());
        assert!(check_append(&long, &[]).is_err());
        assert!(check_append("q", &[unique("a"), unique(&long)]).is_err());
        assert!(unique_key_holds(10, 9));
        assert!(!unique_key_holds(10, 10), "until, exclusive");
    }

    #[test]
    fn earliest_ignores_not_yet() {
        assert_eq!(earliest(0, 5), 5);
        assert_eq!(earliest(5, 0), 5);
        assert_eq!(earliest(3, 5), 3);
    }

    #[test]
    fn the_window_admits_then_limits() {
        let policy = IssuePolicy {
            ttl_ms: 10,
            max_per_window: 2,
            window_ms: 100,
        };
        let mut issued = Vec::new();
        assert_eq!(admit_code(&mut issued, 1000, policy), None);
        assert_eq!(admit_code(&mut issued, 1010, policy), None);
        assert_eq!(
            admit_code(&mut issued, 1020, policy),
            Some(IssueOutcome::RateLimited { retry_after_ms: 80 })
        );
        assert_eq!(
            admit_code(&mut issued, 1100, policy),
            None,
            "the first left the window"
        );
    }
}
