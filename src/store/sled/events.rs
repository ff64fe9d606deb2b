//! Message events on sled, in a tree of their own (`events`):
//!
//! | key | value |
//! |-----|-------|
//! | `e` ++ message ++ seq | the event |
//! | `i` ++ message ++ event id | its seq |
//! | `r` ++ message | the message's record: last seq, stream states |
//! | `o` ++ message ++ stream key | (empty): the stream is open |
//!
//! where message = channel ++ `client_msg_no` length (1 byte) ++ it. An
//! append writes three small keys (four when a stream opens or ends) on the
//! store's write thread, the tree's only writer, the record last; a
//! stream's content is never rewritten by a delta.

use async_trait::async_trait;
use bytes::Bytes;
use sled::Tree;

use super::keys::{be_u64, channel_key, decode, decode_channel_key, encode, key, seq_key};
use super::{storage, SledStore};
use crate::error::{Error, Result};
use crate::event::{EventAppend, EventState, NewEvent, StoredEvent};
use crate::model::{Channel, ClientMsgNo, EventKey};
use crate::store::{
    appended, check_limit, put_snapshot, step, EventStore, MessageEvents, OpenStream, Step,
};

/// channel ++ `client_msg_no` length ++ it.
fn message_key(channel: &Channel, no: &ClientMsgNo) -> Vec<u8> {
    key(|k| {
        channel_key(k, channel);
        let no = no.as_str().as_bytes();
        // At most MAX_ID_LEN (64) bytes.
        k.push(no.len() as u8);
        k.extend_from_slice(no);
    })
}

fn tagged(tag: u8, message: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + message.len() + rest.len());
    k.push(tag);
    k.extend_from_slice(message);
    k.extend_from_slice(rest);
    k
}

fn open_key(message: &[u8], event_key: &EventKey) -> Vec<u8> {
    let s = event_key.as_str().as_bytes();
    let mut rest = Vec::with_capacity(1 + s.len());
    rest.push(s.len() as u8);
    rest.extend_from_slice(s);
    tagged(b'o', message, &rest)
}

fn read_record(tree: &Tree, message: &[u8]) -> Result<MessageEvents> {
    match tree.get(tagged(b'r', message, &[])).map_err(storage)? {
        Some(v) => decode(&v, "event record"),
        None => Ok(MessageEvents::default()),
    }
}

/// Deletes every event of one message (given by its channel's key and its
/// `client_msg_no` as stored), its record last; on the write thread. For
/// retention.
pub(super) fn delete_message_events(tree: &Tree, chan: &[u8], no: &[u8]) -> Result<()> {
    let mut message = Vec::with_capacity(chan.len() + 1 + no.len());
    message.extend_from_slice(chan);
    // At most MAX_ID_LEN (64) bytes.
    message.push(no.len() as u8);
    message.extend_from_slice(no);
    let record = tagged(b'r', &message, &[]);
    if !tree.contains_key(&record).map_err(storage)? {
        return Ok(()); // no events
    }
    for tag in [b'e', b'i', b'o'] {
        for kv in tree.scan_prefix(tagged(tag, &message, &[])).keys() {
            tree.remove(kv.map_err(storage)?).map_err(storage)?;
        }
    }
    tree.remove(record).map_err(storage)?;
    Ok(())
}

/// The channel keys with an event record, from the records (`r` ++
/// channel ++ `client_msg_no`).
pub(super) fn channels_with_events(tree: &Tree) -> Result<std::collections::HashSet<Vec<u8>>> {
    let mut out = std::collections::HashSet::new();
    for kv in tree.scan_prefix([b'r']) {
        let (k, _) = kv.map_err(storage)?;
        let id_len = usize::from(*k.get(2).ok_or_else(|| Error::corrupt("event record key"))?);
        let chan = k
            .get(1..3 + id_len)
            .ok_or_else(|| Error::corrupt("event record key"))?;
        out.insert(chan.to_vec());
    }
    Ok(out)
}

/// The open streams under `o`: message key and stream key from a key.
fn split_open_key(k: &[u8]) -> Result<(Channel, ClientMsgNo, EventKey)> {
    let bad = || Error::corrupt("open stream key");
    let rest = k.get(1..).ok_or_else(bad)?;
    let channel = decode_channel_key(rest)?;
    let mut at = 2 + channel.id.as_str().len();
    let mut take = || -> Result<&str> {
        let len = usize::from(*rest.get(at).ok_or_else(bad)?);
        let s = rest.get(at + 1..at + 1 + len).ok_or_else(bad)?;
        at += 1 + len;
        std::str::from_utf8(s).map_err(|_| bad())
    };
    let no = ClientMsgNo::from_stored(take()?);
    let event_key = EventKey::from_stored(take()?);
    Ok((channel, no, event_key))
}

#[async_trait]
impl EventStore for SledStore {
    async fn append_event(&self, event: NewEvent, now_ms: i64) -> Result<EventAppend> {
        let tree = self.events.clone();
        let message = message_key(&event.channel, &event.client_msg_no);
        let chan = key(|k| channel_key(k, &event.channel));
        let channels = self.event_channels.clone();
        // On the store's write thread, the only writer of this tree: what
        // it reads stays so until it writes. The message's record is
        // written last and says which events are in: an event or id
        // written before a crash cut the append short is overwritten by
        // the next append of that seq, and an id whose event is another
        // is no duplicate.
        let append = move || -> Result<std::result::Result<_, Box<EventAppend>>> {
            let mut record = read_record(&tree, &message)?;
            let id_key = tagged(b'i', &message, event.event_id.as_str().as_bytes());
            let events = tagged(b'e', &message, &[]);
            let mut duplicate = None;
            if let Some(seq) = tree.get(&id_key).map_err(storage)? {
                let seq = be_u64(&seq, "event id")?;
                if seq <= record.last_seq {
                    if let Some(v) = tree.get(seq_key(&events, seq)).map_err(storage)? {
                        let first = decode::<StoredEvent>(&v, "event")?;
                        duplicate = (first.event.event_id == event.event_id).then_some(first);
                    }
                }
            }
            let key = event.event_key.clone();
            let was_open = record.state(&key).is_some();
            let stored = match step(&mut record, event, duplicate, now_ms) {
                Step::Answer(answer) => return Ok(Err(answer)),
                Step::Append(stored) => stored,
            };
            let seq = stored.msg_event_seq;
            let put = |k: Vec<u8>, v: Vec<u8>| tree.insert(k, v).map(drop).map_err(storage);
            put(seq_key(&events, seq), encode(&stored)?)?;
            put(id_key, seq.to_be_bytes().to_vec())?;
            // The open-stream index changes when a stream opens or ends.
            let ended = record.state(&key).is_some_and(|s| s.status.is_terminal());
            if ended {
                tree.remove(open_key(&message, &key)).map_err(storage)?;
            } else if !was_open {
                put(open_key(&message, &key), Vec::new())?;
            }
            // Known before its record is written: a page read in between
            // looks, and finds the record or none.
            channels
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(chan);
            put(tagged(b'r', &message, &[]), encode(&record)?)?;
            Ok(Ok((record, stored)))
        };
        match self.thread.run(append).await? {
            Err(answer) => Ok(*answer),
            Ok((record, stored)) => {
                self.settle().await?;
                appended(&record, stored)
            }
        }
    }

    async fn events_after(
        &self,
        channel: &Channel,
        client_msg_no: &ClientMsgNo,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        check_limit(limit)?;
        let prefix = tagged(b'e', &message_key(channel, client_msg_no), &[]);
        let Some(from) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        self.events
            .range(seq_key(&prefix, from)..=seq_key(&prefix, u64::MAX))
            .take(limit)
            .map(|kv| {
                let (_, v) = kv.map_err(storage)?;
                decode(&v, "event")
            })
            .collect()
    }

    async fn event_states(
        &self,
        channel: &Channel,
        client_msg_nos: &[ClientMsgNo],
    ) -> Result<Vec<Vec<EventState>>> {
        if !self.channel_has_events(channel).await? {
            return Ok(vec![Vec::new(); client_msg_nos.len()]);
        }
        client_msg_nos
            .iter()
            .map(|no| {
                let k = tagged(b'r', &message_key(channel, no), &[]);
                match self.events.get(k).map_err(storage)? {
                    Some(v) => Ok(decode::<MessageEvents>(&v, "event record")?.states),
                    None => Ok(Vec::new()),
                }
            })
            .collect()
    }

    async fn channel_has_events(&self, channel: &Channel) -> Result<bool> {
        let chan = key(|k| channel_key(k, channel));
        let channels = self.event_channels.read();
        Ok(channels.unwrap_or_else(|e| e.into_inner()).contains(&chan))
    }

    async fn set_event_snapshot(
        &self,
        channel: &Channel,
        client_msg_no: &ClientMsgNo,
        event_key: &EventKey,
        snapshot: Bytes,
        seq: u64,
    ) -> Result<()> {
        let tree = self.events.clone();
        let message = message_key(channel, client_msg_no);
        let event_key = event_key.clone();
        let put = move || -> Result<()> {
            let mut record = read_record(&tree, &message)?;
            if put_snapshot(&mut record, &event_key, snapshot, seq) {
                let value = encode(&record)?;
                tree.insert(tagged(b'r', &message, &[]), value)
                    .map_err(storage)?;
            }
            Ok(())
        };
        self.thread.run(put).await?;
        self.settle().await
    }

    async fn stale_streams(&self, before_ms: i64, limit: usize) -> Result<Vec<OpenStream>> {
        check_limit(limit)?;
        let mut out = Vec::new();
        for kv in self.events.scan_prefix([b'o']) {
            let (k, _) = kv.map_err(storage)?;
            let (channel, client_msg_no, event_key) = split_open_key(&k)?;
            let record = match self
                .events
                .get(tagged(b'r', &message_key(&channel, &client_msg_no), &[]))
                .map_err(storage)?
            {
                Some(v) => decode::<MessageEvents>(&v, "event record")?,
                None => continue,
            };
            let stale = record
                .state(&event_key)
                .is_some_and(|s| !s.status.is_terminal() && s.updated_at_ms < before_ms);
            let Some(from_uid) = record.from_uid.clone() else {
                continue;
            };
            if stale {
                out.push(OpenStream {
                    channel,
                    client_msg_no,
                    event_key,
                    from_uid,
                });
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}
