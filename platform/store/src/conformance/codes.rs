//! Verification codes: issue, check, expiry, rate limit.

use std::sync::Arc;

use super::{T0, phone, policy};
use crate::Store;
use crate::model::*;

pub async fn a_valid_code_is_consumed(store: Arc<dyn Store>) {
    let store = &*store;
    let p = phone(1);
    assert_eq!(
        store.check_code(&p, "135790", T0, 3).await.unwrap(),
        CodeCheck::Missing,
        "no code was requested"
    );
    let issued = store.issue_code(&p, "135790", T0, policy()).await.unwrap();
    assert_eq!(
        issued,
        IssueOutcome::Issued {
            expires_at: T0 + 600_000
        }
    );
    let pending = store.pending_code(&p, T0 + 1).await.unwrap();
    assert_eq!(
        pending,
        Some(VerificationCode {
            code: "135790".into(),
            expires_at: T0 + 600_000,
            attempts: 0
        })
    );
    assert_eq!(
        store.check_code(&p, "135790", T0 + 2, 3).await.unwrap(),
        CodeCheck::Valid
    );
    assert_eq!(
        store.check_code(&p, "135790", T0 + 3, 3).await.unwrap(),
        CodeCheck::Missing,
        "a code is consumed by its first successful check"
    );
    assert_eq!(store.pending_code(&p, T0 + 4).await.unwrap(), None);
    assert_eq!(
        store.check_code(&phone(2), "135790", T0, 3).await.unwrap(),
        CodeCheck::Missing,
        "codes belong to one phone number"
    );
}

pub async fn wrong_guesses_count_down_and_burn_the_code(store: Arc<dyn Store>) {
    let store = &*store;
    let p = phone(1);
    store.issue_code(&p, "246810", T0, policy()).await.unwrap();
    assert_eq!(
        store.check_code(&p, "000000", T0, 3).await.unwrap(),
        CodeCheck::Wrong { attempts_left: 2 }
    );
    assert_eq!(
        store.pending_code(&p, T0).await.unwrap().unwrap().attempts,
        1
    );
    assert_eq!(
        store.check_code(&p, "111111", T0, 3).await.unwrap(),
        CodeCheck::Wrong { attempts_left: 1 }
    );
    assert_eq!(
        store.check_code(&p, "222222", T0, 3).await.unwrap(),
        CodeCheck::Wrong { attempts_left: 0 }
    );
    assert_eq!(
        store.check_code(&p, "246810", T0, 3).await.unwrap(),
        CodeCheck::Missing,
        "the last allowed wrong guess burns the code"
    );
    assert_eq!(store.pending_code(&p, T0).await.unwrap(), None);

    // A wrong guess below the limit leaves the code usable.
    let q = phone(2);
    store.issue_code(&q, "975310", T0, policy()).await.unwrap();
    assert_eq!(
        store.check_code(&q, "975311", T0, 3).await.unwrap(),
        CodeCheck::Wrong { attempts_left: 2 }
    );
    assert_eq!(
        store.check_code(&q, "975310", T0, 3).await.unwrap(),
        CodeCheck::Valid
    );
}

pub async fn codes_expire(store: Arc<dyn Store>) {
    let store = &*store;
    let p = phone(1);
    let short = IssuePolicy {
        ttl_ms: 1_000,
        ..policy()
    };
    assert_eq!(
        store.issue_code(&p, "123456", T0, short).await.unwrap(),
        IssueOutcome::Issued {
            expires_at: T0 + 1_000
        }
    );
    assert!(store.pending_code(&p, T0 + 999).await.unwrap().is_some());
    assert_eq!(
        store.pending_code(&p, T0 + 1_000).await.unwrap(),
        None,
        "expired at expires_at"
    );
    assert_eq!(
        store.check_code(&p, "123456", T0 + 1_000, 3).await.unwrap(),
        CodeCheck::Expired,
        "the right code is refused once expired"
    );
    store
        .issue_code(&p, "654321", T0 + 2_000, short)
        .await
        .unwrap();
    assert_eq!(
        store.check_code(&p, "654321", T0 + 2_500, 3).await.unwrap(),
        CodeCheck::Valid
    );
}

pub async fn issuing_is_rate_limited_per_window(store: Arc<dyn Store>) {
    let store = &*store;
    let p = phone(1);
    let limited = IssuePolicy {
        ttl_ms: 600_000,
        max_per_window: 3,
        window_ms: 60_000,
    };
    for (i, code) in ["100001", "100002", "100003"].into_iter().enumerate() {
        let outcome = store
            .issue_code(&p, code, T0 + 10 * i as u64, limited)
            .await
            .unwrap();
        assert!(
            matches!(outcome, IssueOutcome::Issued { .. }),
            "code {i}: {outcome:?}"
        );
    }
    let now = T0 + 30;
    let retry_after_ms = match store.issue_code(&p, "100004", now, limited).await.unwrap() {
        IssueOutcome::RateLimited { retry_after_ms } => retry_after_ms,
        other => panic!("a fourth code within the window was {other:?}"),
    };
    assert!(
        retry_after_ms > 0 && retry_after_ms <= limited.window_ms,
        "retry after {retry_after_ms} ms"
    );
    assert_eq!(
        store.check_code(&p, "100004", now, 3).await.unwrap(),
        CodeCheck::Wrong { attempts_left: 2 },
        "a refused code does not replace the pending one"
    );
    assert_eq!(
        store.check_code(&p, "100003", now, 3).await.unwrap(),
        CodeCheck::Valid
    );
    assert!(
        matches!(
            store
                .issue_code(&phone(2), "200001", now, limited)
                .await
                .unwrap(),
            IssueOutcome::Issued { .. }
        ),
        "the limit is per phone number"
    );
    assert!(
        matches!(
            store
                .issue_code(&p, "100005", now + retry_after_ms - 1, limited)
                .await
                .unwrap(),
            IssueOutcome::RateLimited { .. }
        ),
        "still limited just before retry_after"
    );
    assert!(
        matches!(
            store
                .issue_code(&p, "100006", now + retry_after_ms, limited)
                .await
                .unwrap(),
            IssueOutcome::Issued { .. }
        ),
        "issued again at retry_after"
    );
}

pub async fn a_new_code_replaces_the_pending_one(store: Arc<dyn Store>) {
    let store = &*store;
    let p = phone(1);
    store.issue_code(&p, "111111", T0, policy()).await.unwrap();
    for left in [2, 1] {
        assert_eq!(
            store.check_code(&p, "999999", T0, 3).await.unwrap(),
            CodeCheck::Wrong {
                attempts_left: left
            }
        );
    }
    store
        .issue_code(&p, "222222", T0 + 1, policy())
        .await
        .unwrap();
    assert_eq!(
        store.check_code(&p, "111111", T0 + 2, 3).await.unwrap(),
        CodeCheck::Wrong { attempts_left: 2 },
        "the old code is gone and the new one starts with fresh attempts"
    );
    assert_eq!(
        store.check_code(&p, "222222", T0 + 3, 3).await.unwrap(),
        CodeCheck::Valid
    );
}
