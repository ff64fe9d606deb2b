//! The in-memory backend.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{
    check_limit, id_in_use, Appended, Changed, ChannelHead, CommandQueue, Conversation,
    ConversationStore, Direction, MessageLog, NewRevocation, Page, Pushed, QueuedCommand,
    ReadPosition, Recorded, Revocation, RevocationStore,
};
use crate::error::Result;
use crate::model::{Channel, ClientMsgNo, Message, MessageId, Uid};

mod events;
mod extras;
mod outbox;
mod retention;

/// A [`Store`](super::Store) kept in memory: fast, and gone with the
/// process. For tests, examples and hosts that keep durability elsewhere.
///
/// Every operation takes one lock for its whole duration, so each call is
/// atomic and calls are linearizable.
///
/// ```
/// use imcore::store::{MemoryStore, MessageLog};
/// # tokio_test_block_on(async {
/// let store = MemoryStore::new();
/// # let channel = imcore::Channel::group("g1").unwrap();
/// assert_eq!(store.last_seq(&channel).await.unwrap(), 0);
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// The directory's data ([`DirectoryStore`](crate::DirectoryStore)).
    pub(super) directory: Mutex<super::memory_directory::Data>,
    /// Leases ([`RetentionStore::try_lease`](super::RetentionStore::try_lease)).
    leases: super::Leases,
}

/// A resend's identity: the sender, the channel, the sender's number.
type SenderKey = (Uid, Channel, ClientMsgNo);

fn sender_key(m: &Message) -> SenderKey {
    (
        m.from_uid.clone(),
        m.channel.clone(),
        m.client_msg_no.clone(),
    )
}

/// Maps and sets with a fast hasher: every send looks up and inserts
/// several keys, and SipHash was a tenth of a send's time.
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;
type HashSet<T> = std::collections::HashSet<T, ahash::RandomState>;

#[derive(Debug, Default)]
struct Inner {
    logs: HashMap<Channel, ChannelLog>,
    by_id: HashMap<MessageId, (Channel, u64)>,
    dedup: HashMap<SenderKey, (MessageId, u64)>,
    queues: HashMap<Uid, UserQueue>,
    /// Each command's id and payload (the payload shares the message's).
    cmd_dedup: HashMap<SenderKey, (MessageId, bytes::Bytes)>,
    cmd_ids: HashSet<MessageId>,
    /// The store-wide version counter of heads and read positions.
    version: u64,
    positions: HashMap<(Uid, Channel), ReadPosition>,
    /// Each channel by its head's version (one entry a channel): what
    /// changed after a version, for an incremental sync.
    heads_by_version: BTreeMap<u64, Channel>,
    /// Each user's read positions moved by a clear or a hide, by version
    /// (one entry a channel; positions an append moves have the head's
    /// version, which `heads_by_version` has).
    moved: HashMap<Uid, BTreeMap<u64, Channel>>,
    person_channels: HashMap<Uid, BTreeSet<Channel>>,
    revocations: HashMap<MessageId, Revocation>,
    revocations_by_channel: HashMap<Channel, (u64, BTreeMap<u64, MessageId>)>,
    revocations_by_seq: HashMap<Channel, BTreeMap<u64, MessageId>>,
    /// Hidden conversations: each user's channels with the seq they are
    /// hidden up to.
    hidden: HashMap<Uid, HashMap<Channel, u64>>,
    /// The outbox, when enabled: entry number → message id.
    outbox: Option<BTreeMap<u64, MessageId>>,
    /// The last outbox entry number given.
    outbox_last: u64,
    /// The batches claimed from the outbox and not done.
    outbox_batches: outbox::Batches,
    /// Message events, per message.
    events: events::Events,
    /// The channels with message events.
    event_channels: HashSet<Channel>,
    /// Edits and read receipts.
    extras: extras::Extras,
    /// Resend tombstones of messages deleted by retention.
    tombstones: retention::Tombstones,
}

#[derive(Debug, Default)]
struct ChannelLog {
    head: Option<ChannelHead>,
    /// The highest seq deleted by retention (0: none).
    floor: u64,
    /// Each message with the channel's red-dot count up to it.
    messages: BTreeMap<u64, (Message, u64)>,
}

#[derive(Debug, Default)]
struct UserQueue {
    last_cursor: u64,
    entries: BTreeMap<u64, Message>,
    by_id: HashMap<MessageId, u64>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // No code path panics while holding the lock, so a poisoned lock
        // still guards consistent data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn append(&mut self, messages: Vec<Message>) -> Result<Vec<Appended>> {
        // All or nothing: refuse the batch before storing any of it if a new
        // message reuses a stored id (or one earlier in the batch). A batch
        // of one (every hub send) needs no sets.
        let batch = if messages.len() > 1 {
            messages.len()
        } else {
            0
        };
        // Fixed seeds: sets that live for one call need no random state.
        let seeded = || ahash::RandomState::with_seeds(1, 2, 3, 4);
        let (mut batch_keys, mut batch_ids) = (
            HashMap::with_capacity_and_hasher(batch, seeded()),
            HashSet::with_capacity_and_hasher(batch, seeded()),
        );
        for m in &messages {
            let key = sender_key(m);
            if self.tombstones.get(&key).is_some() {
                continue; // a resend of a deleted message
            }
            if let Some(&(_, seq)) = self.dedup.get(&key) {
                let stored = self.logs.get(&m.channel).and_then(|l| l.messages.get(&seq));
                if stored.is_some_and(|(first, _)| first.payload != m.payload) {
                    return Err(crate::store::conflict(m));
                }
                continue; // a resend: stored as a duplicate, whatever its id
            }
            if batch > 0 {
                match batch_keys.entry(key) {
                    std::collections::hash_map::Entry::Occupied(first) => {
                        if *first.get() != &m.payload {
                            return Err(crate::store::conflict(m));
                        }
                        continue;
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(&m.payload);
                    }
                }
            }
            if self.by_id.contains_key(&m.message_id)
                || (batch > 0 && !batch_ids.insert(m.message_id))
            {
                return Err(id_in_use("memory", m.message_id));
            }
        }
        let mut out = Vec::with_capacity(messages.len());
        for message in messages {
            let key = sender_key(&message);
            let first = self.dedup.get(&key).or_else(|| self.tombstones.get(&key));
            if let Some(&(message_id, message_seq)) = first {
                out.push(Appended {
                    message_id,
                    message_seq,
                    duplicate: true,
                });
                continue;
            }
            let (id, seq) = self.store(message);
            self.dedup.insert(key, (id, seq));
            out.push(Appended {
                message_id: id,
                message_seq: seq,
                duplicate: false,
            });
        }
        Ok(out)
    }

    /// Stores a new message: the log, the head, the sender's position and,
    /// for a person channel's first message, both parties' lists.
    fn store(&mut self, mut message: Message) -> (MessageId, u64) {
        self.version += 1;
        let version = self.version;
        let log = self.logs.entry(message.channel.clone()).or_default();
        let (seq, dots, floor_red_dots) = log.head.as_ref().map_or((1, 0, 0), |h| {
            (h.last_seq + 1, h.red_dots, h.floor_red_dots)
        });
        if let Some(previous) = &log.head {
            self.heads_by_version.remove(&previous.version);
        }
        let red_dots = dots + u64::from(message.flags.red_dot);
        message.message_seq = seq;
        log.head = Some(ChannelHead {
            last_seq: seq,
            last_message_id: message.message_id,
            last_timestamp_ms: message.timestamp_ms,
            red_dots,
            version,
            floor_red_dots,
        });
        let (id, channel, from) = (
            message.message_id,
            message.channel.clone(),
            message.from_uid.clone(),
        );
        log.messages.insert(seq, (message, red_dots));
        if seq == 1 {
            if let Some((a, b)) = channel.person_parties() {
                for party in [a, b] {
                    self.person_channels
                        .entry(party)
                        .or_default()
                        .insert(channel.clone());
                }
            }
        }
        self.by_id.insert(id, (channel.clone(), seq));
        if let Some(outbox) = &mut self.outbox {
            self.outbox_last += 1;
            outbox.insert(self.outbox_last, id);
        }
        self.heads_by_version.insert(version, channel.clone());
        let position = ReadPosition {
            read_seq: seq,
            red_dots,
            version,
        };
        if self.moved.contains_key(&from) {
            // Its index entry, if a clear or hide put one, is stale now.
            let key = (from.clone(), channel.clone());
            let old = self.positions.get(&key).map(|p| p.version);
            self.unindex_position(&from, old);
        }
        self.positions.insert((from, channel), position);
        (id, seq)
    }

    /// Removes the index entry of a user's read position at `version`.
    fn unindex_position(&mut self, uid: &Uid, version: Option<u64>) {
        if let (Some(moved), Some(version)) = (self.moved.get_mut(uid), version) {
            moved.remove(&version);
        }
    }

    /// Indexes a user's read position, moved by a clear or a hide.
    fn index_position(&mut self, uid: &Uid, channel: &Channel, version: u64) {
        let moved = self.moved.entry(uid.clone()).or_default();
        moved.insert(version, channel.clone());
    }
}

#[async_trait]
impl MessageLog for MemoryStore {
    async fn append(&self, messages: Vec<Message>) -> Result<Vec<Appended>> {
        self.lock().append(messages)
    }

    async fn read(&self, channel: &Channel, page: Page) -> Result<Vec<Message>> {
        page.validate()?;
        let inner = self.lock();
        let Some(log) = inner.logs.get(channel) else {
            return Ok(Vec::new());
        };
        let msgs = &log.messages;
        Ok(match page.direction {
            Direction::Forward => msgs
                .range(page.from..)
                .take(page.limit)
                .map(|(_, (m, _))| m.clone())
                .collect(),
            Direction::Backward => msgs
                .range(..=page.from)
                .rev()
                .take(page.limit)
                .map(|(_, (m, _))| m.clone())
                .collect(),
        })
    }

    async fn get(&self, id: MessageId) -> Result<Option<Message>> {
        let inner = self.lock();
        Ok(inner.by_id.get(&id).and_then(|(channel, seq)| {
            inner
                .logs
                .get(channel)
                .and_then(|log| log.messages.get(seq))
                .map(|(m, _)| m.clone())
        }))
    }

    async fn get_by_client_msg_no(
        &self,
        from_uid: &Uid,
        channel: &Channel,
        client_msg_no: &ClientMsgNo,
    ) -> Result<Option<Message>> {
        let id = {
            let inner = self.lock();
            let key = (from_uid.clone(), channel.clone(), client_msg_no.clone());
            match inner.dedup.get(&key) {
                Some(&(id, _)) => id,
                None => return Ok(None),
            }
        };
        self.get(id).await
    }

    async fn last_seq(&self, channel: &Channel) -> Result<u64> {
        let inner = self.lock();
        let head = inner.logs.get(channel).and_then(|l| l.head.as_ref());
        Ok(head.map_or(0, |h| h.last_seq))
    }
}

#[async_trait]
impl CommandQueue for MemoryStore {
    async fn push_command(&self, message: &Message, recipients: &[Uid]) -> Result<Pushed> {
        let mut inner = self.lock();
        let key = sender_key(message);
        if let Some((message_id, payload)) = inner.cmd_dedup.get(&key) {
            if *payload != message.payload {
                return Err(crate::store::conflict(message));
            }
            return Ok(Pushed {
                message_id: *message_id,
                duplicate: true,
            });
        }
        let first = (message.message_id, message.payload.clone());
        inner.cmd_dedup.insert(key, first);
        inner.cmd_ids.insert(message.message_id);
        let mut seen = HashSet::with_capacity_and_hasher(recipients.len(), Default::default());
        for uid in recipients {
            if !seen.insert(uid) {
                continue;
            }
            let queue = inner.queues.entry(uid.clone()).or_default();
            queue.last_cursor += 1;
            queue.entries.insert(queue.last_cursor, message.clone());
            queue.by_id.insert(message.message_id, queue.last_cursor);
        }
        Ok(Pushed {
            message_id: message.message_id,
            duplicate: false,
        })
    }

    async fn pending_commands(
        &self,
        uid: &Uid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<QueuedCommand>> {
        check_limit(limit)?;
        let inner = self.lock();
        let Some(queue) = inner.queues.get(uid) else {
            return Ok(Vec::new());
        };
        Ok(queue
            .entries
            .range(after.saturating_add(1)..)
            .take(limit)
            .map(|(&cursor, message)| QueuedCommand {
                cursor,
                message: message.clone(),
            })
            .collect())
    }

    async fn ack_commands(&self, uid: &Uid, up_to: u64) -> Result<usize> {
        let mut inner = self.lock();
        let Some(queue) = inner.queues.get_mut(uid) else {
            return Ok(0);
        };
        let rest = queue.entries.split_off(&up_to.saturating_add(1));
        let acked = std::mem::replace(&mut queue.entries, rest);
        for message in acked.values() {
            queue.by_id.remove(&message.message_id);
        }
        Ok(acked.len())
    }

    async fn is_command(&self, id: MessageId) -> Result<bool> {
        Ok(self.lock().cmd_ids.contains(&id))
    }

    async fn remove_commands(&self, uid: &Uid, ids: &[MessageId]) -> Result<usize> {
        let mut inner = self.lock();
        let Some(queue) = inner.queues.get_mut(uid) else {
            return Ok(0);
        };
        let mut removed = 0;
        for id in ids {
            if let Some(cursor) = queue.by_id.remove(id) {
                queue.entries.remove(&cursor);
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[async_trait]
impl ConversationStore for MemoryStore {
    async fn stable_version(&self) -> Result<u64> {
        // Every change happens under the one lock: all of them are visible.
        Ok(self.lock().version)
    }

    async fn conversation(&self, uid: &Uid, channel: &Channel) -> Result<Option<Conversation>> {
        let inner = self.lock();
        let Some(head) = inner.logs.get(channel).and_then(|l| l.head.as_ref()) else {
            return Ok(None);
        };
        let position = inner.positions.get(&(uid.clone(), channel.clone()));
        Ok(Some(Conversation::derive(channel.clone(), head, position)))
    }

    async fn hide_conversation(&self, uid: &Uid, channel: &Channel, up_to: u64) -> Result<()> {
        let mut inner = self.lock();
        let marks = inner.hidden.entry(uid.clone()).or_default();
        if marks.get(channel).is_some_and(|&seq| seq >= up_to) {
            return Ok(()); // hidden that far already: nothing changes
        }
        marks.insert(channel.clone(), up_to);
        if inner.logs.get(channel).is_some_and(|l| l.head.is_some()) {
            // A change of the conversation: the read position takes the
            // next version, its seq unchanged.
            inner.version += 1;
            let version = inner.version;
            let empty = ReadPosition {
                read_seq: 0,
                red_dots: 0,
                version,
            };
            let key = (uid.clone(), channel.clone());
            let old = inner.positions.get(&key).map(|p| p.version);
            inner.unindex_position(uid, old);
            inner.positions.entry(key).or_insert(empty).version = version;
            inner.index_position(uid, channel, version);
        }
        Ok(())
    }

    async fn hidden_conversations(&self, uid: &Uid) -> Result<Vec<(Channel, u64)>> {
        let inner = self.lock();
        Ok(inner.hidden.get(uid).map_or_else(Vec::new, |h| {
            h.iter().map(|(c, seq)| (c.clone(), *seq)).collect()
        }))
    }

    /// From the heads' and the user's positions' version indexes.
    async fn changed_after(&self, uid: &Uid, version: u64, most: usize) -> Result<Option<Changed>> {
        let inner = self.lock();
        let after = (Bound::Excluded(version), Bound::Unbounded);
        let heads = inner.heads_by_version.range(after);
        let moved = inner
            .moved
            .get(uid)
            .into_iter()
            .flat_map(|m| m.range(after));
        let mut channels = Vec::new();
        for (_, channel) in heads.chain(moved) {
            if channels.len() == most {
                return Ok(None);
            }
            channels.push(channel.clone());
        }
        channels.sort_unstable();
        channels.dedup();
        Ok(Some(Changed {
            ceiling: inner.version,
            channels,
        }))
    }

    async fn person_channels(&self, uid: &Uid) -> Result<Vec<Channel>> {
        let inner = self.lock();
        let channels = inner.person_channels.get(uid);
        Ok(channels.map_or_else(Vec::new, |c| c.iter().cloned().collect()))
    }

    async fn clear_unread(&self, uid: &Uid, channel: &Channel, read_seq: u64) -> Result<bool> {
        let mut inner = self.lock();
        let Some(log) = inner.logs.get(channel) else {
            return Ok(false);
        };
        let Some(head) = &log.head else {
            return Ok(false);
        };
        let read_seq = read_seq.min(head.last_seq);
        let key = (uid.clone(), channel.clone());
        if inner
            .positions
            .get(&key)
            .is_some_and(|p| p.read_seq >= read_seq)
        {
            return Ok(true); // a stale clear: the position never moves back
        }
        let red_dots = log.messages.get(&read_seq).map_or(0, |(_, dots)| *dots);
        inner.version += 1;
        let position = ReadPosition {
            read_seq,
            red_dots,
            version: inner.version,
        };
        let old = inner.positions.insert(key, position).map(|p| p.version);
        inner.unindex_position(uid, old);
        let version = inner.version;
        inner.index_position(uid, channel, version);
        Ok(true)
    }
}

#[async_trait]
impl RevocationStore for MemoryStore {
    async fn record_revocation(&self, r: NewRevocation) -> Result<Recorded> {
        let mut inner = self.lock();
        if let Some(existing) = inner.revocations.get(&r.message_id) {
            return Ok(Recorded::Existing(existing.clone()));
        }
        let (version, by_version) = inner
            .revocations_by_channel
            .entry(r.channel.clone())
            .or_default();
        *version += 1;
        let extra_version = *version;
        by_version.insert(extra_version, r.message_id);
        let record = Revocation {
            message_id: r.message_id,
            channel: r.channel,
            message_seq: r.message_seq,
            revoker: r.revoker,
            revoked_at_ms: r.revoked_at_ms,
            extra_version,
        };
        inner
            .revocations_by_seq
            .entry(record.channel.clone())
            .or_default()
            .insert(record.message_seq, record.message_id);
        inner.revocations.insert(record.message_id, record.clone());
        Ok(Recorded::New(record))
    }

    async fn lookup_revocations(&self, ids: &[MessageId]) -> Result<Vec<Option<Revocation>>> {
        let inner = self.lock();
        Ok(ids
            .iter()
            .map(|id| inner.revocations.get(id).cloned())
            .collect())
    }

    async fn revocations_between(
        &self,
        channel: &Channel,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<Revocation>> {
        let inner = self.lock();
        let Some(by_seq) = inner.revocations_by_seq.get(channel) else {
            return Ok(Vec::new());
        };
        if from_seq > to_seq {
            return Ok(Vec::new());
        }
        Ok(by_seq
            .range(from_seq..=to_seq)
            .filter_map(|(_, id)| inner.revocations.get(id).cloned())
            .collect())
    }

    async fn revocations_after(
        &self,
        channel: &Channel,
        version: u64,
        limit: usize,
    ) -> Result<Vec<Revocation>> {
        check_limit(limit)?;
        let inner = self.lock();
        let Some((_, by_version)) = inner.revocations_by_channel.get(channel) else {
            return Ok(Vec::new());
        };
        Ok(by_version
            .range(version.saturating_add(1)..)
            .take(limit)
            .filter_map(|(_, id)| inner.revocations.get(id).cloned())
            .collect())
    }
}
