//! The hub: the façade a host links in. It sends, delivers and syncs.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};
use crate::directory::{Directory, MemoryDirectory, Permission};
use crate::error::{Error, Result, ValidationError};
use crate::id::MessageIdGenerator;
use crate::model::{Channel, ChannelType, ClientMsgNo, Flags, Limits, Message, MessageId, Uid};
use crate::notify::{NoPush, OfflineNotifier};
use crate::policy::{Persistence, PersistencePolicy, WuKongPolicy};
use crate::reason::ReasonCode;
use crate::revoke::{
    revoke_command_payload, revoke_tip_payload, Authorizer, Decision, DefaultRevokeRules,
    RevokeContext, RevokeOutcome, RevokeRefusal, RevokeRequest, RevokeTarget,
};
use crate::session::{
    in_process, ConnectionId, Device, DeviceFlag, DeviceLevel, DeviceSink, DisconnectReason,
    InProcessConnection, LoginTicket, Sessions, SinkError,
};
use crate::store::{
    check_limit, Conversation, MemoryStore, NewRevocation, Page, QueuedCommand, Recorded,
    Revocation, Store,
};

/// The prefix of the client_msg_nos the hub makes itself (for server-side
/// sends without one, and for revocation commands and tips). Callers may not
/// use it, so that the hub's own messages never collide with theirs in
/// resend detection.
pub const HUB_CLIENT_MSG_NO_PREFIX: &str = "imcore:";

/// Number of lock stripes that serialise sends per channel.
const CHANNEL_STRIPES: usize = 256;

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// A channel, as the sender addresses it (a person channel by the other
    /// party's uid, or in its stored form).
    Channel(Channel),
    /// An explicit list of users, for server-side commands only: the message
    /// names no channel. Each recipient sees it in a person channel named by
    /// the sender's uid.
    Subscribers(Vec<Uid>),
}

/// A message to send. Build it with [`SendRequest::new`] or
/// [`SendRequest::command_to`] and the setters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRequest {
    /// The sender, authenticated by the host.
    pub from_uid: Uid,
    /// The sending device's connection, so that it is not sent its own
    /// message; `None` for a server-side send.
    pub from_connection: Option<ConnectionId>,
    /// Where it goes.
    pub target: Target,
    /// Header flags. [`SendRequest::new`] uses [`Flags::normal`].
    pub flags: Flags,
    /// The sender's number for the message; `None` lets the hub make one
    /// (server-side sends). Resends with the same number are recognised.
    pub client_msg_no: Option<ClientMsgNo>,
    /// The payload.
    pub payload: Bytes,
}

impl SendRequest {
    /// A normal message (history, red dot) from `from_uid` to `channel`.
    ///
    /// Note the default: this is `sync_once=0`, a message clients keep.
    /// WuKongIM's HTTP `/message/send` defaults to `sync_once=1` (a
    /// pass-through command, absent from history after a refresh); set
    /// [`Flags::command`] with [`SendRequest::flags`] for that.
    pub fn new(from_uid: Uid, channel: Channel, payload: impl Into<Bytes>) -> Self {
        SendRequest {
            from_uid,
            from_connection: None,
            target: Target::Channel(channel),
            flags: Flags::normal(),
            client_msg_no: None,
            payload: payload.into(),
        }
    }

    /// A server-side command (`sync_once`) to an explicit list of users.
    pub fn command_to(from_uid: Uid, subscribers: Vec<Uid>, payload: impl Into<Bytes>) -> Self {
        SendRequest {
            from_uid,
            from_connection: None,
            target: Target::Subscribers(subscribers),
            flags: Flags::command(),
            client_msg_no: None,
            payload: payload.into(),
        }
    }

    /// Sets the flags.
    pub fn flags(mut self, flags: Flags) -> Self {
        self.flags = flags;
        self
    }

    /// Sets the client's message number.
    pub fn client_msg_no(mut self, client_msg_no: ClientMsgNo) -> Self {
        self.client_msg_no = Some(client_msg_no);
        self
    }

    /// Marks the send as coming from this connection.
    pub fn from_connection(mut self, connection: ConnectionId) -> Self {
        self.from_connection = Some(connection);
        self
    }
}

/// The answer to a send, as WuKongIM's SENDACK carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendAck {
    /// The message's id; 0 for a transient message.
    pub message_id: MessageId,
    /// Its channel seq; 0 for commands and transient messages.
    pub message_seq: u64,
    /// The client's number for it (made by the hub if the request had none).
    pub client_msg_no: ClientMsgNo,
    /// Always [`ReasonCode::SUCCESS`]; refusals are `Err(Error::Rejected)`.
    pub reason: ReasonCode,
    /// `true` when this was a resend: the ids are the first send's, and
    /// nothing was stored or delivered again.
    pub duplicate: bool,
    /// How the message was kept.
    pub persistence: Persistence,
}

/// A conversation as one user sees it, with its last message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationView {
    /// The channel as this user calls it (a person channel by the other
    /// party's uid).
    pub channel: Channel,
    /// The stored entry (its `channel` is the stored form).
    pub conversation: Conversation,
    /// The last message, read from the log when the view was made, with its
    /// revocation state merged.
    pub last_message: Option<HistoryMessage>,
}

/// A message read from history, with its revocation state merged in.
///
/// It dereferences to the [`Message`]. When the message was revoked and the
/// hub strips revoked payloads (the default), `payload` is empty: revoked
/// content never leaves the crate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryMessage {
    /// The message (payload removed if revoked and stripped).
    pub message: Message,
    /// Its revocation, if revoked.
    pub revoked: Option<Revocation>,
}

impl std::ops::Deref for HistoryMessage {
    type Target = Message;
    fn deref(&self) -> &Message {
        &self.message
    }
}

/// The hub's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// This process's node number for message ids (0 to 1023). Default 1.
    pub node_id: u16,
    /// Input limits.
    pub limits: Limits,
    /// The largest page a sync call returns; larger limits are cut to it.
    /// Default 1000.
    pub max_page: usize,
    /// How long after its timestamp a message may be revoked, in
    /// milliseconds; 0 means no limit. Default 120,000 (two minutes).
    pub revoke_window_ms: u64,
    /// Also append a tip message (content type 1006, "{0}撤回了一条消息") to
    /// the channel when a message is revoked. Default off.
    pub revoke_tip: bool,
    /// Remove the payload of revoked messages from history reads. Default
    /// on.
    pub strip_revoked_payload: bool,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            node_id: 1,
            limits: Limits::default(),
            max_page: 1000,
            revoke_window_ms: 120_000,
            revoke_tip: false,
            strip_revoked_payload: true,
        }
    }
}

/// Builds a [`Hub`]. Every part has a default: a [`MemoryStore`], an empty
/// [`MemoryDirectory`], no offline push, [`WuKongPolicy`],
/// [`DefaultRevokeRules`], the system clock and [`HubConfig::default`].
#[derive(Debug, Default)]
pub struct HubBuilder {
    store: Option<Arc<dyn Store>>,
    directory: Option<Arc<dyn Directory>>,
    notifier: Option<Arc<dyn OfflineNotifier>>,
    policy: Option<Arc<dyn PersistencePolicy>>,
    clock: Option<Arc<dyn Clock>>,
    authorizer: Option<Arc<dyn Authorizer>>,
    config: HubConfig,
}

impl HubBuilder {
    /// Who may revoke what. Default [`DefaultRevokeRules`].
    pub fn authorizer(mut self, authorizer: Arc<dyn Authorizer>) -> Self {
        self.authorizer = Some(authorizer);
        self
    }

    /// The storage backend.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The membership and permission directory.
    pub fn directory(mut self, directory: Arc<dyn Directory>) -> Self {
        self.directory = Some(directory);
        self
    }

    /// The offline push hook.
    pub fn notifier(mut self, notifier: Arc<dyn OfflineNotifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// The persistence policy.
    pub fn policy(mut self, policy: Arc<dyn PersistencePolicy>) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The clock (message timestamps, ids).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The settings.
    pub fn config(mut self, config: HubConfig) -> Self {
        self.config = config;
        self
    }

    /// Builds the hub. Fails only for an invalid config (a node id above
    /// 1023, a zero `max_page`).
    pub fn build(self) -> Result<Hub> {
        check_limit(self.config.max_page)?;
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        Ok(Hub {
            inner: Arc::new(Inner {
                ids: MessageIdGenerator::with_clock(self.config.node_id, clock.clone())?,
                store: self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
                directory: self
                    .directory
                    .unwrap_or_else(|| Arc::new(MemoryDirectory::new())),
                notifier: self.notifier.unwrap_or_else(|| Arc::new(NoPush)),
                policy: self.policy.unwrap_or_else(|| Arc::new(WuKongPolicy)),
                authorizer: self
                    .authorizer
                    .unwrap_or_else(|| Arc::new(DefaultRevokeRules)),
                clock,
                config: self.config,
                sessions: Sessions::default(),
                stripes: (0..CHANNEL_STRIPES)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
                hasher: RandomState::new(),
            }),
        })
    }
}

/// The core of an IM server: send, deliver, sync.
///
/// A `Hub` is cheap to clone (it is an `Arc`) and safe to use from many
/// tasks. See the crate's README for the send order and the flag table.
///
/// ```
/// use std::sync::Arc;
/// use imcore::directory::MemoryDirectory;
/// use imcore::hub::{Hub, SendRequest};
/// use imcore::session::{Device, DeviceFlag};
/// use imcore::{Channel, DeviceId, Uid};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> imcore::Result<()> {
/// let directory = Arc::new(MemoryDirectory::new());
/// let hub = Hub::builder().directory(directory.clone()).build()?;
/// let (alice, bob) = (Uid::new("alice")?, Uid::new("bob")?);
/// let group = Channel::group("g1")?;
/// directory.create_channel(&group, &alice, [bob.clone()]);
///
/// let bob_phone = Device::master(bob.clone(), DeviceId::new("phone")?, DeviceFlag::App);
/// let (_, mut bob_conn) = hub.connect_in_process(bob_phone, 64);
///
/// let ack = hub.send(SendRequest::new(alice, group.clone(), "hello")).await?;
/// assert_eq!(ack.message_seq, 1);
/// let got = bob_conn.recv().await.unwrap();
/// assert_eq!(got.payload.as_ref(), b"hello");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    directory: Arc<dyn Directory>,
    notifier: Arc<dyn OfflineNotifier>,
    policy: Arc<dyn PersistencePolicy>,
    authorizer: Arc<dyn Authorizer>,
    clock: Arc<dyn Clock>,
    ids: MessageIdGenerator,
    config: HubConfig,
    sessions: Sessions,
    stripes: Box<[tokio::sync::Mutex<()>]>,
    hasher: RandomState,
}

/// Runs `work` to the end even if the caller stops waiting (a timeout, a
/// dropped HTTP request), so that nothing is left stored but untold.
///
/// The work runs in the caller's task, with no hand-off to another thread
/// (a hand-off costs two context switches per send); only if the caller
/// drops it half-way is the rest moved into a task of its own.
async fn run_to_end<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    RunToEnd(Some(Box::pin(work))).await
}

type Work<T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send>>;

/// See [`run_to_end`].
struct RunToEnd<T: Send + 'static>(Option<Work<T>>);

impl<T: Send + 'static> std::future::Future for RunToEnd<T> {
    type Output = Result<T>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<T>> {
        let Some(work) = self.0.as_mut() else {
            return std::task::Poll::Ready(Err(Error::Storage {
                backend: "hub",
                source: "polled after completion".into(),
            }));
        };
        let out = work.as_mut().poll(cx);
        if out.is_ready() {
            self.0 = None;
        }
        out
    }
}

impl<T: Send + 'static> Drop for RunToEnd<T> {
    fn drop(&mut self) {
        if let Some(rest) = self.0.take() {
            // The caller gave up half-way: finish in a task of its own. A
            // hub runs inside a tokio runtime (its sends need one), so
            // there is one to spawn on unless the runtime itself is going.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = rest.await;
                });
            }
        }
    }
}

/// Whether `message` is the hub's own revocation tip (content type 1006),
/// which is not itself revocable.
fn is_revoke_tip(message: &Message) -> bool {
    #[derive(Deserialize)]
    struct Content {
        r#type: Option<i64>,
    }
    message
        .client_msg_no
        .as_str()
        .starts_with(HUB_CLIENT_MSG_NO_PREFIX)
        && matches!(
            serde_json::from_slice::<Content>(&message.payload),
            Ok(Content {
                r#type: Some(crate::revoke::REVOKE_TIP_CONTENT_TYPE)
            })
        )
}

/// A person channel is only ever the business of its two parties: no
/// directory is asked to let a third user write to or read it.
fn party_to(uid: &Uid, channel: &Channel) -> Result<()> {
    match channel.person_parties() {
        Some((a, b)) if *uid != a && *uid != b => {
            Err(Error::rejected(ReasonCode::SUBSCRIBER_NOT_EXIST))
        }
        _ => Ok(()),
    }
}

fn denied(p: Permission) -> Result<()> {
    match p {
        Permission::Allowed => Ok(()),
        Permission::Denied(reason) => Err(Error::rejected(reason)),
    }
}

impl Hub {
    /// A builder with every part at its default.
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    /// The store the hub writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The directory the hub asks.
    pub fn directory(&self) -> &Arc<dyn Directory> {
        &self.inner.directory
    }

    /// The hub's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The hub's settings.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    // ---- connections ----

    /// Registers a device's connection. A connection with the same device
    /// id is replaced (and closed with [`DisconnectReason::Replaced`]); a
    /// master login closes the user's other devices of the same flag with
    /// [`DisconnectReason::Kicked`] (reason 12).
    pub fn connect(&self, device: Device, sink: Arc<dyn DeviceSink>) -> ConnectionId {
        self.inner.sessions.connect(device, sink)
    }

    /// A ticket for a login of `uid`, to take **before** checking the
    /// user's credential, and to hand to [`Hub::connect_checked`].
    ///
    /// A logout is "forget the credential, then [`Hub::kick`]". A login is
    /// "check the credential, then connect". Without the ticket a kick can
    /// fall between the login's two steps, find nothing to close, and the
    /// login then registers with a credential that no longer exists.
    pub fn login_ticket(&self, uid: &Uid) -> LoginTicket {
        self.inner.sessions.login_ticket(uid)
    }

    /// [`Hub::connect`], unless `uid` may have been kicked since `ticket`
    /// was taken: then nothing is registered and `None` is returned, and
    /// the caller checks the credential again with a new ticket (a kick
    /// of another user can share the ticket's stripe, so a second check
    /// usually succeeds; a logged-out user's fails).
    ///
    /// ```
    /// use imcore::{Device, DeviceFlag, DeviceId, Hub, Uid};
    /// # fn main() -> imcore::Result<()> {
    /// let hub = Hub::builder().build()?;
    /// let alice = Uid::new("alice")?;
    /// let ticket = hub.login_ticket(&alice);
    /// // ... the credential is checked here; meanwhile a logout kicks alice:
    /// hub.kick(&alice, None);
    /// let (sink, _conn) = imcore::session::in_process(8);
    /// let device = Device::master(alice, DeviceId::new("phone")?, DeviceFlag::App);
    /// assert!(hub.connect_checked(ticket, device, sink).is_none());
    /// # Ok(()) }
    /// ```
    pub fn connect_checked(
        &self,
        ticket: LoginTicket,
        device: Device,
        sink: Arc<dyn DeviceSink>,
    ) -> Option<ConnectionId> {
        self.inner.sessions.connect_checked(ticket, device, sink)
    }

    /// [`Hub::connect`] over the in-process transport with a queue of
    /// `capacity` messages.
    pub fn connect_in_process(
        &self,
        device: Device,
        capacity: usize,
    ) -> (ConnectionId, InProcessConnection) {
        let (sink, conn) = in_process(capacity);
        (self.connect(device, sink), conn)
    }

    /// Forgets a connection (the client went away). Returns whether it was
    /// still registered; a connection already replaced is left alone.
    pub fn disconnect(&self, uid: &Uid, connection: ConnectionId) -> bool {
        self.inner.sessions.disconnect(uid, connection, None)
    }

    /// Closes every connection of `uid`, or only those of one device kind,
    /// with [`DisconnectReason::Kicked`] (reason 12: a WuKongIM client then
    /// stops reconnecting): a logout or a ban by the host. Returns how many
    /// connections were closed. Revoke the user's token first, or the
    /// client can simply log in again.
    ///
    pub fn kick(&self, uid: &Uid, flag: Option<DeviceFlag>) -> usize {
        self.inner
            .sessions
            .disconnect_user(uid, flag, DisconnectReason::Kicked)
    }

    /// The online devices of `uid`.
    pub fn online_devices(&self, uid: &Uid) -> Vec<Device> {
        self.inner.sessions.devices_of(uid)
    }

    /// How many connections are registered.
    pub fn connection_count(&self) -> usize {
        self.inner.sessions.connection_count()
    }

    // ---- sending ----

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
    /// A resend with the same `(from_uid, client_msg_no)` is acknowledged
    /// with the first send's id and seq, and neither stored nor delivered
    /// again. Refusals are [`Error::Rejected`] with WuKongIM's reason code;
    /// bad input is [`Error::Validation`].
    pub async fn send(&self, request: SendRequest) -> Result<SendAck> {
        let inner = &*self.inner;
        inner.config.limits.check_payload(&request.payload)?;
        if let Some(no) = &request.client_msg_no {
            if no.as_str().starts_with(HUB_CLIENT_MSG_NO_PREFIX) {
                return Err(ValidationError::OutOfRange(
                    "client_msg_no starting with \"imcore:\" is reserved for the hub",
                )
                .into());
            }
        }
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
            payload: request.payload,
        };
        let persistence = inner.policy.classify(&message);
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
        if persistence == Persistence::Transient {
            // Nothing is stored, and delivery does not await: a caller that
            // stops waiting can only stop it before it starts.
            return self
                .dispatch(message, persistence, &recipients, skip, to_channel)
                .await;
        }
        // A send that stores runs to the end in a task of its own: a caller
        // that stops waiting (a timeout, a dropped HTTP request) must not
        // leave a stored message undelivered, since its resend would then
        // be acknowledged as a duplicate and delivered to no one.
        let hub = self.clone();
        run_to_end(async move {
            hub.dispatch(message, persistence, &recipients, skip, to_channel)
                .await
        })
        .await
    }

    /// Stores `message` as `persistence` says, delivers it and hands the
    /// offline recipients to the notifier. Permission has been checked.
    async fn dispatch(
        &self,
        mut message: Message,
        persistence: Persistence,
        recipients: &[Uid],
        skip: Option<ConnectionId>,
        to_channel: bool,
    ) -> Result<SendAck> {
        let inner = &*self.inner;
        // Sends to one channel are serialised from seq assignment to
        // delivery, so that every device sees the channel in seq order.
        let _guard = if to_channel {
            Some(self.stripe(&message.channel).lock().await)
        } else {
            None
        };
        let ack = |message: &Message, duplicate: bool| SendAck {
            message_id: message.message_id,
            message_seq: message.message_seq,
            client_msg_no: message.client_msg_no.clone(),
            reason: ReasonCode::SUCCESS,
            duplicate,
            persistence,
        };
        match persistence {
            Persistence::History => {
                // One write whatever the channel's size: the log, the
                // channel's head and the sender's read position (read
                // diffusion: recipients' conversations are derived).
                let appended = inner.store.append(vec![message.clone()]).await?;
                let Some(appended) = appended.first() else {
                    return Err(Error::corrupt("the message log acknowledged nothing"));
                };
                message.message_id = appended.message_id;
                message.message_seq = appended.message_seq;
                if appended.duplicate {
                    return Ok(ack(&message, true));
                }
            }
            Persistence::Command => {
                let pushed = inner.store.push_command(&message, recipients).await?;
                if pushed.duplicate {
                    message.message_id = pushed.message_id;
                    return Ok(ack(&message, true));
                }
            }
            Persistence::Transient => {
                message.message_id = MessageId(0);
            }
        }
        let message = Arc::new(message);
        let push = persistence != Persistence::Transient && inner.notifier.enabled();
        let offline = self.deliver(&message, recipients, skip, push);
        if push && !offline.is_empty() {
            let notifier = inner.notifier.clone();
            let message = message.clone();
            tokio::spawn(async move { notifier.notify(message, offline).await });
        }
        Ok(ack(&message, false))
    }

    fn stripe(&self, channel: &Channel) -> &tokio::sync::Mutex<()> {
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
                denied(self.inner.directory.check_send(from, &channel).await?)?;
                let recipients = self.recipients_of(&channel).await?;
                Ok((channel, recipients))
            }
        }
    }

    /// Everyone who receives what is sent to a stored channel. The
    /// directory's list is shared, not copied: a group of 10,000 would
    /// otherwise cost 10,000 reference-count updates per send.
    async fn recipients_of(&self, channel: &Channel) -> Result<Arc<[Uid]>> {
        Ok(match channel.person_parties() {
            Some((a, b)) if a == b => Arc::from([a]),
            Some((a, b)) => Arc::from([a, b]),
            None => self.inner.directory.subscribers(channel).await?,
        })
    }

    /// Hands `message` to every online device of `recipients` but `skip`.
    /// Returns the recipients (never the sender) with no master online, if
    /// `collect_offline` asks for them.
    fn deliver(
        &self,
        message: &Arc<Message>,
        recipients: &[Uid],
        skip: Option<ConnectionId>,
        collect_offline: bool,
    ) -> Vec<Uid> {
        let mut offline = Vec::new();
        let mut failed = Vec::new();
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
                        Ok(()) => master |= d.level == DeviceLevel::Master,
                        Err(e) => failed.push((uid.clone(), d.connection, e)),
                    }
                }
                if collect_offline && !master && !is_sender {
                    offline.push(uid.clone());
                }
            }
        }
        for (uid, connection, error) in failed {
            let reason = match error {
                SinkError::Full => Some(DisconnectReason::SlowConsumer),
                SinkError::Closed => None,
            };
            self.inner.sessions.disconnect(&uid, connection, reason);
        }
        offline
    }

    // ---- acknowledgements and sync ----

    /// A device acknowledges a message it received. For a command (seq 0)
    /// acknowledged by a master device, the command is consumed for the
    /// user: removed from the queue, never delivered or synced again. A
    /// slave's acknowledgement, or one of a history message, changes
    /// nothing (history is caught up by seq). Returns whether a command
    /// was consumed.
    pub async fn ack(
        &self,
        uid: &Uid,
        connection: ConnectionId,
        message_id: MessageId,
        message_seq: u64,
    ) -> Result<bool> {
        if message_seq != 0 {
            return Ok(false);
        }
        if self.inner.sessions.level_of(uid, connection) != Some(DeviceLevel::Master) {
            return Ok(false);
        }
        Ok(self.inner.store.remove_commands(uid, &[message_id]).await? > 0)
    }

    /// The user's pending commands with a cursor above `after`.
    pub async fn sync_commands(
        &self,
        uid: &Uid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<QueuedCommand>> {
        let limit = self.page_limit(limit)?;
        self.inner.store.pending_commands(uid, after, limit).await
    }

    /// The user acknowledges commands up to `cursor` after a command sync:
    /// they are consumed. Returns how many.
    pub async fn ack_commands(&self, uid: &Uid, cursor: u64) -> Result<usize> {
        self.inner.store.ack_commands(uid, cursor).await
    }

    /// A page of a channel's history for `reader`, who must be allowed to
    /// read it. `channel` is as the reader addresses it. Revocation state is
    /// merged with one batch look-up for the page; revoked payloads are
    /// removed unless the config keeps them.
    pub async fn sync_channel(
        &self,
        reader: &Uid,
        channel: &Channel,
        page: Page,
    ) -> Result<Vec<HistoryMessage>> {
        let limit = self.page_limit(page.limit)?;
        let channel = self.readable(reader, channel).await?;
        let messages = self
            .inner
            .store
            .read(&channel, Page { limit, ..page })
            .await?;
        // One range look-up of the page's seqs in the channel's revocations.
        let (Some(lo), Some(hi)) = (
            messages.iter().map(|m| m.message_seq).min(),
            messages.iter().map(|m| m.message_seq).max(),
        ) else {
            return Ok(Vec::new());
        };
        let mut revoked: std::collections::HashMap<MessageId, Revocation> = self
            .inner
            .store
            .revocations_between(&channel, lo, hi)
            .await?
            .into_iter()
            .map(|r| (r.message_id, r))
            .collect();
        let found = messages
            .iter()
            .map(|m| revoked.remove(&m.message_id))
            .collect();
        Ok(self.mark_revoked(messages, found))
    }

    /// The stored form of `channel`, if `reader` may read it.
    async fn readable(&self, reader: &Uid, channel: &Channel) -> Result<Channel> {
        let channel = channel.stored_for(reader)?;
        party_to(reader, &channel)?;
        denied(self.inner.directory.check_read(reader, &channel).await?)?;
        Ok(channel)
    }

    /// Marks revoked messages, with one look-up for all of them.
    async fn merge_revocations(&self, messages: Vec<Message>) -> Result<Vec<HistoryMessage>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<MessageId> = messages.iter().map(|m| m.message_id).collect();
        let revocations = self.inner.store.lookup_revocations(&ids).await?;
        Ok(self.mark_revoked(messages, revocations))
    }

    /// Pairs each message with its revocation, removing revoked payloads
    /// unless the config keeps them.
    fn mark_revoked(
        &self,
        messages: Vec<Message>,
        revocations: Vec<Option<Revocation>>,
    ) -> Vec<HistoryMessage> {
        let strip = self.inner.config.strip_revoked_payload;
        messages
            .into_iter()
            .zip(revocations)
            .map(|(mut message, revoked)| {
                if revoked.is_some() && strip {
                    message.payload = Bytes::new();
                }
                HistoryMessage { message, revoked }
            })
            .collect()
    }

    /// A channel's revocations after `extra_version`, ascending: the
    /// incremental sync of revocation state, for a reader who may read the
    /// channel.
    pub async fn sync_revocations(
        &self,
        reader: &Uid,
        channel: &Channel,
        extra_version: u64,
        limit: usize,
    ) -> Result<Vec<Revocation>> {
        let limit = self.page_limit(limit)?;
        let channel = self.readable(reader, channel).await?;
        self.inner
            .store
            .revocations_after(&channel, extra_version, limit)
            .await
    }

    /// The user's conversations changed after `version`, ascending, each
    /// with its last message.
    pub async fn sync_conversations(
        &self,
        uid: &Uid,
        version: u64,
        limit: usize,
    ) -> Result<Vec<ConversationView>> {
        let limit = self.page_limit(limit)?;
        let groups = self.inner.directory.channels_of(uid).await?;
        let conversations = self
            .inner
            .store
            .conversations_after(uid, &groups, version, limit)
            .await?;
        let mut last = Vec::with_capacity(conversations.len());
        for c in &conversations {
            // By channel and seq: one look-up in the channel's log.
            let page = Page::forward(c.last_seq, 1);
            let found = self.inner.store.read(&c.channel, page).await?.pop();
            last.push(found.filter(|m| m.message_id == c.last_message_id));
        }
        // One revocation look-up for the whole page.
        let mut merged = self
            .merge_revocations(last.iter().flatten().cloned().collect())
            .await?
            .into_iter();
        Ok(conversations
            .into_iter()
            .zip(last)
            .map(|(conversation, found)| ConversationView {
                channel: conversation.channel.as_seen_by(uid),
                conversation,
                last_message: found.and_then(|_| merged.next()),
            })
            .collect())
    }

    /// The user has read `channel` (as the user addresses it) up to seq
    /// `read_seq`, as WuKongIM's `clearUnread` says it: messages after it
    /// stay unread (`u64::MAX` clears everything). Returns `false` when the
    /// user has no such conversation.
    pub async fn clear_unread(&self, uid: &Uid, channel: &Channel, read_seq: u64) -> Result<bool> {
        let channel = channel.stored_for(uid)?;
        self.inner.store.clear_unread(uid, &channel, read_seq).await
    }

    // ---- revocation ----

    /// Revokes a message.
    ///
    /// The requester is authenticated by the host. The order: find the
    /// message (commands and transient messages are
    /// [`RevokeRefusal::NotRevocable`]) → ask the [`Authorizer`] with both
    /// users' roles → if already revoked, answer with the first record →
    /// check the window (unless the authorizer allowed any time) → record
    /// the revocation durably with the channel's next `extra_version` →
    /// only then send the `messageRevoke` command (sync_once) to every
    /// member's every device, and the type-1006 tip if configured.
    ///
    /// Two concurrent revocations of one message make one record and one
    /// command. The command and tip carry client_msg_nos derived from the
    /// message id, so a revocation retried after a crash between recording
    /// and telling sends what was missing, and nothing twice.
    ///
    /// Like a send, a revocation runs to the end in a task of its own: a
    /// caller that stops waiting cannot leave it recorded but untold (its
    /// retry would find the command already queued and deliver nothing).
    pub async fn revoke(&self, request: RevokeRequest) -> Result<RevokeOutcome> {
        let hub = self.clone();
        run_to_end(async move { hub.revoke_now(request).await }).await
    }

    async fn revoke_now(&self, request: RevokeRequest) -> Result<RevokeOutcome> {
        let inner = &*self.inner;
        let requester = &request.requester;
        let message = self.find_revocable(&request).await?;
        let channel = &message.channel;
        let ctx = RevokeContext {
            requester,
            message: &message,
            requester_role: inner.directory.role(channel, requester).await?,
            sender_role: inner.directory.role(channel, &message.from_uid).await?,
        };
        let decision = inner.authorizer.authorize(&ctx).await?;
        if decision == Decision::Deny {
            return Err(Error::RevokeRefused(RevokeRefusal::NotPermitted));
        }
        if let Some(Some(first)) = inner
            .store
            .lookup_revocations(&[message.message_id])
            .await?
            .pop()
        {
            self.tell_revocation(&first, &message).await?;
            return Ok(RevokeOutcome::AlreadyRevoked(first));
        }
        let now_ms = inner.clock.now_ms();
        let window_ms = inner.config.revoke_window_ms;
        let age = now_ms.saturating_sub(message.timestamp_ms);
        if decision != Decision::AllowAnyTime && window_ms > 0 && age > window_ms as i64 {
            return Err(Error::RevokeRefused(RevokeRefusal::WindowExpired {
                sent_at_ms: message.timestamp_ms,
                window_ms,
                now_ms,
            }));
        }
        let recorded = inner
            .store
            .record_revocation(NewRevocation {
                message_id: message.message_id,
                channel: channel.clone(),
                message_seq: message.message_seq,
                revoker: requester.clone(),
                revoked_at_ms: now_ms,
            })
            .await?;
        let record = recorded.revocation().clone();
        self.tell_revocation(&record, &message).await?;
        Ok(match recorded {
            Recorded::New(_) => RevokeOutcome::Revoked(record),
            Recorded::Existing(_) => RevokeOutcome::AlreadyRevoked(record),
        })
    }

    async fn find_revocable(&self, request: &RevokeRequest) -> Result<Message> {
        let store = &self.inner.store;
        let not_revocable = || Error::RevokeRefused(RevokeRefusal::NotRevocable);
        let found = match &request.target {
            RevokeTarget::MessageId(MessageId(0)) => return Err(not_revocable()),
            RevokeTarget::MessageId(id) => match store.get(*id).await? {
                Some(m) => Some(m),
                None if store.is_command(*id).await? => return Err(not_revocable()),
                None => None,
            },
            RevokeTarget::ClientMsgNo {
                from_uid,
                client_msg_no,
            } => store.get_by_client_msg_no(from_uid, client_msg_no).await?,
            RevokeTarget::Seq { channel, seq } => {
                let channel = channel.stored_for(&request.requester)?;
                store
                    .read(&channel, Page::forward(*seq, 1))
                    .await?
                    .into_iter()
                    .find(|m| m.message_seq == *seq)
            }
        };
        let message = found.ok_or_else(|| Error::not_found(request.target.to_string()))?;
        if is_revoke_tip(&message) {
            return Err(not_revocable());
        }
        Ok(message)
    }

    /// Sends the revocation command (and tip) for `record`, idempotently:
    /// what was sent before is recognised by its client_msg_no and not sent
    /// again.
    async fn tell_revocation(&self, record: &Revocation, message: &Message) -> Result<()> {
        let inner = &*self.inner;
        let recipients = self.recipients_of(&record.channel).await?;
        let now_ms = inner.clock.now_ms();
        let command = Message {
            message_id: inner.ids.next_id(),
            message_seq: 0,
            client_msg_no: ClientMsgNo::new(format!(
                "{HUB_CLIENT_MSG_NO_PREFIX}revoke:{}",
                record.message_id
            ))?,
            from_uid: record.revoker.clone(),
            channel: record.channel.clone(),
            timestamp_ms: now_ms,
            flags: Flags::command(),
            payload: revoke_command_payload(record, &message.client_msg_no).into(),
        };
        self.dispatch(command, Persistence::Command, &recipients, None, true)
            .await?;
        if inner.config.revoke_tip {
            let name = inner
                .directory
                .display_name(&record.revoker)
                .await?
                .unwrap_or_else(|| record.revoker.to_string());
            let tip = Message {
                message_id: inner.ids.next_id(),
                message_seq: 0,
                client_msg_no: ClientMsgNo::new(format!(
                    "{HUB_CLIENT_MSG_NO_PREFIX}revoke-tip:{}",
                    record.message_id
                ))?,
                from_uid: record.revoker.clone(),
                channel: record.channel.clone(),
                timestamp_ms: now_ms,
                flags: Flags {
                    red_dot: false,
                    ..Flags::normal()
                },
                payload: revoke_tip_payload(record, &name).into(),
            };
            self.dispatch(tip, Persistence::History, &recipients, None, true)
                .await?;
        }
        Ok(())
    }

    fn page_limit(&self, limit: usize) -> Result<usize> {
        check_limit(limit)?;
        Ok(limit.min(self.inner.config.max_page))
    }
}
