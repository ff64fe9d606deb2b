//! The hub: routing and delivery of normal, command and transient messages
//! to online devices, offline queues and sync.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use imcore::session::{ConnectionId, InProcessConnection};
use imcore::store::{Page, Store};
use imcore::{
    Channel, ChannelType, ClientMsgNo, Device, DeviceFlag, DeviceId, DisconnectReason, Error,
    Flags, Hub, MemoryDirectory, MemoryStore, Message, MessageId, OfflineNotifier, Persistence,
    ReasonCode, SendRequest, SledStore, Uid,
};
use tokio::sync::mpsc;

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

fn dev(s: &str) -> DeviceId {
    DeviceId::new(s).unwrap()
}

fn no(s: &str) -> ClientMsgNo {
    ClientMsgNo::new(s).unwrap()
}

fn person(peer: &str) -> Channel {
    Channel::new(uid(peer).into(), ChannelType::PERSON)
}

/// Records every offline notification.
#[derive(Debug)]
struct Recorder(mpsc::UnboundedSender<(Arc<Message>, Vec<Uid>)>);

#[async_trait]
impl OfflineNotifier for Recorder {
    async fn notify(&self, message: Arc<Message>, offline: Vec<Uid>) {
        let _ = self.0.send((message, offline));
    }
}

struct World {
    hub: Hub,
    directory: Arc<MemoryDirectory>,
    pushes: mpsc::UnboundedReceiver<(Arc<Message>, Vec<Uid>)>,
}

fn world_on(store: Arc<dyn Store>) -> World {
    let directory = Arc::new(MemoryDirectory::new());
    let (tx, pushes) = mpsc::unbounded_channel();
    let hub = Hub::builder()
        .store(store)
        .directory(directory.clone())
        .notifier(Arc::new(Recorder(tx)))
        .build()
        .unwrap();
    World {
        hub,
        directory,
        pushes,
    }
}

fn world() -> World {
    world_on(Arc::new(MemoryStore::new()))
}

impl World {
    fn phone(&self, who: &str) -> (ConnectionId, InProcessConnection) {
        self.hub.connect_in_process(
            Device::master(uid(who), dev(&format!("{who}-phone")), DeviceFlag::App),
            1024,
        )
    }

    fn web(&self, who: &str) -> (ConnectionId, InProcessConnection) {
        self.hub.connect_in_process(
            Device::slave(uid(who), dev(&format!("{who}-web")), DeviceFlag::Web),
            1024,
        )
    }

    fn group(&self, id: &str, owner: &str, members: &[&str]) -> Channel {
        let g = Channel::group(id).unwrap();
        self.directory
            .create_channel(&g, &uid(owner), members.iter().map(|m| uid(m)));
        g
    }
}

fn payloads(conn: &mut InProcessConnection) -> Vec<String> {
    conn.drain()
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

// ---- the scenario of the article the product comes from: an API-sent
// message that clients saw live but not in history ----

#[tokio::test]
async fn server_send_with_sync_once_is_a_command_delivered_once() {
    let mut w = world();
    let g = w.group("g", "system", &["alice", "bob"]);
    let (alice_conn_id, mut alice) = w.phone("alice");
    // bob is offline.
    let ack = w
        .hub
        .send(
            SendRequest::new(
                uid("system"),
                g.clone(),
                r#"{"type":1,"content":"invited"}"#,
            )
            .flags(Flags::command()),
        )
        .await
        .unwrap();
    assert_eq!(ack.persistence, Persistence::Command);
    assert_eq!(ack.message_seq, 0, "a command uses no channel seq");
    assert_ne!(ack.message_id, MessageId(0));

    // The online client got it.
    let got = alice.drain();
    assert_eq!(got.len(), 1);
    assert!(got[0].flags.sync_once);
    // Absent from history and from every conversation list.
    for reader in ["alice", "bob", "system"] {
        let history = w
            .hub
            .sync_channel(&uid(reader), &g, Page::forward(1, 100))
            .await
            .unwrap();
        assert!(history.is_empty(), "{reader} sees no history");
        assert!(w
            .hub
            .sync_conversations(&uid(reader), 0, 100)
            .await
            .unwrap()
            .is_empty());
    }
    assert_eq!(w.hub.store().last_seq(&g).await.unwrap(), 0);

    // The offline user gets it once, through command sync.
    let (bob_id, bob_msg) = w.pushes.recv().await.unwrap();
    assert_eq!(bob_msg, vec![uid("bob")], "only bob was offline");
    assert_eq!(bob_id.message_id, ack.message_id);
    let pending = w.hub.sync_commands(&uid("bob"), 0, 100).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].message.message_id, ack.message_id);
    assert_eq!(
        w.hub
            .ack_commands(&uid("bob"), pending[0].cursor)
            .await
            .unwrap(),
        1
    );
    assert!(w
        .hub
        .sync_commands(&uid("bob"), 0, 100)
        .await
        .unwrap()
        .is_empty());
    // And never after: a new session delivers nothing old. A connect never
    // replays the queue, so an empty drain alone proves nothing: the queue
    // itself must be empty, as the store has it and as a new session's
    // command sync from the start sees it.
    assert!(w
        .hub
        .store()
        .pending_commands(&uid("bob"), 0, 100)
        .await
        .unwrap()
        .is_empty());
    let (_, mut bob) = w.phone("bob");
    assert!(bob.drain().is_empty());
    assert!(w
        .hub
        .sync_commands(&uid("bob"), 0, 100)
        .await
        .unwrap()
        .is_empty());

    // Alice was online, and her command is queued all the same until her
    // master device acknowledges it.
    let queued = w.hub.sync_commands(&uid("alice"), 0, 100).await.unwrap();
    assert_eq!(
        queued
            .iter()
            .map(|q| q.message.message_id)
            .collect::<Vec<_>>(),
        vec![ack.message_id]
    );
    // Her master device acknowledges live: consumed for her too.
    assert!(w
        .hub
        .ack(&uid("alice"), alice_conn_id, ack.message_id, 0)
        .await
        .unwrap());
    assert!(w
        .hub
        .store()
        .pending_commands(&uid("alice"), 0, 100)
        .await
        .unwrap()
        .is_empty());
    assert!(w
        .hub
        .sync_commands(&uid("alice"), 0, 100)
        .await
        .unwrap()
        .is_empty());
}

/// The ids of `who`'s pending commands, through the hub and straight from
/// the store, which must agree.
async fn queued_ids(w: &World, who: &str) -> Vec<MessageId> {
    let via_hub: Vec<_> = w
        .hub
        .sync_commands(&uid(who), 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.message.message_id)
        .collect();
    let in_store: Vec<_> = w
        .hub
        .store()
        .pending_commands(&uid(who), 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.message.message_id)
        .collect();
    assert_eq!(via_hub, in_store);
    via_hub
}

#[tokio::test]
async fn a_live_ack_consumes_the_acknowledged_command_and_no_other() {
    let w = world();
    let g = w.group("g", "alice", &["bob"]);
    let (phone_id, mut phone) = w.phone("bob");
    let mut sent = Vec::new();
    for (i, name) in ["first", "second", "third"].into_iter().enumerate() {
        let ack = w
            .hub
            .send(
                SendRequest::new(uid("alice"), g.clone(), name)
                    .flags(Flags::command())
                    .client_msg_no(no(&format!("cmd-{i}"))),
            )
            .await
            .unwrap();
        sent.push(ack.message_id);
    }
    assert_eq!(
        phone
            .drain()
            .iter()
            .map(|m| m.message_id)
            .collect::<Vec<_>>(),
        sent
    );
    assert_eq!(queued_ids(&w, "bob").await, sent, "queued while online");

    // Acknowledging the middle one consumes it alone.
    assert!(w.hub.ack(&uid("bob"), phone_id, sent[1], 0).await.unwrap());
    assert_eq!(queued_ids(&w, "bob").await, vec![sent[0], sent[2]]);
    // Again: nothing left to consume, nothing else consumed.
    assert!(!w.hub.ack(&uid("bob"), phone_id, sent[1], 0).await.unwrap());
    assert_eq!(queued_ids(&w, "bob").await, vec![sent[0], sent[2]]);

    // Bob reconnects on a new session: nothing old arrives, and what he
    // did not acknowledge is still there for his command sync.
    assert!(w.hub.disconnect(&uid("bob"), phone_id));
    let (phone_id, mut phone) = w.phone("bob");
    assert!(phone.drain().is_empty());
    assert_eq!(queued_ids(&w, "bob").await, vec![sent[0], sent[2]]);
    for id in [sent[0], sent[2]] {
        assert!(w.hub.ack(&uid("bob"), phone_id, id, 0).await.unwrap());
    }
    assert!(queued_ids(&w, "bob").await.is_empty());
    // The sender had none queued at any point.
    assert!(queued_ids(&w, "alice").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_send_without_sync_once_is_history_and_survives_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let g = Channel::group("g").unwrap();
    let first_id;
    {
        let mut w = world_on(Arc::new(SledStore::open(dir.path()).unwrap()));
        w.directory
            .create_channel(&g, &uid("system"), [uid("alice"), uid("bob")]);
        let (_, mut alice) = w.phone("alice");
        let ack = w
            .hub
            .send(
                SendRequest::new(
                    uid("system"),
                    g.clone(),
                    r#"{"type":1,"content":"invited"}"#,
                )
                .flags(Flags {
                    sync_once: false,
                    red_dot: true,
                    ..Flags::default()
                }),
            )
            .await
            .unwrap();
        assert_eq!(ack.persistence, Persistence::History);
        assert_eq!(ack.message_seq, 1);
        first_id = ack.message_id;
        assert_eq!(alice.drain().len(), 1);
        let (_, offline) = w.pushes.recv().await.unwrap();
        assert_eq!(offline, vec![uid("bob")]);
    }
    // "Refresh": a new hub on the reopened store.
    let w = world_on(Arc::new(SledStore::open(dir.path()).unwrap()));
    w.directory
        .create_channel(&g, &uid("system"), [uid("alice"), uid("bob")]);
    for reader in ["alice", "bob"] {
        let history = w
            .hub
            .sync_channel(&uid(reader), &g, Page::forward(1, 100))
            .await
            .unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].message_id, first_id);
        assert_eq!(history[0].message_seq, 1);
        let convs = w
            .hub
            .sync_conversations(&uid(reader), 0, 100)
            .await
            .unwrap();
        assert_eq!(convs.len(), 1);
        assert_eq!(convs[0].conversation.unread, 1, "{reader} has one unread");
        assert_eq!(convs[0].conversation.last_seq, 1);
        assert_eq!(
            convs[0].last_message.as_ref().map(|m| m.message_id),
            Some(first_id)
        );
    }
    let sender = w
        .hub
        .sync_conversations(&uid("system"), 0, 100)
        .await
        .unwrap();
    assert_eq!(
        sender[0].conversation.unread, 0,
        "never the sender's unread"
    );
}

#[tokio::test]
async fn transient_is_delivered_online_only_and_stored_nowhere() {
    let mut w = world();
    let g = w.group("g", "alice", &["bob", "carol"]);
    let (alice_id, mut alice) = w.phone("alice");
    let (_, mut bob) = w.phone("bob");
    let (_, mut bob_web) = w.web("bob");
    let mut seen_ids = std::collections::HashSet::new();
    for flags in [
        Flags::transient(),
        Flags {
            no_persist: true,
            sync_once: true,
            ..Flags::default()
        },
    ] {
        let ack = w
            .hub
            .send(
                SendRequest::new(uid("alice"), g.clone(), "typing…")
                    .flags(flags)
                    .from_connection(alice_id),
            )
            .await
            .unwrap();
        assert_eq!(ack.persistence, Persistence::Transient);
        assert_eq!(ack.message_seq, 0);
        assert_ne!(ack.message_id, MessageId(0), "an id, as WuKongIM gives");
        assert!(seen_ids.insert(ack.message_id), "each its own");
        let got: Vec<_> = bob
            .drain()
            .iter()
            .map(|m| (m.message_id, m.payload.clone()))
            .collect();
        assert_eq!(got, [(ack.message_id, "typing…".into())]);
        assert_eq!(payloads(&mut bob_web), vec!["typing…"]);
        assert!(alice.drain().is_empty(), "not to the sending device");
    }
    assert_eq!(w.hub.store().last_seq(&g).await.unwrap(), 0);
    for u in ["alice", "bob", "carol"] {
        assert!(w
            .hub
            .sync_conversations(&uid(u), 0, 10)
            .await
            .unwrap()
            .is_empty());
        assert!(w
            .hub
            .sync_commands(&uid(u), 0, 10)
            .await
            .unwrap()
            .is_empty());
    }
    // Offline carol is never told: nothing was pushed.
    assert!(w.pushes.try_recv().is_err());
}

#[tokio::test]
async fn person_channel_works_both_ways_under_one_id() {
    let w = world();
    let (a_id, mut alice) = w.phone("alice");
    let (b_id, mut bob) = w.phone("bob");
    let (_, mut alice_web) = w.web("alice");
    let a1 = w
        .hub
        .send(SendRequest::new(uid("alice"), person("bob"), "hi bob").from_connection(a_id))
        .await
        .unwrap();
    let b1 = w
        .hub
        .send(SendRequest::new(uid("bob"), person("alice"), "hi alice").from_connection(b_id))
        .await
        .unwrap();
    assert_eq!(
        (a1.message_seq, b1.message_seq),
        (1, 2),
        "one channel, one seq space"
    );
    let to_bob = bob.drain();
    assert_eq!(to_bob.len(), 1);
    assert_eq!(to_bob[0].channel.as_seen_by(&uid("bob")), person("alice"));
    let to_alice = alice.drain();
    assert_eq!(to_alice.len(), 1);
    assert_eq!(to_alice[0].channel.as_seen_by(&uid("alice")), person("bob"));
    // Alice's other device sees both, in order.
    assert_eq!(payloads(&mut alice_web), vec!["hi bob", "hi alice"]);
    // Both read the same history, each addressing the other.
    let from_alice = w
        .hub
        .sync_channel(&uid("alice"), &person("bob"), Page::forward(1, 10))
        .await
        .unwrap();
    let from_bob = w
        .hub
        .sync_channel(&uid("bob"), &person("alice"), Page::forward(1, 10))
        .await
        .unwrap();
    assert_eq!(from_alice, from_bob);
    assert_eq!(from_alice.len(), 2);
    // Each conversation list names the other side.
    let convs = w.hub.sync_conversations(&uid("bob"), 0, 10).await.unwrap();
    assert_eq!(convs[0].channel, person("alice"));
    assert_eq!(
        convs[0].conversation.unread, 0,
        "bob answered: his own send reads the channel up to it"
    );
    let convs = w
        .hub
        .sync_conversations(&uid("alice"), 0, 10)
        .await
        .unwrap();
    assert_eq!(convs[0].channel, person("bob"));
    assert_eq!(convs[0].conversation.unread, 1, "bob's answer, not her own");
    // A stranger may not read it.
    let refused = w
        .hub
        .sync_channel(
            &uid("eve"),
            &Channel::person(&uid("alice"), &uid("bob")),
            Page::forward(1, 10),
        )
        .await;
    assert!(matches!(
        refused,
        Err(Error::Rejected {
            reason: ReasonCode::SUBSCRIBER_NOT_EXIST,
            ..
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_1000_with_3_devices_each_gets_one_copy_per_device() {
    let w = world();
    let members: Vec<String> = (0..1000).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    let g = w.group("big", "m0", &refs[1..]);
    let mut conns = HashMap::new();
    for m in &members {
        for (flag, name) in [
            (DeviceFlag::App, "app"),
            (DeviceFlag::Web, "web"),
            (DeviceFlag::Pc, "pc"),
        ] {
            let device = Device::master(uid(m), dev(&format!("{m}-{name}")), flag);
            let (id, conn) = w.hub.connect_in_process(device, 8);
            conns.insert((m.clone(), name), (id, conn));
        }
    }
    assert_eq!(w.hub.connection_count(), 3000);
    let sender = conns[&("m7".to_string(), "web")].0;
    let ack = w
        .hub
        .send(SendRequest::new(uid("m7"), g, "to everyone").from_connection(sender))
        .await
        .unwrap();
    let mut copies = 0;
    for ((m, name), (_, conn)) in conns.iter_mut() {
        let got = conn.drain();
        if m == "m7" && *name == "web" {
            assert!(got.is_empty(), "the sending device gets none");
        } else {
            assert_eq!(got.len(), 1, "{m}/{name}");
            assert_eq!(got[0].message_id, ack.message_id);
            copies += 1;
        }
    }
    assert_eq!(copies, 2999);
}

// ---- permissions: every reason code the directory gives ----

async fn refused(w: &World, from: &str, channel: &Channel) -> ReasonCode {
    match w
        .hub
        .send(SendRequest::new(uid(from), channel.clone(), "x"))
        .await
    {
        Err(Error::Rejected { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn every_permission_reason_code_is_produced() {
    let w = world();
    let g = w.group("g", "owner", &["manager", "member", "muted"]);
    w.directory.set_manager(&g, &uid("manager"), true);
    assert_eq!(
        refused(&w, "stranger", &g).await,
        ReasonCode::SUBSCRIBER_NOT_EXIST
    );
    w.directory.set_muted(&g, &uid("muted"), true);
    assert_eq!(refused(&w, "muted", &g).await, ReasonCode::IN_BLACKLIST);
    w.directory.set_all_muted(&g, true);
    assert_eq!(refused(&w, "member", &g).await, ReasonCode::SEND_BAN);
    w.hub
        .send(SendRequest::new(uid("manager"), g.clone(), "managers may"))
        .await
        .unwrap();
    w.directory.set_all_muted(&g, false);
    w.directory.set_banned(&g, true);
    assert_eq!(refused(&w, "owner", &g).await, ReasonCode::BAN);
    w.directory.set_banned(&g, false);
    w.directory.disband(&g);
    assert_eq!(refused(&w, "member", &g).await, ReasonCode::DISBAND);
    assert_eq!(
        refused(&w, "member", &Channel::group("nowhere").unwrap()).await,
        ReasonCode::CHANNEL_NOT_EXIST
    );
    let odd = Channel::new(
        imcore::ChannelId::new("x").unwrap(),
        ChannelType::try_from(42).unwrap(),
    );
    assert_eq!(
        refused(&w, "member", &odd).await,
        ReasonCode::NOT_SUPPORT_CHANNEL_TYPE
    );
    // Person channels: blacklist and friends-only.
    w.directory.block(&uid("bob"), &uid("alice"), true);
    assert_eq!(
        refused(&w, "alice", &person("bob")).await,
        ReasonCode::IN_BLACKLIST
    );
    w.hub
        .send(SendRequest::new(uid("bob"), person("alice"), "bob may"))
        .await
        .unwrap();
    w.directory.require_friends(true);
    assert_eq!(
        refused(&w, "carol", &person("dave")).await,
        ReasonCode::NOT_IN_WHITELIST
    );
    w.directory.add_friends(&uid("carol"), &uid("dave"));
    w.hub
        .send(SendRequest::new(uid("carol"), person("dave"), "friends"))
        .await
        .unwrap();
    // A person channel id that is neither a uid nor a pair.
    let bad = Channel::new(
        imcore::ChannelId::new("a@b@c").unwrap(),
        ChannelType::PERSON,
    );
    let err = w
        .hub
        .send(SendRequest::new(uid("carol"), bad, "x"))
        .await
        .unwrap_err();
    assert_eq!(err.reason_code(), Some(ReasonCode::CHANNEL_ID_ERROR));
    // Nothing refused was stored.
    assert_eq!(w.hub.store().last_seq(&g).await.unwrap(), 1);
}

/// A host directory's own codes reach the caller unchanged.
#[derive(Debug)]
struct RateLimited;

#[async_trait]
impl imcore::Directory for RateLimited {
    async fn subscribers(&self, _: &Channel) -> imcore::Result<Arc<[Uid]>> {
        Ok(Arc::from(Vec::new()))
    }
    async fn check_send(&self, sender: &Uid, _: &Channel) -> imcore::Result<imcore::Permission> {
        Ok(imcore::Permission::Denied(
            if sender.as_str() == "spammer" {
                ReasonCode::RATE_LIMIT
            } else {
                ReasonCode::NOT_ALLOW_SEND
            },
        ))
    }
    async fn check_read(&self, _: &Uid, _: &Channel) -> imcore::Result<imcore::Permission> {
        Ok(imcore::Permission::Allowed)
    }
    async fn channels_of(&self, _: &Uid) -> imcore::Result<Vec<Channel>> {
        Ok(Vec::new())
    }
    async fn role(&self, _: &Channel, _: &Uid) -> imcore::Result<Option<imcore::Role>> {
        Ok(None)
    }
}

#[tokio::test]
async fn a_host_directory_decides_with_its_own_codes() {
    let hub = Hub::builder()
        .directory(Arc::new(RateLimited))
        .build()
        .unwrap();
    let g = Channel::group("g").unwrap();
    for (who, code) in [
        ("spammer", ReasonCode::RATE_LIMIT),
        ("anyone", ReasonCode::NOT_ALLOW_SEND),
    ] {
        let err = hub
            .send(SendRequest::new(uid(who), g.clone(), "x"))
            .await
            .unwrap_err();
        assert_eq!(err.reason_code(), Some(code));
    }
}

// ---- ordering, concurrency, slow consumers ----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_get_contiguous_seqs_and_devices_see_seq_order() {
    concurrent_senders(world()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_on_sled_with_flush_before_ack() {
    let store = SledStore::temporary_with(imcore::store::Durability::Flush).unwrap();
    concurrent_senders(world_on(Arc::new(store))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sends_to_one_channel_share_flushes() {
    // A send gives up its channel's turn once it has its seq, before its
    // flush: the sends behind it write meanwhile, and the next flush
    // covers them all. Held through the flush, the turn made every send
    // to a channel wait for a flush of its own.
    let dir = tempfile::tempdir().unwrap();
    let config = imcore::store::SledConfig::new(dir.path());
    let store = Arc::new(SledStore::open_with(config).unwrap());
    let before = store.flushes();
    concurrent_senders(world_on(store.clone())).await;
    let flushes = store.flushes() - before;
    assert!(flushes > 0);
    assert!(
        flushes < 100,
        "200 sends to one channel took {flushes} flushes"
    );
}

#[tokio::test]
async fn send_all_keeps_order_shares_one_flush_and_answers_each() {
    let dir = tempfile::tempdir().unwrap();
    let config = imcore::store::SledConfig::new(dir.path());
    let store = Arc::new(SledStore::open_with(config).unwrap());
    let w = world_on(store.clone());
    let g = w.group("g", "alice", &["bob"]);
    let (_, mut bob) = w.phone("bob");
    let mut requests: Vec<SendRequest> = (0..20)
        .map(|i| SendRequest::new(uid("alice"), g.clone(), format!("m{i}")))
        .collect();
    // Refused in the middle: the others are stored all the same.
    requests.insert(5, SendRequest::new(uid("stranger"), g.clone(), "x"));
    let before = store.flushes();
    let acks = w.hub.send_all(requests).await;
    assert_eq!(
        store.flushes() - before,
        1,
        "one flush covers the whole batch"
    );
    assert_eq!(acks.len(), 21);
    assert_eq!(
        acks[5].as_ref().unwrap_err().reason_code(),
        Some(ReasonCode::SUBSCRIBER_NOT_EXIST)
    );
    let seqs: Vec<u64> = acks
        .iter()
        .filter_map(|a| a.as_ref().ok())
        .map(|a| a.message_seq)
        .collect();
    assert_eq!(
        seqs,
        (1..=20).collect::<Vec<_>>(),
        "seqs in the order given"
    );
    let got: Vec<(u64, Vec<u8>)> = bob
        .drain()
        .iter()
        .map(|m| (m.message_seq, m.payload.to_vec()))
        .collect();
    let want: Vec<(u64, Vec<u8>)> = (0..20u64)
        .map(|i| (i + 1, format!("m{i}").into_bytes()))
        .collect();
    assert_eq!(got, want, "delivered once each, in seq order");
}

async fn concurrent_senders(w: World) {
    let senders: Vec<String> = (0..8).map(|i| format!("s{i}")).collect();
    let mut members: Vec<&str> = senders.iter().map(String::as_str).collect();
    members.extend(["r1", "r2"]);
    let g = w.group("busy", "owner", &members);
    let mut watchers = vec![
        w.phone("r1").1,
        w.web("r1").1,
        w.phone("r2").1,
        w.phone("owner").1,
    ];
    const EACH: usize = 25;
    let mut tasks = Vec::new();
    for s in &senders {
        let (hub, g, s) = (w.hub.clone(), g.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..EACH {
                let ack = hub
                    .send(SendRequest::new(uid(&s), g.clone(), format!("{s}-{i}")))
                    .await
                    .unwrap();
                seqs.push(ack.message_seq);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    let n = (senders.len() * EACH) as u64;
    assert_eq!(all, (1..=n).collect::<Vec<_>>());
    for conn in &mut watchers {
        let seqs: Vec<u64> = conn.drain().iter().map(|m| m.message_seq).collect();
        assert_eq!(
            seqs,
            (1..=n).collect::<Vec<_>>(),
            "every message once, in seq order"
        );
    }
}

#[tokio::test]
async fn a_slow_device_is_disconnected_and_catches_up_by_sync() {
    let w = world();
    let g = w.group("g", "alice", &["bob"]);
    let (_, mut slow) = w.hub.connect_in_process(
        Device::master(uid("bob"), dev("bob-slow"), DeviceFlag::App),
        2,
    );
    let (_, mut fast) = w.web("bob");
    for i in 0..5 {
        w.hub
            .send(SendRequest::new(uid("alice"), g.clone(), format!("m{i}")))
            .await
            .unwrap();
    }
    assert_eq!(slow.closed().await, DisconnectReason::SlowConsumer);
    assert_eq!(
        DisconnectReason::SlowConsumer.reason_code(),
        ReasonCode::RATE_LIMIT
    );
    // What was queued stays readable; the rest is lost to the connection only.
    let queued = slow.drain();
    assert_eq!(queued.len(), 2);
    assert_eq!(fast.drain().len(), 5, "the other device is not affected");
    assert_eq!(w.hub.online_devices(&uid("bob")).len(), 1);
    // Catching up by sync from the last seq it saw.
    let last_seen = queued.last().unwrap().message_seq;
    let missed = w
        .hub
        .sync_channel(&uid("bob"), &g, Page::forward(last_seen + 1, 100))
        .await
        .unwrap();
    assert_eq!(
        missed.iter().map(|m| m.message_seq).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
}

// ---- sessions ----

#[tokio::test]
async fn same_device_replaces_and_master_login_kicks_same_flag() {
    let w = world();
    let (first_id, mut first) = w.phone("alice");
    let (second_id, _second) = w.phone("alice");
    assert_eq!(first.closed().await, DisconnectReason::Replaced);
    // A late disconnect of the replaced connection leaves the new one.
    assert!(!w.hub.disconnect(&uid("alice"), first_id));
    assert_eq!(w.hub.online_devices(&uid("alice")).len(), 1);

    // A slave of another flag does not kick; a slave of the same flag neither.
    let (_, web) = w.web("alice");
    let (_, pad) = w.hub.connect_in_process(
        Device::slave(uid("alice"), dev("alice-pad"), DeviceFlag::App),
        8,
    );
    assert_eq!(w.hub.online_devices(&uid("alice")).len(), 3);
    // A master login of flag App kicks every other App device.
    let (_, _tablet) = w.hub.connect_in_process(
        Device::master(uid("alice"), dev("alice-tablet"), DeviceFlag::App),
        8,
    );
    assert_eq!(pad.closed_reason(), Some(DisconnectReason::Kicked));
    assert_eq!(
        DisconnectReason::Kicked.reason_code(),
        ReasonCode::CONNECT_KICK
    );
    assert!(
        !w.hub.disconnect(&uid("alice"), second_id),
        "kicked already"
    );
    assert_eq!(web.closed_reason(), None);
    let devices: Vec<String> = w
        .hub
        .online_devices(&uid("alice"))
        .iter()
        .map(|d| d.device_id.to_string())
        .collect();
    assert_eq!(devices.len(), 2);
    assert!(devices.contains(&"alice-web".to_string()));
    assert!(devices.contains(&"alice-tablet".to_string()));
}

// ---- resends, acks, offline push ----

#[tokio::test]
async fn resends_are_acked_with_the_first_ids_and_not_delivered_again() {
    let w = world();
    let g = w.group("g", "alice", &["bob"]);
    let (_, mut bob) = w.phone("bob");
    for flags in [Flags::normal(), Flags::command()] {
        let tag = if flags.sync_once { "cmd" } else { "msg" };
        let req = SendRequest::new(uid("alice"), g.clone(), tag)
            .flags(flags)
            .client_msg_no(no(&format!("c-{tag}")));
        let first = w.hub.send(req.clone()).await.unwrap();
        let again = w.hub.send(req).await.unwrap();
        assert!(!first.duplicate);
        assert!(again.duplicate);
        assert_eq!(
            (again.message_id, again.message_seq),
            (first.message_id, first.message_seq)
        );
        assert_eq!(payloads(&mut bob), vec![tag], "delivered once");
    }
    assert_eq!(w.hub.store().last_seq(&g).await.unwrap(), 1);
    assert_eq!(
        w.hub.sync_commands(&uid("bob"), 0, 10).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn only_a_master_acknowledgement_consumes_a_command() {
    let w = world();
    let g = w.group("g", "alice", &["bob"]);
    let (phone_id, mut phone) = w.phone("bob");
    let (web_id, mut web) = w.web("bob");
    let ack = w
        .hub
        .send(SendRequest::new(uid("alice"), g.clone(), "cmd").flags(Flags::command()))
        .await
        .unwrap();
    assert_eq!(phone.drain().len(), 1);
    assert_eq!(web.drain().len(), 1);
    assert!(!w
        .hub
        .ack(&uid("bob"), web_id, ack.message_id, 0)
        .await
        .unwrap());
    assert_eq!(
        w.hub.sync_commands(&uid("bob"), 0, 10).await.unwrap().len(),
        1
    );
    // A history ack (seq != 0) consumes nothing either.
    assert!(!w
        .hub
        .ack(&uid("bob"), phone_id, ack.message_id, 5)
        .await
        .unwrap());
    assert!(w
        .hub
        .ack(&uid("bob"), phone_id, ack.message_id, 0)
        .await
        .unwrap());
    assert!(w
        .hub
        .sync_commands(&uid("bob"), 0, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(!w
        .hub
        .ack(&uid("bob"), phone_id, ack.message_id, 0)
        .await
        .unwrap());
}

#[tokio::test]
async fn offline_push_names_users_without_a_master_online() {
    let mut w = world();
    let g = w.group("g", "alice", &["bob", "carol", "dave"]);
    let (_, _bob) = w.phone("bob");
    let (_, _carol_web) = w.web("carol"); // slave only: offline for push
                                          // alice (the sender) is offline too, but never pushed.
    let ack = w
        .hub
        .send(SendRequest::new(uid("alice"), g.clone(), "hello"))
        .await
        .unwrap();
    let (message, mut offline) = w.pushes.recv().await.unwrap();
    offline.sort();
    assert_eq!(offline, vec![uid("carol"), uid("dave")]);
    assert_eq!(message.message_id, ack.message_id);
    assert_eq!(message.message_seq, 1, "pushed after it was stored");
}

#[tokio::test]
async fn explicit_subscriber_lists_are_for_server_commands_only() {
    let w = world();
    let (_, mut bob) = w.phone("bob");
    let (alice_id, _) = w.phone("alice");
    let ack = w
        .hub
        .send(SendRequest::command_to(
            uid("server"),
            vec![uid("bob"), uid("carol"), uid("bob")],
            r#"{"type":99,"cmd":"refresh","param":{}}"#,
        ))
        .await
        .unwrap();
    let got = bob.drain();
    assert_eq!(got.len(), 1, "named twice, delivered once");
    assert_eq!(got[0].channel.as_seen_by(&uid("bob")), person("server"));
    assert_eq!(
        w.hub.sync_commands(&uid("carol"), 0, 10).await.unwrap()[0]
            .message
            .message_id,
        ack.message_id
    );
    // Not for history, and not from a device.
    let history =
        SendRequest::command_to(uid("server"), vec![uid("bob")], "x").flags(Flags::normal());
    assert!(matches!(
        w.hub.send(history).await,
        Err(Error::Validation(_))
    ));
    let from_device =
        SendRequest::command_to(uid("alice"), vec![uid("bob")], "x").from_connection(alice_id);
    assert!(matches!(
        w.hub.send(from_device).await,
        Err(Error::Validation(_))
    ));
    assert!(bob.drain().is_empty());
}

#[tokio::test]
async fn oversized_payloads_are_refused_before_anything_is_stored() {
    let w = world();
    let g = w.group("g", "alice", &["bob"]);
    let (_, mut bob) = w.phone("bob");
    let limit = w.hub.config().limits.max_payload;
    let err = w
        .hub
        .send(SendRequest::new(
            uid("alice"),
            g.clone(),
            vec![b'x'; limit + 1],
        ))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Validation(imcore::ValidationError::PayloadTooLarge { .. })
    ));
    w.hub
        .send(SendRequest::new(uid("alice"), g.clone(), vec![b'x'; limit]))
        .await
        .unwrap();
    assert_eq!(w.hub.store().last_seq(&g).await.unwrap(), 1);
    assert_eq!(bob.drain().len(), 1);
    assert!(matches!(
        w.hub
            .sync_channel(&uid("bob"), &g, Page::forward(1, 0))
            .await,
        Err(Error::Validation(_))
    ));
}

#[tokio::test]
async fn unread_is_cleared_per_conversation() {
    let w = world();
    let g = w.group("g", "alice", &["bob"]);
    for i in 0..3 {
        w.hub
            .send(SendRequest::new(uid("alice"), g.clone(), format!("m{i}")))
            .await
            .unwrap();
    }
    w.hub
        .send(
            SendRequest::new(uid("alice"), g.clone(), "quiet").flags(Flags {
                red_dot: false,
                ..Flags::default()
            }),
        )
        .await
        .unwrap();
    let convs = w.hub.sync_conversations(&uid("bob"), 0, 10).await.unwrap();
    assert_eq!(convs[0].conversation.unread, 3, "no red dot, no unread");
    assert_eq!(convs[0].conversation.last_seq, 4);
    let version = convs[0].conversation.version;
    assert!(w.hub.clear_unread(&uid("bob"), &g, u64::MAX).await.unwrap());
    let changed = w
        .hub
        .sync_conversations(&uid("bob"), version, 10)
        .await
        .unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].conversation.unread, 0);
}

#[tokio::test]
async fn a_message_arriving_after_what_was_read_stays_unread() {
    let w = world();
    let g = w.group("g", "alice", &["bob"]);
    for text in ["one", "two"] {
        w.hub
            .send(SendRequest::new(uid("alice"), g.clone(), text))
            .await
            .unwrap();
    }
    // Bob's client shows seq 2 and says so; seq 3 lands in between.
    w.hub
        .send(SendRequest::new(uid("alice"), g.clone(), "three"))
        .await
        .unwrap();
    assert!(w.hub.clear_unread(&uid("bob"), &g, 2).await.unwrap());
    let convs = w.hub.sync_conversations(&uid("bob"), 0, 10).await.unwrap();
    assert_eq!(convs[0].conversation.unread, 1);
}

/// Bob's unread count in `channel`.
async fn unread(w: &World, channel: &Channel) -> u64 {
    let convs = w.hub.sync_conversations(&uid("bob"), 0, 10).await.unwrap();
    let view = convs
        .iter()
        .find(|c| &c.channel == channel)
        .expect("bob has the conversation");
    view.conversation.unread
}

async fn a_stale_clear_never_raises_unread_again_on(w: World) {
    let g = w.group("g", "alice", &["bob"]);
    let to_bob = person("bob");
    let as_bob_sees_it = person("alice");
    for (channel, seen) in [(&g, &g), (&to_bob, &as_bob_sees_it)] {
        for i in 0..4 {
            w.hub
                .send(SendRequest::new(
                    uid("alice"),
                    channel.clone(),
                    format!("m{i}"),
                ))
                .await
                .unwrap();
        }
        assert_eq!(unread(&w, seen).await, 4);
        // Bob reads everything (up to seq 4, or "all")...
        for read_up_to in [4, u64::MAX] {
            assert!(w
                .hub
                .clear_unread(&uid("bob"), seen, read_up_to)
                .await
                .unwrap());
            assert_eq!(unread(&w, seen).await, 0);
            // ...then an older clear arrives late (another device, a retry):
            // it must not bring back what was read.
            assert!(w.hub.clear_unread(&uid("bob"), seen, 2).await.unwrap());
            assert_eq!(unread(&w, seen).await, 0, "stale clear after {read_up_to}");
            assert!(w.hub.clear_unread(&uid("bob"), seen, 0).await.unwrap());
            assert_eq!(unread(&w, seen).await, 0, "clear to 0 after {read_up_to}");
        }
        // A new message counts from there: one unread, not the old ones.
        w.hub
            .send(SendRequest::new(uid("alice"), channel.clone(), "m4"))
            .await
            .unwrap();
        assert_eq!(unread(&w, seen).await, 1);
        assert!(w.hub.clear_unread(&uid("bob"), seen, 3).await.unwrap());
        assert_eq!(
            unread(&w, seen).await,
            1,
            "a stale clear leaves the new one"
        );
    }
}

#[tokio::test]
async fn a_stale_clear_never_raises_unread_again() {
    a_stale_clear_never_raises_unread_again_on(world()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_clear_never_raises_unread_again_on_sled() {
    let dir = tempfile::tempdir().unwrap();
    a_stale_clear_never_raises_unread_again_on(world_on(Arc::new(
        SledStore::open(dir.path()).unwrap(),
    )))
    .await;
}

#[tokio::test]
async fn a_server_side_sender_does_not_queue_its_own_commands() {
    let w = world();
    let g = w.group("g", "system", &["alice"]);
    for i in 0..3 {
        w.hub
            .send(
                SendRequest::new(uid("system"), g.clone(), format!("c{i}")).flags(Flags::command()),
            )
            .await
            .unwrap();
    }
    assert!(w
        .hub
        .sync_commands(&uid("system"), 0, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        w.hub
            .sync_commands(&uid("alice"), 0, 10)
            .await
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn naming_someone_elses_connection_suppresses_nothing() {
    let w = world();
    let g = w.group("g", "alice", &["bob"]);
    let (bob_id, mut bob) = w.phone("bob");
    w.hub
        .send(SendRequest::new(uid("alice"), g, "hi").from_connection(bob_id))
        .await
        .unwrap();
    assert_eq!(payloads(&mut bob), vec!["hi"]);
}

// ---- sends that outlive their caller ----

/// A memory store whose history writes (`append`, the send path's one
/// write) wait for a permit, so that a test can stop waiting for a send
/// while its write is in progress.
#[derive(Debug)]
struct GatedStore {
    inner: MemoryStore,
    gate: tokio::sync::Semaphore,
    entered: tokio::sync::Notify,
}

#[async_trait]
impl imcore::store::MessageLog for GatedStore {
    async fn append(&self, messages: Vec<Message>) -> imcore::Result<Vec<imcore::store::Appended>> {
        self.entered.notify_one();
        let _permit = self.gate.acquire().await.unwrap();
        self.inner.append(messages).await
    }
    async fn read(&self, channel: &Channel, page: Page) -> imcore::Result<Vec<Message>> {
        self.inner.read(channel, page).await
    }
    async fn get(&self, id: MessageId) -> imcore::Result<Option<Message>> {
        self.inner.get(id).await
    }
    async fn get_by_client_msg_no(
        &self,
        from_uid: &Uid,
        channel: &Channel,
        client_msg_no: &ClientMsgNo,
    ) -> imcore::Result<Option<Message>> {
        self.inner
            .get_by_client_msg_no(from_uid, channel, client_msg_no)
            .await
    }
    async fn last_seq(&self, channel: &Channel) -> imcore::Result<u64> {
        self.inner.last_seq(channel).await
    }
}

#[async_trait]
impl imcore::store::CommandQueue for GatedStore {
    async fn push_command(
        &self,
        message: &Message,
        recipients: &[Uid],
    ) -> imcore::Result<imcore::store::Pushed> {
        self.inner.push_command(message, recipients).await
    }
    async fn pending_commands(
        &self,
        uid: &Uid,
        after: u64,
        limit: usize,
    ) -> imcore::Result<Vec<imcore::store::QueuedCommand>> {
        self.inner.pending_commands(uid, after, limit).await
    }
    async fn ack_commands(&self, uid: &Uid, up_to: u64) -> imcore::Result<usize> {
        self.inner.ack_commands(uid, up_to).await
    }
    async fn remove_commands(&self, uid: &Uid, ids: &[MessageId]) -> imcore::Result<usize> {
        self.inner.remove_commands(uid, ids).await
    }
    async fn is_command(&self, id: MessageId) -> imcore::Result<bool> {
        self.inner.is_command(id).await
    }
}

#[async_trait]
impl imcore::store::ConversationStore for GatedStore {
    async fn stable_version(&self) -> imcore::Result<u64> {
        self.inner.stable_version().await
    }
    async fn conversation(
        &self,
        uid: &Uid,
        channel: &Channel,
    ) -> imcore::Result<Option<imcore::store::Conversation>> {
        self.inner.conversation(uid, channel).await
    }
    async fn person_channels(&self, uid: &Uid) -> imcore::Result<Vec<Channel>> {
        self.inner.person_channels(uid).await
    }
    async fn clear_unread(
        &self,
        uid: &Uid,
        channel: &Channel,
        read_seq: u64,
    ) -> imcore::Result<bool> {
        self.inner.clear_unread(uid, channel, read_seq).await
    }
    async fn hide_conversation(
        &self,
        uid: &Uid,
        channel: &Channel,
        up_to: u64,
    ) -> imcore::Result<()> {
        self.inner.hide_conversation(uid, channel, up_to).await
    }
    async fn hidden_conversations(&self, uid: &Uid) -> imcore::Result<Vec<(Channel, u64)>> {
        self.inner.hidden_conversations(uid).await
    }
}

#[async_trait]
impl imcore::store::Outbox for GatedStore {
    fn enable_outbox(&self) {
        self.inner.enable_outbox()
    }
    async fn outbox(&self, limit: usize) -> imcore::Result<Vec<(u64, imcore::Message)>> {
        self.inner.outbox(limit).await
    }
    async fn outbox_done(&self, entries: &[u64]) -> imcore::Result<()> {
        self.inner.outbox_done(entries).await
    }
}

#[async_trait]
impl imcore::store::RevocationStore for GatedStore {
    async fn record_revocation(
        &self,
        revocation: imcore::store::NewRevocation,
    ) -> imcore::Result<imcore::store::Recorded> {
        self.inner.record_revocation(revocation).await
    }
    async fn lookup_revocations(
        &self,
        ids: &[MessageId],
    ) -> imcore::Result<Vec<Option<imcore::store::Revocation>>> {
        self.inner.lookup_revocations(ids).await
    }
    async fn revocations_between(
        &self,
        channel: &Channel,
        from_seq: u64,
        to_seq: u64,
    ) -> imcore::Result<Vec<imcore::store::Revocation>> {
        self.inner
            .revocations_between(channel, from_seq, to_seq)
            .await
    }
    async fn revocations_after(
        &self,
        channel: &Channel,
        extra_version: u64,
        limit: usize,
    ) -> imcore::Result<Vec<imcore::store::Revocation>> {
        self.inner
            .revocations_after(channel, extra_version, limit)
            .await
    }
}

#[tokio::test]
async fn a_send_whose_caller_stops_waiting_is_still_stored_and_delivered() {
    let store = Arc::new(GatedStore {
        inner: MemoryStore::new(),
        gate: tokio::sync::Semaphore::new(0),
        entered: tokio::sync::Notify::new(),
    });
    let w = world_on(store.clone());
    let g = w.group("g", "alice", &["bob"]);
    let (_, mut bob) = w.phone("bob");
    let send = w
        .hub
        .send(SendRequest::new(uid("alice"), g.clone(), "hello").client_msg_no(no("c1")));
    // The caller gives up while the message is being written.
    let gave_up = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        tokio::select! {
            _ = send => panic!("the write is gated"),
            () = store.entered.notified() => {}
        }
    });
    gave_up.await.expect("the write started");
    store.gate.add_permits(1);
    let got = bob
        .recv()
        .await
        .expect("delivered although the caller left");
    assert_eq!((got.payload.as_ref(), got.message_seq), (&b"hello"[..], 1));
    // The resend is a duplicate, and is not delivered a second time.
    store.gate.add_permits(1);
    let again = w
        .hub
        .send(SendRequest::new(uid("alice"), g, "hello").client_msg_no(no("c1")))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert!(bob.try_recv().is_none());
}

// ---- person channels belong to their two parties ----

/// A directory that allows everything, as a careless host's might.
#[derive(Debug)]
struct AllowAll;

#[async_trait]
impl imcore::Directory for AllowAll {
    async fn subscribers(&self, _: &Channel) -> imcore::Result<Arc<[Uid]>> {
        Ok(Arc::from(Vec::new()))
    }
    async fn check_send(&self, _: &Uid, _: &Channel) -> imcore::Result<imcore::Permission> {
        Ok(imcore::Permission::Allowed)
    }
    async fn check_read(&self, _: &Uid, _: &Channel) -> imcore::Result<imcore::Permission> {
        Ok(imcore::Permission::Allowed)
    }
    async fn channels_of(&self, _: &Uid) -> imcore::Result<Vec<Channel>> {
        Ok(Vec::new())
    }
    async fn role(&self, _: &Channel, _: &Uid) -> imcore::Result<Option<imcore::Role>> {
        Ok(None)
    }
}

#[tokio::test]
async fn a_third_user_can_neither_write_nor_read_a_person_channel() {
    let hub = Hub::builder()
        .directory(Arc::new(AllowAll))
        .build()
        .unwrap();
    let private = Channel::person(&uid("alice"), &uid("bob"));
    let ack = hub
        .send(SendRequest::new(uid("alice"), person("bob"), "secret"))
        .await
        .unwrap();
    assert_eq!(ack.message_seq, 1);
    let err = hub
        .send(SendRequest::new(uid("eve"), private.clone(), "spoof"))
        .await
        .unwrap_err();
    assert_eq!(err.reason_code(), Some(ReasonCode::SUBSCRIBER_NOT_EXIST));
    let err = hub
        .sync_channel(&uid("eve"), &private, Page::forward(1, 10))
        .await
        .unwrap_err();
    assert_eq!(err.reason_code(), Some(ReasonCode::SUBSCRIBER_NOT_EXIST));
    // The parties themselves may use the stored form.
    let read = hub
        .sync_channel(&uid("bob"), &private, Page::forward(1, 10))
        .await
        .unwrap();
    assert_eq!(read.len(), 1);
}

#[tokio::test]
async fn a_master_dropped_for_not_taking_a_message_is_pushed_that_message() {
    let mut w = world();
    let g = w.group("g", "alice", &["bob"]);
    let (_, mut bob) = w.hub.connect_in_process(
        Device::master(uid("bob"), dev("bob-phone"), DeviceFlag::App),
        1,
    );
    w.hub
        .send(SendRequest::new(uid("alice"), g.clone(), "fits"))
        .await
        .unwrap();
    let overflow = w
        .hub
        .send(SendRequest::new(uid("alice"), g, "overflows"))
        .await
        .unwrap();
    assert_eq!(bob.closed().await, DisconnectReason::SlowConsumer);
    let (pushed, offline) =
        tokio::time::timeout(std::time::Duration::from_secs(10), w.pushes.recv())
            .await
            .expect("the overflowing message is pushed")
            .expect("a push");
    assert_eq!(pushed.message_id, overflow.message_id);
    assert_eq!(offline, vec![uid("bob")]);
}

#[tokio::test]
async fn kick_closes_a_users_devices_of_one_kind_or_all() {
    let w = world();
    let (_, mut phone) = w.phone("bob");
    let (_, mut web) = w.web("bob");
    let (_, alice) = w.phone("alice");
    assert_eq!(w.hub.kick(&uid("bob"), Some(DeviceFlag::Web)), 1);
    assert_eq!(web.closed().await, DisconnectReason::Kicked);
    assert_eq!(w.hub.online_devices(&uid("bob")).len(), 1);
    assert_eq!(w.hub.kick(&uid("bob"), None), 1);
    assert_eq!(phone.closed().await, DisconnectReason::Kicked);
    assert_eq!(w.hub.kick(&uid("bob"), None), 0);
    assert!(w.hub.online_devices(&uid("bob")).is_empty());
    assert!(alice.closed_reason().is_none(), "others are untouched");
}
