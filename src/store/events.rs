//! Message events in storage: the trait every backend implements, and the
//! one rule for an append that they all apply inside their own atomic
//! section.

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::event::{next_state, EventAppend, EventOutcome, EventState, NewEvent, StoredEvent};
use crate::model::{Channel, ClientMsgNo, EventKey};

/// Stores message events ([`crate::event`]).
///
/// Contract (the [`conformance`](super::conformance) suite checks it):
/// - [`append_event`](EventStore::append_event) is atomic and
///   linearizable per message: concurrent appends to one message get
///   distinct, gap-free `msg_event_seq`s 1, 2, …, shared by all the
///   message's streams.
/// - An event whose id the message already has stores nothing and is
///   answered as the first ([`EventOutcome::Duplicate`]); one for a stream
///   that has ended stores nothing ([`EventOutcome::Ended`]).
/// - An append writes the event and a small state record: never a rewrite
///   of the message or of the stream's content. Deltas are folded in when
///   states are read ([`crate::event::fold`]); the hub stores a stream's
///   final snapshot once it ends
///   ([`set_event_snapshot`](EventStore::set_event_snapshot)).
#[async_trait]
pub trait EventStore: Send + Sync + Debug + 'static {
    /// Appends `event` to its message, at `now_ms` (the stream's
    /// `updated_at_ms`).
    async fn append_event(&self, event: NewEvent, now_ms: i64) -> Result<EventAppend>;

    /// Up to `limit` of the message's events with a seq above `after`,
    /// ascending.
    async fn events_after(
        &self,
        channel: &Channel,
        client_msg_no: &ClientMsgNo,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>>;

    /// The stream states of each message, in the order given, each list
    /// sorted by key; empty for a message without events. Snapshots are as
    /// stored (up to each state's `snapshot_seq`).
    async fn event_states(
        &self,
        channel: &Channel,
        client_msg_nos: &[ClientMsgNo],
    ) -> Result<Vec<Vec<EventState>>>;

    /// Whether `channel` may have messages with events: `false` lets a
    /// page of history skip [`event_states`](EventStore::event_states).
    /// Default `true` (always look).
    async fn channel_has_events(&self, channel: &Channel) -> Result<bool> {
        let _ = channel;
        Ok(true)
    }

    /// Stores `snapshot` as the stream's snapshot up to `seq`, unless the
    /// stored one already covers as much.
    async fn set_event_snapshot(
        &self,
        channel: &Channel,
        client_msg_no: &ClientMsgNo,
        key: &EventKey,
        snapshot: Bytes,
        seq: u64,
    ) -> Result<()>;

    /// Up to `limit` open streams whose last event was appended before
    /// `before_ms`: each message's channel, `client_msg_no` and the stream.
    async fn stale_streams(&self, before_ms: i64, limit: usize) -> Result<Vec<OpenStream>>;
}

/// A stream that is still open, as [`EventStore::stale_streams`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OpenStream {
    /// The message's channel (stored form).
    pub channel: Channel,
    /// The message's `client_msg_no`.
    pub client_msg_no: ClientMsgNo,
    /// The stream.
    pub event_key: EventKey,
    /// Its last event's sender.
    pub from_uid: crate::model::Uid,
}

/// What a backend keeps per message: the last seq and each stream's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MessageEvents {
    pub(crate) last_seq: u64,
    pub(crate) states: Vec<EventState>,
    /// The uid of the message's last event (who the server closes a stale
    /// stream as).
    pub(crate) from_uid: Option<crate::model::Uid>,
}

impl MessageEvents {
    pub(crate) fn state(&self, key: &EventKey) -> Option<&EventState> {
        self.states.iter().find(|s| &s.event_key == key)
    }
}

/// What a backend does with an append, decided by [`step`].
pub(crate) enum Step {
    /// Store `event` and the changed `record`.
    Append(StoredEvent),
    /// Nothing to store: the answer.
    Answer(Box<EventAppend>),
}

/// The one rule for an append: `record` is the message's (changed in place
/// for [`Step::Append`]), `duplicate` the event already stored under the
/// event's id, if any.
pub(crate) fn step(
    record: &mut MessageEvents,
    event: NewEvent,
    duplicate: Option<StoredEvent>,
    now_ms: i64,
) -> Step {
    if let Some(first) = duplicate {
        let state = record.state(&first.event.event_key).cloned();
        let state = state.unwrap_or_else(|| next_state(None, &first, now_ms));
        return Step::Answer(Box::new(EventAppend {
            event: first,
            state,
            outcome: EventOutcome::Duplicate,
        }));
    }
    if let Some(state) = record.state(&event.event_key) {
        if state.status.is_terminal() {
            return Step::Answer(Box::new(EventAppend {
                event: StoredEvent {
                    msg_event_seq: state.last_msg_event_seq,
                    event,
                },
                state: state.clone(),
                outcome: EventOutcome::Ended,
            }));
        }
    }
    record.last_seq += 1;
    let stored = StoredEvent {
        msg_event_seq: record.last_seq,
        event,
    };
    let key = &stored.event.event_key;
    let before = record.state(key).cloned();
    let after = next_state(before, &stored, now_ms);
    match record.states.iter_mut().find(|s| &s.event_key == key) {
        Some(s) => *s = after,
        None => {
            record.states.push(after);
            record.states.sort_by(|a, b| a.event_key.cmp(&b.event_key));
        }
    }
    record.from_uid = Some(stored.event.from_uid.clone());
    Step::Append(stored)
}

/// The answer to an append that stored `event`, from the changed record.
pub(crate) fn appended(record: &MessageEvents, event: StoredEvent) -> Result<EventAppend> {
    let state = record
        .state(&event.event.event_key)
        .cloned()
        .ok_or_else(|| crate::Error::corrupt("an appended event's stream has no state"))?;
    Ok(EventAppend {
        event,
        state,
        outcome: EventOutcome::Appended,
    })
}

/// Stores `snapshot` up to `seq` in `record`'s stream `key`, if that is
/// further than the stored one; whether it changed.
pub(crate) fn put_snapshot(
    record: &mut MessageEvents,
    key: &EventKey,
    snapshot: Bytes,
    seq: u64,
) -> bool {
    match record.states.iter_mut().find(|s| &s.event_key == key) {
        Some(s) if s.snapshot_seq < seq => {
            s.snapshot = Some(snapshot);
            s.snapshot_seq = seq;
            true
        }
        _ => false,
    }
}
