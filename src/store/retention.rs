//! Retention: deleting a channel's oldest history for good.
//!
//! A channel's history can be cut from its start: everything up to a seq
//! is deleted (the message records, their revocations, their message
//! events, their outbox entries), and the channel's **floor** moves to the
//! last seq deleted. What is above the floor is untouched: the log stays
//! contiguous from `floor + 1` to the head, so reads from seq 1 start at
//! the first message kept, and counts above the floor are differences of
//! seqs.
//!
//! What a deletion keeps:
//!
//! - **The head.** Seqs are never reused: a channel whose every message
//!   was deleted keeps its head (last seq, its red-dot count, the last
//!   message's id and time), so its next message takes `head + 1` and
//!   every member's conversation entry stays (with no last message to
//!   show: it was deleted).
//! - **The red-dot count at the floor**, so that unread counts only what
//!   is left: a reader whose position is below the floor has read, in
//!   effect, up to it ([`Conversation::derive`](super::Conversation::derive)
//!   takes the higher of the two counts).
//! - **A tombstone per deleted young message's resend key** (sender,
//!   channel, `client_msg_no`): a message sent at or after the deletion's
//!   `tombstone_since_ms` (the hub passes the deletion time less its
//!   resend protection period) leaves one, so a resend of it is answered
//!   as a duplicate with the original id and seq, and stored nothing,
//!   until [`purge_tombstones`](RetentionStore::purge_tombstones) removes
//!   the tombstone (the hub does once the protection period has passed
//!   since the deletion). A tombstone has no payload to compare, so a
//!   resend under a deleted message's key is a duplicate whatever its
//!   payload. A message sent before `tombstone_since_ms` leaves none: no
//!   client is expected to resend it any more, and a resend of it after
//!   the deletion is stored again as a new message, with a new id and
//!   the next seq. Retention mostly deletes old history, so most
//!   deletions write no tombstone at all.
//!
//! So, through the hub, a message's resend is recognised for at least the
//! resend protection period after it was sent, whether or not it was
//! deleted in between: a message deleted younger than the period keeps
//! its tombstone for the period after the deletion.
//!
//! Deletes run in batches that each take a short, atomic step: a send to
//! the channel waits for one batch at most, never for a whole deletion.
//!
//! A deletion moves no conversation version: an unread count that drops
//! because unread messages were deleted is exact whenever a conversation
//! is read, and reaches an incremental conversation sync with the
//! conversation's next change (a full sync has it at once).

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::Channel;

/// What one [`RetentionStore::delete_through`] batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeletedBatch {
    /// Messages deleted by this batch.
    pub deleted: u64,
    /// The channel's floor after it: the highest seq deleted so far, 0
    /// when nothing ever was.
    pub floor: u64,
    /// No message with a seq up to the one asked is left.
    pub done: bool,
}

/// Deletes a channel's oldest history; see the module docs.
///
/// # Contract
///
/// - [`delete_through`](RetentionStore::delete_through) deletes up to
///   `max_batch` of the channel's lowest messages with a seq up to
///   `through_seq`, in one atomic step, with their revocations, message
///   events and outbox entries, leaving a resend tombstone for each whose
///   timestamp is at or after `tombstone_since_ms` (and none for older
///   ones); the floor moves to the highest seq deleted. A `through_seq`
///   above the
///   channel's last seq is refused with
///   [`Error::Validation`](crate::Error::Validation), changing nothing.
///   Appends racing it are never touched: they take seqs above the head,
///   and deletes never go past it.
/// - The head (last seq, red-dot count, version, last message's id and
///   time) stays when every message is deleted; the next append takes
///   the next seq.
/// - Reads skip what was deleted: a forward page from seq 1 starts at
///   `floor + 1`, a backward page ends there.
/// - A resend of a deleted message (same sender, channel and number) that
///   left a tombstone is a duplicate with the first id and seq until its
///   tombstone is purged; a resend of one that left none (sent before
///   `tombstone_since_ms`) is a new message, with a new seq.
#[async_trait]
pub trait RetentionStore: Send + Sync + Debug + 'static {
    /// Deletes one batch (see the contract); `now_ms` is the tombstones'
    /// deletion time, and only messages with a `timestamp_ms` at or after
    /// `tombstone_since_ms` leave one (`i64::MIN`: every message does).
    async fn delete_through(
        &self,
        channel: &Channel,
        through_seq: u64,
        max_batch: usize,
        now_ms: i64,
        tombstone_since_ms: i64,
    ) -> Result<DeletedBatch>;

    /// The channel's floor: the highest seq deleted, 0 when nothing was.
    /// The first seq history can still hold is `floor + 1`.
    async fn history_floor(&self, channel: &Channel) -> Result<u64>;

    /// Up to `limit` channels with history, in the backend's own order,
    /// after `after` (`None`: from the first): a retention pass walks them
    /// page by page. Every channel with a message left is listed once; a
    /// channel whose every message was deleted may be left out (there is
    /// nothing in it to delete).
    async fn channels_after(&self, after: Option<&Channel>, limit: usize) -> Result<Vec<Channel>>;

    /// Removes up to about `limit` resend tombstones of messages deleted
    /// before `deleted_before_ms` (whole deletion batches at a time);
    /// returns how many it removed. A resend under a purged tombstone's key
    /// is a new message again.
    async fn purge_tombstones(&self, deleted_before_ms: i64, limit: usize) -> Result<u64>;

    /// Takes, or renews, the lease `name` for `holder` until `now_ms +
    /// ttl`, if it is free, has run out, or is `holder`'s already; returns
    /// whether `holder` holds it. Every process sharing the store sees the
    /// same leases, so a job run under one runs on one process at a time.
    async fn try_lease(&self, name: &str, holder: &str, now_ms: i64, ttl: Duration)
        -> Result<bool>;
}

/// The end of a lease of `ttl` from `now_ms`.
pub(crate) fn lease_until(now_ms: i64, ttl: Duration) -> i64 {
    now_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

/// The error for a `through_seq` above the channel's last seq.
pub(crate) fn beyond_head(through_seq: u64, last_seq: u64) -> crate::Error {
    crate::error::ValidationError::SeqBeyondHead {
        through_seq,
        last_seq,
    }
    .into()
}

/// A lease held in memory (the in-process backends': one process has the
/// store).
#[derive(Debug, Default)]
pub(crate) struct Leases(std::sync::Mutex<std::collections::HashMap<String, (String, i64)>>);

impl Leases {
    pub(crate) fn try_take(&self, name: &str, holder: &str, now_ms: i64, ttl: Duration) -> bool {
        let mut leases = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let free = leases
            .get(name)
            .is_none_or(|(held_by, until)| held_by == holder || *until <= now_ms);
        if free {
            let until = lease_until(now_ms, ttl);
            leases.insert(name.to_owned(), (holder.to_owned(), until));
        }
        free
    }
}
