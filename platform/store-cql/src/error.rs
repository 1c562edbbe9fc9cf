//! The one place where driver errors become [`StoreError`]s.
//!
//! - the cluster cannot be reached, is overloaded, has too few replicas alive, or a request
//!   timed out (client or server side): [`StoreError::Unavailable`], whose message says which;
//!   a timed-out write may still have been applied;
//! - the cluster refused a request as invalid (a mutation or batch too large for it):
//!   [`StoreError::Invalid`];
//! - a row that does not decode into what the schema promises: [`StoreError::Corrupt`].

use courier_store::StoreError;
use scylla::errors::{
    DbError, DeserializationError, ExecutionError, IntoRowsResultError, MaybeFirstRowError,
    NewSessionError, NextRowError, PagerExecutionError, PrepareError, RequestAttemptError,
    RowsError, TypeCheckError,
};

/// Converts a driver error of a request into a [`StoreError`].
pub(crate) trait IntoStoreError {
    fn into_store_error(self) -> StoreError;
}

pub(crate) fn unavailable(what: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(what.to_string())
}

fn from_attempt(error: &RequestAttemptError) -> StoreError {
    match error {
        RequestAttemptError::DbError(DbError::Invalid, message) => {
            StoreError::Invalid(format!("refused by the cluster: {message}"))
        }
        RequestAttemptError::DbError(
            DbError::ReadTimeout { .. } | DbError::WriteTimeout { .. },
            message,
        ) => unavailable(format!("the cluster timed out: {message}")),
        RequestAttemptError::DbError(DbError::Unavailable { .. }, message) => {
            unavailable(format!("too few replicas alive: {message}"))
        }
        other => unavailable(format!("cluster request failed: {other}")),
    }
}

impl IntoStoreError for ExecutionError {
    fn into_store_error(self) -> StoreError {
        match &self {
            ExecutionError::LastAttemptError(attempt) => from_attempt(attempt),
            ExecutionError::RequestTimeout(after) => unavailable(format!(
                "no answer from the cluster within {} ms",
                after.as_millis()
            )),
            ExecutionError::ConnectionPoolError(e) => {
                unavailable(format!("no connection to the cluster: {e}"))
            }
            _ => unavailable(format!("cluster request failed: {self}")),
        }
    }
}

impl IntoStoreError for PagerExecutionError {
    fn into_store_error(self) -> StoreError {
        unavailable(format!("cluster scan failed: {self}"))
    }
}

impl IntoStoreError for NextRowError {
    fn into_store_error(self) -> StoreError {
        match self {
            NextRowError::RowDeserializationError(e) => corrupt("scan", e),
            other => unavailable(format!("cluster scan failed: {other}")),
        }
    }
}

impl IntoStoreError for PrepareError {
    fn into_store_error(self) -> StoreError {
        unavailable(format!("cannot prepare a statement: {self}"))
    }
}

impl IntoStoreError for NewSessionError {
    fn into_store_error(self) -> StoreError {
        unavailable(format!("cannot connect to the cluster: {self}"))
    }
}

pub(crate) fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: detail.to_string(),
    }
}

/// Decoding errors of results name the table they came from.
pub(crate) trait DecodeContext<T> {
    fn decoding(self, table: &'static str) -> Result<T, StoreError>;
}

macro_rules! decode_errors {
    ($($error:ty),+) => {$(
        impl<T> DecodeContext<T> for Result<T, $error> {
            fn decoding(self, table: &'static str) -> Result<T, StoreError> {
                self.map_err(|e| corrupt(table, e))
            }
        }
    )+};
}

decode_errors!(
    IntoRowsResultError,
    RowsError,
    MaybeFirstRowError,
    DeserializationError,
    TypeCheckError
);

/// `?` on a driver result inside the store.
pub(crate) trait Driver<T> {
    fn store_err(self) -> Result<T, StoreError>;
}

impl<T, E: IntoStoreError> Driver<T> for Result<T, E> {
    fn store_err(self) -> Result<T, StoreError> {
        self.map_err(IntoStoreError::into_store_error)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timeouts_and_unreachable_clusters_are_unavailable() {
        let timeout = ExecutionError::RequestTimeout(Duration::from_millis(1500));
        let error = timeout.into_store_error();
        assert!(
            matches!(&error, StoreError::Unavailable(m) if m.contains("1500 ms")),
            "{error}"
        );
        let write_timeout = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::WriteTimeout {
                consistency: scylla::statement::Consistency::LocalQuorum,
                received: 1,
                required: 2,
                write_type: scylla::errors::WriteType::Simple,
            },
            "timed out".to_owned(),
        ));
        assert!(matches!(
            write_timeout.into_store_error(),
            StoreError::Unavailable(_)
        ));
        let unreachable = NewSessionError::EmptyKnownNodesList;
        assert!(matches!(
            unreachable.into_store_error(),
            StoreError::Unavailable(m) if m.contains("cannot connect")
        ));
    }

    #[test]
    fn requests_the_cluster_refuses_are_invalid() {
        let too_large = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::Invalid,
            "Batch too large".to_owned(),
        ));
        assert!(matches!(
            too_large.into_store_error(),
            StoreError::Invalid(m) if m.contains("Batch too large")
        ));
    }
}
