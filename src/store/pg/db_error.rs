//! A database error in the server's words, the error itself kept.

use std::fmt;

use tokio_postgres::error::SqlState;

/// What PostgreSQL said, shown as its severity, message and SQLSTATE
/// (tokio-postgres' own text is only "db error"), with tokio-postgres'
/// error as its source: the SQLSTATE stays there, for the crate (which
/// runs a transaction again after a deadlock) and for hosts, which find
/// it down the error's `source()` chain.
pub(super) struct DbError {
    words: String,
    source: tokio_postgres::Error,
}

impl DbError {
    /// `e` in the server's words, if the server said something.
    pub(super) fn new(e: tokio_postgres::Error) -> Result<Self, tokio_postgres::Error> {
        match e.as_db_error() {
            Some(db) => Ok(DbError {
                words: format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
                source: e,
            }),
            None => Err(e),
        }
    }
}

/// As the words alone, as before the error was kept.
impl fmt::Debug for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.words, f)
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.words)
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Whether `e`, or an error down its `source()` chain, is PostgreSQL's
/// "deadlock detected" (40P01) or "could not serialize access" (40001):
/// the transaction was rolled back and may be run again.
pub(super) fn is_retryable_conflict(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        let code = e
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::code);
        if code.is_some_and(|c| {
            *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
        }) {
            return true;
        }
        next = e.source();
    }
    false
}
