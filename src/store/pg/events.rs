//! Message events on PostgreSQL: `imcore_events` (one row per event, its
//! id unique per message), `imcore_event_records` (one row per message:
//! its last seq and its streams' states) and `imcore_open_streams` (the
//! streams still open, with when they last moved). Records and events are
//! postcard, as the sled store keeps them.

use async_trait::async_trait;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::writer::query;
use super::{channel_from, channel_key, pg_error, to_i64, within, PgStore};
use crate::error::{Error, Result};
use crate::event::{EventAppend, EventState, NewEvent, StoredEvent};
use crate::model::{Channel, ClientMsgNo, EventKey, Uid};
use crate::store::{
    appended, check_limit, put_snapshot, step, EventStore, MessageEvents, OpenStream, Step,
};

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|e| Error::Storage {
        backend: super::BACKEND,
        source: Box::new(e),
    })
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| Error::corrupt(format!("{what}: {e}")))
}

fn record_from(bytes: &[u8]) -> Result<MessageEvents> {
    match bytes.is_empty() {
        true => Ok(MessageEvents::default()),
        false => decode(bytes, "event record"),
    }
}

/// Takes the message's record row (made empty if missing) and locks it
/// until the commit: appends to one message take turns here.
const LOCK_RECORD: &str = "INSERT INTO imcore_event_records (ctype, cid, client_msg_no, record) \
    VALUES ($1, $2, $3, '\\x') ON CONFLICT (ctype, cid, client_msg_no) \
    DO UPDATE SET record = imcore_event_records.record RETURNING record";
const BY_EVENT_ID: &str = "SELECT event FROM imcore_events \
    WHERE ctype = $1 AND cid = $2 AND client_msg_no = $3 AND event_id = $4";
const INSERT_EVENT: &str = "INSERT INTO imcore_events \
    (ctype, cid, client_msg_no, seq, event_id, event) VALUES ($1, $2, $3, $4, $5, $6)";
const WRITE_RECORD: &str = "UPDATE imcore_event_records SET record = $4 \
    WHERE ctype = $1 AND cid = $2 AND client_msg_no = $3";
const OPEN: &str = "INSERT INTO imcore_open_streams \
    (ctype, cid, client_msg_no, event_key, updated_at) VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (ctype, cid, client_msg_no, event_key) DO UPDATE SET updated_at = $5";
const CLOSE: &str = "DELETE FROM imcore_open_streams \
    WHERE ctype = $1 AND cid = $2 AND client_msg_no = $3 AND event_key = $4";
const AFTER: &str = "SELECT event FROM imcore_events \
    WHERE ctype = $1 AND cid = $2 AND client_msg_no = $3 AND seq > $4 ORDER BY seq LIMIT $5";
const RECORDS: &str = "SELECT client_msg_no, record FROM imcore_event_records \
    WHERE ctype = $1 AND cid = $2 AND client_msg_no = ANY($3)";
const STALE: &str = "SELECT o.ctype, o.cid, o.client_msg_no, o.event_key, r.record \
    FROM imcore_open_streams o JOIN imcore_event_records r USING (ctype, cid, client_msg_no) \
    WHERE o.updated_at < $1 ORDER BY o.updated_at LIMIT $2";

#[async_trait]
impl EventStore for PgStore {
    async fn append_event(&self, event: NewEvent, now_ms: i64) -> Result<EventAppend> {
        let (ctype, cid) = channel_key(&event.channel);
        let no = event.client_msg_no.as_str().to_owned();
        let mut client = self.client().await?;
        let outcome = within(self.timeout, async {
            let tx = client.transaction().await.map_err(pg_error)?;
            let rows = query(&tx, LOCK_RECORD, &[&ctype, &cid, &no]).await?;
            let mut record = record_from(rows[0].get::<_, &[u8]>(0))?;
            let id = event.event_id.as_str();
            let duplicate = query(&tx, BY_EVENT_ID, &[&ctype, &cid, &no, &id])
                .await?
                .first()
                .map(|row| decode::<StoredEvent>(row.get(0), "event"))
                .transpose()?;
            let stored = match step(&mut record, event.clone(), duplicate, now_ms) {
                Step::Answer(answer) => return Ok(Err(answer)),
                Step::Append(stored) => stored,
            };
            let seq = to_i64(stored.msg_event_seq);
            let bytes = encode(&stored)?;
            query(&tx, INSERT_EVENT, &[&ctype, &cid, &no, &seq, &id, &bytes]).await?;
            let record_bytes = encode(&record)?;
            query(&tx, WRITE_RECORD, &[&ctype, &cid, &no, &record_bytes]).await?;
            let key = stored.event.event_key.as_str();
            let ended = record
                .state(&stored.event.event_key)
                .is_some_and(|s| s.status.is_terminal());
            match ended {
                true => query(&tx, CLOSE, &[&ctype, &cid, &no, &key]).await?,
                false => query(&tx, OPEN, &[&ctype, &cid, &no, &key, &now_ms]).await?,
            };
            tx.commit().await.map_err(pg_error)?;
            Ok(Ok((record, stored)))
        })
        .await?;
        match outcome {
            Err(answer) => Ok(*answer),
            Ok((record, stored)) => appended(&record, stored),
        }
    }

    async fn events_after(
        &self,
        channel: &Channel,
        client_msg_no: &ClientMsgNo,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        check_limit(limit)?;
        let (ctype, cid) = channel_key(channel);
        let (after, limit) = (to_i64(after), to_i64(limit as u64));
        let rows = self
            .rows(
                AFTER,
                &[&ctype, &cid, &client_msg_no.as_str(), &after, &limit],
            )
            .await?;
        rows.iter().map(|r| decode(r.get(0), "event")).collect()
    }

    async fn event_states(
        &self,
        channel: &Channel,
        client_msg_nos: &[ClientMsgNo],
    ) -> Result<Vec<Vec<EventState>>> {
        if client_msg_nos.is_empty() {
            return Ok(Vec::new());
        }
        let (ctype, cid) = channel_key(channel);
        let nos: Vec<&str> = client_msg_nos.iter().map(ClientMsgNo::as_str).collect();
        let rows = self.rows(RECORDS, &[&ctype, &cid, &nos]).await?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let no: &str = row.get(0);
            found.insert(no.to_owned(), record_from(row.get::<_, &[u8]>(1))?.states);
        }
        Ok(nos
            .iter()
            .map(|no| found.remove(*no).unwrap_or_default())
            .collect())
    }

    async fn set_event_snapshot(
        &self,
        channel: &Channel,
        client_msg_no: &ClientMsgNo,
        event_key: &EventKey,
        snapshot: Bytes,
        seq: u64,
    ) -> Result<()> {
        let (ctype, cid) = channel_key(channel);
        let no = client_msg_no.as_str();
        let mut client = self.client().await?;
        within(self.timeout, async {
            let tx = client.transaction().await.map_err(pg_error)?;
            let rows = query(&tx, LOCK_RECORD, &[&ctype, &cid, &no]).await?;
            let mut record = record_from(rows[0].get::<_, &[u8]>(0))?;
            if put_snapshot(&mut record, event_key, snapshot, seq) {
                let bytes = encode(&record)?;
                query(&tx, WRITE_RECORD, &[&ctype, &cid, &no, &bytes]).await?;
            }
            tx.commit().await.map_err(pg_error)
        })
        .await
    }

    async fn stale_streams(&self, before_ms: i64, limit: usize) -> Result<Vec<OpenStream>> {
        check_limit(limit)?;
        let limit = to_i64(limit as u64);
        let rows = self.rows(STALE, &[&before_ms, &limit]).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let record = record_from(row.get::<_, &[u8]>(4))?;
            let bad = |what: &str| Error::corrupt(format!("open stream: {what}"));
            let no: &str = row.get(2);
            let key: &str = row.get(3);
            let Some(from_uid) = record.from_uid.clone() else {
                continue;
            };
            out.push(OpenStream {
                channel: channel_from(row.get(0), row.get(1))?,
                client_msg_no: ClientMsgNo::new(no).map_err(|_| bad("client_msg_no"))?,
                event_key: EventKey::new(key).map_err(|_| bad("event_key"))?,
                from_uid: Uid::new(from_uid.as_str()).map_err(|_| bad("from_uid"))?,
            });
        }
        Ok(out)
    }
}
