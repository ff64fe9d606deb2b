//! An incremental conversation sync (a version given) looks at the
//! channels that changed after it, not at each of the user's: the hub
//! never lists the user's channels for it, asks the directory only about
//! the channels that changed, and returns what looking at every channel
//! returns, from every version (on memory and on sled).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use imcore::directory::{Directory, Permission, Role};
use imcore::store::Store;
use imcore::{
    Channel, ChannelType, Hub, MemoryDirectory, MemoryStore, SendRequest, SledStore, Uid,
};

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

/// A memory directory that counts what a sync asks of it.
#[derive(Debug, Default)]
struct Counting {
    inner: MemoryDirectory,
    /// Calls of `channels_of`.
    listed: AtomicUsize,
    /// Channels asked about by `subscribes_to`.
    asked: AtomicUsize,
}

#[async_trait]
impl Directory for Counting {
    async fn subscribers(&self, channel: &Channel) -> imcore::Result<Arc<[Uid]>> {
        self.inner.subscribers(channel).await
    }

    async fn check_send(&self, sender: &Uid, channel: &Channel) -> imcore::Result<Permission> {
        self.inner.check_send(sender, channel).await
    }

    async fn check_read(&self, reader: &Uid, channel: &Channel) -> imcore::Result<Permission> {
        self.inner.check_read(reader, channel).await
    }

    async fn channels_of(&self, uid: &Uid) -> imcore::Result<Vec<Channel>> {
        self.listed.fetch_add(1, Ordering::SeqCst);
        self.inner.channels_of(uid).await
    }

    async fn subscribes_to(&self, uid: &Uid, channels: &[Channel]) -> imcore::Result<Vec<bool>> {
        self.asked.fetch_add(channels.len(), Ordering::SeqCst);
        self.inner.subscribes_to(uid, channels).await
    }

    async fn role(&self, channel: &Channel, uid: &Uid) -> imcore::Result<Option<Role>> {
        self.inner.role(channel, uid).await
    }
}

/// Bob's groups.
const GROUPS: usize = 40;

fn group(i: usize) -> Channel {
    Channel::group(format!("g{i}")).unwrap()
}

fn to(peer: &str) -> Channel {
    Channel::new(uid(peer).into(), ChannelType::PERSON)
}

async fn send(hub: &Hub, from: &str, channel: Channel) {
    let req = SendRequest::new(uid(from), channel, "x");
    hub.send(req).await.unwrap();
}

async fn incremental_sync_follows_what_changed(store: Arc<dyn Store>) {
    let directory = Arc::new(Counting::default());
    let hub = Hub::builder()
        .store(store.clone())
        .directory(directory.clone())
        .build()
        .unwrap();
    for i in 0..GROUPS {
        directory
            .inner
            .create_channel(&group(i), &uid("alice"), [uid("bob")]);
    }
    let elsewhere = Channel::group("elsewhere").unwrap();
    directory
        .inner
        .create_channel(&elsewhere, &uid("carol"), [uid("dave")]);
    for i in 0..GROUPS {
        send(&hub, "alice", group(i)).await;
    }
    let start = store.stable_version().await.unwrap();
    // Then a few changes: bob's, others', a clear and a delete of bob's,
    // a person channel, and a group bob leaves after a message.
    send(&hub, "alice", group(3)).await;
    send(&hub, "carol", elsewhere.clone()).await;
    send(&hub, "carol", to("dave")).await;
    send(&hub, "carol", to("bob")).await;
    assert!(hub
        .clear_unread(&uid("bob"), &group(7), u64::MAX)
        .await
        .unwrap());
    send(&hub, "bob", group(9)).await;
    assert!(hub
        .delete_conversation(&uid("bob"), &group(11))
        .await
        .unwrap());
    send(&hub, "alice", group(13)).await;
    directory.inner.remove_members(&group(13), [uid("bob")]);
    let end = store.stable_version().await.unwrap();

    for version in start..=end {
        let listed = directory.listed.load(Ordering::SeqCst);
        directory.asked.store(0, Ordering::SeqCst);
        let synced = hub
            .sync_conversations(&uid("bob"), version, 100)
            .await
            .unwrap();
        assert_eq!(
            directory.listed.load(Ordering::SeqCst),
            listed,
            "from {version}: bob's channels are not listed"
        );
        // Asked only of groups that changed: never all of bob's.
        let asked = directory.asked.load(Ordering::SeqCst);
        assert!(asked <= 6, "from {version}: asked about {asked} channels");
        // What looking at each of bob's channels finds.
        let groups = directory.inner.channels_of(&uid("bob")).await.unwrap();
        let everything = store
            .conversations_after(&uid("bob"), &groups, version, 100)
            .await
            .unwrap();
        let got: Vec<_> = synced.iter().map(|v| v.conversation.clone()).collect();
        assert_eq!(got, everything, "from {version}");
        let channels: Vec<Channel> = synced
            .iter()
            .map(|v| v.conversation.channel.clone())
            .collect();
        assert!(!channels.contains(&elsewhere) && !channels.contains(&group(13)));
        if version == start {
            assert_eq!(synced.len(), 5, "3, 7, 9, 11 and carol: {channels:?}");
            let deleted: Vec<bool> = synced.iter().map(|v| v.deleted).collect();
            assert_eq!(deleted.iter().filter(|d| **d).count(), 1, "11");
        }
    }
    // A full sync lists bob's channels, as before.
    let listed = directory.listed.load(Ordering::SeqCst);
    let full = hub.sync_conversations(&uid("bob"), 0, 100).await.unwrap();
    assert_eq!(directory.listed.load(Ordering::SeqCst), listed + 1);
    assert_eq!(
        full.len(),
        GROUPS - 1,
        "39 groups left, 11 deleted, and carol"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_memory() {
    incremental_sync_follows_what_changed(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sled() {
    incremental_sync_follows_what_changed(Arc::new(SledStore::temporary().unwrap())).await;
}
