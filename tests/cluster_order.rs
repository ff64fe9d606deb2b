//! Delivery order at a node of a cluster, driven through the public
//! `Router` trait: a router of the test's hands the node messages stored
//! by "another node" (a second hub sharing the store) in the order the
//! test chooses, and a `ManualClock` decides when a reorder wait runs out.
//! The store's reads (the node's look-ups of whether a missing message is
//! old) are watched and held, so that a look-up's answer lands exactly
//! where the test puts it.
//!
//! What must hold: a device never receives a channel's seq below one it
//! has received live. A message whose turn has passed is not delivered
//! (the device finds it by sync) and is counted.

#[path = "common/gated_store.rs"]
mod gated_store;
#[path = "common/hub_world.rs"]
mod hub_world;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use gated_store::GatedStore;
use hub_world::{dev, uid};
use imcore::route::{LocalDevices, Router};
use imcore::session::{Device, DeviceFlag, InProcessConnection};
use imcore::store::{MessageLog, Page};
use imcore::{Channel, Hub, ManualClock, MemoryDirectory, Message, SendRequest, Uid};
use tokio::sync::mpsc;

/// The reorder wait. Time is the manual clock's; in real time this only
/// sets how often the node looks for waits that ran out (a quarter of it).
const WAIT: Duration = Duration::from_millis(200);
/// How long a test waits for what it awaits before failing.
const PATIENCE: Duration = Duration::from_secs(10);

/// A cluster router with no network: it keeps the node's side, through
/// which the test delivers what "other nodes" sent.
#[derive(Debug, Default)]
struct HandFed(OnceLock<Arc<dyn LocalDevices>>);

impl Router for HandFed {
    fn attach(&self, local: Arc<dyn LocalDevices>) {
        let _ = self.0.set(local);
    }
    fn deliver(&self, _message: &Arc<Message>, _recipients: &[Uid]) {}
    fn presence_changed(&self, _uid: &Uid, _login: Option<&imcore::Device>) {}
    fn kick(&self, _uid: &Uid, _flag: Option<DeviceFlag>) {}
    fn online_elsewhere(&self, _uid: &Uid) -> bool {
        false
    }
    fn reorder_wait(&self) -> Option<Duration> {
        Some(WAIT)
    }
}

/// The node under test (bob's phone on it), the other node's hub sharing
/// its store and clock, and what the node's look-ups ask.
struct Cluster {
    node: Hub,
    router: Arc<HandFed>,
    other: Hub,
    store: Arc<GatedStore>,
    reads: mpsc::UnboundedReceiver<(Channel, u64)>,
    clock: Arc<ManualClock>,
    group: Channel,
    bob: InProcessConnection,
}

/// `permits`: look-ups let through before the store's gate closes.
fn cluster(permits: usize) -> Cluster {
    let (store, reads) = GatedStore::watching_reads(permits);
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let directory = Arc::new(MemoryDirectory::new());
    let group = Channel::group("g").unwrap();
    directory.create_channel(&group, &uid("alice"), [uid("bob")]);
    let router = Arc::new(HandFed::default());
    let node = Hub::builder()
        .store(store.clone())
        .directory(directory.clone())
        .clock(clock.clone())
        .router(router.clone())
        .build()
        .unwrap();
    let other = Hub::builder()
        .store(store.inner.clone())
        .directory(directory)
        .clock(clock.clone())
        .build()
        .unwrap();
    let phone = Device::master(uid("bob"), dev("phone"), DeviceFlag::App);
    let (_, bob) = node.connect_in_process(phone, 64);
    Cluster {
        node,
        router,
        other,
        store,
        reads,
        clock,
        group,
        bob,
    }
}

impl Cluster {
    /// The other node stores `n` messages now.
    async fn store_elsewhere(&self, n: usize) {
        for _ in 0..n {
            let send = SendRequest::new(uid("alice"), self.group.clone(), "hi");
            self.other.send(send).await.unwrap();
        }
    }

    /// Every message stored, by seq (index 0 is seq 1).
    async fn stored(&self) -> Vec<Arc<Message>> {
        let page = Page::forward(1, 100);
        let all = self.store.inner.read(&self.group, page).await.unwrap();
        all.into_iter().map(Arc::new).collect()
    }

    /// The router hands the node message `seq`, for bob.
    fn arrives(&self, stored: &[Arc<Message>], seq: u64) {
        let local = self.router.0.get().expect("the hub attached itself");
        let message = stored[seq as usize - 1].clone();
        assert_eq!(message.message_seq, seq);
        local.deliver(message, Arc::from([uid("bob")]));
    }

    /// The seq of the next message bob's phone receives.
    async fn next_seq(&mut self) -> u64 {
        let got = tokio::time::timeout(PATIENCE, self.bob.recv()).await;
        got.expect("a delivery in time")
            .expect("connection open")
            .message_seq
    }

    /// The seq the next look-up asks about.
    async fn next_lookup(&mut self) -> u64 {
        let asked = tokio::time::timeout(PATIENCE, self.reads.recv()).await;
        let (channel, seq) = asked.expect("a look-up in time").expect("the store alive");
        assert_eq!(channel, self.group);
        seq
    }
}

/// A look-up about a gap that has closed meanwhile must not release
/// messages held behind a newer gap: 4 and 5 are on their way, stored just
/// now, and 6 waits for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_answer_about_a_closed_gap_does_not_release_past_a_newer_one() {
    let mut c = cluster(0);
    c.store_elsewhere(3).await;
    c.clock.advance(WAIT);
    c.store_elsewhere(4).await;
    let m = c.stored().await;

    c.arrives(&m, 1);
    assert_eq!(c.next_seq().await, 1);
    // 2 is missing: the node asks whether it is old (it is: stored a wait
    // ago); the answer is held in the store.
    c.arrives(&m, 3);
    assert_eq!(c.next_lookup().await, 2);
    c.arrives(&m, 2);
    assert_eq!((c.next_seq().await, c.next_seq().await), (2, 3));
    // 6 arrives ahead of 4 and 5 (stored just now, on their way).
    c.arrives(&m, 6);
    // The answer about 2 lands now. Wait until the node has acted on it:
    // either it delivered something, or it asks about the gap open now.
    c.store.read_gate.add_permits(1);
    let mut seqs = vec![1, 2, 3];
    tokio::select! {
        got = c.bob.recv() => seqs.push(got.expect("connection open").message_seq),
        asked = c.reads.recv() => assert_eq!(asked.map(|(_, seq)| seq), Some(5)),
        () = tokio::time::sleep(PATIENCE) => panic!("the answer about 2 was not acted on"),
    }
    c.store.open_reads();
    for seq in [4, 5, 7] {
        c.arrives(&m, seq);
    }
    while seqs.last() != Some(&7) {
        seqs.push(c.next_seq().await);
    }
    assert_eq!(
        seqs,
        [1, 2, 3, 4, 5, 6, 7],
        "bob's phone, in the order received"
    );
    let stats = c.node.stats();
    assert_eq!((stats.skipped_seqs, stats.late_deliveries), (0, 0));
}

/// A message that arrives after its wait was given up (a later one has
/// been delivered) is not delivered: it would go below what the device
/// has. It is counted, and the device finds it by sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_arriving_after_its_turn_passed_is_dropped_and_counted() {
    let mut c = cluster(0);
    c.store_elsewhere(4).await;
    let m = c.stored().await;

    c.arrives(&m, 1);
    assert_eq!(c.next_seq().await, 1);
    // 3 waits for 2. The look-up of 2 stays unanswered (a loaded store):
    // only the wait's bound releases 3.
    c.arrives(&m, 3);
    assert_eq!(c.next_lookup().await, 2);
    // The wait runs out: 3 goes, 2 is given up.
    c.clock.advance(WAIT);
    assert_eq!(c.next_seq().await, 3);
    // 2 arrives at last (a loaded node, a NATS outage): too late.
    c.arrives(&m, 2);
    c.arrives(&m, 4);
    assert_eq!(c.next_seq().await, 4, "2 was delivered after 3");
    assert!(c.bob.try_recv().is_none());
    let stats = c.node.stats();
    assert_eq!((stats.skipped_seqs, stats.late_deliveries), (1, 1));
    // Sync has it.
    let page = c.store.inner.read(&c.group, Page::forward(2, 1)).await;
    assert_eq!(page.unwrap()[0].message_seq, 2);
}
