//! The wire codec's typed errors, one by one: oversized frames refused
//! before the body arrives, unknown types, bad lengths, invalid UTF-8,
//! trailing and truncated fields, strings too long to encode, and setting
//! bits that disagree with optional fields.

#[path = "common/codec.rs"]
mod codec;

use bytes::{Bytes, BytesMut};
use codec::{encode, frame, put_str, varint, MAX};
use imcore::wire::{
    ConnectPacket, Packet, RecvPacket, SendPacket, Setting, StreamInfo, WireCodec, WireError,
};
use imcore::Flags;
use tokio_util::codec::Decoder;

#[test]
fn oversized_is_refused_before_the_body_arrives() {
    // SEND header, remaining length 10 MiB in four varint bytes, no body.
    let ten_mib = 10 * 1024 * 1024;
    let bytes = [0x30, 0x80, 0x80, 0x80, 0x05];
    assert_eq!(varint(ten_mib), bytes[1..]);

    let mut codec = WireCodec::new(1 << 20);
    let mut buf = BytesMut::from(&bytes[..]);
    match codec.decode(&mut buf) {
        Err(WireError::Oversized { len, max }) => assert_eq!((len, max), (ten_mib, 1 << 20)),
        other => panic!("expected Oversized, got {other:?}"),
    }
    match Packet::decode(&bytes, 1 << 20) {
        Err(WireError::Oversized { len, max }) => assert_eq!((len, max), (ten_mib, 1 << 20)),
        other => panic!("expected Oversized, got {other:?}"),
    }

    // Until the varint ends the codec can't know, and waits.
    let mut buf = BytesMut::from(&bytes[..4]);
    assert!(matches!(codec.decode(&mut buf), Ok(None)));
    // A small declared length with its body missing just waits.
    let mut buf = BytesMut::from(&[0x30, 0x80, 0x01][..]);
    assert!(matches!(codec.decode(&mut buf), Ok(None)));

    // The default codec's limit is 256 KiB.
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0x30]);
    buf.extend_from_slice(&varint(256 * 1024 + 1));
    match WireCodec::default().decode(&mut buf) {
        Err(WireError::Oversized { len, max }) => {
            assert_eq!((len, max), (256 * 1024 + 1, 256 * 1024))
        }
        other => panic!("expected Oversized, got {other:?}"),
    }
}

#[test]
fn unknown_types_are_refused() {
    for ty in [0u8, 13, 14, 15] {
        for flag_bits in [0u8, 0x0F] {
            let header = (ty << 4) | flag_bits;
            for bytes in [vec![header], vec![header, 0], frame(header, b"abc")] {
                let r = Packet::decode(&bytes, MAX);
                assert!(
                    matches!(r, Err(WireError::UnknownType(t)) if t == ty),
                    "{bytes:?}: {r:?}"
                );
                let mut buf = BytesMut::from(&bytes[..]);
                let r = WireCodec::new(MAX).decode(&mut buf);
                assert!(
                    matches!(r, Err(WireError::UnknownType(t)) if t == ty),
                    "{bytes:?}: {r:?}"
                );
            }
        }
    }
    // The known ones are not (12 is EVENT, read at any version as
    // WuKongIMGoProto does).
    for ty in 1u8..=12 {
        assert!(!matches!(
            Packet::decode(&[ty << 4], MAX),
            Err(WireError::UnknownType(_))
        ));
    }
}

#[test]
fn five_byte_varint_is_bad_length() {
    for bytes in [
        vec![0x30, 0x80, 0x80, 0x80, 0x80],
        vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        vec![0x40, 0x80, 0x80, 0x80, 0x80, 0x00, 1, 2, 3],
    ] {
        let r = Packet::decode(&bytes, usize::MAX);
        assert!(matches!(r, Err(WireError::BadLength)), "{bytes:?}: {r:?}");
        let mut buf = BytesMut::from(&bytes[..]);
        let r = WireCodec::new(usize::MAX).decode(&mut buf);
        assert!(matches!(r, Err(WireError::BadLength)), "{bytes:?}: {r:?}");
    }
    // Four continuation bytes with no fifth yet: still BadLength once the
    // fifth arrives, Incomplete before it.
    assert!(matches!(
        Packet::decode(&[0x30, 0x80, 0x80, 0x80], MAX),
        Err(WireError::Incomplete)
    ));
}

#[test]
fn invalid_utf8_names_the_field() {
    let bad: [&[u8]; 4] = [
        &[0xFF, 0xFE],
        &[0xC3],             // a cut two-byte sequence
        &[0xED, 0xA0, 0x80], // a surrogate
        &[0xC0, 0x80],       // an overlong NUL
    ];
    for raw in bad {
        // DISCONNECT: reason u8, reason string.
        let mut body = vec![1];
        body.extend_from_slice(&(raw.len() as u16).to_be_bytes());
        body.extend_from_slice(raw);
        let bytes = frame(0x90, &body);
        let r = Packet::decode(&bytes, MAX);
        assert!(matches!(r, Err(WireError::InvalidUtf8("reason"))), "{r:?}");
        let mut buf = BytesMut::from(&bytes[..]);
        let r = WireCodec::new(MAX).decode(&mut buf);
        assert!(matches!(r, Err(WireError::InvalidUtf8("reason"))), "{r:?}");
    }

    // CONNECT with a bad uid (the second string).
    let mut body = vec![2, 1];
    put_str(&mut body, "dev");
    body.extend_from_slice(&[0, 2, 0xFF, 0xFF]);
    put_str(&mut body, "tok");
    body.extend_from_slice(&0i64.to_be_bytes());
    put_str(&mut body, "key");
    let r = Packet::decode(&frame(0x10, &body), MAX);
    assert!(matches!(r, Err(WireError::InvalidUtf8("uid"))), "{r:?}");
}

#[test]
fn extra_bytes_after_the_last_field_are_trailing() {
    // SENDACK: i64, u32, u32, u8 = 17 bytes; declare and send 19.
    let mut body = vec![0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 1];
    body.extend_from_slice(&[0xAA, 0xBB]);
    let bytes = frame(0x40, &body);
    assert_eq!(bytes[1], 19);
    let r = Packet::decode(&bytes, MAX);
    assert!(matches!(r, Err(WireError::TrailingBytes(2))), "{r:?}");
    let mut buf = BytesMut::from(&bytes[..]);
    let r = WireCodec::new(MAX).decode(&mut buf);
    assert!(matches!(r, Err(WireError::TrailingBytes(2))), "{r:?}");

    // RECVACK with one extra byte, SUBACK with one extra byte.
    let mut recvack = vec![0; 12];
    recvack.push(9);
    assert!(matches!(
        Packet::decode(&frame(0x60, &recvack), MAX),
        Err(WireError::TrailingBytes(1))
    ));
    let mut suback = Vec::new();
    put_str(&mut suback, "n");
    put_str(&mut suback, "c");
    suback.extend_from_slice(&[1, 0, 1, 0xEE]);
    assert!(matches!(
        Packet::decode(&frame(0xB0, &suback), MAX),
        Err(WireError::TrailingBytes(1))
    ));
}

#[test]
fn fields_running_past_the_body_are_truncated() {
    // SENDACK declaring 16 bytes (one short of its fields), all present.
    let body = [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
    let bytes = frame(0x40, &body);
    let r = Packet::decode(&bytes, MAX);
    assert!(matches!(r, Err(WireError::Truncated)), "{r:?}");
    let mut buf = BytesMut::from(&bytes[..]);
    assert!(matches!(
        WireCodec::new(MAX).decode(&mut buf),
        Err(WireError::Truncated)
    ));

    // Even when the next packet's bytes follow in the buffer.
    let mut with_next = bytes.clone();
    with_next.extend_from_slice(&[1, 0x70, 0x70]);
    let r = Packet::decode(&with_next, MAX);
    assert!(matches!(r, Err(WireError::Truncated)), "{r:?}");

    // DISCONNECT whose string says 5 bytes but the body holds 1.
    let r = Packet::decode(&[0x90, 4, 1, 0, 5, b'a'], MAX);
    assert!(matches!(r, Err(WireError::Truncated)), "{r:?}");
    // A string length cut in half.
    let r = Packet::decode(&[0x90, 2, 1, 0], MAX);
    assert!(matches!(r, Err(WireError::Truncated)), "{r:?}");
    // An empty body.
    for ty in [1u8, 2, 3, 4, 5, 6, 9, 10, 11] {
        let r = Packet::decode(&[ty << 4, 0], MAX);
        assert!(matches!(r, Err(WireError::Truncated)), "type {ty}: {r:?}");
    }
    // RECV with the stream bit whose stream fields run out.
    let mut recv = vec![Setting::STREAM];
    for s in ["k", "u", "c"] {
        put_str(&mut recv, s);
    }
    recv.push(1);
    put_str(&mut recv, "n");
    put_str(&mut recv, "stream");
    recv.extend_from_slice(&[0, 0]); // half a u32
    let r = Packet::decode(&frame(0x50, &recv), MAX);
    assert!(matches!(r, Err(WireError::Truncated)), "{r:?}");
}

fn connect_with_uid(uid: String) -> Packet {
    Packet::Connect(ConnectPacket {
        version: 2,
        device_flag: 1,
        device_id: "d".into(),
        uid,
        token: "t".into(),
        client_timestamp: 0,
        client_key: "k".into(),
    })
}

#[test]
fn strings_over_u16_are_refused_on_encode() {
    let mut buf = BytesMut::from(&b"kept"[..]);
    let r = connect_with_uid("a".repeat(65_536)).encode(&mut buf);
    assert!(matches!(r, Err(WireError::StringTooLong(65_536))), "{r:?}");
    assert_eq!(&buf[..], b"kept", "dst is left as it was");

    // The limit counts bytes, not characters.
    let r = connect_with_uid("é".repeat(32_768)).to_bytes();
    assert!(matches!(r, Err(WireError::StringTooLong(65_536))), "{r:?}");

    // In a payload-carrying packet's optional field too.
    let send = Packet::Send(SendPacket {
        flags: Flags::default(),
        setting: Setting(Setting::TOPIC),
        client_seq: 1,
        client_msg_no: "n".into(),
        stream_no: None,
        channel_id: "c".into(),
        channel_type: 1,
        expire: 0,
        msg_key: "k".into(),
        topic: Some("t".repeat(70_000)),
        payload: Bytes::new(),
    });
    assert!(matches!(
        send.to_bytes(),
        Err(WireError::StringTooLong(70_000))
    ));

    // 65,535 bytes is the largest that fits, and round-trips.
    let p = connect_with_uid("a".repeat(65_535));
    let buf = encode(&p);
    assert_eq!(Packet::decode(&buf, MAX).unwrap(), (p, buf.len()));
}

fn plain_send(setting: u8, stream_no: Option<&str>, topic: Option<&str>) -> Packet {
    Packet::Send(SendPacket {
        flags: Flags::normal(),
        setting: Setting(setting),
        client_seq: 1,
        client_msg_no: "n".into(),
        stream_no: stream_no.map(Into::into),
        channel_id: "c".into(),
        channel_type: 1,
        expire: 0,
        msg_key: "k".into(),
        topic: topic.map(Into::into),
        payload: Bytes::from_static(b"p"),
    })
}

fn plain_recv(setting: u8, stream: Option<StreamInfo>, topic: Option<&str>) -> Packet {
    Packet::Recv(RecvPacket {
        flags: Flags::normal(),
        setting: Setting(setting),
        msg_key: "k".into(),
        from_uid: "u".into(),
        channel_id: "c".into(),
        channel_type: 1,
        expire: 0,
        client_msg_no: "n".into(),
        stream,
        message_id: 1,
        message_seq: 1,
        timestamp: 1,
        topic: topic.map(Into::into),
        payload: Bytes::from_static(b"p"),
    })
}

#[test]
fn setting_bits_and_optional_fields_must_agree() {
    let cases = [
        plain_send(Setting::STREAM, None, None),
        plain_send(0, Some("s"), None),
        plain_send(Setting::TOPIC, None, None),
        plain_send(0, None, Some("t")),
        plain_recv(Setting::STREAM, None, None),
        plain_recv(0, Some(StreamInfo::default()), None),
        plain_recv(Setting::TOPIC, None, None),
        plain_recv(0, None, Some("t")),
    ];
    for p in cases {
        let mut buf = BytesMut::from(&b"kept"[..]);
        let r = p.encode(&mut buf);
        assert!(matches!(r, Err(WireError::Inconsistent(_))), "{p:?}: {r:?}");
        assert_eq!(&buf[..], b"kept", "dst is left as it was");
    }
    // The field names.
    assert!(matches!(
        plain_send(Setting::STREAM, None, None).to_bytes(),
        Err(WireError::Inconsistent("stream_no"))
    ));
    assert!(matches!(
        plain_send(Setting::TOPIC, None, None).to_bytes(),
        Err(WireError::Inconsistent("topic"))
    ));
    // The consistent ones encode.
    for p in [
        plain_send(Setting::STREAM | Setting::TOPIC, Some(""), Some("")),
        plain_send(Setting::RECEIPT, None, None),
        plain_recv(Setting::STREAM, Some(StreamInfo::default()), None),
    ] {
        let buf = encode(&p);
        assert_eq!(Packet::decode(&buf, MAX).unwrap(), (p, buf.len()));
    }
}
