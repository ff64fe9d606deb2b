//! A hub's shutdown seen from a served connection: no one is logged out.
//! The connection gets what was queued for it and is then closed without a
//! DISCONNECT (after which WuKongIM's clients would stop reconnecting);
//! a SEND the closing hub refused is left unanswered, for the client to
//! send again once it has reconnected.

use std::time::Duration;

use imcore::store::Page;
use imcore::wire::{Packet, SessionEnd};
use imcore::{Channel, DisconnectReason, SendRequest};

mod common;

use common::*;

/// Long enough that only a stuck connection reaches it.
const PATIENCE: Duration = Duration::from_secs(10);

/// Every packet the server writes until it closes the connection.
async fn rest_of(c: &mut Client) -> Vec<Packet> {
    let mut packets = Vec::new();
    while let Some(packet) = tokio::time::timeout(PATIENCE, c.next())
        .await
        .expect("the connection was never closed")
    {
        packets.push(packet);
    }
    packets
}

#[tokio::test]
async fn a_shutdown_writes_what_was_queued_then_closes_without_disconnect() {
    let w = world();
    let mut bob = Client::open(&w.server, 16);
    bob.login("bob", WEB).await;
    let mut alice = Client::open(&w.server, 16);
    alice.login("alice", WEB).await;
    let to_bob = Channel::person(&uid_of("alice"), &uid_of("bob"));
    w.hub
        .send(SendRequest::new(uid_of("alice"), to_bob, "last words"))
        .await
        .unwrap();

    w.hub.shutdown().await.unwrap();

    // Each (the sender's own device too) gets the message, then the close.
    for mut c in [bob, alice] {
        let rest = rest_of(&mut c).await;
        let [Packet::Recv(recv)] = &rest[..] else {
            panic!("expected the RECV and no DISCONNECT, got {rest:?}")
        };
        assert_eq!(c.open_recv(recv), "last words");
        assert_eq!(
            c.end().await.unwrap(),
            SessionEnd::Disconnected(DisconnectReason::Shutdown)
        );
    }
    assert_eq!(w.hub.connection_count(), 0);
}

#[tokio::test]
async fn a_send_the_closing_hub_refuses_is_left_for_the_client_to_send_again() {
    let w = world();
    let mut alice = Client::open(&w.server, 16);
    alice.login("alice", WEB).await;
    w.hub.close();
    // The SEND and a PING in one chunk: the PING is answered at once, the
    // SEND goes to the hub, which refuses it.
    let mut chunk = Packet::Send(alice.sealed_send(1, "bob", 1, "too late"))
        .to_bytes()
        .unwrap()
        .to_vec();
    chunk.extend_from_slice(&Packet::Ping.to_bytes().unwrap());
    alice.raw(&chunk);
    assert_eq!(alice.next().await, Some(Packet::Pong));

    w.hub.shutdown().await.unwrap();

    // No SENDACK (a refusal would make the client drop the message) and
    // no DISCONNECT: it reconnects and sends it again.
    assert_eq!(rest_of(&mut alice).await, []);
    assert_eq!(
        alice.end().await.unwrap(),
        SessionEnd::Disconnected(DisconnectReason::Shutdown)
    );
    let history = w
        .hub
        .sync_channel(
            &uid_of("alice"),
            &Channel::person(&uid_of("alice"), &uid_of("bob")),
            Page::forward(1, 10),
        )
        .await
        .unwrap();
    assert!(history.is_empty(), "nothing was stored: {history:?}");
}
