//! Retention in memory: deleting a channel's oldest messages under the
//! store's one lock, a batch at a time, leaving resend tombstones of the
//! messages young enough to be resent.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use super::{HashMap, HashSet, Inner, MemoryStore, SenderKey};
use crate::error::Result;
use crate::model::{Channel, MessageId};
use crate::store::{beyond_head, check_limit, DeletedBatch, RetentionStore};

/// Resend tombstones: each deleted message's key with its id and seq, and
/// the keys by deletion time (with a batch number), for purging.
#[derive(Debug, Default)]
pub(super) struct Tombstones {
    by_key: HashMap<SenderKey, (MessageId, u64)>,
    by_time: BTreeMap<(i64, u64), Vec<SenderKey>>,
    batches: u64,
}

impl Tombstones {
    /// The tombstone of a deleted message's key, if it has one.
    pub(super) fn get(&self, key: &SenderKey) -> Option<&(MessageId, u64)> {
        if self.by_key.is_empty() {
            return None;
        }
        self.by_key.get(key)
    }
}

impl Inner {
    fn delete_through(
        &mut self,
        channel: &Channel,
        through_seq: u64,
        max_batch: usize,
        now_ms: i64,
        tombstone_since_ms: i64,
    ) -> Result<DeletedBatch> {
        let Some(log) = self.logs.get_mut(channel) else {
            if through_seq > 0 {
                return Err(beyond_head(through_seq, 0));
            }
            return Ok(DeletedBatch {
                deleted: 0,
                floor: 0,
                done: true,
            });
        };
        let last_seq = log.head.as_ref().map_or(0, |h| h.last_seq);
        if through_seq > last_seq {
            return Err(beyond_head(through_seq, last_seq));
        }
        let seqs: Vec<u64> = log
            .messages
            .range(..=through_seq)
            .take(max_batch)
            .map(|(seq, _)| *seq)
            .collect();
        let mut gone = Vec::with_capacity(seqs.len());
        for seq in &seqs {
            if let Some((message, red_dots)) = log.messages.remove(seq) {
                if *seq > log.floor {
                    log.floor = *seq;
                    if let Some(head) = &mut log.head {
                        head.floor_red_dots = red_dots;
                    }
                }
                gone.push(message);
            }
        }
        let floor = log.floor;
        let done = log.messages.range(..=through_seq).next().is_none();
        let mut keys = Vec::with_capacity(gone.len());
        let mut ids = HashSet::with_capacity_and_hasher(gone.len(), Default::default());
        for m in &gone {
            let key = super::sender_key(m);
            self.dedup.remove(&key);
            if m.timestamp_ms >= tombstone_since_ms {
                self.tombstones
                    .by_key
                    .insert(key.clone(), (m.message_id, m.message_seq));
                keys.push(key);
            }
            self.by_id.remove(&m.message_id);
            ids.insert(m.message_id);
            self.events
                .remove(&(m.channel.clone(), m.client_msg_no.clone()));
        }
        if !keys.is_empty() {
            self.tombstones.batches += 1;
            let at = (now_ms, self.tombstones.batches);
            self.tombstones.by_time.insert(at, keys);
        }
        self.delete_revocations_through(channel, through_seq.min(floor));
        if let Some(outbox) = &mut self.outbox {
            outbox.retain(|_, id| !ids.contains(id));
            self.outbox_batches
                .retain(|_, (_, numbers)| numbers.iter().any(|n| outbox.contains_key(n)));
        }
        self.delete_extras_through(channel, &ids);
        Ok(DeletedBatch {
            deleted: gone.len() as u64,
            floor,
            done,
        })
    }

    /// The channel's revocations of seqs up to `through`; the channel's
    /// version counter stays (versions are never reused).
    fn delete_revocations_through(&mut self, channel: &Channel, through: u64) {
        let Some(by_seq) = self.revocations_by_seq.get_mut(channel) else {
            return;
        };
        let kept = by_seq.split_off(&through.saturating_add(1));
        let deleted = std::mem::replace(by_seq, kept);
        for id in deleted.values() {
            if let Some(r) = self.revocations.remove(id) {
                if let Some((_, by_version)) = self.revocations_by_channel.get_mut(channel) {
                    by_version.remove(&r.extra_version);
                }
            }
        }
    }

    /// The message extras (edits, read receipts) of the deleted messages
    /// `ids` of `channel`, in the same locked step.
    fn delete_extras_through(&mut self, channel: &Channel, ids: &HashSet<MessageId>) {
        self.extras.delete(channel, ids);
    }

    fn purge_tombstones(&mut self, deleted_before_ms: i64, limit: usize) -> u64 {
        let mut purged = 0;
        while purged < limit as u64 {
            let Some(entry) = self.tombstones.by_time.first_entry() else {
                break;
            };
            if entry.key().0 >= deleted_before_ms {
                break;
            }
            for key in entry.remove() {
                self.tombstones.by_key.remove(&key);
                purged += 1;
            }
        }
        purged
    }
}

#[async_trait]
impl RetentionStore for MemoryStore {
    async fn delete_through(
        &self,
        channel: &Channel,
        through_seq: u64,
        max_batch: usize,
        now_ms: i64,
        tombstone_since_ms: i64,
    ) -> Result<DeletedBatch> {
        check_limit(max_batch)?;
        self.lock()
            .delete_through(channel, through_seq, max_batch, now_ms, tombstone_since_ms)
    }

    async fn history_floor(&self, channel: &Channel) -> Result<u64> {
        Ok(self.lock().logs.get(channel).map_or(0, |l| l.floor))
    }

    async fn channels_after(&self, after: Option<&Channel>, limit: usize) -> Result<Vec<Channel>> {
        check_limit(limit)?;
        let inner = self.lock();
        let mut channels: Vec<&Channel> = inner
            .logs
            .iter()
            .filter(|(c, l)| l.head.is_some() && after.is_none_or(|a| *c > a))
            .map(|(c, _)| c)
            .collect();
        channels.sort_unstable();
        Ok(channels.into_iter().take(limit).cloned().collect())
    }

    async fn purge_tombstones(&self, deleted_before_ms: i64, limit: usize) -> Result<u64> {
        check_limit(limit)?;
        Ok(self.lock().purge_tombstones(deleted_before_ms, limit))
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl: Duration,
    ) -> Result<bool> {
        Ok(self.leases.try_take(name, holder, now_ms, ttl))
    }
}
