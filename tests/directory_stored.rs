//! `StoredDirectory`: WuKongIM's rules on a store, its cache (no store call
//! when warm, a version check past the bound, in-place changes for big
//! groups), bad input refused whole, and everything kept across a restart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use imcore::directory::{
    ChangeFeed, ChannelInfo, DirectoryChange, FeedEvent, FeedSink, Permission, StoredToken,
};
use imcore::store::SledStore;
use imcore::{
    AccessList, Channel, ChannelId, ChannelType, DeviceFlag, DeviceLevel, Directory,
    DirectoryConfig, DirectoryStore, Error, ManualClock, MemoryDirectory, MemoryStore, ReasonCode,
    StoredDirectory, Uid,
};

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

fn group(s: &str) -> Channel {
    Channel::group(s).unwrap()
}

fn own(s: &str) -> Channel {
    Channel::new(ChannelId::from(uid(s)), ChannelType::PERSON)
}

/// A store that counts the calls made to it.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn DirectoryStore>,
    calls: AtomicU64,
    /// Subscribers read, summed over every page.
    subscribers_read: AtomicU64,
}

impl Counting {
    fn new(inner: Arc<dyn DirectoryStore>) -> Arc<Self> {
        Arc::new(Counting {
            inner,
            calls: AtomicU64::new(0),
            subscribers_read: AtomicU64::new(0),
        })
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn count(&self) -> &dyn DirectoryStore {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.as_ref()
    }
}

#[async_trait]
impl DirectoryStore for Counting {
    async fn set_token(&self, u: &Uid, f: DeviceFlag, t: &StoredToken) -> imcore::Result<()> {
        self.count().set_token(u, f, t).await
    }
    async fn token(&self, u: &Uid, f: DeviceFlag) -> imcore::Result<Option<StoredToken>> {
        self.count().token(u, f).await
    }
    async fn remove_token(&self, u: &Uid, f: DeviceFlag) -> imcore::Result<bool> {
        self.count().remove_token(u, f).await
    }
    async fn put_channel(&self, c: &Channel, i: &ChannelInfo) -> imcore::Result<u64> {
        self.count().put_channel(c, i).await
    }
    async fn channel(&self, c: &Channel) -> imcore::Result<Option<ChannelInfo>> {
        self.count().channel(c).await
    }
    async fn delete_channel(&self, c: &Channel) -> imcore::Result<Option<u64>> {
        self.count().delete_channel(c).await
    }
    async fn add_subscribers(&self, c: &Channel, u: &[Uid]) -> imcore::Result<u64> {
        self.count().add_subscribers(c, u).await
    }
    async fn remove_subscribers(&self, c: &Channel, u: &[Uid]) -> imcore::Result<u64> {
        self.count().remove_subscribers(c, u).await
    }
    async fn is_subscriber(&self, c: &Channel, u: &Uid) -> imcore::Result<bool> {
        self.count().is_subscriber(c, u).await
    }
    async fn subscribers(
        &self,
        c: &Channel,
        a: Option<&Uid>,
        l: usize,
    ) -> imcore::Result<Vec<Uid>> {
        let page = self.count().subscribers(c, a, l).await?;
        self.subscribers_read
            .fetch_add(page.len() as u64, Ordering::SeqCst);
        Ok(page)
    }
    async fn channels_of(&self, u: &Uid) -> imcore::Result<Vec<Channel>> {
        self.count().channels_of(u).await
    }
    async fn add_to_list(&self, k: AccessList, c: &Channel, u: &[Uid]) -> imcore::Result<u64> {
        self.count().add_to_list(k, c, u).await
    }
    async fn remove_from_list(&self, k: AccessList, c: &Channel, u: &[Uid]) -> imcore::Result<u64> {
        self.count().remove_from_list(k, c, u).await
    }
    async fn set_list(&self, k: AccessList, c: &Channel, u: &[Uid]) -> imcore::Result<u64> {
        self.count().set_list(k, c, u).await
    }
    async fn list(&self, k: AccessList, c: &Channel) -> imcore::Result<Vec<Uid>> {
        self.count().list(k, c).await
    }
    async fn set_system(&self, u: &[Uid], s: bool) -> imcore::Result<u64> {
        self.count().set_system(u, s).await
    }
    async fn system_uids(&self) -> imcore::Result<Vec<Uid>> {
        self.count().system_uids().await
    }
    async fn channel_version(&self, c: &Channel) -> imcore::Result<u64> {
        self.count().channel_version(c).await
    }
    async fn system_version(&self) -> imcore::Result<u64> {
        self.count().system_version().await
    }
}

/// Nodes in one process: what one publishes, all hear.
#[derive(Default)]
struct InProcessFeed {
    sinks: Mutex<Vec<FeedSink>>,
}

impl std::fmt::Debug for InProcessFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InProcessFeed")
    }
}

#[async_trait]
impl ChangeFeed for InProcessFeed {
    async fn publish(&self, change: &DirectoryChange) -> imcore::Result<()> {
        let sinks = self.sinks.lock().unwrap().clone();
        for sink in sinks {
            sink(FeedEvent::Change(change.clone()));
        }
        Ok(())
    }
    fn subscribe(&self, sink: FeedSink) {
        self.sinks.lock().unwrap().push(sink);
    }
}

fn denied(code: ReasonCode) -> Permission {
    Permission::Denied(code)
}

/// The same state set up in a `MemoryDirectory` and a `StoredDirectory`
/// gets the same answer for every sender and channel.
#[tokio::test]
async fn stored_rules_are_memory_directorys() {
    let memory = MemoryDirectory::new();
    let stored = StoredDirectory::new(Arc::new(MemoryStore::new()));
    let (owner, a, b, c, sys, eve) = (
        uid("owner"),
        uid("a"),
        uid("b"),
        uid("c"),
        uid("sys"),
        uid("eve"),
    );
    let (g, banned, quiet, gone, white) = (
        group("g"),
        group("banned"),
        group("quiet"),
        group("gone"),
        group("white"),
    );
    let members = [a.clone(), b.clone(), c.clone()];
    for ch in [&g, &banned, &quiet, &gone, &white] {
        memory.create_channel(ch, &owner, members.clone());
        let mut all = vec![owner.clone()];
        all.extend(members.clone());
        stored
            .create_channel(ch, ChannelInfo::default(), &all)
            .await
            .unwrap();
    }
    memory.set_banned(&banned, true);
    memory.set_all_muted(&quiet, true);
    memory.disband(&gone);
    let info = |ban, send_ban, disband| ChannelInfo {
        ban,
        send_ban,
        disband,
        ..ChannelInfo::default()
    };
    stored
        .update_channel(&banned, info(true, false, false))
        .await
        .unwrap();
    stored
        .update_channel(&quiet, info(false, true, false))
        .await
        .unwrap();
    stored
        .update_channel(&gone, info(false, false, true))
        .await
        .unwrap();
    memory.add_to_list(AccessList::Black, &g, [b.clone()]);
    stored
        .add_to_list(AccessList::Black, &g, std::slice::from_ref(&b))
        .await
        .unwrap();
    memory.add_to_list(AccessList::White, &white, [a.clone()]);
    stored
        .add_to_list(AccessList::White, &white, std::slice::from_ref(&a))
        .await
        .unwrap();
    memory.block(&a, &c, true);
    stored
        .add_to_list(AccessList::Black, &own("a"), std::slice::from_ref(&c))
        .await
        .unwrap();
    memory.add_to_list(AccessList::White, &own("b"), [a.clone()]);
    stored
        .add_to_list(AccessList::White, &own("b"), std::slice::from_ref(&a))
        .await
        .unwrap();
    memory.set_system(&sys, true);
    stored
        .set_system(std::slice::from_ref(&sys), true)
        .await
        .unwrap();

    let odd = Channel::new(
        ChannelId::new("x").unwrap(),
        ChannelType::try_from(42).unwrap(),
    );
    let mut channels = vec![g, banned, quiet, gone, white, group("nowhere"), odd];
    for (x, y) in [(&a, &c), (&c, &a), (&a, &b), (&c, &b), (&sys, &b), (&a, &a)] {
        channels.push(Channel::person(x, y));
    }
    let mut seen = std::collections::HashSet::new();
    for sender in [&owner, &a, &b, &c, &sys, &eve] {
        for ch in &channels {
            let want = memory.check_send(sender, ch).await.unwrap();
            let got = stored.check_send(sender, ch).await.unwrap();
            assert_eq!(got, want, "{sender} to {ch:?}");
            seen.insert(want);
            let want = memory.check_read(sender, ch).await.unwrap();
            assert_eq!(stored.check_read(sender, ch).await.unwrap(), want);
            let want = memory.role(ch, sender).await.unwrap();
            assert_eq!(stored.role(ch, sender).await.unwrap(), want, "role");
        }
    }
    // The table covers every answer the rules give.
    for code in [
        ReasonCode::IN_BLACKLIST,
        ReasonCode::NOT_IN_WHITELIST,
        ReasonCode::SUBSCRIBER_NOT_EXIST,
        ReasonCode::CHANNEL_NOT_EXIST,
        ReasonCode::NOT_SUPPORT_CHANNEL_TYPE,
        ReasonCode::BAN,
        ReasonCode::SEND_BAN,
        ReasonCode::DISBAND,
    ] {
        assert!(seen.contains(&denied(code)), "{code:?} never came up");
    }
    assert!(seen.contains(&Permission::Allowed));
}

fn manual(store: Arc<dyn DirectoryStore>, clock: Arc<ManualClock>) -> StoredDirectory {
    let config = DirectoryConfig::default().revalidate_after(Duration::from_secs(1));
    StoredDirectory::with(store, config, clock)
}

/// A warm check makes no store call; past the bound, one version read;
/// a change through another directory on the same store (no feed at all)
/// is in force once the bound has passed.
#[tokio::test]
async fn the_cache_answers_warm_and_heals_within_the_bound() {
    let store: Arc<dyn DirectoryStore> = Arc::new(MemoryStore::new());
    let counting = Counting::new(store.clone());
    let clock = Arc::new(ManualClock::new(1_000_000));
    let node_b = manual(counting.clone(), clock.clone());
    let node_a = StoredDirectory::new(store);
    let (owner, m) = (uid("owner"), uid("m"));
    let g = group("g");
    node_a
        .create_channel(&g, ChannelInfo::default(), &[owner, m.clone()])
        .await
        .unwrap();
    assert_eq!(
        node_b.check_send(&m, &g).await.unwrap(),
        Permission::Allowed
    );
    let cold = counting.calls();
    assert!(cold > 0);
    for _ in 0..100 {
        assert_eq!(
            node_b.check_send(&m, &g).await.unwrap(),
            Permission::Allowed
        );
        node_b.subscribers(&g).await.unwrap();
    }
    assert_eq!(counting.calls(), cold, "warm: no store call");

    node_a
        .add_to_list(AccessList::Black, &g, std::slice::from_ref(&m))
        .await
        .unwrap();
    clock.advance(Duration::from_millis(999));
    assert_eq!(
        node_b.check_send(&m, &g).await.unwrap(),
        Permission::Allowed,
        "inside the bound, without a feed, the old answer stands"
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        node_b.check_send(&m, &g).await.unwrap(),
        denied(ReasonCode::IN_BLACKLIST),
        "at the bound it is checked and read again"
    );
    let after_reload = counting.calls();
    clock.advance(Duration::from_secs(5));
    node_b.check_send(&m, &g).await.unwrap();
    assert_eq!(
        counting.calls(),
        after_reload + 2,
        "an unchanged entry past the bound costs one version read (and the system uids one)"
    );
}

/// With a feed, a change through one node is in force on the other
/// before the call returns; a big group takes a one-member change in place
/// (no store call on the other node), and the writing node writes two
/// keys for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_group_changes_one_member_in_place_on_every_node() {
    const MEMBERS: usize = 100_000;
    let sled = Arc::new(SledStore::temporary().unwrap());
    let feed = Arc::new(InProcessFeed::default());
    let counting = Counting::new(sled.clone());
    let node_a = StoredDirectory::new(sled.clone()).feed(feed.clone());
    // Its clock stands still: no revalidation falls inside the test.
    let node_b = manual(counting.clone(), Arc::new(ManualClock::new(0))).feed(feed);
    let g = group("big");
    let members: Vec<Uid> = (0..MEMBERS).map(|i| uid(&format!("u{i:06}"))).collect();
    node_a
        .create_channel(&g, ChannelInfo::default(), &members)
        .await
        .unwrap();
    assert_eq!(node_b.subscribers(&g).await.unwrap().len(), MEMBERS);
    let newcomer = uid("newcomer");
    assert_eq!(
        node_b.check_send(&newcomer, &g).await.unwrap(),
        denied(ReasonCode::SUBSCRIBER_NOT_EXIST)
    );
    let (keys, calls) = (sled.key_count().unwrap(), counting.calls());
    node_a
        .add_subscribers(&g, std::slice::from_ref(&newcomer))
        .await
        .unwrap();
    assert_eq!(
        sled.key_count().unwrap(),
        keys + 2,
        "one member is two keys (and the version's, rewritten)"
    );
    assert_eq!(
        node_b.check_send(&newcomer, &g).await.unwrap(),
        Permission::Allowed
    );
    assert_eq!(node_b.subscribers(&g).await.unwrap().len(), MEMBERS + 1);
    node_a
        .remove_subscribers(&g, &[members[7].clone()])
        .await
        .unwrap();
    assert_eq!(
        node_b.check_send(&members[7], &g).await.unwrap(),
        denied(ReasonCode::SUBSCRIBER_NOT_EXIST)
    );
    assert_eq!(
        counting.calls(),
        calls,
        "node B read nothing from the store"
    );

    // A list change (and a settings change) makes node B read the
    // channel's record and lists again, not its 100,000 subscribers.
    let read_before = counting.subscribers_read.load(Ordering::SeqCst);
    node_a
        .add_to_list(AccessList::Black, &g, std::slice::from_ref(&members[9]))
        .await
        .unwrap();
    assert_eq!(
        node_b.check_send(&members[9], &g).await.unwrap(),
        denied(ReasonCode::IN_BLACKLIST)
    );
    let quiet = ChannelInfo {
        send_ban: true,
        ..ChannelInfo::default()
    };
    node_a.update_channel(&g, quiet).await.unwrap();
    assert_eq!(
        node_b.check_send(&members[10], &g).await.unwrap(),
        denied(ReasonCode::SEND_BAN)
    );
    assert_eq!(node_b.subscribers(&g).await.unwrap().len(), MEMBERS);
    let read = counting.subscribers_read.load(Ordering::SeqCst) - read_before;
    assert!(read <= 2, "node B read {read} subscribers again");
}

/// More uids in one call than the limit: refused whole, nothing stored.
#[tokio::test]
async fn too_many_uids_in_one_call_are_refused_whole() {
    let store = Arc::new(MemoryStore::new());
    let config = DirectoryConfig::default().max_uids_per_call(10);
    let dir = StoredDirectory::with(store.clone(), config, Arc::new(ManualClock::new(0)));
    let g = group("g");
    let eleven: Vec<Uid> = (0..11).map(|i| uid(&format!("u{i}"))).collect();
    let refused = dir
        .create_channel(&g, ChannelInfo::default(), &eleven)
        .await;
    assert!(matches!(refused, Err(Error::Validation(_))), "{refused:?}");
    assert_eq!(
        store.channel(&g).await.unwrap(),
        None,
        "nothing of it stored"
    );
    dir.create_channel(&g, ChannelInfo::default(), &eleven[..10])
        .await
        .unwrap();
    let refused = dir.add_to_list(AccessList::Black, &g, &eleven).await;
    assert!(matches!(refused, Err(Error::Validation(_))));
    assert!(store.list(AccessList::Black, &g).await.unwrap().is_empty());
    let refused = dir.set_system(&eleven, true).await;
    assert!(matches!(refused, Err(Error::Validation(_))));
    assert!(store.system_uids().await.unwrap().is_empty());
}

/// The owner stays when subscribers are removed, even all of them.
#[tokio::test]
async fn the_owner_is_never_removed() {
    let dir = StoredDirectory::new(Arc::new(MemoryStore::new()));
    let g = group("g");
    let (owner, a) = (uid("owner"), uid("a"));
    dir.create_channel(&g, ChannelInfo::default(), &[owner.clone(), a.clone()])
        .await
        .unwrap();
    dir.remove_subscribers(&g, std::slice::from_ref(&owner))
        .await
        .unwrap();
    assert_eq!(
        dir.check_send(&owner, &g).await.unwrap(),
        Permission::Allowed
    );
    dir.remove_all_subscribers(&g).await.unwrap();
    assert_eq!(
        dir.subscribers(&g).await.unwrap().to_vec(),
        vec![owner.clone()]
    );
    assert!(dir.delete_channel(&g).await.unwrap());
    assert!(!dir.delete_channel(&g).await.unwrap());
    assert_eq!(
        dir.check_send(&owner, &g).await.unwrap(),
        denied(ReasonCode::CHANNEL_NOT_EXIST)
    );
}

/// Everything a business server set is there after the store is closed
/// and opened again on the same directory.
#[tokio::test]
async fn a_restart_keeps_tokens_channels_members_lists_and_system_uids() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, a, b, sys) = (uid("owner"), uid("a"), uid("b"), uid("sys"));
    let g = group("g");
    {
        let store = Arc::new(SledStore::open(dir.path()).unwrap());
        let d = StoredDirectory::new(store);
        d.set_token(&a, DeviceFlag::Web, "tok", DeviceLevel::Slave)
            .await
            .unwrap();
        d.create_channel(&g, ChannelInfo::default(), &[owner.clone(), a.clone()])
            .await
            .unwrap();
        d.add_to_list(AccessList::Black, &g, std::slice::from_ref(&a))
            .await
            .unwrap();
        d.add_to_list(AccessList::White, &own("b"), std::slice::from_ref(&owner))
            .await
            .unwrap();
        d.set_system(std::slice::from_ref(&sys), true)
            .await
            .unwrap();
    }
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let d = StoredDirectory::new(store);
    let token = d.token(&a, DeviceFlag::Web).await.unwrap().unwrap();
    assert_eq!(
        (token.token.as_str(), token.level),
        ("tok", DeviceLevel::Slave)
    );
    assert_eq!(d.subscribers(&g).await.unwrap().len(), 2);
    assert_eq!(d.role(&g, &owner).await.unwrap(), Some(imcore::Role::Owner));
    assert_eq!(
        d.check_send(&a, &g).await.unwrap(),
        denied(ReasonCode::IN_BLACKLIST)
    );
    assert_eq!(
        d.check_send(&a, &Channel::person(&a, &b)).await.unwrap(),
        denied(ReasonCode::NOT_IN_WHITELIST)
    );
    assert_eq!(d.check_send(&sys, &g).await.unwrap(), Permission::Allowed);
    assert_eq!(d.channels_of(&a).await.unwrap(), vec![g]);
}

/// `subscribes_to` (what an incremental conversation sync asks of the
/// channels that changed) says what `channels_of` says, channel by
/// channel, through subscribers added, removed and a channel deleted.
#[tokio::test]
async fn subscribes_to_agrees_with_channels_of() {
    let dir = StoredDirectory::new(Arc::new(MemoryStore::new()));
    let (a, b) = (uid("a"), uid("b"));
    let groups: Vec<Channel> = (0..5).map(|i| group(&format!("s{i}"))).collect();
    for (i, g) in groups.iter().enumerate() {
        let members = if i % 2 == 0 {
            vec![b.clone(), a.clone()] // b owns
        } else {
            vec![b.clone()]
        };
        dir.create_channel(g, ChannelInfo::default(), &members)
            .await
            .unwrap();
    }
    dir.add_subscribers(&groups[1], std::slice::from_ref(&a))
        .await
        .unwrap();
    dir.remove_subscribers(&groups[2], std::slice::from_ref(&a))
        .await
        .unwrap();
    assert!(dir.delete_channel(&groups[4]).await.unwrap());
    let mut asked = groups.clone();
    asked.push(group("never-made"));
    for who in [&a, &b] {
        let of = dir.channels_of(who).await.unwrap();
        let expected: Vec<bool> = asked.iter().map(|g| of.contains(g)).collect();
        assert_eq!(dir.subscribes_to(who, &asked).await.unwrap(), expected);
    }
    let of_a = dir.subscribes_to(&a, &asked).await.unwrap();
    assert_eq!(of_a, [true, true, false, false, false, false]);
}
