//! Channel logs and the conversations derived from them, on sled.
//!
//! Reads go straight to the `history` tree; writes go through the
//! [history writer](super::writer).

use std::sync::atomic::Ordering;

use async_trait::async_trait;

use super::heads::Head;
use super::hide::{self, hidden_seq};
use super::keys::{
    by_sender_key, channel_of_log_prefix, decode, decode_channel_key, hidden_prefix, id_key,
    key_suffix_u64, log_prefix, persons_prefix, position_key, seq_key,
};
use super::record::{PageItem, PageReader, RecordRef};
use super::{storage, SledStore};
use crate::error::{Error, Result};
use crate::model::{Channel, ClientMsgNo, Message, MessageId, Uid};
use crate::store::{
    Appended, Changed, Conversation, ConversationStore, Direction, HistoryMessage, MessageLog,
    Page, ReadPosition, Settle,
};

impl SledStore {
    /// The channel's head: its last record.
    fn head(&self, prefix: &[u8]) -> Result<Option<Head>> {
        self.writer.head(prefix)
    }

    /// The message `id`, whose record key an index gave.
    fn message_at(&self, id: MessageId, location: &[u8]) -> Result<Option<Message>> {
        let Some(record) = self.writer.record_of(id, location)? else {
            return Ok(None); // a dangling index entry: see the writer
        };
        let split = location
            .len()
            .checked_sub(8)
            .ok_or_else(|| Error::corrupt("record key too short"))?;
        let channel = channel_of_log_prefix(&location[..split])?;
        let seq = key_suffix_u64(location, "record key")?;
        RecordRef::parse(&record)?
            .to_message(channel, seq)
            .map(Some)
    }

    /// A page of `channel`'s history, as messages or history messages.
    fn page<T: PageItem>(&self, channel: &Channel, page: Page) -> Result<Vec<T>> {
        page.validate()?;
        let prefix = log_prefix(channel);
        // Up to the head only: the writer publishes a head after its
        // record, and history is never ahead of conversations.
        let Some(head) = self.head(&prefix)? else {
            return Ok(Vec::new());
        };
        // Seqs above the floor have no gaps (retention deletes from the
        // start): a forward page's last seq is known, and a tight range
        // lets sled stop where the page does. Below the floor is nothing.
        let first = head.floor.saturating_add(1).max(1); // seqs start at 1
        let span = page.limit.saturating_sub(1) as u64;
        let (lo, hi) = match page.direction {
            Direction::Forward if page.from == head.seq && !head.deleted() => {
                // A conversation's last message: from memory.
                let mut reader = PageReader::new(channel.clone(), 1);
                reader.push(head.seq, &head.record)?;
                return Ok(reader.finish());
            }
            Direction::Forward => {
                let from = page.from.max(first);
                (from, from.saturating_add(span).min(head.seq))
            }
            Direction::Backward => (first, page.from.min(head.seq)),
        };
        if lo > hi {
            return Ok(Vec::new()); // past the end
        }
        let log = &self.writer.log;
        let range = |lo: u64, hi: u64| log.range(seq_key(&prefix, lo)..=seq_key(&prefix, hi));
        let count = usize::try_from(hi - lo).map_or(page.limit, |n| n.saturating_add(1));
        let mut reader = PageReader::new(channel.clone(), count.min(page.limit));
        let mut got = 0;
        let mut push = |kv: sled::Result<(sled::IVec, sled::IVec)>| -> Result<()> {
            let (k, v) = kv.map_err(storage)?;
            reader.push(key_suffix_u64(&k, "record key")?, &v)
        };
        match page.direction {
            Direction::Forward => {
                for kv in range(lo, hi).take(page.limit) {
                    push(kv)?;
                    got += 1;
                }
                // Short: a deletion moved the floor past `lo` while the
                // page was read; the page goes on past `hi`.
                let missing = page.limit.saturating_sub(got);
                if got < count && missing > 0 && hi < head.seq {
                    for kv in range(hi + 1, head.seq).take(missing) {
                        push(kv)?;
                    }
                }
            }
            Direction::Backward => {
                for kv in range(lo, hi).rev().take(page.limit) {
                    push(kv)?;
                }
            }
        }
        Ok(reader.finish())
    }
}

#[async_trait]
impl MessageLog for SledStore {
    async fn flush(&self) -> Result<()> {
        SledStore::flush(self).await
    }

    /// Plain inserts for one message, one atomic batch for several; with
    /// [`Durability::Flush`](super::Durability::Flush), one flush shared by
    /// every append at the same time.
    async fn append(&self, messages: Vec<Message>) -> Result<Vec<Appended>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let (appended, settle) = self.append_then_settle(messages).await?;
        settle.await?;
        Ok(appended)
    }

    /// The write now, the flush in the [`Settle`] it returns.
    async fn append_then_settle(&self, messages: Vec<Message>) -> Result<(Vec<Appended>, Settle)> {
        if messages.is_empty() {
            return Ok((Vec::new(), Box::pin(std::future::ready(Ok(())))));
        }
        let writer = self.writer.clone();
        let (appended, ticket) = self.thread.run(move || writer.write(&messages)).await?;
        let writer = self.writer.clone();
        Ok((
            appended,
            Box::pin(async move { writer.settle(ticket).await }),
        ))
    }

    async fn read(&self, channel: &Channel, page: Page) -> Result<Vec<Message>> {
        self.page(channel, page)
    }

    async fn read_history(&self, channel: &Channel, page: Page) -> Result<Vec<HistoryMessage>> {
        self.page(channel, page)
    }

    async fn get(&self, id: MessageId) -> Result<Option<Message>> {
        match self.writer.history.get(id_key(id)).map_err(storage)? {
            Some(location) => self.message_at(id, &location),
            None => Ok(None),
        }
    }

    async fn get_by_client_msg_no(
        &self,
        from_uid: &Uid,
        channel: &Channel,
        client_msg_no: &ClientMsgNo,
    ) -> Result<Option<Message>> {
        let key = by_sender_key(from_uid, channel, client_msg_no);
        match self.writer.history.get(key).map_err(storage)? {
            Some(v) => {
                let (id, location) = self.writer.by_sender(&v)?;
                self.message_at(id, &location)
            }
            None => Ok(None),
        }
    }

    async fn last_seq(&self, channel: &Channel) -> Result<u64> {
        let head = self.head(&log_prefix(channel))?;
        Ok(head.map_or(0, |h| h.seq))
    }
}

#[async_trait]
impl ConversationStore for SledStore {
    async fn stable_version(&self) -> Result<u64> {
        Ok(self.writer.stable.load(Ordering::Acquire))
    }

    async fn conversation(&self, uid: &Uid, channel: &Channel) -> Result<Option<Conversation>> {
        let prefix = log_prefix(channel);
        let at = position_key(uid, &prefix);
        // One consistent look without a lock: the head, the position, and
        // the head again. The writer moves a position before the record
        // that needs it, so a position read while the head stayed put
        // belongs with that head; if the head moved, look again.
        let mut looks = 0;
        let (head, stored) = loop {
            let Some(before) = self.head(&prefix)? else {
                return Ok(None);
            };
            let stored = match self.writer.positions.get(&at).map_err(storage)? {
                Some(v) => Some(decode::<ReadPosition>(&v, "read position")?),
                None => None,
            };
            let Some(head) = self.head(&prefix)? else {
                return Ok(None);
            };
            looks += 1;
            // Under a flood of appends, settle for the last look: it is
            // off only while the flood lasts (conversations_after, which
            // syncs use, is exact through its version ceiling).
            if head.seq == before.seq || looks == 8 {
                break (head, stored);
            }
        };
        // The sender of the last message has read up to it (see the
        // writer), at a later version if a hide moved it since.
        let position = if head.from == *uid {
            let implied = head.senders_position();
            let version = stored.map_or(0, |p| p.version).max(implied.version);
            Some(ReadPosition { version, ..implied })
        } else {
            stored
        };
        Ok(Some(Conversation::derive(
            channel.clone(),
            &head.channel_head(),
            position.as_ref(),
        )))
    }

    /// From the `changed` tree (see `changed.rs`).
    async fn changed_after(&self, uid: &Uid, version: u64, most: usize) -> Result<Option<Changed>> {
        let ceiling = self.writer.stable.load(Ordering::Acquire);
        super::changed::changed_after(&self.writer.changed, uid, version, ceiling, most)
    }

    async fn person_channels(&self, uid: &Uid) -> Result<Vec<Channel>> {
        let prefix = persons_prefix(uid);
        self.writer
            .positions
            .scan_prefix(&prefix)
            .keys()
            .map(|k| decode_channel_key(&k.map_err(storage)?[prefix.len()..]))
            .collect()
    }

    async fn clear_unread(&self, uid: &Uid, channel: &Channel, read_seq: u64) -> Result<bool> {
        let (writer, uid, channel) = (self.writer.clone(), uid.clone(), channel.clone());
        let cleared = self
            .thread
            .run(move || writer.clear(&uid, &channel, read_seq))
            .await?;
        let Some(ticket) = cleared else {
            return Ok(false); // an empty channel
        };
        self.writer.settle(ticket).await?;
        Ok(true)
    }

    async fn hide_conversation(&self, uid: &Uid, channel: &Channel, up_to: u64) -> Result<()> {
        let (writer, uid, channel) = (self.writer.clone(), uid.clone(), channel.clone());
        let ticket = self
            .thread
            .run(move || hide::hide(&writer, &uid, &channel, up_to))
            .await?;
        self.writer.settle(ticket).await
    }

    async fn hidden_conversations(&self, uid: &Uid) -> Result<Vec<(Channel, u64)>> {
        let prefix = hidden_prefix(uid);
        self.writer
            .positions
            .scan_prefix(&prefix)
            .map(|entry| {
                let (k, v) = entry.map_err(storage)?;
                Ok((decode_channel_key(&k[prefix.len()..])?, hidden_seq(&v)?))
            })
            .collect()
    }
}
