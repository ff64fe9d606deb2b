//! Sending: validate, classify, store, deliver, push, acknowledge.

use super::*;

use crate::store::Settle;

/// A send stored in its channel's turn, to finish: see [`Hub::finish`].
struct Staged {
    message: Message,
    persistence: Persistence,
    recipients: Arc<[Uid]>,
    skip: Option<ConnectionId>,
    /// When the store's work began.
    started: std::time::Instant,
    /// What makes a history send durable.
    settle: Option<Settle>,
    /// A resend of a message already stored: answered, not delivered.
    duplicate: bool,
    /// Resolves once the send before it in its channel has delivered.
    before: Option<oneshot::Receiver<()>>,
    /// Dropped once this send has delivered (or given up).
    delivered: oneshot::Sender<()>,
}

impl Hub {
    /// Sends a message.
    ///
    /// A `client_msg_no` starting with [`HUB_CLIENT_MSG_NO_PREFIX`] is
    /// refused: that space is the hub's own.
    ///
    /// The order: validate and check permission → classify with the policy
    /// → store as the policy says (history: once, in the channel's log,
    /// which moves the channel's head and the sender's read position;
    /// recipients' conversations and unread counts are derived from them
    /// at sync; command: every recipient's command queue; transient:
    /// nothing) → deliver to every online device of every recipient except
    /// the sending connection → hand recipients with no master device
    /// online to the offline notifier (history and commands) → acknowledge.
    ///
    /// A server-side command (no `from_connection`) is not queued for its
    /// own sender. A device send skips only the sender's own connection.
    ///
    /// A resend with the same `(from_uid, channel, client_msg_no)` and the
    /// same payload is acknowledged with the first send's id and seq, and
    /// neither stored nor delivered again; with another payload it is
    /// [`Error::Conflict`]. Refusals are [`Error::Rejected`] with
    /// WuKongIM's reason code; bad input (an empty payload included) is
    /// [`Error::Validation`]. A send over its sender's
    /// [`HubConfig::send_rate`] is [`Error::RateLimited`], refused before
    /// anything else is checked.
    pub async fn send(&self, request: SendRequest) -> Result<SendAck> {
        let mut acks = self.send_all(vec![request]).await;
        acks.pop()
            .unwrap_or_else(|| Err(Error::corrupt("a send was answered with nothing")))
    }

    /// Sends several messages in the order given, as one connection sends
    /// them: each takes its seq (in its channel) in that order, and is
    /// delivered in that order, while the store makes them durable
    /// together (one flush can cover them all, where [`Hub::send`] one
    /// after another waits for a flush each). Each is otherwise
    /// [`Hub::send`]: one answer per request, in the same order, and one
    /// refused does not stop the others.
    ///
    /// It runs to the end even if the caller stops waiting (a timeout, a
    /// dropped HTTP request): a message stored must not be left
    /// undelivered, since its resend would be acknowledged as a duplicate
    /// and delivered to no one.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> imcore::Result<()> {
    /// use imcore::{Channel, Hub, SendRequest, Uid};
    ///
    /// let hub = Hub::builder().build()?;
    /// let (alice, bob) = (Uid::new("alice")?, Uid::new("bob")?);
    /// let chat = Channel::person(&alice, &bob);
    /// let acks = hub
    ///     .send_all(vec![
    ///         SendRequest::new(alice.clone(), chat.clone(), "one"),
    ///         SendRequest::new(alice.clone(), chat.clone(), "two"),
    ///     ])
    ///     .await;
    /// let seqs: Vec<u64> = acks.into_iter().map(|a| a.map(|a| a.message_seq)).collect::<Result<_, _>>()?;
    /// assert_eq!(seqs, [1, 2]);
    /// # Ok(()) }
    /// ```
    pub async fn send_all(&self, requests: Vec<SendRequest>) -> Vec<Result<SendAck>> {
        let work = match self.start_work() {
            Ok(work) => work,
            Err(_) => return requests.iter().map(|_| Err(Error::Closed)).collect(),
        };
        let hub = self.clone();
        run_to_end(async move {
            let _work = work;
            // Each request takes its sender's token first, all at once:
            // one over the rate is refused before it is looked at.
            let admitted = hub.admit_all(&requests);
            let mut staged = Vec::with_capacity(requests.len());
            for (request, admitted) in requests.into_iter().zip(admitted) {
                let mut class = None;
                let stage = match admitted {
                    Ok(()) => hub.stage(request, &mut class).await,
                    Err(e) => Err(e),
                };
                staged.push((class, stage));
            }
            let mut acks = Vec::with_capacity(staged.len());
            for (class, stage) in staged {
                let result = match stage {
                    Ok(stage) => hub.finish(stage).await,
                    Err(e) => Err(e),
                };
                let duplicate = result.as_ref().is_ok_and(|ack| ack.duplicate);
                hub.inner.counters.send(class, &result, duplicate);
                acks.push(result);
            }
            acks
        })
        .await
    }

    /// A send up to its turn in the store, saying in `class` what the
    /// policy made of it.
    async fn stage(
        &self,
        mut request: SendRequest,
        class: &mut Option<Persistence>,
    ) -> Result<Staged> {
        let inner = &*self.inner;
        if request.payload.is_empty() {
            return Err(ValidationError::EmptyPayload.into());
        }
        inner.config.limits.check_payload(&request.payload)?;
        if let Some(no) = &request.client_msg_no {
            if no.as_str().starts_with(HUB_CLIENT_MSG_NO_PREFIX) {
                return Err(ValidationError::OutOfRange(
                    "client_msg_no starting with \"imcore:\" is reserved for the hub",
                )
                .into());
            }
        }
        let topic = match request.topic.take() {
            Some(topic) if topic.len() > MAX_TOPIC_LEN => {
                return Err(ValidationError::OutOfRange("a topic longer than 255 bytes").into())
            }
            topic => topic.filter(|t| !t.is_empty()),
        };
        let (channel, recipients) = self.resolve(&request).await?;
        let message_id = inner.ids.next_id();
        let client_msg_no = match request.client_msg_no {
            Some(no) => no,
            None => ClientMsgNo::new(format!("{HUB_CLIENT_MSG_NO_PREFIX}{message_id}"))?,
        };
        let message = Message {
            message_id,
            message_seq: 0,
            client_msg_no,
            from_uid: request.from_uid,
            channel,
            timestamp_ms: inner.clock.now_ms(),
            flags: request.flags,
            setting: request.setting.stored(),
            topic,
            payload: request.payload,
        };
        let persistence = inner.policy.classify(&message);
        *class = Some(persistence);
        let to_channel = matches!(request.target, Target::Channel(_));
        if persistence == Persistence::History && !to_channel {
            return Err(ValidationError::OutOfRange(
                "an explicit subscriber list names no channel, so it cannot carry history",
            )
            .into());
        }
        let mut recipients = recipients;
        if persistence == Persistence::Command
            && request.from_connection.is_none()
            && recipients.contains(&message.from_uid)
        {
            // A server-side sender (a system uid that is a member, so that
            // it may send) would otherwise queue every command it sends for
            // itself, with no device ever to acknowledge them.
            recipients = recipients
                .iter()
                .filter(|uid| **uid != message.from_uid)
                .cloned()
                .collect();
        }
        let skip = request.from_connection;
        self.store_in_turn(message, persistence, recipients, skip, to_channel)
            .await
    }

    /// Stores `message` as `persistence` says, delivers it and hands the
    /// offline recipients to the notifier. Permission has been checked.
    pub(super) async fn dispatch(
        &self,
        message: Message,
        persistence: Persistence,
        recipients: Arc<[Uid]>,
        skip: Option<ConnectionId>,
        to_channel: bool,
    ) -> Result<SendAck> {
        let staged = self
            .store_in_turn(message, persistence, recipients, skip, to_channel)
            .await?;
        self.finish(staged).await
    }

    /// Stores `message` as `persistence` says, in its channel's turn.
    ///
    /// Sends to one channel take their turn for the store (seq assignment)
    /// one at a time, and deliver in the same order, each after the one
    /// before it ([`Hub::finish`]): every device sees the channel in seq
    /// order. The turn is given up before the flush, so that one flush
    /// covers many sends to the channel.
    async fn store_in_turn(
        &self,
        mut message: Message,
        persistence: Persistence,
        recipients: Arc<[Uid]>,
        skip: Option<ConnectionId>,
        to_channel: bool,
    ) -> Result<Staged> {
        let inner = &*self.inner;
        let mut turn = match to_channel {
            true => Some(self.stripe(&message.channel).lock().await),
            false => None,
        };
        let (delivered, delivering) = oneshot::channel::<()>();
        let mut before = None;
        let take_turn = |turn: &mut Option<StripeGuard<'_>>| {
            if let Some(mut turn) = turn.take() {
                before = turn.replace(delivering);
            }
        };
        let started = std::time::Instant::now();
        let mut settle = None;
        let mut duplicate = false;
        let stored = match persistence {
            Persistence::History => {
                // One write whatever the channel's size: the log, the
                // channel's head and the sender's read position (read
                // diffusion: recipients' conversations are derived).
                let appended = self
                    .within(
                        "append",
                        inner.store.append_then_settle(vec![message.clone()]),
                    )
                    .await;
                take_turn(&mut turn);
                appended.and_then(|(appended, to_settle)| {
                    let appended = appended
                        .first()
                        .ok_or_else(|| Error::corrupt("the message log acknowledged nothing"))?;
                    message.message_id = appended.message_id;
                    message.message_seq = appended.message_seq;
                    duplicate = appended.duplicate;
                    settle = Some(to_settle);
                    Ok(())
                })
            }
            Persistence::Command => {
                let pushed = self
                    .within(
                        "push_command",
                        inner.store.push_command(&message, &recipients),
                    )
                    .await;
                take_turn(&mut turn);
                inner.counters.store_write(started.elapsed());
                pushed.map(|pushed| {
                    if pushed.duplicate {
                        message.message_id = pushed.message_id;
                        duplicate = true;
                    }
                })
            }
            Persistence::Transient => {
                // A real id, as WuKongIM gives one: clients key their
                // messages by it. Nothing is stored under it.
                take_turn(&mut turn);
                Ok(())
            }
        };
        if let Err(e) = stored {
            hand_on(before, delivered);
            return Err(e);
        }
        Ok(Staged {
            message,
            persistence,
            recipients,
            skip,
            started,
            settle,
            duplicate,
            before,
            delivered,
        })
    }

    /// Waits for a stored send to be durable and for the send before it
    /// in its channel to deliver, then delivers it and hands the offline
    /// recipients to the notifier.
    async fn finish(&self, staged: Staged) -> Result<SendAck> {
        let inner = &*self.inner;
        let Staged {
            message,
            persistence,
            recipients,
            skip,
            started,
            settle,
            duplicate,
            before,
            delivered,
        } = staged;
        if let Some(settle) = settle {
            let settled = self.within("flush", settle).await;
            inner.counters.store_write(started.elapsed());
            if let Err(e) = settled {
                hand_on(before, delivered);
                return Err(e);
            }
        }
        let ack = |message: &Message, duplicate: bool| SendAck {
            message_id: message.message_id,
            message_seq: message.message_seq,
            client_msg_no: message.client_msg_no.clone(),
            duplicate,
            persistence,
        };
        if duplicate {
            // Not delivered again, and answered now.
            hand_on(before, delivered);
            return Ok(ack(&message, true));
        }
        if persistence == Persistence::History && message.setting.receipt() {
            // Before it is delivered, so that no read comes before it.
            self.open_receipt(&message, &recipients).await;
        }
        if let Some(before) = before {
            // Its sender drops it once it has delivered, or given up.
            let _ = before.await;
        }
        let message = Arc::new(message);
        let push = persistence != Persistence::Transient && inner.notifier.enabled();
        let offline = self.route(&message, &recipients, skip, push);
        drop(delivered); // the next send to the channel may deliver
        if push && !offline.is_empty() {
            let notifier = inner.notifier.clone();
            let message = message.clone();
            let slot = self.push_slot().await;
            let work = self.more_work();
            tokio::spawn(async move {
                notifier.notify(message, offline).await;
                drop((slot, work));
            });
        }
        Ok(ack(&message, false))
    }

    pub(super) fn stripe(&self, channel: &Channel) -> &Stripe {
        let i = self.inner.hasher.hash_one(channel) as usize % CHANNEL_STRIPES;
        &self.inner.stripes[i]
    }

    /// Checks the request and finds the stored channel and the recipients.
    async fn resolve(&self, request: &SendRequest) -> Result<(Channel, Arc<[Uid]>)> {
        let from = &request.from_uid;
        match &request.target {
            Target::Subscribers(list) => {
                if request.from_connection.is_some() || !request.flags.sync_once {
                    return Err(ValidationError::OutOfRange(
                        "an explicit subscriber list is for server-side commands (sync_once) only",
                    )
                    .into());
                }
                let mut seen = HashSet::with_capacity(list.len());
                let recipients: Arc<[Uid]> =
                    list.iter().filter(|u| seen.insert(*u)).cloned().collect();
                Ok((
                    Channel::new(from.clone().into(), ChannelType::PERSON),
                    recipients,
                ))
            }
            Target::Channel(addressed) => {
                let channel = addressed.stored_for(from)?;
                party_to(from, &channel)?;
                let permission = self.inner.directory.check_send(from, &channel).await?;
                denied(permission, from, &channel)?;
                let recipients = self.recipients_of(&channel).await?;
                Ok((channel, recipients))
            }
        }
    }

    /// Everyone who receives what is sent to a stored channel: the parties
    /// of a person channel, the directory's subscribers of any other. The
    /// directory's list is shared, not copied: a group of 10,000 would
    /// otherwise cost 10,000 reference-count updates per send.
    pub async fn recipients_of(&self, channel: &Channel) -> Result<Arc<[Uid]>> {
        Ok(match channel.person_parties() {
            Some((a, b)) if a == b => Arc::from([a]),
            Some((a, b)) => Arc::from([a, b]),
            None => self.inner.directory.subscribers(channel).await?,
        })
    }

    /// Hands `message` to every online device of `recipients` but `skip`.
    /// Returns the recipients (never the sender) with no master online, if
    /// `collect_offline` asks for them.
    pub(super) fn deliver(
        &self,
        message: &Arc<Message>,
        recipients: &[Uid],
        skip: Option<ConnectionId>,
        collect_offline: bool,
    ) -> Vec<Uid> {
        let mut offline = Vec::new();
        let mut failed = Vec::new();
        let mut delivered = 0;
        {
            let users = self.inner.sessions.read();
            for uid in recipients {
                let is_sender = *uid == message.from_uid;
                let Some(devices) = users.get(uid) else {
                    if collect_offline && !is_sender {
                        offline.push(uid.clone());
                    }
                    continue;
                };
                let mut master = false;
                for d in devices {
                    // Only the sender's own connection is skipped: naming
                    // someone else's connection suppresses nothing.
                    // (The sender is never pushed, so its skipped device
                    // need not count.)
                    if is_sender && Some(d.connection) == skip {
                        continue;
                    }
                    // A master that did not take the message (and is
                    // dropped for it) does not count as online for push.
                    match d.sink.deliver(message.clone()) {
                        Ok(()) => {
                            delivered += 1;
                            master |= d.level == DeviceLevel::Master;
                        }
                        Err(e) => failed.push((uid.clone(), d.connection, e)),
                    }
                }
                if collect_offline && !master && !is_sender {
                    offline.push(uid.clone());
                }
            }
        }
        self.inner.counters.delivered(delivered);
        self.drop_failed(failed);
        offline
    }

    /// Disconnects the devices that did not take a delivery: a full queue
    /// is a slow consumer.
    pub(super) fn drop_failed(&self, failed: Vec<(Uid, ConnectionId, SinkError)>) {
        for (uid, connection, error) in failed {
            let reason = match error {
                SinkError::Full => {
                    self.inner.counters.slow_consumer();
                    Some(DisconnectReason::SlowConsumer)
                }
                SinkError::Closed => None,
            };
            if self.inner.sessions.disconnect(&uid, connection, reason) {
                self.inner.router.presence_changed(&uid, None);
            }
        }
    }
}

/// Lets the channel's next send deliver once the send before this one has,
/// for a send that ends without delivering (a duplicate, a failure):
/// dropping `delivered` at once would let the next send overtake a send
/// still being made durable, and a device would see its seqs out of order.
fn hand_on(before: Option<oneshot::Receiver<()>>, delivered: oneshot::Sender<()>) {
    match before {
        Some(before) => {
            tokio::spawn(async move {
                let _ = before.await;
                drop(delivered);
            });
        }
        None => drop(delivered),
    }
}
