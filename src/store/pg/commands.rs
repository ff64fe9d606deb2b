//! Command queues: one row per command, one row per recipient's entry.

use async_trait::async_trait;

use super::db_error::is_retryable_conflict;
use super::writer::query;
use super::{channel_key, id_from_i64, id_to_i64, message_from, pg_error, to_i64, to_u64};
use super::{within, PgStore};
use crate::error::Result;
use crate::model::{Message, MessageId, Uid};
use crate::store::{check_limit, CommandQueue, Pushed, QueuedCommand};

/// How many times a push that lost a deadlock to another push is tried.
const ATTEMPTS: usize = 3;

impl PgStore {
    async fn try_push(&self, message: &Message, recipients: &[&str]) -> Result<Pushed> {
        let (ctype, cid) = channel_key(&message.channel);
        let (from, no) = (message.from_uid.as_str(), message.client_msg_no.as_str());
        let id = id_to_i64(message.message_id);
        let flags = i16::from(message.flags.bits());
        let payload: &[u8] = &message.payload;
        let setting = i16::from(message.setting.stored().0);
        let topic = message.topic.as_deref();
        let mut client = self.client().await?;
        within(self.timeout, async {
            let tx = client.transaction().await.map_err(pg_error)?;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 10] = [
                &id,
                &from,
                &no,
                &ctype,
                &cid,
                &message.timestamp_ms,
                &flags,
                &payload,
                &setting,
                &topic,
            ];
            let inserted = query(&tx, INSERT_COMMAND, &params).await?;
            if inserted.is_empty() {
                // A resend (possibly one committed while this waited on
                // its key): the first push's id.
                let first = query(&tx, COMMAND_BY_KEY, &[&from, &ctype, &cid, &no]).await?;
                let first = first
                    .first()
                    .ok_or_else(|| crate::Error::corrupt("command vanished during its resend"))?;
                if first.get::<_, &[u8]>(1) != payload {
                    return Err(crate::store::conflict(message));
                }
                let message_id = id_from_i64(first.get(0));
                return Ok::<_, crate::Error>(Pushed {
                    message_id,
                    duplicate: true,
                });
            }
            if !recipients.is_empty() {
                query(&tx, ENQUEUE, &[&recipients, &id]).await?;
            }
            tx.commit().await.map_err(pg_error)?;
            Ok(Pushed {
                message_id: message.message_id,
                duplicate: false,
            })
        })
        .await
    }
}

#[async_trait]
impl CommandQueue for PgStore {
    async fn push_command(&self, message: &Message, recipients: &[Uid]) -> Result<Pushed> {
        // Sorted, so that concurrent pushes lock cursors in one order.
        let mut uids: Vec<&str> = recipients.iter().map(Uid::as_str).collect();
        uids.sort_unstable();
        uids.dedup();
        let mut attempt = 1;
        loop {
            match self.try_push(message, &uids).await {
                Err(crate::Error::Storage { source, .. })
                    if attempt < ATTEMPTS && is_retryable_conflict(source.as_ref()) =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn pending_commands(
        &self,
        uid: &Uid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<QueuedCommand>> {
        check_limit(limit)?;
        let (after, limit) = (to_i64(after), to_i64(limit as u64));
        let rows = self.rows(PENDING, &[&uid.as_str(), &after, &limit]).await?;
        rows.iter()
            .map(|r| {
                Ok(QueuedCommand {
                    cursor: to_u64(r.get(11), "cursor")?,
                    message: message_from(r, None)?,
                })
            })
            .collect()
    }

    async fn ack_commands(&self, uid: &Uid, up_to: u64) -> Result<usize> {
        let rows = self.rows(ACK, &[&uid.as_str(), &to_i64(up_to)]).await?;
        Ok(rows.len())
    }

    async fn remove_commands(&self, uid: &Uid, ids: &[MessageId]) -> Result<usize> {
        let ids: Vec<i64> = ids.iter().copied().map(id_to_i64).collect();
        let rows = self.rows(REMOVE, &[&uid.as_str(), &ids]).await?;
        Ok(rows.len())
    }

    async fn is_command(&self, id: MessageId) -> Result<bool> {
        let rows = self.rows(IS_COMMAND, &[&id_to_i64(id)]).await?;
        Ok(!rows.is_empty())
    }
}

const INSERT_COMMAND: &str = "INSERT INTO imcore_commands \
    (message_id, from_uid, client_msg_no, ctype, cid, ts, flags, payload, setting, topic) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
    ON CONFLICT (from_uid, ctype, cid, client_msg_no) DO NOTHING RETURNING message_id";
const COMMAND_BY_KEY: &str = "SELECT message_id, payload FROM imcore_commands \
    WHERE from_uid = $1 AND ctype = $2 AND cid = $3 AND client_msg_no = $4";
/// Each recipient's next cursor (its counter row locked until commit),
/// then its entry.
const ENQUEUE: &str = "WITH cursors AS ( \
        INSERT INTO imcore_command_cursors (uid, last_cursor) \
        SELECT u, 1 FROM unnest($1::text[]) AS u \
        ON CONFLICT (uid) DO UPDATE SET last_cursor = imcore_command_cursors.last_cursor + 1 \
        RETURNING uid, last_cursor) \
    INSERT INTO imcore_command_queue (uid, cursor, message_id) \
    SELECT uid, last_cursor, $2 FROM cursors";
const PENDING: &str = "SELECT c.ctype, c.cid, 0::int8, c.message_id, c.from_uid, \
    c.client_msg_no, c.ts, c.flags, c.payload, c.setting, c.topic, q.cursor \
    FROM imcore_command_queue q JOIN imcore_commands c USING (message_id) \
    WHERE q.uid = $1 AND q.cursor > $2 ORDER BY q.cursor LIMIT $3";
const ACK: &str = "DELETE FROM imcore_command_queue WHERE uid = $1 AND cursor <= $2 RETURNING 1";
const REMOVE: &str =
    "DELETE FROM imcore_command_queue WHERE uid = $1 AND message_id = ANY($2) RETURNING 1";
const IS_COMMAND: &str = "SELECT 1 FROM imcore_commands WHERE message_id = $1";
