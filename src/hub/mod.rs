//! The hub: the façade a host links in. It sends, delivers and syncs.
//!
//! This file holds the types and the builder; what the hub does is in one
//! file per capability: `send.rs` (validate, store, deliver: the send path
//! in one place), `sync.rs` (acks and catching up), `revoke.rs`,
//! `sessions.rs` (connections, logins and kicks), and `nodes.rs` (the
//! other nodes: routing through the [`Router`], and
//! seq order across nodes).

mod acking;
mod config;
mod deadline;
mod event_gate;
mod events;
mod extras;
mod lifecycle;
mod lookup;
mod nodes;
mod rate;
mod retention;
mod revoke;
mod run_to_end;
mod send;
mod sessions;
mod stats;
mod sync;

use run_to_end::run_to_end;

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::clock::{Clock, SystemClock};
use crate::directory::{Directory, MemoryDirectory, Permission};
use crate::error::{Error, Result, ValidationError};
use crate::extra::{DefaultEditRules, EditRules};
use crate::id::MessageIdGenerator;
use crate::model::{
    Channel, ChannelType, ClientMsgNo, Flags, Message, MessageId, Setting, Uid, MAX_TOPIC_LEN,
};
use crate::notify::{NoPush, OfflineNotifier};
use crate::policy::{Persistence, PersistencePolicy, WuKongPolicy};
use crate::reason::ReasonCode;
use crate::revoke::{
    revoke_command_payload, revoke_tip_payload, Authorizer, Decision, DefaultRevokeRules,
    RevokeContext, RevokeOutcome, RevokeRefusal, RevokeRequest, RevokeTarget,
};
use crate::route::{Router, SingleNode};
use crate::session::{
    in_process, ConnectionId, Device, DeviceFlag, DeviceLevel, DeviceSink, DisconnectReason,
    InProcessConnection, LoginTicket, Sessions, SinkError,
};
pub use crate::store::HistoryMessage;
use crate::store::{
    check_limit, Conversation, MemoryStore, NewRevocation, Page, QueuedCommand, Recorded,
    Revocation, Store,
};
pub use acking::AckingConnection;
pub use config::HubConfig;
pub use rate::SendRate;
pub use retention::{PassReport, RetentionPolicy, RetentionReport, RetentionRule, RetentionStatus};
pub use stats::{HubStats, LatencyBuckets, SendCounts};
pub use sync::conversation_deleted_payload;

/// The prefix of the client_msg_nos the hub makes itself (for server-side
/// sends without one, and for revocation commands and tips). Callers may not
/// use it, so that the hub's own messages never collide with theirs in
/// resend detection.
pub const HUB_CLIENT_MSG_NO_PREFIX: &str = "imcore:";

/// The `cmd` of the command [`Hub::delete_conversation`] sends to the
/// user's devices, as TangSengDaoDao's clients expect.
pub const CONVERSATION_DELETED_CMD: &str = "conversationDeleted";

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
#[non_exhaustive]
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
    /// The setting byte (read receipts and the like), kept with the
    /// message as [`Setting::stored`] says. Default: none.
    pub setting: Setting,
    /// A topic, kept with the message (at most [`MAX_TOPIC_LEN`] bytes; an
    /// empty one is none).
    pub topic: Option<String>,
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
            setting: Setting::default(),
            topic: None,
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
            setting: Setting::default(),
            topic: None,
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

    /// Sets the setting byte.
    pub fn setting(mut self, setting: Setting) -> Self {
        self.setting = setting;
        self
    }

    /// Sets the topic.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// Marks the send as coming from this connection.
    pub fn from_connection(mut self, connection: ConnectionId) -> Self {
        self.from_connection = Some(connection);
        self
    }
}

/// The answer to a send, as WuKongIM's SENDACK carries it (its reason code
/// is always success: refusals are `Err(Error::Rejected)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SendAck {
    /// The message's id (a transient message gets one too; nothing is
    /// stored under it).
    pub message_id: MessageId,
    /// Its channel seq; 0 for commands and transient messages.
    pub message_seq: u64,
    /// The client's number for it (made by the hub if the request had none).
    pub client_msg_no: ClientMsgNo,
    /// `true` when this was a resend: the ids are the first send's, and
    /// nothing was stored or delivered again.
    pub duplicate: bool,
    /// How the message was kept.
    pub persistence: Persistence,
}

/// A conversation as one user sees it, with its last message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConversationView {
    /// The channel as this user calls it (a person channel by the other
    /// party's uid).
    pub channel: Channel,
    /// The stored entry (its `channel` is the stored form).
    pub conversation: Conversation,
    /// The last message, read from the log when the view was made, with its
    /// revocation state merged; `None` for a deleted conversation.
    pub last_message: Option<HistoryMessage>,
    /// The user deleted the conversation ([`Hub::delete_conversation`])
    /// after the version the sync started from: the device should remove
    /// it from its list. Only an incremental sync lists deletes.
    #[serde(default)]
    pub deleted: bool,
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
    edit_rules: Option<Arc<dyn EditRules>>,
    router: Option<Arc<dyn Router>>,
    config: HubConfig,
}

impl HubBuilder {
    /// How this hub reaches the other nodes of its cluster. Default
    /// [`SingleNode`]: there are none. Every node of a cluster shares one
    /// store (such as `PgStore`) and has its own `node_id`.
    pub fn router(mut self, router: Arc<dyn Router>) -> Self {
        self.router = Some(router);
        self
    }

    /// Who may revoke what. Default [`DefaultRevokeRules`].
    pub fn authorizer(mut self, authorizer: Arc<dyn Authorizer>) -> Self {
        self.authorizer = Some(authorizer);
        self
    }

    /// Who may edit what. Default [`DefaultEditRules`].
    pub fn edit_rules(mut self, rules: Arc<dyn EditRules>) -> Self {
        self.edit_rules = Some(rules);
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
    /// 1023, a zero `max_page`), or for a cluster router outside a tokio
    /// runtime.
    pub fn build(self) -> Result<Hub> {
        check_limit(self.config.max_page)?;
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let router = self.router.unwrap_or_else(|| Arc::new(SingleNode));
        let wait = router.reorder_wait();
        let max_pushes = self.config.max_pushes;
        let send_limiter = self
            .config
            .send_rate
            .map(|rate| rate::SendLimiter::new(rate, clock.clone()));
        let hub = Hub {
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
                edit_rules: self
                    .edit_rules
                    .unwrap_or_else(|| Arc::new(DefaultEditRules)),
                clock,
                send_limiter,
                config: self.config,
                sessions: Sessions::default(),
                counters: stats::Counters::default(),
                stripes: (0..CHANNEL_STRIPES).map(|_| Stripe::default()).collect(),
                hasher: RandomState::new(),
                reorder: wait.map(nodes::Reorder::new),
                event_gate: event_gate::EventGate::new(wait),
                known_messages: event_gate::KnownMessages::default(),
                lifecycle: lifecycle::Lifecycle::new(max_pushes),
                router,
            }),
        };
        if let Some(wait) = wait {
            nodes::start_reorder_clock(Arc::downgrade(&hub.inner), wait)?;
        }
        let node = nodes::NodeHandle(Arc::downgrade(&hub.inner));
        hub.inner.router.attach(Arc::new(node));
        Ok(hub)
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
    edit_rules: Arc<dyn EditRules>,
    clock: Arc<dyn Clock>,
    /// The per-sender send rate, when there is one.
    send_limiter: Option<rate::SendLimiter>,
    ids: MessageIdGenerator,
    config: HubConfig,
    sessions: Sessions,
    counters: stats::Counters,
    stripes: Box<[Stripe]>,
    hasher: RandomState,
    router: Arc<dyn Router>,
    /// Set in a cluster: deliveries of a channel from several nodes put
    /// back in seq order.
    reorder: Option<nodes::Reorder>,
    /// The last event seq delivered here per message.
    event_gate: event_gate::EventGate,
    /// Messages known to exist, for their events.
    known_messages: event_gate::KnownMessages,
    lifecycle: lifecycle::Lifecycle,
}

/// The turn of the channels on one stripe: held while a send takes its
/// seq, and holding what tells when the last send to take one has
/// delivered (the next delivers after it).
type Stripe = tokio::sync::Mutex<Option<oneshot::Receiver<()>>>;
/// A turn being held.
type StripeGuard<'a> = tokio::sync::MutexGuard<'a, Option<oneshot::Receiver<()>>>;

/// A person channel is only ever the business of its two parties: no
/// directory is asked to let a third user write to or read it.
fn party_to(uid: &Uid, channel: &Channel) -> Result<()> {
    match channel.person_parties() {
        Some((a, b)) if *uid != a && *uid != b => Err(Error::rejected(
            ReasonCode::SUBSCRIBER_NOT_EXIST,
            uid,
            channel,
        )),
        _ => Ok(()),
    }
}

/// The directory's answer for `uid` in `channel`, as a result.
fn denied(p: Permission, uid: &Uid, channel: &Channel) -> Result<()> {
    match p {
        Permission::Allowed => Ok(()),
        Permission::Denied(reason) => Err(Error::rejected(reason, uid, channel)),
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

    /// What the hub has done since it was built (sends by class and
    /// outcome, deliveries, slow consumers, store writes), and the devices
    /// online and their queues now: for a host's metrics. It walks the
    /// session table, so call it per scrape, not per message.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> imcore::Result<()> {
    /// let hub = imcore::Hub::builder().build()?;
    /// let bob = imcore::Uid::new("bob")?;
    /// let to = imcore::Channel::new(bob.into(), imcore::ChannelType::PERSON);
    /// hub.send(imcore::SendRequest::new(imcore::Uid::new("alice")?, to, "hi")).await?;
    /// assert_eq!(hub.stats().history.accepted, 1);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> HubStats {
        let senders = self.inner.send_limiter.as_ref().map_or(0, |l| l.senders());
        self.inner
            .counters
            .snapshot(self.inner.sessions.queues(), senders)
    }

    /// The hub's settings.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    fn page_limit(&self, limit: usize) -> Result<usize> {
        check_limit(limit)?;
        Ok(limit.min(self.inner.config.max_page))
    }
}
