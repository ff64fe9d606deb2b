//! Hiding a conversation (WuKongIM's conversation delete), on sled.
//!
//! The mark (`h` ++ uid ++ channel: the seq hidden up to) is in the
//! `positions` tree. A hide that raises it is a change of the user's
//! conversation, which an incremental sync must return (the user's other
//! devices learn of the delete that way): the user's read position takes
//! the next version, its seq unchanged, written with the mark in one batch
//! in the writer's turn, like a clear.
//!
//! The position is indexed in the `changed` tree like a clear's (see
//! `changed.rs`).
//!
//! The version comes from the writer's counter. A version is used only
//! once it is inside the reservation on disk; when the counter reaches the
//! end of it, the hide reserves up to its own version (and flushes), and
//! the writer's next write, whose reservation in memory is then behind the
//! one on disk, reserves a block past it.

use std::sync::atomic::Ordering;

use sled::Batch;

use super::keys::{be_u64, decode, encode, hidden_key, log_prefix, position_key, VERSION_KEY};
use super::storage;
use super::writer::Writer;
use crate::error::{Error, Result};
use crate::model::{Channel, Uid};
use crate::store::ReadPosition;

/// The seq a stored mark hides up to.
pub(super) fn hidden_seq(value: &[u8]) -> Result<u64> {
    let seq =
        <[u8; 8]>::try_from(value).map_err(|_| Error::corrupt("hidden conversation: not a seq"))?;
    Ok(u64::from_be_bytes(seq))
}

/// Hides `uid`'s conversation in `channel` up to `up_to`; see
/// [`ConversationStore::hide_conversation`](crate::store::ConversationStore::hide_conversation).
/// Returns the ticket that [`Writer::settle`] takes.
pub(super) fn hide(writer: &Writer, uid: &Uid, channel: &Channel, up_to: u64) -> Result<u64> {
    let _turn = writer.lock();
    let prefix = log_prefix(channel);
    let mark = hidden_key(uid, &prefix);
    if let Some(v) = writer.positions.get(&mark).map_err(storage)? {
        if hidden_seq(&v)? >= up_to {
            // Hidden that far already: nothing changes.
            return Ok(writer.flusher.committed());
        }
    }
    let mut batch = Batch::default();
    batch.insert(mark, &up_to.to_be_bytes());
    let head = writer.head(&prefix)?;
    let mut version = None;
    let mut replaced = None;
    if let Some(head) = head {
        let next = next_version(writer)?;
        let at = position_key(uid, &prefix);
        let position = match writer.positions.get(&at).map_err(storage)? {
            // The head's sender has read up to it, whatever is stored.
            _ if head.from == *uid => head.senders_position(),
            Some(v) => decode::<ReadPosition>(&v, "read position")?,
            None => ReadPosition {
                read_seq: 0,
                red_dots: 0,
                version: 0,
            },
        };
        let position = ReadPosition {
            version: next,
            ..position
        };
        batch.insert(at, encode(&position)?);
        version = Some(next);
        replaced = super::changed::index_moved(&writer.changed, uid, &prefix, next)?;
    }
    writer.positions.apply_batch(batch).map_err(storage)?;
    if let Some(replaced) = replaced {
        writer.changed.remove(replaced).map_err(storage)?;
    }
    if let Some(version) = version {
        writer.stable.store(version, Ordering::Release);
    }
    Ok(writer.flusher.commit())
}

/// The next version of the writer's counter, reserved on disk. Called in
/// the writer's turn; the caller stores it as the stable version once its
/// change is written.
fn next_version(writer: &Writer) -> Result<u64> {
    let next = writer.stable.load(Ordering::Acquire) + 1;
    let reserved = match writer.history.get(VERSION_KEY).map_err(storage)? {
        Some(v) => be_u64(&v, "version reservation")?,
        None => 0,
    };
    if next > reserved {
        writer
            .history
            .insert(VERSION_KEY, &next.to_be_bytes())
            .map_err(storage)?;
        writer.db.flush().map_err(storage)?;
    }
    Ok(next)
}
