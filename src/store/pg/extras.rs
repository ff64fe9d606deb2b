//! Edits and read receipts: a row per message in `imcore_extras` (its
//! latest edit, its receipt's audience and readers, its version), a row
//! per reader and message read in `imcore_reads`.
//!
//! Versions come from the channel's row in `imcore_revocation_versions`,
//! as revocations' do. Taking one locks the row until the commit, so the
//! changes of a channel (revocations, edits, reads, from any process on
//! the database) take versions one after another; an edit looks for the
//! message's revocation after it holds the lock, in the same transaction,
//! so it never lands after one. Reads are one statement whatever their
//! number (see [`READS`]).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use tokio_postgres::types::Type;

use super::db_error::is_retryable_conflict;
use super::writer::query;
use super::{channel_from, channel_key, id_from_i64, id_to_i64, pg_error, to_i64, to_u64};
use super::{within, PgStore};
use crate::error::{Error, Result};
use crate::model::{Channel, MessageId, Uid};
use crate::store::{
    check_limit, Edit, EditRecorded, ExtraStore, MessageExtra, NewEdit, NewReads, Receipt,
};

/// The columns [`extra_from`] reads, in its order.
const COLUMNS: &str = "message_id, ctype, cid, seq, edit_content, editor, edited_at, \
    audience, readers, extra_version";

/// How many times a call that lost a deadlock is tried.
const ATTEMPTS: usize = 3;

/// A message's extra from [`COLUMNS`], starting at column `at`.
fn extra_from(row: &tokio_postgres::Row, at: usize) -> Result<MessageExtra> {
    let get = |e: tokio_postgres::Error| Error::corrupt(format!("extra row: {e}"));
    let content: Option<Vec<u8>> = row.try_get(at + 4).map_err(get)?;
    let edit = match content {
        None => None,
        Some(content) => {
            let editor: Option<String> = row.try_get(at + 5).map_err(get)?;
            let editor = editor.ok_or_else(|| Error::corrupt("an edit without its editor"))?;
            Some(Edit {
                content: content.into(),
                editor: Uid::new(&editor)
                    .map_err(|_| Error::corrupt(format!("editor {editor:?}")))?,
                edited_at_ms: row
                    .try_get::<_, Option<i64>>(at + 6)
                    .map_err(get)?
                    .ok_or_else(|| Error::corrupt("an edit without its time"))?,
            })
        }
    };
    let receipt = match row.try_get::<_, Option<i64>>(at + 7).map_err(get)? {
        None => None,
        Some(audience) => Some(Receipt {
            audience: to_u64(audience, "audience")?,
            readers: to_u64(row.try_get(at + 8).map_err(get)?, "readers")?,
        }),
    };
    Ok(MessageExtra {
        message_id: id_from_i64(row.try_get(at).map_err(get)?),
        channel: channel_from(
            row.try_get(at + 1).map_err(get)?,
            row.try_get(at + 2).map_err(get)?,
        )?,
        message_seq: to_u64(row.try_get(at + 3).map_err(get)?, "seq")?,
        edit,
        receipt,
        extra_version: to_u64(row.try_get(at + 9).map_err(get)?, "extra_version")?,
    })
}

impl PgStore {
    async fn try_record_reads(&self, reads: &NewReads, ids: &[i64]) -> Result<Vec<MessageExtra>> {
        let (ctype, cid) = channel_key(&reads.channel);
        let reader = reads.reader.as_str();
        let rows = self
            .rows_planned(
                READS,
                &[
                    (&ctype, Type::INT2),
                    (&cid, Type::TEXT),
                    (&reader, Type::TEXT),
                    (&ids, Type::INT8_ARRAY),
                    (&reads.read_at_ms, Type::INT8),
                ],
            )
            .await?;
        let mut changed: Vec<(i64, MessageExtra)> = rows
            .iter()
            .map(|r| Ok((r.try_get(10).map_err(pg_error)?, extra_from(r, 0)?)))
            .collect::<Result<_>>()?;
        // In the order asked, which is the order of their versions.
        changed.sort_unstable_by_key(|(ord, _)| *ord);
        Ok(changed.into_iter().map(|(_, x)| x).collect())
    }
}

#[async_trait]
impl ExtraStore for PgStore {
    async fn record_edit(&self, e: NewEdit) -> Result<EditRecorded> {
        let (ctype, cid) = channel_key(&e.channel);
        let (id, seq) = (id_to_i64(e.message_id), to_i64(e.message_seq));
        let (content, editor): (&[u8], &str) = (&e.content, e.editor.as_str());
        let mut client = self.client().await?;
        within(self.timeout, async {
            let tx = client.transaction().await.map_err(pg_error)?;
            // Locks the channel's version row until the commit: what is
            // read below is after every change of the channel before.
            let version: i64 = query(&tx, NEXT_VERSION, &[&ctype, &cid]).await?[0].get(0);
            let state = query(&tx, &edit_state(), &[&id]).await?;
            let state = state
                .first()
                .ok_or_else(|| Error::corrupt("no state for an edit"))?;
            // Returning without a commit drops the transaction: the
            // version is given back.
            if state.try_get::<_, bool>(0).map_err(pg_error)? {
                return Ok(EditRecorded::Revoked);
            }
            if state
                .try_get::<_, Option<i64>>(1)
                .map_err(pg_error)?
                .is_some()
            {
                let existing = extra_from(state, 1)?;
                if existing.channel != e.channel {
                    return Err(crate::store::extras::other_channel());
                }
                if existing
                    .edit
                    .as_ref()
                    .is_some_and(|d| d.content == e.content)
                {
                    return Ok(EditRecorded::Unchanged(existing));
                }
            }
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
                &id,
                &ctype,
                &cid,
                &seq,
                &content,
                &editor,
                &e.edited_at_ms,
                &version,
            ];
            let rows = query(&tx, &upsert_edit(), &params).await?;
            let extra = extra_from(
                rows.first()
                    .ok_or_else(|| Error::corrupt("an edit wrote no row"))?,
                0,
            )?;
            tx.commit().await.map_err(pg_error)?;
            Ok(EditRecorded::Edited(extra))
        })
        .await
    }

    async fn open_receipt(
        &self,
        message_id: MessageId,
        channel: &Channel,
        message_seq: u64,
        audience: u64,
    ) -> Result<()> {
        let (ctype, cid) = channel_key(channel);
        let (id, seq, audience) = (id_to_i64(message_id), to_i64(message_seq), to_i64(audience));
        self.rows(OPEN_RECEIPT, &[&id, &ctype, &cid, &seq, &audience])
            .await?;
        Ok(())
    }

    async fn record_reads(&self, reads: NewReads) -> Result<Vec<MessageExtra>> {
        // Each id once, in the order asked.
        let mut seen = HashSet::new();
        let ids: Vec<i64> = reads
            .messages
            .iter()
            .filter(|(id, _)| seen.insert(*id))
            .map(|(id, _)| id_to_i64(*id))
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut attempt = 1;
        loop {
            match self.try_record_reads(&reads, &ids).await {
                Err(Error::Storage { source, .. })
                    if attempt < ATTEMPTS && is_retryable_conflict(source.as_ref()) =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn reads_by(&self, reader: &Uid, ids: &[MessageId]) -> Result<Vec<Option<i64>>> {
        let keys: Vec<i64> = ids.iter().copied().map(id_to_i64).collect();
        let reader = reader.as_str();
        let rows = self
            .rows_planned(
                READS_BY,
                &[(&reader, Type::TEXT), (&keys, Type::INT8_ARRAY)],
            )
            .await?;
        let found: HashMap<i64, i64> = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get(0).map_err(pg_error)?,
                    r.try_get(1).map_err(pg_error)?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(keys.iter().map(|id| found.get(id).copied()).collect())
    }

    async fn lookup_extras(&self, ids: &[MessageId]) -> Result<Vec<Option<MessageExtra>>> {
        let keys: Vec<i64> = ids.iter().copied().map(id_to_i64).collect();
        let rows = self
            .rows_planned(&by_ids(), &[(&keys, Type::INT8_ARRAY)])
            .await?;
        let found: HashMap<MessageId, MessageExtra> = rows
            .iter()
            .map(|r| extra_from(r, 0).map(|x| (x.message_id, x)))
            .collect::<Result<_>>()?;
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }

    async fn extras_between(
        &self,
        channel: &Channel,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<MessageExtra>> {
        if from_seq > to_seq {
            return Ok(Vec::new());
        }
        let (ctype, cid) = channel_key(channel);
        let (from, to) = (to_i64(from_seq), to_i64(to_seq));
        let rows = self.rows(&between(), &[&ctype, &cid, &from, &to]).await?;
        rows.iter().map(|r| extra_from(r, 0)).collect()
    }

    async fn extras_after(
        &self,
        channel: &Channel,
        version: u64,
        limit: usize,
    ) -> Result<Vec<MessageExtra>> {
        check_limit(limit)?;
        let (ctype, cid) = channel_key(channel);
        let (after, limit) = (to_i64(version), to_i64(limit as u64));
        let rows = self
            .rows(&after_sql(), &[&ctype, &cid, &after, &limit])
            .await?;
        rows.iter().map(|r| extra_from(r, 0)).collect()
    }
}

/// The channel's next version (the revocations' statement).
const NEXT_VERSION: &str = "INSERT INTO imcore_revocation_versions (ctype, cid, version) \
    VALUES ($1, $2, 1) ON CONFLICT (ctype, cid) \
    DO UPDATE SET version = imcore_revocation_versions.version + 1 RETURNING version";

/// Whether the message is revoked, then its extra's columns (all null
/// without one).
fn edit_state() -> String {
    format!(
        "SELECT EXISTS (SELECT 1 FROM imcore_revocations WHERE message_id = $1), x.* \
         FROM (SELECT 1) one LEFT JOIN ( \
         SELECT {COLUMNS} FROM imcore_extras WHERE message_id = $1) x ON true"
    )
}

fn upsert_edit() -> String {
    format!(
        "INSERT INTO imcore_extras \
         (message_id, ctype, cid, seq, edit_content, editor, edited_at, extra_version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (message_id) DO UPDATE SET edit_content = excluded.edit_content, \
         editor = excluded.editor, edited_at = excluded.edited_at, \
         extra_version = excluded.extra_version RETURNING {COLUMNS}"
    )
}

/// Opening a receipt twice keeps the first; it takes no version.
const OPEN_RECEIPT: &str = "INSERT INTO imcore_extras \
    (message_id, ctype, cid, seq, audience, readers, extra_version) \
    VALUES ($1, $2, $3, $4, $5, 0, 0) \
    ON CONFLICT (message_id) DO UPDATE SET audience = excluded.audience \
    WHERE imcore_extras.audience IS NULL";

/// A reader's reads of many messages of one channel, in one statement:
/// `$1, $2` the channel, `$3` the reader, `$4` the message ids (each once,
/// in the order asked), `$5` when.
///
/// `target`: the ids with an open receipt in this channel, probed id by
/// id (not a scan of the channel's extras). `fresh`: their
/// read rows, inserted unless there (in id order, so that two calls of one
/// reader lock the same rows in the same order). `bump`: the channel's
/// version moved by the number of fresh reads, its row locked until the
/// end (the statement is its own transaction); without any, untouched.
/// The messages read take the versions below the new one, in the order
/// asked, and their counts move by one each. The extras rows are updated
/// last, each at its newest state (an edit committed meanwhile is kept).
/// Rows out: [`COLUMNS`], then the message's place in `$4`.
pub(super) const READS: &str = "WITH target AS ( \
    SELECT x.message_id, k.ord FROM unnest($4::int8[]) WITH ORDINALITY AS k(id, ord), LATERAL ( \
    SELECT message_id, ctype, cid, audience FROM imcore_extras WHERE message_id = k.id \
    OFFSET 0) x WHERE x.ctype = $1 AND x.cid = $2 AND x.audience IS NOT NULL), \
  fresh AS ( \
    INSERT INTO imcore_reads (message_id, uid, read_at) \
    SELECT message_id, $3, $5 FROM target ORDER BY message_id \
    ON CONFLICT DO NOTHING RETURNING message_id), \
  counted AS (SELECT count(*) AS n FROM fresh), \
  bump AS ( \
    INSERT INTO imcore_revocation_versions (ctype, cid, version) \
    SELECT $1, $2, n FROM counted WHERE n > 0 \
    ON CONFLICT (ctype, cid) \
    DO UPDATE SET version = imcore_revocation_versions.version + excluded.version \
    RETURNING version), \
  numbered AS ( \
    SELECT t.message_id, t.ord, \
      b.version - c.n + row_number() OVER (ORDER BY t.ord) AS v \
    FROM fresh f JOIN target t USING (message_id) CROSS JOIN bump b CROSS JOIN counted c) \
  UPDATE imcore_extras x SET readers = x.readers + 1, extra_version = n.v \
  FROM numbered n WHERE x.message_id = n.message_id \
  RETURNING x.message_id, x.ctype, x.cid, x.seq, x.edit_content, x.editor, x.edited_at, \
    x.audience, x.readers, x.extra_version, n.ord";

/// When `$1` read each of `$2`: probed id by id, run unnamed (see
/// `rows_planned`). Only reads of messages that still have their extra: a
/// read that raced the deletion of its message is not shown (the
/// retention purge removes it later).
pub(super) const READS_BY: &str = "SELECT r.message_id, r.read_at \
    FROM unnest($2::int8[]) AS k(id), LATERAL ( \
    SELECT message_id, read_at FROM imcore_reads \
    WHERE message_id = k.id AND uid = $1 OFFSET 0) r \
    WHERE EXISTS (SELECT 1 FROM imcore_extras x WHERE x.message_id = r.message_id)";

pub(super) fn by_ids() -> String {
    // Probed id by id, and run unnamed (see `rows_planned`).
    format!(
        "SELECT x.* FROM unnest($1::int8[]) AS k(id), LATERAL ( \
         SELECT {COLUMNS} FROM imcore_extras WHERE message_id = k.id OFFSET 0) x"
    )
}

pub(super) fn between() -> String {
    format!(
        "SELECT {COLUMNS} FROM imcore_extras \
         WHERE ctype = $1 AND cid = $2 AND seq BETWEEN $3 AND $4 ORDER BY seq"
    )
}

pub(super) fn after_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM imcore_extras \
         WHERE ctype = $1 AND cid = $2 AND extra_version > $3 \
         ORDER BY extra_version LIMIT $4"
    )
}
