//! What WuKongIM's clients notice at the byte level, pinned against the
//! wire server: a SENDACK's header flags, and the setting byte and topic
//! that a SEND gives its RECVs and its stored message. (Reason 9 for a
//! message key that does not verify, and no red dot on the sender's own
//! devices, are pinned in `wire_server.rs` beside the tests they extend.)

use imcore::store::Page;
use imcore::wire::{Packet, Setting};
use imcore::{Channel, Flags, ReasonCode};

mod common;

use common::*;

#[tokio::test]
async fn a_sendack_carries_the_sends_header_flags() {
    let w = world();
    let mut alice = Client::open(&w.server, 16);
    alice.login("alice", WEB).await;
    // red_dot (header 0x32 → SENDACK 0x42), red_dot with no_persist, none,
    // and a refused SEND (a forged key): each SENDACK has the SEND's flags.
    let cases = [
        (0b0010, false),
        (0b0011, false),
        (0b0000, false),
        (0b1010, true),
    ];
    for (i, (bits, forged)) in cases.into_iter().enumerate() {
        let seq = i as u32 + 1;
        let mut send = alice.sealed_send(seq, "bob", 1, "x");
        send.flags = Flags::from_bits(bits);
        send.msg_key = match forged {
            true => "0".repeat(32),
            false => alice.cipher().send_msg_key(&send).unwrap(),
        };
        alice.packet(&Packet::Send(send));
        let ack = alice.sendack().await;
        assert_eq!(ack.client_seq, seq);
        assert_eq!(ack.flags.bits(), bits, "SENDACK {seq}'s flags");
        let frame = Packet::Sendack(ack).to_bytes().unwrap();
        assert_eq!(frame[0], 0x40 | bits, "SENDACK {seq}'s header byte");
    }
}

#[tokio::test]
async fn setting_and_topic_travel_with_the_message_and_are_stored() {
    let w = world();
    let mut alice = Client::open(&w.server, 16);
    alice.login("alice", WEB).await;
    let mut bob = Client::open(&w.server, 16);
    bob.login("bob", WEB).await;

    let mut send = alice.sealed_send(1, "bob", 1, "read me");
    send.setting = Setting(Setting::RECEIPT | Setting::TOPIC);
    send.topic = Some("orders".into());
    send.msg_key = alice.cipher().send_msg_key(&send).unwrap();
    alice.packet(&Packet::Send(send));
    assert_eq!(alice.sendack().await.reason, ReasonCode::SUCCESS);
    let got = bob.recv().await;
    assert_eq!(bob.open_recv(&got), "read me");
    assert_eq!(got.setting, Setting(Setting::RECEIPT | Setting::TOPIC));
    assert_eq!(got.topic.as_deref(), Some("orders"));

    // A receipt without a topic: the RECV has the receipt bit only.
    let mut send = alice.sealed_send(2, "bob", 1, "no topic");
    send.setting = Setting(Setting::RECEIPT);
    send.msg_key = alice.cipher().send_msg_key(&send).unwrap();
    alice.packet(&Packet::Send(send));
    alice.sendack().await;
    let got = bob.recv().await;
    assert_eq!((got.setting, got.topic), (Setting(Setting::RECEIPT), None));

    let stored = w
        .hub
        .sync_channel(
            &uid_of("bob"),
            &Channel::person(&uid_of("alice"), &uid_of("bob")),
            Page::forward(1, 10),
        )
        .await
        .unwrap();
    let kept: Vec<_> = stored
        .iter()
        .map(|m| (m.setting, m.topic.as_deref()))
        .collect();
    assert_eq!(
        kept,
        [
            (Setting(Setting::RECEIPT), Some("orders")),
            (Setting(Setting::RECEIPT), None)
        ]
    );
}
