//! Known answers from WuKongIMGoProto v1.2.3, WuKongIM's own codec: every
//! packet at every protocol version 1 to 5, encoded and decoded by it
//! (`tests/fixtures/wkproto/known_answers.json`, whose README says how it
//! was made). imcore must write exactly those bytes from those fields, read
//! exactly those fields from those bytes, and (for SEND and RECV) agree on
//! the cipher: the payload opens to the cleartext, the message key checks.

#[path = "common/codec.rs"]
mod codec;

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};
use codec::{kat_secret, read_length, KAT_SALT, MAX};
use imcore::wire::{
    ConnackPacket, ConnectPacket, DisconnectPacket, EventPacket, Packet, RecvPacket, RecvackPacket,
    SendPacket, SendackPacket, SessionCipher, Setting, StreamInfo, SubPacket, SubackPacket,
    WireCodec,
};
use imcore::{Flags, ReasonCode};
use serde_json::Value;
use tokio_util::codec::{Decoder, Encoder};

const FIXTURE: &str = include_str!("fixtures/wkproto/known_answers.json");

struct Case {
    name: String,
    version: u8,
    kind: String,
    fields: Value,
    plain: Option<String>,
    bytes: Vec<u8>,
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn cases() -> Vec<Case> {
    let doc: Value = serde_json::from_str(FIXTURE).expect("the fixture is JSON");
    assert!(doc["source"].as_str().unwrap().contains("v1.2.3"));
    doc["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().into(),
            version: u8::try_from(c["version"].as_u64().unwrap()).unwrap(),
            kind: c["type"].as_str().unwrap().into(),
            fields: c["fields"].clone(),
            plain: c.get("plain").and_then(Value::as_str).map(Into::into),
            bytes: unhex(c["hex"].as_str().unwrap()),
        })
        .collect()
}

fn s(f: &Value, k: &str) -> String {
    f[k].as_str()
        .unwrap_or_else(|| panic!("{k} is a string"))
        .into()
}

fn opt_s(f: &Value, k: &str) -> Option<String> {
    (!f[k].is_null()).then(|| s(f, k))
}

fn u(f: &Value, k: &str) -> u64 {
    f[k].as_u64()
        .unwrap_or_else(|| panic!("{k} is an unsigned number"))
}

fn i(f: &Value, k: &str) -> i64 {
    f[k].as_i64().unwrap_or_else(|| panic!("{k} is a number"))
}

fn u8_(f: &Value, k: &str) -> u8 {
    u8::try_from(u(f, k)).unwrap()
}

fn u32_(f: &Value, k: &str) -> u32 {
    u32::try_from(u(f, k)).unwrap()
}

/// The packet the fixture's fields describe, in imcore's types.
fn packet(case: &Case) -> Packet {
    let f = &case.fields;
    match case.kind.as_str() {
        "connect" => Packet::Connect(ConnectPacket {
            version: u8_(f, "version"),
            device_flag: u8_(f, "device_flag"),
            device_id: s(f, "device_id"),
            uid: s(f, "uid"),
            token: s(f, "token"),
            client_timestamp: i(f, "client_timestamp"),
            client_key: s(f, "client_key"),
        }),
        "connack" => Packet::Connack(ConnackPacket {
            server_version: (!f["server_version"].is_null()).then(|| u8_(f, "server_version")),
            time_diff: i(f, "time_diff"),
            reason: ReasonCode::from(u8_(f, "reason")),
            server_key: s(f, "server_key"),
            salt: s(f, "salt"),
            node_id: u(f, "node_id"),
        }),
        "send" => Packet::Send(SendPacket {
            flags: Flags::from_bits(u8_(f, "flags")),
            setting: Setting(u8_(f, "setting")),
            client_seq: u32_(f, "client_seq"),
            client_msg_no: s(f, "client_msg_no"),
            stream_no: opt_s(f, "stream_no"),
            channel_id: s(f, "channel_id"),
            channel_type: u8_(f, "channel_type"),
            expire: u32_(f, "expire"),
            msg_key: s(f, "msg_key"),
            topic: opt_s(f, "topic"),
            payload: Bytes::from(s(f, "payload")),
        }),
        "sendack" => Packet::Sendack(SendackPacket {
            flags: Flags::from_bits(u8_(f, "flags")),
            message_id: i(f, "message_id"),
            client_seq: u32_(f, "client_seq"),
            message_seq: u32_(f, "message_seq"),
            reason: ReasonCode::from(u8_(f, "reason")),
        }),
        "recv" => Packet::Recv(RecvPacket {
            flags: Flags::from_bits(u8_(f, "flags")),
            setting: Setting(u8_(f, "setting")),
            msg_key: s(f, "msg_key"),
            from_uid: s(f, "from_uid"),
            channel_id: s(f, "channel_id"),
            channel_type: u8_(f, "channel_type"),
            expire: u32_(f, "expire"),
            client_msg_no: s(f, "client_msg_no"),
            stream: (!f["stream"].is_null()).then(|| StreamInfo {
                no: s(&f["stream"], "no"),
                seq: u(&f["stream"], "seq"),
                flag: u8_(&f["stream"], "flag"),
            }),
            message_id: i(f, "message_id"),
            message_seq: u32_(f, "message_seq"),
            timestamp: i32::try_from(i(f, "timestamp")).unwrap(),
            topic: opt_s(f, "topic"),
            payload: Bytes::from(s(f, "payload")),
        }),
        "recvack" => Packet::Recvack(RecvackPacket {
            flags: Flags::from_bits(u8_(f, "flags")),
            message_id: i(f, "message_id"),
            message_seq: u32_(f, "message_seq"),
        }),
        "ping" => Packet::Ping,
        "pong" => Packet::Pong,
        "disconnect" => Packet::Disconnect(DisconnectPacket {
            reason: ReasonCode::from(u8_(f, "reason")),
            reason_text: s(f, "reason_text"),
        }),
        "sub" => Packet::Sub(SubPacket {
            setting: u8_(f, "setting"),
            client_msg_no: s(f, "client_msg_no"),
            channel_id: s(f, "channel_id"),
            channel_type: u8_(f, "channel_type"),
            action: u8_(f, "action"),
            param: s(f, "param"),
        }),
        "suback" => Packet::Suback(SubackPacket {
            client_msg_no: s(f, "client_msg_no"),
            channel_id: s(f, "channel_id"),
            channel_type: u8_(f, "channel_type"),
            action: u8_(f, "action"),
            reason: ReasonCode::from(u8_(f, "reason")),
        }),
        "event" => Packet::Event(EventPacket {
            id: s(f, "id"),
            event_type: s(f, "type"),
            timestamp: i(f, "timestamp"),
            data: Bytes::from(s(f, "data")),
        }),
        other => panic!("unknown packet type {other} in the fixture"),
    }
}

#[test]
fn the_fixture_covers_every_packet_at_every_version() {
    let all = cases();
    for version in 1u8..=5 {
        let kinds: BTreeSet<&str> = all
            .iter()
            .filter(|c| c.version == version)
            .map(|c| c.kind.as_str())
            .collect();
        let mut expected = vec![
            "connack",
            "connect",
            "disconnect",
            "ping",
            "pong",
            "recv",
            "recvack",
            "send",
            "sendack",
            "sub",
            "suback",
        ];
        if version >= 5 {
            expected.push("event");
        }
        assert_eq!(
            kinds,
            expected.into_iter().collect::<BTreeSet<_>>(),
            "v{version}"
        );
    }
}

#[test]
fn imcore_writes_and_reads_what_wukongimgoproto_does() {
    for case in cases() {
        let what = format!("{} at v{}", case.name, case.version);
        let p = packet(&case);
        let mut buf = BytesMut::new();
        p.encode_at(case.version, &mut buf)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(&buf[..], &case.bytes[..], "{what}: encoded");
        let (decoded, used) = Packet::decode_at(&case.bytes, MAX, case.version)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            (decoded, used),
            (p.clone(), case.bytes.len()),
            "{what}: decoded"
        );

        // The streaming codec at that version agrees, both ways.
        let mut codec = WireCodec::default().with_version(case.version);
        let mut input = BytesMut::from(&case.bytes[..]);
        assert_eq!(codec.decode(&mut input).unwrap(), Some(p.clone()), "{what}");
        let mut out = BytesMut::new();
        codec.encode(&p, &mut out).unwrap();
        assert_eq!(&out[..], &case.bytes[..], "{what}: codec");
    }
}

#[test]
fn payloads_and_message_keys_agree_with_the_go_side() {
    let cipher = SessionCipher::derive(&kat_secret(), KAT_SALT).unwrap();
    let mut checked = 0;
    for case in cases() {
        let Some(plain) = &case.plain else { continue };
        let what = format!("{} at v{}", case.name, case.version);
        match packet(&case) {
            Packet::Send(p) => {
                assert_eq!(
                    cipher.decrypt(&p.payload).unwrap(),
                    plain.as_bytes(),
                    "{what}"
                );
                assert_eq!(cipher.send_msg_key(&p).unwrap(), p.msg_key, "{what}");
            }
            Packet::Recv(p) => {
                assert_eq!(
                    cipher.decrypt(&p.payload).unwrap(),
                    plain.as_bytes(),
                    "{what}"
                );
                assert_eq!(cipher.recv_msg_key(&p).unwrap(), p.msg_key, "{what}");
            }
            other => panic!("{what}: a cleartext for {other:?}"),
        }
        checked += 1;
    }
    // send, send_stream (1 to 4), recv, recv_stream at five versions.
    assert_eq!(checked, 5 + 4 + 5 + 5);
}

#[test]
fn the_layouts_differ_where_the_versions_do() {
    // Field by field, what each version adds: the body lengths the
    // fixture's frames declare.
    let all = cases();
    let len = |name: &str, v: u8| {
        all.iter()
            .find(|c| c.name == name && c.version == v)
            .map(|c| read_length(&c.bytes).1)
            .unwrap_or_else(|| panic!("{name} v{v}"))
    };
    // SEND and RECV gain the 4-byte expire at 3.
    assert_eq!(len("send", 3), len("send", 2) + 4);
    assert_eq!(len("recv", 3), len("recv", 2) + 4);
    // A stream RECV carries flag, no ("sn-1") and id at 2 to 4 only.
    assert_eq!(len("recv_stream", 2), len("recv_stream", 1) + 1 + 2 + 4 + 8);
    assert_eq!(
        len("recv_stream", 5),
        len("recv_stream", 4) - (1 + 2 + 4 + 8)
    );
    // CONNACK: the node id at 4, and the server version byte (asked > 3).
    assert_eq!(len("connack", 4), len("connack", 3) + 8 + 1);
    let connack5 = all
        .iter()
        .find(|c| c.name == "connack" && c.version == 5)
        .unwrap();
    assert_eq!(
        connack5.bytes[0], 0x21,
        "CONNACK header with server version"
    );
    assert_eq!(connack5.bytes[2], 5, "the server version comes first");
}
