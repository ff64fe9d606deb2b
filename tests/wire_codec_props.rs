//! Property tests of the wire packet codec (feature `wire`): every packet
//! round-trips, a split stream reassembles, the frame limit holds, and
//! arbitrary or mutated input never panics and gives a decode error.
//! (`wire_codec_props.proptest-regressions` holds proptest's seeds.)

#[path = "common/codec.rs"]
mod codec;

use bytes::{Bytes, BytesMut};
use codec::{encode, feed_in_chunks, frame, is_decode_error, read_length, varint, MAX};
use imcore::wire::{
    ConnackPacket, ConnectPacket, DisconnectPacket, EventPacket, Packet, PacketType, RecvPacket,
    RecvackPacket, SendPacket, SendackPacket, Setting, StreamInfo, SubPacket, SubackPacket,
    WireCodec, WireError,
};
use imcore::{Flags, ReasonCode};
use proptest::prelude::*;
use proptest::sample::Index;
use tokio_util::codec::{Decoder, Encoder};

// ---------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("你好, wukong 🎉 ü".to_string()),
        "[a-z0-9_-]{1,16}",
        "\\PC{0,16}",
        ".{0,16}",
    ]
}

fn payload() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..96).prop_map(Bytes::from)
}

fn flags() -> impl Strategy<Value = Flags> {
    (0u8..16).prop_map(Flags::from_bits)
}

fn reason() -> impl Strategy<Value = ReasonCode> {
    any::<u8>().prop_map(ReasonCode::from)
}

fn connect() -> impl Strategy<Value = Packet> {
    (
        any::<u8>(),
        any::<u8>(),
        text(),
        text(),
        text(),
        any::<i64>(),
        text(),
    )
        .prop_map(
            |(version, device_flag, device_id, uid, token, client_timestamp, client_key)| {
                Packet::Connect(ConnectPacket {
                    version,
                    device_flag,
                    device_id,
                    uid,
                    token,
                    client_timestamp,
                    client_key,
                })
            },
        )
}

fn connack() -> impl Strategy<Value = Packet> {
    (any::<Option<u8>>(), any::<i64>(), reason(), text(), text()).prop_map(
        |(server_version, time_diff, reason, server_key, salt)| {
            Packet::Connack(ConnackPacket {
                server_version,
                time_diff,
                reason,
                server_key,
                salt,
                // Not on the wire at version 2 (see the versioned round trip).
                node_id: 0,
            })
        },
    )
}

fn send() -> impl Strategy<Value = Packet> {
    (
        (flags(), any::<u8>(), any::<u32>(), text(), text()),
        (text(), any::<u8>(), text(), text(), payload()),
    )
        .prop_map(
            |(
                (flags, setting, client_seq, client_msg_no, stream_no),
                (channel_id, channel_type, msg_key, topic, payload),
            )| {
                let setting = Setting(setting);
                Packet::Send(SendPacket {
                    flags,
                    setting,
                    client_seq,
                    client_msg_no,
                    stream_no: setting.stream().then_some(stream_no),
                    channel_id,
                    channel_type,
                    // Not on the wire at version 2 (see the versioned round trip).
                    expire: 0,
                    msg_key,
                    topic: setting.topic().then_some(topic),
                    payload,
                })
            },
        )
}

fn sendack() -> impl Strategy<Value = Packet> {
    (flags(), any::<i64>(), any::<u32>(), any::<u32>(), reason()).prop_map(
        |(flags, message_id, client_seq, message_seq, reason)| {
            Packet::Sendack(SendackPacket {
                flags,
                message_id,
                client_seq,
                message_seq,
                reason,
            })
        },
    )
}

fn recv() -> impl Strategy<Value = Packet> {
    (
        (flags(), any::<u8>(), text(), text(), text(), any::<u8>()),
        (text(), (text(), any::<u64>(), any::<u8>())),
        (any::<i64>(), any::<u32>(), any::<i32>(), text(), payload()),
    )
        .prop_map(
            |(
                (flags, setting, msg_key, from_uid, channel_id, channel_type),
                (client_msg_no, (stream_no, stream_seq, stream_flag)),
                (message_id, message_seq, timestamp, topic, payload),
            )| {
                let setting = Setting(setting);
                Packet::Recv(RecvPacket {
                    flags,
                    setting,
                    msg_key,
                    from_uid,
                    channel_id,
                    channel_type,
                    expire: 0,
                    client_msg_no,
                    stream: setting.stream().then_some(StreamInfo {
                        no: stream_no,
                        seq: stream_seq,
                        flag: stream_flag,
                    }),
                    message_id,
                    message_seq,
                    timestamp,
                    topic: setting.topic().then_some(topic),
                    payload,
                })
            },
        )
}

fn recvack() -> impl Strategy<Value = Packet> {
    (flags(), any::<i64>(), any::<u32>()).prop_map(|(flags, message_id, message_seq)| {
        Packet::Recvack(RecvackPacket {
            flags,
            message_id,
            message_seq,
        })
    })
}

fn disconnect() -> impl Strategy<Value = Packet> {
    (reason(), text()).prop_map(|(reason, reason_text)| {
        Packet::Disconnect(DisconnectPacket {
            reason,
            reason_text,
        })
    })
}

fn sub() -> impl Strategy<Value = Packet> {
    (
        any::<u8>(),
        text(),
        text(),
        any::<u8>(),
        any::<u8>(),
        text(),
    )
        .prop_map(
            |(setting, client_msg_no, channel_id, channel_type, action, param)| {
                Packet::Sub(SubPacket {
                    setting,
                    client_msg_no,
                    channel_id,
                    channel_type,
                    action,
                    param,
                })
            },
        )
}

fn suback() -> impl Strategy<Value = Packet> {
    (text(), text(), any::<u8>(), any::<u8>(), reason()).prop_map(
        |(client_msg_no, channel_id, channel_type, action, reason)| {
            Packet::Suback(SubackPacket {
                client_msg_no,
                channel_id,
                channel_type,
                action,
                reason,
            })
        },
    )
}

fn event() -> impl Strategy<Value = Packet> {
    (text(), text(), any::<i64>(), payload()).prop_map(|(id, event_type, timestamp, data)| {
        Packet::Event(EventPacket {
            id,
            event_type,
            timestamp,
            data,
        })
    })
}

fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        event(),
        connect(),
        connack(),
        send(),
        sendack(),
        recv(),
        recvack(),
        Just(Packet::Ping),
        Just(Packet::Pong),
        disconnect(),
        sub(),
        suback(),
    ]
}

// ---------------------------------------------------------------------------
// 1. Round trips.
// ---------------------------------------------------------------------------

/// `p` as protocol `version` carries it: the node id (from 4) and the
/// expire (from 3) set to the given values, the stream fields (2 to 4 only)
/// dropped elsewhere.
fn at_version(p: &Packet, version: u8, node_id: u64, expire: u32) -> Packet {
    let stream_fields = (2..5).contains(&version);
    let expire = if version >= 3 { expire } else { 0 };
    match p.clone() {
        Packet::Connack(mut c) => {
            c.node_id = if version >= 4 { node_id } else { 0 };
            Packet::Connack(c)
        }
        Packet::Send(mut s) => {
            s.expire = expire;
            if !stream_fields {
                s.stream_no = None;
            }
            Packet::Send(s)
        }
        Packet::Recv(mut r) => {
            r.expire = expire;
            if !stream_fields {
                r.stream = None;
            }
            Packet::Recv(r)
        }
        other => other,
    }
}

/// Encodes, checks the header and length, decodes back.
fn check_round_trip(p: &Packet) -> Result<(), TestCaseError> {
    let buf = encode(p);
    let ty = p.packet_type().as_u8();
    prop_assert_eq!(buf[0] >> 4, ty, "type nibble");
    match p {
        Packet::Send(_) | Packet::Sendack(_) | Packet::Recv(_) | Packet::Recvack(_) => {
            prop_assert_eq!(buf[0] & 0x0F, p.flags().bits(), "flag nibble");
        }
        // A CONNACK's bit 0 says a server version follows.
        Packet::Connack(c) => prop_assert_eq!(
            buf[0] & 0x0F,
            u8::from(c.server_version.is_some()),
            "CONNACK's server version bit"
        ),
        _ => prop_assert_eq!(
            buf[0] & 0x0F,
            0,
            "only SEND/SENDACK/RECV/RECVACK carry flags"
        ),
    }
    if matches!(p, Packet::Ping | Packet::Pong) {
        prop_assert_eq!(buf.len(), 1);
    } else {
        // The remaining length, read independently, covers exactly the body.
        let (i, len) = read_length(&buf);
        prop_assert_eq!(i + len, buf.len(), "declared length covers the body");
        prop_assert_eq!(&buf[1..i], &varint(len)[..], "minimal varint");
    }

    let (decoded, used) =
        Packet::decode(&buf, MAX).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&decoded, p);
    prop_assert_eq!(used, buf.len());
    prop_assert_eq!(decoded.flags(), p.flags());

    // `to_bytes` and the codec's encoders write the same bytes.
    prop_assert_eq!(&p.to_bytes().unwrap()[..], &buf[..]);
    let mut by_ref = BytesMut::new();
    Encoder::<&Packet>::encode(&mut WireCodec::default(), p, &mut by_ref).unwrap();
    prop_assert_eq!(&by_ref[..], &buf[..]);
    let mut by_val = BytesMut::from(&b"prefix"[..]);
    Encoder::<Packet>::encode(&mut WireCodec::default(), p.clone(), &mut by_val).unwrap();
    prop_assert_eq!(&by_val[..6], b"prefix", "encode appends");
    prop_assert_eq!(&by_val[6..], &buf[..]);

    // A decode of the bytes followed by more input takes only the packet.
    let mut longer = buf.clone();
    longer.extend_from_slice(&[0x70, 0x80, 0xFF]);
    let (again, used) =
        Packet::decode(&longer, MAX).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&again, p);
    prop_assert_eq!(used, buf.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trip_connect(p in connect()) { check_round_trip(&p)?; }

    #[test]
    fn round_trip_connack(p in connack()) { check_round_trip(&p)?; }

    /// Every packet round-trips at every version (0 to 5, and above 5 as
    /// 5), through `encode_at`/`decode_at` and the codec at that version.
    #[test]
    fn round_trip_at_every_version(
        p in packet(),
        version in 0u8..8,
        node_id in any::<u64>(),
        expire in any::<u32>(),
    ) {
        let p = at_version(&p, version, node_id, expire);
        let bytes = p.to_bytes_at(version).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (decoded, used) = Packet::decode_at(&bytes, MAX, version)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&decoded, &p);
        prop_assert_eq!(used, bytes.len());
        let mut codec = WireCodec::default().with_version(version);
        let mut buf = BytesMut::from(&bytes[..]);
        prop_assert_eq!(codec.decode(&mut buf).unwrap(), Some(p));
    }

    #[test]
    fn round_trip_send(p in send()) { check_round_trip(&p)?; }

    #[test]
    fn round_trip_sendack(p in sendack()) { check_round_trip(&p)?; }

    #[test]
    fn round_trip_recv(p in recv()) { check_round_trip(&p)?; }

    #[test]
    fn round_trip_recvack(p in recvack()) { check_round_trip(&p)?; }

    #[test]
    fn round_trip_disconnect(p in disconnect()) { check_round_trip(&p)?; }

    #[test]
    fn round_trip_sub(p in sub()) { check_round_trip(&p)?; }

    #[test]
    fn round_trip_suback(p in suback()) { check_round_trip(&p)?; }

    /// Several packets in one stream, cut anywhere, come out in order.
    #[test]
    fn codec_reassembles_split_stream(
        packets in prop::collection::vec(packet(), 1..8),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let mut stream = Vec::new();
        for p in &packets {
            stream.extend(encode(p));
        }
        let (decoded, rest) = feed_in_chunks(MAX, &stream, &cuts)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded, packets);
        prop_assert!(rest.is_empty());
    }

    /// One chunk holding everything also works, byte by byte too.
    #[test]
    fn codec_one_chunk_and_byte_by_byte(packets in prop::collection::vec(packet(), 1..5)) {
        let mut stream = Vec::new();
        for p in &packets {
            stream.extend(encode(p));
        }
        let (whole, rest) = feed_in_chunks(MAX, &stream, &[]).unwrap();
        prop_assert_eq!(&whole, &packets);
        prop_assert!(rest.is_empty());

        let mut codec = WireCodec::new(MAX);
        let mut buf = BytesMut::new();
        let mut one_by_one = Vec::new();
        for &b in &stream {
            buf.extend_from_slice(&[b]);
            while let Some(p) = codec.decode(&mut buf).unwrap() {
                one_by_one.push(p);
            }
        }
        prop_assert_eq!(one_by_one, packets);
        prop_assert!(buf.is_empty());
        prop_assert!(codec.decode_eof(&mut buf).unwrap().is_none());
    }

    /// The body limit is inclusive: a body of exactly `max_frame` bytes
    /// decodes, one byte less of limit is `Oversized`.
    #[test]
    fn max_frame_boundary(p in packet()) {
        let buf = encode(&p);
        if matches!(p, Packet::Ping | Packet::Pong) {
            // No body: any limit, even 0, takes them.
            prop_assert_eq!(Packet::decode(&buf, 0).unwrap(), (p, 1));
            return Ok(());
        }
        let (_, body) = read_length(&buf);
        prop_assert_eq!(Packet::decode(&buf, body).unwrap(), (p.clone(), buf.len()));
        let mut codec = WireCodec::new(body);
        let mut b = BytesMut::from(&buf[..]);
        prop_assert_eq!(codec.decode(&mut b).unwrap(), Some(p.clone()));
        prop_assert_eq!(codec.max_frame(), body);

        match Packet::decode(&buf, body - 1) {
            Err(WireError::Oversized { len, max }) => {
                prop_assert_eq!((len, max), (body, body - 1));
            }
            other => prop_assert!(false, "expected Oversized, got {:?}", other),
        }
        let mut b = BytesMut::from(&buf[..]);
        let r = WireCodec::new(body - 1).decode(&mut b);
        prop_assert!(matches!(r, Err(WireError::Oversized { .. })), "{:?}", r);
    }
}

// ---------------------------------------------------------------------------
// 2. Never panics on arbitrary input.
// ---------------------------------------------------------------------------

/// `Packet::decode` and the codec agree on a buffer: the codec's first
/// result is `Packet::decode`'s, with `Incomplete` as `Ok(None)`.
fn check_arbitrary(bytes: &[u8], max: usize, cuts: &[Index]) -> Result<(), TestCaseError> {
    let direct = Packet::decode(bytes, max);
    match &direct {
        Ok((p, used)) => {
            prop_assert!(*used >= 1 && *used <= bytes.len());
            // What came out of garbage re-encodes and decodes to itself.
            let again = encode(p);
            prop_assert_eq!(&Packet::decode(&again, usize::MAX).unwrap().0, p);
        }
        Err(e) => prop_assert!(is_decode_error(e), "not a decode error: {:?}", e),
    }

    let mut codec = WireCodec::new(max);
    let mut buf = BytesMut::from(bytes);
    let first = codec.decode(&mut buf);
    match (&direct, &first) {
        (Ok((p, used)), Ok(Some(q))) => {
            prop_assert_eq!(p, q);
            prop_assert_eq!(buf.len(), bytes.len() - used);
        }
        (Err(WireError::Incomplete), Ok(None)) => prop_assert_eq!(buf.len(), bytes.len()),
        (Err(a), Err(b)) => prop_assert_eq!(format!("{a:?}"), format!("{b:?}")),
        _ => prop_assert!(false, "decode {:?} but codec {:?}", direct, first),
    }

    match feed_in_chunks(max, bytes, cuts) {
        Ok((_, rest)) => prop_assert!(rest.len() <= bytes.len()),
        Err(e) => {
            prop_assert!(is_decode_error(&e), "not a decode error: {:?}", e);
            prop_assert!(
                !matches!(e, WireError::Incomplete),
                "the codec waits instead of Incomplete"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        max in prop_oneof![Just(0usize), 0usize..64, Just(MAX), Just(usize::MAX)],
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        check_arbitrary(&bytes, max, &cuts)?;
    }

    /// A valid header byte (every type, every flag nibble) and an arbitrary
    /// tail, with the tail's true length in front of it or not, so that the
    /// body decoders get to run on garbage.
    #[test]
    fn valid_header_arbitrary_tail_never_panics(
        ty in 0u8..=15,
        flag_bits in 0u8..=15,
        tail in prop::collection::vec(any::<u8>(), 0..200),
        framed in any::<bool>(),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let header = (ty << 4) | flag_bits;
        let bytes = if framed {
            frame(header, &tail)
        } else {
            let mut b = vec![header];
            b.extend_from_slice(&tail);
            b
        };
        check_arbitrary(&bytes, MAX, &cuts)?;
        if framed && PacketType::from_u8(ty).is_some() && !matches!(ty, 7 | 8) {
            // A whole frame is never Incomplete: either a packet taking the
            // whole frame, or a typed body error.
            match Packet::decode(&bytes, MAX) {
                Ok((_, used)) => prop_assert_eq!(used, bytes.len()),
                Err(e) => prop_assert!(
                    matches!(
                        e,
                        WireError::Truncated | WireError::InvalidUtf8(_) | WireError::TrailingBytes(_)
                    ),
                    "{:?}", e
                ),
            }
        }
    }

    /// A valid packet with some bytes changed still gives a packet or a
    /// typed error.
    #[test]
    fn mutated_packets_never_panic(
        p in packet(),
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 1..6),
        cuts in prop::collection::vec(any::<Index>(), 0..6),
    ) {
        let mut bytes = encode(&p);
        for (i, v) in edits {
            let at = i.index(bytes.len());
            bytes[at] = v;
        }
        check_arbitrary(&bytes, MAX, &cuts)?;
    }

    // -----------------------------------------------------------------------
    // 3. Truncation: every strict prefix is Incomplete / Ok(None).
    // -----------------------------------------------------------------------

    #[test]
    fn every_strict_prefix_is_incomplete(p in packet()) {
        let buf = encode(&p);
        for n in 0..buf.len() {
            let prefix = &buf[..n];
            let r = Packet::decode(prefix, MAX);
            prop_assert!(matches!(r, Err(WireError::Incomplete)), "prefix {}: {:?}", n, r);
            let mut codec = WireCodec::new(MAX);
            let mut b = BytesMut::from(prefix);
            let r = codec.decode(&mut b);
            prop_assert!(matches!(r, Ok(None)), "codec, prefix {}: {:?}", n, r);
            prop_assert_eq!(b.len(), n, "the codec keeps what it has");
        }
    }
}
