//! The other packets: DISCONNECT, SUB and SUBACK, EVENT. Their layouts are
//! the same at every version; only sessions of version 5 or later are sent
//! EVENT.

use bytes::Bytes;

use crate::reason::ReasonCode;
use crate::wire::fields::{Reader, Writer};
use crate::wire::WireError;

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

/// EVENT (type 12, protocol version 5): something happened that the
/// client should know of, such as a message's update. Server → client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventPacket {
    /// The event's id.
    pub id: String,
    /// What kind of event it is, as a name.
    pub event_type: String,
    /// When it happened, in milliseconds (an i64 on the wire).
    pub timestamp: i64,
    /// Its data (the rest of the packet), as the event type defines it.
    pub data: Bytes,
}

pub(super) fn read_disconnect(r: &mut Reader) -> Result<DisconnectPacket, WireError> {
    Ok(DisconnectPacket {
        reason: r.u8()?.into(),
        reason_text: r.string("reason")?,
    })
}

pub(super) fn write_disconnect(p: &DisconnectPacket, w: &mut Writer<'_>) -> Result<(), WireError> {
    w.u8(p.reason.as_u8());
    w.string(&p.reason_text)
}

pub(super) fn read_sub(r: &mut Reader) -> Result<SubPacket, WireError> {
    Ok(SubPacket {
        setting: r.u8()?,
        client_msg_no: r.string("client_msg_no")?,
        channel_id: r.string("channel_id")?,
        channel_type: r.u8()?,
        action: r.u8()?,
        param: r.string("param")?,
    })
}

pub(super) fn write_sub(p: &SubPacket, w: &mut Writer<'_>) -> Result<(), WireError> {
    w.u8(p.setting);
    w.string(&p.client_msg_no)?;
    w.string(&p.channel_id)?;
    w.u8(p.channel_type);
    w.u8(p.action);
    w.string(&p.param)
}

pub(super) fn read_suback(r: &mut Reader) -> Result<SubackPacket, WireError> {
    Ok(SubackPacket {
        client_msg_no: r.string("client_msg_no")?,
        channel_id: r.string("channel_id")?,
        channel_type: r.u8()?,
        action: r.u8()?,
        reason: r.u8()?.into(),
    })
}

pub(super) fn write_suback(p: &SubackPacket, w: &mut Writer<'_>) -> Result<(), WireError> {
    w.string(&p.client_msg_no)?;
    w.string(&p.channel_id)?;
    w.u8(p.channel_type);
    w.u8(p.action);
    w.u8(p.reason.as_u8());
    Ok(())
}

pub(super) fn read_event(r: &mut Reader) -> Result<EventPacket, WireError> {
    Ok(EventPacket {
        id: r.string("event id")?,
        event_type: r.string("event type")?,
        timestamp: r.i64()?,
        data: r.rest(),
    })
}

pub(super) fn write_event(p: &EventPacket, w: &mut Writer<'_>) -> Result<(), WireError> {
    w.string(&p.id)?;
    w.string(&p.event_type)?;
    w.i64(p.timestamp);
    w.bytes(&p.data);
    Ok(())
}
