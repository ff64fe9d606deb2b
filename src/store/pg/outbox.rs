//! The outbox on PostgreSQL: `imcore_outbox`, written in the transaction
//! that stores the messages. A claimed entry holds its batch's number (the
//! batch's first entry number) and the batch's lease end; claims take
//! turns on an advisory lock, so that two stores never form or take over
//! a batch at once, and a renewal or a takeover changes the lease end only
//! where it is still the one read, so that one of two racing them loses.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;

use super::writer::query;
use super::{message_from, pg_error, to_i64, to_u64, within, PgStore};
use crate::error::Result;
use crate::model::Message;
use crate::store::{check_limit, lease_end, renewal_end, Outbox, OutboxBatch, OutboxLease};

/// Key of the advisory lock claims take turns on (the bytes of "outbox").
const CLAIM_LOCK: i64 = 0x6f75_7462_6f78;

#[async_trait]
impl Outbox for PgStore {
    fn enable_outbox(&self) {
        self.outbox.store(true, Ordering::Release);
    }

    async fn outbox(&self, limit: usize) -> Result<Vec<(u64, Message)>> {
        check_limit(limit)?;
        let limit = to_i64(limit as u64);
        let rows = self.rows(PENDING, &[&limit]).await?;
        rows.iter()
            .map(|r| Ok((to_u64(r.get(11), "outbox entry")?, message_from(r, None)?)))
            .collect()
    }

    async fn claim_outbox(
        &self,
        limit: usize,
        now_ms: i64,
        lease: Duration,
    ) -> Result<Option<OutboxBatch>> {
        check_limit(limit)?;
        let until = lease_end(now_ms, lease)?;
        let limit = to_i64(limit as u64);
        let mut client = self.client().await?;
        within(self.timeout, async {
            let tx = client.transaction().await.map_err(pg_error)?;
            query(&tx, TAKE_TURN, &[&CLAIM_LOCK]).await?;
            let mut batch = None;
            if let Some(expired) = query(&tx, EXPIRED, &[&now_ms]).await?.first() {
                let (id, held_until): (i64, i64) = (expired.get(0), expired.get(1));
                // None if its holder renewed it meanwhile.
                let taken = query(&tx, MOVE_LEASE, &[&id, &held_until, &until]).await?;
                batch = (!taken.is_empty()).then_some(id);
            }
            if batch.is_none() {
                let formed = query(&tx, FORM, &[&limit, &until]).await?;
                batch = formed.first().map(|r| r.get(0));
            }
            let Some(batch) = batch else {
                return tx.commit().await.map_err(pg_error).map(|()| None);
            };
            let rows = query(&tx, ENTRIES, &[&batch]).await?;
            tx.commit().await.map_err(pg_error)?;
            let entries = rows
                .iter()
                .map(|r| Ok((to_u64(r.get(11), "outbox entry")?, message_from(r, None)?)))
                .collect::<Result<_>>()?;
            let lease = OutboxLease {
                batch: to_u64(batch, "outbox batch")?,
                until_ms: until,
            };
            Ok(Some(OutboxBatch { lease, entries }))
        })
        .await
    }

    async fn renew_outbox(
        &self,
        held: OutboxLease,
        now_ms: i64,
        lease: Duration,
    ) -> Result<Option<OutboxLease>> {
        let until = renewal_end(&held, now_ms, lease)?;
        let batch = to_i64(held.batch);
        let rows = self
            .rows(MOVE_LEASE, &[&batch, &held.until_ms, &until])
            .await?;
        Ok((!rows.is_empty()).then_some(OutboxLease {
            batch: held.batch,
            until_ms: until,
        }))
    }

    async fn outbox_done(&self, entries: &[u64]) -> Result<()> {
        let entries: Vec<i64> = entries.iter().map(|n| to_i64(*n)).collect();
        self.rows(DONE, &[&entries]).await.map(drop)
    }
}

/// The oldest entries with their messages: the message columns, then the
/// entry's number. (Messages are written in the entry's transaction, so
/// every entry has one.)
const PENDING: &str = concat!(
    "SELECT ",
    message_columns!(),
    ", o.id FROM imcore_outbox o JOIN imcore_messages m USING (message_id) \
     ORDER BY o.id LIMIT $1"
);
const TAKE_TURN: &str = "SELECT pg_advisory_xact_lock($1)";
/// The oldest batch whose lease ran out, and that lease's end.
const EXPIRED: &str = "SELECT batch, lease_until FROM imcore_outbox \
    WHERE batch IS NOT NULL AND lease_until <= $1 ORDER BY batch LIMIT 1";
/// A new batch of the `$1` oldest unclaimed entries, leased until `$2`:
/// its number, once per entry (none if there is none).
const FORM: &str = "WITH picked AS ( \
        SELECT id FROM imcore_outbox WHERE batch IS NULL ORDER BY id LIMIT $1) \
    UPDATE imcore_outbox SET batch = (SELECT min(id) FROM picked), lease_until = $2 \
    WHERE id IN (SELECT id FROM picked) RETURNING batch";
/// A batch's entries, oldest first, as [`PENDING`] gives them.
const ENTRIES: &str = concat!(
    "SELECT ",
    message_columns!(),
    ", o.id FROM imcore_outbox o JOIN imcore_messages m USING (message_id) \
     WHERE o.batch = $1 ORDER BY o.id"
);
/// Moves batch `$1`'s lease end from `$2` to `$3` (a renewal, or a
/// takeover); no row if it is no longer `$2`.
const MOVE_LEASE: &str = "UPDATE imcore_outbox SET lease_until = $3 \
    WHERE batch = $1 AND lease_until = $2 RETURNING 1";
const DONE: &str = "DELETE FROM imcore_outbox WHERE id = ANY($1) RETURNING 1";
