//! Message events (WuKongIM v2.2's `/message/event` and
//! `/message/eventsync`): a business server or an AI agent streams a reply
//! into a message it sent, and clients catch up on the events.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use imcore::event::{EventState, NewEvent, StoredEvent, Visibility};
use imcore::{ClientMsgNo, EventId, EventKey, Hub};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::api::{channel, flag, uid, ApiError, ApiResult};
use crate::App;

/// How often the server looks for streams left open, at most (and at
/// least twice per idle timeout).
pub const STALE_SCAN: Duration = Duration::from_secs(5);

#[derive(Deserialize)]
pub struct EventReq {
    channel_id: String,
    channel_type: u8,
    from_uid: String,
    client_msg_no: String,
    event_id: String,
    event_type: String,
    #[serde(default)]
    event_key: String,
    #[serde(default)]
    visibility: String,
    #[serde(default)]
    occurred_at: i64,
    payload: Option<Box<RawValue>>,
}

fn required<'a>(field: &'static str, value: &'a str) -> Result<&'a str, ApiError> {
    match value.trim() {
        "" => Err(ApiError::bad(format!("{field} must not be empty"))),
        v => Ok(v),
    }
}

/// `/message/event`: appends one event to the message `from_uid` sent with
/// `client_msg_no`; answers `{"status":200,"data":{…}}` as WuKongIM does.
pub async fn event_append(State(app): State<App>, Json(req): Json<EventReq>) -> ApiResult {
    let from = uid(required("from_uid", &req.from_uid)?)?;
    let addressed = channel(&req.channel_id, req.channel_type)?;
    let no = ClientMsgNo::new(required("client_msg_no", &req.client_msg_no)?)?;
    let id = EventId::new(required("event_id", &req.event_id)?)?;
    let payload = req.payload.as_ref().map_or("", |p| p.get()).to_owned();
    let mut event = NewEvent::new(
        addressed.clone(),
        no,
        id,
        &req.event_type,
        from.clone(),
        payload,
    )?
    .visibility(Visibility::parse(req.visibility.trim())?)
    .occurred_at_ms(req.occurred_at);
    if !req.event_key.trim().is_empty() {
        event = event.event_key(EventKey::new(req.event_key.trim())?);
    }
    let appended = app.hub.append_event(event).await?;
    Ok(Json(json!({
        "status": 200,
        "data": {
            "client_msg_no": appended.event.event.client_msg_no.as_str(),
            "event_key": appended.state.event_key.as_str(),
            "event_id": appended.event.event.event_id.as_str(),
            "msg_event_seq": appended.event.msg_event_seq,
            "stream_status": appended.state.status.as_str(),
            "channel_id": addressed.id.as_str(),
            "channel_type": addressed.kind.as_u8(),
            "from_uid": from.as_str(),
        }
    })))
}

#[derive(Deserialize)]
pub struct EventSyncReq {
    channel_id: String,
    channel_type: u8,
    /// The reader (WuKongIM: the other party of a person channel).
    #[serde(default)]
    from_uid: String,
    #[serde(default)]
    login_uid: String,
    client_msg_no: String,
    #[serde(default)]
    event_key: String,
    #[serde(default)]
    from_msg_event_seq: u64,
    #[serde(default)]
    limit: i64,
    #[serde(default)]
    include_private: u8,
}

/// WuKongIM's default and largest `/message/eventsync` page.
const EVENT_PAGE: (usize, usize) = (200, 2000);

/// `/message/eventsync`: the message's events after `from_msg_event_seq`.
pub async fn event_sync(State(app): State<App>, Json(req): Json<EventSyncReq>) -> ApiResult {
    let reader = match (req.login_uid.trim(), req.from_uid.trim()) {
        ("", "") => return Err(ApiError::bad("login_uid must not be empty")),
        ("", from) => uid(from)?,
        (login, _) => uid(login)?,
    };
    let ch = channel(&req.channel_id, req.channel_type)?;
    let no = ClientMsgNo::new(required("client_msg_no", &req.client_msg_no)?)?;
    let limit = match req.limit {
        n if n < 0 => return Err(ApiError::bad("limit must not be negative")),
        0 => EVENT_PAGE.0,
        n => usize::try_from(n).unwrap_or(EVENT_PAGE.1).min(EVENT_PAGE.1),
    };
    let key = req.event_key.trim();
    // One more than asked, to say whether there is more.
    let mut events = app
        .hub
        .sync_events(
            &reader,
            &ch,
            &no,
            req.from_msg_event_seq,
            limit + 1,
            flag(req.include_private),
        )
        .await?;
    let more = events.len() > limit;
    events.truncate(limit);
    let next = events
        .last()
        .map_or(req.from_msg_event_seq, |e| e.msg_event_seq);
    events.retain(|e| key.is_empty() || e.event.event_key.as_str() == key);
    Ok(Json(json!({
        "status": 200,
        "data": {
            "client_msg_no": no.as_str(),
            "from_msg_event_seq": req.from_msg_event_seq,
            "next_msg_event_seq": next,
            "more": u8::from(more),
            "events": events.iter().map(event_json).collect::<Vec<_>>(),
            "filtered_by_event_key": key,
        }
    })))
}

/// A payload as JSON when it is JSON, else as a string (WuKongIM's rule).
fn payload_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(bytes)))
}

fn event_json(e: &StoredEvent) -> Value {
    let mut v = json!({
        "msg_event_seq": e.msg_event_seq,
        "event_id": e.event.event_id.as_str(),
        "event_key": e.event.event_key.as_str(),
        "event_type": e.event.event_type,
        "visibility": e.event.visibility.as_str(),
        "occurred_at": e.event.occurred_at_ms,
    });
    if !e.event.payload.is_empty() {
        v["payload"] = payload_json(&e.event.payload);
    }
    v
}

/// What `/channel/messagesync` adds to a message with events: `event_meta`,
/// `event_sync_hint`, and the legacy `stream_data`/`end`/`end_reason`/
/// `error` from the `main` stream, as WuKongIM v2.2 answers.
pub fn add_event_meta(v: &mut Value, client_msg_no: &str, states: &[EventState]) {
    if states.is_empty() {
        return;
    }
    let finish = imcore::event::FINISH_KEY;
    let keys: Vec<&EventState> = states
        .iter()
        .filter(|s| s.event_key.as_str() != finish)
        .collect();
    let last = states
        .iter()
        .map(|s| s.last_msg_event_seq)
        .max()
        .unwrap_or(0);
    let open = keys.iter().filter(|s| !s.status.is_terminal()).count();
    let meta_keys: Vec<Value> = keys
        .iter()
        .map(|s| {
            let mut k = json!({
                "event_key": s.event_key.as_str(),
                "status": s.status.as_str(),
                "last_msg_event_seq": s.last_msg_event_seq,
            });
            if let Some(snapshot) = &s.snapshot {
                k["snapshot"] = payload_json(snapshot);
            }
            if s.end_reason != 0 {
                k["end_reason"] = json!(s.end_reason);
            }
            if !s.error.is_empty() {
                k["error"] = json!(s.error);
            }
            k
        })
        .collect();
    v["event_meta"] = json!({
        "has_events": true,
        "completed": states.iter().any(|s| s.event_key.as_str() == finish),
        "event_version": last,
        "last_msg_event_seq": last,
        "event_count": meta_keys.len(),
        "open_event_count": open,
        "events": meta_keys,
    });
    v["event_sync_hint"] = json!({ "client_msg_no": client_msg_no, "from_msg_event_seq": 0 });
    if let Some(main) = keys
        .iter()
        .find(|s| s.event_key.as_str() == imcore::event::DEFAULT_KEY)
    {
        if let Some(snapshot) = &main.snapshot {
            // WuKongIM's legacy field: the main stream's text, or its
            // snapshot, as bytes (base64 in JSON).
            let text = imcore::event::text_of(snapshot).map(String::into_bytes);
            let bytes = text.unwrap_or_else(|| snapshot.to_vec());
            v["stream_data"] = json!(crate::api::base64(&bytes));
        }
        v["end"] = json!(u8::from(main.status.is_terminal()));
        v["end_reason"] = json!(main.end_reason);
        v["error"] = json!(main.error);
    }
}

/// Ends the streams left open too long, every [`STALE_SCAN`] (or half the
/// idle timeout, if shorter), for as long as the server runs.
pub async fn close_stale_streams(hub: Hub) {
    let Some(idle) = hub.config().stream_idle_timeout else {
        return;
    };
    let every = STALE_SCAN.min(idle / 2).max(Duration::from_millis(50));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if hub.is_closing() {
            return;
        }
        match hub.close_stale_streams().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(streams = n, "ended message event streams left open"),
            Err(e) => tracing::warn!(error = %e, "looking for streams left open failed"),
        }
    }
}
