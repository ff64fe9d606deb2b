//! A hub message event as the EVENT packet WuKongIM sends to clients of
//! protocol version 5: the event's id, type and time, and a JSON body with
//! what a client needs to merge it into the message.

use bytes::Bytes;
use serde_json::json;

use crate::event::{StoredEvent, StreamStatus, STREAM_CANCEL, STREAM_ERROR};
use crate::model::Uid;
use crate::wire::packet::EventPacket;

/// The stream's status after `event`, as its type says.
fn status_after(event_type: &str) -> StreamStatus {
    match event_type {
        t if !crate::event::is_terminal(t) => StreamStatus::Open,
        STREAM_ERROR => StreamStatus::Error,
        STREAM_CANCEL => StreamStatus::Cancelled,
        _ => StreamStatus::Closed,
    }
}

/// `event` for `viewer`'s device: the channel as the viewer calls it, and
/// WuKongIM's push fields (`client_msg_no`, `channel_id`, `channel_type`,
/// `from_uid`, `event_key`, `msg_event_seq`, `stream_status`,
/// `visibility`, `payload`).
pub(super) fn event_packet(event: &StoredEvent, viewer: &Uid) -> EventPacket {
    let e = &event.event;
    let channel = e.channel.as_seen_by(viewer);
    let payload: serde_json::Value = serde_json::from_slice(&e.payload)
        .unwrap_or_else(|_| json!(String::from_utf8_lossy(&e.payload)));
    let data = json!({
        "client_msg_no": e.client_msg_no.as_str(),
        "channel_id": channel.id.as_str(),
        "channel_type": channel.kind.as_u8(),
        "from_uid": e.from_uid.as_str(),
        "event_key": e.event_key.as_str(),
        "msg_event_seq": event.msg_event_seq,
        "stream_status": status_after(&e.event_type).as_str(),
        "visibility": e.visibility.as_str(),
        "payload": payload,
    });
    EventPacket {
        id: e.event_id.as_str().to_owned(),
        event_type: e.event_type.clone(),
        timestamp: e.occurred_at_ms,
        data: Bytes::from(data.to_string()),
    }
}
