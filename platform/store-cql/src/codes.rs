//! Verification codes. Every write is a compare-and-set on the row's `revision` (a lightweight
//! transaction), after a `SERIAL` read: two processes checking the same code cannot both
//! consume it, and a guess cannot be counted against a code that was replaced meanwhile.

use courier_protocol::PhoneNumber;
use courier_store::rules::check_guess;
use courier_store::{
    CodeCheck, IssueOutcome, IssuePolicy, Millis, StoreError, StoreResult, VerificationCode,
};
use uuid::Uuid;

use crate::CqlStore;
use crate::error::corrupt;
use crate::layout::{backstop_ttl, u64_from_cql, u64_to_cql, wall_clock_ms};

/// How often a code operation retries after losing a compare-and-set to a concurrent one.
const MAX_CAS_ATTEMPTS: usize = 32;

type CodeRow = (
    Option<Uuid>,
    Option<String>,
    Option<i64>,
    Option<i32>,
    Option<Vec<i64>>,
    Option<i64>,
);

/// The row of a phone, decoded.
#[derive(Clone, Debug, Default)]
struct CodeRecord {
    /// `None`: no row.
    revision: Option<Uuid>,
    pending: Option<VerificationCode>,
    issued_at: Vec<Millis>,
    keep_until: Millis,
}

impl CodeRecord {
    fn from_row(row: Option<CodeRow>) -> StoreResult<Self> {
        let Some((revision, code, expires_at, attempts, issued_at, keep_until)) = row else {
            return Ok(CodeRecord::default());
        };
        if revision.is_none() {
            return Err(corrupt("codes", "a code row without revision"));
        }
        let pending = match (code, expires_at) {
            (Some(code), Some(expires_at)) => Some(VerificationCode {
                code,
                expires_at: u64_from_cql(expires_at),
                attempts: attempts.unwrap_or(0).max(0) as u32,
            }),
            _ => None,
        };
        Ok(CodeRecord {
            revision,
            pending,
            issued_at: issued_at
                .unwrap_or_default()
                .into_iter()
                .map(u64_from_cql)
                .collect(),
            keep_until: u64_from_cql(keep_until.unwrap_or(0)),
        })
    }
}

impl CqlStore {
    async fn code_record(&self, phone: &PhoneNumber, serial: bool) -> StoreResult<CodeRecord> {
        let statement = if serial {
            &self.st.code_get_serial
        } else {
            &self.st.code_get
        };
        let row: Option<CodeRow> = self
            .db
            .maybe_row(statement, (phone.as_str(),), "codes")
            .await?;
        CodeRecord::from_row(row)
    }

    /// Writes `record` whole if the row is still at `previous`'s revision; whether it was.
    async fn swap_code(
        &self,
        phone: &PhoneNumber,
        previous: &CodeRecord,
        record: &CodeRecord,
    ) -> StoreResult<bool> {
        let ttl = backstop_ttl(record.keep_until, wall_clock_ms());
        let pending = record.pending.as_ref();
        let code = pending.map(|p| p.code.clone());
        let expires_at = pending.map(|p| u64_to_cql(p.expires_at));
        let attempts = pending.map(|p| p.attempts.min(i32::MAX as u32) as i32);
        let issued: Vec<i64> = record.issued_at.iter().copied().map(u64_to_cql).collect();
        let keep_until = u64_to_cql(record.keep_until);
        let revision = Uuid::new_v4();
        let outcome = match previous.revision {
            None => {
                let values = (
                    revision,
                    code,
                    expires_at,
                    attempts,
                    issued,
                    keep_until,
                    phone.as_str(),
                    ttl,
                );
                self.db.lwt(&self.st.code_insert, values, "codes").await?
            }
            Some(previous) => {
                let values = (
                    ttl,
                    revision,
                    code,
                    expires_at,
                    attempts,
                    issued,
                    keep_until,
                    phone.as_str(),
                    previous,
                );
                self.db.lwt(&self.st.code_update, values, "codes").await?
            }
        };
        Ok(outcome.applied)
    }

    pub(crate) async fn issue_code_impl(
        &self,
        phone: &PhoneNumber,
        code: &str,
        now: Millis,
        policy: IssuePolicy,
    ) -> StoreResult<IssueOutcome> {
        let _phone = self.locks.phones.lock(&phone.as_str()).await;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let previous = self.code_record(phone, true).await?;
            let mut record = previous.clone();
            if let Some(limited) =
                courier_store::rules::admit_code(&mut record.issued_at, now, policy)
            {
                return Ok(limited);
            }
            let expires_at = now.saturating_add(policy.ttl_ms);
            record.pending = Some(VerificationCode {
                code: code.to_owned(),
                expires_at,
                attempts: 0,
            });
            record.keep_until = expires_at
                .max(now.saturating_add(policy.window_ms))
                .max(previous.keep_until);
            if self.swap_code(phone, &previous, &record).await? {
                return Ok(IssueOutcome::Issued { expires_at });
            }
        }
        Err(contended(phone))
    }

    pub(crate) async fn check_code_impl(
        &self,
        phone: &PhoneNumber,
        guess: &str,
        now: Millis,
        max_attempts: u32,
    ) -> StoreResult<CodeCheck> {
        let _phone = self.locks.phones.lock(&phone.as_str()).await;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let previous = self.code_record(phone, true).await?;
            let mut record = previous.clone();
            let outcome = check_guess(&mut record.pending, guess, now, max_attempts);
            if matches!(outcome, CodeCheck::Missing | CodeCheck::Expired) {
                return Ok(outcome);
            }
            if self.swap_code(phone, &previous, &record).await? {
                return Ok(outcome);
            }
        }
        Err(contended(phone))
    }

    pub(crate) async fn pending_code_impl(
        &self,
        phone: &PhoneNumber,
        now: Millis,
    ) -> StoreResult<Option<VerificationCode>> {
        let record = self.code_record(phone, false).await?;
        Ok(record.pending.filter(|code| code.expires_at > now))
    }
}

fn contended(phone: &PhoneNumber) -> StoreError {
    StoreError::Unavailable(format!("too many concurrent code operations for {phone}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_decode_into_records() {
        assert!(CodeRecord::from_row(None).unwrap().revision.is_none());
        let consumed = CodeRecord::from_row(Some((
            Some(Uuid::nil()),
            None,
            None,
            None,
            Some(vec![5, 6]),
            Some(9),
        )))
        .unwrap();
        assert_eq!(consumed.pending, None);
        assert_eq!(consumed.issued_at, vec![5, 6]);
        assert_eq!(consumed.keep_until, 9);
        assert!(CodeRecord::from_row(Some((None, None, None, None, None, None))).is_err());
    }
}
