//! The wire server, driven by a Rust client speaking the protocol over
//! in-memory channels: login, encryption, send, receive, acknowledge,
//! kicks, refusals and malformed input.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use imcore::store::Page;
use imcore::wire::{
    ConnectPacket, Packet, RecvPacket, RecvackPacket, SessionEnd, SubPacket, TokenTable,
    WireConfig, WireError, WireServer,
};
use imcore::{Channel, DeviceFlag, DeviceLevel, ReasonCode, SendRequest};

mod common;

use common::*;

#[tokio::test]
async fn login_answers_with_a_key_a_salt_and_the_clock_difference() {
    let w = world();
    let mut c = Client::open(&w.server, 16);
    let connack = c.login("alice", WEB).await;
    assert_eq!(connack.time_diff, 1500);
    assert_eq!(connack.salt.len(), 16);
    assert_eq!(w.hub.online_devices(&uid_of("alice")).len(), 1);
    c.packet(&Packet::Ping);
    assert_eq!(c.next().await, Some(Packet::Pong));
}

#[tokio::test]
async fn a_wrong_token_is_refused_with_reason_2_and_the_connection_closed() {
    let w = world();
    let mut c = Client::open(&w.server, 16);
    let connect = c.connect_packet("alice", "guess", WEB);
    c.packet(&Packet::Connect(connect));
    let connack = c.connack().await;
    assert_eq!(connack.reason, ReasonCode::AUTH_FAIL);
    assert!(connack.server_key.is_empty());
    assert_eq!(c.next().await, None, "the server closes the connection");
    assert_eq!(
        c.end().await.unwrap(),
        SessionEnd::Refused(ReasonCode::AUTH_FAIL)
    );
    assert!(w.hub.online_devices(&uid_of("alice")).is_empty());
}

#[tokio::test]
async fn refusals_carry_wukongim_reason_codes() {
    let w = world();
    type Tweak = fn(&mut ConnectPacket);
    let cases: [(Tweak, ReasonCode); 4] = [
        (|c| c.client_key.clear(), ReasonCode::CLIENT_KEY_IS_EMPTY),
        (|c| c.device_flag = 99, ReasonCode::AUTH_FAIL),
        (|c| c.uid = "a@b".into(), ReasonCode::AUTH_FAIL),
        (
            |c| c.client_key = "bm90IGEga2V5".into(),
            ReasonCode::AUTH_FAIL,
        ),
    ];
    for (tweak, reason) in cases {
        let mut c = Client::open(&w.server, 16);
        let mut connect = c.connect_packet("alice", "alice-token", WEB);
        tweak(&mut connect);
        c.packet(&Packet::Connect(connect));
        assert_eq!(c.connack().await.reason, reason);
        assert_eq!(c.end().await.unwrap(), SessionEnd::Refused(reason));
    }
}

#[tokio::test]
async fn a_person_message_is_acked_and_received_decrypted_by_every_other_device() {
    let w = world();
    let mut alice = Client::open(&w.server, 16);
    alice.login("alice", WEB).await;
    let mut alice_pc = Client::open(&w.server, 16);
    alice_pc.login("alice", PC).await;
    let mut bob = Client::open(&w.server, 16);
    bob.login("bob", WEB).await;

    let text = r#"{"type":1,"content":"你好 bob"}"#;
    alice.packet(&Packet::Send(alice.sealed_send(7, "bob", 1, text)));
    let Some(Packet::Sendack(ack)) = alice.next().await else {
        panic!("expected SENDACK")
    };
    assert_eq!(
        (ack.client_seq, ack.message_seq, ack.reason),
        (7, 1, ReasonCode::SUCCESS)
    );

    let got = bob.recv().await;
    assert_eq!(bob.open_recv(&got), text);
    assert_eq!(
        (got.from_uid.as_str(), got.channel_id.as_str()),
        ("alice", "alice")
    );
    assert_eq!((got.message_id, got.message_seq), (ack.message_id, 1));
    assert_eq!(got.timestamp, (NOW_MS / 1000) as i32);
    assert!(got.flags.red_dot);

    // The sender's other device sees the channel by bob's uid, and no red
    // dot: WuKongIM clears it for the sender's own devices.
    let mine = alice_pc.recv().await;
    assert_eq!(alice_pc.open_recv(&mine), text);
    assert_eq!(mine.channel_id, "bob");
    assert!(!mine.flags.red_dot, "red dot on the sender's own device");

    let stored = w
        .hub
        .sync_channel(
            &uid_of("bob"),
            &Channel::person(&uid_of("alice"), &uid_of("bob")),
            Page::forward(1, 10),
        )
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].payload.as_ref(), text.as_bytes());
}

#[tokio::test]
async fn the_sending_connection_never_receives_its_own_message() {
    let w = world();
    let mut alice = Client::open(&w.server, 16);
    alice.login("alice", WEB).await;
    let mut alice_pc = Client::open(&w.server, 16);
    alice_pc.login("alice", PC).await;
    let mut bob = Client::open(&w.server, 16);
    bob.login("bob", WEB).await;

    alice.packet(&Packet::Send(alice.sealed_send(1, "bob", 1, "mine")));
    let mine = alice.sendack().await;
    assert_eq!(mine.reason, ReasonCode::SUCCESS);
    // Everyone else has it: bob, and alice's other device.
    for c in [&mut bob, &mut alice_pc] {
        let got = c.recv().await;
        assert_eq!(
            (got.message_id, c.open_recv(&got).as_str()),
            (mine.message_id, "mine")
        );
    }
    // The hub delivers to alice's connections while handling her SEND,
    // before the SENDACK: anything meant for this connection would be
    // queued ahead of a message that is sent only now.
    bob.packet(&Packet::Send(bob.sealed_send(1, "alice", 1, "yours")));
    let yours = bob.sendack().await;
    assert_eq!(yours.reason, ReasonCode::SUCCESS);
    let next = alice.recv().await;
    assert_eq!(
        (
            next.message_id,
            next.from_uid.as_str(),
            alice.open_recv(&next).as_str()
        ),
        (yours.message_id, "bob", "yours"),
        "the sender's own connection got its own message back"
    );
    alice.packet(&Packet::Ping);
    assert_eq!(alice.next().await, Some(Packet::Pong), "and nothing else");
}

#[tokio::test]
async fn a_send_with_an_empty_message_key_is_refused_and_goes_nowhere() {
    let w = world();
    let mut alice = Client::open(&w.server, 16);
    alice.login("alice", WEB).await;
    let mut bob = Client::open(&w.server, 16);
    bob.login("bob", WEB).await;

    // What a wrong key gets...
    let mut forged = alice.sealed_send(1, "bob", 1, "forged");
    forged.msg_key = "0".repeat(32);
    alice.packet(&Packet::Send(forged));
    let wrong = alice.sendack().await;
    assert_eq!(
        (wrong.client_seq, wrong.reason),
        (1, ReasonCode::PAYLOAD_DECODE_ERROR)
    );
    // ...an empty key gets too: no key is no proof either.
    let mut keyless = alice.sealed_send(2, "bob", 1, "keyless");
    keyless.msg_key = String::new();
    alice.packet(&Packet::Send(keyless));
    let empty = alice.sendack().await;
    assert_eq!(
        (
            empty.client_seq,
            empty.reason,
            empty.message_id,
            empty.message_seq
        ),
        (2, ReasonCode::PAYLOAD_DECODE_ERROR, 0, 0)
    );

    // Nothing was delivered: the next thing bob gets is the next good
    // message, and it takes seq 1 of the channel.
    alice.packet(&Packet::Send(alice.sealed_send(3, "bob", 1, "good")));
    let good = alice.sendack().await;
    assert_eq!((good.reason, good.message_seq), (ReasonCode::SUCCESS, 1));
    let got = bob.recv().await;
    assert_eq!(
        (got.message_id, bob.open_recv(&got).as_str()),
        (good.message_id, "good")
    );
    // Nothing was stored but the good one.
    let stored = w
        .hub
        .sync_channel(
            &uid_of("bob"),
            &Channel::person(&uid_of("alice"), &uid_of("bob")),
            Page::forward(1, 10),
        )
        .await
        .unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|m| m.payload.as_ref())
            .collect::<Vec<_>>(),
        vec![b"good".as_slice()]
    );
}

#[tokio::test]
async fn a_bad_message_key_or_payload_is_refused_with_reason_9_and_nothing_is_stored() {
    let w = world();
    let mut alice = Client::open(&w.server, 16);
    alice.login("alice", WEB).await;

    let mut forged = alice.sealed_send(1, "bob", 1, r#"{"type":1}"#);
    forged.msg_key = "0".repeat(32);
    alice.packet(&Packet::Send(forged));
    let mut garbled = alice.sealed_send(2, "bob", 1, "x");
    garbled.payload = Bytes::from_static(b"bm90IGNpcGhlcnRleHQ="); // base64, not AES
    garbled.msg_key = alice.cipher().send_msg_key(&garbled).unwrap();
    alice.packet(&Packet::Send(garbled));

    // WuKongIM's server answers a message key that does not verify with
    // 9, not 8.
    for (seq, reason) in [
        (1, ReasonCode::PAYLOAD_DECODE_ERROR),
        (2, ReasonCode::PAYLOAD_DECODE_ERROR),
    ] {
        let Some(Packet::Sendack(ack)) = alice.next().await else {
            panic!("expected SENDACK")
        };
        assert_eq!(
            (ack.client_seq, ack.reason, ack.message_id),
            (seq, reason, 0)
        );
    }
    let stored = w
        .hub
        .sync_channel(
            &uid_of("alice"),
            &Channel::person(&uid_of("alice"), &uid_of("bob")),
            Page::forward(1, 10),
        )
        .await
        .unwrap();
    assert!(stored.is_empty());
}

#[tokio::test]
async fn a_send_the_hub_refuses_gets_the_hubs_reason_code() {
    let w = world();
    let group = Channel::group("g1").unwrap();
    w.directory.create_channel(&group, &uid_of("bob"), []);
    let mut alice = Client::open(&w.server, 16);
    alice.login("alice", WEB).await;
    alice.packet(&Packet::Send(alice.sealed_send(1, "g1", 2, "{}")));
    alice.packet(&Packet::Send(alice.sealed_send(2, "nowhere", 0, "{}")));
    let reasons = [
        ReasonCode::SUBSCRIBER_NOT_EXIST,
        ReasonCode::NOT_SUPPORT_CHANNEL_TYPE,
    ];
    for (seq, reason) in (1..).zip(reasons) {
        let Some(Packet::Sendack(ack)) = alice.next().await else {
            panic!("expected SENDACK")
        };
        assert_eq!((ack.client_seq, ack.reason), (seq, reason));
    }
}

#[tokio::test]
async fn packets_split_across_chunks_and_batched_in_one_are_all_read() {
    let w = world();
    let mut c = Client::open(&w.server, 16);
    let connect = Packet::Connect(c.connect_packet("alice", "alice-token", WEB))
        .to_bytes()
        .unwrap();
    // CONNECT in three pieces, the last one carrying two PINGs with it.
    let (a, rest) = connect.split_at(1);
    let (b, d) = rest.split_at(rest.len() / 2);
    c.raw(a);
    c.raw(b);
    let mut tail = BytesMut::from(d);
    tail.extend_from_slice(&[0x70, 0x70]);
    c.raw(&tail);
    assert_eq!(c.connack().await.reason, ReasonCode::SUCCESS);
    assert_eq!(c.next().await, Some(Packet::Pong));
    assert_eq!(c.next().await, Some(Packet::Pong));
}

#[tokio::test]
async fn a_second_master_login_kicks_the_first_with_disconnect_12() {
    let w = world();
    let mut first = Client::open(&w.server, 16);
    first.login("alice", WEB).await;
    let mut second = Client::open(&w.server, 16);
    second.login("alice", WEB).await;
    let Some(Packet::Disconnect(d)) = first.next().await else {
        panic!("expected DISCONNECT")
    };
    assert_eq!(d.reason, ReasonCode::CONNECT_KICK);
    assert_eq!(
        first.end().await.unwrap(),
        SessionEnd::Disconnected(imcore::DisconnectReason::Kicked)
    );
    assert_eq!(w.hub.online_devices(&uid_of("alice")).len(), 1);
    second.packet(&Packet::Ping);
    assert_eq!(second.next().await, Some(Packet::Pong));
}

#[tokio::test]
async fn a_masters_recvack_consumes_a_command_and_a_slaves_does_not() {
    let w = world();
    let mut bob_app = Client::open(&w.server, 16);
    bob_app.login("bob", APP).await; // slave
    let command = r#"{"type":99,"cmd":"friendRequest"}"#;
    let send = SendRequest::command_to(uid_of("system"), vec![uid_of("bob")], command);
    w.hub.send(send.clone()).await.unwrap();
    let got = bob_app.recv().await;
    assert!(got.flags.sync_once);
    assert_eq!(
        (got.message_seq, bob_app.open_recv(&got).as_str()),
        (0, command)
    );
    let ack = |r: &RecvPacket| {
        Packet::Recvack(RecvackPacket {
            flags: r.flags,
            message_id: r.message_id,
            message_seq: r.message_seq,
        })
    };
    bob_app.packet(&ack(&got));
    bob_app.packet(&Packet::Ping); // the ack is handled before the PING
    assert_eq!(bob_app.next().await, Some(Packet::Pong));
    assert_eq!(
        w.hub
            .sync_commands(&uid_of("bob"), 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    let mut bob_web = Client::open(&w.server, 16);
    bob_web.login("bob", WEB).await; // master
    w.hub
        .send(send.client_msg_no(imcore::ClientMsgNo::new("c2").unwrap()))
        .await
        .unwrap();
    let got = bob_web.recv().await;
    bob_web.packet(&ack(&got));
    bob_web.packet(&Packet::Ping);
    assert_eq!(bob_web.next().await, Some(Packet::Pong));
    let left = w.hub.sync_commands(&uid_of("bob"), 0, 10).await.unwrap();
    assert_eq!(left.len(), 1, "only the acknowledged command is consumed");
    assert_ne!(left[0].message.message_id.0 as i64, got.message_id);
}

#[tokio::test]
async fn sub_is_answered_with_reason_23() {
    let w = world();
    let mut c = Client::open(&w.server, 16);
    c.login("alice", WEB).await;
    c.packet(&Packet::Sub(SubPacket {
        setting: 0,
        client_msg_no: "s1".into(),
        channel_id: "live".into(),
        channel_type: 7,
        action: 0,
        param: String::new(),
    }));
    let Some(Packet::Suback(ack)) = c.next().await else {
        panic!("expected SUBACK")
    };
    assert_eq!(
        (ack.client_msg_no.as_str(), ack.reason),
        ("s1", ReasonCode::NOT_SUPPORT_CHANNEL_TYPE)
    );
}

#[tokio::test]
async fn garbage_after_login_ends_the_session_with_a_typed_error_and_unregisters() {
    let w = world();
    let mut c = Client::open(&w.server, 16);
    c.login("alice", WEB).await;
    c.raw(&[0xF0, 0x00]);
    assert!(matches!(c.end().await, Err(WireError::UnknownType(15))));
    assert!(w.hub.online_devices(&uid_of("alice")).is_empty());
}

#[tokio::test]
async fn a_first_packet_other_than_connect_is_a_protocol_error() {
    let w = world();
    let c = Client::open(&w.server, 16);
    c.packet(&Packet::Ping);
    assert!(matches!(c.end().await, Err(WireError::Unexpected(_))));
}

#[tokio::test]
async fn an_oversized_frame_is_refused_before_its_body_arrives() {
    let w = world_with(WireConfig::default().max_frame(1024));
    let mut c = Client::open(&w.server, 16);
    c.login("alice", WEB).await;
    // SEND declaring 10 MB; no body follows.
    c.raw(&[0x30, 0x80, 0xAD, 0xE2, 0x04]);
    assert!(matches!(
        c.end().await,
        Err(WireError::Oversized { max: 1024, .. })
    ));
}

#[tokio::test]
async fn a_client_hanging_up_ends_the_session_and_unregisters() {
    let w = world();
    let mut c = Client::open(&w.server, 16);
    c.login("alice", WEB).await;
    c.hang_up();
    assert_eq!(c.end().await.unwrap(), SessionEnd::ClientClosed);
    assert!(w.hub.online_devices(&uid_of("alice")).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_times_out() {
    let w = world_with(WireConfig::default().idle_timeout(Some(Duration::from_secs(30))));
    let mut c = Client::open(&w.server, 16);
    c.login("alice", WEB).await;
    assert_eq!(c.end().await.unwrap(), SessionEnd::TimedOut);
    assert!(w.hub.online_devices(&uid_of("alice")).is_empty());
}

#[tokio::test]
async fn a_client_that_does_not_read_is_dropped_as_a_slow_consumer_without_disconnect() {
    let w = world_with(WireConfig::default().queue(2));
    // The transport takes one frame; the hub's queue two messages.
    let mut bob = Client::open(&w.server, 1);
    bob.login("bob", WEB).await;
    let alice = uid_of("alice");
    let mut sent = 0;
    while !w.hub.online_devices(&uid_of("bob")).is_empty() {
        sent += 1;
        let request = SendRequest::new(
            alice.clone(),
            Channel::new(
                imcore::ChannelId::new("bob").unwrap(),
                imcore::ChannelType::PERSON,
            ),
            "{}",
        );
        w.hub.send(request).await.unwrap();
        assert!(sent < 100, "bob was never dropped");
        tokio::task::yield_now().await;
    }
    let mut frames = Vec::new();
    while let Some(p) = bob.next().await {
        frames.push(p);
    }
    assert!(
        frames.iter().all(|p| matches!(p, Packet::Recv(_))),
        "no DISCONNECT: the client should reconnect"
    );
    assert!(frames.len() < sent);
    assert_eq!(
        bob.end().await.unwrap(),
        SessionEnd::Disconnected(imcore::DisconnectReason::SlowConsumer)
    );
}

#[tokio::test]
async fn a_connection_whose_server_task_is_dropped_is_unregistered() {
    let w = world();
    let mut c = Client::open(&w.server, 16);
    c.login("alice", WEB).await;
    assert_eq!(w.hub.online_devices(&uid_of("alice")).len(), 1);
    c.task.abort();
    assert!(c.task.await.unwrap_err().is_cancelled());
    assert!(w.hub.online_devices(&uid_of("alice")).is_empty());
}

#[tokio::test]
async fn an_oversized_send_is_read_past_and_refused_with_a_sendack() {
    let w = world_with(WireConfig::default().max_frame(1024));
    let mut alice = Client::open(&w.server, 16);
    alice.login("alice", WEB).await;
    let big = format!(r#"{{"type":1,"content":"{}"}}"#, "x".repeat(4000));
    let frame = Packet::Send(alice.sealed_send(9, "bob", 1, &big))
        .to_bytes()
        .unwrap();
    assert!(frame.len() > 1024 + 5);
    // In pieces, the first too short even to hold the client seq.
    for piece in frame.chunks(3).take(2).chain(frame[6..].chunks(1000)) {
        alice.raw(piece);
    }
    let Some(Packet::Sendack(ack)) = alice.next().await else {
        panic!("expected SENDACK")
    };
    assert_eq!(
        (ack.client_seq, ack.reason),
        (9, ReasonCode::NOT_ALLOW_SEND)
    );
    // The connection goes on, and the next packet is read from where the
    // oversized one ended.
    alice.packet(&Packet::Send(alice.sealed_send(10, "bob", 1, "{}")));
    let Some(Packet::Sendack(ack)) = alice.next().await else {
        panic!("expected SENDACK")
    };
    assert_eq!((ack.client_seq, ack.reason), (10, ReasonCode::SUCCESS));
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_reads_is_given_up_after_the_write_timeout() {
    let w = world_with(WireConfig::default().write_timeout(Duration::from_secs(5)));
    let mut bob = Client::open(&w.server, 1);
    bob.login("bob", WEB).await;
    for i in 0..3 {
        let request = SendRequest::new(
            uid_of("alice"),
            Channel::new(
                imcore::ChannelId::new("bob").unwrap(),
                imcore::ChannelType::PERSON,
            ),
            format!("{{\"n\":{i}}}"),
        );
        w.hub.send(request).await.unwrap();
    }
    // Bob reads nothing more: the server's second write cannot complete.
    assert!(matches!(
        bob.task.await.unwrap(),
        Err(WireError::WriteTimeout)
    ));
    assert!(w.hub.online_devices(&uid_of("bob")).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_never_sends_connect_times_out() {
    let w = world();
    let c = Client::open(&w.server, 16);
    assert_eq!(c.end().await.unwrap(), SessionEnd::TimedOut);
}

#[tokio::test]
async fn the_host_can_log_a_user_out() {
    let w = world();
    let tokens = Arc::new(TokenTable::new());
    tokens.set(
        uid_of("alice"),
        DeviceFlag::Web,
        "alice-token",
        DeviceLevel::Master,
    );
    let server = WireServer::new(w.hub.clone(), tokens.clone());
    let mut web = Client::open(&server, 16);
    web.login("alice", WEB).await;

    assert!(tokens.remove(&uid_of("alice"), DeviceFlag::Web));
    assert_eq!(w.hub.kick(&uid_of("alice"), None), 1);
    let Some(Packet::Disconnect(d)) = web.next().await else {
        panic!("expected DISCONNECT")
    };
    assert_eq!(d.reason, ReasonCode::CONNECT_KICK);
    assert!(w.hub.online_devices(&uid_of("alice")).is_empty());

    let mut again = Client::open(&server, 16);
    let connect = again.connect_packet("alice", "alice-token", WEB);
    again.packet(&Packet::Connect(connect));
    assert_eq!(again.connack().await.reason, ReasonCode::AUTH_FAIL);
}

#[tokio::test]
async fn every_version_is_served_at_the_client_s_version_or_5() {
    // (asked, spoken): WuKongIM answers min(asked, 5) and refuses none.
    for (asked, spoken) in [
        (0u8, 0u8),
        (1, 1),
        (2, 2),
        (3, 3),
        (4, 4),
        (5, 5),
        (6, 5),
        (255, 5),
    ] {
        let w = world();
        let mut alice = Client::open(&w.server, 16);
        alice.speak(asked);
        let connack = alice.login("alice", WEB).await;
        // The server version comes first when the client asked above 3;
        // the node id (the hub's) is on the wire from version 4.
        let expected_server_version = (asked > 3).then_some(spoken);
        assert_eq!(connack.server_version, expected_server_version, "v{asked}");
        let node = u64::from(w.hub.config().node_id);
        assert_eq!(
            connack.node_id,
            if spoken >= 4 { node } else { 0 },
            "v{asked}"
        );

        let mut bob = Client::open(&w.server, 16);
        bob.speak(asked);
        bob.login("bob", WEB).await;
        let text = r#"{"type":1,"content":"hi"}"#;
        alice.packet(&Packet::Send(alice.sealed_send(1, "bob", 1, text)));
        let Some(Packet::Sendack(ack)) = alice.next().await else {
            panic!("v{asked}: expected SENDACK")
        };
        assert_eq!(ack.reason, ReasonCode::SUCCESS, "v{asked}");
        // The RECV is laid out as the session's version says: read at any
        // other layout it would not decode to these fields.
        let got = bob.recv().await;
        assert_eq!(bob.open_recv(&got), text, "v{asked}");
        assert_eq!((got.message_id, got.expire), (ack.message_id, 0));
        assert_eq!(got.from_uid, "alice");
    }
}

#[tokio::test]
async fn a_version_3_recv_is_not_a_version_2_one() {
    // The same delivery, read as version 2 by a client that asked for 3,
    // has 4 bytes (the expire) where version 2 has the client msg no's
    // length: the layouts differ, and the server wrote version 3's.
    let w = world();
    let mut alice = Client::open(&w.server, 16);
    alice.login("alice", WEB).await;
    let mut bob = Client::open(&w.server, 16);
    bob.speak(3);
    bob.login("bob", WEB).await;
    alice.packet(&Packet::Send(alice.sealed_send(1, "bob", 1, "{}")));
    assert!(matches!(alice.next().await, Some(Packet::Sendack(_))));
    let got = bob.recv().await;
    let v3 = Packet::Recv(got.clone()).to_bytes_at(3).unwrap();
    let v2 = Packet::Recv(got).to_bytes_at(2).unwrap();
    assert_eq!(v3.len(), v2.len() + 4);
    assert_ne!(
        Packet::decode_at(&v3, 1 << 20, 2).ok().map(|(p, _)| p),
        Packet::decode_at(&v3, 1 << 20, 3).ok().map(|(p, _)| p)
    );
}
