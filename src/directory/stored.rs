//! [`StoredDirectory`]: WuKongIM's directory model on a [`DirectoryStore`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use super::cache::{Cache, Entry};
use super::feed::{ChangeFeed, ChangeKind, DirectoryChange, FeedEvent, MemberDelta, NoFeed, Scope};
use super::rules::{self, GroupFacts, Lists};
use super::store::{ChannelInfo, DirectoryStore, StoredToken};
use super::{AccessList, Directory, Permission, Role};
use crate::clock::{Clock, SystemClock};
use crate::error::{Result, ValidationError};
use crate::model::{Channel, ChannelType, Uid};
use crate::session::{DeviceFlag, DeviceLevel};

/// How a [`StoredDirectory`] caches and what it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DirectoryConfig {
    /// How long a cached entry is used before its next use checks the
    /// store's version for it (one small read). This bounds how long a
    /// change made through another node can go unseen here when the
    /// [`ChangeFeed`]'s notice of it is lost. Default 1 s.
    pub revalidate_after: Duration,
    /// The most channels cached. Default 100,000.
    pub capacity: usize,
    /// The most uids one call takes (subscribers, list entries, system
    /// uids); more is refused whole with [`ValidationError::OutOfRange`].
    /// Default 100,000.
    pub max_uids_per_call: usize,
    /// The most subscribers one change tells other nodes of in place;
    /// a bigger change makes them read the channel again. Default 1,000.
    /// (A change of a channel's settings or lists never makes them read
    /// its subscribers again.)
    pub max_delta: usize,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig {
            revalidate_after: Duration::from_secs(1),
            capacity: 100_000,
            max_uids_per_call: 100_000,
            max_delta: 1_000,
        }
    }
}

impl DirectoryConfig {
    /// Sets [`revalidate_after`](Self::revalidate_after).
    pub fn revalidate_after(mut self, bound: Duration) -> Self {
        self.revalidate_after = bound;
        self
    }

    /// Sets [`capacity`](Self::capacity).
    pub fn capacity(mut self, channels: usize) -> Self {
        self.capacity = channels;
        self
    }

    /// Sets [`max_uids_per_call`](Self::max_uids_per_call).
    pub fn max_uids_per_call(mut self, uids: usize) -> Self {
        self.max_uids_per_call = uids;
        self
    }
}

/// What a [`StoredDirectory`]'s cache has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DirectoryStats {
    /// Channels cached now.
    pub cached: usize,
    /// Answers from the cache with no store call.
    pub hits: u64,
    /// Channels read from the store (a miss, or a change).
    pub loads: u64,
    /// Version checks of entries past the revalidation bound.
    pub revalidations: u64,
    /// Entries dropped because the store moved past them.
    pub invalidations: u64,
}

/// WuKongIM's directory, ready made: tokens, channels with their settings,
/// subscribers, black- and whitelists and system uids, kept in a
/// [`DirectoryStore`] (any of the crate's stores) so that they survive a
/// restart and every node sharing the store answers from the same state.
///
/// Each node caches what the hub asks on every send (a warm
/// [`check_send`](Directory::check_send) makes no store call). A change
/// through this directory is written to the store first, applied to this
/// node's cache, then published on the [`ChangeFeed`] for the other
/// nodes; an entry whose notice was lost is checked against the store
/// within [`DirectoryConfig::revalidate_after`]. Tokens are not cached: a
/// login reads the store.
///
/// ```
/// use std::sync::Arc;
/// use imcore::directory::{Directory, Permission, StoredDirectory};
/// use imcore::{Channel, MemoryStore, ReasonCode, Uid};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> imcore::Result<()> {
/// let dir = StoredDirectory::new(Arc::new(MemoryStore::new()));
/// let (alice, bob) = (Uid::new("alice")?, Uid::new("bob")?);
/// let g = Channel::group("g1")?;
/// dir.create_channel(&g, Default::default(), &[alice.clone()]).await?;
/// assert_eq!(
///     dir.check_send(&bob, &g).await?,
///     Permission::Denied(ReasonCode::SUBSCRIBER_NOT_EXIST)
/// );
/// dir.add_subscribers(&g, &[bob.clone()]).await?;
/// assert_eq!(dir.check_send(&bob, &g).await?, Permission::Allowed);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct StoredDirectory {
    store: Arc<dyn DirectoryStore>,
    cache: Arc<Cache>,
    feed: Arc<dyn ChangeFeed>,
    config: DirectoryConfig,
    /// Counts what the feed has handed this directory.
    heard: Arc<watch::Sender<u64>>,
}

impl StoredDirectory {
    /// A directory on `store`, alone (no other nodes), with the defaults.
    pub fn new(store: Arc<dyn DirectoryStore>) -> Self {
        Self::with(store, DirectoryConfig::default(), Arc::new(SystemClock))
    }

    /// A directory on `store` with `config`, timing its cache by `clock`.
    pub fn with(
        store: Arc<dyn DirectoryStore>,
        config: DirectoryConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let revalidate_ms = i64::try_from(config.revalidate_after.as_millis()).unwrap_or(i64::MAX);
        let cache = Cache::new(store.clone(), clock, revalidate_ms, config.capacity);
        StoredDirectory {
            store,
            cache: Arc::new(cache),
            feed: Arc::new(NoFeed),
            config,
            heard: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Joins the other nodes on the same store through `feed`: changes made
    /// here are published on it, and changes heard on it update the cache.
    pub fn feed(mut self, feed: Arc<dyn ChangeFeed>) -> Self {
        let cache = Arc::downgrade(&self.cache);
        let heard = Arc::downgrade(&self.heard);
        feed.subscribe(Arc::new(move |event| {
            if let Some(cache) = cache.upgrade() {
                match event {
                    FeedEvent::Change(change) => cache.apply(&change),
                    FeedEvent::Resync => cache.stale_all(),
                }
            }
            if let Some(heard) = heard.upgrade() {
                heard.send_modify(|n| *n += 1);
            }
        }));
        self.feed = feed;
        self
    }

    /// A receiver that changes each time the feed hands this directory an
    /// event (after it is applied): to wait for another node's change
    /// without polling.
    pub fn heard(&self) -> watch::Receiver<u64> {
        self.heard.subscribe()
    }

    /// The store it keeps its data in.
    pub fn store(&self) -> &Arc<dyn DirectoryStore> {
        &self.store
    }

    /// What its cache has done since it started.
    pub fn stats(&self) -> DirectoryStats {
        let c = &self.cache.counters;
        DirectoryStats {
            cached: self.cache.len(),
            hits: c.hits.load(Ordering::Relaxed),
            loads: c.loads.load(Ordering::Relaxed),
            revalidations: c.revalidations.load(Ordering::Relaxed),
            invalidations: c.invalidations.load(Ordering::Relaxed),
        }
    }

    fn check_count(&self, uids: &[Uid]) -> Result<()> {
        if uids.len() > self.config.max_uids_per_call {
            return Err(ValidationError::OutOfRange(
                "too many uids in one call (see DirectoryConfig::max_uids_per_call)",
            )
            .into());
        }
        Ok(())
    }

    /// Applies a change here, then tells the other nodes. The store holds
    /// it already: a notice that cannot be published is healed by
    /// revalidation, so it is logged, not returned.
    async fn changed(&self, scope: Scope, version: u64, kind: ChangeKind) {
        let kind = match kind {
            ChangeKind::Members(d) if d.added.len() + d.removed.len() > self.config.max_delta => {
                ChangeKind::Everything
            }
            kind => kind,
        };
        let change = DirectoryChange {
            scope,
            version,
            kind,
        };
        self.cache.apply(&change);
        if let Err(e) = self.feed.publish(&change).await {
            tracing::warn!("directory change not published ({e}); other nodes revalidate");
        }
    }

    /// [`changed`](Self::changed) for one channel.
    async fn channel_changed(&self, channel: &Channel, version: u64, kind: ChangeKind) {
        self.changed(Scope::Channel(channel.clone()), version, kind)
            .await;
    }

    // ---- tokens

    /// Sets the token `uid`'s devices of kind `flag` log in with, and the
    /// level they log in at (WuKongIM's `/user/token`).
    pub async fn set_token(
        &self,
        uid: &Uid,
        flag: DeviceFlag,
        token: impl Into<String>,
        level: DeviceLevel,
    ) -> Result<()> {
        let token = StoredToken {
            token: token.into(),
            level,
        };
        self.store.set_token(uid, flag, &token).await
    }

    /// Forgets a token; returns whether there was one.
    pub async fn remove_token(&self, uid: &Uid, flag: DeviceFlag) -> Result<bool> {
        self.store.remove_token(uid, flag).await
    }

    /// The token of `uid`'s devices of kind `flag`.
    pub async fn token(&self, uid: &Uid, flag: DeviceFlag) -> Result<Option<StoredToken>> {
        self.store.token(uid, flag).await
    }

    // ---- channels

    /// Creates a channel, or updates an existing one's settings, and adds
    /// `subscribers` (WuKongIM's `/channel`). A new channel's owner is its
    /// first subscriber unless `info` names one; an existing owner stays.
    pub async fn create_channel(
        &self,
        channel: &Channel,
        mut info: ChannelInfo,
        subscribers: &[Uid],
    ) -> Result<()> {
        self.check_count(subscribers)?;
        if channel.kind == ChannelType::PERSON {
            return Err(ValidationError::OutOfRange("person channels need no creating").into());
        }
        let existing = self.store.channel(channel).await?;
        info.owner = existing
            .and_then(|e| e.owner)
            .or(info.owner)
            .or_else(|| subscribers.first().cloned());
        let version = self.store.put_channel(channel, &info).await?;
        self.channel_changed(channel, version, ChangeKind::Settings)
            .await;
        if !subscribers.is_empty() {
            self.add_subscribers(channel, subscribers).await?;
        }
        Ok(())
    }

    /// Changes an existing channel's settings (the owner stays); returns
    /// `false` if there is no such channel.
    pub async fn update_channel(&self, channel: &Channel, mut info: ChannelInfo) -> Result<bool> {
        let Some(existing) = self.store.channel(channel).await? else {
            return Ok(false);
        };
        info.owner = existing.owner;
        let version = self.store.put_channel(channel, &info).await?;
        self.channel_changed(channel, version, ChangeKind::Settings)
            .await;
        Ok(true)
    }

    /// A channel's record, from the store.
    pub async fn channel_info(&self, channel: &Channel) -> Result<Option<ChannelInfo>> {
        self.store.channel(channel).await
    }

    /// Deletes a channel: its record, subscribers and lists (its messages
    /// stay). Returns `false` if there was none.
    pub async fn delete_channel(&self, channel: &Channel) -> Result<bool> {
        let Some(version) = self.store.delete_channel(channel).await? else {
            return Ok(false);
        };
        self.channel_changed(channel, version, ChangeKind::Everything)
            .await;
        Ok(true)
    }

    /// Adds subscribers: `O(uids)` writes whatever the channel's size.
    /// The channel need not exist yet, but only an existing one can be
    /// sent to.
    pub async fn add_subscribers(&self, channel: &Channel, uids: &[Uid]) -> Result<()> {
        self.check_count(uids)?;
        let version = self.store.add_subscribers(channel, uids).await?;
        let delta = MemberDelta {
            added: uids.to_vec(),
            removed: Vec::new(),
        };
        self.channel_changed(channel, version, ChangeKind::Members(delta))
            .await;
        Ok(())
    }

    /// Removes subscribers, never the owner.
    pub async fn remove_subscribers(&self, channel: &Channel, uids: &[Uid]) -> Result<()> {
        self.check_count(uids)?;
        let owner = self.store.channel(channel).await?.and_then(|c| c.owner);
        let uids: Vec<Uid> = uids
            .iter()
            .filter(|u| Some(*u) != owner.as_ref())
            .cloned()
            .collect();
        let version = self.store.remove_subscribers(channel, &uids).await?;
        let delta = MemberDelta {
            added: Vec::new(),
            removed: uids,
        };
        self.channel_changed(channel, version, ChangeKind::Members(delta))
            .await;
        Ok(())
    }

    /// Removes every subscriber but the owner (WuKongIM's
    /// `/channel/subscriber_remove_all`), in one atomic write.
    pub async fn remove_all_subscribers(&self, channel: &Channel) -> Result<()> {
        let mut all = Vec::new();
        let mut after: Option<Uid> = None;
        loop {
            let page = self
                .store
                .subscribers(channel, after.as_ref(), 10_000)
                .await?;
            let done = page.len() < 10_000;
            after = page.last().cloned();
            all.extend(page);
            if done {
                break;
            }
        }
        let owner = self.store.channel(channel).await?.and_then(|c| c.owner);
        all.retain(|u| Some(u) != owner.as_ref());
        let version = self.store.remove_subscribers(channel, &all).await?;
        self.channel_changed(channel, version, ChangeKind::Everything)
            .await;
        Ok(())
    }

    /// Up to `limit` subscribers after `after`, in uid order, from the
    /// store.
    pub async fn subscriber_page(
        &self,
        channel: &Channel,
        after: Option<&Uid>,
        limit: usize,
    ) -> Result<Vec<Uid>> {
        self.store.subscribers(channel, after, limit).await
    }

    // ---- lists

    /// Adds uids to a channel's blacklist or whitelist. As in
    /// [`MemoryDirectory`](super::MemoryDirectory), `channel` is a group or
    /// a user's own person channel (`Channel::new(uid, PERSON)`: who may
    /// message that user); it need not exist.
    pub async fn add_to_list(
        &self,
        list: AccessList,
        channel: &Channel,
        uids: &[Uid],
    ) -> Result<()> {
        self.check_count(uids)?;
        let version = self.store.add_to_list(list, channel, uids).await?;
        self.channel_changed(channel, version, ChangeKind::Settings)
            .await;
        Ok(())
    }

    /// Removes uids from a channel's blacklist or whitelist.
    pub async fn remove_from_list(
        &self,
        list: AccessList,
        channel: &Channel,
        uids: &[Uid],
    ) -> Result<()> {
        self.check_count(uids)?;
        let version = self.store.remove_from_list(list, channel, uids).await?;
        self.channel_changed(channel, version, ChangeKind::Settings)
            .await;
        Ok(())
    }

    /// Replaces a channel's blacklist or whitelist (empty: none).
    pub async fn set_list(&self, list: AccessList, channel: &Channel, uids: &[Uid]) -> Result<()> {
        self.check_count(uids)?;
        let version = self.store.set_list(list, channel, uids).await?;
        self.channel_changed(channel, version, ChangeKind::Settings)
            .await;
        Ok(())
    }

    /// A channel's blacklist or whitelist, sorted, from the store.
    pub async fn list(&self, list: AccessList, channel: &Channel) -> Result<Vec<Uid>> {
        self.store.list(list, channel).await
    }

    // ---- system uids

    /// Makes uids system accounts (or not): they may send to every channel
    /// there is, member or not, whatever its lists and bans say; a channel
    /// must still exist (5) and not be disbanded (24).
    pub async fn set_system(&self, uids: &[Uid], system: bool) -> Result<()> {
        self.check_count(uids)?;
        let version = self.store.set_system(uids, system).await?;
        self.changed(Scope::System, version, ChangeKind::Settings)
            .await;
        Ok(())
    }

    /// Every system uid, sorted, from the store.
    pub async fn system_uids(&self) -> Result<Vec<Uid>> {
        self.store.system_uids().await
    }

    /// What a channel's cached lists say of `uid`.
    fn lists(entry: &Entry, uid: &Uid) -> Lists {
        Lists {
            blacklisted: entry.black.contains(uid),
            whitelist_in_force: !entry.white.is_empty(),
            whitelisted: entry.white.contains(uid),
        }
    }
}

#[async_trait]
impl Directory for StoredDirectory {
    async fn subscribers(&self, channel: &Channel) -> Result<Arc<[Uid]>> {
        let entry = self.cache.channel(channel).await?;
        {
            // Every send asks: a read lock while the list is built.
            let e = entry.read().unwrap_or_else(|e| e.into_inner());
            match (&e.info, e.built_list()) {
                (Some(info), Some(list)) if !info.disband => return Ok(list),
                (Some(info), None) if !info.disband => {}
                _ => return Ok(Arc::from(Vec::new())),
            }
        }
        let mut e = entry.write().unwrap_or_else(|e| e.into_inner());
        Ok(e.list())
    }

    async fn check_send(&self, sender: &Uid, channel: &Channel) -> Result<Permission> {
        let system = self.cache.is_system(sender).await?;
        if let Some(party) = rules::person_peer(sender, channel) {
            let (peer, own) = match party {
                Ok(party) => party,
                Err(refusal) => return Ok(refusal),
            };
            if system || &peer == sender {
                return Ok(Permission::Allowed);
            }
            let entry = self.cache.channel(&own).await?;
            let lists = Self::lists(&entry.read().unwrap_or_else(|e| e.into_inner()), sender);
            return Ok(rules::person_send(false, false, lists, true));
        }
        let entry = self.cache.channel(channel).await?;
        let e = entry.read().unwrap_or_else(|e| e.into_inner());
        let Some(info) = &e.info else {
            return Ok(rules::missing(channel.kind));
        };
        Ok(rules::group_send(GroupFacts {
            disbanded: info.disband,
            banned: info.ban,
            all_muted: info.send_ban,
            member: e.members.contains(sender),
            privileged: info.owner.as_ref() == Some(sender),
            muted: false,
            system,
            lists: Self::lists(&e, sender),
        }))
    }

    async fn check_read(&self, reader: &Uid, channel: &Channel) -> Result<Permission> {
        if let Some(permission) = rules::person_read(reader, channel) {
            return Ok(permission);
        }
        let entry = self.cache.channel(channel).await?;
        let e = entry.read().unwrap_or_else(|e| e.into_inner());
        Ok(rules::group_read(
            e.info.as_ref().map(|_| e.members.contains(reader)),
        ))
    }

    async fn channels_of(&self, uid: &Uid) -> Result<Vec<Channel>> {
        self.store.channels_of(uid).await
    }

    /// One point read of the store per channel.
    async fn subscribes_to(&self, uid: &Uid, channels: &[Channel]) -> Result<Vec<bool>> {
        let mut out = Vec::with_capacity(channels.len());
        for channel in channels {
            out.push(self.store.is_subscriber(channel, uid).await?);
        }
        Ok(out)
    }

    async fn role(&self, channel: &Channel, uid: &Uid) -> Result<Option<Role>> {
        if let Some((a, b)) = channel.person_parties() {
            return Ok((&a == uid || &b == uid).then_some(Role::Member));
        }
        let entry = self.cache.channel(channel).await?;
        let e = entry.read().unwrap_or_else(|e| e.into_inner());
        Ok(e.info.as_ref().and_then(|info| {
            if info.owner.as_ref() == Some(uid) {
                Some(Role::Owner)
            } else if e.members.contains(uid) {
                Some(Role::Member)
            } else {
                None
            }
        }))
    }
}
