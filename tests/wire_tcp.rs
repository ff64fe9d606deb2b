//! The wire server over real TCP, as WuKongIM's native SDKs connect (its
//! port 5100): login, sends, deliveries and acknowledgements, with every
//! packet split and coalesced across reads at random places.

use imcore::wire::{Packet, RecvackPacket};
use imcore::{ReasonCode, SendRequest};

mod common;

use common::*;

const MESSAGES: u32 = 60;

#[tokio::test]
async fn a_whole_session_over_tcp_with_packets_split_and_coalesced() {
    for seed in [1, 7, 0x9E37_79B9, 12_345_678_901] {
        session(seed).await;
    }
}

async fn session(seed: u64) {
    let w = world();
    let mut alice = Client::tcp(&w.server, seed).await;
    alice.login("alice", WEB).await;
    let mut bob = Client::tcp(&w.server, seed.rotate_left(17)).await;
    bob.login("bob", WEB).await;

    // Every SEND queued at once: the writer coalesces and cuts them.
    let texts: Vec<String> = (1..=MESSAGES)
        .map(|i| format!(r#"{{"type":1,"content":"message {i} of {seed}"}}"#))
        .collect();
    for (i, text) in texts.iter().enumerate() {
        alice.packet(&Packet::Send(alice.sealed_send(
            i as u32 + 1,
            "bob",
            1,
            text,
        )));
    }
    for seq in 1..=MESSAGES {
        match alice.next().await {
            Some(Packet::Sendack(ack)) => assert_eq!(
                (ack.client_seq, ack.message_seq, ack.reason),
                (seq, seq, ReasonCode::SUCCESS),
                "seed {seed}"
            ),
            other => panic!("seed {seed}: expected SENDACK {seq}, got {other:?}"),
        }
    }
    for (i, text) in texts.iter().enumerate() {
        let got = bob.recv().await;
        assert_eq!(got.message_seq, i as u32 + 1, "seed {seed}: in order");
        assert_eq!(&bob.open_recv(&got), text, "seed {seed}");
        bob.packet(&Packet::Recvack(RecvackPacket {
            flags: got.flags,
            message_id: got.message_id,
            message_seq: got.message_seq,
        }));
    }

    // A command, acknowledged by bob's master device: consumed.
    let command = SendRequest::command_to(uid_of("system"), vec![uid_of("bob")], "cmd");
    w.hub.send(command).await.unwrap();
    let got = bob.recv().await;
    assert!(got.flags.sync_once, "seed {seed}");
    bob.packet(&Packet::Recvack(RecvackPacket {
        flags: got.flags,
        message_id: got.message_id,
        message_seq: got.message_seq,
    }));
    bob.packet(&Packet::Ping); // handled after every RECVACK before it
    assert_eq!(bob.next().await, Some(Packet::Pong), "seed {seed}");
    let left = w.hub.sync_commands(&uid_of("bob"), 0, 10).await.unwrap();
    assert!(left.is_empty(), "seed {seed}: the RECVACK consumed it");
    assert_eq!(w.server.stats().logins, 2, "seed {seed}");
}
