//! Catching up: a channel's history, and a user's pending commands.

use axum::extract::State;
use axum::Json;
use imcore::store::Page;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{channel, history_json, message_json, uid, ApiResult};
use crate::App;

#[derive(Deserialize)]
pub struct ChannelSyncReq {
    login_uid: String,
    channel_id: String,
    channel_type: u8,
    #[serde(default)]
    start_message_seq: u64,
    #[serde(default)]
    end_message_seq: u64,
    #[serde(default = "crate::api::hundred")]
    limit: usize,
    #[serde(default)]
    pull_mode: u8,
}

/// As WuKongIM: with `start_message_seq` and `end_message_seq` both 0, the
/// newest `limit` messages. Otherwise `pull_mode` 1 reads up (newer) from
/// `start_message_seq` (inclusive; 0 is the first) towards
/// `end_message_seq` (exclusive; 0 is no bound), and 0 reads down (older)
/// from `start_message_seq` (inclusive; 0 is the newest) towards
/// `end_message_seq` (exclusive). Messages come in ascending seq order;
/// `more` says whether the range holds more than was returned.
pub async fn channel_sync(State(app): State<App>, Json(req): Json<ChannelSyncReq>) -> ApiResult {
    let reader = uid(&req.login_uid)?;
    let ch = channel(&req.channel_id, req.channel_type)?;
    let limit = app
        .limits
        .list(req.limit.clamp(1, app.hub.config().max_page));
    let (start, end) = (req.start_message_seq, req.end_message_seq);
    let up = req.pull_mode == 1 && !(start == 0 && end == 0);
    let page = if up {
        Page::forward(start.max(1), limit)
    } else if start == 0 {
        Page::latest(limit)
    } else {
        Page::backward(start, limit)
    };
    let mut messages = app.hub.sync_channel(&reader, &ch, page).await?;
    let read = messages.len();
    if end != 0 {
        messages.retain(|m| match up {
            true => m.message_seq < end,
            false => m.message_seq > end,
        });
    }
    // A full page that the end bound did not cut may have more behind it.
    let more = read == limit && messages.len() == read;
    messages.sort_by_key(|m| m.message_seq);
    let seqs = (
        messages.first().map_or(0, |m| m.message_seq),
        messages.last().map_or(0, |m| m.message_seq),
    );
    Ok(Json(json!({
        "start_message_seq": seqs.0,
        "end_message_seq": seqs.1,
        "more": u8::from(more),
        "messages": messages.iter().map(|m| history_json(m, &reader)).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
pub struct CommandSyncReq {
    uid: String,
    #[serde(default)]
    message_seq: u64,
    #[serde(default = "crate::api::hundred")]
    limit: usize,
}

/// The user's pending commands; `message_seq` is the queue cursor.
pub async fn command_sync(State(app): State<App>, Json(req): Json<CommandSyncReq>) -> ApiResult {
    let user = uid(&req.uid)?;
    let commands = app
        .hub
        .sync_commands(&user, req.message_seq, app.limits.list(req.limit))
        .await?;
    let list: Vec<Value> = commands
        .iter()
        .map(|c| {
            let mut v = message_json(&c.message, &user);
            v["message_seq"] = json!(c.cursor);
            v
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

#[derive(Deserialize)]
pub struct CommandAckReq {
    uid: String,
    last_message_seq: u64,
}

pub async fn command_ack(State(app): State<App>, Json(req): Json<CommandAckReq>) -> ApiResult {
    let acked = app
        .hub
        .ack_commands(&uid(&req.uid)?, req.last_message_seq)
        .await?;
    Ok(Json(json!({ "acked": acked })))
}
