//! A node's cache of what its [`DirectoryStore`] holds, for the questions
//! asked on every send.
//!
//! # How it stays true
//!
//! Every entry carries the version it was read at. An entry is dropped (or,
//! for a change that only added and removed subscribers and is the very
//! next version, changed in place) when this node or another one says the
//! store moved past it ([`Cache::apply`]). Because a notice from another
//! node can be lost, an entry older than the revalidation bound is checked
//! on its next use with one version read, and every entry is checked after
//! the feed says it may have missed changes ([`Cache::stale_all`]). A load
//! that raced a change is checked on its first use.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::feed::{ChangeKind, DirectoryChange, MemberDelta, Scope};
use super::store::{ChannelInfo, DirectoryStore};
use crate::clock::Clock;
use crate::error::Result;
use crate::model::{Channel, ChannelType, Uid};

/// How many subscribers one store call reads when a channel is loaded.
const PAGE: usize = 10_000;

/// A checked time that is always too old: checked on the next use.
const UNCHECKED: i64 = i64::MIN;

/// What the cache knows of one channel.
#[derive(Debug)]
pub(super) struct Entry {
    pub version: u64,
    checked_ms: i64,
    /// `None`: the channel does not exist (its lists may still).
    pub info: Option<ChannelInfo>,
    /// Loaded for channels that exist and are not person channels.
    pub members: HashSet<Uid>,
    /// `members` as the hub's subscriber list, built on first use after a
    /// change.
    list: Option<Arc<[Uid]>>,
    pub black: HashSet<Uid>,
    pub white: HashSet<Uid>,
    /// Its record or lists changed at `version` (and nothing else): read
    /// them again, keep the subscribers.
    settings_stale: bool,
}

impl Entry {
    /// The subscribers as a shared list, if built since the last change.
    pub fn built_list(&self) -> Option<Arc<[Uid]>> {
        self.list.clone()
    }

    /// The subscribers as a shared list (built once per change), in uid
    /// order: the order they were read in, and so in memory. A send walks
    /// the whole list, and in the set's hash order a 100,000-member walk
    /// took three times as long (cache misses on every uid).
    pub fn list(&mut self) -> Arc<[Uid]> {
        self.list
            .get_or_insert_with(|| {
                let mut list: Vec<Uid> = self.members.iter().cloned().collect();
                list.sort_unstable();
                list.into()
            })
            .clone()
    }

    fn apply(&mut self, delta: &MemberDelta) {
        for uid in &delta.removed {
            self.members.remove(uid);
        }
        self.members.extend(delta.added.iter().cloned());
        self.list = None;
    }
}

#[derive(Debug)]
struct System {
    version: u64,
    checked_ms: i64,
    uids: HashSet<Uid>,
}

/// What the cache has done, for metrics.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub hits: AtomicU64,
    pub loads: AtomicU64,
    pub revalidations: AtomicU64,
    pub invalidations: AtomicU64,
}

/// One node's cache; see the module's documentation.
#[derive(Debug)]
pub(super) struct Cache {
    store: Arc<dyn DirectoryStore>,
    clock: Arc<dyn Clock>,
    revalidate_ms: i64,
    capacity: usize,
    channels: RwLock<HashMap<Channel, Arc<RwLock<Entry>>>>,
    system: RwLock<Option<System>>,
    /// Moved by every notice: a load that sees it move was racing one.
    epoch: AtomicU64,
    pub counters: Counters,
}

pub(super) type EntryRef = Arc<RwLock<Entry>>;

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // Nothing panics while holding these locks.
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

impl Cache {
    pub fn new(
        store: Arc<dyn DirectoryStore>,
        clock: Arc<dyn Clock>,
        revalidate_ms: i64,
        capacity: usize,
    ) -> Self {
        Cache {
            store,
            clock,
            revalidate_ms,
            capacity: capacity.max(1),
            channels: RwLock::new(HashMap::new()),
            system: RwLock::new(None),
            epoch: AtomicU64::new(0),
            counters: Counters::default(),
        }
    }

    fn fresh(&self, checked_ms: i64, now: i64) -> bool {
        checked_ms != UNCHECKED && now.saturating_sub(checked_ms) < self.revalidate_ms
    }

    /// The channel's entry, read from the store if missing or out of date.
    pub async fn channel(&self, channel: &Channel) -> Result<EntryRef> {
        let cached = read(&self.channels).get(channel).cloned();
        if let Some(entry) = cached {
            let now = self.clock.now_ms();
            let (checked, version, stale) = {
                let e = read(&entry);
                (e.checked_ms, e.version, e.settings_stale)
            };
            if stale {
                return self.refresh_settings(channel, entry, version).await;
            }
            if self.fresh(checked, now) {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(entry);
            }
            self.counters.revalidations.fetch_add(1, Ordering::Relaxed);
            let epoch = self.epoch.load(Ordering::Acquire);
            if self.store.channel_version(channel).await? == version {
                {
                    let mut e = write(&entry);
                    if e.version == version && self.epoch.load(Ordering::Acquire) == epoch {
                        e.checked_ms = now;
                    }
                }
                return Ok(entry);
            }
        }
        self.load(channel).await
    }

    /// Reads a channel's record and lists again, keeping its subscribers:
    /// what a change of its settings needs. If the store has moved past
    /// `version` meanwhile, reads it all.
    async fn refresh_settings(
        &self,
        channel: &Channel,
        entry: EntryRef,
        version: u64,
    ) -> Result<EntryRef> {
        self.counters.revalidations.fetch_add(1, Ordering::Relaxed);
        let epoch = self.epoch.load(Ordering::Acquire);
        let now = self.clock.now_ms();
        let snapshot = self.store.channel_snapshot(channel, 1).await?;
        if snapshot.version != version || snapshot.info.is_none() {
            return self.load(channel).await;
        }
        let set = |v: Vec<Uid>| v.into_iter().collect::<HashSet<Uid>>();
        let refreshed = {
            let mut e = write(&entry);
            let still = e.version == version;
            if still {
                e.info = snapshot.info;
                e.black = set(snapshot.black);
                e.white = set(snapshot.white);
                e.settings_stale = false;
                let raced = self.epoch.load(Ordering::Acquire) != epoch;
                e.checked_ms = if raced { UNCHECKED } else { now };
            }
            still
        };
        match refreshed {
            true => Ok(entry),
            // Moved again while this read: read it all.
            false => self.load(channel).await,
        }
    }

    async fn load(&self, channel: &Channel) -> Result<EntryRef> {
        self.counters.loads.fetch_add(1, Ordering::Relaxed);
        let epoch = self.epoch.load(Ordering::Acquire);
        let now = self.clock.now_ms();
        // One snapshot (the version read no later than the rest), then
        // the further pages of a big group.
        let snapshot = self.store.channel_snapshot(channel, PAGE).await?;
        let (version, info) = (snapshot.version, snapshot.info);
        let mut list = Vec::new();
        if info.is_some() && channel.kind != ChannelType::PERSON {
            let mut page = snapshot.subscribers;
            loop {
                let full = page.len() == PAGE;
                let after = page.last().cloned();
                list.extend(page);
                if !full {
                    break;
                }
                page = self
                    .store
                    .subscribers(channel, after.as_ref(), PAGE)
                    .await?;
            }
        }
        let set = |v: Vec<Uid>| v.into_iter().collect::<HashSet<Uid>>();
        let (black, white) = (set(snapshot.black), set(snapshot.white));
        // Copied in one tight loop, so that the uids sit together in
        // memory: read from the store, they were allocated between the
        // store's own buffers, and a send into a 100,000-member group
        // (which walks every uid) took 2.3 times as long with them.
        let list: Vec<Uid> = list.iter().map(|u| Uid::from_stored(u.as_str())).collect();
        let members: HashSet<Uid> = list.iter().cloned().collect();
        let raced = self.epoch.load(Ordering::Acquire) != epoch;
        let entry = Arc::new(RwLock::new(Entry {
            version,
            checked_ms: if raced { UNCHECKED } else { now },
            info,
            members,
            // Read in uid order already.
            list: Some(list.into()),
            black,
            white,
            settings_stale: false,
        }));
        let mut channels = write(&self.channels);
        if channels.len() >= self.capacity && !channels.contains_key(channel) {
            // Full: make room (any entry; a hot one is read again).
            if let Some(victim) = channels.keys().next().cloned() {
                channels.remove(&victim);
            }
        }
        channels.insert(channel.clone(), entry.clone());
        Ok(entry)
    }

    /// Whether `uid` is a system account, from the cached set.
    pub async fn is_system(&self, uid: &Uid) -> Result<bool> {
        let now = self.clock.now_ms();
        let cached = read(&self.system)
            .as_ref()
            .map(|s| (s.version, s.checked_ms, s.uids.contains(uid)));
        if let Some((version, checked, listed)) = cached {
            if self.fresh(checked, now) {
                return Ok(listed);
            }
            let epoch = self.epoch.load(Ordering::Acquire);
            if self.store.system_version().await? == version {
                let mut system = write(&self.system);
                if let Some(s) = system.as_mut() {
                    if s.version == version && self.epoch.load(Ordering::Acquire) == epoch {
                        s.checked_ms = now;
                    }
                }
                return Ok(listed);
            }
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let version = self.store.system_version().await?;
        let uids: HashSet<Uid> = self.store.system_uids().await?.into_iter().collect();
        let listed = uids.contains(uid);
        let raced = self.epoch.load(Ordering::Acquire) != epoch;
        *write(&self.system) = Some(System {
            version,
            checked_ms: if raced { UNCHECKED } else { now },
            uids,
        });
        Ok(listed)
    }

    /// A change heard of (made here or on another node).
    pub fn apply(&self, change: &DirectoryChange) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        match &change.scope {
            Scope::System => {
                let mut system = write(&self.system);
                if system.as_ref().is_some_and(|s| s.version < change.version) {
                    *system = None;
                    self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
                }
            }
            Scope::Channel(channel) => {
                let mut channels = write(&self.channels);
                let Some(entry) = channels.get(channel) else {
                    return;
                };
                let mut e = write(entry);
                if e.version >= change.version {
                    return;
                }
                // Only the very next version, and only when the
                // subscribers were loaded (the channel existed).
                let next = e.version + 1 == change.version && e.info.is_some();
                match &change.kind {
                    ChangeKind::Members(delta) if next && !e.settings_stale => {
                        e.apply(delta);
                        e.version = change.version;
                    }
                    ChangeKind::Settings if next => {
                        e.version = change.version;
                        e.settings_stale = true;
                    }
                    _ => {
                        drop(e);
                        channels.remove(channel);
                        self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// Changes may have been missed: check every entry on its next use.
    pub fn stale_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for entry in read(&self.channels).values() {
            write(entry).checked_ms = UNCHECKED;
        }
        if let Some(s) = write(&self.system).as_mut() {
            s.checked_ms = UNCHECKED;
        }
    }

    /// How many channels are cached.
    pub fn len(&self) -> usize {
        read(&self.channels).len()
    }
}
