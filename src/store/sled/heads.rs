//! Channel heads in memory: each channel's last record, shared by the
//! writer (which needs the last seq, red-dot count and sender to append)
//! and by readers (conversations, the last message of a conversation), so
//! that neither reads the log's tail back for a channel it has seen.
//!
//! Bounded: memory does not grow with the number of channels. When a shard
//! is full it starts over; a miss reads the log's tail (one reverse scan)
//! and fills the entry. An entry only ever moves forward: a reader that
//! read an older tail than what the writer has put since cannot put it
//! back (seqs are compared, and a shard that started over in between
//! refuses fills begun before).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use sled::{IVec, Tree};

use super::record::RecordRef;
use super::storage;
use crate::error::Result;
use crate::model::{Message, MessageId, Uid};
use crate::store::{ChannelHead, ReadPosition};

/// A channel's last record.
#[derive(Clone, Debug)]
pub(super) struct Head {
    pub(super) seq: u64,
    pub(super) message_id: MessageId,
    pub(super) timestamp_ms: i64,
    /// Red-dot messages up to it.
    pub(super) red_dots: u64,
    pub(super) version: u64,
    /// Its sender, whose read position is implicitly at it.
    pub(super) from: Uid,
    /// The record as stored (a reference-counted buffer).
    pub(super) record: IVec,
}

impl Head {
    /// The head whose record `record` is, at `seq`.
    pub(super) fn of(seq: u64, record: IVec) -> Result<Self> {
        let r = RecordRef::parse(&record)?;
        let (message_id, timestamp_ms) = (r.message_id, r.timestamp_ms);
        let (red_dots, version, from) = (r.red_dots, r.version, r.sender()?);
        Ok(Head {
            seq,
            message_id,
            timestamp_ms,
            red_dots,
            version,
            from,
            record,
        })
    }

    /// The head that `m`, just written at `seq` as `record`, makes.
    pub(super) fn new(m: &Message, seq: u64, red_dots: u64, version: u64, record: IVec) -> Self {
        Head {
            seq,
            message_id: m.message_id,
            timestamp_ms: m.timestamp_ms,
            red_dots,
            version,
            from: m.from_uid.clone(),
            record,
        }
    }

    /// What conversations derive from.
    pub(super) fn channel_head(&self) -> ChannelHead {
        ChannelHead {
            last_seq: self.seq,
            last_message_id: self.message_id,
            last_timestamp_ms: self.timestamp_ms,
            red_dots: self.red_dots,
            version: self.version,
        }
    }

    /// The read position its sender has without it being written.
    pub(super) fn senders_position(&self) -> ReadPosition {
        ReadPosition {
            read_seq: self.seq,
            red_dots: self.red_dots,
            version: self.version,
        }
    }
}

/// Shards, so that readers on other channels do not wait for one another.
const SHARDS: usize = 16;
/// The most heads one shard keeps (about 16,000 channels in all).
const PER_SHARD: usize = 1_024;

#[derive(Default)]
struct Shard {
    heads: HashMap<Vec<u8>, Head>,
    /// How many times this shard started over.
    epoch: u64,
}

/// The heads cache.
pub(super) struct Heads {
    shards: Vec<Mutex<Shard>>,
    /// Picks a channel's shard.
    hasher: RandomState,
}

impl Default for Heads {
    fn default() -> Self {
        Heads {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl std::fmt::Debug for Heads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heads").finish_non_exhaustive()
    }
}

impl Heads {
    fn shard(&self, prefix: &[u8]) -> std::sync::MutexGuard<'_, Shard> {
        let i = self.hasher.hash_one(prefix) as usize % SHARDS;
        // Nothing panics while a shard is held: its map stays consistent.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The channel's head (given as its log prefix), from memory or from
    /// the log's tail; `None` for a channel with no messages.
    pub(super) fn get(&self, log: &Tree, prefix: &[u8]) -> Result<Option<Head>> {
        let epoch = {
            let shard = self.shard(prefix);
            if let Some(h) = shard.heads.get(prefix) {
                return Ok(Some(h.clone()));
            }
            shard.epoch
        };
        let Some(head) = read_tail(log, prefix)? else {
            return Ok(None);
        };
        let mut shard = self.shard(prefix);
        if shard.epoch == epoch {
            put(&mut shard, prefix.to_vec(), head.clone());
        }
        Ok(Some(head))
    }

    /// Records a head that was just written.
    pub(super) fn put(&self, prefix: Vec<u8>, head: Head) {
        put(&mut self.shard(&prefix), prefix, head);
    }
}

/// Keeps `head` unless the shard already has a later one.
fn put(shard: &mut Shard, prefix: Vec<u8>, head: Head) {
    if let Some(known) = shard.heads.get_mut(&prefix) {
        if known.seq < head.seq {
            *known = head;
        }
        return;
    }
    if shard.heads.len() >= PER_SHARD {
        shard.heads.clear();
        shard.epoch += 1;
    }
    shard.heads.insert(prefix, head);
}

/// The last record of a channel (given as its key prefix), read from the
/// log.
pub(super) fn read_tail(log: &Tree, prefix: &[u8]) -> Result<Option<Head>> {
    let mut hi = prefix.to_vec();
    hi.extend_from_slice(&u64::MAX.to_be_bytes());
    match log.range(prefix..=hi.as_slice()).next_back() {
        None => Ok(None),
        Some(kv) => {
            let (k, v) = kv.map_err(storage)?;
            let seq = super::keys::key_suffix_u64(&k, "message key")?;
            Ok(Some(Head::of(seq, v)?))
        }
    }
}
