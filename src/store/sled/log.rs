//! Channel logs and the conversations derived from them, on sled.
//!
//! Reads go straight to the trees; writes go through the
//! [history writer](super::writer).

use std::sync::atomic::Ordering;

use async_trait::async_trait;

use super::keys::{channel_key, decode, decode_channel_key, key, sender_key, seq_key, Record};
use super::writer::{id_and_seq, party_key, Done, Job};
use super::{log_tail, storage, SledStore};
use crate::error::{Error, Result};
use crate::model::{Channel, ClientMsgNo, Message, MessageId, Uid};
use crate::store::{
    Appended, ChannelHead, Conversation, ConversationStore, Direction, MessageLog, Page,
    ReadPosition,
};

fn unexpected() -> Error {
    Error::corrupt("the history writer answered a job with another job's outcome")
}

impl SledStore {
    /// The channel's head: its last record.
    fn head(&self, channel: &[u8]) -> Result<Option<ChannelHead>> {
        let trees = self.writer.trees();
        Ok(
            log_tail(&trees.messages, channel)?.map(|(last_seq, r)| ChannelHead {
                last_seq,
                last_message_id: r.message_id,
                last_timestamp_ms: r.timestamp_ms,
                red_dots: r.red_dots,
                version: r.version,
            }),
        )
    }
}

#[async_trait]
impl MessageLog for SledStore {
    /// One transaction, and one flush with
    /// [`Durability::Flush`](super::Durability::Flush), for every append
    /// queued at the same time.
    async fn append(&self, messages: Vec<Message>) -> Result<Vec<Appended>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        match self.writer.submit(Job::Append(messages)).await? {
            Done::Appended(out) => Ok(out),
            Done::Cleared(_) => Err(unexpected()),
        }
    }

    async fn read(&self, channel: &Channel, page: Page) -> Result<Vec<Message>> {
        page.validate()?;
        let prefix = key(|k| channel_key(k, channel));
        let (lo, hi) = match page.direction {
            Direction::Forward => (seq_key(&prefix, page.from), seq_key(&prefix, u64::MAX)),
            Direction::Backward => (seq_key(&prefix, 0), seq_key(&prefix, page.from)),
        };
        let range = self.writer.trees().messages.range(lo..=hi);
        let decode_kv = |kv: sled::Result<(sled::IVec, sled::IVec)>| -> Result<Message> {
            let (k, v) = kv.map_err(storage)?;
            let seq = super::keys::key_suffix_u64(&k, "message key")?;
            Ok(Record::decode(&v)?.into_message(channel.clone(), seq))
        };
        match page.direction {
            Direction::Forward => range.take(page.limit).map(decode_kv).collect(),
            Direction::Backward => range.rev().take(page.limit).map(decode_kv).collect(),
        }
    }

    async fn get(&self, id: MessageId) -> Result<Option<Message>> {
        let trees = self.writer.trees();
        let Some(location) = trees.message_ids.get(id.0.to_be_bytes()).map_err(storage)? else {
            return Ok(None);
        };
        let Some(v) = trees.messages.get(&location).map_err(storage)? else {
            return Err(Error::corrupt(format!(
                "message index points at a missing message ({id})"
            )));
        };
        let split = location
            .len()
            .checked_sub(8)
            .ok_or_else(|| Error::corrupt("message index entry too short"))?;
        let channel = decode_channel_key(&location[..split])?;
        let seq = super::keys::key_suffix_u64(&location, "message index")?;
        Ok(Some(Record::decode(&v)?.into_message(channel, seq)))
    }

    async fn get_by_client_msg_no(
        &self,
        from_uid: &Uid,
        client_msg_no: &ClientMsgNo,
    ) -> Result<Option<Message>> {
        let found = self
            .writer
            .trees()
            .dedup
            .get(sender_key(from_uid, client_msg_no))
            .map_err(storage)?;
        match found {
            Some(v) => self.get(id_and_seq(&v)?.0).await,
            None => Ok(None),
        }
    }

    async fn last_seq(&self, channel: &Channel) -> Result<u64> {
        let head = self.head(&key(|k| channel_key(k, channel)))?;
        Ok(head.map_or(0, |h| h.last_seq))
    }
}

#[async_trait]
impl ConversationStore for SledStore {
    async fn stable_version(&self) -> Result<u64> {
        Ok(self.writer.trees().stable.load(Ordering::Acquire))
    }

    async fn conversation(&self, uid: &Uid, channel: &Channel) -> Result<Option<Conversation>> {
        let ck = key(|k| channel_key(k, channel));
        // The position first: the head read after it is at least as new,
        // so the unread count is never torn below zero.
        let position = match self
            .writer
            .trees()
            .positions
            .get(party_key(uid, &ck))
            .map_err(storage)?
        {
            Some(v) => Some(decode::<ReadPosition>(&v, "read position")?),
            None => None,
        };
        Ok(self
            .head(&ck)?
            .map(|head| Conversation::derive(channel.clone(), &head, position.as_ref())))
    }

    async fn person_channels(&self, uid: &Uid) -> Result<Vec<Channel>> {
        let prefix = party_key(uid, &[]);
        self.writer
            .trees()
            .persons
            .scan_prefix(&prefix)
            .keys()
            .map(|k| decode_channel_key(&k.map_err(storage)?[prefix.len()..]))
            .collect()
    }

    async fn clear_unread(&self, uid: &Uid, channel: &Channel, read_seq: u64) -> Result<bool> {
        let job = Job::Clear {
            uid: uid.clone(),
            channel: channel.clone(),
            read_seq,
        };
        match self.writer.submit(job).await? {
            Done::Cleared(found) => Ok(found),
            Done::Appended(_) => Err(unexpected()),
        }
    }
}
