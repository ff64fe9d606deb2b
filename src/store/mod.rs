//! Storage: one object-safe trait per capability, and the backends.
//!
//! - [`MessageLog`]: channel history, with per-channel `message_seq`.
//! - [`CommandQueue`]: each user's pending commands (`sync_once`).
//! - [`ConversationStore`]: each user's conversation list and unread counts,
//!   derived from channel heads and read positions (read diffusion: a send
//!   writes the same few keys whatever the size of its channel).
//! - [`RevocationStore`]: revocation records with per-channel versions.
//! - [`Outbox`]: messages waiting for the host's webhook.
//! - [`EventStore`]: message events (streamed replies) and their states.
//! - [`ExtraStore`]: edits and read receipts, versioned with revocations.
//! - [`RetentionStore`]: deleting a channel's oldest history for good.
//!
//! [`Store`] is all of them together; every type implementing them all is a
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

/// Resolves once an append is durable: see
/// [`MessageLog::append_then_settle`].
pub type Settle = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>;
use crate::model::{Channel, ClientMsgNo, Message, MessageId, Uid};

pub mod conformance;
mod conversations;
mod events;
pub(crate) mod extras;
mod memory;
mod memory_directory;
mod outbox;
#[cfg(feature = "postgres")]
mod pg;
mod retention;
#[cfg(feature = "sled")]
mod sled;

pub use conversations::{Changed, ChannelHead, Conversation, ConversationStore, ReadPosition};
pub(crate) use events::{appended, put_snapshot, step, MessageEvents, Step};
pub use events::{EventStore, OpenStream};
pub use extras::{Edit, EditRecorded, ExtraStore, MessageExtra, NewEdit, NewReads, Receipt};
pub use memory::MemoryStore;
pub(crate) use outbox::{lease_end, renewal_end};
pub use outbox::{Outbox, OutboxBatch, OutboxLease};
#[cfg(feature = "postgres")]
pub use pg::{PgConfig, PgStore};
pub(crate) use retention::{beyond_head, lease_until, Leases};
pub use retention::{DeletedBatch, RetentionStore};
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

/// The error for a resend of `m` (its sender, channel and number are
/// stored) with another payload.
pub(crate) fn conflict(m: &Message) -> crate::Error {
    crate::Error::conflict(&m.from_uid, &m.channel, &m.client_msg_no)
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
    /// `true` when `(from_uid, channel, client_msg_no)` had been stored
    /// before, with the same payload, so nothing was stored by this append.
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
/// - Appends are idempotent on `(from_uid, channel, client_msg_no)`: a
///   message whose triple is already stored (earlier, or earlier in the
///   same batch) with the same payload is not stored again, and its
///   [`Appended`] carries the first message's id and seq with
///   `duplicate: true`. With another payload it is not a resend: the batch
///   fails with [`Error::Conflict`](crate::Error::Conflict) and stores
///   nothing. The same number in another channel is another message.
/// - Each new message moves its channel's [`ChannelHead`] and its sender's
///   [`ReadPosition`] in the same atomic step, with one new store version
///   (see [`ConversationStore`]); a person channel's first message lists it
///   for both parties. Nothing is written per member of the channel.
/// - When `append` returns `Ok`, the backend's durability promise holds for
///   the whole batch (see the backend's docs).
#[async_trait]
pub trait MessageLog: Send + Sync + Debug + 'static {
    /// Appends `messages` (to any channels), returning one [`Appended`] per
    /// message, in order.
    async fn append(&self, messages: Vec<Message>) -> Result<Vec<Appended>>;

    /// [`append`](Self::append) in two steps: returns once the messages
    /// have their seqs and can be read, with a [`Settle`] that resolves
    /// once they are as durable as `append`'s return would have made them.
    /// The hub orders a channel's sends through the first step only, so
    /// that their flushes overlap (one flush then covers many sends to the
    /// channel) while their deliveries keep seq order.
    ///
    /// Provided: `append`, and nothing left to settle. A backend whose
    /// writes become durable later than they become readable (group
    /// commit) overrides it.
    async fn append_then_settle(&self, messages: Vec<Message>) -> Result<(Vec<Appended>, Settle)> {
        let appended = self.append(messages).await?;
        Ok((appended, Box::pin(std::future::ready(Ok(())))))
    }

    /// Reads one page of `channel`'s history, in the page's direction. Seqs
    /// that do not exist are skipped; an empty result means there is nothing
    /// in that direction.
    async fn read(&self, channel: &Channel, page: Page) -> Result<Vec<Message>>;

    /// Makes everything written so far durable, for a shutdown. The default
    /// does nothing (a store whose writes are durable when acknowledged).
    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// [`read`](Self::read), each message in a [`HistoryMessage`] whose
    /// `revoked` is `None`, for the hub to merge revocations into. A backend
    /// may build them directly rather than wrap what `read` returns.
    async fn read_history(&self, channel: &Channel, page: Page) -> Result<Vec<HistoryMessage>> {
        let messages = self.read(channel, page).await?;
        Ok(messages
            .into_iter()
            .map(|message| HistoryMessage {
                message,
                revoked: None,
                events: Vec::new(),
                extra: None,
            })
            .collect())
    }

    /// The message with this id, if it is in the log.
    async fn get(&self, id: MessageId) -> Result<Option<Message>>;

    /// The message `from_uid` sent to `channel` (stored form) with
    /// `client_msg_no`, if it is in the log.
    async fn get_by_client_msg_no(
        &self,
        from_uid: &Uid,
        channel: &Channel,
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
    /// `true` when `(from_uid, channel, client_msg_no)` had been pushed
    /// before, with the same payload, so nothing was queued by this push.
    pub duplicate: bool,
}

/// Each user's queue of pending commands (`sync_once` messages).
///
/// # Contract
///
/// - [`push_command`](CommandQueue::push_command) adds the message to every recipient's
///   queue in one atomic step, at the end of each queue. A user's cursors
///   strictly increase from 1 and never consume a channel seq.
/// - Pushes are idempotent on `(from_uid, channel, client_msg_no)` like
///   [`MessageLog::append`], and refuse another payload under the same
///   triple with [`Error::Conflict`](crate::Error::Conflict) in the same
///   way. The channel of a command to an explicit list of users is the
///   person channel named by the sender's uid.
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

/// A message read from history, with its revocation state merged in.
///
/// It dereferences to the [`Message`]. When the message was revoked and the
/// hub strips revoked payloads (the default), `payload` is empty: revoked
/// content never leaves the crate. A store's
/// [`read_history`](MessageLog::read_history) gives them with `revoked`
/// unset; the hub merges revocations in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryMessage {
    /// The message (payload removed if revoked and stripped).
    pub message: Message,
    /// Its revocation, if revoked (boxed: few messages are, and a page of
    /// history stays small).
    pub revoked: Option<Box<Revocation>>,
    /// The states of its event streams ([`crate::event`]), with their
    /// snapshots folded to date; empty for a message without events. The
    /// hub fills them in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<crate::event::EventState>,
    /// Its edit and read receipt ([`ExtraStore`]), if it has either; the
    /// hub fills it in. An edit of a revoked message is never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Box<MessageExtra>>,
}

impl std::ops::Deref for HistoryMessage {
    type Target = Message;
    fn deref(&self) -> &Message {
        &self.message
    }
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

    /// The revocations of `channel`'s messages with a seq in
    /// `from_seq..=to_seq`, ascending by seq: what a page of history needs,
    /// in one look-up.
    async fn revocations_between(
        &self,
        channel: &Channel,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<Revocation>>;

    /// Up to `limit` of `channel`'s revocations with a version above
    /// `version`, ascending.
    async fn revocations_after(
        &self,
        channel: &Channel,
        version: u64,
        limit: usize,
    ) -> Result<Vec<Revocation>>;
}

/// Everything the crate stores: the capabilities together. Every type that
/// implements them all is a `Store`.
pub trait Store:
    MessageLog
    + CommandQueue
    + ConversationStore
    + RevocationStore
    + Outbox
    + EventStore
    + ExtraStore
    + RetentionStore
{
}

impl<T> Store for T where
    T: MessageLog
        + CommandQueue
        + ConversationStore
        + RevocationStore
        + Outbox
        + EventStore
        + ExtraStore
        + RetentionStore
{
}
