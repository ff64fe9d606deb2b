//! The packets of WuKongIM's binary protocol, version 2, with their encoding
//! and decoding.
//!
//! Every packet starts with a fixed header byte, `packet_type << 4` with the
//! [`Flags`] in the low four bits. PING and PONG are that byte alone; every
//! other packet follows it with its remaining length (an MQTT-style 7-bit
//! varint of at most four bytes) and a body of exactly that many bytes.
//! Integers are big-endian; strings are a big-endian `u16` byte length and
//! UTF-8.

use bytes::{BufMut, Bytes, BytesMut};

use crate::model::Flags;
pub use crate::model::Setting;
use crate::reason::ReasonCode;
use crate::wire::fields::{frame_len, put_varint, Reader, Writer};
use crate::wire::WireError;

/// The largest remaining length a 4-byte varint can say: 268,435,455.
pub const MAX_REMAINING_LENGTH: usize = 0x0FFF_FFFF;

/// The protocol version this module speaks (the JavaScript SDK's default).
pub const PROTOCOL_VERSION: u8 = 2;

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
        }
    }

    /// The type with number `n`; `None` for 0 (reserved) and 12 to 15.
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
            _ => return None,
        })
    }
}

/// CONNECT: the client logs in and offers its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectPacket {
    /// The protocol version (2).
    pub version: u8,
    /// The device kind: 0 app, 1 web, 2 pc.
    pub device_flag: u8,
    /// The device's id.
    pub device_id: String,
    /// The user.
    pub uid: String,
    /// The user's token, checked by the host's authenticator.
    pub token: String,
    /// The client's clock, in milliseconds.
    pub client_timestamp: i64,
    /// The client's Curve25519 public key, base64.
    pub client_key: String,
}

/// CONNACK: the server's answer to CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnackPacket {
    /// Server time minus client time, in milliseconds.
    pub time_diff: i64,
    /// [`ReasonCode::SUCCESS`], or why the login was refused.
    pub reason: ReasonCode,
    /// The server's Curve25519 public key, base64 (empty on refusal).
    pub server_key: String,
    /// The salt the client takes its AES IV from (empty on refusal).
    pub salt: String,
}

/// The stream fields of a RECV whose setting has [`Setting::STREAM`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamInfo {
    /// The stream's number.
    pub no: String,
    /// This piece's seq in the stream.
    pub seq: u32,
    /// 0 start, 1 ongoing, 2 end.
    pub flag: u8,
}

/// SEND: a message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendPacket {
    /// Header flags.
    pub flags: Flags,
    /// The setting byte.
    pub setting: Setting,
    /// The client's running number for the packet, echoed in SENDACK.
    pub client_seq: u32,
    /// The client's unique number for the message.
    pub client_msg_no: String,
    /// The stream number; present exactly when the setting says stream.
    pub stream_no: Option<String>,
    /// The channel id, as the sender addresses it.
    pub channel_id: String,
    /// The channel type.
    pub channel_type: u8,
    /// MD5 of the encrypted verification string, hex.
    pub msg_key: String,
    /// The topic; present exactly when the setting says topic.
    pub topic: Option<String>,
    /// The payload, encrypted and base64'd.
    pub payload: Bytes,
}

/// SENDACK: the server's answer to SEND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendackPacket {
    /// Header flags: WuKongIM answers a SEND with the SEND's own header
    /// flags.
    pub flags: Flags,
    /// The message's id (0 when refused or transient).
    pub message_id: i64,
    /// The SEND's `client_seq`.
    pub client_seq: u32,
    /// The message's channel seq (0 for commands and transient messages).
    pub message_seq: u32,
    /// [`ReasonCode::SUCCESS`], or why the message was refused.
    pub reason: ReasonCode,
}

/// RECV: a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecvPacket {
    /// Header flags.
    pub flags: Flags,
    /// The setting byte.
    pub setting: Setting,
    /// MD5 of the encrypted verification string, hex.
    pub msg_key: String,
    /// The sender.
    pub from_uid: String,
    /// The channel id, as the recipient addresses it.
    pub channel_id: String,
    /// The channel type.
    pub channel_type: u8,
    /// The sender's number for the message.
    pub client_msg_no: String,
    /// Stream fields; present exactly when the setting says stream.
    pub stream: Option<StreamInfo>,
    /// The message's id.
    pub message_id: i64,
    /// Its channel seq.
    pub message_seq: u32,
    /// Its server timestamp, in seconds.
    pub timestamp: i32,
    /// The topic; present exactly when the setting says topic.
    pub topic: Option<String>,
    /// The payload, encrypted and base64'd.
    pub payload: Bytes,
}

/// RECVACK: the client got a RECV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecvackPacket {
    /// Header flags (the client copies the RECV's).
    pub flags: Flags,
    /// The message's id.
    pub message_id: i64,
    /// The message's seq.
    pub message_seq: u32,
}

/// DISCONNECT: the connection ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisconnectPacket {
    /// Why, as a reason code (12: another login took its place).
    pub reason: ReasonCode,
    /// Why, for humans.
    pub reason_text: String,
}

/// SUB: the client subscribes to (or leaves) a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubPacket {
    /// The setting byte.
    pub setting: u8,
    /// The client's number for the request.
    pub client_msg_no: String,
    /// The channel id.
    pub channel_id: String,
    /// The channel type.
    pub channel_type: u8,
    /// 0 subscribe, 1 unsubscribe.
    pub action: u8,
    /// A free-form parameter.
    pub param: String,
}

/// SUBACK: the server's answer to SUB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubackPacket {
    /// The SUB's number.
    pub client_msg_no: String,
    /// The channel id.
    pub channel_id: String,
    /// The channel type.
    pub channel_type: u8,
    /// 0 subscribe, 1 unsubscribe.
    pub action: u8,
    /// [`ReasonCode::SUCCESS`], or why it was refused.
    pub reason: ReasonCode,
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

    /// Appends the packet's bytes to `dst`. Fails only when a string is
    /// longer than 65,535 bytes or the body longer than
    /// [`MAX_REMAINING_LENGTH`]; `dst` is then left as it was.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), WireError> {
        let header = (self.packet_type().as_u8() << 4) | self.flags().bits();
        if matches!(self, Packet::Ping | Packet::Pong) {
            dst.put_u8(header);
            return Ok(());
        }
        let mut body = BytesMut::new();
        self.encode_body(&mut Writer(&mut body))?;
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

    /// The packet's bytes, as one frame.
    pub fn to_bytes(&self) -> Result<Bytes, WireError> {
        let mut buf = BytesMut::new();
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }

    /// Decodes one packet from the start of `src`, refusing a body longer
    /// than `max_frame` before reading it. Returns the packet and how many
    /// bytes it took; [`WireError::Incomplete`] when `src` ends before the
    /// packet does. Never panics, and never allocates more than the frame.
    pub fn decode(src: &[u8], max_frame: usize) -> Result<(Packet, usize), WireError> {
        match frame_len(src, max_frame)? {
            None => Err(WireError::Incomplete),
            Some(len) => {
                let packet = Packet::decode_frame(Bytes::copy_from_slice(&src[..len]))?;
                Ok((packet, len))
            }
        }
    }

    /// Decodes a buffer holding exactly one whole packet (as
    /// [`frame_len`] measured it).
    pub(crate) fn decode_frame(frame: Bytes) -> Result<Packet, WireError> {
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
        let packet = match kind {
            PacketType::Connect => Packet::Connect(ConnectPacket {
                version: r.u8()?,
                device_flag: r.u8()?,
                device_id: r.string("device_id")?,
                uid: r.string("uid")?,
                token: r.string("token")?,
                client_timestamp: r.i64()?,
                client_key: r.string("client_key")?,
            }),
            PacketType::Connack => Packet::Connack(ConnackPacket {
                time_diff: r.i64()?,
                reason: r.u8()?.into(),
                server_key: r.string("server_key")?,
                salt: r.string("salt")?,
            }),
            PacketType::Send => {
                let setting = Setting(r.u8()?);
                Packet::Send(SendPacket {
                    flags,
                    setting,
                    client_seq: r.u32()?,
                    client_msg_no: r.string("client_msg_no")?,
                    stream_no: setting
                        .stream()
                        .then(|| r.string("stream_no"))
                        .transpose()?,
                    channel_id: r.string("channel_id")?,
                    channel_type: r.u8()?,
                    msg_key: r.string("msg_key")?,
                    topic: setting.topic().then(|| r.string("topic")).transpose()?,
                    payload: r.rest(),
                })
            }
            PacketType::Sendack => Packet::Sendack(SendackPacket {
                flags,
                message_id: r.i64()?,
                client_seq: r.u32()?,
                message_seq: r.u32()?,
                reason: r.u8()?.into(),
            }),
            PacketType::Recv => {
                let setting = Setting(r.u8()?);
                Packet::Recv(RecvPacket {
                    flags,
                    setting,
                    msg_key: r.string("msg_key")?,
                    from_uid: r.string("from_uid")?,
                    channel_id: r.string("channel_id")?,
                    channel_type: r.u8()?,
                    client_msg_no: r.string("client_msg_no")?,
                    stream: if setting.stream() {
                        Some(StreamInfo {
                            no: r.string("stream_no")?,
                            seq: r.u32()?,
                            flag: r.u8()?,
                        })
                    } else {
                        None
                    },
                    message_id: r.i64()?,
                    message_seq: r.u32()?,
                    timestamp: r.u32()? as i32,
                    topic: setting.topic().then(|| r.string("topic")).transpose()?,
                    payload: r.rest(),
                })
            }
            PacketType::Recvack => Packet::Recvack(RecvackPacket {
                flags,
                message_id: r.i64()?,
                message_seq: r.u32()?,
            }),
            PacketType::Disconnect => Packet::Disconnect(DisconnectPacket {
                reason: r.u8()?.into(),
                reason_text: r.string("reason")?,
            }),
            PacketType::Sub => Packet::Sub(SubPacket {
                setting: r.u8()?,
                client_msg_no: r.string("client_msg_no")?,
                channel_id: r.string("channel_id")?,
                channel_type: r.u8()?,
                action: r.u8()?,
                param: r.string("param")?,
            }),
            PacketType::Suback => Packet::Suback(SubackPacket {
                client_msg_no: r.string("client_msg_no")?,
                channel_id: r.string("channel_id")?,
                channel_type: r.u8()?,
                action: r.u8()?,
                reason: r.u8()?.into(),
            }),
            PacketType::Ping | PacketType::Pong => unreachable!("handled above"),
        };
        r.end()?;
        Ok(packet)
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        match self {
            Packet::Connect(p) => {
                w.u8(p.version);
                w.u8(p.device_flag);
                w.string(&p.device_id)?;
                w.string(&p.uid)?;
                w.string(&p.token)?;
                w.i64(p.client_timestamp);
                w.string(&p.client_key)?;
            }
            Packet::Connack(p) => {
                w.i64(p.time_diff);
                w.u8(p.reason.as_u8());
                w.string(&p.server_key)?;
                w.string(&p.salt)?;
            }
            Packet::Send(p) => {
                w.u8(p.setting.0);
                w.u32(p.client_seq);
                w.string(&p.client_msg_no)?;
                w.optional(p.setting.stream(), p.stream_no.as_deref(), "stream_no")?;
                w.string(&p.channel_id)?;
                w.u8(p.channel_type);
                w.string(&p.msg_key)?;
                w.optional(p.setting.topic(), p.topic.as_deref(), "topic")?;
                w.bytes(&p.payload);
            }
            Packet::Sendack(p) => {
                w.i64(p.message_id);
                w.u32(p.client_seq);
                w.u32(p.message_seq);
                w.u8(p.reason.as_u8());
            }
            Packet::Recv(p) => {
                w.u8(p.setting.0);
                w.string(&p.msg_key)?;
                w.string(&p.from_uid)?;
                w.string(&p.channel_id)?;
                w.u8(p.channel_type);
                w.string(&p.client_msg_no)?;
                match (p.setting.stream(), &p.stream) {
                    (true, Some(s)) => {
                        w.string(&s.no)?;
                        w.u32(s.seq);
                        w.u8(s.flag);
                    }
                    (false, None) => {}
                    _ => return Err(WireError::Inconsistent("stream")),
                }
                w.i64(p.message_id);
                w.u32(p.message_seq);
                w.u32(p.timestamp as u32);
                w.optional(p.setting.topic(), p.topic.as_deref(), "topic")?;
                w.bytes(&p.payload);
            }
            Packet::Recvack(p) => {
                w.i64(p.message_id);
                w.u32(p.message_seq);
            }
            Packet::Disconnect(p) => {
                w.u8(p.reason.as_u8());
                w.string(&p.reason_text)?;
            }
            Packet::Sub(p) => {
                w.u8(p.setting);
                w.string(&p.client_msg_no)?;
                w.string(&p.channel_id)?;
                w.u8(p.channel_type);
                w.u8(p.action);
                w.string(&p.param)?;
            }
            Packet::Suback(p) => {
                w.string(&p.client_msg_no)?;
                w.string(&p.channel_id)?;
                w.u8(p.channel_type);
                w.u8(p.action);
                w.u8(p.reason.as_u8());
            }
            Packet::Ping | Packet::Pong => {}
        }
        Ok(())
    }
}
