//! The message packets: SEND and its SENDACK, RECV and its RECVACK.

use bytes::Bytes;

use crate::model::Flags;
pub use crate::model::Setting;
use crate::reason::ReasonCode;
use crate::wire::fields::{Reader, Writer};
use crate::wire::packet::version::{has_expire, has_stream_fields};
use crate::wire::WireError;

/// The stream fields of a RECV whose setting has [`Setting::STREAM`]
/// (versions 2 to 4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamInfo {
    /// The stream's number.
    pub no: String,
    /// This piece's number in the stream (WuKongIMGoProto's `StreamId`),
    /// a u64 on the wire.
    pub seq: u64,
    /// 0 start, 1 ongoing, 2 end.
    pub flag: u8,
}

/// SEND: a message from the client.
///
/// Fields that the version does not carry are not written, and read back
/// as their defaults.
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
    /// The stream number: on the wire at versions 2 to 4, and there
    /// present exactly when the setting says stream.
    pub stream_no: Option<String>,
    /// The channel id, as the sender addresses it.
    pub channel_id: String,
    /// The channel type.
    pub channel_type: u8,
    /// How long the message lives, in seconds (0: for ever): on the wire
    /// from version 3. The hub keeps no expiry; it is read and dropped.
    pub expire: u32,
    /// MD5 of the encrypted verification string, hex.
    pub msg_key: String,
    /// The topic; present exactly when the setting says topic.
    pub topic: Option<String>,
    /// The payload, encrypted and base64'd.
    pub payload: Bytes,
}

/// SENDACK: the server's answer to SEND. Its layout is the same at every
/// version.
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
///
/// Fields that the version does not carry are not written, and read back
/// as their defaults.
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
    /// How long the message lives, in seconds (0: for ever): on the wire
    /// from version 3.
    pub expire: u32,
    /// The sender's number for the message.
    pub client_msg_no: String,
    /// Stream fields: on the wire at versions 2 to 4, and there present
    /// exactly when the setting says stream.
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

/// RECVACK: the client got a RECV. Its layout is the same at every
/// version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecvackPacket {
    /// Header flags (the client copies the RECV's).
    pub flags: Flags,
    /// The message's id.
    pub message_id: i64,
    /// The message's seq.
    pub message_seq: u32,
}

pub(super) fn read_send(
    r: &mut Reader,
    flags: Flags,
    version: u8,
) -> Result<SendPacket, WireError> {
    let setting = Setting(r.u8()?);
    let streamed = has_stream_fields(version) && setting.stream();
    Ok(SendPacket {
        flags,
        setting,
        client_seq: r.u32()?,
        client_msg_no: r.string("client_msg_no")?,
        stream_no: streamed.then(|| r.string("stream_no")).transpose()?,
        channel_id: r.string("channel_id")?,
        channel_type: r.u8()?,
        expire: if has_expire(version) { r.u32()? } else { 0 },
        msg_key: r.string("msg_key")?,
        topic: setting.topic().then(|| r.string("topic")).transpose()?,
        payload: r.rest(),
    })
}

pub(super) fn write_send(p: &SendPacket, w: &mut Writer<'_>, version: u8) -> Result<(), WireError> {
    w.u8(p.setting.0);
    w.u32(p.client_seq);
    w.string(&p.client_msg_no)?;
    if has_stream_fields(version) {
        w.optional(p.setting.stream(), p.stream_no.as_deref(), "stream_no")?;
    }
    w.string(&p.channel_id)?;
    w.u8(p.channel_type);
    if has_expire(version) {
        w.u32(p.expire);
    }
    w.string(&p.msg_key)?;
    w.optional(p.setting.topic(), p.topic.as_deref(), "topic")?;
    w.bytes(&p.payload);
    Ok(())
}

pub(super) fn read_sendack(r: &mut Reader, flags: Flags) -> Result<SendackPacket, WireError> {
    Ok(SendackPacket {
        flags,
        message_id: r.i64()?,
        client_seq: r.u32()?,
        message_seq: r.u32()?,
        reason: r.u8()?.into(),
    })
}

pub(super) fn write_sendack(p: &SendackPacket, w: &mut Writer<'_>) {
    w.i64(p.message_id);
    w.u32(p.client_seq);
    w.u32(p.message_seq);
    w.u8(p.reason.as_u8());
}

pub(super) fn read_recv(
    r: &mut Reader,
    flags: Flags,
    version: u8,
) -> Result<RecvPacket, WireError> {
    let setting = Setting(r.u8()?);
    let streamed = has_stream_fields(version) && setting.stream();
    Ok(RecvPacket {
        flags,
        setting,
        msg_key: r.string("msg_key")?,
        from_uid: r.string("from_uid")?,
        channel_id: r.string("channel_id")?,
        channel_type: r.u8()?,
        expire: if has_expire(version) { r.u32()? } else { 0 },
        client_msg_no: r.string("client_msg_no")?,
        stream: if streamed {
            let flag = r.u8()?;
            Some(StreamInfo {
                no: r.string("stream_no")?,
                seq: r.u64()?,
                flag,
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

pub(super) fn write_recv(p: &RecvPacket, w: &mut Writer<'_>, version: u8) -> Result<(), WireError> {
    w.u8(p.setting.0);
    w.string(&p.msg_key)?;
    w.string(&p.from_uid)?;
    w.string(&p.channel_id)?;
    w.u8(p.channel_type);
    if has_expire(version) {
        w.u32(p.expire);
    }
    w.string(&p.client_msg_no)?;
    if has_stream_fields(version) {
        match (p.setting.stream(), &p.stream) {
            (true, Some(s)) => {
                w.u8(s.flag);
                w.string(&s.no)?;
                w.u64(s.seq);
            }
            (false, None) => {}
            _ => return Err(WireError::Inconsistent("stream")),
        }
    }
    w.i64(p.message_id);
    w.u32(p.message_seq);
    w.u32(p.timestamp as u32);
    w.optional(p.setting.topic(), p.topic.as_deref(), "topic")?;
    w.bytes(&p.payload);
    Ok(())
}

pub(super) fn read_recvack(r: &mut Reader, flags: Flags) -> Result<RecvackPacket, WireError> {
    Ok(RecvackPacket {
        flags,
        message_id: r.i64()?,
        message_seq: r.u32()?,
    })
}

pub(super) fn write_recvack(p: &RecvackPacket, w: &mut Writer<'_>) {
    w.i64(p.message_id);
    w.u32(p.message_seq);
}
