//! The wire protocol's packet codec and session cipher (feature `wire`):
//! round trips for every packet, robustness against arbitrary input, the
//! typed errors, known-answer byte layouts from the JavaScript client
//! (`wukongimjssdk` 1.0.4, `lib/proto.js`) and the cipher's key derivation.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use imcore::wire::{
    ConnackPacket, ConnectPacket, DisconnectPacket, KeyExchange, Packet, PacketType, RecvPacket,
    RecvackPacket, SendPacket, SendackPacket, SessionCipher, Setting, StreamInfo, SubPacket,
    SubackPacket, WireCodec, WireError,
};
use imcore::{Flags, ReasonCode};
use proptest::prelude::*;
use proptest::sample::Index;
use tokio_util::codec::{Decoder, Encoder};

const MAX: usize = 1 << 20;

// ---------------------------------------------------------------------------
// Helpers (independent of the crate's encoder).
// ---------------------------------------------------------------------------

fn encode(p: &Packet) -> Vec<u8> {
    let mut buf = BytesMut::new();
    p.encode(&mut buf).expect("the packet encodes");
    buf.to_vec()
}

/// MQTT-style remaining length, written here independently of the crate.
fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let digit = (n % 128) as u8;
        n /= 128;
        if n == 0 {
            out.push(digit);
            return out;
        }
        out.push(digit | 0x80);
    }
}

/// Reads the remaining length after the header byte of an encoded packet
/// (independently of the crate): the header's length (type byte and
/// varint) and the declared body length.
fn read_length(buf: &[u8]) -> (usize, usize) {
    let mut len = 0usize;
    for (i, &b) in buf[1..].iter().take(4).enumerate() {
        len |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return (i + 2, len);
        }
    }
    panic!("no varint in {buf:?}");
}

/// A u16 BE length and the UTF-8 bytes, as the JS `Encoder.writeString`.
fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Header byte, remaining length and body.
fn frame(header: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![header];
    out.extend(varint(body.len()));
    out.extend_from_slice(body);
    out
}

/// The errors decoding may give (the others belong to the cipher, the
/// encoder or the server).
fn is_decode_error(e: &WireError) -> bool {
    matches!(
        e,
        WireError::Incomplete
            | WireError::Truncated
            | WireError::Oversized { .. }
            | WireError::UnknownType(_)
            | WireError::BadLength
            | WireError::InvalidUtf8(_)
            | WireError::TrailingBytes(_)
    )
}

/// Feeds `bytes` to a fresh codec in chunks cut at `cuts`, decoding after
/// each chunk until the codec wants more. Returns the packets and what is
/// left in the buffer, or the first error.
fn feed_in_chunks(
    max_frame: usize,
    bytes: &[u8],
    cuts: &[Index],
) -> Result<(Vec<Packet>, BytesMut), WireError> {
    let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points.dedup();

    let mut codec = WireCodec::new(max_frame);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for w in points.windows(2) {
        buf.extend_from_slice(&bytes[w[0]..w[1]]);
        loop {
            let before = buf.len();
            match codec.decode(&mut buf)? {
                Some(p) => {
                    assert!(buf.len() < before, "a decoded packet consumed no bytes");
                    out.push(p);
                }
                None => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    break;
                }
            }
        }
    }
    Ok((out, buf))
}

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
    (any::<i64>(), reason(), text(), text()).prop_map(|(time_diff, reason, server_key, salt)| {
        Packet::Connack(ConnackPacket {
            time_diff,
            reason,
            server_key,
            salt,
        })
    })
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
        (text(), (text(), any::<u32>(), any::<u8>())),
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

fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
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

/// Encodes, checks the header and length, decodes back.
fn check_round_trip(p: &Packet) -> Result<(), TestCaseError> {
    let buf = encode(p);
    let ty = p.packet_type().as_u8();
    prop_assert_eq!(buf[0] >> 4, ty, "type nibble");
    prop_assert_eq!(buf[0] & 0x0F, p.flags().bits(), "flag nibble");
    match p {
        Packet::Send(_) | Packet::Sendack(_) | Packet::Recv(_) | Packet::Recvack(_) => {}
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

// ---------------------------------------------------------------------------
// 3. Typed errors, one by one.
// ---------------------------------------------------------------------------

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
    for ty in [0u8, 12, 13, 14, 15] {
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
    // The known ones are not.
    for ty in 1u8..=11 {
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

// ---------------------------------------------------------------------------
// 4. Known answers: the JavaScript client's byte layout.
// ---------------------------------------------------------------------------

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

/// The shared secret used by the cipher known answers: bytes 1 to 32.
fn kat_secret() -> Vec<u8> {
    (1..=32).collect()
}

const KAT_SALT: &str = "abcdefghijklmnop";

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
    // With stream and topic: stream no, stream seq u32 and stream flag u8
    // after client_msg_no; the topic after the timestamp (decodeRecvPacket).
    // The timestamp is a u32 on the wire: -1 is 0xFFFFFFFF.
    let mut body = vec![Setting::RECEIPT | Setting::TOPIC | Setting::STREAM];
    put_str(&mut body, "k");
    put_str(&mut body, "from");
    put_str(&mut body, "chan");
    body.push(1);
    put_str(&mut body, "no");
    put_str(&mut body, "s-1");
    body.extend_from_slice(&[0, 0, 1, 0]); // stream seq 256
    body.push(2); // stream flag end
    body.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0]); // i64::MIN
    body.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]); // message seq
    body.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]); // timestamp
    put_str(&mut body, "topic");
    body.extend_from_slice(b"PAY");
    let bytes = frame(0x5F, &body);

    let recv = Packet::Recv(RecvPacket {
        flags: Flags::from_bits(0x0F),
        setting: Setting(0x8C),
        msg_key: "k".into(),
        from_uid: "from".into(),
        channel_id: "chan".into(),
        channel_type: 1,
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

// ---------------------------------------------------------------------------
// 5. The cipher.
// ---------------------------------------------------------------------------

#[test]
fn key_exchange_sides_agree() {
    let (server, client) = (KeyExchange::new(), KeyExchange::new());
    let (server_pub, client_pub) = (server.public_base64(), client.public_base64());
    assert_ne!(server_pub, client_pub);
    assert_eq!(BASE64.decode(&server_pub).unwrap().len(), 32);
    let salt = imcore::wire::new_salt();
    assert_eq!(salt.len(), imcore::wire::SALT_LEN);
    assert!(salt.bytes().all(|b| b.is_ascii_alphanumeric()));

    let on_server = server.agree(&client_pub, &salt).unwrap();
    let on_client = client.agree(&server_pub, &salt).unwrap();
    let sealed = on_client.encrypt("你好".as_bytes());
    assert_eq!(
        on_server.decrypt(sealed.as_bytes()).unwrap(),
        "你好".as_bytes()
    );
    assert_eq!(on_server.encrypt(b"x"), on_client.encrypt(b"x"));
    assert_eq!(on_server.msg_key("v"), on_client.msg_key("v"));

    // A third party with its own key gets a different session.
    let other = KeyExchange::new()
        .agree(&KeyExchange::new().public_base64(), &salt)
        .unwrap();
    assert_ne!(other.encrypt(b"x"), on_client.encrypt(b"x"));
}

#[test]
fn agree_refuses_bad_keys() {
    let salt = "0123456789abcdef";
    let cases = [
        "not base64!!".to_string(),
        "@@@@".to_string(),
        String::new(),
        BASE64.encode([7u8; 31]),
        BASE64.encode([7u8; 33]),
        BASE64.encode([0u8; 32]), // the all-zero (low-order) point
        BASE64.encode({
            // u = 1, another low-order point
            let mut k = [0u8; 32];
            k[0] = 1;
            k
        }),
    ];
    for key in cases {
        let r = KeyExchange::new().agree(&key, salt);
        assert!(matches!(r, Err(WireError::Key(_))), "{key:?}: {r:?}");
    }
    // A good key with a short salt is refused too.
    let good = KeyExchange::new().public_base64();
    let r = KeyExchange::new().agree(&good, "short");
    assert!(matches!(r, Err(WireError::Key(_))), "{r:?}");
}

#[test]
fn derive_needs_a_16_byte_salt() {
    for salt in ["", "a", "0123456789abcde"] {
        let r = SessionCipher::derive(&kat_secret(), salt);
        assert!(matches!(r, Err(WireError::Key(_))), "{salt:?}: {r:?}");
    }
    // 16 is enough, and only the first 16 count.
    let a = SessionCipher::derive(&kat_secret(), "0123456789abcdef").unwrap();
    let b = SessionCipher::derive(&kat_secret(), "0123456789abcdefXYZ").unwrap();
    let c = SessionCipher::derive(&kat_secret(), "0123456789abcdeX").unwrap();
    assert_eq!(a.encrypt(b"m"), b.encrypt(b"m"));
    assert_ne!(a.encrypt(b"m"), c.encrypt(b"m"));
}

/// Reference values computed independently with node 20 and crypto-js
/// 4.2.0 (installed outside the repository), as the SDK's SecurityManager
/// and ConnectManager do it:
///
/// ```js
/// const secret = Buffer.from(Array.from({length: 32}, (_, i) => i + 1));
/// const aesKey = CryptoJS.MD5(secret.toString('base64')).toString().substring(0, 16);
/// const aesIV = 'abcdefghijklmnop';
/// const enc = m => CryptoJS.AES.encrypt(CryptoJS.enc.Utf8.parse(m),
///     CryptoJS.enc.Utf8.parse(aesKey), { keySize: 128 / 8,
///     iv: CryptoJS.enc.Utf8.parse(aesIV), mode: CryptoJS.mode.CBC,
///     padding: CryptoJS.pad.Pkcs7 }).toString();
/// enc('{"type":1,"content":"你好, wukong"}');
/// enc('');
/// // RECV msg key: md5(enc(messageID + messageSeq + clientMsgNo +
/// //   timestamp + fromUID + channelID + channelType + payload))
/// ```
///
/// aesKey came out as "290e6d8d49d83a7f".
#[test]
fn session_cipher_known_answer() {
    let cipher = SessionCipher::derive(&kat_secret(), KAT_SALT).unwrap();
    let plain = r#"{"type":1,"content":"你好, wukong"}"#;
    let sealed = "h2Y/AerblPXNxC5nyKIF9O97XMzTltiwCLH/G9vtu5WWX8pLRQ7r+ia+s6QXQv9/";
    assert_eq!(cipher.encrypt(plain.as_bytes()), sealed);
    assert_eq!(cipher.decrypt(sealed.as_bytes()).unwrap(), plain.as_bytes());
    assert_eq!(cipher.encrypt(b""), "saFYMuV4nqO9Mb6VmswpPA==");
    assert_eq!(cipher.decrypt(b"saFYMuV4nqO9Mb6VmswpPA==").unwrap(), b"");

    let recv = RecvPacket {
        flags: Flags::normal(),
        setting: Setting(0),
        msg_key: String::new(),
        from_uid: "u1".into(),
        channel_id: "u1".into(),
        channel_type: 1,
        client_msg_no: "cmn-2".into(),
        stream: None,
        message_id: 1_234_567_890_123,
        message_seq: 9,
        timestamp: 1_700_000_000,
        topic: None,
        payload: Bytes::from_static(sealed.as_bytes()),
    };
    assert_eq!(
        cipher.recv_msg_key(&recv).unwrap(),
        "66c2a16c3905d013371e03500b74d63e"
    );

    // Another salt or secret gives another ciphertext.
    let other_iv = SessionCipher::derive(&kat_secret(), "ABCDEFGHIJKLMNOP").unwrap();
    assert_ne!(other_iv.encrypt(plain.as_bytes()), sealed);
    let other_key = SessionCipher::derive(&[0u8; 32], KAT_SALT).unwrap();
    assert_ne!(other_key.encrypt(plain.as_bytes()), sealed);
}

#[test]
fn decrypt_refuses_bad_ciphertext() {
    let cipher = SessionCipher::derive(&kat_secret(), KAT_SALT).unwrap();
    let bad: [&[u8]; 6] = [
        b"not base64!",
        b"saFYMuV4nqO9Mb6VmswpPA=", // bad padding
        b"\xFF\xFE",
        &[b'A'; 22], // base64 without padding
        b"AAAA",     // 3 bytes: not a whole block
        b"h2Y/AerblPXNxC5nyKIF9O97XMzTltiwCLH/G9vtu5WWX8pLRQ7r+ia+s6QXQv9/AAAA", // 51 bytes
    ];
    for sealed in bad {
        let r = cipher.decrypt(sealed);
        assert!(matches!(r, Err(WireError::Cipher(_))), "{sealed:?}: {r:?}");
    }
    // The right length but the wrong key: the padding doesn't check out
    // (for this input; a random key could produce valid padding by chance).
    let other = SessionCipher::derive(&[9u8; 32], KAT_SALT).unwrap();
    let r = other.decrypt(b"saFYMuV4nqO9Mb6VmswpPA==");
    assert!(matches!(r, Err(WireError::Cipher(_))), "{r:?}");
}

#[test]
fn decrypt_of_empty_ciphertext_is_an_error() {
    // PKCS#7 always adds at least one block, so no ciphertext is empty.
    let cipher = SessionCipher::derive(&kat_secret(), KAT_SALT).unwrap();
    let r = cipher.decrypt(b"");
    assert!(matches!(r, Err(WireError::Cipher(_))), "{r:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cipher_round_trip(
        secret in prop::collection::vec(any::<u8>(), 0..64),
        salt in "[A-Za-z0-9]{16,24}",
        plain in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let cipher = SessionCipher::derive(&secret, &salt).unwrap();
        let sealed = cipher.encrypt(&plain);
        let raw = BASE64.decode(&sealed).expect("base64 text");
        prop_assert_eq!(raw.len(), (plain.len() / 16 + 1) * 16, "PKCS#7 length");
        prop_assert_eq!(cipher.decrypt(sealed.as_bytes()).unwrap(), plain);
    }

    #[test]
    fn decrypt_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
        let cipher = SessionCipher::derive(&kat_secret(), KAT_SALT).unwrap();
        match cipher.decrypt(&bytes) {
            Ok(plain) => {
                // Only a whole number of blocks, in canonical base64, can.
                let raw = BASE64.decode(&bytes).unwrap();
                prop_assert!(!raw.is_empty() && raw.len() % 16 == 0);
                prop_assert!(plain.len() < raw.len());
            }
            Err(e) => prop_assert!(matches!(e, WireError::Cipher(_)), "{:?}", e),
        }
    }

    #[test]
    fn decrypt_base64_of_wrong_length_is_cipher_error(
        raw in prop::collection::vec(any::<u8>(), 0..100)
            .prop_filter("not whole blocks", |r| r.len() % 16 != 0),
    ) {
        let cipher = SessionCipher::derive(&kat_secret(), KAT_SALT).unwrap();
        let r = cipher.decrypt(BASE64.encode(&raw).as_bytes());
        prop_assert!(matches!(r, Err(WireError::Cipher(_))), "{:?}", r);
    }

    #[test]
    fn decrypt_base64_of_whole_blocks_never_panics(
        blocks in prop::collection::vec(any::<[u8; 16]>(), 1..6),
    ) {
        let cipher = SessionCipher::derive(&kat_secret(), KAT_SALT).unwrap();
        let raw: Vec<u8> = blocks.concat();
        match cipher.decrypt(BASE64.encode(&raw).as_bytes()) {
            Ok(plain) => {
                // Then re-encrypting gives the same bytes back.
                prop_assert_eq!(BASE64.decode(cipher.encrypt(&plain)).unwrap(), raw);
            }
            Err(e) => prop_assert!(matches!(e, WireError::Cipher(_)), "{:?}", e),
        }
    }

    #[test]
    fn agree_with_arbitrary_text_never_panics(key in ".{0,64}", salt in ".{0,20}") {
        match KeyExchange::new().agree(&key, &salt) {
            Ok(_) => {
                let raw = BASE64.decode(key.trim()).unwrap();
                prop_assert_eq!(raw.len(), 32);
                prop_assert!(salt.len() >= 16);
            }
            Err(e) => prop_assert!(matches!(e, WireError::Key(_)), "{:?}", e),
        }
    }
}
