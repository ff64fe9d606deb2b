//! Channel heads in memory: each channel's last record, shared by the
//! writer (which needs the last seq, red-dot count and sender to append)
//! and by readers (conversations, the last message of a conversation), so
//! that neither reads the log's tail back for a channel it has seen.
//!
//! Bounded: memory does not grow with the number of channels. When a shard
//! is full, a new entry takes the place of one already there (whichever
//! the map gives first: in effect, random replacement), so that a user
//! with more channels than the cache holds still finds some of them in it
//! (emptying the whole shard instead found none, once a sync went round
//! more channels than the cache held). A miss reads the log's tail (one
//! reverse scan) and fills the entry. An entry only ever moves forward: a
//! reader that read an older tail than what the writer has put since
//! cannot put it back (seqs are compared, and a shard that let an entry go
//! in between refuses fills begun before).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use sled::{IVec, Tree};

use super::record::RecordRef;
use super::storage;
use crate::error::Result;
use crate::model::{Message, MessageId, Uid};
use crate::store::{ChannelHead, ReadPosition};

/// A channel's last record (or, once retention deleted every record, what
/// the floor record keeps of it), with the channel's floor.
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
    /// The record as stored (a reference-counted buffer); empty once
    /// retention deleted it (`seq <= floor`).
    pub(super) record: IVec,
    /// The highest seq retention deleted (0: none).
    pub(super) floor: u64,
    /// Red-dot messages up to the floor.
    pub(super) floor_red_dots: u64,
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
            floor: 0,
            floor_red_dots: 0,
        })
    }

    /// The same head over `floor`.
    pub(super) fn over(self, floor: Option<&Floor>) -> Self {
        match floor {
            Some(f) => Head {
                floor: f.seq,
                floor_red_dots: f.red_dots,
                ..self
            },
            None => self,
        }
    }

    /// Whether its record was deleted (it is only a seq now).
    pub(super) fn deleted(&self) -> bool {
        self.seq <= self.floor
    }

    /// The head that `m`, just written at `seq` as `record`, makes.
    /// `previous` is the head before it, whose floor it keeps.
    pub(super) fn new(
        m: &Message,
        (seq, red_dots, version): (u64, u64, u64),
        record: IVec,
        previous: Option<&Head>,
    ) -> Self {
        Head {
            seq,
            message_id: m.message_id,
            timestamp_ms: m.timestamp_ms,
            red_dots,
            version,
            from: m.from_uid.clone(),
            record,
            floor: previous.map_or(0, |h| h.floor),
            floor_red_dots: previous.map_or(0, |h| h.floor_red_dots),
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
            floor_red_dots: self.floor_red_dots,
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
    /// How many times this shard let an entry go (or its floor moved).
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
    /// the log's tail and the channel's floor record; `None` for a channel
    /// with no messages.
    pub(super) fn get(&self, log: &Tree, floors: &Tree, prefix: &[u8]) -> Result<Option<Head>> {
        let epoch = {
            let shard = self.shard(prefix);
            if let Some(h) = shard.heads.get(prefix) {
                return Ok(Some(h.clone()));
            }
            shard.epoch
        };
        let floor = read_floor(floors, prefix)?;
        let head = match (read_tail(log, prefix)?, floor) {
            (Some(tail), floor) => tail.over(floor.as_ref()),
            (None, Some(floor)) => floor.head(),
            (None, None) => return Ok(None),
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

    /// Moves the cached head's floor (retention deleted up to it), and
    /// refuses the fills of readers that read the floor before it moved.
    pub(super) fn set_floor(&self, prefix: &[u8], floor: &Floor) {
        let mut shard = self.shard(prefix);
        shard.epoch += 1;
        if let Some(head) = shard.heads.get_mut(prefix) {
            head.floor = head.floor.max(floor.seq);
            head.floor_red_dots = head.floor_red_dots.max(floor.red_dots);
        }
    }
}

/// A channel's floor record (the `floors` tree): the last message retention
/// deleted, as much of it as a head needs, so that a channel whose every
/// record was deleted keeps its head.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Floor {
    /// Its seq: the highest deleted.
    pub(super) seq: u64,
    /// Red-dot messages up to it.
    pub(super) red_dots: u64,
    pub(super) message_id: MessageId,
    pub(super) timestamp_ms: i64,
    pub(super) version: u64,
    pub(super) from: Uid,
}

impl Floor {
    /// The head of a channel whose records are all deleted.
    fn head(self) -> Head {
        Head {
            seq: self.seq,
            message_id: self.message_id,
            timestamp_ms: self.timestamp_ms,
            red_dots: self.red_dots,
            version: self.version,
            from: self.from,
            record: IVec::default(),
            floor: self.seq,
            floor_red_dots: self.red_dots,
        }
    }
}

/// The channel's floor record, if retention ever deleted from it.
pub(super) fn read_floor(floors: &Tree, prefix: &[u8]) -> Result<Option<Floor>> {
    match floors.get(prefix).map_err(storage)? {
        Some(v) => Ok(Some(super::keys::decode(&v, "history floor")?)),
        None => Ok(None),
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
        if let Some(out) = shard.heads.keys().next().cloned() {
            shard.heads.remove(&out);
        }
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
