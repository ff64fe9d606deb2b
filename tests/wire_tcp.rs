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

/// The bytes WuKongIMGoProto v1.2.3 encodes for a CONNECT at version 5
/// (uid "live", token "live-token", web, key the Curve25519 base point):
/// `connect_live` at version 5 in `tests/fixtures/wkproto/known_answers.json`.
fn go_connect_v5() -> Vec<u8> {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/wkproto/known_answers.json")).unwrap();
    let case = doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "connect_live" && c["version"] == 5)
        .expect("connect_live v5 in the fixture");
    let hex = case["hex"].as_str().unwrap();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Reads one whole frame from `tcp`.
async fn read_frame(tcp: &mut tokio::net::TcpStream, buf: &mut bytes::BytesMut) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(len) = imcore::wire::frame_len(buf, 1 << 20).unwrap() {
            return buf.split_to(len).to_vec();
        }
        assert!(tcp.read_buf(buf).await.unwrap() > 0, "the server closed");
    }
}

#[tokio::test]
async fn a_go_client_s_version_5_connect_gets_a_version_5_connack_over_tcp() {
    use imcore::wire::{negotiate_version, SubPacket};
    use imcore::{DeviceFlag, DeviceLevel};
    use tokio::io::AsyncWriteExt;

    let w = world();
    w.tokens.set(
        uid_of("live"),
        DeviceFlag::Web,
        "live-token",
        DeviceLevel::Master,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = w.server.clone();
    let served = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        server.serve_stream(tcp).await
    });

    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&go_connect_v5()).await.unwrap();
    let mut buf = bytes::BytesMut::new();
    let frame = read_frame(&mut tcp, &mut buf).await;

    // Read by hand, as WuKongIMGoProto's decodeConnack at version 5 does:
    // header 0x21 (CONNACK, server version follows), the remaining length,
    // the server version, time diff i64, reason, key, salt, node id u64.
    assert_eq!(frame[0], 0x21);
    let body = &frame[2..];
    assert_eq!(usize::from(frame[1]), body.len());
    assert_eq!(body[0], 5, "server version");
    assert_eq!(body[9], ReasonCode::SUCCESS.as_u8());
    let key_len = usize::from(u16::from_be_bytes([body[10], body[11]]));
    let salt_at = 12 + key_len;
    let salt_len = usize::from(u16::from_be_bytes([body[salt_at], body[salt_at + 1]]));
    assert_eq!(salt_len, 16);
    let node_at = salt_at + 2 + salt_len;
    assert_eq!(body.len(), node_at + 8, "the node id ends the packet");
    let node = u64::from_be_bytes(body[node_at..].try_into().unwrap());
    assert_eq!(node, u64::from(w.hub.config().node_id));

    // And the crate's decoder at 5 reads the same.
    let (packet, _) = Packet::decode_at(&frame, 1 << 20, negotiate_version(5)).unwrap();
    let Packet::Connack(connack) = packet else {
        panic!("expected CONNACK, got {packet:?}")
    };
    assert_eq!(
        (connack.server_version, connack.reason, connack.node_id),
        (Some(5), ReasonCode::SUCCESS, node)
    );
    assert_eq!(w.hub.online_devices(&uid_of("live")).len(), 1);

    // The session goes on at 5: a SUB is answered with a SUBACK, a PING
    // with a PONG.
    let sub = Packet::Sub(SubPacket {
        setting: 0,
        client_msg_no: "s-1".into(),
        channel_id: "c1".into(),
        channel_type: 2,
        action: 0,
        param: String::new(),
    });
    tcp.write_all(&sub.to_bytes_at(5).unwrap()).await.unwrap();
    tcp.write_all(&[0x70]).await.unwrap();
    let suback = read_frame(&mut tcp, &mut buf).await;
    assert!(matches!(
        Packet::decode_at(&suback, 1 << 20, 5).unwrap().0,
        Packet::Suback(_)
    ));
    assert_eq!(read_frame(&mut tcp, &mut buf).await, [0x80]);
    drop(tcp);
    assert!(served.await.unwrap().is_ok());
}
