//! The directory's data in a [`MemoryStore`].

use std::collections::{BTreeSet, HashMap};
use std::sync::MutexGuard;

use async_trait::async_trait;

use super::MemoryStore;
use crate::directory::{AccessList, ChannelInfo, DirectoryCounts, DirectoryStore, StoredToken};
use crate::error::Result;
use crate::model::{Channel, Uid};
use crate::session::DeviceFlag;

/// Every directory table, behind the store's second lock.
#[derive(Debug, Default)]
pub(super) struct Data {
    tokens: HashMap<(Uid, DeviceFlag), StoredToken>,
    channels: HashMap<Channel, ChannelInfo>,
    members: HashMap<Channel, BTreeSet<Uid>>,
    member_of: HashMap<Uid, BTreeSet<Channel>>,
    lists: HashMap<(AccessList, Channel), BTreeSet<Uid>>,
    system: BTreeSet<Uid>,
    versions: HashMap<Channel, u64>,
    system_version: u64,
}

impl Data {
    fn bump(&mut self, channel: &Channel) -> u64 {
        let v = self.versions.entry(channel.clone()).or_default();
        *v += 1;
        *v
    }

    fn remove_members(&mut self, channel: &Channel, uids: &[Uid]) {
        if let Some(set) = self.members.get_mut(channel) {
            for uid in uids {
                if set.remove(uid) {
                    if let Some(of) = self.member_of.get_mut(uid) {
                        of.remove(channel);
                    }
                }
            }
        }
    }
}

impl MemoryStore {
    fn dir(&self) -> MutexGuard<'_, Data> {
        // Nothing panics while holding it.
        self.directory.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl DirectoryStore for MemoryStore {
    async fn counts(&self) -> Result<Option<DirectoryCounts>> {
        let dir = self.dir();
        let subscriptions = dir.members.values().map(|m| m.len() as u64).sum();
        Ok(Some(DirectoryCounts::new(
            dir.channels.len() as u64,
            subscriptions,
        )))
    }

    async fn set_token(&self, uid: &Uid, flag: DeviceFlag, token: &StoredToken) -> Result<()> {
        self.dir().tokens.insert((uid.clone(), flag), token.clone());
        Ok(())
    }

    async fn token(&self, uid: &Uid, flag: DeviceFlag) -> Result<Option<StoredToken>> {
        Ok(self.dir().tokens.get(&(uid.clone(), flag)).cloned())
    }

    async fn remove_token(&self, uid: &Uid, flag: DeviceFlag) -> Result<bool> {
        Ok(self.dir().tokens.remove(&(uid.clone(), flag)).is_some())
    }

    async fn put_channel(&self, channel: &Channel, info: &ChannelInfo) -> Result<u64> {
        let mut d = self.dir();
        d.channels.insert(channel.clone(), info.clone());
        Ok(d.bump(channel))
    }

    async fn channel(&self, channel: &Channel) -> Result<Option<ChannelInfo>> {
        Ok(self.dir().channels.get(channel).cloned())
    }

    async fn delete_channel(&self, channel: &Channel) -> Result<Option<u64>> {
        let mut d = self.dir();
        if d.channels.remove(channel).is_none() {
            return Ok(None);
        }
        let members: Vec<Uid> = d
            .members
            .get(channel)
            .map_or_else(Vec::new, |s| s.iter().cloned().collect());
        d.remove_members(channel, &members);
        d.members.remove(channel);
        d.lists.remove(&(AccessList::Black, channel.clone()));
        d.lists.remove(&(AccessList::White, channel.clone()));
        Ok(Some(d.bump(channel)))
    }

    async fn add_subscribers(&self, channel: &Channel, uids: &[Uid]) -> Result<u64> {
        let mut d = self.dir();
        for uid in uids {
            d.members
                .entry(channel.clone())
                .or_default()
                .insert(uid.clone());
            d.member_of
                .entry(uid.clone())
                .or_default()
                .insert(channel.clone());
        }
        Ok(d.bump(channel))
    }

    async fn remove_subscribers(&self, channel: &Channel, uids: &[Uid]) -> Result<u64> {
        let mut d = self.dir();
        d.remove_members(channel, uids);
        Ok(d.bump(channel))
    }

    async fn is_subscriber(&self, channel: &Channel, uid: &Uid) -> Result<bool> {
        Ok(self
            .dir()
            .members
            .get(channel)
            .is_some_and(|s| s.contains(uid)))
    }

    async fn subscribers(
        &self,
        channel: &Channel,
        after: Option<&Uid>,
        limit: usize,
    ) -> Result<Vec<Uid>> {
        super::check_limit(limit)?;
        let d = self.dir();
        let Some(set) = d.members.get(channel) else {
            return Ok(Vec::new());
        };
        Ok(match after {
            Some(after) => set
                .range::<Uid, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                .take(limit)
                .cloned()
                .collect(),
            None => set.iter().take(limit).cloned().collect(),
        })
    }

    async fn channels_of(&self, uid: &Uid) -> Result<Vec<Channel>> {
        Ok(self
            .dir()
            .member_of
            .get(uid)
            .map_or_else(Vec::new, |s| s.iter().cloned().collect()))
    }

    async fn add_to_list(&self, list: AccessList, channel: &Channel, uids: &[Uid]) -> Result<u64> {
        let mut d = self.dir();
        d.lists
            .entry((list, channel.clone()))
            .or_default()
            .extend(uids.iter().cloned());
        Ok(d.bump(channel))
    }

    async fn remove_from_list(
        &self,
        list: AccessList,
        channel: &Channel,
        uids: &[Uid],
    ) -> Result<u64> {
        let mut d = self.dir();
        if let Some(set) = d.lists.get_mut(&(list, channel.clone())) {
            for uid in uids {
                set.remove(uid);
            }
        }
        Ok(d.bump(channel))
    }

    async fn set_list(&self, list: AccessList, channel: &Channel, uids: &[Uid]) -> Result<u64> {
        let mut d = self.dir();
        d.lists
            .insert((list, channel.clone()), uids.iter().cloned().collect());
        Ok(d.bump(channel))
    }

    async fn list(&self, list: AccessList, channel: &Channel) -> Result<Vec<Uid>> {
        Ok(self
            .dir()
            .lists
            .get(&(list, channel.clone()))
            .map_or_else(Vec::new, |s| s.iter().cloned().collect()))
    }

    async fn set_system(&self, uids: &[Uid], system: bool) -> Result<u64> {
        let mut d = self.dir();
        for uid in uids {
            match system {
                true => d.system.insert(uid.clone()),
                false => d.system.remove(uid),
            };
        }
        d.system_version += 1;
        Ok(d.system_version)
    }

    async fn system_uids(&self) -> Result<Vec<Uid>> {
        Ok(self.dir().system.iter().cloned().collect())
    }

    async fn channel_version(&self, channel: &Channel) -> Result<u64> {
        Ok(self.dir().versions.get(channel).copied().unwrap_or(0))
    }

    async fn system_version(&self) -> Result<u64> {
        Ok(self.dir().system_version)
    }
}
