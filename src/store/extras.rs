//! Message extras in storage: what can change about a message after it was
//! sent besides its revocation — its edited content and its read receipts —
//! versioned per channel together with revocations, so that one
//! `extra_version` orders every change a client syncs.

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::{Channel, MessageId, Uid};

/// An edit to record, for [`ExtraStore::record_edit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEdit {
    /// The edited message.
    pub message_id: MessageId,
    /// Its channel, in stored form.
    pub channel: Channel,
    /// Its seq.
    pub message_seq: u64,
    /// Who edited it.
    pub editor: Uid,
    /// The new content (the message's payload is kept as it was sent).
    pub content: Bytes,
    /// When, in Unix milliseconds.
    pub edited_at_ms: i64,
}

impl NewEdit {
    /// Applies this edit to `extra`, the message's extra (a blank one if it
    /// had none): `false` when it already shows this content, so that
    /// nothing is to be stored (a retry). Another channel's extra is
    /// refused. Every backend that decides in Rust decides here.
    pub(crate) fn apply_to(self, extra: &mut MessageExtra) -> Result<bool> {
        if extra.channel != self.channel {
            return Err(other_channel());
        }
        if extra
            .edit
            .as_ref()
            .is_some_and(|d| d.content == self.content)
        {
            return Ok(false);
        }
        extra.edit = Some(Edit {
            content: self.content,
            editor: self.editor,
            edited_at_ms: self.edited_at_ms,
        });
        Ok(true)
    }
}

/// A message's latest edit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edit {
    /// The content that replaces the payload when shown.
    pub content: Bytes,
    /// Who edited it.
    pub editor: Uid,
    /// When, in Unix milliseconds.
    pub edited_at_ms: i64,
}

/// A message's read receipt: how many of its audience have read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Receipt {
    /// The channel's members when it was sent, the sender excluded.
    pub audience: u64,
    /// How many have read it (each reader counted once).
    pub readers: u64,
}

impl Receipt {
    /// How many of the audience have not read it yet.
    pub fn unread(&self) -> u64 {
        self.audience.saturating_sub(self.readers)
    }
}

/// A message's extra as stored: its edit and its receipt, with the
/// channel's `extra_version` of its last change (shared with
/// [`Revocation`](super::Revocation)s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageExtra {
    /// The message.
    pub message_id: MessageId,
    /// Its channel, in stored form.
    pub channel: Channel,
    /// Its seq.
    pub message_seq: u64,
    /// Its latest edit, if edited.
    pub edit: Option<Edit>,
    /// Its read receipt, if sent with receipts on.
    pub receipt: Option<Receipt>,
    /// The channel's version at its last change; 0 while nothing has
    /// changed (a receipt opened at send and not read yet).
    pub extra_version: u64,
}

impl MessageExtra {
    /// The extra of a message with nothing recorded yet.
    pub(crate) fn blank(message_id: MessageId, channel: &Channel, message_seq: u64) -> Self {
        MessageExtra {
            message_id,
            channel: channel.clone(),
            message_seq,
            edit: None,
            receipt: None,
            extra_version: 0,
        }
    }
}

/// The outcome of [`ExtraStore::record_edit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EditRecorded {
    /// Recorded, with the channel's next version.
    Edited(MessageExtra),
    /// The message already shows this content: nothing changed (a retry).
    Unchanged(MessageExtra),
    /// The message is revoked: nothing recorded.
    Revoked,
}

/// Reads to record, for [`ExtraStore::record_reads`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewReads {
    /// Who read.
    pub reader: Uid,
    /// The channel, in stored form.
    pub channel: Channel,
    /// The messages read: id and seq.
    pub messages: Vec<(MessageId, u64)>,
    /// When, in Unix milliseconds.
    pub read_at_ms: i64,
}

/// Edits and read receipts.
///
/// # Contract
///
/// The [`conformance`](super::conformance) suite checks it.
///
/// - Every change takes the channel's next `extra_version`, from the same
///   counter as [`RevocationStore::record_revocation`](super::RevocationStore::record_revocation):
///   a channel's versions strictly increase across revocations, edits and
///   reads, whatever the concurrency.
/// - [`record_edit`](ExtraStore::record_edit) is atomic with respect to a
///   revocation of the same message: a revoked message is never edited.
///   Two edits at once both record, in some order, each with its own
///   version; the later version holds the content that stays.
/// - [`open_receipt`](ExtraStore::open_receipt) writes one small record
///   (never one per member) and no version; opening twice keeps the first.
/// - [`record_reads`](ExtraStore::record_reads) writes one row per message
///   newly read by the reader and moves each such message's count by one,
///   with a new version: O(messages read), never O(members). A reader who
///   had read a message already, or a message without an open receipt, is
///   skipped.
#[async_trait]
pub trait ExtraStore: Send + Sync + Debug + 'static {
    /// Records an edit (see the contract).
    async fn record_edit(&self, edit: NewEdit) -> Result<EditRecorded>;

    /// Opens the receipt of a message sent with receipts on, with its
    /// audience.
    async fn open_receipt(
        &self,
        message_id: MessageId,
        channel: &Channel,
        message_seq: u64,
        audience: u64,
    ) -> Result<()>;

    /// Records that `reads.reader` read `reads.messages`; returns the
    /// extras of the messages newly read, with their new versions.
    async fn record_reads(&self, reads: NewReads) -> Result<Vec<MessageExtra>>;

    /// When `reader` read each message in `ids` (Unix milliseconds), `None`
    /// where not read; one slot per id, in order.
    async fn reads_by(&self, reader: &Uid, ids: &[MessageId]) -> Result<Vec<Option<i64>>>;

    /// The extra of each message in `ids`, `None` where there is none.
    async fn lookup_extras(&self, ids: &[MessageId]) -> Result<Vec<Option<MessageExtra>>>;

    /// The extras of `channel`'s messages with a seq in
    /// `from_seq..=to_seq`, ascending by seq: what a page of history needs.
    async fn extras_between(
        &self,
        channel: &Channel,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<MessageExtra>>;

    /// Up to `limit` of `channel`'s extras with a version above `version`,
    /// ascending by version.
    async fn extras_after(
        &self,
        channel: &Channel,
        version: u64,
        limit: usize,
    ) -> Result<Vec<MessageExtra>>;
}

/// An edit that names another channel than its message's extra: a
/// caller's mistake, refused (its version would be another channel's).
pub(crate) fn other_channel() -> crate::Error {
    crate::error::ValidationError::OutOfRange("an edit names another channel than its message's")
        .into()
}
