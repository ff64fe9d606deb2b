//! The append writer: every waiting `append` call of one store committed
//! in one transaction (group commit).
//!
//! A batch takes the counter row's lock first, so that batches from all
//! processes on the database run one after another; reads the heads, the
//! resend keys and the ids its messages touch, in one round trip; decides
//! seqs and versions here; and writes the messages, heads, read positions,
//! person channels and the counter with one statement each, sent
//! together, before its commit.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Pool, Transaction};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Row;

use super::{channel_arrays, channel_key, id_from_i64, id_to_i64, pg_error, to_i64, to_u64};
use super::{within, BACKEND};
use crate::error::{Error, Result};
use crate::model::{Message, MessageId};
use crate::store::{id_in_use, Appended};

/// One `append` call waiting for the writer.
pub(super) struct Request {
    pub(super) messages: Vec<Message>,
    pub(super) reply: oneshot::Sender<Result<Vec<Appended>>>,
}

/// Starts the writer; it stops when the returned sender (the store) is
/// dropped.
///
/// `outbox`: whether new messages go into the outbox too, read per batch.
pub(super) fn spawn(
    pool: Pool,
    timeout: Duration,
    max_batch: usize,
    outbox: Arc<AtomicBool>,
) -> mpsc::Sender<Request> {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(run(pool, timeout, max_batch, outbox, rx));
    tx
}

async fn run(
    pool: Pool,
    timeout: Duration,
    max_batch: usize,
    outbox: Arc<AtomicBool>,
    mut rx: mpsc::Receiver<Request>,
) {
    let mut batch: Vec<Request> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut size = first.messages.len();
        batch.push(first);
        while size < max_batch {
            match rx.try_recv() {
                Ok(next) => {
                    size += next.messages.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        // A caller that gave up (its own timeout) is not written for.
        batch.retain(|r| !r.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let outbox = outbox.load(Ordering::Acquire);
        match within(timeout, commit(&pool, &batch, outbox)).await {
            Ok(results) => {
                for (request, result) in batch.drain(..).zip(results) {
                    let _ = request.reply.send(result);
                }
            }
            Err(e) => {
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(copy(&e)));
                }
            }
        }
    }
}

/// The same failure for each caller of a failed batch: the backend's own
/// words under the same kind (not the whole message, which already says
/// "storage backend postgres …" and would then say it twice).
fn copy(e: &Error) -> Error {
    match e {
        Error::Unavailable { source, .. } => Error::Unavailable {
            backend: BACKEND,
            source: source.to_string().into(),
        },
        Error::Storage { source, .. } => Error::Storage {
            backend: BACKEND,
            source: source.to_string().into(),
        },
        other => Error::Storage {
            backend: BACKEND,
            source: other.to_string().into(),
        },
    }
}

const LOCK: &str = "SELECT version FROM imcore_counter WHERE id = 1 FOR UPDATE";
// Look-ups of many keys: each key probes the index on its own (a LATERAL
// subquery, kept from being flattened into a join by `OFFSET 0`), and each
// runs as an unnamed statement, planned at every run for the tables as they
// are (see `lookup`).
pub(super) const HEADS: &str = "SELECT h.ctype, h.cid, h.last_seq, h.red_dots \
    FROM unnest($1::int2[], $2::text[]) AS k(ctype, cid), LATERAL ( \
    SELECT * FROM imcore_heads WHERE ctype = k.ctype AND cid = k.cid OFFSET 0) h";
pub(super) const RESENDS: &str = "SELECT m.from_uid, m.ctype, m.cid, m.client_msg_no, \
    m.message_id, m.seq, m.payload \
    FROM unnest($1::text[], $2::int2[], $3::text[], $4::text[]) AS k(u, t, c, n), LATERAL ( \
    SELECT from_uid, ctype, cid, client_msg_no, message_id, seq, payload FROM imcore_messages \
    WHERE from_uid = k.u AND ctype = k.t AND cid = k.c AND client_msg_no = k.n \
    UNION ALL \
    SELECT from_uid, ctype, cid, client_msg_no, message_id, seq, NULL FROM imcore_tombstones \
    WHERE from_uid = k.u AND ctype = k.t AND cid = k.c AND client_msg_no = k.n OFFSET 0) m";
pub(super) const IDS: &str = "SELECT i.message_id FROM unnest($1::int8[]) AS k(id), LATERAL ( \
    SELECT message_id FROM imcore_messages WHERE message_id = k.id OFFSET 0) i";
const INSERT_MESSAGES: &str = "INSERT INTO imcore_messages \
    (ctype, cid, seq, message_id, from_uid, client_msg_no, ts, flags, red_dots, payload, \
    setting, topic) \
    SELECT * FROM unnest($1::int2[], $2::text[], $3::int8[], $4::int8[], $5::text[], \
    $6::text[], $7::int8[], $8::int2[], $9::int8[], $10::bytea[], $11::int2[], $12::text[])";
const INSERT_OUTBOX: &str =
    "INSERT INTO imcore_outbox (message_id) SELECT * FROM unnest($1::int8[])";
const UPSERT_HEADS: &str = "INSERT INTO imcore_heads \
    (ctype, cid, last_seq, last_message_id, last_ts, red_dots, version) \
    SELECT * FROM unnest($1::int2[], $2::text[], $3::int8[], $4::int8[], $5::int8[], \
    $6::int8[], $7::int8[]) \
    ON CONFLICT (ctype, cid) DO UPDATE SET last_seq = excluded.last_seq, \
    last_message_id = excluded.last_message_id, last_ts = excluded.last_ts, \
    red_dots = excluded.red_dots, version = excluded.version";
pub(super) const UPSERT_POSITIONS: &str = "INSERT INTO imcore_positions \
    (uid, ctype, cid, read_seq, red_dots, version) \
    SELECT * FROM unnest($1::text[], $2::int2[], $3::text[], $4::int8[], $5::int8[], $6::int8[]) \
    ON CONFLICT (uid, ctype, cid) DO UPDATE SET read_seq = excluded.read_seq, \
    red_dots = excluded.red_dots, version = excluded.version";
const INSERT_PERSON: &str = "INSERT INTO imcore_person_channels (uid, ctype, cid) \
    SELECT * FROM unnest($1::text[], $2::int2[], $3::text[]) ON CONFLICT DO NOTHING";
pub(super) const SET_VERSION: &str = "UPDATE imcore_counter SET version = $1 WHERE id = 1";

/// A statement's parameters.
pub(super) type Params<'a, const N: usize> = [&'a (dyn ToSql + Sync); N];

/// A look-up's parameters, with their types.
type Typed<'a, const N: usize> = [(&'a (dyn ToSql + Sync), Type); N];

/// Runs a cached statement in the batch's transaction.
pub(super) async fn query(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>> {
    let statement = tx.prepare_cached(sql).await.map_err(pg_error)?;
    tx.query(&statement, params).await.map_err(pg_error)
}

/// Runs a look-up of many keys in the batch's transaction, unnamed: a
/// prepared statement caches, after its fifth run, a generic plan made for
/// the tables of that moment, and one made while a table was small kept
/// scanning it whole as it grew (measured: 0.1 -> 10 ms per batch over
/// 20,000 sends; 64 senders fell from 12 k to 1.5 k sends/s).
async fn lookup(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
) -> Result<Vec<Row>> {
    tx.query_typed(sql, params).await.map_err(pg_error)
}

/// A channel's head as the batch moves it.
struct Head {
    seq: u64,
    red_dots: u64,
    moved: Option<(MessageId, i64, u64)>,
}

/// The rows a batch writes, as column arrays.
#[derive(Default)]
struct Rows<'a> {
    ctype: Vec<i16>,
    cid: Vec<&'a str>,
    seq: Vec<i64>,
    id: Vec<i64>,
    from: Vec<&'a str>,
    no: Vec<&'a str>,
    ts: Vec<i64>,
    flags: Vec<i16>,
    red_dots: Vec<i64>,
    payload: Vec<&'a [u8]>,
    setting: Vec<i16>,
    topic: Vec<Option<&'a str>>,
}

/// Commits one batch; one result per request, in order.
async fn commit(
    pool: &Pool,
    batch: &[Request],
    outbox: bool,
) -> Result<Vec<Result<Vec<Appended>>>> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let all = || batch.iter().flat_map(|r| r.messages.iter());
    let (ctypes, cids) = channel_arrays(all().map(|m| &m.channel));
    let (uids, nos): (Vec<&str>, Vec<&str>) = all()
        .map(|m| (m.from_uid.as_str(), m.client_msg_no.as_str()))
        .unzip();
    let ids: Vec<i64> = all().map(|m| id_to_i64(m.message_id)).collect();
    // The lock first, on its own: sent in one pipeline with the reads,
    // the reads were seen to miss a batch that committed while the lock
    // waited (the primary key then refused the batch).
    let lock = query(&tx, LOCK, &[]).await?;
    let p_heads: Typed<2> = [(&ctypes, Type::INT2_ARRAY), (&cids, Type::TEXT_ARRAY)];
    let (m_ctypes, m_cids): (Vec<i16>, Vec<&str>) = all().map(|m| channel_key(&m.channel)).unzip();
    let p_resends: Typed<4> = [
        (&uids, Type::TEXT_ARRAY),
        (&m_ctypes, Type::INT2_ARRAY),
        (&m_cids, Type::TEXT_ARRAY),
        (&nos, Type::TEXT_ARRAY),
    ];
    let p_ids: Typed<1> = [(&ids, Type::INT8_ARRAY)];
    let (heads, resends, used) = tokio::try_join!(
        lookup(&tx, HEADS, &p_heads),
        lookup(&tx, RESENDS, &p_resends),
        lookup(&tx, IDS, &p_ids),
    )?;
    let mut version = to_u64(lock[0].get(0), "version")?;
    let mut heads: HashMap<(i16, String), Head> = heads
        .iter()
        .map(|r| {
            let head = Head {
                seq: to_u64(r.get(2), "seq")?,
                red_dots: to_u64(r.get(3), "red_dots")?,
                moved: None,
            };
            Ok(((r.get(0), r.get(1)), head))
        })
        .collect::<Result<_>>()?;
    let mut stored: HashMap<ResendKey, First> = resends
        .iter()
        .map(|r| {
            let first = First {
                message_id: id_from_i64(r.get(4)),
                message_seq: to_u64(r.get(5), "seq")?,
                // None: a tombstone (retention deleted the message).
                payload: r.get::<_, Option<Vec<u8>>>(6).map(Into::into),
            };
            Ok(((r.get(0), r.get(1), r.get(2), r.get(3)), first))
        })
        .collect::<Result<_>>()?;
    let mut used: HashSet<i64> = used.iter().map(|r| r.get(0)).collect();

    let mut rows = Rows::default();
    let mut positions: HashMap<(&str, i16, &str), (u64, u64, u64)> = HashMap::new();
    let mut persons: Vec<(String, i16, &str)> = Vec::new();
    let mut results = Vec::with_capacity(batch.len());
    for request in batch {
        // All or nothing per call: refuse it before any of it is applied.
        if let Err(e) = refused(&request.messages, &stored, &used) {
            results.push(Err(e));
            continue;
        }
        let mut out = Vec::with_capacity(request.messages.len());
        for m in &request.messages {
            let key = resend_key(m);
            if let Some(first) = stored.get(&key) {
                out.push(Appended {
                    message_id: first.message_id,
                    message_seq: first.message_seq,
                    duplicate: true,
                });
                continue;
            }
            version += 1;
            let (ctype, cid) = channel_key(&m.channel);
            let head = heads.entry((ctype, cid.to_owned())).or_insert(Head {
                seq: 0,
                red_dots: 0,
                moved: None,
            });
            head.seq += 1;
            head.red_dots += u64::from(m.flags.red_dot);
            head.moved = Some((m.message_id, m.timestamp_ms, version));
            let (seq, red_dots) = (head.seq, head.red_dots);
            rows.push(m, seq, red_dots);
            positions.insert((m.from_uid.as_str(), ctype, cid), (seq, red_dots, version));
            if seq == 1 {
                if let Some((a, b)) = m.channel.person_parties() {
                    persons.push((a.as_str().to_owned(), ctype, cid));
                    persons.push((b.as_str().to_owned(), ctype, cid));
                }
            }
            used.insert(id_to_i64(m.message_id));
            let first = First {
                message_id: m.message_id,
                message_seq: seq,
                payload: Some(m.payload.clone()),
            };
            stored.insert(key, first);
            out.push(Appended {
                message_id: m.message_id,
                message_seq: seq,
                duplicate: false,
            });
        }
        results.push(Ok(out));
    }
    if !rows.id.is_empty() {
        write(&tx, &rows, &heads, &positions, &persons, version, outbox).await?;
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(results)
}

/// A stored message's identity as a resend: sender, channel, number.
type ResendKey = (String, i16, String, String);

fn resend_key(m: &Message) -> ResendKey {
    let (ctype, cid) = channel_key(&m.channel);
    let (from, no) = (m.from_uid.as_str(), m.client_msg_no.as_str());
    (from.to_owned(), ctype, cid.to_owned(), no.to_owned())
}

/// What a resend is answered with, and checked against (a tombstone,
/// whose message retention deleted, has no payload to check).
struct First {
    message_id: MessageId,
    message_seq: u64,
    payload: Option<bytes::Bytes>,
}

/// Why a call must store nothing, if it must: a new message whose id is
/// already stored (or used twice in the call), or a resend with another
/// payload than the first message's.
fn refused(
    messages: &[Message],
    stored: &HashMap<ResendKey, First>,
    used: &HashSet<i64>,
) -> Result<()> {
    let (mut keys, mut ids) = (HashMap::new(), HashSet::new());
    for m in messages {
        let key = resend_key(m);
        if stored.get(&key).is_some_and(|f| f.payload.is_none()) {
            continue; // a resend of a deleted message: a duplicate
        }
        let first = stored.get(&key).and_then(|f| f.payload.as_ref());
        match first.or_else(|| keys.get(&key).copied()) {
            Some(payload) if *payload != m.payload => return Err(crate::store::conflict(m)),
            // A resend: answered as a duplicate, whatever its id.
            Some(_) => continue,
            None => keys.insert(key, &m.payload),
        };
        let id = id_to_i64(m.message_id);
        if used.contains(&id) || !ids.insert(id) {
            return Err(id_in_use(BACKEND, m.message_id));
        }
    }
    Ok(())
}

impl<'a> Rows<'a> {
    fn push(&mut self, m: &'a Message, seq: u64, red_dots: u64) {
        let (ctype, cid) = channel_key(&m.channel);
        self.ctype.push(ctype);
        self.cid.push(cid);
        self.seq.push(to_i64(seq));
        self.id.push(id_to_i64(m.message_id));
        self.from.push(m.from_uid.as_str());
        self.no.push(m.client_msg_no.as_str());
        self.ts.push(m.timestamp_ms);
        self.flags.push(i16::from(m.flags.bits()));
        self.red_dots.push(to_i64(red_dots));
        self.payload.push(&m.payload);
        self.setting.push(i16::from(m.setting.stored().0));
        self.topic.push(m.topic.as_deref());
    }
}

/// Writes what a batch decided, every statement sent at once.
async fn write(
    tx: &Transaction<'_>,
    rows: &Rows<'_>,
    heads: &HashMap<(i16, String), Head>,
    positions: &HashMap<(&str, i16, &str), (u64, u64, u64)>,
    persons: &[(String, i16, &str)],
    version: u64,
    outbox: bool,
) -> Result<()> {
    let moved: Vec<_> = heads
        .iter()
        .filter_map(|(key, head)| Some((key, head, head.moved?)))
        .collect();
    let (h_ctype, h_cid): (Vec<i16>, Vec<&str>) =
        moved.iter().map(|(k, _, _)| (k.0, k.1.as_str())).unzip();
    let h_seq: Vec<i64> = moved.iter().map(|(_, h, _)| to_i64(h.seq)).collect();
    let h_id: Vec<i64> = moved.iter().map(|(_, _, m)| id_to_i64(m.0)).collect();
    let h_ts: Vec<i64> = moved.iter().map(|(_, _, m)| m.1).collect();
    let h_dots: Vec<i64> = moved.iter().map(|(_, h, _)| to_i64(h.red_dots)).collect();
    let h_version: Vec<i64> = moved.iter().map(|(_, _, m)| to_i64(m.2)).collect();
    let positions: Vec<_> = positions.iter().collect();
    let p_uid: Vec<&str> = positions.iter().map(|(k, _)| k.0).collect();
    let p_ctype: Vec<i16> = positions.iter().map(|(k, _)| k.1).collect();
    let p_cid: Vec<&str> = positions.iter().map(|(k, _)| k.2).collect();
    let p_seq: Vec<i64> = positions.iter().map(|(_, p)| to_i64(p.0)).collect();
    let p_dots: Vec<i64> = positions.iter().map(|(_, p)| to_i64(p.1)).collect();
    let p_version: Vec<i64> = positions.iter().map(|(_, p)| to_i64(p.2)).collect();
    let person: (Vec<&str>, Vec<i16>, Vec<&str>) = (
        persons.iter().map(|p| p.0.as_str()).collect(),
        persons.iter().map(|p| p.1).collect(),
        persons.iter().map(|p| p.2).collect(),
    );
    let r = rows;
    let version = to_i64(version);
    let messages: Params<12> = [
        &r.ctype,
        &r.cid,
        &r.seq,
        &r.id,
        &r.from,
        &r.no,
        &r.ts,
        &r.flags,
        &r.red_dots,
        &r.payload,
        &r.setting,
        &r.topic,
    ];
    let heads: Params<7> = [&h_ctype, &h_cid, &h_seq, &h_id, &h_ts, &h_dots, &h_version];
    let positions: Params<6> = [&p_uid, &p_ctype, &p_cid, &p_seq, &p_dots, &p_version];
    let persons: Params<3> = [&person.0, &person.1, &person.2];
    let counter: Params<1> = [&version];
    let entries: Params<1> = [&r.id];
    // In the same transaction as the messages: stored means in the outbox.
    let into_outbox = async {
        match outbox {
            true => query(tx, INSERT_OUTBOX, &entries).await,
            false => Ok(Vec::new()),
        }
    };
    tokio::try_join!(
        into_outbox,
        query(tx, INSERT_MESSAGES, &messages),
        query(tx, UPSERT_HEADS, &heads),
        query(tx, UPSERT_POSITIONS, &positions),
        query(tx, INSERT_PERSON, &persons),
        query(tx, SET_VERSION, &counter),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_batch_tells_each_caller_the_backend_and_its_words_once() {
        let unavailable = Error::Unavailable {
            backend: BACKEND,
            source: "db error".into(),
        };
        assert_eq!(
            copy(&unavailable).to_string(),
            "storage backend postgres is unavailable: db error"
        );
        assert!(copy(&unavailable).is_retryable());
        let failed = Error::Storage {
            backend: BACKEND,
            source: "ERROR: disk full (53100)".into(),
        };
        assert_eq!(
            copy(&failed).to_string(),
            "storage backend postgres failed: ERROR: disk full (53100)"
        );
        // Not the backend's failure: its whole text is the copy's words.
        let corrupt = Error::corrupt("seq: negative (-1)");
        assert_eq!(
            copy(&corrupt).to_string(),
            format!("storage backend postgres failed: {corrupt}")
        );
    }
}
