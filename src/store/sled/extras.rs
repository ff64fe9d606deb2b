//! Edits and read receipts on sled.
//!
//! A message's extra is one record in `extras` (by message id), indexed by
//! its channel and seq in `extras_by_seq` (written once, when the record is
//! created) and by its channel and current version in `extras_by_version`
//! (moved when the version moves: the old key is removed, so that a
//! message appears once in a sync). A reader's read of a message is a key
//! in `reads` (message id ++ uid), whose value is when.
//!
//! Versions come from the channel's revocation counter (`counters`, tag
//! `R`), and every write runs on the store's write thread, where
//! revocations and retention write too: edits, reads and revocations of a
//! channel take versions one after another, and an edit reads
//! `revocations` in its turn, so a revoked message is never edited. The
//! writes are plain inserts in a crash-safe order (index entries before
//! the record they name, which is the commit point; readers pass over an
//! entry whose record is not there or at another version), not sled
//! transactions, which cost three times a send. A receipt is opened
//! with its audience as a number: nothing is written per member.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use sled::Tree;

use super::keys::{
    be_u64, channel_key, counter_key, decode, encode, key, key_suffix_u64, seq_key, uid_key,
};
use super::{storage, SledStore, TAG_REVOCATION_VERSION};
use crate::error::Result;
use crate::model::{Channel, MessageId, Uid};
use crate::store::{
    check_limit, EditRecorded, ExtraStore, MessageExtra, NewEdit, NewReads, Receipt,
};

/// The trees of extras and reads.
#[derive(Debug, Clone)]
pub(super) struct ExtraTrees {
    /// Message id → [`MessageExtra`].
    extras: Tree,
    /// Channel ++ version → message id: each extra at its current version.
    by_version: Tree,
    /// Channel ++ seq → message id.
    by_seq: Tree,
    /// Message id ++ uid → when the user read it (Unix ms).
    reads: Tree,
    /// The channels (their keys) that have extras, in memory (rebuilt at
    /// open): a page of history of any other channel looks up nothing.
    channels: Arc<RwLock<HashSet<Vec<u8>>>>,
}

impl ExtraTrees {
    /// Opens (or creates, empty) the trees.
    pub(super) fn open(db: &sled::Db) -> Result<Self> {
        let tree = |name: &str| db.open_tree(name).map_err(storage);
        let by_seq = tree("extras_by_seq")?;
        let mut channels = HashSet::new();
        for kv in by_seq.iter().keys() {
            let k = kv.map_err(storage)?;
            // channel ++ seq (8 bytes)
            let chan = k.get(..k.len().saturating_sub(8)).unwrap_or_default();
            if !channels.contains(chan) {
                channels.insert(chan.to_vec());
            }
        }
        Ok(ExtraTrees {
            extras: tree("extras")?,
            by_version: tree("extras_by_version")?,
            by_seq,
            reads: tree("reads")?,
            channels: Arc::new(RwLock::new(channels)),
        })
    }

    /// Whether the channel with key `chan` may have extras.
    fn has_channel(&self, chan: &[u8]) -> bool {
        let channels = self.channels.read();
        channels.unwrap_or_else(|e| e.into_inner()).contains(chan)
    }
}

impl ExtraTrees {
    /// Removes the extras and reads of the messages `ids` of `channel`
    /// (retention; on the write thread, in the deleting batch's turn).
    pub(super) fn delete(&self, channel: &Channel, ids: &[u64]) -> Result<()> {
        let chan = key(|k| channel_key(k, channel));
        let mut extras = sled::Batch::default();
        let mut by_version = sled::Batch::default();
        let mut by_seq = sled::Batch::default();
        let mut reads = sled::Batch::default();
        for id in ids {
            let Some(v) = self.extras.get(id.to_be_bytes()).map_err(storage)? else {
                continue;
            };
            let x: MessageExtra = decode(&v, "message extra")?;
            if x.extra_version > 0 {
                by_version.remove(seq_key(&chan, x.extra_version));
            }
            by_seq.remove(seq_key(&chan, x.message_seq));
            for kv in self.reads.scan_prefix(id.to_be_bytes()) {
                reads.remove(kv.map_err(storage)?.0);
            }
            extras.remove(&id.to_be_bytes());
        }
        // Indexes first, the record last: an index never names a record
        // that is gone.
        self.by_version.apply_batch(by_version).map_err(storage)?;
        self.by_seq.apply_batch(by_seq).map_err(storage)?;
        self.reads.apply_batch(reads).map_err(storage)?;
        self.extras.apply_batch(extras).map_err(storage)
    }
}

fn read_key(id: MessageId, reader: &Uid) -> Vec<u8> {
    key(|k| {
        k.extend_from_slice(&id.0.to_be_bytes());
        uid_key(k, reader);
    })
}

impl ExtraTrees {
    /// A message's extra as stored.
    fn stored(&self, id: MessageId) -> Result<Option<MessageExtra>> {
        match self.extras.get(id.0.to_be_bytes()).map_err(storage)? {
            Some(v) => decode(&v, "message extra").map(Some),
            None => Ok(None),
        }
    }

    /// Writes `extra` at `version` (its channel's key `chan`): the new
    /// version's index entry, then the record (the commit point), then the
    /// old entry's removal. A reader meeting an entry whose record is at
    /// another version, or not there yet, passes over it.
    fn put(&self, chan: &[u8], mut extra: MessageExtra, version: u64) -> Result<MessageExtra> {
        let id = extra.message_id.0.to_be_bytes();
        let old = extra.extra_version;
        if version > 0 {
            self.by_version
                .insert(seq_key(chan, version), &id)
                .map_err(storage)?;
        }
        extra.extra_version = version;
        self.extras.insert(id, encode(&extra)?).map_err(storage)?;
        if old > 0 && old != version {
            self.by_version
                .remove(seq_key(chan, old))
                .map_err(storage)?;
        }
        Ok(extra)
    }

    /// The record of a message with no extra yet: its seq index entry
    /// first, so that a record is never without it.
    fn create(
        &self,
        chan: &[u8],
        id: MessageId,
        channel: &Channel,
        seq: u64,
    ) -> Result<MessageExtra> {
        if !self.has_channel(chan) {
            // Before the entry: a page read never misses it.
            let mut channels = self.channels.write().unwrap_or_else(|e| e.into_inner());
            channels.insert(chan.to_vec());
        }
        self.by_seq
            .insert(seq_key(chan, seq), &id.0.to_be_bytes())
            .map_err(storage)?;
        Ok(MessageExtra::blank(id, channel, seq))
    }
}

fn version_counter(chan: &[u8]) -> Vec<u8> {
    counter_key(TAG_REVOCATION_VERSION, |k| k.extend_from_slice(chan))
}

/// The channel's next extra version, written before anything that uses
/// it: a crash in between leaves a gap, never a version given twice.
fn next_version(counters: &Tree, chan: &[u8]) -> Result<u64> {
    let key = version_counter(chan);
    let current = match counters.get(&key).map_err(storage)? {
        Some(v) => be_u64(&v, "counter")?,
        None => 0,
    };
    let next = current + 1;
    counters.insert(key, &next.to_be_bytes()).map_err(storage)?;
    Ok(next)
}

// Every write below runs on the store's write thread, where revocations
// and retention write too: they take turns, so each sees the others'
// writes whole, and plain inserts in a crash-safe order replace sled
// transactions (which cost three times a send).
#[async_trait]
impl ExtraStore for SledStore {
    async fn record_edit(&self, e: NewEdit) -> Result<EditRecorded> {
        let (revocations, counters, x) = (
            self.revocations.clone(),
            self.counters.clone(),
            self.extra_trees.clone(),
        );
        let record = move || {
            if revocations
                .get(e.message_id.0.to_be_bytes())
                .map_err(storage)?
                .is_some()
            {
                return Ok(EditRecorded::Revoked);
            }
            let chan = key(|k| channel_key(k, &e.channel));
            let mut extra = match x.stored(e.message_id)? {
                Some(found) => found,
                None => x.create(&chan, e.message_id, &e.channel, e.message_seq)?,
            };
            if !e.apply_to(&mut extra)? {
                return Ok(EditRecorded::Unchanged(extra));
            }
            let version = next_version(&counters, &chan)?;
            x.put(&chan, extra, version).map(EditRecorded::Edited)
        };
        let recorded = self.thread.run(record).await?;
        if let EditRecorded::Edited(_) = &recorded {
            self.settle().await?;
        }
        Ok(recorded)
    }

    async fn open_receipt(
        &self,
        message_id: MessageId,
        channel: &Channel,
        message_seq: u64,
        audience: u64,
    ) -> Result<()> {
        let x = self.extra_trees.clone();
        let channel = channel.clone();
        let open = move || {
            let chan = key(|k| channel_key(k, &channel));
            let mut extra = match x.stored(message_id)? {
                Some(found) if found.receipt.is_some() => return Ok(false),
                Some(found) => found,
                None => x.create(&chan, message_id, &channel, message_seq)?,
            };
            extra.receipt = Some(Receipt {
                audience,
                readers: 0,
            });
            // No new version: nothing a client syncs has changed.
            let version = extra.extra_version;
            x.put(&chan, extra, version)?;
            Ok(true)
        };
        if self.thread.run(open).await? {
            self.settle().await?;
        }
        Ok(())
    }

    async fn record_reads(&self, reads: NewReads) -> Result<Vec<MessageExtra>> {
        if reads.messages.is_empty() {
            return Ok(Vec::new());
        }
        let (counters, x) = (self.counters.clone(), self.extra_trees.clone());
        let record = move || {
            let chan = key(|k| channel_key(k, &reads.channel));
            let when = encode(&reads.read_at_ms)?;
            let mut changed = Vec::new();
            for (id, _) in &reads.messages {
                let Some(mut extra) = x.stored(*id)? else {
                    continue;
                };
                if extra.channel != reads.channel {
                    continue;
                }
                let Some(receipt) = extra.receipt.as_mut() else {
                    continue;
                };
                let at = read_key(*id, &reads.reader);
                if x.reads.get(&at).map_err(storage)?.is_some() {
                    continue;
                }
                receipt.readers += 1;
                // The read first: a crash before the count leaves the
                // reader counted one short, never twice.
                x.reads.insert(at, when.clone()).map_err(storage)?;
                let version = next_version(&counters, &chan)?;
                changed.push(x.put(&chan, extra, version)?);
            }
            Ok(changed)
        };
        let changed = self.thread.run(record).await?;
        if !changed.is_empty() {
            self.settle().await?;
        }
        Ok(changed)
    }

    async fn reads_by(&self, reader: &Uid, ids: &[MessageId]) -> Result<Vec<Option<i64>>> {
        ids.iter()
            .map(|id| {
                match self
                    .extra_trees
                    .reads
                    .get(read_key(*id, reader))
                    .map_err(storage)?
                {
                    Some(v) => decode(&v, "read").map(Some),
                    None => Ok(None),
                }
            })
            .collect()
    }

    async fn lookup_extras(&self, ids: &[MessageId]) -> Result<Vec<Option<MessageExtra>>> {
        ids.iter().map(|id| self.extra(id.0)).collect()
    }

    async fn extras_between(
        &self,
        channel: &Channel,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<MessageExtra>> {
        let chan = key(|k| channel_key(k, channel));
        if from_seq > to_seq || !self.extra_trees.has_channel(&chan) {
            return Ok(Vec::new());
        }
        self.extra_trees
            .by_seq
            .range(seq_key(&chan, from_seq)..=seq_key(&chan, to_seq))
            .map(|kv| {
                let (_, id) = kv.map_err(storage)?;
                let id = be_u64(&id, "extra index")?;
                self.extra(id)
            })
            // An entry whose record is not written yet (or was left by a
            // crash before it): nothing to show.
            .filter_map(|x| x.transpose())
            .collect()
    }

    async fn extras_after(
        &self,
        channel: &Channel,
        version: u64,
        limit: usize,
    ) -> Result<Vec<MessageExtra>> {
        check_limit(limit)?;
        let chan = key(|k| channel_key(k, channel));
        let Some(first) = version.checked_add(1) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let index = self
            .extra_trees
            .by_version
            .range(seq_key(&chan, first)..=seq_key(&chan, u64::MAX));
        for kv in index {
            let (k, id) = kv.map_err(storage)?;
            let id = be_u64(&id, "extra index")?;
            let at = key_suffix_u64(&k, "extra index")?;
            // An entry whose record has moved on since this scan began
            // (a change in between): the record shows at its new version,
            // further on.
            match self.extra(id)? {
                Some(x) if x.extra_version == at => out.push(x),
                Some(_) | None => continue,
            }
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }
}

impl SledStore {
    /// The extra of message `id`, if any.
    fn extra(&self, id: u64) -> Result<Option<MessageExtra>> {
        match self
            .extra_trees
            .extras
            .get(id.to_be_bytes())
            .map_err(storage)?
        {
            Some(v) => decode(&v, "message extra").map(Some),
            None => Ok(None),
        }
    }
}
