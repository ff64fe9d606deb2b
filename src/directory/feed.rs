//! [`ChangeFeed`]: how the nodes sharing one [`DirectoryStore`] tell each
//! other's caches of a change.
//!
//! [`DirectoryStore`]: super::DirectoryStore

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::{Channel, Uid};

/// What a change touched: one channel (its record, subscribers or lists),
/// or the system uids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// One channel; a user's own person channel for that user's lists.
    Channel(Channel),
    /// The system uids.
    System,
}

/// A change made through one node, as the other nodes' caches hear of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryChange {
    /// What changed.
    pub scope: Scope,
    /// The scope's version after the change.
    pub version: u64,
    /// What it changed, so that a cache holding the version just before
    /// can keep what did not change.
    pub kind: ChangeKind,
}

/// What a [`DirectoryChange`] changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// Only these subscribers were added and removed: a cache applies them
    /// in place rather than reading the channel again (a big group changes
    /// one member at a time).
    Members(MemberDelta),
    /// The channel's record or lists (or the system uids); its subscribers
    /// are as they were.
    Settings,
    /// Anything, subscribers included (a channel deleted, all its
    /// subscribers removed, too many to list): read it all again.
    Everything,
}

/// Subscribers a change added and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDelta {
    /// Added.
    pub added: Vec<Uid>,
    /// Removed.
    pub removed: Vec<Uid>,
}

/// What a [`ChangeFeed`] hands its subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// Another node's change (or this node's own, echoed back).
    Change(DirectoryChange),
    /// Changes may have been missed (the feed reconnected): check
    /// everything cached.
    Resync,
}

/// Where a [`ChangeFeed`] delivers: called on the feed's own task, for
/// every event, in the order received. It must not block.
pub type FeedSink = Arc<dyn Fn(FeedEvent) + Send + Sync>;

/// Carries directory changes between the nodes that share one store.
///
/// Best effort by design: a change may be lost (a reconnect says so with
/// [`FeedEvent::Resync`], a silent loss is not said at all), so a cache
/// never relies on it alone; see [`DirectoryConfig::revalidate_after`].
///
/// [`DirectoryConfig::revalidate_after`]: super::DirectoryConfig::revalidate_after
#[async_trait]
pub trait ChangeFeed: Send + Sync + Debug + 'static {
    /// Tells the other nodes of a change made through this one, returning
    /// once it is on its way.
    async fn publish(&self, change: &DirectoryChange) -> Result<()>;

    /// Starts handing the changes heard to `sink`.
    fn subscribe(&self, sink: FeedSink);
}

/// No other nodes: one node on its own store.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFeed;

#[async_trait]
impl ChangeFeed for NoFeed {
    async fn publish(&self, _change: &DirectoryChange) -> Result<()> {
        Ok(())
    }

    fn subscribe(&self, _sink: FeedSink) {}
}
