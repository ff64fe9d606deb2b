//! [`MemoryDirectory`]: a directory in memory, for tests and examples.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;

use super::rules::{self, GroupFacts};
use super::{AccessList, Directory, Permission, Role};
use crate::error::Result;
use crate::model::{Channel, ChannelId, ChannelType, Uid};

/// An in-memory [`Directory`], for examples, tests and small hosts.
///
/// Person channels are open to everyone, except that a user may block
/// another ([`MemoryDirectory::block`], reason 4), keep a blacklist (4) or
/// a whitelist (13) of who may message them
/// ([`MemoryDirectory::add_to_list`] on their own person channel), and the
/// directory may require friendship ([`MemoryDirectory::require_friends`],
/// reason 13). Other channels must be created
/// ([`MemoryDirectory::create_channel`]) and only their members may send
/// and read; they can have a blacklist (4) and a whitelist (13), be muted
/// per member (4), muted as a whole (25), banned (19), disbanded (24) and
/// deleted. System accounts ([`MemoryDirectory::set_system`]) may send to
/// any channel there is. Channel types other than the seven WuKongIM names
/// are refused with 23 unless created.
///
/// ```
/// use imcore::directory::{MemoryDirectory, Directory, Permission};
/// use imcore::{Channel, ReasonCode, Uid};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> imcore::Result<()> {
/// let dir = MemoryDirectory::new();
/// let (alice, bob, eve) = (Uid::new("alice")?, Uid::new("bob")?, Uid::new("eve")?);
/// let g = Channel::group("g1")?;
/// dir.create_channel(&g, &alice, [bob.clone()]);
/// assert_eq!(dir.check_send(&bob, &g).await?, Permission::Allowed);
/// assert_eq!(
///     dir.check_send(&eve, &g).await?,
///     Permission::Denied(ReasonCode::SUBSCRIBER_NOT_EXIST)
/// );
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct MemoryDirectory {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    channels: HashMap<Channel, ChannelInfo>,
    /// Blacklists and whitelists, by the channel as WuKongIM's API names
    /// it: a group, or a user's own person channel (`Channel::new(uid,
    /// PERSON)`: who may message that user).
    lists: HashMap<(AccessList, Channel), HashSet<Uid>>,
    /// Uids that may send to any channel there is.
    system: HashSet<Uid>,
    friends: HashSet<(Uid, Uid)>,
    friends_only: bool,
    names: HashMap<Uid, String>,
}

#[derive(Debug)]
struct ChannelInfo {
    owner: Uid,
    managers: HashSet<Uid>,
    members: HashSet<Uid>,
    /// `members` in join order, shared with readers.
    list: Arc<[Uid]>,
    muted: HashSet<Uid>,
    all_muted: bool,
    banned: bool,
    disbanded: bool,
}

impl ChannelInfo {
    fn rebuild_list(&mut self, order: impl IntoIterator<Item = Uid>) {
        self.list = order.into_iter().collect();
    }
}

impl MemoryDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // No code path panics while holding the lock.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates (or re-creates, clearing its state) a channel owned by
    /// `owner`, whose members are the owner and `members`.
    pub fn create_channel(
        &self,
        channel: &Channel,
        owner: &Uid,
        members: impl IntoIterator<Item = Uid>,
    ) {
        let mut order = vec![owner.clone()];
        let mut set = HashSet::from([owner.clone()]);
        for m in members {
            if set.insert(m.clone()) {
                order.push(m);
            }
        }
        let info = ChannelInfo {
            owner: owner.clone(),
            managers: HashSet::new(),
            members: set,
            list: order.into(),
            muted: HashSet::new(),
            all_muted: false,
            banned: false,
            disbanded: false,
        };
        self.write().channels.insert(channel.clone(), info);
    }

    fn with_channel(&self, channel: &Channel, f: impl FnOnce(&mut ChannelInfo)) -> bool {
        match self.write().channels.get_mut(channel) {
            Some(info) => {
                f(info);
                true
            }
            None => false,
        }
    }

    /// Adds members; returns `false` if the channel does not exist.
    pub fn add_members(&self, channel: &Channel, members: impl IntoIterator<Item = Uid>) -> bool {
        self.with_channel(channel, |info| {
            let mut order: Vec<Uid> = info.list.to_vec();
            for m in members {
                if info.members.insert(m.clone()) {
                    order.push(m);
                }
            }
            info.rebuild_list(order);
        })
    }

    /// Removes members (never the owner); returns `false` if the channel
    /// does not exist.
    pub fn remove_members(
        &self,
        channel: &Channel,
        members: impl IntoIterator<Item = Uid>,
    ) -> bool {
        self.with_channel(channel, |info| {
            for m in members {
                if m != info.owner {
                    info.members.remove(&m);
                    info.managers.remove(&m);
                }
            }
            let order: Vec<Uid> = info
                .list
                .iter()
                .filter(|u| info.members.contains(*u))
                .cloned()
                .collect();
            info.rebuild_list(order);
        })
    }

    /// Makes a member a manager (or not).
    pub fn set_manager(&self, channel: &Channel, uid: &Uid, manager: bool) -> bool {
        self.with_channel(channel, |info| {
            if manager && info.members.contains(uid) {
                info.managers.insert(uid.clone());
            } else {
                info.managers.remove(uid);
            }
        })
    }

    /// Mutes (or unmutes) one member.
    pub fn set_muted(&self, channel: &Channel, uid: &Uid, muted: bool) -> bool {
        self.with_channel(channel, |info| {
            if muted {
                info.muted.insert(uid.clone());
            } else {
                info.muted.remove(uid);
            }
        })
    }

    /// Mutes (or unmutes) everyone but the owner and managers.
    pub fn set_all_muted(&self, channel: &Channel, muted: bool) -> bool {
        self.with_channel(channel, |info| info.all_muted = muted)
    }

    /// Bans (or unbans) the channel: nobody may send.
    pub fn set_banned(&self, channel: &Channel, banned: bool) -> bool {
        self.with_channel(channel, |info| info.banned = banned)
    }

    /// Disbands the channel: nobody may send; members may still read.
    pub fn disband(&self, channel: &Channel) -> bool {
        self.with_channel(channel, |info| info.disbanded = true)
    }

    /// `blocker` blocks (or unblocks) `blocked`: `blocked` may no longer send
    /// to `blocker` in their person channel. The same as listing `blocked`
    /// in the blacklist of `blocker`'s own person channel.
    pub fn block(&self, blocker: &Uid, blocked: &Uid, on: bool) {
        let own = Channel::new(ChannelId::from(blocker.clone()), ChannelType::PERSON);
        match on {
            true => self.add_to_list(AccessList::Black, &own, [blocked.clone()]),
            false => self.remove_from_list(AccessList::Black, &own, [blocked.clone()]),
        }
    }

    /// Adds uids to a channel's blacklist or whitelist. `channel` is a
    /// group (or any channel that is not a person channel), or a user's
    /// own person channel, `Channel::new(uid, PERSON)` as WuKongIM's API
    /// names it, whose lists say who may message that user. The channel
    /// need not exist yet.
    pub fn add_to_list(
        &self,
        list: AccessList,
        channel: &Channel,
        uids: impl IntoIterator<Item = Uid>,
    ) {
        let mut inner = self.write();
        let set = inner.lists.entry((list, channel.clone())).or_default();
        set.extend(uids);
    }

    /// Removes uids from a channel's blacklist or whitelist.
    pub fn remove_from_list(
        &self,
        list: AccessList,
        channel: &Channel,
        uids: impl IntoIterator<Item = Uid>,
    ) {
        let mut inner = self.write();
        let key = (list, channel.clone());
        if let Some(set) = inner.lists.get_mut(&key) {
            for uid in uids {
                set.remove(&uid);
            }
            if set.is_empty() {
                inner.lists.remove(&key);
            }
        }
    }

    /// Replaces a channel's blacklist or whitelist (empty: none).
    pub fn set_list(
        &self,
        list: AccessList,
        channel: &Channel,
        uids: impl IntoIterator<Item = Uid>,
    ) {
        let set: HashSet<Uid> = uids.into_iter().collect();
        let mut inner = self.write();
        match set.is_empty() {
            true => inner.lists.remove(&(list, channel.clone())),
            false => inner.lists.insert((list, channel.clone()), set),
        };
    }

    /// A channel's blacklist or whitelist, sorted.
    pub fn list(&self, list: AccessList, channel: &Channel) -> Vec<Uid> {
        let mut uids: Vec<Uid> = self
            .read()
            .lists
            .get(&(list, channel.clone()))
            .map_or_else(Vec::new, |set| set.iter().cloned().collect());
        uids.sort_unstable();
        uids
    }

    /// Makes `uid` a system account (or not): it may send to every channel
    /// there is, member or not, whatever the lists, mutes and bans say
    /// (WuKongIM's system uids). A channel must still exist (5) and not be
    /// disbanded (24).
    pub fn set_system(&self, uid: &Uid, system: bool) {
        let mut inner = self.write();
        match system {
            true => inner.system.insert(uid.clone()),
            false => inner.system.remove(uid),
        };
    }

    /// Whether `uid` is a system account.
    pub fn is_system(&self, uid: &Uid) -> bool {
        self.read().system.contains(uid)
    }

    /// Deletes a channel: its members, roles and state go (its messages
    /// stay in the store). Returns `false` if it did not exist.
    pub fn delete_channel(&self, channel: &Channel) -> bool {
        self.write().channels.remove(channel).is_some()
    }

    /// Requires (or not) that the two sides of a person channel be friends.
    pub fn require_friends(&self, on: bool) {
        self.write().friends_only = on;
    }

    /// Sets the name shown for `uid`.
    pub fn set_display_name(&self, uid: &Uid, name: impl Into<String>) {
        self.write().names.insert(uid.clone(), name.into());
    }

    /// Makes `a` and `b` friends.
    pub fn add_friends(&self, a: &Uid, b: &Uid) {
        let mut inner = self.write();
        inner.friends.insert((a.clone(), b.clone()));
        inner.friends.insert((b.clone(), a.clone()));
    }
}

impl Inner {
    /// What `channel`'s lists say of `sender`.
    fn lists(&self, sender: &Uid, channel: &Channel) -> rules::Lists {
        let list = |kind| self.lists.get(&(kind, channel.clone()));
        let white = list(AccessList::White);
        rules::Lists {
            blacklisted: list(AccessList::Black).is_some_and(|set| set.contains(sender)),
            whitelist_in_force: white.is_some(),
            whitelisted: white.is_some_and(|set| set.contains(sender)),
        }
    }
}

#[async_trait]
impl Directory for MemoryDirectory {
    async fn channels_of(&self, uid: &Uid) -> Result<Vec<Channel>> {
        Ok(self
            .read()
            .channels
            .iter()
            .filter(|(_, info)| info.members.contains(uid))
            .map(|(channel, _)| channel.clone())
            .collect())
    }

    async fn subscribes_to(&self, uid: &Uid, channels: &[Channel]) -> Result<Vec<bool>> {
        let inner = self.read();
        Ok(channels
            .iter()
            .map(|c| {
                inner
                    .channels
                    .get(c)
                    .is_some_and(|info| info.members.contains(uid))
            })
            .collect())
    }

    async fn subscribers(&self, channel: &Channel) -> Result<Arc<[Uid]>> {
        Ok(match self.read().channels.get(channel) {
            Some(info) if !info.disbanded => info.list.clone(),
            _ => Arc::from(Vec::new()),
        })
    }

    async fn check_send(&self, sender: &Uid, channel: &Channel) -> Result<Permission> {
        let inner = self.read();
        let system = inner.system.contains(sender);
        if let Some(party) = rules::person_peer(sender, channel) {
            let (peer, peers) = match party {
                Ok(party) => party,
                Err(refusal) => return Ok(refusal),
            };
            let friends =
                !inner.friends_only || inner.friends.contains(&(sender.clone(), peer.clone()));
            let lists = inner.lists(sender, &peers);
            return Ok(rules::person_send(system, &peer == sender, lists, friends));
        }
        let Some(info) = inner.channels.get(channel) else {
            return Ok(rules::missing(channel.kind));
        };
        Ok(rules::group_send(GroupFacts {
            disbanded: info.disbanded,
            banned: info.banned,
            all_muted: info.all_muted,
            member: info.members.contains(sender),
            privileged: &info.owner == sender || info.managers.contains(sender),
            muted: info.muted.contains(sender),
            system,
            lists: inner.lists(sender, channel),
        }))
    }

    async fn check_read(&self, reader: &Uid, channel: &Channel) -> Result<Permission> {
        if let Some(permission) = rules::person_read(reader, channel) {
            return Ok(permission);
        }
        let inner = self.read();
        let member = inner
            .channels
            .get(channel)
            .map(|info| info.members.contains(reader));
        Ok(rules::group_read(member))
    }

    async fn display_name(&self, uid: &Uid) -> Result<Option<String>> {
        Ok(self.read().names.get(uid).cloned())
    }

    async fn role(&self, channel: &Channel, uid: &Uid) -> Result<Option<Role>> {
        if let Some((a, b)) = channel.person_parties() {
            return Ok((&a == uid || &b == uid).then_some(Role::Member));
        }
        Ok(self.read().channels.get(channel).and_then(|info| {
            if &info.owner == uid {
                Some(Role::Owner)
            } else if info.managers.contains(uid) {
                Some(Role::Manager)
            } else if info.members.contains(uid) {
                Some(Role::Member)
            } else {
                None
            }
        }))
    }
}
