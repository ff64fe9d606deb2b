//! Message events in memory: per message, its events, their ids and the
//! record of its streams.

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;

use super::{HashMap, MemoryStore};
use crate::error::Result;
use crate::event::{EventAppend, EventState, NewEvent, StoredEvent};
use crate::model::{Channel, ClientMsgNo, EventId, EventKey};
use crate::store::{
    appended, check_limit, put_snapshot, step, EventStore, MessageEvents, OpenStream, Step,
};

/// One message's events.
#[derive(Debug, Default)]
pub(super) struct Message {
    record: MessageEvents,
    events: BTreeMap<u64, StoredEvent>,
    ids: HashMap<EventId, u64>,
}

pub(super) type Events = HashMap<(Channel, ClientMsgNo), Message>;

#[async_trait]
impl EventStore for MemoryStore {
    async fn append_event(&self, event: NewEvent, now_ms: i64) -> Result<EventAppend> {
        let mut inner = self.lock();
        if !inner.event_channels.contains(&event.channel) {
            inner.event_channels.insert(event.channel.clone());
        }
        let key = (event.channel.clone(), event.client_msg_no.clone());
        let m = inner.events.entry(key).or_default();
        let duplicate = m
            .ids
            .get(&event.event_id)
            .and_then(|seq| m.events.get(seq))
            .cloned();
        match step(&mut m.record, event, duplicate, now_ms) {
            Step::Answer(answer) => Ok(*answer),
            Step::Append(stored) => {
                m.ids
                    .insert(stored.event.event_id.clone(), stored.msg_event_seq);
                m.events.insert(stored.msg_event_seq, stored.clone());
                appended(&m.record, stored)
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
        let inner = self.lock();
        let key = (channel.clone(), client_msg_no.clone());
        Ok(inner.events.get(&key).map_or_else(Vec::new, |m| {
            m.events
                .range(after.saturating_add(1)..)
                .take(limit)
                .map(|(_, e)| e.clone())
                .collect()
        }))
    }

    async fn event_states(
        &self,
        channel: &Channel,
        client_msg_nos: &[ClientMsgNo],
    ) -> Result<Vec<Vec<EventState>>> {
        let inner = self.lock();
        Ok(client_msg_nos
            .iter()
            .map(|no| {
                let key = (channel.clone(), no.clone());
                inner
                    .events
                    .get(&key)
                    .map_or_else(Vec::new, |m| m.record.states.clone())
            })
            .collect())
    }

    async fn channel_has_events(&self, channel: &Channel) -> Result<bool> {
        Ok(self.lock().event_channels.contains(channel))
    }

    async fn set_event_snapshot(
        &self,
        channel: &Channel,
        client_msg_no: &ClientMsgNo,
        key: &EventKey,
        snapshot: Bytes,
        seq: u64,
    ) -> Result<()> {
        let mut inner = self.lock();
        if let Some(m) = inner
            .events
            .get_mut(&(channel.clone(), client_msg_no.clone()))
        {
            put_snapshot(&mut m.record, key, snapshot, seq);
        }
        Ok(())
    }

    async fn stale_streams(&self, before_ms: i64, limit: usize) -> Result<Vec<OpenStream>> {
        check_limit(limit)?;
        let inner = self.lock();
        let mut out = Vec::new();
        for ((channel, no), m) in &inner.events {
            let Some(from_uid) = &m.record.from_uid else {
                continue; // no events
            };
            for s in &m.record.states {
                if !s.status.is_terminal() && s.updated_at_ms < before_ms {
                    out.push(OpenStream {
                        channel: channel.clone(),
                        client_msg_no: no.clone(),
                        event_key: s.event_key.clone(),
                        from_uid: from_uid.clone(),
                    });
                }
            }
        }
        out.sort_by(|a, b| {
            (&a.channel, &a.client_msg_no, &a.event_key).cmp(&(
                &b.channel,
                &b.client_msg_no,
                &b.event_key,
            ))
        });
        out.truncate(limit);
        Ok(out)
    }
}
