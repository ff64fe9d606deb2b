//! The history writer: the only writer of the `log` tree (channel logs),
//! the `history` tree (their indexes), the `positions` tree (read
//! positions, person channels) and the `changed` tree (heads and moved
//! positions by version, see `changed.rs`).
//!
//! Writers take turns under one lock, so seqs come from each channel's
//! head (kept in memory, see [`Heads`]) and versions from one counter in
//! memory. A write becomes visible in order: its record, then its head
//! (readers read history only up to the head), then its version
//! ([`ConversationStore::stable_version`] is the last version written, and
//! a reader that sees a version sees its head). A single message is written as plain inserts, cheapest in sled
//! 0.34 (a transaction costs several times as much, and writes out an I/O
//! buffer on every commit), in an order that makes it crash-safe without a
//! transaction: its indexes first, then the record, which is the commit
//! point.
//!
//! A sender's read position moves to each message it sends, but is not
//! written then: the sender of a channel's last message has read the
//! channel up to it, which the record says. It is written when someone
//! else's message takes the head (before that message's record), so that a
//! run of messages from one sender (most of a 1:1 chat, a bot) writes no
//! position at all.
//! sled recovers a prefix of its writes, so an index never survives without
//! the writes before it; an index whose record is missing (a crash between
//! the two) is dangling, and every look-up checks that the record it points
//! at is the message it names. A batch of several messages is one
//! transaction across the trees: all of it or none, and no reader sees
//! its records before the read positions they move. With
//! [`Durability::Flush`](super::Durability::Flush), callers then share
//! flushes ([`GroupFlush`]).
//!
//! [`ConversationStore::stable_version`]: crate::store::ConversationStore::stable_version

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sled::transaction::ConflictableTransactionError;
use sled::{Db, IVec, Transactional, Tree};

use super::flush::GroupFlush;
use super::heads::{Head, Heads};
use super::keys::{
    be_u64, by_sender_key, encode, head_at_key, id_key, log_prefix, outbox_key, person_key,
    position_key, seq_key, VERSION_KEY,
};
use super::record::{self, RecordRef};
use super::{storage, tx_error, BACKEND};
use crate::error::{Error, Result};
use crate::model::{Channel, Message, MessageId, Uid};
use crate::store::{id_in_use, Appended, ReadPosition};

/// Versions reserved on disk at a time: the reservation is written, and
/// flushed, once per this many versions, before any of them is handed out;
/// a reopened store starts above it, so no version is handed out twice,
/// even after a crash that lost writes.
const VERSION_BLOCK: u64 = 1 << 16;

/// The writer and the reads it shares with readers.
pub(super) struct Writer {
    pub(super) db: Db,
    /// New messages go into the outbox too ([`crate::store::Outbox`]).
    pub(super) outbox: std::sync::atomic::AtomicBool,
    /// Message records only (`m` keys), so that history pages are not
    /// spread among index entries.
    pub(super) log: Tree,
    /// Indexes (by id, by sender) and the version reservation.
    pub(super) history: Tree,
    /// Read positions and person channels: what conversations read, in a
    /// tree whose size does not grow with the history.
    pub(super) positions: Tree,
    /// Each channel's history floor, once retention deleted from it (see
    /// `retention.rs`).
    pub(super) floors: Tree,
    /// What changed after a version: each channel by its head's version,
    /// and read positions moved by clears and hides (see `changed.rs`).
    pub(super) changed: Tree,
    pub(super) flush: bool,
    pub(super) flusher: Arc<GroupFlush>,
    /// The last version written: every version up to it is visible.
    pub(super) stable: AtomicU64,
    /// The highest version reserved on disk.
    reserved: AtomicU64,
    /// Held while writing: writers take turns, so that each channel's
    /// next seq comes from its head in memory.
    turn: std::sync::Mutex<()>,
    /// Channel heads, which the writer moves after each record it writes
    /// and readers share.
    pub(super) heads: Heads,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

/// What one write puts in the tree, in order.
type Writes = Vec<(Vec<u8>, Vec<u8>)>;

impl Writer {
    /// The writer of `db`'s trees.
    pub(super) fn open(db: Db, flush: bool, flusher: Arc<GroupFlush>) -> Result<Self> {
        let tree = |name: &str| db.open_tree(name).map_err(storage);
        let (log, history, positions) = (tree("log")?, tree("history")?, tree("positions")?);
        let (floors, changed) = (tree("floors")?, tree("changed")?);
        // Every version used is at most the reservation: start above it.
        let reserved = match history.get(VERSION_KEY).map_err(storage)? {
            Some(v) => be_u64(&v, "version reservation")?,
            None => 0,
        };
        Ok(Writer {
            db,
            outbox: std::sync::atomic::AtomicBool::new(false),
            log,
            history,
            positions,
            floors,
            changed,
            flush,
            flusher,
            stable: AtomicU64::new(reserved),
            reserved: AtomicU64::new(reserved),
            turn: std::sync::Mutex::new(()),
            heads: Heads::default(),
        })
    }

    /// Writes messages, readable on return, with the ticket that
    /// [`settle`](Self::settle) takes to make them durable.
    pub(super) fn write(&self, messages: &[Message]) -> Result<(Vec<Appended>, u64)> {
        let _turn = self.lock();
        if let [one] = messages {
            return Ok((vec![self.append_one(one)?], self.flusher.commit()));
        }
        let mut plan = Plan::new(self, messages.len() as u64);
        let out = messages
            .iter()
            .map(|m| plan.append(m))
            .collect::<Result<Vec<_>>>()?;
        plan.commit()?;
        Ok((out, self.flusher.commit()))
    }

    /// Moves a read position forward; see
    /// [`ConversationStore::clear_unread`](crate::store::ConversationStore::clear_unread).
    /// `None` if the channel has no messages; otherwise the ticket that
    /// [`settle`](Self::settle) takes.
    pub(super) fn clear(&self, uid: &Uid, channel: &Channel, read_seq: u64) -> Result<Option<u64>> {
        let ticket = 'write: {
            let _turn = self.lock();
            let prefix = log_prefix(channel);
            let Some(head) = self.head(&prefix)? else {
                return Ok(None);
            };
            let read_seq = read_seq.min(head.seq);
            let at = position_key(uid, &prefix);
            let behind = match self.positions.get(&at).map_err(storage)? {
                Some(v) => {
                    let p: ReadPosition = super::keys::decode(&v, "read position")?;
                    p.read_seq < read_seq
                }
                None => true,
            };
            // Nothing to move (its sender has read the head; a stale
            // clear never moves back). Answered once what it found is as
            // durable as the configuration says, like any clear.
            if head.from == *uid || !behind {
                break 'write self.flusher.committed();
            }
            let red_dots = match self.log.get(seq_key(&prefix, read_seq)).map_err(storage)? {
                Some(v) => RecordRef::parse(&v)?.red_dots,
                None => 0, // seq 0: nothing read
            };
            let mut plan = Plan::new(self, 1);
            plan.version += 1;
            let position = ReadPosition {
                read_seq,
                red_dots,
                version: plan.version,
            };
            plan.positions.push((at, encode(&position)?));
            plan.moved = Some((uid.clone(), prefix, plan.version));
            plan.commit()?;
            self.flusher.commit()
        };
        Ok(Some(ticket))
    }

    /// The channel's head (given as its log prefix); see [`Heads::get`].
    pub(super) fn head(&self, prefix: &[u8]) -> Result<Option<Head>> {
        self.heads.get(&self.log, &self.floors, prefix)
    }

    /// Writes and flushes a new version reservation. Once per
    /// [`VERSION_BLOCK`] versions; the fsync is what makes versions unique
    /// across a crash that loses the writes of the last flush interval.
    fn reserve(&self, reserve: u64) -> Result<()> {
        self.history
            .insert(VERSION_KEY, &reserve.to_be_bytes())
            .map_err(storage)?;
        self.db.flush().map_err(storage)?;
        self.reserved.store(reserve, Ordering::Release);
        Ok(())
    }

    /// One message, written as it is planned: its resend and id indexes
    /// claimed with compare-and-swap (one operation each where a look-up
    /// and an insert would be two), the previous sender's position if the
    /// sender changes, then its record. See the module docs for why the
    /// order makes it crash-safe.
    fn append_one(&self, m: &Message) -> Result<Appended> {
        let history = &self.history;
        let prefix = log_prefix(&m.channel);
        let previous = self.head(&prefix)?;
        let (last_seq, dots) = previous.as_ref().map_or((0, 0), |h| (h.seq, h.red_dots));
        let seq = last_seq + 1;
        let location = seq_key(&prefix, seq);
        let sender = by_sender_key(&m.from_uid, &m.channel, &m.client_msg_no);
        let mut by_sender = m.message_id.0.to_be_bytes().to_vec();
        by_sender.extend_from_slice(&location);
        if let Err(taken) = self.claim(&sender, &by_sender)? {
            let (id, at) = self.by_sender(&taken)?;
            if is_tombstone(&taken)? {
                // A resend of a message retention deleted.
                return Ok(Appended {
                    message_id: id,
                    message_seq: super::keys::key_suffix_u64(&at, "resend index")?,
                    duplicate: true,
                });
            }
            if let Some(first) = self.record_of(id, &at)? {
                resend_of(&first, m)?;
                return Ok(Appended {
                    message_id: id,
                    message_seq: super::keys::key_suffix_u64(&at, "resend index")?,
                    duplicate: true,
                });
            }
            // Dangling (its record was lost): this message takes the key.
            history.insert(sender, by_sender).map_err(storage)?;
        }
        let id = id_key(m.message_id);
        if let Err(taken) = self.claim(&id, &location)? {
            if self.record_of(m.message_id, &taken)?.is_some() {
                return Err(id_in_use(BACKEND, m.message_id));
            }
            history.insert(id, location.as_slice()).map_err(storage)?;
        }
        // The outbox entry before the record: a crash in between leaves an
        // entry with no record, which the outbox drops when it reads it.
        if let Some((entry, value)) = self.outbox_entry(m, &location)? {
            history.insert(entry, value).map_err(storage)?;
        }
        let last = self.stable.load(Ordering::Acquire);
        let version = last + 1;
        if version > self.reserved.load(Ordering::Acquire) {
            self.reserve(version + VERSION_BLOCK)?;
        }
        if seq == 1 {
            if let Some((a, b)) = m.channel.person_parties() {
                for party in [a, b] {
                    let entry = person_key(&party, &prefix);
                    self.positions.insert(entry, &[]).map_err(storage)?;
                }
            }
        }
        if let Some(previous) = previous.as_ref().filter(|h| h.from != m.from_uid) {
            // The previous sender's implicit position stops being the
            // head's: write it down first.
            let at = position_key(&previous.from, &prefix);
            let position = encode(&previous.senders_position())?;
            self.positions.insert(at, position).map_err(storage)?;
        }
        let red_dots = dots + u64::from(m.flags.red_dot);
        let record = IVec::from(record::encode(m, red_dots, version)?);
        // The channel under its new version before the record, like the
        // other indexes; under the old one until after it.
        self.changed
            .insert(head_at_key(version), prefix.as_slice())
            .map_err(storage)?;
        self.log.insert(location, record.clone()).map_err(storage)?;
        // Stored. Published to readers (who read history only up to the
        // head), then its version: a reader that sees the version sees
        // the head.
        let head = Head::new(m, (seq, red_dots, version), record, previous.as_ref());
        self.heads.put(prefix, head);
        self.stable.store(version, Ordering::Release);
        if let Some(previous) = &previous {
            let stale = head_at_key(previous.version);
            self.changed.remove(stale).map_err(storage)?;
        }
        Ok(Appended {
            message_id: m.message_id,
            message_seq: seq,
            duplicate: false,
        })
    }

    /// Inserts `value` at `key` if the key is free; otherwise leaves it and
    /// returns what is there.
    fn claim(&self, key: &[u8], value: &[u8]) -> Result<std::result::Result<(), IVec>> {
        match self
            .history
            .compare_and_swap(key, None::<&[u8]>, Some(value))
            .map_err(storage)?
        {
            Ok(()) => Ok(Ok(())),
            Err(e) => match e.current {
                Some(current) => Ok(Err(current)),
                // Cannot be: the swap expected nothing and found nothing.
                None => Err(Error::corrupt("compare-and-swap refused an empty key")),
            },
        }
    }

    /// The writer's turn. Held only for synchronous work (a few sled
    /// operations, no await), so a plain mutex serves, and costs less than
    /// an async one.
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // It guards no data of its own: a panic while holding it leaves
        // nothing inconsistent.
        self.turn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes a written change as durable as the configuration says.
    pub(super) async fn settle(&self, ticket: u64) -> Result<()> {
        if !self.flush {
            return Ok(());
        }
        self.flusher
            .flush(&self.db, ticket)
            .await
            .map_err(|e| Error::Unconfirmed {
                backend: BACKEND,
                source: Box::new(e),
            })
    }

    /// The record at `location` if it is the message `id`: index entries
    /// whose record a crash lost are dangling, and point at nothing or at a
    /// later message that took the same seq.
    pub(super) fn record_of(&self, id: MessageId, location: &[u8]) -> Result<Option<IVec>> {
        match self.log.get(location).map_err(storage)? {
            Some(v) => {
                let stored = RecordRef::parse(&v)?.message_id;
                Ok((stored == id).then_some(v))
            }
            None => Ok(None),
        }
    }

    /// A new outbox entry for `m`, stored at `location`, if the outbox is
    /// on: its key and value (the message id and the record's key, as a
    /// resend index entry holds them).
    pub(super) fn outbox_entry(
        &self,
        m: &Message,
        location: &[u8],
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if !self.outbox.load(Ordering::Acquire) {
            return Ok(None);
        }
        let n = self.db.generate_id().map_err(storage)?;
        let mut value = m.message_id.0.to_be_bytes().to_vec();
        value.extend_from_slice(location);
        Ok(Some((outbox_key(n).to_vec(), value)))
    }

    /// The message id and record key a resend index entry (or an outbox
    /// entry, of the same form) holds, a tombstone's too.
    pub(super) fn by_sender(&self, value: &IVec) -> Result<(MessageId, Vec<u8>)> {
        let (id, location, _) = split_resend(value)?;
        Ok((id, location.to_vec()))
    }
}

/// One write under the writer's turn: what it has planned so far.
struct Plan<'a> {
    writer: &'a Writer,
    /// Index entries for the `history` tree.
    indexes: Writes,
    /// Read positions and person channels, for the `positions` tree.
    positions: Writes,
    /// Records for the `log` tree.
    records: Vec<(Vec<u8>, IVec)>,
    /// Each new head under its version, for the `changed` tree.
    changed: Writes,
    /// The versions of the heads this plan moves on from.
    stale: Vec<u64>,
    /// A read position a clear moves: the user, the channel's log prefix,
    /// the version.
    moved: Option<(Uid, Vec<u8>, u64)>,
    version: u64,
    /// A new reservation this plan writes first, if it needs one.
    reserve: Option<u64>,
    /// The heads this write's messages made.
    heads: HashMap<Vec<u8>, Head>,
    /// Resend keys and ids this write has taken.
    taken: HashMap<Vec<u8>, (MessageId, u64, bytes::Bytes)>,
    ids: std::collections::HashSet<MessageId>,
}

impl<'a> Plan<'a> {
    /// A plan that may use up to `versions` new versions.
    fn new(writer: &'a Writer, versions: u64) -> Self {
        let last = writer.stable.load(Ordering::Acquire);
        // Written, and flushed, before anything that uses it.
        let reserve = (last + versions > writer.reserved.load(Ordering::Acquire))
            .then_some(last + versions + VERSION_BLOCK);
        Plan {
            writer,
            indexes: Vec::new(),
            positions: Vec::new(),
            records: Vec::new(),
            changed: Vec::new(),
            stale: Vec::new(),
            moved: None,
            version: last,
            reserve,
            heads: HashMap::new(),
            taken: HashMap::new(),
            ids: Default::default(),
        }
    }

    fn head(&self, prefix: &[u8]) -> Result<Option<Head>> {
        match self.heads.get(prefix) {
            Some(h) => Ok(Some(h.clone())),
            None => self.writer.head(prefix),
        }
    }

    /// Plans one message: a duplicate, or its writes.
    fn append(&mut self, m: &Message) -> Result<Appended> {
        let history = &self.writer.history;
        let sender = by_sender_key(&m.from_uid, &m.channel, &m.client_msg_no);
        if let Some(&(message_id, message_seq, ref payload)) = self.taken.get(&sender) {
            if *payload != m.payload {
                return Err(crate::store::conflict(m));
            }
            return Ok(Appended {
                message_id,
                message_seq,
                duplicate: true,
            });
        }
        if let Some(v) = history.get(&sender).map_err(storage)? {
            let (id, location) = self.writer.by_sender(&v)?;
            if is_tombstone(&v)? {
                // A resend of a message retention deleted.
                return Ok(Appended {
                    message_id: id,
                    message_seq: super::keys::key_suffix_u64(&location, "resend index")?,
                    duplicate: true,
                });
            }
            if let Some(first) = self.writer.record_of(id, &location)? {
                resend_of(&first, m)?;
                return Ok(Appended {
                    message_id: id,
                    message_seq: super::keys::key_suffix_u64(&location, "resend index")?,
                    duplicate: true,
                });
            }
        }
        let id = id_key(m.message_id);
        let stored = match history.get(id).map_err(storage)? {
            Some(location) => self.writer.record_of(m.message_id, &location)?.is_some(),
            None => false,
        };
        if stored || !self.ids.insert(m.message_id) {
            return Err(id_in_use(BACKEND, m.message_id));
        }
        let prefix = log_prefix(&m.channel);
        let previous = self.head(&prefix)?;
        let (last_seq, dots) = previous.as_ref().map_or((0, 0), |h| (h.seq, h.red_dots));
        let seq = last_seq + 1;
        let red_dots = dots + u64::from(m.flags.red_dot);
        self.version += 1;
        if let Some(previous) = previous.as_ref().filter(|h| h.from != m.from_uid) {
            let position = encode(&previous.senders_position())?;
            self.positions
                .push((position_key(&previous.from, &prefix), position));
        }
        let location = seq_key(&prefix, seq);
        if seq == 1 {
            if let Some((a, b)) = m.channel.person_parties() {
                for party in [a, b] {
                    self.positions
                        .push((person_key(&party, &prefix), Vec::new()));
                }
            }
        }
        self.indexes.push((id.to_vec(), location.clone()));
        let mut by_sender = m.message_id.0.to_be_bytes().to_vec();
        by_sender.extend_from_slice(&location);
        self.indexes.push((sender.clone(), by_sender));
        if let Some(entry) = self.writer.outbox_entry(m, &location)? {
            self.indexes.push(entry);
        }
        let record = IVec::from(record::encode(m, red_dots, self.version)?);
        self.records.push((location, record.clone()));
        self.changed
            .push((head_at_key(self.version).to_vec(), prefix.clone()));
        if let Some(previous) = &previous {
            self.stale.push(previous.version);
        }
        let head = Head::new(m, (seq, red_dots, self.version), record, previous.as_ref());
        self.heads.insert(prefix, head);
        self.taken
            .insert(sender, (m.message_id, seq, m.payload.clone()));
        Ok(Appended {
            message_id: m.message_id,
            message_seq: seq,
            duplicate: false,
        })
    }

    /// Writes the plan: a clear's position as a plain insert, indexed
    /// first (see `changed.rs`); appends in one transaction across the
    /// four trees, then moves the heads.
    fn commit(self) -> Result<()> {
        let writer = self.writer;
        let (log, history, positions) = (&writer.log, &writer.history, &writer.positions);
        let changed = &writer.changed;
        if let Some(reserve) = self.reserve {
            self.writer.reserve(reserve)?;
        }
        if self.records.is_empty() {
            let replaced = match &self.moved {
                Some((uid, prefix, version)) => {
                    super::changed::index_moved(changed, uid, prefix, *version)?
                }
                None => None,
            };
            for (k, v) in &self.positions {
                positions
                    .insert(k.as_slice(), v.as_slice())
                    .map_err(storage)?;
            }
            if let Some(replaced) = replaced {
                changed.remove(replaced).map_err(storage)?;
            }
        } else {
            // Several messages: all or nothing across the trees, and
            // visible at once, positions with the records that move them.
            (log, history, positions, changed)
                .transaction(|(log, history, positions, changed)| {
                    for (k, v) in &self.indexes {
                        history.insert(k.as_slice(), v.as_slice())?;
                    }
                    for (k, v) in &self.positions {
                        positions.insert(k.as_slice(), v.as_slice())?;
                    }
                    for (k, v) in &self.records {
                        log.insert(k.as_slice(), v.clone())?;
                    }
                    for (k, v) in &self.changed {
                        changed.insert(k.as_slice(), v.as_slice())?;
                    }
                    for &version in &self.stale {
                        changed.remove(head_at_key(version).as_slice())?;
                    }
                    Ok::<_, ConflictableTransactionError<Error>>(())
                })
                .map_err(tx_error)?;
            for (prefix, head) in self.heads {
                self.writer.heads.put(prefix, head);
            }
            self.writer.stable.store(self.version, Ordering::Release);
            return Ok(());
        }
        self.writer.stable.store(self.version, Ordering::Release);
        Ok(())
    }
}

/// A resend index entry's parts: the message id, the record's key and,
/// for a tombstone (the message was deleted by retention), when it was
/// deleted. The record key's length is in it (`m`, channel type, id
/// length, id, seq), so a tombstone is the same entry with the deletion
/// time after it.
pub(super) fn split_resend(value: &[u8]) -> Result<(MessageId, &[u8], Option<i64>)> {
    let short = || Error::corrupt("resend index entry too short");
    let (id, rest) = value.split_first_chunk::<8>().ok_or_else(short)?;
    let id_len = usize::from(*rest.get(2).ok_or_else(short)?);
    let location_len = 3 + id_len + 8;
    let location = rest.get(..location_len).ok_or_else(short)?;
    let deleted_at = match &rest[location_len..] {
        [] => None,
        tail => {
            let at: [u8; 8] = tail
                .try_into()
                .map_err(|_| Error::corrupt("resend index entry: a bad tombstone"))?;
            Some(i64::from_be_bytes(at))
        }
    };
    Ok((MessageId(u64::from_be_bytes(*id)), location, deleted_at))
}

/// Whether a resend index entry is a tombstone.
pub(super) fn is_tombstone(value: &[u8]) -> Result<bool> {
    Ok(split_resend(value)?.2.is_some())
}

/// Checks that `m` is a resend of the stored record `first`: the same
/// payload under the same sender, channel and number.
fn resend_of(first: &[u8], m: &Message) -> Result<()> {
    match RecordRef::parse(first)?.payload == m.payload.as_ref() {
        true => Ok(()),
        false => Err(crate::store::conflict(m)),
    }
}
