//! The `changed` tree: what changed after a version, so that an
//! incremental conversation sync looks at the channels that changed
//! rather than at every channel of its user
//! ([`ConversationStore::changed_after`](crate::store::ConversationStore::changed_after)).
//!
//! | key | value |
//! |---|---|
//! | `h` ++ version | the log prefix of the channel whose head is at that version |
//! | `p` ++ uid ++ version | the log prefix of the channel in which a clear or a hide moved the user's read position to that version |
//! | `q` ++ uid ++ channel | the version of the user's `p` entry for the channel |
//!
//! One `h` entry a channel, one `p` entry a user and channel: the writer
//! puts a head's entry in before its record and takes the previous one out
//! after, and a clear or a hide puts a position's entry in (and moves the
//! `q` pointer to it) before the position, taking out the one `q` pointed
//! at after. A crash in between leaves an entry too many (a channel looked
//! at for nothing), never one too few. A read position an append moves
//! takes the version of the head it moves with, whose `h` entry finds it.
//!
//! A database of format 4 had no such tree: [`build`] makes it as the
//! database opens.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ops::Bound;

use sled::{Batch, IVec, Tree};

use super::heads::{read_floor, read_tail};
use super::keys::{be_u64, channel_of_log_prefix, decode, head_at_key, moved_at_key, moved_of_key};
use super::storage;
use crate::error::{Error, Result};
use crate::model::Uid;
use crate::store::{Changed, ReadPosition};

/// Indexes `uid`'s read position in a channel (given by its log prefix),
/// moved to `version` by a clear or a hide: its `p` entry, and the `q`
/// pointer to it. Returns the key of the `p` entry it replaces, for the
/// caller to remove once the position is written.
pub(super) fn index_moved(
    changed: &Tree,
    uid: &Uid,
    prefix: &[u8],
    version: u64,
) -> Result<Option<Vec<u8>>> {
    let of = moved_of_key(uid, prefix);
    let replaced = match changed.get(&of).map_err(storage)? {
        Some(v) => Some(moved_at_key(uid, be_u64(&v, "moved position version")?)),
        None => None,
    };
    let mut batch = Batch::default();
    batch.insert(moved_at_key(uid, version), prefix);
    batch.insert(of, &version.to_be_bytes());
    changed.apply_batch(batch).map_err(storage)?;
    Ok(replaced)
}

/// The channels whose head, or whose read position of `uid`, moved at a
/// version in `(version, ceiling]`; `None` if more than `most`.
pub(super) fn changed_after(
    changed: &Tree,
    uid: &Uid,
    version: u64,
    ceiling: u64,
    most: usize,
) -> Result<Option<Changed>> {
    let mut prefixes: Vec<IVec> = Vec::new();
    if version < ceiling {
        let heads = changed.range(head_at_key(version + 1)..=head_at_key(ceiling));
        let lo = moved_at_key(uid, version + 1);
        let moved = changed.range(lo..=moved_at_key(uid, ceiling));
        for entry in heads.values().chain(moved.values()) {
            if prefixes.len() == most {
                return Ok(None);
            }
            prefixes.push(entry.map_err(storage)?);
        }
    }
    prefixes.sort_unstable();
    prefixes.dedup();
    let channels = prefixes
        .iter()
        .map(|p| channel_of_log_prefix(p))
        .collect::<Result<_>>()?;
    Ok(Some(Changed { ceiling, channels }))
}

/// Builds the `changed` tree of a database that had none (format 4): an
/// `h` entry for each channel's head (its last record, or its floor once
/// retention deleted every record), and a `p` entry for each read
/// position a clear or a hide moved past its channel's head. One batch:
/// a crash part way leaves nothing, and the next open builds it again.
pub(super) fn build(log: &Tree, floors: &Tree, positions: &Tree, changed: &Tree) -> Result<()> {
    let mut heads: HashMap<Vec<u8>, u64> = HashMap::new();
    // Each channel's last record: from a channel's first key, to its tail,
    // then past every key of it.
    let mut from = Bound::Unbounded;
    while let Some(entry) = log.range::<Vec<u8>, _>((from, Bound::Unbounded)).next() {
        let (key, _) = entry.map_err(storage)?;
        let split = key
            .len()
            .checked_sub(8)
            .ok_or_else(|| Error::corrupt("record key too short"))?;
        let prefix = key[..split].to_vec();
        let tail =
            read_tail(log, &prefix)?.ok_or_else(|| Error::corrupt("a channel lost its tail"))?;
        let mut last = prefix.clone();
        last.extend_from_slice(&u64::MAX.to_be_bytes());
        from = Bound::Excluded(last);
        heads.insert(prefix, tail.version);
    }
    for entry in floors.iter().keys() {
        let prefix = entry.map_err(storage)?.to_vec();
        if let Entry::Vacant(slot) = heads.entry(prefix) {
            if let Some(floor) = read_floor(floors, slot.key())? {
                slot.insert(floor.version);
            }
        }
    }
    let mut batch = Batch::default();
    for (prefix, version) in &heads {
        batch.insert(head_at_key(*version).to_vec(), prefix.as_slice());
    }
    for entry in positions.scan_prefix(b"p") {
        let (key, value) = entry.map_err(storage)?;
        let (uid, channel) = split_position_key(&key)?;
        let mut prefix = vec![b'm'];
        prefix.extend_from_slice(channel);
        let position: ReadPosition = decode(&value, "read position")?;
        if heads
            .get(&prefix)
            .is_some_and(|&head| position.version > head)
        {
            batch.insert(moved_at_key(&uid, position.version), prefix.as_slice());
            batch.insert(moved_of_key(&uid, &prefix), &position.version.to_be_bytes());
        }
    }
    changed.apply_batch(batch).map_err(storage)
}

/// A read position's key: `p` ++ uid (length-prefixed) ++ channel key.
fn split_position_key(key: &[u8]) -> Result<(Uid, &[u8])> {
    let bad = || Error::corrupt("read position key");
    let len = usize::from(*key.get(1).ok_or_else(bad)?);
    let uid = key.get(2..2 + len).ok_or_else(bad)?;
    let uid = std::str::from_utf8(uid).map_err(|_| bad())?;
    let uid = Uid::new(uid).map_err(|_| bad())?;
    Ok((uid, &key[2 + len..]))
}
