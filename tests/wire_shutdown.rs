//! A hub's shutdown seen from a served connection: no one is logged out.
//! The connection gets what was queued for it and is then closed without a
//! DISCONNECT (after which WuKongIM's clients would stop reconnecting).

use std::time::Duration;

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
