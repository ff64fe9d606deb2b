//! The history writer: the only writer of channel logs, heads and read
//! positions.
//!
//! The first caller with nothing in flight starts a leader task; every job
//! queued while the leader is busy goes into its next transaction and (with
//! [`Durability::Flush`](super::Durability::Flush)) its next flush. Being
//! the only writer, the leader assigns seqs from each channel's log tail and
//! versions from one counter in memory, so that versions become visible in
//! order: [`ConversationStore::stable_version`] is simply the last version
//! it committed. The leader is a spawned task, so a caller that stops
//! waiting never strands the queue.
//!
//! [`ConversationStore::stable_version`]: crate::store::ConversationStore::stable_version

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sled::transaction::TransactionalTree;
use sled::{Db, Transactional, Tree};

use super::flush::GroupFlush;
use super::keys::{
    be_u64, channel_key, encode, key, sender_key, seq_key, uid_key, Record, VERSION_KEY,
};
use super::{abort, log_tail, shared_error, storage, tx_error, TxResult, BACKEND};
use crate::error::{Error, Result};
use crate::model::{Channel, Message, Uid};
use crate::store::{id_in_use, Appended, ReadPosition};

/// The most jobs one transaction takes.
const MAX_BATCH: usize = 256;
/// Versions reserved on disk at a time: the counter is written once per
/// this many versions, and a reopened store starts above the reservation.
const VERSION_BLOCK: u64 = 4096;

/// What the writer is asked to do.
pub(super) enum Job {
    /// Append messages (the log, heads, senders' positions).
    Append(Vec<Message>),
    /// Move a read position forward.
    Clear {
        uid: Uid,
        channel: Channel,
        read_seq: u64,
    },
}

/// What a job did.
pub(super) enum Done {
    Appended(Vec<Appended>),
    Cleared(bool),
}

struct Queued {
    job: Job,
    reply: tokio::sync::oneshot::Sender<Result<Done>>,
}

/// The trees and state the writer owns.
pub(super) struct Trees {
    pub(super) db: Db,
    pub(super) flush: bool,
    pub(super) flusher: Arc<GroupFlush>,
    pub(super) messages: Tree,
    pub(super) message_ids: Tree,
    pub(super) dedup: Tree,
    pub(super) positions: Tree,
    pub(super) persons: Tree,
    pub(super) counters: Tree,
    /// The last version committed: every version up to it is visible.
    pub(super) stable: Arc<AtomicU64>,
    /// The highest version reserved on disk.
    pub(super) reserved: AtomicU64,
}

impl Trees {
    /// Runs every job in one transaction. Returns one outcome per job and
    /// the last version used.
    fn write(&self, jobs: &[Queued]) -> Result<Vec<Done>> {
        let first = self.stable.load(Ordering::Acquire) + 1;
        let needed = jobs
            .iter()
            .map(|q| match &q.job {
                Job::Append(m) => m.len() as u64,
                Job::Clear { .. } => 1,
            })
            .sum::<u64>();
        let reserved = self.reserved.load(Ordering::Acquire);
        let reserve = (first + needed > reserved).then(|| first + needed + VERSION_BLOCK);
        // Plain reads cannot run inside a sled transaction (they wait for
        // the lock it holds), and this task is the only writer of these
        // trees: read the logs' tails, and the red-dot counts clears need,
        // before it.
        let mut tails = HashMap::new();
        let mut clear_dots = HashMap::new();
        for q in jobs {
            match &q.job {
                Job::Append(messages) => {
                    for m in messages {
                        let ck = key(|k| channel_key(k, &m.channel));
                        if let std::collections::hash_map::Entry::Vacant(e) = tails.entry(ck) {
                            let tail = log_tail(&self.messages, e.key())?;
                            e.insert(tail.map(|(seq, r)| (seq, r.red_dots)));
                        }
                    }
                }
                Job::Clear {
                    channel, read_seq, ..
                } => {
                    let ck = key(|k| channel_key(k, channel));
                    let tail = log_tail(&self.messages, &ck)?;
                    if let Some((last, _)) = tail {
                        let at = (*read_seq).min(last);
                        let dots = match self.messages.get(seq_key(&ck, at)).map_err(storage)? {
                            Some(v) => Record::decode(&v)?.red_dots,
                            None => 0, // seq 0: nothing read
                        };
                        clear_dots.insert((ck.clone(), at), dots);
                    }
                    tails.insert(ck, tail.map(|(seq, r)| (seq, r.red_dots)));
                }
            }
        }
        let trees = (
            &self.messages,
            &self.message_ids,
            &self.dedup,
            &self.positions,
            &self.persons,
            &self.counters,
        );
        let (done, last) = trees
            .transaction(|(log, ids, dedup, positions, persons, counters)| {
                let mut batch = Batch {
                    tails: &tails,
                    log,
                    ids,
                    dedup,
                    positions,
                    persons,
                    version: first - 1,
                    heads: HashMap::new(),
                    pending: clear_dots.clone(),
                };
                let mut done = Vec::with_capacity(jobs.len());
                for q in jobs {
                    done.push(match &q.job {
                        Job::Append(messages) => Done::Appended(batch.append(messages)?),
                        Job::Clear {
                            uid,
                            channel,
                            read_seq,
                        } => Done::Cleared(batch.clear(uid, channel, *read_seq)?),
                    });
                }
                if let Some(r) = reserve {
                    counters.insert(VERSION_KEY, &r.to_be_bytes())?;
                }
                Ok((done, batch.version))
            })
            .map_err(tx_error)?;
        if let Some(r) = reserve {
            self.reserved.store(r, Ordering::Release);
        }
        self.stable.store(last, Ordering::Release);
        Ok(done)
    }
}

/// One transaction's view: the transactional trees, and what this batch
/// has written so far (the plain trees do not show it yet).
struct Batch<'a> {
    /// Channel key → (last seq, red dots up to it) before this batch, for
    /// every channel the batch touches.
    tails: &'a HashMap<Vec<u8>, Option<(u64, u64)>>,
    log: &'a TransactionalTree,
    ids: &'a TransactionalTree,
    dedup: &'a TransactionalTree,
    positions: &'a TransactionalTree,
    persons: &'a TransactionalTree,
    version: u64,
    /// Channel key → (last seq, red dots up to it), for channels this batch
    /// appended to.
    heads: HashMap<Vec<u8>, (u64, u64)>,
    /// (channel key, seq) → red dots up to it, for this batch's messages
    /// and the seqs its clears read up to.
    pending: HashMap<(Vec<u8>, u64), u64>,
}

impl Batch<'_> {
    /// The channel's last seq and red-dot count, this batch included.
    fn head(&self, channel: &[u8]) -> TxResult<Option<(u64, u64)>> {
        if let Some(h) = self.heads.get(channel) {
            return Ok(Some(*h));
        }
        match self.tails.get(channel) {
            Some(tail) => Ok(*tail),
            None => abort(Error::corrupt("a channel the writer did not read ahead")),
        }
    }

    fn append(&mut self, messages: &[Message]) -> TxResult<Vec<Appended>> {
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            let sender = sender_key(&m.from_uid, &m.client_msg_no);
            if let Some(v) = self.dedup.get(&sender)? {
                let (message_id, message_seq) = match id_and_seq(&v) {
                    Ok(x) => x,
                    Err(e) => return abort(e),
                };
                out.push(Appended {
                    message_id,
                    message_seq,
                    duplicate: true,
                });
                continue;
            }
            let id = m.message_id.0.to_be_bytes();
            if self.ids.get(id)?.is_some() {
                return abort(id_in_use(BACKEND, m.message_id));
            }
            let channel = key(|k| channel_key(k, &m.channel));
            let (last_seq, dots) = self.head(&channel)?.unwrap_or((0, 0));
            let seq = last_seq + 1;
            let red_dots = dots + u64::from(m.flags.red_dot);
            self.version += 1;
            let record = match encode(&Record::of(m, red_dots, self.version)) {
                Ok(r) => r,
                Err(e) => return abort(e),
            };
            let location = seq_key(&channel, seq);
            self.log.insert(location.as_slice(), record)?;
            self.ids.insert(&id, location)?;
            let mut id_seq = id.to_vec();
            id_seq.extend_from_slice(&seq.to_be_bytes());
            self.dedup.insert(sender.as_slice(), id_seq)?;
            let position = ReadPosition {
                read_seq: seq,
                red_dots,
                version: self.version,
            };
            self.put_position(&m.from_uid, &channel, &position)?;
            if seq == 1 {
                if let Some((a, b)) = m.channel.person_parties() {
                    for party in [a, b] {
                        self.persons.insert(party_key(&party, &channel), &[])?;
                    }
                }
            }
            self.heads.insert(channel.clone(), (seq, red_dots));
            self.pending.insert((channel, seq), red_dots);
            out.push(Appended {
                message_id: m.message_id,
                message_seq: seq,
                duplicate: false,
            });
        }
        Ok(out)
    }

    fn clear(&mut self, uid: &Uid, channel: &Channel, read_seq: u64) -> TxResult<bool> {
        let channel = key(|k| channel_key(k, channel));
        let Some((last_seq, _)) = self.head(&channel)? else {
            return Ok(false);
        };
        let read_seq = read_seq.min(last_seq);
        let at = party_key(uid, &channel);
        if let Some(v) = self.positions.get(&at)? {
            match super::keys::decode::<ReadPosition>(&v, "read position") {
                Ok(p) if p.read_seq >= read_seq => return Ok(true), // never back
                Ok(_) => {}
                Err(e) => return abort(e),
            }
        }
        let Some(&red_dots) = self.pending.get(&(channel.clone(), read_seq)) else {
            return abort(Error::corrupt(
                "a read position the writer did not read ahead",
            ));
        };
        self.version += 1;
        let position = ReadPosition {
            read_seq,
            red_dots,
            version: self.version,
        };
        self.put_position(uid, &channel, &position)?;
        Ok(true)
    }

    fn put_position(&self, uid: &Uid, channel: &[u8], p: &ReadPosition) -> TxResult<()> {
        let value = match encode(p) {
            Ok(v) => v,
            Err(e) => return abort(e),
        };
        self.positions.insert(party_key(uid, channel), value)?;
        Ok(())
    }
}

/// The key of a user's entry for a channel: uid ++ channel.
pub(super) fn party_key(uid: &Uid, channel: &[u8]) -> Vec<u8> {
    let mut k = key(|k| uid_key(k, uid));
    k.extend_from_slice(channel);
    k
}

/// A message id and seq, as the dedup index stores them.
pub(super) fn id_and_seq(value: &[u8]) -> Result<(crate::model::MessageId, u64)> {
    if value.len() != 16 {
        return Err(Error::corrupt("dedup entry: expected 16 bytes"));
    }
    Ok((
        crate::model::MessageId(be_u64(&value[..8], "dedup entry")?),
        be_u64(&value[8..], "dedup entry")?,
    ))
}

/// The queue and the leader.
pub(super) struct Writer {
    trees: Arc<Trees>,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    queue: Vec<Queued>,
    leading: bool,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // No code path panics while holding the lock.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl Writer {
    pub(super) fn new(trees: Trees) -> Self {
        Writer {
            trees: Arc::new(trees),
            state: Arc::default(),
        }
    }

    pub(super) fn trees(&self) -> &Trees {
        &self.trees
    }

    /// Queues a job and waits for its outcome.
    pub(super) async fn submit(&self, job: Job) -> Result<Done> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let lead = {
            let mut state = lock(&self.state);
            state.queue.push(Queued { job, reply });
            !std::mem::replace(&mut state.leading, true)
        };
        if lead {
            tokio::spawn(Self::lead(self.trees.clone(), self.state.clone()));
        }
        answer.await.map_err(|_| Error::Storage {
            backend: BACKEND,
            source: "the history writer stopped before answering".into(),
        })?
    }

    /// Writes batches until the queue is empty, then steps down.
    ///
    /// It steps down, and lets go of the database, before it answers its
    /// last batch: once a caller has its answer, dropping the store closes
    /// the database at once and the directory can be opened again.
    async fn lead(trees: Arc<Trees>, state: Arc<Mutex<State>>) {
        let _guard = StepDownOnPanic(state.clone());
        let mut batch = Self::take(&state);
        let mut trees = Some(trees);
        while let Some(writer) = trees.as_ref() {
            let mut result = writer.write(&batch);
            if result.is_ok() {
                // Registered, so that `SledStore::flush` covers it.
                let ticket = writer.flusher.commit();
                if writer.flush {
                    if let Err(e) = writer.flusher.flush(&writer.db, ticket).await {
                        result = Err(Error::Unconfirmed {
                            backend: BACKEND,
                            source: Box::new(e),
                        });
                    }
                }
            }
            let next = Self::take(&state);
            if next.is_empty() {
                trees = None; // stepped down in `take`
            }
            match result {
                Ok(done) => {
                    for (q, d) in batch.into_iter().zip(done) {
                        let _ = q.reply.send(Ok(d));
                    }
                }
                Err(e) => {
                    for q in batch {
                        let _ = q.reply.send(Err(shared_error(&e)));
                    }
                }
            }
            batch = next;
        }
    }

    /// The next batch; an empty one means the leader has stepped down.
    fn take(state: &Mutex<State>) -> Vec<Queued> {
        let mut state = lock(state);
        if state.queue.is_empty() {
            state.leading = false;
            return Vec::new();
        }
        let take = state.queue.len().min(MAX_BATCH);
        state.queue.drain(..take).collect()
    }
}

/// If a leader panics (sled 0.34 has internal panics), it steps down and
/// fails the queued jobs (their callers get an error), so that the next
/// write elects a new leader instead of queueing behind a dead one forever.
struct StepDownOnPanic(Arc<Mutex<State>>);

impl Drop for StepDownOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut state = lock(&self.0);
            state.leading = false;
            state.queue.clear();
        }
    }
}
