//! [`DirectoryStore`]: where a [`StoredDirectory`](super::StoredDirectory)
//! keeps its data.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::AccessList;
use crate::error::Result;
use crate::model::{Channel, Uid};
use crate::session::{DeviceFlag, DeviceLevel};

/// A login token, as WuKongIM's `/user/token` sets it: one per user and
/// device kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    /// The token a CONNECT must present.
    pub token: String,
    /// The level the device logs in at.
    pub level: DeviceLevel,
}

/// A channel's own record: that it exists, and its settings. Its
/// subscribers and lists are kept beside it, one entry each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// The owner, who may revoke anyone's message and is never removed
    /// with the other subscribers (WuKongIM has no owner; the crate's
    /// example makes the first subscriber of a new channel its owner).
    pub owner: Option<Uid>,
    /// Nobody may send (reason 19), WuKongIM's `ban`.
    pub ban: bool,
    /// Only the owner and system accounts may send (reason 25),
    /// WuKongIM's `send_ban`.
    pub send_ban: bool,
    /// Disbanded: nobody may send (24); members may still read.
    pub disband: bool,
}

/// How much a directory holds, for a host's monitoring: see
/// [`DirectoryStore::counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DirectoryCounts {
    /// Channels with a record (person channels have none).
    pub channels: u64,
    /// Subscriptions: (channel, subscriber) entries, over every channel.
    pub subscriptions: u64,
}

impl DirectoryCounts {
    /// Counts of `channels` and `subscriptions`.
    pub fn new(channels: u64, subscriptions: u64) -> Self {
        DirectoryCounts {
            channels,
            subscriptions,
        }
    }
}

/// What a cache reads of a channel at once: see
/// [`DirectoryStore::channel_snapshot`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelSnapshot {
    /// The channel's version, read no later than the rest.
    pub version: u64,
    /// Its record, `None` if it does not exist.
    pub info: Option<ChannelInfo>,
    /// Its first subscribers in uid order, at most the limit asked.
    pub subscribers: Vec<Uid>,
    /// Its blacklist, in uid order.
    pub black: Vec<Uid>,
    /// Its whitelist, in uid order.
    pub white: Vec<Uid>,
}

/// The storage behind a [`StoredDirectory`](super::StoredDirectory).
///
/// Every backend of the crate implements it ([`MemoryStore`],
/// `SledStore`, `PgStore`), beside the history, and passes the same
/// [`conformance`](crate::store::conformance) functions (`directory_*`).
///
/// # Contract
///
/// - Subscribers and list entries are entries of their own (channel, uid):
///   adding or removing `n` uids writes `O(n)` entries, whatever the size
///   of the channel, and [`is_subscriber`](Self::is_subscriber) is one
///   point read.
/// - Every change to a channel (its record, its subscribers, its lists)
///   moves the channel's **version** in the same atomic write, strictly
///   increasing and never reset, not even by deleting the channel; system
///   uids have one version of their own. A reader that read a version, then
///   the data, knows that data is at least that fresh.
/// - Each call is atomic: all of it or none of it.
/// - When a call returns `Ok`, the backend's durability promise holds for
///   it (as for an append).
///
/// [`MemoryStore`]: crate::store::MemoryStore
#[async_trait]
pub trait DirectoryStore: Send + Sync + Debug + 'static {
    /// Sets the token of `uid`'s devices of one kind, replacing any.
    async fn set_token(&self, uid: &Uid, flag: DeviceFlag, token: &StoredToken) -> Result<()>;

    /// The token of `uid`'s devices of one kind, if set.
    async fn token(&self, uid: &Uid, flag: DeviceFlag) -> Result<Option<StoredToken>>;

    /// Forgets a token; returns whether there was one.
    async fn remove_token(&self, uid: &Uid, flag: DeviceFlag) -> Result<bool>;

    /// Creates a channel, or replaces the record of an existing one (its
    /// subscribers and lists stay). Returns the channel's new version.
    async fn put_channel(&self, channel: &Channel, info: &ChannelInfo) -> Result<u64>;

    /// A channel's record, `None` if it does not exist.
    async fn channel(&self, channel: &Channel) -> Result<Option<ChannelInfo>>;

    /// Deletes a channel's record, subscribers and lists (not its
    /// messages). Returns the new version, or `None` (and changes nothing)
    /// if there was no such channel.
    async fn delete_channel(&self, channel: &Channel) -> Result<Option<u64>>;

    /// Adds subscribers (already there: no change). Returns the new
    /// version. The channel's record need not exist.
    async fn add_subscribers(&self, channel: &Channel, uids: &[Uid]) -> Result<u64>;

    /// Removes subscribers (not there: no change). Returns the new
    /// version.
    async fn remove_subscribers(&self, channel: &Channel, uids: &[Uid]) -> Result<u64>;

    /// Whether `uid` subscribes to `channel`: one point read.
    async fn is_subscriber(&self, channel: &Channel, uid: &Uid) -> Result<bool>;

    /// Up to `limit` subscribers of `channel` in ascending uid order,
    /// starting after `after`: a channel of any size is read in pages.
    async fn subscribers(
        &self,
        channel: &Channel,
        after: Option<&Uid>,
        limit: usize,
    ) -> Result<Vec<Uid>>;

    /// The channels `uid` subscribes to (any order).
    async fn channels_of(&self, uid: &Uid) -> Result<Vec<Channel>>;

    /// Adds uids to one of a channel's lists. Returns the new version.
    async fn add_to_list(&self, list: AccessList, channel: &Channel, uids: &[Uid]) -> Result<u64>;

    /// Removes uids from one of a channel's lists. Returns the new version.
    async fn remove_from_list(
        &self,
        list: AccessList,
        channel: &Channel,
        uids: &[Uid],
    ) -> Result<u64>;

    /// Replaces one of a channel's lists (empty: none). Returns the new
    /// version.
    async fn set_list(&self, list: AccessList, channel: &Channel, uids: &[Uid]) -> Result<u64>;

    /// One of a channel's lists, in ascending uid order.
    async fn list(&self, list: AccessList, channel: &Channel) -> Result<Vec<Uid>>;

    /// Makes uids system accounts (or not). Returns the new version of the
    /// system uids.
    async fn set_system(&self, uids: &[Uid], system: bool) -> Result<u64>;

    /// Every system uid, in ascending order.
    async fn system_uids(&self) -> Result<Vec<Uid>>;

    /// The channel's version: 0 if it never changed.
    async fn channel_version(&self, channel: &Channel) -> Result<u64>;

    /// The system uids' version: 0 if they never changed.
    async fn system_version(&self) -> Result<u64>;

    /// How many channels and subscriptions the directory holds, for
    /// monitoring: `None` from a backend that does not count. Each of the
    /// crate's backends counts them as it is asked, reading every entry
    /// (sled scans its keys, PostgreSQL counts its rows): call it now and
    /// then, not on every request.
    async fn counts(&self) -> Result<Option<DirectoryCounts>> {
        Ok(None)
    }

    /// A channel's version, record, first `limit` subscribers and lists:
    /// what a cache reads on a miss. The version must be read no later
    /// than the rest (so that the data is at least that fresh).
    ///
    /// Provided: the five reads one after another, version first. A
    /// backend that can read them in one round trip overrides it
    /// (`PgStore` does: one statement, one snapshot).
    async fn channel_snapshot(&self, channel: &Channel, limit: usize) -> Result<ChannelSnapshot> {
        let version = self.channel_version(channel).await?;
        Ok(ChannelSnapshot {
            version,
            info: self.channel(channel).await?,
            subscribers: self.subscribers(channel, None, limit).await?,
            black: self.list(AccessList::Black, channel).await?,
            white: self.list(AccessList::White, channel).await?,
        })
    }
}
