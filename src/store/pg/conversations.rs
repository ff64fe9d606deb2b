//! Conversations, derived from heads and read positions in one statement.

use async_trait::async_trait;
use tokio_postgres::types::Type;

use super::writer::{query, Params, SET_VERSION, UPSERT_POSITIONS};
use super::PgStore;
use super::{channel_arrays, channel_from, channel_key, pg_error, to_i64, to_u64, within};
use crate::error::Result;
use crate::model::{Channel, Uid};
use crate::store::{
    check_limit, Changed, ChannelHead, Conversation, ConversationStore, ReadPosition,
};

/// A head joined with one user's read position: the columns
/// [`conversation_from`] reads.
const CONVERSATION_COLUMNS: &str = "h.ctype, h.cid, h.last_seq, h.last_message_id, h.last_ts, \
    h.red_dots, h.version, p.read_seq, p.red_dots, p.version, \
    (SELECT f.red_dots FROM imcore_floors f WHERE f.ctype = h.ctype AND f.cid = h.cid)";

fn conversation_from(row: &tokio_postgres::Row) -> Result<Conversation> {
    let head = ChannelHead {
        last_seq: to_u64(row.get(2), "seq")?,
        last_message_id: super::id_from_i64(row.get(3)),
        last_timestamp_ms: row.get(4),
        red_dots: to_u64(row.get(5), "red_dots")?,
        version: to_u64(row.get(6), "version")?,
        floor_red_dots: to_u64(row.get::<_, Option<i64>>(10).unwrap_or(0), "red_dots")?,
    };
    let position = match row.get::<_, Option<i64>>(7) {
        Some(read_seq) => Some(ReadPosition {
            read_seq: to_u64(read_seq, "read_seq")?,
            red_dots: to_u64(row.get(8), "red_dots")?,
            version: to_u64(row.get(9), "version")?,
        }),
        None => None,
    };
    let channel = channel_from(row.get(0), row.get(1))?;
    Ok(Conversation::derive(channel, &head, position.as_ref()))
}

#[async_trait]
impl ConversationStore for PgStore {
    async fn stable_version(&self) -> Result<u64> {
        // Versions commit in order (the counter row is locked until each
        // commit), so every version up to the committed one is visible.
        let rows = self.rows(STABLE, &[]).await?;
        to_u64(rows[0].get(0), "version")
    }

    async fn conversation(&self, uid: &Uid, channel: &Channel) -> Result<Option<Conversation>> {
        let (ctype, cid) = channel_key(channel);
        let uid = uid.as_str();
        let rows = self
            .rows(&conversation_sql(), &[&uid, &ctype, &cid])
            .await?;
        rows.first().map(conversation_from).transpose()
    }

    async fn person_channels(&self, uid: &Uid) -> Result<Vec<Channel>> {
        let rows = self.rows(PERSONS, &[&uid.as_str()]).await?;
        rows.iter()
            .map(|r| channel_from(r.get(0), r.get(1)))
            .collect()
    }

    async fn clear_unread(&self, uid: &Uid, channel: &Channel, read_seq: u64) -> Result<bool> {
        let (ctype, cid) = channel_key(channel);
        let uid = uid.as_str();
        let mut client = self.client().await?;
        within(self.timeout, async {
            let tx = client.transaction().await.map_err(pg_error)?;
            // The counter's lock first, as appends take it: the position
            // is compared and moved with no append in between.
            let version: i64 = query(&tx, LOCK_COUNTER, &[]).await?[0].get(0);
            let head = query(&tx, HEAD_SEQ, &[&ctype, &cid]).await?;
            let Some(last_seq) = head.first().map(|r| r.get::<_, i64>(0)) else {
                return Ok::<_, crate::Error>(false);
            };
            let read_seq = to_i64(read_seq).min(last_seq);
            let at = query(&tx, POSITION_AND_DOTS, &[&uid, &ctype, &cid, &read_seq]).await?;
            let (current, red_dots): (Option<i64>, Option<i64>) =
                at.first().map_or((None, None), |r| (r.get(0), r.get(1)));
            if current.is_some_and(|seq| seq >= read_seq) {
                return Ok(true); // a stale clear: the position never moves back
            }
            let version = version + 1;
            let (uids, ctypes, cids) = (vec![uid], vec![ctype], vec![cid]);
            let (seqs, dots, versions) =
                (vec![read_seq], vec![red_dots.unwrap_or(0)], vec![version]);
            let position: Params<6> = [&uids, &ctypes, &cids, &seqs, &dots, &versions];
            let counter: Params<1> = [&version];
            tokio::try_join!(
                query(&tx, UPSERT_POSITIONS, &position),
                query(&tx, SET_VERSION, &counter),
            )?;
            tx.commit().await.map_err(pg_error)?;
            Ok(true)
        })
        .await
    }

    async fn hide_conversation(&self, uid: &Uid, channel: &Channel, up_to: u64) -> Result<()> {
        let (ctype, cid) = channel_key(channel);
        let (uid, up_to) = (uid.as_str(), to_i64(up_to));
        let mut client = self.client().await?;
        within(self.timeout, async {
            let tx = client.transaction().await.map_err(pg_error)?;
            // The counter's lock first, as appends and clears take it.
            let version: i64 = query(&tx, LOCK_COUNTER, &[]).await?[0].get(0);
            let raised = query(&tx, HIDE, &[&uid, &ctype, &cid, &up_to]).await?;
            let head = query(&tx, HEAD_SEQ, &[&ctype, &cid]).await?;
            if raised.is_empty() || head.is_empty() {
                // Hidden that far already, or nothing to hide: no change
                // of a conversation, no version.
                return tx.commit().await.map_err(pg_error);
            }
            // A change of the conversation, which a sync from before must
            // return: the read position takes the next version, its seq
            // unchanged.
            let version = version + 1;
            let position: Params<4> = [&uid, &ctype, &cid, &version];
            let counter: Params<1> = [&version];
            tokio::try_join!(
                query(&tx, TOUCH_POSITION, &position),
                query(&tx, SET_VERSION, &counter),
            )?;
            tx.commit().await.map_err(pg_error)
        })
        .await
    }

    async fn hidden_conversations(&self, uid: &Uid) -> Result<Vec<(Channel, u64)>> {
        let rows = self.rows(HIDDEN, &[&uid.as_str()]).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    channel_from(r.get(0), r.get(1))?,
                    to_u64(r.get(2), "up_to")?,
                ))
            })
            .collect()
    }

    async fn conversations_after(
        &self,
        uid: &Uid,
        groups: &[Channel],
        version: u64,
        limit: usize,
    ) -> Result<Vec<Conversation>> {
        let ceiling = self.stable_version().await?;
        self.conversations_in(uid, groups, version, ceiling, limit, true)
            .await
    }

    /// By the heads' and positions' version indexes.
    async fn changed_after(&self, uid: &Uid, version: u64, most: usize) -> Result<Option<Changed>> {
        let ceiling = self.stable_version().await?;
        let (after, top) = (to_i64(version), to_i64(ceiling));
        let rows = to_i64(most.saturating_add(1) as u64);
        let uid = uid.as_str();
        let found = self
            .rows_planned(
                &changed_after_sql(),
                &[
                    (&uid, Type::TEXT),
                    (&after, Type::INT8),
                    (&top, Type::INT8),
                    (&rows, Type::INT8),
                ],
            )
            .await?;
        if found.len() > most {
            return Ok(None);
        }
        let mut channels = found
            .iter()
            .map(|r| channel_from(r.get(0), r.get(1)))
            .collect::<Result<Vec<_>>>()?;
        channels.sort_unstable();
        channels.dedup();
        Ok(Some(Changed { ceiling, channels }))
    }

    async fn conversations_among(
        &self,
        uid: &Uid,
        channels: &[Channel],
        version: u64,
        ceiling: u64,
        limit: usize,
    ) -> Result<Vec<Conversation>> {
        self.conversations_in(uid, channels, version, ceiling, limit, false)
            .await
    }
}

impl PgStore {
    /// `uid`'s conversations among `channels` (and the user's person
    /// channels if `persons`) with a version in `(version, ceiling]`,
    /// ascending, at most `limit`.
    async fn conversations_in(
        &self,
        uid: &Uid,
        channels: &[Channel],
        version: u64,
        ceiling: u64,
        limit: usize,
        persons: bool,
    ) -> Result<Vec<Conversation>> {
        check_limit(limit)?;
        let ceiling = to_i64(ceiling);
        let (ctypes, cids) = channel_arrays(channels.iter());
        let (uid, after, limit) = (uid.as_str(), to_i64(version), to_i64(limit as u64));
        let sql = match persons {
            true => conversations_after_sql(),
            false => conversations_among_sql(),
        };
        let rows = self
            .rows_planned(
                &sql,
                &[
                    (&uid, Type::TEXT),
                    (&ctypes, Type::INT2_ARRAY),
                    (&cids, Type::TEXT_ARRAY),
                    (&after, Type::INT8),
                    (&ceiling, Type::INT8),
                    (&limit, Type::INT8),
                ],
            )
            .await?;
        rows.iter().map(conversation_from).collect()
    }
}

/// A row when the mark is new or raised, none when it changes nothing.
const HIDE: &str = "INSERT INTO imcore_hidden (uid, ctype, cid, up_to) VALUES ($1, $2, $3, $4) \
    ON CONFLICT (uid, ctype, cid) DO UPDATE SET up_to = excluded.up_to \
    WHERE imcore_hidden.up_to < excluded.up_to RETURNING 1";
/// The user's read position at version `$4`, its seq unchanged (at 0,
/// nothing read, if the user has none).
const TOUCH_POSITION: &str = "INSERT INTO imcore_positions \
    (uid, ctype, cid, read_seq, red_dots, version) VALUES ($1, $2, $3, 0, 0, $4) \
    ON CONFLICT (uid, ctype, cid) DO UPDATE SET version = excluded.version";
const HIDDEN: &str = "SELECT ctype, cid, up_to FROM imcore_hidden WHERE uid = $1";
const STABLE: &str = "SELECT version FROM imcore_counter WHERE id = 1";
const LOCK_COUNTER: &str = "SELECT version FROM imcore_counter WHERE id = 1 FOR UPDATE";
const HEAD_SEQ: &str = "SELECT last_seq FROM imcore_heads WHERE ctype = $1 AND cid = $2";
const PERSONS: &str =
    "SELECT ctype, cid FROM imcore_person_channels WHERE uid = $1 ORDER BY ctype, cid";
/// The user's current position, and the channel's red-dot count at `$4`
/// (one row either way).
const POSITION_AND_DOTS: &str = "SELECT \
    (SELECT read_seq FROM imcore_positions WHERE uid = $1 AND ctype = $2 AND cid = $3), \
    (SELECT red_dots FROM imcore_messages WHERE ctype = $2 AND cid = $3 AND seq = $4)";

fn conversation_sql() -> String {
    format!(
        "SELECT {CONVERSATION_COLUMNS} FROM imcore_heads h \
         LEFT JOIN imcore_positions p ON p.uid = $1 AND p.ctype = h.ctype AND p.cid = h.cid \
         WHERE h.ctype = $2 AND h.cid = $3"
    )
}

/// The user's groups (given) and person channels (stored), with a version
/// in `($4, $5]`, ascending, at most `$6`. Heads and positions are probed
/// key by key (LATERAL, fenced by `OFFSET 0`), and it runs on a connection
/// that plans it for the tables as they are; see the writer's look-ups.
pub(super) fn conversations_after_sql() -> String {
    conversations_sql(
        "SELECT * FROM unnest($2::int2[], $3::text[]) AS g(ctype, cid) \
         UNION SELECT ctype, cid FROM imcore_person_channels WHERE uid = $1",
    )
}

/// [`conversations_after_sql`] among the given channels only.
pub(super) fn conversations_among_sql() -> String {
    conversations_sql("SELECT DISTINCT * FROM unnest($2::int2[], $3::text[]) AS g(ctype, cid)")
}

/// The channels whose head, or whose position of user `$1`, moved at a
/// version in `($2, $3]`: at most `$4` of each, by the version indexes.
pub(super) fn changed_after_sql() -> String {
    "(SELECT ctype, cid FROM imcore_heads WHERE version > $2 AND version <= $3 \
         ORDER BY version LIMIT $4) \
     UNION ALL \
     (SELECT ctype, cid FROM imcore_positions WHERE uid = $1 AND version > $2 \
         AND version <= $3 ORDER BY version LIMIT $4)"
        .to_owned()
}

/// The conversations of user `$1` among the channels `channels` (a query
/// of `ctype, cid`) selects, as [`conversations_after_sql`] says.
fn conversations_sql(channels: &str) -> String {
    format!(
        "WITH channels AS ({channels}), \
         c AS ( \
             SELECT {CONVERSATION_COLUMNS}, \
                 greatest(h.version, coalesce(p.version, 0)) AS v \
             FROM channels, LATERAL (SELECT * FROM imcore_heads \
                 WHERE ctype = channels.ctype AND cid = channels.cid OFFSET 0) h \
             LEFT JOIN LATERAL (SELECT * FROM imcore_positions \
                 WHERE uid = $1 AND ctype = h.ctype AND cid = h.cid OFFSET 0) p ON true) \
         SELECT * FROM c WHERE v > $4 AND v <= $5 ORDER BY v LIMIT $6"
    )
}
