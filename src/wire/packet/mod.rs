//! The packets of WuKongIM's binary protocol, versions 1 to 5, with their
//! encoding and decoding, byte for byte as WuKongIMGoProto v1.2.3 does them
//! (see [`version`] for what each version adds).
//!
//! Every packet starts with a fixed header byte, `packet_type << 4` with the
//! [`Flags`] in the low four bits. PING and PONG are that byte alone; every
//! other packet follows it with its remaining length (an MQTT-style 7-bit
//! varint of at most four bytes) and a body of exactly that many bytes.
//! Integers are big-endian; strings are a big-endian `u16` byte length and
//! UTF-8.

mod control;
mod login;
mod message;
pub(crate) mod version;

use bytes::{BufMut, Bytes, BytesMut};

use crate::model::Flags;
use crate::wire::fields::{frame_len, put_varint, Reader, Writer};
use crate::wire::WireError;

pub use control::{DisconnectPacket, EventPacket, SubPacket, SubackPacket};
pub use login::{ConnackPacket, ConnectPacket};
pub use message::{RecvPacket, RecvackPacket, SendPacket, SendackPacket, Setting, StreamInfo};
pub use version::{
    connack_has_server_version, has_events, negotiate_version, LATEST_VERSION, PROTOCOL_VERSION,
};

/// The largest remaining length a 4-byte varint can say: 268,435,455.
pub const MAX_REMAINING_LENGTH: usize = 0x0FFF_FFFF;

/// A packet's type: the high four bits of its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// 1: client → server, log in.
    Connect,
    /// 2: server → client, the answer to CONNECT.
    Connack,
    /// 3: client → server, a message.
    Send,
    /// 4: server → client, the answer to SEND.
    Sendack,
    /// 5: server → client, a message.
    Recv,
    /// 6: client → server, the answer to RECV.
    Recvack,
    /// 7: client → server, heartbeat.
    Ping,
    /// 8: server → client, the answer to PING.
    Pong,
    /// 9: either way, the connection ends.
    Disconnect,
    /// 10: client → server, subscribe to a channel.
    Sub,
    /// 11: server → client, the answer to SUB.
    Suback,
    /// 12: server → client, an event (version 5).
    Event,
}

impl PacketType {
    /// The type's number.
    pub const fn as_u8(self) -> u8 {
        match self {
            PacketType::Connect => 1,
            PacketType::Connack => 2,
            PacketType::Send => 3,
            PacketType::Sendack => 4,
            PacketType::Recv => 5,
            PacketType::Recvack => 6,
            PacketType::Ping => 7,
            PacketType::Pong => 8,
            PacketType::Disconnect => 9,
            PacketType::Sub => 10,
            PacketType::Suback => 11,
            PacketType::Event => 12,
        }
    }

    /// The type with number `n`; `None` for 0 (reserved) and 13 to 15.
    pub const fn from_u8(n: u8) -> Option<Self> {
        Some(match n {
            1 => PacketType::Connect,
            2 => PacketType::Connack,
            3 => PacketType::Send,
            4 => PacketType::Sendack,
            5 => PacketType::Recv,
            6 => PacketType::Recvack,
            7 => PacketType::Ping,
            8 => PacketType::Pong,
            9 => PacketType::Disconnect,
            10 => PacketType::Sub,
            11 => PacketType::Suback,
            12 => PacketType::Event,
            _ => return None,
        })
    }
}

/// One packet of the protocol.
///
/// ```
/// use bytes::BytesMut;
/// use imcore::wire::{Packet, SendackPacket};
/// use imcore::{Flags, ReasonCode};
///
/// let ack = Packet::Sendack(SendackPacket {
///     flags: Flags::default(),
///     message_id: 42,
///     client_seq: 1,
///     message_seq: 7,
///     reason: ReasonCode::SUCCESS,
/// });
/// let mut buf = BytesMut::new();
/// ack.encode(&mut buf)?;
/// assert_eq!(buf[0], 4 << 4);
/// let (decoded, used) = Packet::decode(&buf, 1 << 20)?;
/// assert_eq!((decoded, used), (ack, buf.len()));
/// # Ok::<(), imcore::wire::WireError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT.
    Connect(ConnectPacket),
    /// CONNACK.
    Connack(ConnackPacket),
    /// SEND.
    Send(SendPacket),
    /// SENDACK.
    Sendack(SendackPacket),
    /// RECV.
    Recv(RecvPacket),
    /// RECVACK.
    Recvack(RecvackPacket),
    /// PING.
    Ping,
    /// PONG.
    Pong,
    /// DISCONNECT.
    Disconnect(DisconnectPacket),
    /// SUB.
    Sub(SubPacket),
    /// SUBACK.
    Suback(SubackPacket),
    /// EVENT (only ever sent to sessions of version 5 or later).
    Event(EventPacket),
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::Connack(_) => PacketType::Connack,
            Packet::Send(_) => PacketType::Send,
            Packet::Sendack(_) => PacketType::Sendack,
            Packet::Recv(_) => PacketType::Recv,
            Packet::Recvack(_) => PacketType::Recvack,
            Packet::Ping => PacketType::Ping,
            Packet::Pong => PacketType::Pong,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Sub(_) => PacketType::Sub,
            Packet::Suback(_) => PacketType::Suback,
            Packet::Event(_) => PacketType::Event,
        }
    }

    /// The header flags the packet carries (SEND, SENDACK, RECV and
    /// RECVACK have them; the others send none).
    pub fn flags(&self) -> Flags {
        match self {
            Packet::Send(p) => p.flags,
            Packet::Recv(p) => p.flags,
            Packet::Recvack(p) => p.flags,
            Packet::Sendack(p) => p.flags,
            _ => Flags::from_bits(0),
        }
    }

    /// The header byte: the type in the high four bits, the flags (for a
    /// CONNACK, whether a server version follows) in the low four.
    fn header(&self) -> u8 {
        let low = match self {
            Packet::Connack(p) => p.header_bits(),
            _ => self.flags().bits(),
        };
        (self.packet_type().as_u8() << 4) | low
    }

    /// Appends the packet's bytes at [`PROTOCOL_VERSION`] (2) to `dst`:
    /// [`Packet::encode_at`] with that version.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), WireError> {
        self.encode_at(PROTOCOL_VERSION, dst)
    }

    /// Appends the packet's bytes as protocol `version` lays them out to
    /// `dst`; fields the version does not carry are left out. Fails only
    /// when a string is longer than 65,535 bytes, an optional field
    /// disagrees with its setting bit, or the body is longer than
    /// [`MAX_REMAINING_LENGTH`]; `dst` is then left as it was.
    pub fn encode_at(&self, version: u8, dst: &mut BytesMut) -> Result<(), WireError> {
        let header = self.header();
        if matches!(self, Packet::Ping | Packet::Pong) {
            dst.put_u8(header);
            return Ok(());
        }
        let mut body = BytesMut::new();
        self.encode_body(&mut Writer(&mut body), version)?;
        let len = body.len();
        if len > MAX_REMAINING_LENGTH {
            return Err(WireError::Oversized {
                len,
                max: MAX_REMAINING_LENGTH,
            });
        }
        dst.reserve(1 + 4 + len);
        dst.put_u8(header);
        put_varint(dst, len);
        dst.put_slice(&body);
        Ok(())
    }

    /// The packet's bytes at [`PROTOCOL_VERSION`], as one frame.
    pub fn to_bytes(&self) -> Result<Bytes, WireError> {
        self.to_bytes_at(PROTOCOL_VERSION)
    }

    /// The packet's bytes at protocol `version`, as one frame.
    pub fn to_bytes_at(&self, version: u8) -> Result<Bytes, WireError> {
        let mut buf = BytesMut::new();
        self.encode_at(version, &mut buf)?;
        Ok(buf.freeze())
    }

    /// Decodes one packet at [`PROTOCOL_VERSION`]: [`Packet::decode_at`]
    /// with that version.
    pub fn decode(src: &[u8], max_frame: usize) -> Result<(Packet, usize), WireError> {
        Packet::decode_at(src, max_frame, PROTOCOL_VERSION)
    }

    /// Decodes one packet, laid out as protocol `version` does, from the
    /// start of `src`, refusing a body longer than `max_frame` before
    /// reading it. Returns the packet and how many bytes it took;
    /// [`WireError::Incomplete`] when `src` ends before the packet does.
    /// Never panics, and never allocates more than the frame.
    pub fn decode_at(
        src: &[u8],
        max_frame: usize,
        version: u8,
    ) -> Result<(Packet, usize), WireError> {
        match frame_len(src, max_frame)? {
            None => Err(WireError::Incomplete),
            Some(len) => {
                let frame = Bytes::copy_from_slice(&src[..len]);
                Ok((Packet::decode_frame(frame, version)?, len))
            }
        }
    }

    /// Decodes a buffer holding exactly one whole packet (as
    /// [`frame_len`] measured it), laid out as protocol `version` does.
    pub(crate) fn decode_frame(frame: Bytes, version: u8) -> Result<Packet, WireError> {
        let mut r = Reader(frame);
        let header = r.u8()?;
        let kind = PacketType::from_u8(header >> 4).ok_or(WireError::UnknownType(header >> 4))?;
        let flags = Flags::from_bits(header);
        if matches!(kind, PacketType::Ping | PacketType::Pong) {
            r.end()?;
            return Ok(if kind == PacketType::Ping {
                Packet::Ping
            } else {
                Packet::Pong
            });
        }
        r.varint()?;
        let r = &mut r;
        let packet = match kind {
            PacketType::Connect => Packet::Connect(login::read_connect(r)?),
            PacketType::Connack => Packet::Connack(login::read_connack(r, header, version)?),
            PacketType::Send => Packet::Send(message::read_send(r, flags, version)?),
            PacketType::Sendack => Packet::Sendack(message::read_sendack(r, flags)?),
            PacketType::Recv => Packet::Recv(message::read_recv(r, flags, version)?),
            PacketType::Recvack => Packet::Recvack(message::read_recvack(r, flags)?),
            PacketType::Disconnect => Packet::Disconnect(control::read_disconnect(r)?),
            PacketType::Sub => Packet::Sub(control::read_sub(r)?),
            PacketType::Suback => Packet::Suback(control::read_suback(r)?),
            PacketType::Event => Packet::Event(control::read_event(r)?),
            PacketType::Ping | PacketType::Pong => unreachable!("handled above"),
        };
        r.end()?;
        Ok(packet)
    }

    fn encode_body(&self, w: &mut Writer<'_>, version: u8) -> Result<(), WireError> {
        match self {
            Packet::Connect(p) => login::write_connect(p, w),
            Packet::Connack(p) => login::write_connack(p, w, version),
            Packet::Send(p) => message::write_send(p, w, version),
            Packet::Sendack(p) => {
                message::write_sendack(p, w);
                Ok(())
            }
            Packet::Recv(p) => message::write_recv(p, w, version),
            Packet::Recvack(p) => {
                message::write_recvack(p, w);
                Ok(())
            }
            Packet::Disconnect(p) => control::write_disconnect(p, w),
            Packet::Sub(p) => control::write_sub(p, w),
            Packet::Suback(p) => control::write_suback(p, w),
            Packet::Event(p) => control::write_event(p, w),
            Packet::Ping | Packet::Pong => Ok(()),
        }
    }
}
