//! The outbox on sled: entries in the `history` tree (`o` ++ a number from
//! sled's crash-safe id generator), each holding its message's id and
//! record key, written before the record; and the batches claimed from it
//! (`b` ++ the batch's first entry number: the lease's end, then the entry
//! numbers), so that a batch is the same after a restart.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;

use super::keys::{
    be_u64, channel_of_log_prefix, key_suffix_u64, outbox_batch_key, outbox_key,
    OUTBOX_BATCH_PREFIX, OUTBOX_PREFIX,
};
use super::record::RecordRef;
use super::writer::Writer;
use super::{storage, SledStore};
use crate::error::{Error, Result};
use crate::model::Message;
use crate::store::{check_limit, lease_end, renewal_end, Outbox, OutboxBatch, OutboxLease};

#[async_trait]
impl Outbox for SledStore {
    fn enable_outbox(&self) {
        self.writer.outbox.store(true, Ordering::Release);
    }

    async fn outbox(&self, limit: usize) -> Result<Vec<(u64, Message)>> {
        check_limit(limit)?;
        let writer = self.writer.clone();
        // On the write thread: it removes entries a crash cut off.
        self.thread
            .run(move || read(&writer, limit, &Default::default()))
            .await
    }

    async fn claim_outbox(
        &self,
        limit: usize,
        now_ms: i64,
        lease: Duration,
    ) -> Result<Option<OutboxBatch>> {
        check_limit(limit)?;
        let until = lease_end(now_ms, lease)?;
        let writer = self.writer.clone();
        self.thread
            .run(move || claim(&writer, limit, now_ms, until))
            .await
    }

    async fn renew_outbox(
        &self,
        held: OutboxLease,
        now_ms: i64,
        lease: Duration,
    ) -> Result<Option<OutboxLease>> {
        let until = renewal_end(&held, now_ms, lease)?;
        let history = self.writer.history.clone();
        self.thread
            .run(move || {
                let key = outbox_batch_key(held.batch);
                let Some(value) = history.get(key).map_err(storage)? else {
                    return Ok(None);
                };
                let (held_until, numbers) = decode_batch(&value)?;
                if held_until != held.until_ms {
                    return Ok(None);
                }
                history
                    .insert(key, encode_batch(until, &numbers))
                    .map_err(storage)?;
                Ok(Some(OutboxLease {
                    batch: held.batch,
                    until_ms: until,
                }))
            })
            .await
    }

    async fn outbox_done(&self, entries: &[u64]) -> Result<()> {
        let (history, entries) = (self.writer.history.clone(), entries.to_vec());
        self.thread
            .run(move || {
                for n in entries {
                    history.remove(outbox_key(n)).map_err(storage)?;
                }
                // The batches none of whose entries is left.
                for item in history.scan_prefix(OUTBOX_BATCH_PREFIX) {
                    let (key, value) = item.map_err(storage)?;
                    let (_, numbers) = decode_batch(&value)?;
                    let mut left = false;
                    for n in numbers {
                        left |= history.contains_key(outbox_key(n)).map_err(storage)?;
                    }
                    if !left {
                        history.remove(key).map_err(storage)?;
                    }
                }
                Ok(())
            })
            .await
    }
}

/// Removes the outbox entries of messages retention deleted (`ids`), and
/// the batches left with no entry; on the write thread. Walks the outbox,
/// which holds what the host has not taken yet: small when it keeps up.
pub(super) fn forget(history: &sled::Tree, ids: &std::collections::HashSet<u64>) -> Result<()> {
    let mut removed = false;
    for entry in history.scan_prefix(OUTBOX_PREFIX) {
        let (key, value) = entry.map_err(storage)?;
        let id = value
            .first_chunk::<8>()
            .ok_or_else(|| Error::corrupt("outbox entry too short"))?;
        if ids.contains(&u64::from_be_bytes(*id)) {
            history.remove(key).map_err(storage)?;
            removed = true;
        }
    }
    if !removed {
        return Ok(());
    }
    for item in history.scan_prefix(OUTBOX_BATCH_PREFIX) {
        let (key, value) = item.map_err(storage)?;
        let (_, numbers) = decode_batch(&value)?;
        let mut left = false;
        for n in numbers {
            left |= history.contains_key(outbox_key(n)).map_err(storage)?;
        }
        if !left {
            history.remove(key).map_err(storage)?;
        }
    }
    Ok(())
}

/// A batch's value: its lease's end, then its entry numbers.
fn encode_batch(until_ms: i64, numbers: &[u64]) -> Vec<u8> {
    let mut value = Vec::with_capacity(8 * (numbers.len() + 1));
    value.extend_from_slice(&until_ms.to_be_bytes());
    for n in numbers {
        value.extend_from_slice(&n.to_be_bytes());
    }
    value
}

fn decode_batch(value: &[u8]) -> Result<(i64, Vec<u64>)> {
    if value.len() < 8 || value.len() % 8 != 0 {
        return Err(Error::corrupt("outbox batch: a value of a bad length"));
    }
    let mut words = value.chunks_exact(8);
    let until = words
        .next()
        .map(|w| be_u64(w, "outbox batch"))
        .transpose()?
        .unwrap_or(0);
    let numbers = words
        .map(|w| be_u64(w, "outbox batch"))
        .collect::<Result<_>>()?;
    Ok((i64::from_be_bytes(until.to_be_bytes()), numbers))
}

/// Claims a batch (see [`Outbox::claim_outbox`]); on the write thread, so
/// that claims take turns.
fn claim(writer: &Writer, limit: usize, now_ms: i64, until: i64) -> Result<Option<OutboxBatch>> {
    let mut claimed = std::collections::HashSet::new();
    for item in writer.history.scan_prefix(OUTBOX_BATCH_PREFIX) {
        let (key, value) = item.map_err(storage)?;
        let (held_until, numbers) = decode_batch(&value)?;
        if held_until > now_ms {
            claimed.extend(numbers);
            continue;
        }
        // Its lease ran out: taken over, whole.
        writer
            .history
            .insert(&key, encode_batch(until, &numbers))
            .map_err(storage)?;
        let mut entries = Vec::with_capacity(numbers.len());
        for n in numbers {
            if let Some(value) = writer.history.get(outbox_key(n)).map_err(storage)? {
                if let Some(message) = message_of(writer, &value)? {
                    entries.push((n, message));
                }
            }
        }
        let lease = OutboxLease {
            batch: key_suffix_u64(&key, "outbox batch")?,
            until_ms: until,
        };
        return Ok(Some(OutboxBatch { lease, entries }));
    }
    let entries = read(writer, limit, &claimed)?;
    let Some(&(batch, _)) = entries.first() else {
        return Ok(None);
    };
    let numbers: Vec<u64> = entries.iter().map(|(n, _)| *n).collect();
    writer
        .history
        .insert(outbox_batch_key(batch), encode_batch(until, &numbers))
        .map_err(storage)?;
    let lease = OutboxLease {
        batch,
        until_ms: until,
    };
    Ok(Some(OutboxBatch { lease, entries }))
}

/// Up to `limit` outbox entries but those in `claimed`, oldest first, with
/// their messages; entries whose record is missing are removed.
fn read(
    writer: &Writer,
    limit: usize,
    claimed: &std::collections::HashSet<u64>,
) -> Result<Vec<(u64, Message)>> {
    // The writer's turn: no append is between its entry and its record,
    // so an entry without a record is one a crash cut off.
    let _turn = writer.lock();
    let mut out = Vec::new();
    for entry in writer.history.scan_prefix(OUTBOX_PREFIX) {
        if out.len() == limit {
            break;
        }
        let (key, value) = entry.map_err(storage)?;
        let n = key_suffix_u64(&key, "outbox entry")?;
        if claimed.contains(&n) {
            continue;
        }
        match message_of(writer, &value)? {
            Some(message) => out.push((n, message)),
            None => {
                writer.history.remove(&key).map_err(storage)?;
            }
        }
    }
    Ok(out)
}

/// The message an outbox entry names, if its record is there.
fn message_of(writer: &Writer, entry: &sled::IVec) -> Result<Option<Message>> {
    let (id, location) = writer.by_sender(entry)?;
    let Some(record) = writer.record_of(id, &location)? else {
        return Ok(None);
    };
    let seq = key_suffix_u64(&location, "outbox entry")?;
    let prefix = location
        .get(..location.len() - 8)
        .ok_or_else(|| Error::corrupt("outbox entry: a short record key"))?;
    let channel = channel_of_log_prefix(prefix)?;
    Ok(Some(RecordRef::parse(&record)?.to_message(channel, seq)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Channel, ClientMsgNo, Flags, MessageId, Setting, Uid};
    use crate::store::MessageLog;

    /// An entry whose record a crash cut off (the entry is written first)
    /// is dropped, not returned, and the ones around it are kept.
    #[tokio::test]
    async fn an_entry_without_its_record_is_dropped() {
        let store = SledStore::temporary().unwrap();
        store.enable_outbox();
        let channel = Channel::group("g").unwrap();
        let message = |id: u64, no: &str| Message {
            message_id: MessageId(id),
            message_seq: 0,
            client_msg_no: ClientMsgNo::new(no).unwrap(),
            from_uid: Uid::new("u").unwrap(),
            channel: channel.clone(),
            timestamp_ms: 1,
            flags: Flags::normal(),
            setting: Setting::default(),
            topic: None,
            payload: "p".into(),
        };
        store.append(vec![message(1, "a")]).await.unwrap();
        // What a crash between the entry and its record leaves.
        let lost = message(2, "b");
        let location = super::super::keys::seq_key(&super::super::keys::log_prefix(&channel), 2);
        let entry = store
            .writer
            .outbox_entry(&lost, &location)
            .unwrap()
            .unwrap();
        store.writer.history.insert(entry.0, entry.1).unwrap();
        store.append(vec![message(3, "c")]).await.unwrap();

        let ids: Vec<u64> = store
            .outbox(10)
            .await
            .unwrap()
            .iter()
            .map(|(_, m)| m.message_id.0)
            .collect();
        assert_eq!(ids, [1, 3]);
        assert_eq!(store.writer.history.scan_prefix(OUTBOX_PREFIX).count(), 2);
    }
}
