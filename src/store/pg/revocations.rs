//! Revocation records, with each channel's version in a row of its own.

use std::collections::HashMap;

use async_trait::async_trait;
use tokio_postgres::types::Type;

use super::writer::query;
use super::{channel_from, channel_key, id_from_i64, id_to_i64, pg_error, to_i64, to_u64};
use super::{within, PgStore};
use crate::error::Result;
use crate::model::{Channel, MessageId, Uid};
use crate::store::{check_limit, NewRevocation, Recorded, Revocation, RevocationStore};

const COLUMNS: &str = "message_id, ctype, cid, seq, revoker, revoked_at, extra_version";

fn revocation_from(row: &tokio_postgres::Row) -> Result<Revocation> {
    let revoker: String = row.get(4);
    Ok(Revocation {
        message_id: id_from_i64(row.get(0)),
        channel: channel_from(row.get(1), row.get(2))?,
        message_seq: to_u64(row.get(3), "seq")?,
        revoker: Uid::new(&revoker)
            .map_err(|_| crate::Error::corrupt(format!("revoker {revoker:?}")))?,
        revoked_at_ms: row.get(5),
        extra_version: to_u64(row.get(6), "extra_version")?,
    })
}

impl PgStore {
    async fn revocation(&self, id: MessageId) -> Result<Option<Revocation>> {
        let rows = self.rows(&by_id(), &[&id_to_i64(id)]).await?;
        rows.first().map(revocation_from).transpose()
    }
}

#[async_trait]
impl RevocationStore for PgStore {
    async fn record_revocation(&self, r: NewRevocation) -> Result<Recorded> {
        if let Some(existing) = self.revocation(r.message_id).await? {
            return Ok(Recorded::Existing(existing));
        }
        let (ctype, cid) = channel_key(&r.channel);
        let (id, seq) = (id_to_i64(r.message_id), to_i64(r.message_seq));
        let revoker = r.revoker.as_str();
        let mut client = self.client().await?;
        let recorded = within(self.timeout, async {
            let tx = client.transaction().await.map_err(pg_error)?;
            // The channel's version row stays locked until the commit: a
            // second record of the same message waits here, then finds
            // the first.
            let version: i64 = query(&tx, NEXT_VERSION, &[&ctype, &cid]).await?[0].get(0);
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
                &id,
                &ctype,
                &cid,
                &seq,
                &revoker,
                &r.revoked_at_ms,
                &version,
            ];
            if query(&tx, INSERT, &params).await?.is_empty() {
                return Ok::<_, crate::Error>(false); // dropped: rolls the version back
            }
            tx.commit().await.map_err(pg_error)?;
            Ok(true)
        })
        .await?;
        let record = self.revocation(r.message_id).await?.ok_or_else(|| {
            crate::Error::corrupt(format!("revocation of {} vanished", r.message_id))
        })?;
        Ok(if recorded {
            Recorded::New(record)
        } else {
            Recorded::Existing(record)
        })
    }

    async fn lookup_revocations(&self, ids: &[MessageId]) -> Result<Vec<Option<Revocation>>> {
        let keys: Vec<i64> = ids.iter().copied().map(id_to_i64).collect();
        let rows = self
            .rows_planned(&by_ids(), &[(&keys, Type::INT8_ARRAY)])
            .await?;
        let mut found: HashMap<MessageId, Revocation> = rows
            .iter()
            .map(|r| revocation_from(r).map(|r| (r.message_id, r)))
            .collect::<Result<_>>()?;
        Ok(ids.iter().map(|id| found.remove(id)).collect())
    }

    async fn revocations_between(
        &self,
        channel: &Channel,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<Revocation>> {
        let (ctype, cid) = channel_key(channel);
        let (from, to) = (to_i64(from_seq), to_i64(to_seq));
        let rows = self.rows(&between(), &[&ctype, &cid, &from, &to]).await?;
        rows.iter().map(revocation_from).collect()
    }

    async fn revocations_after(
        &self,
        channel: &Channel,
        version: u64,
        limit: usize,
    ) -> Result<Vec<Revocation>> {
        check_limit(limit)?;
        let (ctype, cid) = channel_key(channel);
        let (after, limit) = (to_i64(version), to_i64(limit as u64));
        let rows = self
            .rows(&after_sql(), &[&ctype, &cid, &after, &limit])
            .await?;
        rows.iter().map(revocation_from).collect()
    }
}

const NEXT_VERSION: &str = "INSERT INTO imcore_revocation_versions (ctype, cid, version) \
    VALUES ($1, $2, 1) ON CONFLICT (ctype, cid) \
    DO UPDATE SET version = imcore_revocation_versions.version + 1 RETURNING version";
const INSERT: &str = "INSERT INTO imcore_revocations \
    (message_id, ctype, cid, seq, revoker, revoked_at, extra_version) \
    VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (message_id) DO NOTHING RETURNING 1";

fn by_id() -> String {
    format!("SELECT {COLUMNS} FROM imcore_revocations WHERE message_id = $1")
}

pub(super) fn by_ids() -> String {
    // Probed id by id, and run unnamed: planned for the table as it is
    // (see `rows_planned`).
    format!(
        "SELECT r.* FROM unnest($1::int8[]) AS k(id), LATERAL ( \
         SELECT {COLUMNS} FROM imcore_revocations WHERE message_id = k.id OFFSET 0) r"
    )
}

fn between() -> String {
    format!(
        "SELECT {COLUMNS} FROM imcore_revocations \
         WHERE ctype = $1 AND cid = $2 AND seq BETWEEN $3 AND $4 ORDER BY seq"
    )
}

fn after_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM imcore_revocations \
         WHERE ctype = $1 AND cid = $2 AND extra_version > $3 ORDER BY extra_version LIMIT $4"
    )
}
