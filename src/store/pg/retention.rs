//! Retention on PostgreSQL: a batch is one transaction of one statement
//! that deletes the channel's lowest message rows up to a seq and, with
//! them, their revocations, extras and reads, message events and outbox
//! entries, leaves a
//! tombstone per resend key of a message young enough to be resent, and
//! moves the channel's floor.
//!
//! It takes no lock an append takes (the counter row, the head): appends
//! to the channel go on while it runs, and only ever add seqs above the
//! head, which a deletion never passes. The head row stays, so a channel
//! whose every message was deleted keeps its last seq. A resend racing
//! the deletion of its first message sees, in its one look-up, either the
//! row or its tombstone: both answer it as a duplicate.

use std::time::Duration;

use async_trait::async_trait;

use super::{channel_from, channel_key, pg_error, to_i64, to_u64, within, PgStore};
use crate::error::Result;
use crate::model::Channel;
use crate::store::{beyond_head, check_limit, lease_until, DeletedBatch, RetentionStore};

/// One batch, one statement (so one transaction): `$1, $2` the channel,
/// `$3` the seq through, `$4` the batch size, `$5` the deletion time, `$6`
/// the oldest timestamp that gets a tombstone (older rows get none: most
/// of a retention pass's rows, which then cost no insert).
/// Answers the channel's last seq (none: no messages ever; nothing is
/// deleted past it), its floor before the batch, the rows deleted and the
/// highest seq among them.
///
/// The batch is a range of the primary key from the channel's lowest seq
/// (the log has no gaps above its floor): one index range scan whatever
/// the table's statistics. The form `seq IN (SELECT seq … ORDER BY seq
/// LIMIT n)` was planned, on a table not yet analyzed, as a scan of the
/// whole channel and a sort: 34 ms a batch of 500 on 50,000 rows, against
/// 0.4 ms for the range.
const DELETE_BATCH: &str = concat!(
    "WITH head AS (SELECT last_seq FROM imcore_heads WHERE ctype = $1 AND cid = $2), \
    gone AS ( \
        DELETE FROM imcore_messages WHERE ctype = $1 AND cid = $2 \
        AND $3 <= (SELECT last_seq FROM head) AND seq <= least( \
            (SELECT min(seq) FROM imcore_messages WHERE ctype = $1 AND cid = $2) + $4 - 1, $3) \
        RETURNING seq, message_id, from_uid, client_msg_no, red_dots, ts), \
    tombstones AS ( \
        INSERT INTO imcore_tombstones \
            (from_uid, ctype, cid, client_msg_no, message_id, seq, deleted_at) \
        SELECT from_uid, $1, $2, client_msg_no, message_id, seq, $5 FROM gone \
        WHERE ts >= $6 \
        ON CONFLICT DO NOTHING), \
    revocations AS ( \
        DELETE FROM imcore_revocations WHERE message_id IN (SELECT message_id FROM gone)), \
    outbox AS ( \
        DELETE FROM imcore_outbox WHERE message_id IN (SELECT message_id FROM gone)), \
    events AS ( \
        DELETE FROM imcore_events WHERE ctype = $1 AND cid = $2 \
        AND client_msg_no IN (SELECT client_msg_no FROM gone)), \
    event_records AS ( \
        DELETE FROM imcore_event_records WHERE ctype = $1 AND cid = $2 \
        AND client_msg_no IN (SELECT client_msg_no FROM gone)), \
    open_streams AS ( \
        DELETE FROM imcore_open_streams WHERE ctype = $1 AND cid = $2 \
        AND client_msg_no IN (SELECT client_msg_no FROM gone)), \
    top AS (SELECT seq, red_dots FROM gone ORDER BY seq DESC LIMIT 1), \
    floor AS ( \
        INSERT INTO imcore_floors (ctype, cid, floor_seq, red_dots) \
        SELECT $1, $2, seq, red_dots FROM top \
        ON CONFLICT (ctype, cid) DO UPDATE \
        SET floor_seq = excluded.floor_seq, red_dots = excluded.red_dots \
        WHERE imcore_floors.floor_seq < excluded.floor_seq), \
    extras AS ( \
        DELETE FROM imcore_extras WHERE message_id IN (SELECT message_id FROM gone)), \
    reads AS ( \
        DELETE FROM imcore_reads WHERE message_id IN (SELECT message_id FROM gone))",
    " SELECT (SELECT last_seq FROM head), \
        coalesce((SELECT floor_seq FROM imcore_floors WHERE ctype = $1 AND cid = $2), 0), \
        (SELECT count(*) FROM gone), (SELECT seq FROM top)"
);

const FLOOR: &str = "SELECT floor_seq FROM imcore_floors WHERE ctype = $1 AND cid = $2";

/// Whether any message of the channel up to `$3` is left.
const LEFT: &str = "SELECT EXISTS (SELECT 1 FROM imcore_messages \
    WHERE ctype = $1 AND cid = $2 AND seq <= $3)";

const CHANNELS_AFTER: &str = "SELECT ctype, cid FROM imcore_heads \
    WHERE (ctype, cid) > ($1, $2) ORDER BY ctype, cid LIMIT $3";

///
/// With each tombstone go any reads of its message left behind: a read
/// committed while its message's batch ran (the batch's one statement
/// sees the rows of its start) leaves a row that `reads_by` never shows
/// (it asks for reads of messages with an extra); long after, it goes
/// here.
const PURGE: &str = "WITH doomed AS ( \
        SELECT from_uid, ctype, cid, client_msg_no, message_id FROM imcore_tombstones \
        WHERE deleted_at < $1 ORDER BY deleted_at LIMIT $2), \
    late_reads AS ( \
        DELETE FROM imcore_reads WHERE message_id IN (SELECT message_id FROM doomed)) \
    DELETE FROM imcore_tombstones t USING doomed d \
    WHERE t.from_uid = d.from_uid AND t.ctype = d.ctype AND t.cid = d.cid \
    AND t.client_msg_no = d.client_msg_no";

/// Takes the lease if it is free, ran out (`until <= $3`) or is the
/// holder's; a row when the holder has it.
const LEASE: &str = "INSERT INTO imcore_leases (name, holder, until) VALUES ($1, $2, $4) \
    ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
    WHERE imcore_leases.until <= $3 OR imcore_leases.holder = excluded.holder \
    RETURNING 1";

#[async_trait]
impl RetentionStore for PgStore {
    async fn delete_through(
        &self,
        channel: &Channel,
        through_seq: u64,
        max_batch: usize,
        now_ms: i64,
        tombstone_since_ms: i64,
    ) -> Result<DeletedBatch> {
        check_limit(max_batch)?;
        let (ctype, cid) = channel_key(channel);
        let (through, limit) = (to_i64(through_seq), to_i64(max_batch as u64));
        let client = self.client().await?;
        within(self.timeout, async {
            let statement = client
                .prepare_cached(DELETE_BATCH)
                .await
                .map_err(pg_error)?;
            let row = client
                .query_one(
                    &statement,
                    &[&ctype, &cid, &through, &limit, &now_ms, &tombstone_since_ms],
                )
                .await
                .map_err(pg_error)?;
            let last_seq = row.get::<_, Option<i64>>(0).unwrap_or(0);
            let last_seq = to_u64(last_seq, "seq")?;
            if through_seq > last_seq {
                return Err(beyond_head(through_seq, last_seq));
            }
            let floor = to_u64(row.get(1), "seq")?;
            let deleted = to_u64(row.get(2), "count")?;
            let floor = match row.get::<_, Option<i64>>(3) {
                Some(top) => floor.max(to_u64(top, "seq")?),
                None => floor,
            };
            // A short batch is the last, unless another deletion of the
            // channel held some of its rows (it deletes them, and the
            // caller's next batch goes on past them).
            let done = floor >= through_seq
                || (deleted < max_batch as u64
                    && !client
                        .query_one(LEFT, &[&ctype, &cid, &through])
                        .await
                        .map_err(pg_error)?
                        .get::<_, bool>(0));
            Ok(DeletedBatch {
                deleted,
                floor,
                done,
            })
        })
        .await
    }

    async fn history_floor(&self, channel: &Channel) -> Result<u64> {
        let (ctype, cid) = channel_key(channel);
        let rows = self.rows(FLOOR, &[&ctype, &cid]).await?;
        rows.first().map_or(Ok(0), |r| to_u64(r.get(0), "seq"))
    }

    async fn channels_after(&self, after: Option<&Channel>, limit: usize) -> Result<Vec<Channel>> {
        check_limit(limit)?;
        let (ctype, cid) = after.map_or((0, ""), channel_key);
        let limit = to_i64(limit as u64);
        let rows = self.rows(CHANNELS_AFTER, &[&ctype, &cid, &limit]).await?;
        rows.iter()
            .map(|r| channel_from(r.get(0), r.get(1)))
            .collect()
    }

    async fn purge_tombstones(&self, deleted_before_ms: i64, limit: usize) -> Result<u64> {
        check_limit(limit)?;
        let limit = to_i64(limit as u64);
        let client = self.client().await?;
        within(self.timeout, async {
            let statement = client.prepare_cached(PURGE).await.map_err(pg_error)?;
            client
                .execute(&statement, &[&deleted_before_ms, &limit])
                .await
                .map_err(pg_error)
        })
        .await
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl: Duration,
    ) -> Result<bool> {
        let until = lease_until(now_ms, ttl);
        let rows = self.rows(LEASE, &[&name, &holder, &now_ms, &until]).await?;
        Ok(!rows.is_empty())
    }
}
