//! How events change their stream's state, and how a snapshot is folded
//! from them: the same rules on every backend.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{
    EventState, StoredEvent, StreamStatus, STREAM_CANCEL, STREAM_CLOSE, STREAM_DELTA, STREAM_ERROR,
    STREAM_FINISH, STREAM_SNAPSHOT,
};

/// The state of `event`'s stream after it, from the state before it
/// (`None` for the stream's first event), at `now_ms`.
///
/// A stream's status only moves from open to an end; an ended stream takes
/// no more events (the store answers [`EventOutcome::Ended`] without
/// calling this). A `stream.snapshot`, or an ending event whose payload
/// has a `snapshot`, replaces the snapshot; deltas leave the stored
/// snapshot as it is and are folded in when it is read ([`fold`]).
///
/// [`EventOutcome::Ended`]: super::EventOutcome::Ended
pub fn next_state(before: Option<EventState>, event: &StoredEvent, now_ms: i64) -> EventState {
    let e = &event.event;
    let mut state = before.unwrap_or_else(|| EventState {
        event_key: e.event_key.clone(),
        status: StreamStatus::Open,
        last_msg_event_seq: 0,
        last_event_id: e.event_id.clone(),
        updated_at_ms: now_ms,
        snapshot: None,
        snapshot_seq: 0,
        end_reason: 0,
        error: String::new(),
    });
    state.last_msg_event_seq = event.msg_event_seq;
    state.last_event_id = e.event_id.clone();
    state.updated_at_ms = now_ms;
    let fields = object(&e.payload);
    let replace = |state: &mut EventState, snapshot: Option<Bytes>| {
        if let Some(snapshot) = snapshot {
            state.snapshot = Some(snapshot);
            state.snapshot_seq = event.msg_event_seq;
        }
    };
    match e.event_type.as_str() {
        STREAM_SNAPSHOT => replace(&mut state, Some(e.payload.clone())),
        STREAM_CLOSE | STREAM_FINISH => {
            replace(&mut state, embedded_snapshot(&fields));
            state.status = StreamStatus::Closed;
            state.end_reason = end_reason(&fields);
        }
        STREAM_ERROR => {
            replace(&mut state, embedded_snapshot(&fields));
            state.status = StreamStatus::Error;
            state.end_reason = end_reason(&fields);
            state.error = fields
                .as_ref()
                .and_then(|f| f.get("error"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
        }
        STREAM_CANCEL => {
            replace(&mut state, embedded_snapshot(&fields));
            state.status = StreamStatus::Cancelled;
            state.end_reason = end_reason(&fields);
        }
        _ => {}
    }
    state
}

/// The snapshot of a stream: `base` (the stored snapshot) with the deltas
/// among `after` (the stream's events after the snapshot's seq, ascending)
/// folded in. A text delta (`{"kind":"text","delta":"…"}`) appends to the
/// text of `{"kind":"text","text":"…"}`; any other delta replaces the
/// snapshot with its payload, as WuKongIM's merge rules say.
///
/// ```
/// # use imcore::event::{fold, text_of};
/// let base = Some(bytes::Bytes::from_static(br#"{"kind":"text","text":"Hel"}"#));
/// assert_eq!(text_of(&fold(base, &[]).unwrap()).as_deref(), Some("Hel"));
/// ```
pub fn fold(base: Option<Bytes>, after: &[StoredEvent]) -> Option<Bytes> {
    let deltas = after.iter().filter(|e| e.event.event_type == STREAM_DELTA);
    let mut text: Option<String> = None;
    let mut snapshot = base;
    for e in deltas {
        let fields = object(&e.event.payload);
        let delta = fields.as_ref().and_then(|f| {
            match (f.get("kind").and_then(Value::as_str), f.get("delta")) {
                (Some("text"), Some(Value::String(d))) => Some(d.as_str()),
                _ => None,
            }
        });
        match delta {
            Some(d) => {
                let t = text.get_or_insert_with(|| {
                    snapshot.as_deref().and_then(text_of).unwrap_or_default()
                });
                t.push_str(d);
            }
            None => {
                text = None;
                snapshot = Some(e.event.payload.clone());
            }
        }
    }
    match text {
        Some(text) => Some(Bytes::from(
            serde_json::json!({ "kind": "text", "text": text }).to_string(),
        )),
        None => snapshot,
    }
}

/// The text of a text snapshot (`{"kind":"text","text":"…"}`).
pub fn text_of(snapshot: &[u8]) -> Option<String> {
    let fields = object(snapshot)?;
    match (fields.get("kind"), fields.get("text")) {
        (Some(Value::String(k)), Some(Value::String(t))) if k == "text" => Some(t.clone()),
        _ => None,
    }
}

fn object(payload: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(payload) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

fn embedded_snapshot(fields: &Option<Map<String, Value>>) -> Option<Bytes> {
    let snapshot = fields.as_ref()?.get("snapshot")?;
    Some(Bytes::from(snapshot.to_string()))
}

fn end_reason(fields: &Option<Map<String, Value>>) -> u8 {
    let value = fields.as_ref().and_then(|f| f.get("end_reason"));
    match value {
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u8::try_from(n).ok()),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{NewEvent, STREAM_OPEN};
    use crate::{Channel, ClientMsgNo, EventId, Uid};

    fn event(seq: u64, kind: &str, payload: &str) -> StoredEvent {
        StoredEvent {
            msg_event_seq: seq,
            event: NewEvent::new(
                Channel::group("g").unwrap(),
                ClientMsgNo::new("m").unwrap(),
                EventId::new(format!("e{seq}")).unwrap(),
                kind,
                Uid::new("bot").unwrap(),
                payload.to_owned(),
            )
            .unwrap(),
        }
    }

    #[test]
    fn text_deltas_fold_onto_the_last_snapshot() {
        let events = [
            event(1, STREAM_OPEN, r#"{"kind":"text"}"#),
            event(2, STREAM_DELTA, r#"{"kind":"text","delta":"Hel"}"#),
            event(3, STREAM_DELTA, r#"{"kind":"text","delta":"lo"}"#),
        ];
        let text = fold(None, &events).unwrap();
        assert_eq!(text_of(&text).as_deref(), Some("Hello"));
        let base = Some(Bytes::from_static(br#"{"kind":"text","text":"Say: "}"#));
        let text = fold(base, &events[1..]).unwrap();
        assert_eq!(text_of(&text).as_deref(), Some("Say: Hello"));
    }

    #[test]
    fn a_stream_ends_once_with_its_reason_and_error() {
        let mut state = None;
        for e in [
            event(1, STREAM_OPEN, "{}"),
            event(2, STREAM_SNAPSHOT, r#"{"kind":"text","text":"Hi"}"#),
            event(
                3,
                STREAM_ERROR,
                r#"{"error":"model timeout","end_reason":"2"}"#,
            ),
        ] {
            state = Some(next_state(state, &e, 7));
        }
        let state = state.unwrap();
        assert_eq!(state.status, StreamStatus::Error);
        assert_eq!(state.error, "model timeout");
        assert_eq!(state.end_reason, 2);
        assert_eq!(state.snapshot_seq, 2, "the snapshot is the last one given");
        assert_eq!(state.last_msg_event_seq, 3);
    }
}
