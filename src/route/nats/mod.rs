//! [`NatsRouter`]: hub nodes joined over core NATS.
//!
//! Subjects, under a prefix (default `imcore`):
//!
//! - `<prefix>.node.<id>`: messages for the devices on node `id`, one event
//!   per message and node (with that node's recipients);
//! - `<prefix>.presence`: every node's heartbeats, presence changes
//!   (logins, which also replace and kick elsewhere) and kicks;
//! - `<prefix>.snapshot.<id>`: asks node `id` for all its users, answered
//!   on the asker's inbox;
//! - `<prefix>.directory`: directory changes ([`NatsChangeFeed`], a
//!   connection of its own).
//!
//! Core NATS delivers at most once: a message lost between nodes is found
//! by the client's sync (its seq is missing), never stored twice; a lost
//! presence change is noticed by its number and repaired by a snapshot.

mod directory;
mod event;
mod presence;
mod tasks;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::error::{Error, Result, ValidationError};
use crate::event::StoredEvent;
use crate::model::{Message, Uid};
use crate::route::{LocalDevices, Router};
use crate::session::{Device, DeviceFlag};
pub use directory::{FeedStats, NatsChangeFeed};
use presence::Views;

/// How a [`NatsRouter`] joins its cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NatsConfig {
    /// The NATS server, such as `nats://127.0.0.1:4222`.
    pub url: String,
    /// This node's number, unique among the live nodes: use the hub's
    /// [`HubConfig::node_id`](crate::HubConfig::node_id).
    pub node_id: u16,
    /// The subjects' prefix; clusters sharing a NATS server use different
    /// ones. Default `imcore`.
    pub prefix: String,
    /// How often a node says it is alive. Default 1 s.
    pub heartbeat: Duration,
    /// A node not heard for this long counts as gone: its users are offline
    /// for push and nothing is routed to it. Default 4 s.
    pub presence_ttl: Duration,
    /// How long a history message waits at a node for the one before it
    /// in its channel, stored by another node and still on its way.
    /// A message arriving after a later one went in its stead is not
    /// delivered live (devices find it by sync). Default 250 ms.
    pub reorder_wait: Duration,
    /// Events waiting to be published; past it new ones are dropped (and
    /// counted in [`RouteStats::dropped`]). Default 65,536.
    pub queue: usize,
}

impl NatsConfig {
    /// The defaults, for node `node_id` on the NATS server at `url`.
    pub fn new(url: impl Into<String>, node_id: u16) -> Self {
        NatsConfig {
            url: url.into(),
            node_id,
            prefix: "imcore".into(),
            heartbeat: Duration::from_secs(1),
            presence_ttl: Duration::from_secs(4),
            reorder_wait: Duration::from_millis(250),
            queue: 65_536,
        }
    }
}

/// What a [`NatsRouter`] has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteStats {
    /// Events published.
    pub published: u64,
    /// Events not published: the queue was full, or NATS refused them.
    pub dropped: u64,
    /// Events received from other nodes.
    pub received: u64,
    /// Events received that did not decode (another format, garbage).
    pub undecodable: u64,
    /// Snapshots asked of other nodes (a missed change, a new node).
    pub snapshots_asked: u64,
    /// This node's presence changes not published because the queue was
    /// full (also in [`dropped`](Self::dropped)). None is lost silently:
    /// each takes its number all the same, so the other nodes see a gap
    /// in this node's numbering (at its next change or heartbeat) and ask
    /// it for a snapshot, which holds the change.
    pub presence_dropped: u64,
}

/// What the publishing task is asked to send, in order.
#[derive(Debug)]
enum Outgoing {
    /// A message for the devices of `recipients` on `node`.
    Deliver {
        node: u16,
        message: Arc<Message>,
        recipients: Vec<Uid>,
    },
    /// A message event for the devices of `recipients` on `node`.
    DeliverEvent {
        node: u16,
        event: Arc<StoredEvent>,
        recipients: Vec<Uid>,
    },
    /// Anything else.
    Notice(Notice),
}

/// What the publishing task sends besides messages.
#[derive(Debug)]
enum Notice {
    Presence { uid: Uid, login: Option<Device> },
    Kick { uid: Uid, flag: Option<DeviceFlag> },
    Beat { hello: bool },
    AskSnapshot { node: u16 },
    Snapshot { reply: async_nats::Subject },
    Flush(tokio::sync::oneshot::Sender<Result<()>>),
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    dropped: AtomicU64,
    received: AtomicU64,
    undecodable: AtomicU64,
    snapshots_asked: AtomicU64,
    presence_dropped: AtomicU64,
}

struct Shared {
    config: NatsConfig,
    client: async_nats::Client,
    incarnation: u64,
    inbox: String,
    local: OnceLock<Arc<dyn LocalDevices>>,
    views: RwLock<Views>,
    out: mpsc::Sender<Outgoing>,
    /// Presence changes dropped since the publishing task last numbered
    /// one: it skips their numbers (see [`RouteStats::presence_dropped`]).
    presence_lost: AtomicU64,
    counters: Counters,
    /// Bumped whenever what this node knows of the others changes.
    changes: watch::Sender<u64>,
    /// Set when the last handle is dropped: the tasks stop.
    stop: watch::Sender<bool>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsRouter")
            .field("node_id", &self.config.node_id)
            .field("url", &self.config.url)
            .finish()
    }
}

impl Shared {
    fn subject(&self, what: &str) -> String {
        format!("{}.{what}", self.config.prefix)
    }

    fn notify(&self, notice: Notice) {
        let presence = matches!(notice, Notice::Presence { .. });
        if self.out.try_send(Outgoing::Notice(notice)).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            if presence {
                self.presence_lost.fetch_add(1, Ordering::AcqRel);
                self.counters
                    .presence_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn send(&self, outgoing: Outgoing) {
        if self.out.try_send(outgoing).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn views(&self) -> std::sync::RwLockReadGuard<'_, Views> {
        self.views.read().unwrap_or_else(|e| e.into_inner())
    }

    fn views_mut(&self) -> std::sync::RwLockWriteGuard<'_, Views> {
        self.views.write().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }
}

/// Stops the tasks when the last [`NatsRouter`] handle goes.
#[derive(Debug)]
struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.send_replace(true);
    }
}

/// Hub nodes joined over core NATS; see the module's documentation for the
/// subjects, and the crate's README for what a cluster guarantees.
///
/// Connect it, then build the node's hub with it (every node shares one
/// store, such as `PgStore`):
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> imcore::Result<()> {
/// use std::sync::Arc;
/// use imcore::{Hub, HubConfig, NatsConfig, NatsRouter};
///
/// let node_id = 2;
/// let router = NatsRouter::connect(NatsConfig::new("nats://127.0.0.1:4222", node_id)).await?;
/// let hub = Hub::builder()
///     .config(HubConfig::default().node_id(node_id))
///     .router(Arc::new(router.clone()))
///     .build()?;
/// # let _ = hub; Ok(()) }
/// ```
///
/// Its tasks stop when the last clone is dropped (the hub holds one).
#[derive(Debug, Clone)]
pub struct NatsRouter {
    shared: Arc<Shared>,
    _stop: Arc<StopOnDrop>,
}

impl NatsRouter {
    /// Connects to NATS and joins the cluster. Fails with
    /// [`Error::Unavailable`] if the server cannot be reached; once
    /// connected, the router reconnects by itself whenever the connection
    /// is lost.
    pub async fn connect(config: NatsConfig) -> Result<NatsRouter> {
        if config.prefix.is_empty()
            || config
                .prefix
                .contains(|c: char| c.is_whitespace() || "*>".contains(c))
        {
            return Err(ValidationError::OutOfRange(
                "the NATS subject prefix is empty or holds a space, '*' or '>'",
            )
            .into());
        }
        if config.heartbeat.is_zero() || config.presence_ttl <= config.heartbeat {
            return Err(ValidationError::OutOfRange(
                "the heartbeat is zero, or the presence TTL is not longer than it",
            )
            .into());
        }
        let (out, outgoing) = mpsc::channel(config.queue.max(1));
        let (reconnected_tx, reconnected) = mpsc::unbounded_channel();
        let client = async_nats::ConnectOptions::new()
            .name(format!("imcore node {}", config.node_id))
            // Back to the server fast after it restarts: 0, 100, 200 … 1,000 ms.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(100 * attempts.min(10) as u64)
            })
            .event_callback(move |event| {
                let reconnected_tx = reconnected_tx.clone();
                async move {
                    if matches!(event, async_nats::Event::Connected) {
                        let _ = reconnected_tx.send(());
                    }
                }
            })
            .connect(config.url.as_str())
            .await
            .map_err(|e| Error::Unavailable {
                backend: "nats",
                source: Box::new(e),
            })?;
        let (changes, _) = watch::channel(0);
        let (stop, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            incarnation: incarnation(),
            inbox: client.new_inbox(),
            views: RwLock::new(Views::new(config.node_id, config.presence_ttl)),
            config,
            client,
            local: OnceLock::new(),
            out,
            presence_lost: AtomicU64::new(0),
            counters: Counters::default(),
            changes,
            stop,
        });
        tasks::start(shared.clone(), outgoing, reconnected).await?;
        Ok(NatsRouter {
            _stop: Arc::new(StopOnDrop(shared.clone())),
            shared,
        })
    }

    /// What it has done since it started.
    pub fn stats(&self) -> RouteStats {
        let c = &self.shared.counters;
        RouteStats {
            published: c.published.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            undecodable: c.undecodable.load(Ordering::Relaxed),
            snapshots_asked: c.snapshots_asked.load(Ordering::Relaxed),
            presence_dropped: c.presence_dropped.load(Ordering::Relaxed),
        }
    }

    /// The other live nodes, each with how many users it has connected, as
    /// this node knows them now.
    pub fn nodes(&self) -> Vec<(u16, usize)> {
        self.shared.views().census(Instant::now())
    }

    /// A receiver that changes whenever what this node knows of the others
    /// changes (a node comes or goes, a user connects or leaves
    /// elsewhere): to wait for the cluster to settle without polling.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// Waits until every event queued before the call has been handed to
    /// the NATS server (for a host that must know its kick went out, and
    /// for tests).
    pub async fn flush(&self) -> Result<()> {
        let (done, flushed) = tokio::sync::oneshot::channel();
        self.shared
            .out
            .send(Outgoing::Notice(Notice::Flush(done)))
            .await
            .map_err(|_| stopped())?;
        flushed.await.map_err(|_| stopped())?
    }
}

fn stopped() -> Error {
    Error::Unavailable {
        backend: "nats",
        source: "the router has stopped".into(),
    }
}

/// A random number for this life of the node.
fn incarnation() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

impl Router for NatsRouter {
    fn attach(&self, local: Arc<dyn LocalDevices>) {
        if self.shared.local.set(local).is_ok() {
            // Users may have connected before: tell the others.
            self.shared.notify(Notice::Beat { hello: true });
        }
    }

    fn deliver(&self, message: &Arc<Message>, recipients: &[Uid]) {
        let routes = self.shared.views().route(recipients, Instant::now());
        for (node, recipients) in routes {
            self.shared.send(Outgoing::Deliver {
                node,
                message: message.clone(),
                recipients,
            });
        }
    }

    fn deliver_event(&self, event: &Arc<StoredEvent>, recipients: &[Uid]) {
        let routes = self.shared.views().route(recipients, Instant::now());
        for (node, recipients) in routes {
            self.shared.send(Outgoing::DeliverEvent {
                node,
                event: event.clone(),
                recipients,
            });
        }
    }

    fn presence_changed(&self, uid: &Uid, login: Option<&Device>) {
        self.shared.notify(Notice::Presence {
            uid: uid.clone(),
            login: login.cloned(),
        });
    }

    fn kick(&self, uid: &Uid, flag: Option<DeviceFlag>) {
        self.shared.notify(Notice::Kick {
            uid: uid.clone(),
            flag,
        });
    }

    fn online_elsewhere(&self, uid: &Uid) -> bool {
        self.shared.views().online(uid, Instant::now())
    }

    fn reorder_wait(&self) -> Option<Duration> {
        Some(self.shared.config.reorder_wait)
    }
}
