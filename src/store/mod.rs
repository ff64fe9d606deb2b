//! Storage: one object-safe trait per capability, and the backends.
//!
//! - [`MessageLog`]: channel history, with per-channel `message_seq`.
//! - [`CommandQueue`]: each user's pending commands (`sync_once`).
//! - [`ConversationStore`]: each user's conversation list and unread counts.
//! - [`RevocationStore`]: revocation records with per-channel versions.
//!
//! [`Store`] is all four together; every type implementing the four is a
//! `Store`. The crate ships [`MemoryStore`] and (feature `sled`, on by
//! default) [`SledStore`]. Both pass the same [`conformance`] suite, which a
//! host can run against its own backend.
//!
//! All methods take `&self` and are safe to call concurrently; each trait's
//! contract says what holds under concurrency.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Result, ValidationError};
use crate::model::{Channel, ClientMsgNo, Message, MessageId, Uid};

pub mod conformance;
mod memory;
#[cfg(feature = "sled")]
mod sled;

pub use memory::MemoryStore;
#[cfg(feature = "sled")]
pub use sled::{Durability, SledConfig, SledStore};

/// Which way a [`Page`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// Ascending seqs, starting at [`Page::from`] (inclusive).
    Forward,
    /// Descending seqs, starting at [`Page::from`] (inclusive).
    Backward,
}

/// A page of a channel's history: where to start, which way, how many.
///
/// ```
/// use imcore::store::Page;
/// let newest_20 = Page::latest(20);
/// let next_after_seq_7 = Page::forward(8, 50);
/// # let _ = (newest_20, next_after_seq_7);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Page {
    /// The first seq to consider (inclusive).
    pub from: u64,
    /// The direction of the scan; results come in this order.
    pub direction: Direction,
    /// The most messages returned; must be at least 1.
    pub limit: usize,
}

impl Page {
    /// Seqs `from, from+1, …`, at most `limit` of them.
    pub fn forward(from: u64, limit: usize) -> Self {
        Page {
            from,
            direction: Direction::Forward,
            limit,
        }
    }

    /// Seqs `from, from-1, …`, at most `limit` of them.
    pub fn backward(from: u64, limit: usize) -> Self {
        Page {
            from,
            direction: Direction::Backward,
            limit,
        }
    }

    /// The newest `limit` messages, newest first.
    pub fn latest(limit: usize) -> Self {
        Page::backward(u64::MAX, limit)
    }

    /// Rejects a zero limit.
    pub fn validate(&self) -> Result<()> {
        check_limit(self.limit)
    }
}

/// A conversation's unread count once its user has read up to `read_seq`.
pub(crate) fn unread_after(conv: &Conversation, read_seq: u64) -> u64 {
    conv.unread.min(conv.last_seq.saturating_sub(read_seq))
}

/// The error for a new message whose id is already stored.
pub(crate) fn id_in_use(backend: &'static str, id: MessageId) -> crate::Error {
    crate::Error::Storage {
        backend,
        source: format!(
            "message id {id} is already stored: ids must be unique (did the clock step back \
             across a restart, or do two hubs share a node id?)"
        )
        .into(),
    }
}

pub(crate) fn check_limit(limit: usize) -> Result<()> {
    if limit == 0 {
        return Err(ValidationError::OutOfRange("limit must be at least 1").into());
    }
    Ok(())
}

/// The outcome of appending one message to the [`MessageLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Appended {
    /// The stored message's id: the one given, or the first send's for a
    /// duplicate.
    pub message_id: MessageId,
    /// The stored message's seq in its channel.
    pub message_seq: u64,
    /// `true` when `(from_uid, client_msg_no)` had been stored before, so
    /// nothing was stored by this append.
    pub duplicate: bool,
}

/// Channel history.
///
/// # Contract
///
/// - [`append`](MessageLog::append) gives each new message its channel's
///   next `message_seq`: strictly increasing from 1, with no gaps and no
///   duplicates, whatever number of callers append to the same channel at
///   once. The caller's `message_seq` is ignored; its `message_id` is kept
///   and must be unique: a batch holding a new message whose id is already
///   stored fails with [`Error::Storage`](crate::Error::Storage) and stores
///   nothing (the id generator repeats ids only if the clock steps back
///   across a restart or two hubs share a node id; overwriting would make
///   the older message unreachable and mix up revocation state).
/// - A batch is stored atomically (all of it or none of it), and in order:
///   within one channel, seqs follow the batch order.
/// - Appends are idempotent on `(from_uid, client_msg_no)`: a message whose
///   pair is already stored (earlier, or earlier in the same batch) is not
///   stored again, and its [`Appended`] carries the first message's id and
///   seq with `duplicate: true`.
/// - When `append` returns `Ok`, the backend's durability promise holds for
///   the whole batch (see the backend's docs).
#[async_trait]
pub trait MessageLog: Send + Sync + Debug + 'static {
    /// Appends `messages` (to any channels), returning one [`Appended`] per
    /// message, in order.
    async fn append(&self, messages: Vec<Message>) -> Result<Vec<Appended>>;

    /// Reads one page of `channel`'s history, in the page's direction. Seqs
    /// that do not exist are skipped; an empty result means there is nothing
    /// in that direction.
    async fn read(&self, channel: &Channel, page: Page) -> Result<Vec<Message>>;

    /// The message with this id, if it is in the log.
    async fn get(&self, id: MessageId) -> Result<Option<Message>>;

    /// The message `from_uid` sent with `client_msg_no`, if it is in the log.
    async fn get_by_client_msg_no(
        &self,
        from_uid: &Uid,
        client_msg_no: &ClientMsgNo,
    ) -> Result<Option<Message>>;

    /// The channel's last assigned seq; 0 when it has no messages.
    async fn last_seq(&self, channel: &Channel) -> Result<u64>;
}

/// A command waiting in a user's [`CommandQueue`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedCommand {
    /// The entry's position in this user's queue (from 1). Unrelated to any
    /// channel seq.
    pub cursor: u64,
    /// The command.
    pub message: Message,
}

/// The outcome of pushing a command into the [`CommandQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pushed {
    /// The command's id: the one given, or the first send's for a duplicate.
    pub message_id: MessageId,
    /// `true` when `(from_uid, client_msg_no)` had been pushed before, so
    /// nothing was queued by this push.
    pub duplicate: bool,
}

/// Each user's queue of pending commands (`sync_once` messages).
///
/// # Contract
///
/// - [`push_command`](CommandQueue::push_command) adds the message to every recipient's
///   queue in one atomic step, at the end of each queue. A user's cursors
///   strictly increase from 1 and never consume a channel seq.
/// - Pushes are idempotent on `(from_uid, client_msg_no)` like
///   [`MessageLog::append`].
/// - [`ack_commands`](CommandQueue::ack_commands) and [`remove_commands`](CommandQueue::remove_commands) delete
///   entries for good: they are never returned again. Acknowledging past the
///   last cursor given out acknowledges only what exists.
#[async_trait]
pub trait CommandQueue: Send + Sync + Debug + 'static {
    /// Queues `message` for every uid in `recipients` (duplicates in the
    /// list are queued once).
    async fn push_command(&self, message: &Message, recipients: &[Uid]) -> Result<Pushed>;

    /// Up to `limit` of `uid`'s pending commands with a cursor above `after`,
    /// in cursor order.
    async fn pending_commands(
        &self,
        uid: &Uid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<QueuedCommand>>;

    /// Deletes `uid`'s entries with a cursor up to `up_to` (inclusive);
    /// returns how many were deleted.
    async fn ack_commands(&self, uid: &Uid, up_to: u64) -> Result<usize>;

    /// Deletes `uid`'s entries for these message ids; returns how many were
    /// deleted. Ids not in the queue are ignored.
    async fn remove_commands(&self, uid: &Uid, ids: &[MessageId]) -> Result<usize>;

    /// Whether a command with this id was ever pushed (even if every
    /// recipient has since acknowledged it). Lets callers tell "a command"
    /// from "no such message".
    async fn is_command(&self, id: MessageId) -> Result<bool>;
}

/// One new message for one user's conversation, for
/// [`ConversationStore::update_conversations`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationUpdate {
    /// Whose conversation list.
    pub uid: Uid,
    /// The channel, in its stored form.
    pub channel: Channel,
    /// The new message's id.
    pub message_id: MessageId,
    /// The new message's seq in the channel.
    pub message_seq: u64,
    /// The new message's timestamp, in Unix milliseconds.
    pub timestamp_ms: i64,
    /// Raise this user's unread count by one.
    pub raise_unread: bool,
}

/// An entry of a user's conversation list.
///
/// It names its last message by id and seq; the message itself is read from
/// the [`MessageLog`], so that what a reader sees of it (revocation, for
/// instance) is always current.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// The channel, in its stored form.
    pub channel: Channel,
    /// The last message's id.
    pub last_message_id: MessageId,
    /// The last message's seq.
    pub last_seq: u64,
    /// The last message's timestamp, in Unix milliseconds.
    pub last_timestamp_ms: i64,
    /// Messages not yet read by this user.
    pub unread: u64,
    /// This entry's version in the user's list: every change to any of the
    /// user's conversations takes the user's next version.
    pub version: u64,
}

impl Conversation {
    /// The entry a user's first message in a channel creates, before the
    /// update is applied and a version is given.
    pub(crate) fn empty_for(u: &ConversationUpdate) -> Self {
        Conversation {
            channel: u.channel.clone(),
            last_message_id: u.message_id,
            last_seq: 0,
            last_timestamp_ms: u.timestamp_ms,
            unread: 0,
            version: 0,
        }
    }

    /// Applies an update as the [`ConversationStore`] contract says: a
    /// newer seq replaces the last message, an older one does not; unread
    /// is raised when asked either way. The version is the store's to set.
    pub(crate) fn apply(&mut self, u: &ConversationUpdate) {
        if u.message_seq > self.last_seq {
            self.last_message_id = u.message_id;
            self.last_seq = u.message_seq;
            self.last_timestamp_ms = u.timestamp_ms;
        }
        if u.raise_unread {
            self.unread += 1;
        }
    }
}

/// Each user's conversation list.
///
/// # Contract
///
/// - [`update_conversations`](ConversationStore::update_conversations) applies a batch atomically. An
///   update whose seq is not above the stored last seq (updates that arrive
///   out of order) still raises unread when asked, but does not replace the
///   last message.
/// - Every change to a user's conversation (update, clear) gives it the
///   user's next version, strictly increasing from 1; so
///   [`conversations_after`](ConversationStore::conversations_after) with the highest
///   version a client has seen returns exactly what changed since.
#[async_trait]
pub trait ConversationStore: Send + Sync + Debug + 'static {
    /// Records new last messages.
    async fn update_conversations(&self, updates: &[ConversationUpdate]) -> Result<()>;

    /// Up to `limit` of `uid`'s conversations with a version above
    /// `version`, in ascending version order.
    async fn conversations_after(
        &self,
        uid: &Uid,
        version: u64,
        limit: usize,
    ) -> Result<Vec<Conversation>>;

    /// One conversation of `uid`.
    async fn conversation(&self, uid: &Uid, channel: &Channel) -> Result<Option<Conversation>>;

    /// `uid` has read `channel` up to seq `read_seq` (`u64::MAX`: all of
    /// it). The unread count becomes at most the number of seqs after
    /// `read_seq` (`last_seq − read_seq`), so a message that arrived after
    /// what the client last saw stays unread, as with WuKongIM's seq-based
    /// count. Takes the user's next version. Returns `false` when the user
    /// has no such conversation (nothing changes then).
    async fn clear_unread(&self, uid: &Uid, channel: &Channel, read_seq: u64) -> Result<bool>;
}

/// A revocation to record, for [`RevocationStore::record_revocation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRevocation {
    /// The revoked message.
    pub message_id: MessageId,
    /// Its channel, in stored form.
    pub channel: Channel,
    /// Its seq.
    pub message_seq: u64,
    /// Who revoked it.
    pub revoker: Uid,
    /// When, in Unix milliseconds.
    pub revoked_at_ms: i64,
}

/// A stored revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The revoked message.
    pub message_id: MessageId,
    /// Its channel, in stored form.
    pub channel: Channel,
    /// Its seq.
    pub message_seq: u64,
    /// Who revoked it.
    pub revoker: Uid,
    /// When, in Unix milliseconds.
    pub revoked_at_ms: i64,
    /// The channel's version when this was recorded: per channel, strictly
    /// increasing from 1.
    pub extra_version: u64,
}

/// The outcome of [`RevocationStore::record_revocation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Recorded {
    /// Newly recorded, with the channel's next version.
    New(Revocation),
    /// The message had been revoked before: this is the first record,
    /// unchanged.
    Existing(Revocation),
}

impl Recorded {
    /// The record, new or existing.
    pub fn revocation(&self) -> &Revocation {
        match self {
            Recorded::New(r) | Recorded::Existing(r) => r,
        }
    }
}

/// Revocation records.
///
/// # Contract
///
/// - [`record_revocation`](RevocationStore::record_revocation) stores the record and the channel's
///   next `extra_version` in one atomic step; two records of the same
///   message, even at once, leave exactly one record (the first).
/// - [`lookup_revocations`](RevocationStore::lookup_revocations) answers for many messages in one
///   call, one slot per id asked, in order.
#[async_trait]
pub trait RevocationStore: Send + Sync + Debug + 'static {
    /// Records a revocation.
    async fn record_revocation(&self, revocation: NewRevocation) -> Result<Recorded>;

    /// The revocation of each message in `ids`, `None` where there is none.
    async fn lookup_revocations(&self, ids: &[MessageId]) -> Result<Vec<Option<Revocation>>>;

    /// Up to `limit` of `channel`'s revocations with a version above
    /// `version`, ascending.
    async fn revocations_after(
        &self,
        channel: &Channel,
        version: u64,
        limit: usize,
    ) -> Result<Vec<Revocation>>;
}

/// A history message and the users whose conversations it updates, for
/// [`Store::append_history`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryAppend {
    /// The message, as for [`MessageLog::append`].
    pub message: Message,
    /// Every recipient, the sender included if the sender keeps the
    /// conversation too. Each gets a [`ConversationUpdate`] with the
    /// message's seq; unread is raised for all but the sender when the
    /// message has `red_dot`.
    pub recipients: Vec<Uid>,
}

impl HistoryAppend {
    /// The conversation updates for this message, once it has `seq`.
    pub fn conversation_updates(&self, message_id: MessageId, seq: u64) -> Vec<ConversationUpdate> {
        conversation_updates(&self.message, &self.recipients, message_id, seq)
    }
}

/// The conversation updates for `m` stored as `message_id` at `seq`.
pub(crate) fn conversation_updates(
    m: &Message,
    recipients: &[Uid],
    message_id: MessageId,
    seq: u64,
) -> Vec<ConversationUpdate> {
    {
        recipients
            .iter()
            .map(|uid| ConversationUpdate {
                uid: uid.clone(),
                channel: m.channel.clone(),
                message_id,
                message_seq: seq,
                timestamp_ms: m.timestamp_ms,
                raise_unread: m.flags.red_dot && *uid != m.from_uid,
            })
            .collect()
    }
}

/// Everything the crate stores: the four capabilities together.
///
/// A backend implements the four traits and [`Store::append_history`], the
/// send path's one write.
#[async_trait]
pub trait Store: MessageLog + CommandQueue + ConversationStore + RevocationStore {
    /// Appends history messages and records each in its recipients'
    /// conversations: the send path's one write.
    ///
    /// Contract: as [`MessageLog::append`] for the messages (a duplicate's
    /// conversations are not touched), and as
    /// [`ConversationStore::update_conversations`] for the updates, **in one
    /// atomic step**: no reader, at any moment, sees a message in history
    /// that is not yet in its recipients' conversations, and a crash never
    /// leaves one stored without the other. (A client that reads the newest
    /// message and clears unread up to it would otherwise lose its clear.)
    /// Calling `append` then `update_conversations` does not meet this.
    async fn append_history(&self, batch: Vec<HistoryAppend>) -> Result<Vec<Appended>>;
}
