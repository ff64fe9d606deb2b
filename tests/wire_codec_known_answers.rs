//! Known answers: the wire codec against the byte layout of the JavaScript
//! client (`wukongimjssdk` 1.0.4, `lib/proto.js`), from bytes its encoder
//! produced and bytes assembled by hand that its decoder read back.

#[path = "common/codec.rs"]
mod codec;

use bytes::{Bytes, BytesMut};
use codec::{encode, frame, kat_secret, put_str, varint, KAT_SALT, MAX};
use imcore::wire::{
    ConnackPacket, ConnectPacket, DisconnectPacket, Packet, RecvPacket, RecvackPacket, SendPacket,
    SendackPacket, SessionCipher, Setting, StreamInfo, SubPacket, SubackPacket, WireCodec,
};
use imcore::{Flags, ReasonCode};
use tokio_util::codec::Decoder;

#[test]
fn ping_and_pong_are_one_byte() {
    assert_eq!(encode(&Packet::Ping), [0x70]);
    assert_eq!(encode(&Packet::Pong), [0x80]);
    assert_eq!(Packet::decode(&[0x70], MAX).unwrap(), (Packet::Ping, 1));
    assert_eq!(Packet::decode(&[0x80], MAX).unwrap(), (Packet::Pong, 1));
    // A PING followed by anything takes one byte only.
    assert_eq!(
        Packet::decode(&[0x70, 0x70], MAX).unwrap(),
        (Packet::Ping, 1)
    );
}

#[test]
fn sendack_layout() {
    let ack = Packet::Sendack(SendackPacket {
        flags: Flags::default(),
        message_id: 1,
        client_seq: 2,
        message_seq: 3,
        reason: ReasonCode::SUCCESS,
    });
    let bytes = [0x40, 17, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 1];
    assert_eq!(encode(&ack), bytes);
    assert_eq!(Packet::decode(&bytes, MAX).unwrap(), (ack, bytes.len()));

    // Big-endian, full width, negative ids as two's complement.
    let ack = Packet::Sendack(SendackPacket {
        flags: Flags::default(),
        message_id: -2,
        client_seq: 0xDEAD_BEEF,
        message_seq: 0x0102_0304,
        reason: ReasonCode::from(4),
    });
    let bytes = [
        0x40, 17, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3,
        4, 4,
    ];
    assert_eq!(encode(&ack), bytes);
    assert_eq!(Packet::decode(&bytes, MAX).unwrap(), (ack, bytes.len()));

    // A SENDACK carries header flags (WuKongIM answers with the SEND's):
    // red_dot gives header 0x42, and they read back.
    let ack = Packet::Sendack(SendackPacket {
        flags: Flags {
            red_dot: true,
            ..Flags::default()
        },
        message_id: 1,
        client_seq: 2,
        message_seq: 3,
        reason: ReasonCode::SUCCESS,
    });
    let bytes = [0x42, 17, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 1];
    assert_eq!(encode(&ack), bytes);
    assert_eq!(Packet::decode(&bytes, MAX).unwrap(), (ack, bytes.len()));
}

/// Produced by the SDK's own `Proto.encode` (lib/proto.js, run under node
/// 20 with its dependencies) for a ConnectPacket with version 2,
/// deviceFlag 1, deviceID "dev-1", uid "ü1", token "", clientTimestamp
/// 1700000000123, clientKey "a2V5"; also what one assembles by hand from
/// `encodeConnect`: version u8, device flag u8, then strings as u16 BE
/// length + UTF-8 and the timestamp as i64 BE.
const JS_CONNECT: [u8; 32] = [
    0x10, 0x1e, // CONNECT, no flags; remaining length 30
    0x02, // version
    0x01, // device flag (web)
    0x00, 0x05, b'd', b'e', b'v', b'-', b'1', // device id
    0x00, 0x03, 0xc3, 0xbc, b'1', // uid "ü1": three UTF-8 bytes
    0x00, 0x00, // token ""
    0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x7b, // 1700000000123
    0x00, 0x04, b'a', b'2', b'V', b'5', // client key
];

#[test]
fn connect_from_the_js_encoder() {
    let expected = Packet::Connect(ConnectPacket {
        version: 2,
        device_flag: 1,
        device_id: "dev-1".into(),
        uid: "ü1".into(),
        token: String::new(),
        client_timestamp: 1_700_000_000_123,
        client_key: "a2V5".into(),
    });
    assert_eq!(
        Packet::decode(&JS_CONNECT, MAX).unwrap(),
        (expected.clone(), 32)
    );
    assert_eq!(encode(&expected), JS_CONNECT);
    let mut buf = BytesMut::from(&JS_CONNECT[..]);
    assert_eq!(
        WireCodec::default().decode(&mut buf).unwrap(),
        Some(expected)
    );
}

#[test]
fn recvack_and_sub_from_the_js_encoder() {
    // `Proto.encode` of a RecvackPacket {reddot: true, messageID:
    // "1234567890123", messageSeq: 9}: flags in the header's low nibble.
    let js_recvack = [
        0x62, 0x0c, 0x00, 0x00, 0x01, 0x1f, 0x71, 0xfb, 0x04, 0xcb, 0x00, 0x00, 0x00, 0x09,
    ];
    let expected = Packet::Recvack(RecvackPacket {
        flags: Flags {
            red_dot: true,
            ..Flags::default()
        },
        message_id: 1_234_567_890_123,
        message_seq: 9,
    });
    assert_eq!(
        Packet::decode(&js_recvack, MAX).unwrap(),
        (expected.clone(), js_recvack.len())
    );
    assert_eq!(encode(&expected), js_recvack);

    // `Proto.encode` of a SubPacket {setting 0, clientMsgNo "n", channelID
    // "c", channelType 2, action 1, param ""}.
    let js_sub = [
        0xa0, 0x0b, 0x00, 0x00, 0x01, 0x6e, 0x00, 0x01, 0x63, 0x02, 0x01, 0x00, 0x00,
    ];
    let expected = Packet::Sub(SubPacket {
        setting: 0,
        client_msg_no: "n".into(),
        channel_id: "c".into(),
        channel_type: 2,
        action: 1,
        param: String::new(),
    });
    assert_eq!(
        Packet::decode(&js_sub, MAX).unwrap(),
        (expected.clone(), js_sub.len())
    );
    assert_eq!(encode(&expected), js_sub);
}

/// `Proto.encode` of a SendPacket {reddot, setting.topic, topic "t",
/// clientSeq 7, clientMsgNo "cmn-1", channelID "u2", channelType 1, payload
/// UTF-8 `{"type":1}`} with the SDK's SecurityManager keyed aesKey
/// "290e6d8d49d83a7f" (= first 16 of md5hex(base64(bytes 1..=32))) and aesIV
/// "abcdefghijklmnop": the SDK encrypts the payload and computes the msg key.
const JS_SEND: [u8; 80] = [
    0x32, 0x4e, // SEND, red dot; remaining length 78
    0x08, // setting: topic
    0x00, 0x00, 0x00, 0x07, // client seq
    0x00, 0x05, b'c', b'm', b'n', b'-', b'1', // client msg no
    0x00, 0x02, b'u', b'2', // channel id
    0x01, // channel type
    0x00, 0x20, 0x31, 0x64, 0x35, 0x34, 0x63, 0x32, 0x38, 0x66, 0x31, 0x65, 0x32, 0x36, 0x32, 0x39,
    0x39, 0x62, 0x36, 0x38, 0x65, 0x63, 0x39, 0x37, 0x66, 0x39, 0x66, 0x64, 0x35, 0x33, 0x33, 0x37,
    0x34, 0x38, // msg key "1d54c28f1e26299b68ec97f9fd533748"
    0x00, 0x01, b't', // topic
    0x70, 0x49, 0x4c, 0x62, 0x57, 0x6a, 0x36, 0x79, 0x32, 0x38, 0x66, 0x51, 0x72, 0x4e, 0x77, 0x6a,
    0x6f, 0x61, 0x61, 0x53, 0x59, 0x41, 0x3d, 0x3d, // payload "pILbWj6y28fQrNwjoaaSYA=="
];

#[test]
fn send_from_the_js_encoder_decodes_decrypts_and_verifies() {
    let (packet, used) = Packet::decode(&JS_SEND, MAX).unwrap();
    assert_eq!(used, JS_SEND.len());
    let expected = SendPacket {
        flags: Flags {
            red_dot: true,
            ..Flags::default()
        },
        setting: Setting(Setting::TOPIC),
        client_seq: 7,
        client_msg_no: "cmn-1".into(),
        stream_no: None,
        channel_id: "u2".into(),
        channel_type: 1,
        expire: 0,
        msg_key: "1d54c28f1e26299b68ec97f9fd533748".into(),
        topic: Some("t".into()),
        payload: Bytes::from_static(b"pILbWj6y28fQrNwjoaaSYA=="),
    };
    assert_eq!(packet, Packet::Send(expected.clone()));
    assert_eq!(encode(&packet), JS_SEND);

    let cipher = SessionCipher::derive(&kat_secret(), KAT_SALT).unwrap();
    assert_eq!(cipher.decrypt(&expected.payload).unwrap(), br#"{"type":1}"#);
    assert_eq!(cipher.send_msg_key(&expected).unwrap(), expected.msg_key);
    assert_eq!(
        cipher.encrypt(br#"{"type":1}"#).as_bytes(),
        &expected.payload[..]
    );
}

#[test]
fn recv_layout_field_order() {
    // setting, msg_key, from_uid, channel_id, channel_type, client_msg_no,
    // message_id i64, message_seq u32, timestamp u32, payload (the rest).
    // Body: 1 + 34 + 4 + 4 + 1 + 7 + 8 + 4 + 4 = 67 bytes, + 133 of payload
    // = 200, whose remaining length is [0xC8, 0x01].
    let msg_key = "0123456789abcdef0123456789abcdef";
    let payload = vec![b'x'; 133];
    let mut bytes = vec![0x52, 0xC8, 0x01]; // RECV with red dot; 200
    bytes.push(0x00); // setting
    put_str(&mut bytes, msg_key);
    put_str(&mut bytes, "u1");
    put_str(&mut bytes, "g1");
    bytes.push(2); // channel type
    put_str(&mut bytes, "cmn-2");
    bytes.extend_from_slice(&[0, 0, 0x01, 0x1f, 0x71, 0xfb, 0x04, 0xcb]); // 1234567890123
    bytes.extend_from_slice(&[0, 0, 0, 9]); // message seq
    bytes.extend_from_slice(&[0x65, 0x53, 0xf1, 0x00]); // 1700000000
    bytes.extend_from_slice(&payload);
    assert_eq!(bytes.len(), 3 + 200);

    let recv = Packet::Recv(RecvPacket {
        flags: Flags {
            red_dot: true,
            ..Flags::default()
        },
        setting: Setting(0),
        msg_key: msg_key.into(),
        from_uid: "u1".into(),
        channel_id: "g1".into(),
        channel_type: 2,
        expire: 0,
        client_msg_no: "cmn-2".into(),
        stream: None,
        message_id: 1_234_567_890_123,
        message_seq: 9,
        timestamp: 1_700_000_000,
        topic: None,
        payload: Bytes::from(payload),
    });
    assert_eq!(encode(&recv), bytes);
    assert_eq!(Packet::decode(&bytes, MAX).unwrap(), (recv, bytes.len()));
}

#[test]
fn recv_with_stream_and_topic_layout() {
    // With stream and topic, at version 2 as WuKongIMGoProto v1.2.3 lays it
    // out (and WuKongIM's server writes it): stream flag u8, stream no and
    // stream id u64 after client_msg_no; the topic after the timestamp.
    // (The JavaScript SDK 1.0.4 reads an older layout: stream bit 2, then
    // no, a u32 seq and the flag. The crate sends no stream RECV.)
    // The timestamp is a u32 on the wire: -1 is 0xFFFFFFFF.
    let mut body = vec![Setting::RECEIPT | Setting::TOPIC | Setting::STREAM];
    put_str(&mut body, "k");
    put_str(&mut body, "from");
    put_str(&mut body, "chan");
    body.push(1);
    put_str(&mut body, "no");
    body.push(2); // stream flag end
    put_str(&mut body, "s-1");
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 0]); // stream id 256
    body.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0]); // i64::MIN
    body.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]); // message seq
    body.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]); // timestamp
    put_str(&mut body, "topic");
    body.extend_from_slice(b"PAY");
    let bytes = frame(0x5F, &body);

    let recv = Packet::Recv(RecvPacket {
        flags: Flags::from_bits(0x0F),
        setting: Setting(0x8A),
        msg_key: "k".into(),
        from_uid: "from".into(),
        channel_id: "chan".into(),
        channel_type: 1,
        expire: 0,
        client_msg_no: "no".into(),
        stream: Some(StreamInfo {
            no: "s-1".into(),
            seq: 256,
            flag: 2,
        }),
        message_id: i64::MIN,
        message_seq: u32::MAX,
        timestamp: -1,
        topic: Some("topic".into()),
        payload: Bytes::from_static(b"PAY"),
    });
    assert_eq!(encode(&recv), bytes);
    assert_eq!(Packet::decode(&bytes, MAX).unwrap(), (recv, bytes.len()));
}

// The hand-assembled SENDACK, RECV, CONNACK, DISCONNECT and SUBACK bytes in
// these tests were also fed once to the SDK's own `Proto.decode` (node 20),
// which read back the same fields (its integers unsigned: the CONNACK's
// time diff -100 as 2^64 - 100, the RECV's timestamp -1 as 4294967295).

#[test]
fn connack_disconnect_suback_layouts() {
    // CONNACK (decodeConnect): time diff i64, reason u8, server key, salt.
    let bytes = [
        0x20, 0x0f, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x9c, 0x01, 0x00, 0x01, b'K', 0x00,
        0x01, b'S',
    ];
    let connack = Packet::Connack(ConnackPacket {
        server_version: None,
        node_id: 0,
        time_diff: -100,
        reason: ReasonCode::SUCCESS,
        server_key: "K".into(),
        salt: "S".into(),
    });
    assert_eq!(encode(&connack), bytes);
    assert_eq!(Packet::decode(&bytes, MAX).unwrap(), (connack, bytes.len()));

    // DISCONNECT (decodeDisconnect): reason u8, reason string.
    let bytes = [0x90, 0x05, 0x0c, 0x00, 0x02, b'b', b'y'];
    let disconnect = Packet::Disconnect(DisconnectPacket {
        reason: ReasonCode::CONNECT_KICK,
        reason_text: "by".into(),
    });
    assert_eq!(encode(&disconnect), bytes);
    assert_eq!(
        Packet::decode(&bytes, MAX).unwrap(),
        (disconnect, bytes.len())
    );

    // SUBACK (decodeSuback): client msg no, channel id, channel type,
    // action, reason.
    let bytes = [
        0xb0, 0x09, 0x00, 0x01, b'n', 0x00, 0x01, b'c', 0x02, 0x00, 0x01,
    ];
    let suback = Packet::Suback(SubackPacket {
        client_msg_no: "n".into(),
        channel_id: "c".into(),
        channel_type: 2,
        action: 0,
        reason: ReasonCode::SUCCESS,
    });
    assert_eq!(encode(&suback), bytes);
    assert_eq!(Packet::decode(&bytes, MAX).unwrap(), (suback, bytes.len()));
}

#[test]
fn remaining_length_varint_boundaries() {
    // MQTT boundaries: 127 | 128, 16383 | 16384, 2097151 | 2097152.
    for (len, expected) in [
        (0usize, vec![0x00]),
        (127, vec![0x7F]),
        (128, vec![0x80, 0x01]),
        (200, vec![0xC8, 0x01]),
        (16_383, vec![0xFF, 0x7F]),
        (16_384, vec![0x80, 0x80, 0x01]),
        (2_097_151, vec![0xFF, 0xFF, 0x7F]),
        (2_097_152, vec![0x80, 0x80, 0x80, 0x01]),
    ] {
        assert_eq!(varint(len), expected, "test helper, {len}");
        if len < 17 {
            continue;
        }
        // A SEND whose body is `len` bytes: 1 + 4 + 3 + 3 + 1 + 3 = 15 of
        // fields, the rest payload.
        let payload = vec![0u8; len - 15];
        let p = Packet::Send(SendPacket {
            flags: Flags::default(),
            setting: Setting(0),
            client_seq: 0,
            client_msg_no: "n".into(),
            stream_no: None,
            channel_id: "c".into(),
            channel_type: 1,
            expire: 0,
            msg_key: "k".into(),
            topic: None,
            payload: Bytes::from(payload),
        });
        let buf = encode(&p);
        assert_eq!(&buf[1..1 + expected.len()], &expected[..], "{len}");
        assert_eq!(buf.len(), 1 + expected.len() + len);
        assert_eq!(Packet::decode(&buf, usize::MAX).unwrap(), (p, buf.len()));
    }
}
