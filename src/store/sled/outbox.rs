//! The outbox on sled: entries in the `history` tree (`o` ++ a number from
//! sled's crash-safe id generator), each holding its message's id and
//! record key, written before the record.

use std::sync::atomic::Ordering;

use async_trait::async_trait;

use super::keys::{channel_of_log_prefix, key_suffix_u64, OUTBOX_PREFIX};
use super::record::RecordRef;
use super::writer::Writer;
use super::{storage, SledStore};
use crate::error::{Error, Result};
use crate::model::Message;
use crate::store::{check_limit, Outbox};

#[async_trait]
impl Outbox for SledStore {
    fn enable_outbox(&self) {
        self.writer.outbox.store(true, Ordering::Release);
    }

    async fn outbox(&self, limit: usize) -> Result<Vec<(u64, Message)>> {
        check_limit(limit)?;
        let writer = self.writer.clone();
        // On the write thread: it removes entries a crash cut off.
        self.thread.run(move || read(&writer, limit)).await
    }

    async fn outbox_done(&self, entries: &[u64]) -> Result<()> {
        let (history, entries) = (self.writer.history.clone(), entries.to_vec());
        self.thread
            .run(move || {
                for n in entries {
                    let key = super::keys::outbox_key(n);
                    history.remove(key).map_err(storage)?;
                }
                Ok(())
            })
            .await
    }
}

/// Up to `limit` outbox entries, oldest first, with their messages;
/// entries whose record is missing are removed.
fn read(writer: &Writer, limit: usize) -> Result<Vec<(u64, Message)>> {
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
        let (id, location) = writer.by_sender(&value)?;
        let Some(record) = writer.record_of(id, &location)? else {
            writer.history.remove(&key).map_err(storage)?;
            continue;
        };
        let seq = key_suffix_u64(&location, "outbox entry")?;
        let prefix = location
            .get(..location.len() - 8)
            .ok_or_else(|| Error::corrupt("outbox entry: a short record key"))?;
        let channel = channel_of_log_prefix(prefix)?;
        out.push((n, RecordRef::parse(&record)?.to_message(channel, seq)?));
    }
    Ok(out)
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
