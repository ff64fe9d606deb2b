//! Hub nodes joined by `NatsRouter` over a real `nats-server` that each
//! test starts itself (a free port on 127.0.0.1), sharing one store:
//! deliveries, commands, transient messages, revocations, kicks and
//! presence across nodes; per-channel order with senders on two nodes (on
//! PostgreSQL, each node with its own `PgStore`); a silent node's users
//! going offline; nats-server restarted mid-stream; and messages held up
//! by an outage never delivered below later seqs.
//!
//! Without the binaries each test says it is skipped and why; with
//! `IMCORE_REQUIRE_SERVERS=1` (CI) a skip is a failure.

#[path = "common/servers.rs"]
mod servers;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use imcore::session::InProcessConnection;
use imcore::store::{MessageLog, Page, PgConfig, PgStore, Store};
use imcore::{
    Channel, Device, DeviceFlag, DeviceId, DisconnectReason, Flags, Hub, HubConfig,
    MemoryDirectory, MemoryStore, Message, NatsConfig, NatsRouter, OfflineNotifier, Persistence,
    RevokeRequest, SendRequest, Uid,
};
use servers::{NatsServer, PgServer};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

struct Node {
    hub: Hub,
    router: NatsRouter,
}

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

fn device(user: &str, id: &str, flag: DeviceFlag) -> Device {
    Device::master(uid(user), DeviceId::new(id).unwrap(), flag)
}

/// Tells the test who was handed to offline push, and for which message.
#[derive(Debug)]
struct Pushes(mpsc::UnboundedSender<(String, Vec<Uid>)>);

#[async_trait]
impl OfflineNotifier for Pushes {
    async fn notify(&self, message: Arc<Message>, offline: Vec<Uid>) {
        let text = String::from_utf8_lossy(&message.payload).into_owned();
        let _ = self.0.send((text, offline));
    }
}

async fn node_with(
    nats: &NatsServer,
    id: u16,
    store: Arc<dyn Store>,
    directory: Arc<MemoryDirectory>,
    tune: impl FnOnce(&mut NatsConfig),
    notifier: Option<Arc<Pushes>>,
) -> Node {
    let mut config = NatsConfig::new(nats.url(), id);
    tune(&mut config);
    let router = NatsRouter::connect(config).await.expect("join the cluster");
    let mut builder = Hub::builder()
        .store(store)
        .directory(directory)
        .router(Arc::new(router.clone()))
        .config(HubConfig::default().node_id(id));
    if let Some(notifier) = notifier {
        builder = builder.notifier(notifier);
    }
    Node {
        hub: builder.build().unwrap(),
        router,
    }
}

/// Nodes 1 and 2, sharing one in-memory store and one directory.
struct Pair {
    a: Node,
    b: Node,
    store: Arc<MemoryStore>,
    dir: Arc<MemoryDirectory>,
}

async fn pair(nats: &NatsServer) -> Pair {
    pair_with(nats, |_| {}, None).await
}

/// [`pair`], both nodes' configs tuned, node 1 pushing to `pushes`.
async fn pair_with(
    nats: &NatsServer,
    tune: impl Fn(&mut NatsConfig),
    pushes: Option<Arc<Pushes>>,
) -> Pair {
    let (store, dir) = (
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryDirectory::new()),
    );
    let a = node_with(nats, 1, store.clone(), dir.clone(), &tune, pushes).await;
    let b = node_with(nats, 2, store.clone(), dir.clone(), &tune, None).await;
    Pair { a, b, store, dir }
}

/// Connects `device` to node `on`, and waits until node `seen_by` sees
/// its user online.
async fn connect_seen(
    on: &Node,
    seen_by: &Node,
    device: Device,
    capacity: usize,
) -> InProcessConnection {
    let user = device.uid.clone();
    let (_, conn) = on.hub.connect_in_process(device, capacity);
    until(&seen_by.router, &format!("{user} is seen online"), || {
        seen_by.hub.is_online(&user)
    })
    .await;
    conn
}

/// Waits (on the router's change notices, never by sleeping) until `cond`
/// holds.
async fn until(router: &NatsRouter, what: &str, cond: impl Fn() -> bool) {
    let mut changes = router.watch();
    let waited = tokio::time::timeout(WAIT, async {
        while !cond() {
            changes.changed().await.expect("router alive");
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting until {what}");
}

/// Restarts the NATS server and waits until each node hears the other
/// again and node 1 sees bob (on node 2) online again.
async fn restart_and_rejoin(nats: &mut NatsServer, a: &Node, b: &Node) {
    let heard = (a.router.stats().received, b.router.stats().received);
    nats.restart();
    until(&a.router, "node 1 hears node 2 again", || {
        a.router.stats().received > heard.0
    })
    .await;
    until(&b.router, "node 2 hears node 1 again", || {
        b.router.stats().received > heard.1
    })
    .await;
    until(&a.router, "node 1 sees bob again", || {
        a.hub.is_online(&uid("bob"))
    })
    .await;
}

async fn recv(conn: &mut InProcessConnection) -> Arc<Message> {
    tokio::time::timeout(WAIT, conn.recv())
        .await
        .expect("a delivery in time")
        .expect("connection open")
}

fn text(m: &Arc<Message>) -> &str {
    std::str::from_utf8(&m.payload).unwrap()
}

/// Nothing more is queued for `conn` once a marker sent after everything
/// else has arrived: what came before it came once.
async fn only_marker_left(node: &Node, to: &Channel, from: &Uid, conn: &mut InProcessConnection) {
    let mark = SendRequest::new(from.clone(), to.clone(), "marker");
    node.hub.send(mark).await.unwrap();
    assert_eq!(text(&recv(conn).await), "marker", "a duplicate came first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_every_device_on_every_node_once_but_the_sending_one() {
    let Some(nats) = NatsServer::start("cluster: routing") else {
        return;
    };
    let Pair { a, b, dir, .. } = pair(&nats).await;
    let group = Channel::group("g").unwrap();
    dir.create_channel(&group, &uid("alice"), [uid("bob"), uid("carol")]);

    let (alice_web, mut alice_web_conn) = a
        .hub
        .connect_in_process(device("alice", "web", DeviceFlag::Web), 64);
    let (_, mut carol_conn) = a
        .hub
        .connect_in_process(device("carol", "c", DeviceFlag::App), 64);
    let (_, mut alice_pc) = b
        .hub
        .connect_in_process(device("alice", "pc", DeviceFlag::Pc), 64);
    let (_, mut bob_conn) = b
        .hub
        .connect_in_process(device("bob", "b", DeviceFlag::App), 64);
    until(&a.router, "node 1 sees bob and alice's pc", || {
        a.hub.is_online(&uid("bob")) && a.router.nodes() == [(2, 2)]
    })
    .await;
    // And node 2 sees alice's web device and carol, or its sends to them
    // would not cross (a device that just logged in elsewhere is reached
    // once its presence has arrived; before, sync finds what it missed).
    until(&b.router, "node 2 sees alice's web and carol", || {
        b.router.nodes() == [(1, 2)]
    })
    .await;

    let send =
        SendRequest::new(uid("alice"), group.clone(), "to the group").from_connection(alice_web);
    let ack = a.hub.send(send).await.unwrap();
    for conn in [&mut carol_conn, &mut alice_pc, &mut bob_conn] {
        let got = recv(conn).await;
        assert_eq!(
            (text(&got), got.message_seq),
            ("to the group", ack.message_seq)
        );
    }
    // A person message from bob (node 2) to alice: both her devices, on
    // node 1 and node 2.
    let chat = Channel::new(uid("alice").into(), imcore::ChannelType::PERSON);
    b.hub
        .send(SendRequest::new(uid("bob"), chat.clone(), "hi alice"))
        .await
        .unwrap();
    assert_eq!(text(&recv(&mut alice_web_conn).await), "hi alice");
    assert_eq!(text(&recv(&mut alice_pc).await), "hi alice");
    // A server-side send skips no device: bob's own device has it too.
    assert_eq!(text(&recv(&mut bob_conn).await), "hi alice");

    only_marker_left(&b, &group, &uid("bob"), &mut carol_conn).await;
    only_marker_left(&b, &group, &uid("bob"), &mut alice_pc).await;
    only_marker_left(&a, &group, &uid("carol"), &mut bob_conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_transient_messages_and_revocations_cross_nodes() {
    let Some(nats) = NatsServer::start("cluster: commands") else {
        return;
    };
    let Pair { a, b, dir, .. } = pair(&nats).await;
    let group = Channel::group("g").unwrap();
    dir.create_channel(&group, &uid("alice"), [uid("bob")]);
    let mut bob = connect_seen(&b, &a, device("bob", "b", DeviceFlag::App), 64).await;

    let command = SendRequest::command_to(uid("system"), vec![uid("bob")], "cmd");
    let ack = a.hub.send(command).await.unwrap();
    assert_eq!(ack.persistence, Persistence::Command);
    let got = recv(&mut bob).await;
    assert_eq!((text(&got), got.flags.sync_once), ("cmd", true));

    let transient = SendRequest::new(uid("alice"), group.clone(), "typing").flags(Flags {
        no_persist: true,
        ..Flags::normal()
    });
    assert_eq!(
        a.hub.send(transient).await.unwrap().persistence,
        Persistence::Transient
    );
    assert_eq!(text(&recv(&mut bob).await), "typing");

    let sent = a
        .hub
        .send(SendRequest::new(uid("alice"), group.clone(), "oops"))
        .await
        .unwrap();
    assert_eq!(text(&recv(&mut bob).await), "oops");
    a.hub
        .revoke(RevokeRequest::by_id(uid("alice"), sent.message_id))
        .await
        .unwrap();
    let notice = recv(&mut bob).await;
    assert!(notice.flags.sync_once, "the revocation notice is a command");
    assert!(text(&notice).contains("messageRevoke"), "{}", text(&notice));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_and_kicks_act_across_nodes() {
    let Some(nats) = NatsServer::start("cluster: kicks") else {
        return;
    };
    let Pair { a, b, .. } = pair(&nats).await;
    until(&a.router, "node 1 sees node 2", || {
        a.router.nodes().len() == 1
    })
    .await;
    until(&b.router, "node 2 sees node 1", || {
        b.router.nodes().len() == 1
    })
    .await;

    // A master web login on node 2 kicks alice's web on node 1, not her app.
    let (_, mut web) = a
        .hub
        .connect_in_process(device("alice", "w1", DeviceFlag::Web), 8);
    let (_, mut app) = a
        .hub
        .connect_in_process(device("alice", "a1", DeviceFlag::App), 8);
    b.hub
        .connect_in_process(device("alice", "w2", DeviceFlag::Web), 8);
    assert_eq!(
        tokio::time::timeout(WAIT, web.closed()).await.unwrap(),
        DisconnectReason::Kicked
    );
    assert!(app.closed_reason().is_none());

    // The same device connecting to node 2 replaces its connection on 1.
    b.hub
        .connect_in_process(device("alice", "a1", DeviceFlag::App), 8);
    assert_eq!(
        tokio::time::timeout(WAIT, app.closed()).await.unwrap(),
        DisconnectReason::Replaced
    );

    // Hub::kick on node 1 closes bob's devices on node 2.
    let mut bob = connect_seen(&b, &a, device("bob", "b", DeviceFlag::Pc), 8).await;
    assert_eq!(a.hub.kick(&uid("bob"), None), 0, "none on node 1 itself");
    assert_eq!(
        tokio::time::timeout(WAIT, bob.closed()).await.unwrap(),
        DisconnectReason::Kicked
    );
    until(&a.router, "bob offline everywhere", || {
        !a.hub.is_online(&uid("bob"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_asks_every_node_and_a_silent_nodes_users_go_offline_after_the_ttl() {
    let Some(nats) = NatsServer::start("cluster: presence") else {
        return;
    };
    let fast = |c: &mut NatsConfig| {
        c.heartbeat = Duration::from_millis(100);
        c.presence_ttl = Duration::from_millis(400);
    };
    let (pushed, mut pushes) = mpsc::unbounded_channel();
    let pushed = Arc::new(Pushes(pushed));
    let Pair { a, b, dir, .. } = pair_with(&nats, fast, Some(pushed)).await;
    let group = Channel::group("g").unwrap();
    dir.create_channel(&group, &uid("alice"), [uid("bob"), uid("carol")]);
    let _bob = connect_seen(&b, &a, device("bob", "b", DeviceFlag::App), 64).await;

    a.hub
        .send(SendRequest::new(uid("alice"), group.clone(), "one"))
        .await
        .unwrap();
    // Node 2 dies without a word: its router and hub are dropped.
    drop(b);
    until(&a.router, "bob's node expired", || {
        !a.hub.is_online(&uid("bob"))
    })
    .await;
    assert!(a.router.nodes().is_empty());
    a.hub
        .send(SendRequest::new(uid("alice"), group.clone(), "two"))
        .await
        .unwrap();

    let mut pushed = Vec::new();
    for _ in 0..2 {
        let push = tokio::time::timeout(WAIT, pushes.recv()).await;
        pushed.push(push.expect("a push in time").expect("the hub alive"));
    }
    assert_eq!(
        pushed[0],
        ("one".into(), vec![uid("carol")]),
        "bob was online on node 2"
    );
    assert_eq!(pushed[1], ("two".into(), vec![uid("bob"), uid("carol")]));
}

/// Reads seqs from `conn` until it has `n`, asserting they rise.
async fn rising_seqs(conn: &mut InProcessConnection, n: usize) -> Vec<u64> {
    let mut seqs = Vec::with_capacity(n);
    while seqs.len() < n {
        let m = recv(conn).await;
        if let Some(&last) = seqs.last() {
            assert!(m.message_seq > last, "seq {} after {last}", m.message_seq);
        }
        seqs.push(m.message_seq);
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_on_two_nodes_of_one_postgres_keep_every_device_in_seq_order() {
    let (Some(nats), Some(pg)) = (
        NatsServer::start("cluster: order"),
        PgServer::start("cluster: order"),
    ) else {
        return;
    };
    let config = PgConfig::new(pg.create_database("ordering").await);
    let dir = Arc::new(MemoryDirectory::new());
    let store_a = Arc::new(PgStore::open(config.clone()).await.unwrap());
    let store_b = Arc::new(PgStore::open(config).await.unwrap());
    // The order is what this checks, not the wait's bound (order.rs's
    // unit tests do): a wait long enough for a loaded 2-core machine.
    let patient = |c: &mut NatsConfig| c.reorder_wait = Duration::from_secs(10);
    let a = node_with(&nats, 1, store_a, dir.clone(), patient, None).await;
    let b = node_with(&nats, 2, store_b.clone(), dir.clone(), patient, None).await;
    let group = Channel::group("g").unwrap();
    let users = ["u1", "u2", "u3", "u4"].map(uid);
    dir.create_channel(&group, &users[0], users[1..].iter().cloned());
    let (c1, mut d1) = a
        .hub
        .connect_in_process(device("u1", "d1", DeviceFlag::App), 1024);
    let (_, mut d2) = a
        .hub
        .connect_in_process(device("u2", "d2", DeviceFlag::App), 1024);
    let (c3, mut d3) = b
        .hub
        .connect_in_process(device("u3", "d3", DeviceFlag::App), 1024);
    let (_, mut d4) = b
        .hub
        .connect_in_process(device("u4", "d4", DeviceFlag::App), 1024);
    until(&a.router, "node 1 sees u3, u4", || {
        a.router.nodes() == [(2, 2)]
    })
    .await;
    until(&b.router, "node 2 sees u1, u2", || {
        b.router.nodes() == [(1, 2)]
    })
    .await;

    // Batches, so that each node's next message is often stored before the
    // other node's last one has crossed over.
    const EACH: usize = 200;
    let sender = |hub: Hub, from: Uid, conn| {
        let group = group.clone();
        tokio::spawn(async move {
            for batch in 0..EACH / 10 {
                let sends = (0..10)
                    .map(|i| {
                        let text = format!("{from}-{batch}-{i}");
                        SendRequest::new(from.clone(), group.clone(), text).from_connection(conn)
                    })
                    .collect();
                for ack in hub.send_all(sends).await {
                    ack.unwrap();
                }
            }
        })
    };
    let s1 = sender(a.hub.clone(), users[0].clone(), c1);
    let s3 = sender(b.hub.clone(), users[2].clone(), c3);
    let (seqs2, seqs4, seqs1, seqs3) = tokio::join!(
        rising_seqs(&mut d2, 2 * EACH),
        rising_seqs(&mut d4, 2 * EACH),
        rising_seqs(&mut d1, EACH),
        rising_seqs(&mut d3, EACH),
    );
    s1.await.unwrap();
    s3.await.unwrap();
    let all: Vec<u64> = (1..=2 * EACH as u64).collect();
    assert_eq!(seqs2, all, "every seq once, in order, on node 1");
    assert_eq!(seqs4, all, "every seq once, in order, on node 2");
    assert_eq!(seqs1.len() + seqs3.len(), 2 * EACH);
    let history = store_b.read(&group, Page::forward(1, 1000)).await.unwrap();
    assert_eq!(history.len(), 2 * EACH);
    for hub in [&a.hub, &b.hub] {
        let stats = hub.stats();
        assert_eq!((stats.late_deliveries, stats.skipped_seqs), (0, 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reconnect_by_themselves_when_nats_server_restarts_mid_stream() {
    let Some(mut nats) = NatsServer::start("cluster: nats restart") else {
        return;
    };
    let Pair { a, b, store, dir } = pair(&nats).await;
    let group = Channel::group("g").unwrap();
    dir.create_channel(&group, &uid("alice"), [uid("bob")]);
    let mut bob = connect_seen(&b, &a, device("bob", "b", DeviceFlag::App), 4096).await;

    let send = |n: usize| {
        a.hub.send(SendRequest::new(
            uid("alice"),
            group.clone(),
            format!("m{n}"),
        ))
    };
    for n in 0..20 {
        send(n).await.unwrap();
    }
    assert_eq!(
        rising_seqs(&mut bob, 20).await,
        (1..=20).collect::<Vec<_>>()
    );

    nats.kill();
    // Sends go on while the server is down: stored and acknowledged; what
    // cannot cross is found by sync.
    for n in 20..40 {
        send(n).await.unwrap();
    }
    restart_and_rejoin(&mut nats, &a, &b).await;
    let after = send(40).await.unwrap();
    a.router.flush().await.unwrap();
    // Whatever of 21..40 got through comes first, in order; then 41.
    loop {
        let m = recv(&mut bob).await;
        assert!(m.message_seq > 20 && m.message_seq <= after.message_seq);
        if m.message_seq == after.message_seq {
            break;
        }
    }
    // Sync finds everything acknowledged.
    let history = store.read(&group, Page::forward(1, 100)).await.unwrap();
    assert_eq!(history.len(), 41);
}

/// Reads `conn` until it receives seq `last`, asserting each seq is above
/// every one before (`seen` holds what it had received).
async fn rising_until(conn: &mut InProcessConnection, seen: &mut Vec<u64>, last: u64) {
    while seen.last() != Some(&last) {
        let m = recv(conn).await;
        if let Some(&before) = seen.last() {
            assert!(
                m.message_seq > before,
                "seq {} after {before}: {seen:?}",
                m.message_seq
            );
        }
        seen.push(m.message_seq);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_held_up_by_a_nats_outage_never_arrive_below_later_ones() {
    let Some(mut nats) = NatsServer::start("cluster: order across an outage") else {
        return;
    };
    // Each node gives up waiting for the other's messages quickly.
    let quick = |c: &mut NatsConfig| c.reorder_wait = Duration::from_millis(100);
    let Pair { a, b, dir, .. } = pair_with(&nats, quick, None).await;
    let group = Channel::group("g").unwrap();
    dir.create_channel(
        &group,
        &uid("alice"),
        [uid("bob"), uid("carol"), uid("dave")],
    );
    let mut dave = connect_seen(&a, &b, device("dave", "d", DeviceFlag::App), 1024).await;
    let mut bob = connect_seen(&b, &a, device("bob", "b", DeviceFlag::App), 1024).await;
    let send = |node: &Node, from: &str| {
        let send = SendRequest::new(uid(from), group.clone(), "hi");
        let hub = node.hub.clone();
        async move { hub.send(send).await.unwrap().message_seq }
    };
    let first = send(&a, "alice").await;
    let (mut seen_bob, mut seen_dave) = (Vec::new(), Vec::new());
    rising_until(&mut bob, &mut seen_bob, first).await;
    rising_until(&mut dave, &mut seen_dave, first).await;

    // While nats-server is down, the nodes take turns: what each sends is
    // buffered by its NATS client, so the other node gives up waiting for
    // it and delivers its own next message.
    nats.kill();
    for _ in 0..3 {
        let from_a = send(&a, "alice").await;
        rising_until(&mut dave, &mut seen_dave, from_a).await;
        let from_b = send(&b, "carol").await;
        rising_until(&mut bob, &mut seen_bob, from_b).await;
    }
    // Back: the buffered messages cross, after later seqs went live.
    restart_and_rejoin(&mut nats, &a, &b).await;
    until(&b.router, "node 2 sees dave again", || {
        b.hub.is_online(&uid("dave"))
    })
    .await;
    let last = send(&a, "alice").await;
    a.router.flush().await.unwrap();
    rising_until(&mut bob, &mut seen_bob, last).await;
    rising_until(&mut dave, &mut seen_dave, last).await;
    // The held-up messages did cross, and were dropped: else this tested
    // nothing.
    let late = a.hub.stats().late_deliveries + b.hub.stats().late_deliveries;
    assert!(
        late >= 1,
        "no message crossed after its turn: {seen_bob:?} {seen_dave:?}"
    );
}
