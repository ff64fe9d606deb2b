//! Flow through served connections: a connection waiting for its own sends
//! goes on receiving (and, kicked, is answered before it is told), and a
//! client that stops reading is closed while everyone beside it gets
//! everything.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use imcore::wire::{Packet, SessionEnd, WireConfig, WireError};
use imcore::{
    Channel, DeviceFlag, DeviceLevel, Directory, DisconnectReason, MemoryDirectory, Permission,
    ReasonCode, Role, SendRequest, Uid,
};

mod common;

use common::*;

/// A directory whose check of one sender's sends waits for a permit.
#[derive(Debug)]
struct GatedDirectory {
    inner: Arc<MemoryDirectory>,
    gated: Uid,
    gate: tokio::sync::Semaphore,
    entered: tokio::sync::Notify,
}

#[async_trait]
impl Directory for GatedDirectory {
    async fn subscribers(&self, channel: &Channel) -> imcore::Result<Arc<[Uid]>> {
        self.inner.subscribers(channel).await
    }
    async fn check_send(&self, sender: &Uid, channel: &Channel) -> imcore::Result<Permission> {
        if *sender == self.gated {
            self.entered.notify_one();
            let _permit = self.gate.acquire().await.expect("gate open");
        }
        self.inner.check_send(sender, channel).await
    }
    async fn check_read(&self, reader: &Uid, channel: &Channel) -> imcore::Result<Permission> {
        self.inner.check_read(reader, channel).await
    }
    async fn channels_of(&self, uid: &Uid) -> imcore::Result<Vec<Channel>> {
        self.inner.channels_of(uid).await
    }
    async fn role(&self, channel: &Channel, uid: &Uid) -> imcore::Result<Option<Role>> {
        self.inner.role(channel, uid).await
    }
}

/// Long enough that only a stuck connection reaches it.
const PATIENCE: Duration = Duration::from_secs(10);

async fn next_within(c: &mut Client) -> Packet {
    tokio::time::timeout(PATIENCE, c.next())
        .await
        .expect("the connection wrote nothing")
        .expect("the connection closed")
}

/// A world whose directory holds alice's sends at its gate.
fn gated_world() -> (World, Arc<GatedDirectory>) {
    let mut w = world();
    let directory = Arc::new(GatedDirectory {
        inner: Arc::new(MemoryDirectory::new()),
        gated: uid_of("alice"),
        gate: tokio::sync::Semaphore::new(0),
        entered: tokio::sync::Notify::new(),
    });
    w.hub = imcore::Hub::builder()
        .directory(directory.clone())
        .build()
        .unwrap();
    w.server = imcore::wire::WireServer::new(w.hub.clone(), w.tokens.clone());
    (w, directory)
}

#[tokio::test]
async fn a_connection_waiting_for_its_own_send_still_receives_what_others_send() {
    let (w, directory) = gated_world();
    let mut alice = Client::open(&w.server, 16);
    alice.login("alice", WEB).await;
    let mut bob = Client::open(&w.server, 16);
    bob.login("bob", WEB).await;

    // Alice's send waits in the directory...
    let held = alice.sealed_send(1, "bob", 1, "held");
    alice.packet(&Packet::Send(held));
    directory.entered.notified().await;
    // ...while bob's reaches her.
    let to_alice = bob.sealed_send(1, "alice", 1, "hello alice");
    bob.packet(&Packet::Send(to_alice));
    match next_within(&mut bob).await {
        Packet::Sendack(ack) => assert_eq!(ack.reason, ReasonCode::SUCCESS),
        other => panic!("bob expected his SENDACK, got {other:?}"),
    }
    match next_within(&mut alice).await {
        Packet::Recv(recv) => assert_eq!(alice.open_recv(&recv), "hello alice"),
        other => panic!("alice expected bob's message before her own ack, got {other:?}"),
    }
    // Her own send then completes and is answered.
    directory.gate.add_permits(1);
    match next_within(&mut alice).await {
        Packet::Sendack(ack) => {
            assert_eq!(ack.reason, ReasonCode::SUCCESS);
            assert_eq!(ack.client_seq, 1);
        }
        other => panic!("alice expected her SENDACK, got {other:?}"),
    }
    match next_within(&mut bob).await {
        Packet::Recv(recv) => assert_eq!(bob.open_recv(&recv), "held"),
        other => panic!("bob expected alice's message, got {other:?}"),
    }
}

#[tokio::test]
async fn a_kick_answers_the_send_the_hub_had_taken_before_its_disconnect() {
    let (w, directory) = gated_world();
    let mut alice = Client::open(&w.server, 16);
    alice.login("alice", WEB).await;
    alice.packet(&Packet::Send(alice.sealed_send(1, "bob", 1, "held")));
    directory.entered.notified().await;

    // Kicked while her send is in the hub: the kicked client will not
    // reconnect to send it again, so its answer must come first.
    assert_eq!(w.hub.kick(&uid_of("alice"), None), 1);
    // The session, woken by the kick, runs before this test goes on (one
    // thread): it sees the kick while the send is still held.
    tokio::task::yield_now().await;
    directory.gate.add_permits(1);
    match next_within(&mut alice).await {
        Packet::Sendack(ack) => assert_eq!(ack.client_seq, 1),
        other => panic!("expected the SENDACK before the DISCONNECT, got {other:?}"),
    }
    match next_within(&mut alice).await {
        Packet::Disconnect(d) => assert_eq!(d.reason, ReasonCode::CONNECT_KICK),
        other => panic!("expected the DISCONNECT, got {other:?}"),
    }
    assert_eq!(
        alice.end().await.unwrap(),
        SessionEnd::Disconnected(DisconnectReason::Kicked)
    );
}

#[tokio::test]
async fn sends_from_one_connection_are_stored_in_the_order_they_were_sent() {
    let w = world();
    let mut alice = Client::open(&w.server, 64);
    alice.login("alice", WEB).await;
    // Many SENDs in one chunk, all read ahead of their answers.
    let mut chunk = Vec::new();
    for seq in 1..=40u32 {
        let send = alice.sealed_send(seq, "bob", 1, &format!("m{seq}"));
        chunk.extend_from_slice(&Packet::Send(send).to_bytes().unwrap());
    }
    alice.raw(&chunk);
    let mut acks = Vec::new();
    while acks.len() < 40 {
        match next_within(&mut alice).await {
            Packet::Sendack(ack) => acks.push((ack.client_seq, ack.message_seq)),
            other => panic!("expected SENDACKs, got {other:?}"),
        }
    }
    let expected: Vec<(u32, u32)> = (1..=40).map(|s| (s, s)).collect();
    assert_eq!(acks, expected, "answered in order, seqs in the order sent");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_and_fifty_beside_it_get_everything() {
    const READERS: usize = 50;
    const MESSAGES: usize = 300;
    // The default queue: a burst from a sender that never yields (this
    // test's loop) must not look like a slow client. The one that does not
    // read is closed by the write timeout.
    let w = world_with(WireConfig::default().write_timeout(Duration::from_millis(200)));
    let mut members = Vec::new();
    for i in 0..=READERS {
        let name = if i == READERS {
            "slow".to_string()
        } else {
            format!("r{i}")
        };
        w.tokens.set(
            uid_of(&name),
            DeviceFlag::Web,
            format!("{name}-token"),
            DeviceLevel::Master,
        );
        members.push(name);
    }
    let group = Channel::group("crowd").unwrap();
    w.directory.create_channel(
        &group,
        &uid_of("r0"),
        members.iter().map(|m| uid_of(m)).collect::<Vec<_>>(),
    );
    let mut slow = Client::open(&w.server, 1);
    slow.login("slow", WEB).await;
    let mut readers = Vec::new();
    for name in &members[..READERS] {
        let mut c = Client::open(&w.server, 16);
        c.login(name, WEB).await;
        readers.push(tokio::spawn(async move {
            let mut seqs = Vec::with_capacity(MESSAGES);
            while seqs.len() < MESSAGES {
                match next_within(&mut c).await {
                    Packet::Recv(recv) => seqs.push(recv.message_seq),
                    other => panic!("expected RECVs, got {other:?}"),
                }
            }
            seqs
        }));
    }
    for i in 0..MESSAGES {
        let request = SendRequest::new(uid_of("r0"), group.clone(), format!("{i}"));
        w.hub.send(request).await.unwrap();
    }
    let expected: Vec<u32> = (1..=MESSAGES as u32).collect();
    for r in readers {
        assert_eq!(
            r.await.unwrap(),
            expected,
            "every message once, in seq order"
        );
    }
    let end = tokio::time::timeout(PATIENCE, slow.end())
        .await
        .expect("the client that does not read was never closed");
    assert!(
        matches!(
            end,
            Ok(SessionEnd::Disconnected(DisconnectReason::SlowConsumer))
                | Err(WireError::WriteTimeout)
        ),
        "{end:?}"
    );
    assert!(w.hub.online_devices(&uid_of("slow")).is_empty());
}

#[tokio::test]
async fn the_server_counts_logins_refusals_and_open_connections() {
    let w = world();
    let mut alice = Client::open(&w.server, 16);
    alice.login("alice", WEB).await;
    let mut intruder = Client::open(&w.server, 16);
    let connect = intruder.connect_packet("bob", "a wrong token", WEB);
    intruder.packet(&Packet::Connect(connect));
    assert_eq!(intruder.connack().await.reason, ReasonCode::AUTH_FAIL);
    assert_eq!(
        intruder.end().await.unwrap(),
        SessionEnd::Refused(ReasonCode::AUTH_FAIL)
    );
    let stats = w.server.stats();
    assert_eq!((stats.logins, stats.connections), (1, 1), "{stats:?}");
    assert_eq!(stats.refusals, vec![(ReasonCode::AUTH_FAIL, 1)]);
    alice.hang_up();
    assert_eq!(alice.end().await.unwrap(), SessionEnd::ClientClosed);
    assert_eq!(w.server.stats().connections, 0);
}
