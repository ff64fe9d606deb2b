//! Retention on sled: deleting a channel's oldest records a batch at a
//! time, on the store's write thread in the writer's turn (an append waits
//! for one batch at most).
//!
//! A batch is written as plain batches, in an order that a crash (sled
//! recovers a prefix of its writes) leaves consistent: first the resend
//! tombstones of the messages young enough to be resent (each one's `r`
//! entry gets the deletion time after it) with the batch's purge entry
//! (`t` ++ time ++ channel ++ floor; none when no message got one), then
//! the channel's floor record (`floors`), then the records, then their id
//! index and the older messages' `r` entries (removed: no tombstone), and
//! outbox entries, revocations and events. A crash between the records
//! and the `r` entries leaves entries whose record is gone, which a new
//! message under the same key takes over, as it would a missing one. A crash after the
//! floor leaves records below it that reads no longer show (they start at
//! the floor) and the next batch on the channel removes (it scans from
//! the channel's first record). The floor record keeps the last deleted
//! message's head fields, so a channel whose every record is gone keeps
//! its head.

use std::collections::HashSet;
use std::ops::Bound;
use std::time::Duration;

use async_trait::async_trait;
use sled::{Batch, IVec};

use super::events::delete_message_events;
use super::heads::Floor;
use super::keys::{
    by_sender_key_raw, channel_of_log_prefix, decode, encode, id_key, key_suffix_u64, log_prefix,
    seq_key, tombstones_from, tombstones_key, TOMBSTONES_PREFIX,
};
use super::record::RecordRef;
use super::writer::is_tombstone;
use super::{storage, SledStore};
use crate::error::{Error, Result};
use crate::model::Channel;
use crate::store::{beyond_head, check_limit, DeletedBatch, RetentionStore, Revocation};

/// The resend keys of a batch, each after its length (2 bytes).
fn push_key(blob: &mut Vec<u8>, key: &[u8]) {
    // Resend keys are under 300 bytes (ids are bounded).
    blob.extend_from_slice(&(key.len() as u16).to_be_bytes());
    blob.extend_from_slice(key);
}

fn keys_of(blob: &[u8]) -> Result<Vec<&[u8]>> {
    let bad = || Error::corrupt("tombstone batch: malformed");
    let mut out = Vec::new();
    let mut rest = blob;
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<2>().ok_or_else(bad)?;
        let len = usize::from(u16::from_be_bytes(*len));
        let key = tail.get(..len).ok_or_else(bad)?;
        out.push(key);
        rest = &tail[len..];
    }
    Ok(out)
}

impl SledStore {
    /// One batch of [`RetentionStore::delete_through`]; on the write
    /// thread.
    fn delete_now(
        &self,
        channel: &Channel,
        through_seq: u64,
        max_batch: usize,
        now_ms: i64,
        tombstone_since_ms: i64,
    ) -> Result<DeletedBatch> {
        let writer = &self.writer;
        let _turn = writer.lock();
        let prefix = log_prefix(channel);
        let Some(head) = writer.head(&prefix)? else {
            if through_seq > 0 {
                return Err(beyond_head(through_seq, 0));
            }
            return Ok(DeletedBatch {
                deleted: 0,
                floor: 0,
                done: true,
            });
        };
        if through_seq > head.seq {
            return Err(beyond_head(through_seq, head.seq));
        }
        let records = writer
            .log
            .range(seq_key(&prefix, 0)..=seq_key(&prefix, through_seq))
            .take(max_batch)
            .collect::<sled::Result<Vec<(IVec, IVec)>>>()
            .map_err(storage)?;
        let Some((last_key, last_value)) = records.last() else {
            return Ok(DeletedBatch {
                deleted: 0,
                floor: head.floor,
                done: true,
            });
        };
        let chan = &prefix[1..];
        let with_events = self
            .event_channels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(chan);
        let (mut tombstones, mut blob) = (Batch::default(), Vec::new());
        let (mut records_out, mut indexes_out) = (Batch::default(), Batch::default());
        let mut ids = HashSet::with_capacity(records.len());
        let mut nos = Vec::new();
        for (key, value) in &records {
            let r = RecordRef::parse(value)?;
            let (from, no) = r.resend_parts();
            let sender = by_sender_key_raw(from, chan, no);
            if r.timestamp_ms >= tombstone_since_ms {
                let mut tombstone = Vec::with_capacity(8 + key.len() + 8);
                tombstone.extend_from_slice(&r.message_id.0.to_be_bytes());
                tombstone.extend_from_slice(key);
                tombstone.extend_from_slice(&now_ms.to_be_bytes());
                push_key(&mut blob, &sender);
                tombstones.insert(sender, tombstone);
            } else {
                indexes_out.remove(sender);
            }
            indexes_out.remove(&id_key(r.message_id));
            records_out.remove(key);
            ids.insert(r.message_id.0);
            if with_events {
                nos.push(no.to_vec());
            }
        }
        let last = RecordRef::parse(last_value)?;
        let floor = Floor {
            seq: key_suffix_u64(last_key, "record key")?,
            red_dots: last.red_dots,
            message_id: last.message_id,
            timestamp_ms: last.timestamp_ms,
            version: last.version,
            from: last.sender()?,
        };
        if !blob.is_empty() {
            tombstones.insert(tombstones_key(now_ms, &prefix, floor.seq), blob);
            writer.history.apply_batch(tombstones).map_err(storage)?;
        }
        // Leftovers of a crash lie below the floor: it never moves back.
        let floor_seq = floor.seq.max(head.floor);
        if floor.seq > head.floor {
            writer
                .floors
                .insert(&prefix, encode(&floor)?)
                .map_err(storage)?;
            writer.heads.set_floor(&prefix, &floor);
        }
        writer.log.apply_batch(records_out).map_err(storage)?;
        writer.history.apply_batch(indexes_out).map_err(storage)?;
        super::outbox::forget(&writer.history, &ids)?;
        self.delete_revocations_through(chan, floor_seq)?;
        for no in &nos {
            delete_message_events(&self.events, chan, no)?;
        }
        delete_extras_through(self, channel, &ids)?;
        Ok(DeletedBatch {
            deleted: records.len() as u64,
            floor: floor_seq,
            done: records.len() < max_batch || floor_seq >= through_seq,
        })
    }

    /// The revocations of the channel (its key) up to `through`; the
    /// channel's version counter stays.
    fn delete_revocations_through(&self, chan: &[u8], through: u64) -> Result<()> {
        let range = self
            .revocations_by_seq
            .range(seq_key(chan, 0)..=seq_key(chan, through));
        for kv in range {
            let (by_seq, id) = kv.map_err(storage)?;
            if let Some(v) = self.revocations.remove(&id).map_err(storage)? {
                let r: Revocation = decode(&v, "revocation")?;
                self.revocations_by_channel
                    .remove(seq_key(chan, r.extra_version))
                    .map_err(storage)?;
            }
            self.revocations_by_seq.remove(by_seq).map_err(storage)?;
        }
        Ok(())
    }

    /// Purges tombstone batches deleted before `before_ms`; on the write
    /// thread.
    fn purge_now(&self, before_ms: i64, limit: usize) -> Result<u64> {
        let writer = &self.writer;
        let _turn = writer.lock();
        let history = &writer.history;
        let mut purged = 0;
        let range = history.range(TOMBSTONES_PREFIX.to_vec()..tombstones_from(before_ms));
        for kv in range {
            if purged >= limit as u64 {
                break;
            }
            let (key, blob) = kv.map_err(storage)?;
            let mut out = Batch::default();
            for sender in keys_of(&blob)? {
                // Only a tombstone: a key a new message took since stays.
                if let Some(v) = history.get(sender).map_err(storage)? {
                    if is_tombstone(&v)? {
                        out.remove(sender);
                        purged += 1;
                    }
                }
            }
            out.remove(key);
            history.apply_batch(out).map_err(storage)?;
        }
        Ok(purged)
    }
}

/// The message extras (edits, read receipts) of the deleted messages
/// `ids` of `channel`, on the write thread in the same batch's turn.
fn delete_extras_through(store: &SledStore, channel: &Channel, ids: &HashSet<u64>) -> Result<()> {
    let ids: Vec<u64> = ids.iter().copied().collect();
    store.extra_trees.delete(channel, &ids)
}

#[async_trait]
impl RetentionStore for SledStore {
    async fn delete_through(
        &self,
        channel: &Channel,
        through_seq: u64,
        max_batch: usize,
        now_ms: i64,
        tombstone_since_ms: i64,
    ) -> Result<DeletedBatch> {
        check_limit(max_batch)?;
        let (store, channel) = (self.clone(), channel.clone());
        let deleted = self
            .thread
            .run(move || {
                let since = tombstone_since_ms;
                store.delete_now(&channel, through_seq, max_batch, now_ms, since)
            })
            .await?;
        self.settle().await?;
        Ok(deleted)
    }

    async fn history_floor(&self, channel: &Channel) -> Result<u64> {
        let head = self.writer.head(&log_prefix(channel))?;
        Ok(head.map_or(0, |h| h.floor))
    }

    /// The channels with records left, in key order (a channel whose
    /// every record was deleted is not listed: there is nothing left to
    /// delete in it).
    async fn channels_after(&self, after: Option<&Channel>, limit: usize) -> Result<Vec<Channel>> {
        check_limit(limit)?;
        let past = |prefix: &[u8]| seq_key(prefix, u64::MAX);
        let mut from = match after {
            Some(c) => Bound::Excluded(past(&log_prefix(c))),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        while out.len() < limit {
            let next = self
                .writer
                .log
                .range::<Vec<u8>, _>((from, Bound::Unbounded))
                .next();
            let Some(kv) = next else { break };
            let (key, _) = kv.map_err(storage)?;
            let prefix = key
                .get(..key.len().saturating_sub(8))
                .ok_or_else(|| Error::corrupt("record key too short"))?;
            out.push(channel_of_log_prefix(prefix)?);
            from = Bound::Excluded(past(prefix));
        }
        Ok(out)
    }

    async fn purge_tombstones(&self, deleted_before_ms: i64, limit: usize) -> Result<u64> {
        check_limit(limit)?;
        let store = self.clone();
        let purged = self
            .thread
            .run(move || store.purge_now(deleted_before_ms, limit))
            .await?;
        self.settle().await?;
        Ok(purged)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{NewEvent, STREAM_OPEN};
    use crate::model::{ClientMsgNo, EventId, Flags, Message, MessageId, Setting, Uid};
    use crate::store::{EventStore, MessageLog, NewRevocation, Outbox, RevocationStore};

    fn message(id: u64, channel: &Channel) -> Message {
        Message {
            message_id: MessageId(id),
            message_seq: 0,
            client_msg_no: ClientMsgNo::new(format!("no-{id}")).unwrap(),
            from_uid: Uid::new("u").unwrap(),
            channel: channel.clone(),
            timestamp_ms: 1,
            flags: Flags::normal(),
            setting: Setting::default(),
            topic: None,
            payload: "p".into(),
        }
    }

    fn keys(tree: &sled::Tree, first: u8) -> usize {
        tree.scan_prefix([first]).count()
    }

    /// Deleting every message leaves none of its keys: records, id index,
    /// outbox entries, revocations, events; only the tombstones, the floor
    /// and read positions stay, and purging the tombstones leaves the
    /// floor alone.
    #[tokio::test]
    async fn a_deleted_message_leaves_no_key_but_its_tombstone() {
        let store = SledStore::temporary().unwrap();
        store.enable_outbox();
        let channel = Channel::group("g").unwrap();
        let sent: Vec<Message> = (1..=6).map(|i| message(i, &channel)).collect();
        store.append(sent.clone()).await.unwrap();
        store
            .record_revocation(NewRevocation {
                message_id: MessageId(2),
                channel: channel.clone(),
                message_seq: 2,
                revoker: Uid::new("u").unwrap(),
                revoked_at_ms: 1,
            })
            .await
            .unwrap();
        let open = NewEvent::new(
            channel.clone(),
            sent[2].client_msg_no.clone(),
            EventId::new("e").unwrap(),
            STREAM_OPEN,
            Uid::new("u").unwrap(),
            "{}",
        )
        .unwrap();
        store.append_event(open, 1).await.unwrap();
        let history = &store.writer.history;
        assert_eq!((keys(history, b'i'), keys(history, b'o')), (6, 6));
        loop {
            let batch = store
                .delete_through(&channel, 6, 4, 10, i64::MIN)
                .await
                .unwrap();
            if batch.done {
                break;
            }
        }
        assert!(store.writer.log.is_empty());
        assert_eq!((keys(history, b'i'), keys(history, b'o')), (0, 0));
        assert_eq!((keys(history, b'r'), keys(history, b't')), (6, 2));
        assert!(store.events.is_empty());
        assert!(store.revocations.is_empty());
        assert!(store.revocations_by_seq.is_empty());
        assert!(store.revocations_by_channel.is_empty());
        assert_eq!(store.writer.floors.len(), 1);
        assert_eq!(store.purge_tombstones(11, 100).await.unwrap(), 6);
        assert_eq!((keys(history, b'r'), keys(history, b't')), (0, 0));
        assert_eq!(store.last_seq(&channel).await.unwrap(), 6);
    }

    /// Messages older than the tombstone cutoff leave no `r` entry and no
    /// purge entry; a young one in the same batch leaves both.
    #[tokio::test]
    async fn an_old_message_leaves_no_resend_entry() {
        let store = SledStore::temporary().unwrap();
        let channel = Channel::group("g").unwrap();
        let mut sent: Vec<Message> = (1..=4).map(|i| message(i, &channel)).collect();
        sent[3].timestamp_ms = 50;
        store.append(sent).await.unwrap();
        let history = &store.writer.history;
        assert_eq!(keys(history, b'r'), 4);
        let batch = store
            .delete_through(&channel, 3, 10, 100, 50)
            .await
            .unwrap();
        assert_eq!((batch.deleted, batch.done), (3, true));
        assert_eq!((keys(history, b'r'), keys(history, b't')), (1, 0));
        store
            .delete_through(&channel, 4, 10, 100, 50)
            .await
            .unwrap();
        assert_eq!((keys(history, b'r'), keys(history, b't')), (1, 1));
        assert!(store.append(vec![message(4, &channel)]).await.unwrap()[0].duplicate);
        let again = store.append(vec![message(1, &channel)]).await.unwrap();
        assert_eq!((again[0].duplicate, again[0].message_seq), (false, 5));
    }

    /// A reopened store (no heads in memory) finds the head of a channel
    /// whose every record was deleted in its floor record.
    #[tokio::test]
    async fn the_head_of_an_emptied_channel_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let channel = Channel::group("g").unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store
                .append((1..=3).map(|i| message(i, &channel)).collect())
                .await
                .unwrap();
            store
                .delete_through(&channel, 3, 10, 1, i64::MIN)
                .await
                .unwrap();
            store.flush().await.unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.last_seq(&channel).await.unwrap(), 3);
        assert_eq!(store.history_floor(&channel).await.unwrap(), 3);
        let next = store.append(vec![message(4, &channel)]).await.unwrap();
        assert_eq!(next[0].message_seq, 4);
        let resend = store.append(vec![message(2, &channel)]).await.unwrap();
        assert!(resend[0].duplicate, "the tombstone survives too");
    }
}
