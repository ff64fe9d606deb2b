//! The in-memory backend.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{
    check_limit, id_in_use, unread_after, Appended, CommandQueue, Conversation, ConversationStore,
    ConversationUpdate, Direction, HistoryAppend, MessageLog, NewRevocation, Page, Pushed, QueuedCommand,
    Recorded, Revocation, RevocationStore,
};
use crate::error::Result;
use crate::model::{Channel, ClientMsgNo, Message, MessageId, Uid};

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
}

type SenderKey = (Uid, ClientMsgNo);

#[derive(Debug, Default)]
struct Inner {
    logs: HashMap<Channel, ChannelLog>,
    by_id: HashMap<MessageId, (Channel, u64)>,
    dedup: HashMap<SenderKey, (MessageId, u64)>,
    queues: HashMap<Uid, UserQueue>,
    cmd_dedup: HashMap<SenderKey, MessageId>,
    cmd_ids: HashSet<MessageId>,
    conversations: HashMap<Uid, UserConversations>,
    revocations: HashMap<MessageId, Revocation>,
    revocations_by_channel: HashMap<Channel, (u64, BTreeMap<u64, MessageId>)>,
}

#[derive(Debug, Default)]
struct ChannelLog {
    last_seq: u64,
    messages: BTreeMap<u64, Message>,
}

#[derive(Debug, Default)]
struct UserQueue {
    last_cursor: u64,
    entries: BTreeMap<u64, Message>,
    by_id: HashMap<MessageId, u64>,
}

#[derive(Debug, Default)]
struct UserConversations {
    version: u64,
    by_channel: HashMap<Channel, Conversation>,
    by_version: BTreeMap<u64, Channel>,
}

impl UserConversations {
    /// Gives `channel`'s entry the user's next version.
    fn bump(&mut self, channel: &Channel) {
        self.version += 1;
        if let Some(conv) = self.by_channel.get_mut(channel) {
            self.by_version.remove(&conv.version);
            conv.version = self.version;
            self.by_version.insert(self.version, channel.clone());
        }
    }
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

#[async_trait]
impl super::Store for MemoryStore {
    /// The messages and their conversation updates under one lock: no
    /// reader sees a message in history before it is in conversations.
    async fn append_history(&self, batch: Vec<HistoryAppend>) -> Result<Vec<Appended>> {
        let mut inner = self.lock();
        let appended = inner.append(batch.iter().map(|h| h.message.clone()).collect())?;
        let updates: Vec<ConversationUpdate> = batch
            .iter()
            .zip(&appended)
            .filter(|(_, a)| !a.duplicate)
            .flat_map(|(h, a)| h.conversation_updates(a.message_id, a.message_seq))
            .collect();
        inner.update_conversations(&updates);
        Ok(appended)
    }
}

impl Inner {
    fn append(&mut self, messages: Vec<Message>) -> Result<Vec<Appended>> {
        let inner = self;
        // All or nothing: refuse the batch before storing any of it if a new
        // message reuses a stored id (or one earlier in the batch).
        let (mut batch_keys, mut batch_ids) = (HashSet::new(), HashSet::new());
        for m in &messages {
            let key = (m.from_uid.clone(), m.client_msg_no.clone());
            if inner.dedup.contains_key(&key) || !batch_keys.insert(key) {
                continue; // a resend: stored as a duplicate, whatever its id
            }
            if inner.by_id.contains_key(&m.message_id) || !batch_ids.insert(m.message_id) {
                return Err(id_in_use("memory", m.message_id));
            }
        }
        let mut out = Vec::with_capacity(messages.len());
        for mut message in messages {
            let key = (message.from_uid.clone(), message.client_msg_no.clone());
            if let Some(&(message_id, message_seq)) = inner.dedup.get(&key) {
                out.push(Appended {
                    message_id,
                    message_seq,
                    duplicate: true,
                });
                continue;
            }
            let log = inner.logs.entry(message.channel.clone()).or_default();
            log.last_seq += 1;
            let seq = log.last_seq;
            message.message_seq = seq;
            let id = message.message_id;
            let channel = message.channel.clone();
            log.messages.insert(seq, message);
            inner.by_id.insert(id, (channel, seq));
            inner.dedup.insert(key, (id, seq));
            out.push(Appended {
                message_id: id,
                message_seq: seq,
                duplicate: false,
            });
        }
        Ok(out)
    }

    fn update_conversations(&mut self, updates: &[ConversationUpdate]) {
        let inner = self;
        for u in updates {
            let user = inner.conversations.entry(u.uid.clone()).or_default();
            user.by_channel
                .entry(u.channel.clone())
                .or_insert_with(|| Conversation::empty_for(u))
                .apply(u);
            user.bump(&u.channel);
        }
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
                .map(|(_, m)| m.clone())
                .collect(),
            Direction::Backward => msgs
                .range(..=page.from)
                .rev()
                .take(page.limit)
                .map(|(_, m)| m.clone())
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
                .cloned()
        }))
    }

    async fn get_by_client_msg_no(
        &self,
        from_uid: &Uid,
        client_msg_no: &ClientMsgNo,
    ) -> Result<Option<Message>> {
        let id = {
            let inner = self.lock();
            match inner.dedup.get(&(from_uid.clone(), client_msg_no.clone())) {
                Some(&(id, _)) => id,
                None => return Ok(None),
            }
        };
        self.get(id).await
    }

    async fn last_seq(&self, channel: &Channel) -> Result<u64> {
        Ok(self.lock().logs.get(channel).map_or(0, |l| l.last_seq))
    }
}

#[async_trait]
impl CommandQueue for MemoryStore {
    async fn push_command(&self, message: &Message, recipients: &[Uid]) -> Result<Pushed> {
        let mut inner = self.lock();
        let key = (message.from_uid.clone(), message.client_msg_no.clone());
        if let Some(&message_id) = inner.cmd_dedup.get(&key) {
            return Ok(Pushed {
                message_id,
                duplicate: true,
            });
        }
        inner.cmd_dedup.insert(key, message.message_id);
        inner.cmd_ids.insert(message.message_id);
        let mut seen = HashSet::with_capacity(recipients.len());
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
    async fn update_conversations(&self, updates: &[ConversationUpdate]) -> Result<()> {
        self.lock().update_conversations(updates);
        Ok(())
    }

    async fn conversations_after(
        &self,
        uid: &Uid,
        version: u64,
        limit: usize,
    ) -> Result<Vec<Conversation>> {
        check_limit(limit)?;
        let inner = self.lock();
        let Some(user) = inner.conversations.get(uid) else {
            return Ok(Vec::new());
        };
        Ok(user
            .by_version
            .range(version.saturating_add(1)..)
            .take(limit)
            .filter_map(|(_, channel)| user.by_channel.get(channel).cloned())
            .collect())
    }

    async fn conversation(&self, uid: &Uid, channel: &Channel) -> Result<Option<Conversation>> {
        let inner = self.lock();
        Ok(inner
            .conversations
            .get(uid)
            .and_then(|u| u.by_channel.get(channel))
            .cloned())
    }

    async fn clear_unread(&self, uid: &Uid, channel: &Channel, read_seq: u64) -> Result<bool> {
        let mut inner = self.lock();
        let Some(user) = inner.conversations.get_mut(uid) else {
            return Ok(false);
        };
        let Some(conv) = user.by_channel.get_mut(channel) else {
            return Ok(false);
        };
        conv.unread = unread_after(conv, read_seq);
        user.bump(channel);
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
