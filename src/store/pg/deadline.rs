//! The caller's deadline on the database's clock.
//!
//! The append writer sends a batch as one autocommitted statement, and the
//! statement refuses to commit once the database's clock has passed the
//! caller's deadline (`imcore_append`, schema version 10). The deadline is
//! an instant on this process's monotonic clock, so it has to be told in
//! the database's time, which this process learns by asking:
//! `clock_timestamp()` read at some moment between sending the question
//! (`asked`) and having the answer (`answered`). Taking the answer as if
//! read at `answered`, the latest it can have been, puts every deadline
//! early, never late: the statement gives up no later than the caller.
//!
//! Clocks drift apart, so a reading is used for [`DbClock::FRESH`] at
//! most, and a deadline is put earlier still by [`DbClock::MARGIN`] and by
//! a thousandth of the time since the reading (twice the drift that NTP
//! lets a clock have). What is left is a database clock stepped backwards
//! while a statement waits, which lets one late statement commit: the
//! same doubt as a `COMMIT` whose answer never came.

use std::time::{Duration, Instant};

use deadpool_postgres::Object;

use super::pg_error;
use crate::error::Result;

/// The database's clock, in microseconds since the epoch.
const NOW: &str = "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::int8";

/// One reading of the database's clock.
#[derive(Clone, Copy, Debug)]
pub(super) struct DbClock {
    /// What the database's clock said, in microseconds since the epoch.
    micros: i64,
    /// When this process had the answer.
    answered: Instant,
}

impl DbClock {
    /// How long a reading is used before the clock is read again.
    pub(super) const FRESH: Duration = Duration::from_secs(10);
    /// How much earlier than the caller the statement gives up, at least.
    pub(super) const MARGIN: Duration = Duration::from_millis(1);

    /// Reads the database's clock on `client`.
    pub(super) async fn read(client: &Object) -> Result<DbClock> {
        let row = client.query_one(NOW, &[]).await.map_err(pg_error)?;
        Ok(DbClock {
            micros: row.get(0),
            answered: Instant::now(),
        })
    }

    /// Whether this reading is still to be used at `now`.
    pub(super) fn is_fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.answered) < Self::FRESH
    }

    /// `deadline` on the database's clock, early rather than late.
    pub(super) fn deadline(&self, deadline: Instant) -> i64 {
        let ahead = deadline.saturating_duration_since(self.answered);
        let early = Self::MARGIN + ahead / 1000;
        let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        self.micros
            .saturating_add(micros(ahead))
            .saturating_sub(micros(early))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_is_told_early_on_the_database_clock() {
        let answered = Instant::now();
        let clock = DbClock {
            micros: 1_000_000_000,
            answered,
        };
        // One second after the answer: a second later on the database's
        // clock, less the margin and a thousandth of the second.
        let second = clock.deadline(answered + Duration::from_secs(1));
        assert_eq!(second, 1_000_000_000 + 1_000_000 - 1_000 - 1_000);
        // A deadline before the answer is the reading itself, less the
        // margin: already past.
        assert_eq!(clock.deadline(answered), 1_000_000_000 - 1_000);
        assert!(clock.is_fresh(answered + Duration::from_secs(9)));
        assert!(!clock.is_fresh(answered + DbClock::FRESH));
    }
}
