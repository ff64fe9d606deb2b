//! Message events through the hub: appending one to a message (checked,
//! stored, delivered live in `msg_event_seq` order), syncing them, folding
//! them into history, and ending streams left open.

use super::*;
use crate::event::{
    fold, EventAppend, EventOutcome, EventState, NewEvent, StoredEvent, STREAM_ERROR,
};
use crate::model::{EventId, EventKey};

/// How many stale streams one [`Hub::close_stale_streams`] ends at most.
const STALE_BATCH: usize = 256;

/// The payload of the `stream.error` the hub appends to a stream left
/// open.
const STALE_PAYLOAD: &str = r#"{"error":"stream timed out"}"#;

impl Hub {
    /// Appends an event to a message: a piece of a streamed reply, its end,
    /// a snapshot ([`crate::event`]).
    ///
    /// `event.channel` is the channel as the sender addresses it (a person
    /// channel by the other party's uid), as in a [`SendRequest`]. The
    /// message is the one `event.from_uid` sent there with
    /// `event.client_msg_no`: only its sender streams into a message, and
    /// only while still allowed to send to the channel. An
    /// `occurred_at_ms` of 0 takes the hub's clock.
    ///
    /// The event is stored, then handed to every online device of the
    /// channel's members (here and, through the router, on other nodes),
    /// in `msg_event_seq` order per message. A replayed `event_id` is
    /// answered as the first and delivered again to no one; an event for a
    /// stream that has ended stores nothing. When a stream ends, its folded
    /// content is stored with it, so that history shows the whole message.
    ///
    /// Like a send, the append runs to the end once begun, whether or not
    /// the caller still waits.
    ///
    /// Errors: the payload's limit ([`Limits`](crate::Limits)), `NotFound` for a message
    /// the sender did not send, the directory's refusal (its reason code),
    /// and the store's errors within [`HubConfig::store_deadline`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> imcore::Result<()> {
    /// use imcore::event::{NewEvent, EventOutcome, STREAM_DELTA};
    /// use imcore::{Channel, ChannelType, ClientMsgNo, EventId, Hub, SendRequest, Uid};
    /// let hub = Hub::builder().build()?;
    /// let (bot, alice) = (Uid::new("bot")?, Uid::new("alice")?);
    /// let to_alice = Channel::new(alice.into(), ChannelType::PERSON);
    /// let reply = ClientMsgNo::new("reply-1")?;
    /// hub.send(SendRequest::new(bot.clone(), to_alice.clone(), r#"{"type":1,"content":""}"#)
    ///     .client_msg_no(reply.clone())).await?;
    /// let delta = NewEvent::new(to_alice, reply, EventId::new("e1")?, STREAM_DELTA, bot,
    ///     r#"{"kind":"text","delta":"Hello"}"#)?;
    /// let appended = hub.append_event(delta).await?;
    /// assert_eq!((appended.outcome, appended.event.msg_event_seq), (EventOutcome::Appended, 1));
    /// # Ok(()) }
    /// ```
    pub async fn append_event(&self, mut event: NewEvent) -> Result<EventAppend> {
        let _work = self.start_work()?;
        let inner = &*self.inner;
        inner.config.limits.check_payload(&event.payload)?;
        let from = event.from_uid.clone();
        let channel = event.channel.stored_for(&from)?;
        party_to(&from, &channel)?;
        let permission = inner.directory.check_send(&from, &channel).await?;
        denied(permission, &from, &channel)?;
        let message = (from.clone(), channel.clone(), event.client_msg_no.clone());
        if !inner.known_messages.contains(&message) {
            let found = inner
                .store
                .get_by_client_msg_no(&from, &channel, &event.client_msg_no)
                .await?;
            if found.is_none() {
                return Err(Error::NotFound {
                    what: format!(
                        "message {:?} from {from} in {channel}",
                        event.client_msg_no.as_str()
                    ),
                });
            }
            inner.known_messages.insert(message);
        }
        event.channel = channel;
        // Like a send, it runs to the end in a task of its own: a caller
        // that stops waiting cannot leave it stored but undelivered.
        let hub = self.clone();
        run_to_end(async move { hub.append_found(event).await }).await
    }

    /// Appends an event to a message known to exist, delivers it, and
    /// stores the folded content of a stream it ends.
    async fn append_found(&self, mut event: NewEvent) -> Result<EventAppend> {
        let inner = &*self.inner;
        let now_ms = inner.clock.now_ms();
        if event.occurred_at_ms == 0 {
            event.occurred_at_ms = now_ms;
        }
        let channel = event.channel.clone();
        let recipients = self.recipients_of(&channel).await?;
        // The channel's turn orders this node's appends and deliveries of
        // one message.
        let turn = self.stripe(&channel).lock().await;
        let appended = self
            .within("append_event", inner.store.append_event(event, now_ms))
            .await?;
        if appended.outcome == EventOutcome::Appended {
            let shared = Arc::new(appended.event.clone());
            self.deliver_event_here(&shared, &recipients);
            inner.router.deliver_event(&shared, &recipients);
        }
        drop(turn);
        if appended.outcome == EventOutcome::Appended && appended.state.status.is_terminal() {
            self.store_final_snapshot(&channel, &appended).await?;
        }
        Ok(appended)
    }

    /// Folds a stream that has just ended and stores its content, so that
    /// history reads it without the stream's events.
    async fn store_final_snapshot(&self, channel: &Channel, appended: &EventAppend) -> Result<()> {
        let no = &appended.event.event.client_msg_no;
        let [folded] = self
            .fold_states(channel, no, vec![appended.state.clone()])
            .await?
            .try_into()
            .map_err(|_| Error::corrupt("one stream folded into several"))?;
        if let Some(snapshot) = folded.snapshot {
            let seq = folded.last_msg_event_seq;
            let key = &folded.event_key;
            self.inner
                .store
                .set_event_snapshot(channel, no, key, snapshot, seq)
                .await?;
        }
        Ok(())
    }

    /// Hands `event` to this node's devices of `recipients` in seq order
    /// per message ([`event_gate`](super::event_gate)).
    pub(super) fn deliver_event_here(&self, event: &Arc<StoredEvent>, recipients: &Arc<[Uid]>) {
        let mut gate = self.inner.event_gate.lock();
        let admitted = gate.admit(event.clone(), recipients.clone());
        if admitted.late {
            self.inner.counters.reordered(1, 0);
        }
        for (event, to) in &admitted.ready {
            self.hand_event(event, to);
        }
        drop(gate);
        if let (Some(key), Some(wait)) = (admitted.arm, self.inner.event_gate.wait()) {
            let hub = Arc::downgrade(&self.inner);
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let Some(inner) = hub.upgrade() else { return };
                let hub = Hub { inner };
                let mut gate = hub.inner.event_gate.lock();
                let held = gate.expire(&key);
                hub.inner.counters.reordered(0, u64::from(!held.is_empty()));
                for (event, to) in &held {
                    hub.hand_event(event, to);
                }
            });
        }
    }

    /// Hands `event` to this node's devices of `recipients`.
    fn hand_event(&self, event: &Arc<StoredEvent>, recipients: &[Uid]) {
        let mut failed = Vec::new();
        {
            let users = self.inner.sessions.read();
            for uid in recipients {
                for d in users.get(uid).into_iter().flatten() {
                    if let Err(e) = d.sink.deliver_event(event.clone()) {
                        failed.push((uid.clone(), d.connection, e));
                    }
                }
            }
        }
        self.drop_failed(failed);
    }

    /// The message's events with a seq above `after`, for `reader`, who
    /// must be allowed to read the channel (as addressed by the reader).
    /// Private and restricted events are left out unless
    /// `include_private`.
    pub async fn sync_events(
        &self,
        reader: &Uid,
        channel: &Channel,
        client_msg_no: &ClientMsgNo,
        after: u64,
        limit: usize,
        include_private: bool,
    ) -> Result<Vec<StoredEvent>> {
        let limit = self.page_limit(limit)?;
        let channel = self.readable(reader, channel).await?;
        let mut events = self
            .inner
            .store
            .events_after(&channel, client_msg_no, after, limit)
            .await?;
        if !include_private {
            events.retain(|e| e.event.visibility == crate::event::Visibility::Public);
        }
        Ok(events)
    }

    /// The states of one message's streams with their content folded to
    /// date: a stored snapshot that does not cover a stream's last event
    /// gets the events after it.
    pub(super) async fn fold_states(
        &self,
        channel: &Channel,
        client_msg_no: &ClientMsgNo,
        mut states: Vec<EventState>,
    ) -> Result<Vec<EventState>> {
        let behind = states
            .iter()
            .filter(|s| s.snapshot_seq < s.last_msg_event_seq)
            .map(|s| s.snapshot_seq)
            .min();
        let Some(from) = behind else {
            return Ok(states);
        };
        let mut events = Vec::new();
        let mut after = from;
        loop {
            let page = self
                .inner
                .store
                .events_after(channel, client_msg_no, after, 1000)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.msg_event_seq;
            events.extend(page);
        }
        for state in &mut states {
            if state.snapshot_seq >= state.last_msg_event_seq {
                continue;
            }
            let mine: Vec<StoredEvent> = events
                .iter()
                .filter(|e| {
                    e.event.event_key == state.event_key && e.msg_event_seq > state.snapshot_seq
                })
                .cloned()
                .collect();
            state.snapshot = fold(state.snapshot.take(), &mine);
            state.snapshot_seq = state.last_msg_event_seq;
        }
        Ok(states)
    }

    /// Fills in each message's event states (folded) for a page of
    /// history: one look-up for the page.
    pub(super) async fn merge_events(
        &self,
        channel: &Channel,
        page: &mut [HistoryMessage],
    ) -> Result<()> {
        if page.is_empty() || !self.inner.store.channel_has_events(channel).await? {
            return Ok(());
        }
        let nos: Vec<ClientMsgNo> = page.iter().map(|h| h.client_msg_no.clone()).collect();
        let states = self.inner.store.event_states(channel, &nos).await?;
        for (h, states) in page.iter_mut().zip(states) {
            if !states.is_empty() {
                h.events = self.fold_states(channel, &h.client_msg_no, states).await?;
            }
        }
        Ok(())
    }

    /// Ends every stream left open longer than
    /// [`HubConfig::stream_idle_timeout`] (by the hub's clock) with a
    /// `stream.error` (`{"error":"stream timed out"}`), delivered as any
    /// event, as its last sender. Returns how many it ended. A host calls
    /// it now and then (the example server every few seconds).
    pub async fn close_stale_streams(&self) -> Result<usize> {
        let Some(idle) = self.inner.config.stream_idle_timeout else {
            return Ok(0);
        };
        let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        let before = self.inner.clock.now_ms().saturating_sub(idle_ms);
        let stale = self.inner.store.stale_streams(before, STALE_BATCH).await?;
        let mut ended = 0;
        for open in stale {
            let id = EventId::new(format!(
                "{HUB_CLIENT_MSG_NO_PREFIX}stale:{}",
                open.event_key.as_str()
            ))
            .or_else(|_| EventId::new(format!("{HUB_CLIENT_MSG_NO_PREFIX}stale")))?;
            let event = NewEvent::new(
                open.channel,
                open.client_msg_no,
                id,
                STREAM_ERROR,
                open.from_uid,
                STALE_PAYLOAD,
            )?
            .event_key(EventKey::clone(&open.event_key));
            let appended = self.append_found(event).await?;
            if appended.outcome == EventOutcome::Appended {
                ended += 1;
            }
        }
        Ok(ended)
    }
}
