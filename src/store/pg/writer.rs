//! The append writer: every waiting `append` call of one store committed
//! together (group commit), in one round trip.
//!
//! A batch is one autocommitted call of the server-side function
//! `imcore_append` (see `append_function.rs`), which is told the caller's
//! deadline on the database's clock (`deadline.rs`) and stores nothing
//! once it has passed: a call that timed out here is never stored later by
//! a server that was stalled and resumed. The function takes the
//! counter row's lock, so that batches from all processes on the database
//! run one after another; then, in one statement, decides seqs, versions,
//! duplicates and refusals and writes the messages, heads, read positions,
//! person channels, outbox entries and the counter.
//!
//! The function decides every call of a batch against what is stored
//! alone. Calls that share a resend key or a message id (a resend racing
//! its first send, say) depend on each other, so a batch is cut before a
//! call that shares one with an earlier call of its part, and the parts
//! run one after another, each in its own round trip: what the calls get
//! is what they would get one at a time, in order.
//!
//! Batches run one after another (each holds the counter's lock until its
//! commit is flushed), so a writer that took only the calls already
//! waiting would split a steady set of senders in two: those answered by
//! the last batch send again a moment after the next one has started, and
//! wait for the one after it. So the writer waits for as many calls as the
//! last batch had, for a quarter of the time that batch took and at most
//! a millisecond: with 16 senders, batches of about 14 calls instead of 8,
//! half the statements and flushes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool, Transaction};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::deadline::DbClock;
use super::{channel_key, id_from_i64, id_to_i64, pg_error, to_u64};
use super::{within, BACKEND};
use crate::error::{Error, Result};
use crate::model::Message;
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
    let mut clock = None;
    let mut last = Last::default();
    while let Some(first) = rx.recv().await {
        let mut size = first.messages.len();
        batch.push(first);
        // Every call already waiting; and, while there are fewer than the
        // last batch had, its callers, answered a moment ago and likely
        // sending again: a short wait for them, so that they share this
        // batch's statement and flush rather than split into a small
        // batch now and the rest after it.
        let until = Instant::now() + (last.took / 4).min(MAX_LINGER);
        while size < max_batch {
            let next = match rx.try_recv() {
                Ok(next) => next,
                Err(_) if batch.len() < last.calls => {
                    match tokio::time::timeout_at(until.into(), rx.recv()).await {
                        Ok(Some(next)) => next,
                        _ => break,
                    }
                }
                Err(_) => break,
            };
            size += next.messages.len();
            batch.push(next);
        }
        let calls = batch.len();
        // A caller that gave up (its own timeout) is not written for.
        batch.retain(|r| !r.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let outbox = outbox.load(Ordering::Acquire);
        let started = Instant::now();
        let results = commit(&pool, timeout, &batch, outbox, &mut clock).await;
        last = Last {
            calls,
            took: started.elapsed(),
        };
        for (request, result) in batch.drain(..).zip(results) {
            let _ = request.reply.send(result);
        }
    }
}

/// The longest the writer waits for the last batch's callers to come
/// back (a quarter of what that batch took, at most this).
const MAX_LINGER: Duration = Duration::from_millis(1);

/// The last batch: how many calls it had, and how long it took to commit.
#[derive(Default)]
struct Last {
    calls: usize,
    took: Duration,
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

/// One batch (or part of one): the messages as column arrays, each with
/// its call's number in the part; one row per message of an accepted call
/// (its number from 1, verdict 0 stored or 1 duplicate, id and seq), and
/// one per refused call (the number of the message that refused it,
/// verdict 2 a resend with another payload or 3 an id already in use).
const APPEND: &str = "SELECT r_ord, r_verdict, r_id, r_seq FROM imcore_append($1::int4[], \
    $2::int2[], $3::text[], $4::int8[], $5::text[], $6::text[], $7::int8[], $8::int2[], \
    $9::bool[], $10::bytea[], $11::int2[], $12::text[], $13::text[], $14::text[], $15::bool, \
    $16::int8)";
pub(super) const UPSERT_POSITIONS: &str = "INSERT INTO imcore_positions \
    (uid, ctype, cid, read_seq, red_dots, version) \
    SELECT * FROM unnest($1::text[], $2::int2[], $3::text[], $4::int8[], $5::int8[], $6::int8[]) \
    ON CONFLICT (uid, ctype, cid) DO UPDATE SET read_seq = excluded.read_seq, \
    red_dots = excluded.red_dots, version = excluded.version";
pub(super) const SET_VERSION: &str = "UPDATE imcore_counter SET version = $1 WHERE id = 1";

/// A statement's parameters.
pub(super) type Params<'a, const N: usize> = [&'a (dyn ToSql + Sync); N];

/// Runs a cached statement in a transaction.
pub(super) async fn query(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>> {
    let statement = tx.prepare_cached(sql).await.map_err(pg_error)?;
    tx.query(&statement, params).await.map_err(pg_error)
}

/// What a verdict row says.
const STORED: i16 = 0;
const DUPLICATE: i16 = 1;
const CONFLICT: i16 = 2;
const ID_IN_USE: i16 = 3;

/// Commits one batch; one result per request, in order. A part that
/// fails fails its calls and those of every later part (which may depend
/// on it); earlier parts keep their results. `clock`: the last reading of
/// the database's clock, read again when it is no longer fresh.
async fn commit(
    pool: &Pool,
    timeout: Duration,
    batch: &[Request],
    outbox: bool,
    clock: &mut Option<DbClock>,
) -> Vec<Result<Vec<Appended>>> {
    let connected = within(timeout, async {
        let client = pool.get().await?;
        let reading = match *clock {
            Some(reading) if reading.is_fresh(Instant::now()) => reading,
            _ => DbClock::read(&client).await?,
        };
        Ok((client, reading))
    });
    let (client, reading) = match connected.await {
        Ok(connected) => connected,
        Err(e) => return batch.iter().map(|_| Err(copy(&e))).collect(),
    };
    *clock = Some(reading);
    let mut results = Vec::with_capacity(batch.len());
    for part in parts(batch) {
        // Given up on here at `timeout` from now: the statement gives up
        // (on the database's clock) a little earlier.
        let deadline = reading.deadline(Instant::now() + timeout);
        match within(timeout, append(&client, part, outbox, deadline)).await {
            Ok(answers) => results.extend(answers),
            Err(e) => {
                // Its statement may be running still (the timeout left it
                // mid-way): the connection goes rather than back to the
                // pool; the statement fails at its deadline.
                drop(Object::take(client));
                let failed = batch.len() - results.len();
                results.extend((0..failed).map(|_| Err(copy(&e))));
                return results;
            }
        }
    }
    results
}

/// A message's resend key and id, as the function compares them.
type Key<'a> = (&'a str, i16, &'a str, &'a str);

fn key(m: &Message) -> Key<'_> {
    let (ctype, cid) = channel_key(&m.channel);
    (m.from_uid.as_str(), ctype, cid, m.client_msg_no.as_str())
}

/// `batch` cut into parts, in order, in which no two calls share a resend
/// key or a message id (one call may repeat its own).
fn parts(batch: &[Request]) -> Vec<&[Request]> {
    let mut parts = Vec::new();
    let (mut start, mut keys, mut ids) = (0, HashSet::new(), HashSet::new());
    for (i, request) in batch.iter().enumerate() {
        let shares = request
            .messages
            .iter()
            .any(|m| keys.contains(&key(m)) || ids.contains(&m.message_id));
        if shares {
            parts.push(&batch[start..i]);
            (start, keys, ids) = (i, HashSet::new(), HashSet::new());
        }
        keys.extend(request.messages.iter().map(key));
        ids.extend(request.messages.iter().map(|m| m.message_id));
    }
    parts.push(&batch[start..]);
    parts
}

/// The messages of a part as the function's column arrays.
#[derive(Default)]
struct Columns<'a> {
    call: Vec<i32>,
    ctype: Vec<i16>,
    cid: Vec<&'a str>,
    id: Vec<i64>,
    from: Vec<&'a str>,
    no: Vec<&'a str>,
    ts: Vec<i64>,
    flags: Vec<i16>,
    red_dot: Vec<bool>,
    payload: Vec<&'a [u8]>,
    setting: Vec<i16>,
    topic: Vec<Option<&'a str>>,
    party_a: Vec<Option<String>>,
    party_b: Vec<Option<String>>,
}

impl<'a> Columns<'a> {
    fn of(part: &'a [Request]) -> Self {
        let mut c = Columns::default();
        for (call, request) in part.iter().enumerate() {
            for m in &request.messages {
                let (ctype, cid) = channel_key(&m.channel);
                c.call.push(i32::try_from(call).unwrap_or(i32::MAX));
                c.ctype.push(ctype);
                c.cid.push(cid);
                c.id.push(id_to_i64(m.message_id));
                c.from.push(m.from_uid.as_str());
                c.no.push(m.client_msg_no.as_str());
                c.ts.push(m.timestamp_ms);
                c.flags.push(i16::from(m.flags.bits()));
                c.red_dot.push(m.flags.red_dot);
                c.payload.push(&m.payload);
                c.setting.push(i16::from(m.setting.stored().0));
                c.topic.push(m.topic.as_deref());
                let parties = m.channel.person_parties();
                let (a, b) = parties.map_or((None, None), |(a, b)| (Some(a), Some(b)));
                c.party_a.push(a.map(|a| a.as_str().to_owned()));
                c.party_b.push(b.map(|b| b.as_str().to_owned()));
            }
        }
        c
    }
}

/// Appends one part in one autocommitted statement, which stores nothing
/// once the database's clock passes `deadline` (microseconds since the
/// epoch); one result per request. On an error the statement may still be
/// running: the caller drops the connection.
async fn append(
    client: &Object,
    part: &[Request],
    outbox: bool,
    deadline: i64,
) -> Result<Vec<Result<Vec<Appended>>>> {
    let c = Columns::of(part);
    let params: Params<16> = [
        &c.call, &c.ctype, &c.cid, &c.id, &c.from, &c.no, &c.ts, &c.flags, &c.red_dot, &c.payload,
        &c.setting, &c.topic, &c.party_a, &c.party_b, &outbox, &deadline,
    ];
    let statement = client.prepare_cached(APPEND).await.map_err(pg_error)?;
    let rows = client.query(&statement, &params).await.map_err(pg_error)?;
    // Each message's row, by its number from 1.
    let mut answers: Vec<Option<(i16, i64, Option<i64>)>> = vec![None; c.id.len()];
    for row in &rows {
        let ord: i64 = row.get(0);
        let slot = usize::try_from(ord - 1)
            .ok()
            .and_then(|i| answers.get_mut(i))
            .ok_or_else(|| Error::corrupt(format!("imcore_append: message number {ord}")))?;
        *slot = Some((
            row.get(1),
            row.get::<_, Option<i64>>(2).unwrap_or(0),
            row.get(3),
        ));
    }
    let mut answers = answers.into_iter();
    let mut results = Vec::with_capacity(part.len());
    for request in part {
        let mine: Vec<_> = answers.by_ref().take(request.messages.len()).collect();
        results.push(answer(request, &mine));
    }
    Ok(results)
}

/// One call's result from its messages' rows.
fn answer(request: &Request, rows: &[Option<(i16, i64, Option<i64>)>]) -> Result<Vec<Appended>> {
    let refusal = request
        .messages
        .iter()
        .zip(rows)
        .find_map(|(m, row)| match row {
            Some((CONFLICT, ..)) => Some(crate::store::conflict(m)),
            Some((ID_IN_USE, ..)) => Some(id_in_use(BACKEND, m.message_id)),
            _ => None,
        });
    if let Some(e) = refusal {
        return Err(e);
    }
    let missing = || Error::corrupt("imcore_append: a message without its row");
    rows.iter()
        .map(|row| match *row {
            Some((verdict @ (STORED | DUPLICATE), id, Some(seq))) => Ok(Appended {
                message_id: id_from_i64(id),
                message_seq: to_u64(seq, "seq")?,
                duplicate: verdict == DUPLICATE,
            }),
            _ => Err(missing()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(messages: Vec<Message>) -> Request {
        Request {
            messages,
            reply: oneshot::channel().0,
        }
    }

    fn message(id: u64, no: &str) -> Message {
        let no = crate::model::ClientMsgNo::new(no).unwrap();
        let from = crate::model::Uid::new("u").unwrap();
        let channel = crate::model::Channel::group("g").unwrap();
        Message::new(
            crate::model::MessageId(id),
            no,
            from,
            channel,
            0,
            b"p".to_vec(),
        )
    }

    #[test]
    fn a_batch_is_cut_before_a_call_that_shares_a_key_or_an_id() {
        let batch = [
            request(vec![message(1, "a"), message(1, "a")]), // its own repeat
            request(vec![message(2, "b")]),
            request(vec![message(3, "a")]), // a's resend
            request(vec![message(4, "c")]),
            request(vec![message(4, "d")]), // 4 again
            request(vec![message(5, "e")]),
        ];
        let lengths: Vec<usize> = parts(&batch).iter().map(|p| p.len()).collect();
        assert_eq!(lengths, [2, 2, 2]);
        assert_eq!(parts(&batch[..2]).len(), 1);
    }

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
