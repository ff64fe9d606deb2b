//! Routing between hub nodes: what one node's hub tells the others, and
//! what it hears from them.
//!
//! A [`Hub`](crate::Hub) delivers to the devices connected to it, and hands
//! the rest to its [`Router`]: the message for devices on other nodes, a
//! login (which may kick or replace a device elsewhere), a kick, and the
//! question "is this user online on another node" for offline push. The
//! default, [`SingleNode`], has no other nodes. `NatsRouter` (feature
//! `nats`) joins the nodes over core NATS.
//!
//! A router calls back into its node through [`LocalDevices`], which the
//! hub hands it when it is built ([`Router::attach`]).

#[cfg(feature = "nats")]
mod nats;
pub(crate) mod order;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use crate::event::StoredEvent;
use crate::model::{Message, Uid};
pub use crate::session::UserPresence;
use crate::session::{Device, DeviceFlag};

#[cfg(feature = "nats")]
pub use nats::{FeedStats, NatsChangeFeed, NatsConfig, NatsRouter, RouteStats};

/// The node's side, for its router: the devices connected to this node.
///
/// Implemented by the hub. Every method returns at once (no awaiting):
/// deliveries are queued on the devices' connections.
pub trait LocalDevices: Send + Sync + Debug + 'static {
    /// Delivers a message that another node sent to the devices of
    /// `recipients` connected here (every device: the sending connection
    /// is on the other node). History messages are put in seq order per
    /// channel with this node's own sends first; one that comes after a
    /// later seq of its channel was delivered here (its reorder wait ran
    /// out) is not delivered, but counted
    /// ([`HubStats::late_deliveries`](crate::HubStats::late_deliveries)):
    /// devices find it by sync.
    fn deliver(&self, message: Arc<Message>, recipients: Arc<[Uid]>);

    /// Delivers a message event that another node stored to the devices of
    /// `recipients` connected here, in `msg_event_seq` order per message
    /// with this node's own: one that comes before an event it follows
    /// waits for it, at most the router's
    /// [`reorder_wait`](Router::reorder_wait); one that comes after a later
    /// event of its message was delivered here is not delivered, but
    /// counted ([`HubStats::late_deliveries`](crate::HubStats::late_deliveries)):
    /// devices find it by an event sync.
    fn deliver_event(&self, event: Arc<StoredEvent>, recipients: Arc<[Uid]>);

    /// A device logged in on another node: closes this node's connection
    /// of the same device id (replaced) and, for a master login, this
    /// node's devices of the same flag (kicked), as one node does.
    fn logged_in_elsewhere(&self, device: &Device);

    /// Closes the user's connections here (of one flag, or all) as kicked.
    /// Returns how many.
    fn kick(&self, uid: &Uid, flag: Option<DeviceFlag>) -> usize;

    /// The user's devices here now.
    fn presence_of(&self, uid: &Uid) -> UserPresence;

    /// Every user with a device here now.
    fn presence(&self) -> Vec<(Uid, UserPresence)>;
}

/// Between a hub and the other nodes of its cluster.
///
/// Every method but [`Router::attach`] is called on the hub's hot paths
/// and must return at once: a router queues what it sends. Delivery
/// between nodes may be at most once: a device that misses a message
/// finds it by seq when it syncs, as WuKongIM's clients do.
pub trait Router: Send + Sync + Debug + 'static {
    /// Called once, when the hub is built: the node's devices, for what
    /// other nodes send. A router holds it weakly or not at all past the
    /// hub's life (the hub holds the router).
    fn attach(&self, local: Arc<dyn LocalDevices>);

    /// Hands a message to the devices of `recipients` on other nodes. The
    /// hub has delivered to this node's own devices.
    fn deliver(&self, message: &Arc<Message>, recipients: &[Uid]);

    /// Hands a message event to the devices of `recipients` on other nodes,
    /// as [`Router::deliver`] does a message. Default: nothing (one node).
    fn deliver_event(&self, event: &Arc<StoredEvent>, recipients: &[Uid]) {
        let _ = (event, recipients);
    }

    /// The user's devices on this node changed: a connection came or went.
    /// `login` is the device that just logged in, if that is the change
    /// (other nodes close its old connection and, for a master, the same
    /// flag's devices).
    fn presence_changed(&self, uid: &Uid, login: Option<&Device>);

    /// Closes the user's connections on other nodes, as [`Hub::kick`]
    /// does on this one.
    ///
    /// [`Hub::kick`]: crate::Hub::kick
    fn kick(&self, uid: &Uid, flag: Option<DeviceFlag>);

    /// Whether the user has a master device online on another live node.
    fn online_elsewhere(&self, uid: &Uid) -> bool;

    /// How long a history message may wait at this node for the one before
    /// it in its channel (stored by another node and still on its way), or
    /// `None` when every message of a channel is delivered by this node in
    /// seq order anyway (a single node).
    fn reorder_wait(&self) -> Option<Duration>;
}

/// The router of a hub alone: there are no other nodes. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleNode;

impl Router for SingleNode {
    fn attach(&self, _local: Arc<dyn LocalDevices>) {}

    fn deliver(&self, _message: &Arc<Message>, _recipients: &[Uid]) {}

    fn presence_changed(&self, _uid: &Uid, _login: Option<&Device>) {}

    fn kick(&self, _uid: &Uid, _flag: Option<DeviceFlag>) {}

    fn online_elsewhere(&self, _uid: &Uid) -> bool {
        false
    }

    fn reorder_wait(&self) -> Option<Duration> {
        None
    }
}
