//! Conversation reads by channel, as WuKongIM's business API makes them:
//! `/conversation/syncMessages` (recent messages of several channels),
//! `/conversation/channels` (a user's conversation channels) and
//! `/conversation/syncByChannels` (conversations of the channels named).

use axum::extract::State;
use axum::Json;
use imcore::{Channel, HistoryMessage, Uid};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{uid, ApiError, ApiResult};
use crate::messages::{shown, stored};
use crate::App;

/// The most channels one request names.
const MAX_CHANNELS: usize = 1000;

/// WuKongIM's default number of recent messages per channel.
const MSG_COUNT: usize = 15;

/// The most conversations `/conversation/channels` lists (and fewer if
/// `--max-list` says so).
const CONVERSATIONS: usize = 1000;

fn msg_count(app: &App, asked: i64) -> usize {
    let asked = usize::try_from(asked).ok().filter(|n| *n > 0);
    asked.unwrap_or(MSG_COUNT).min(app.hub.config().max_page)
}

fn user(s: &str) -> Result<Uid, ApiError> {
    if s.is_empty() {
        return Err(ApiError::bad("uid cannot be empty"));
    }
    uid(s)
}

fn check_channels(n: usize) -> Result<(), ApiError> {
    match n {
        0 => Err(ApiError::bad("channels cannot be empty")),
        n if n > MAX_CHANNELS => Err(ApiError::bad(format!(
            "at most {MAX_CHANNELS} channels a request"
        ))),
        _ => Ok(()),
    }
}

/// The highest seq among `messages` that `uid` sent; 0 if none.
fn own_last_seq(messages: &[HistoryMessage], uid: &Uid) -> u64 {
    let own = messages.iter().filter(|m| m.from_uid == *uid);
    own.map(|m| m.message_seq).max().unwrap_or(0)
}

/// One channel of `/conversation/syncMessages`.
#[derive(Deserialize)]
pub struct RecentReq {
    channel_id: String,
    channel_type: u8,
    #[serde(default)]
    last_msg_seq: u64,
}

/// `{uid, channels: [{channel_id, channel_type, last_msg_seq}],
/// msg_count, order_by_last}`.
#[derive(Deserialize)]
pub struct SyncMessagesReq {
    #[serde(default)]
    uid: String,
    channels: Vec<RecentReq>,
    #[serde(default)]
    msg_count: i64,
    #[serde(default)]
    order_by_last: u8,
}

/// `/conversation/syncMessages`: for each channel, up to `msg_count`
/// (default 15) of its messages from `last_msg_seq` on; with
/// `order_by_last` 1 the newest of them, newest first, otherwise the
/// oldest, oldest first. `user_last_msg_seq` is the newest of them that
/// `uid` sent.
pub async fn sync_messages(State(app): State<App>, Json(req): Json<SyncMessagesReq>) -> ApiResult {
    let reader = user(&req.uid)?;
    check_channels(req.channels.len())?;
    let count = msg_count(&app, req.msg_count);
    let mut out = Vec::with_capacity(req.channels.len());
    for c in &req.channels {
        let ch = stored(&c.channel_id, c.channel_type, &req.uid)?;
        let newest_first = req.order_by_last == 1;
        let messages = app
            .hub
            .recent_messages(&ch, c.last_msg_seq, count, newest_first)
            .await?;
        out.push(json!({
            "channel_id": c.channel_id,
            "channel_type": c.channel_type,
            "messages": messages.iter().map(shown).collect::<Vec<_>>(),
            "user_last_msg_seq": own_last_seq(&messages, &reader),
        }));
    }
    Ok(Json(Value::Array(out)))
}

/// `{uid}`.
#[derive(Deserialize)]
pub struct UidReq {
    #[serde(default)]
    uid: String,
}

/// `/conversation/channels`: the channels of the user's conversations,
/// person channels in their stored form (`a@b`), as WuKongIM lists them.
pub async fn channels(State(app): State<App>, Json(req): Json<UidReq>) -> ApiResult {
    let reader = user(&req.uid)?;
    let limit = app.limits.list(CONVERSATIONS);
    let views = app.hub.sync_conversations(&reader, 0, limit).await?;
    let list: Vec<Value> = views
        .iter()
        .filter(|v| !v.deleted)
        .map(|v| {
            let ch = &v.conversation.channel;
            json!({ "channel_id": ch.id.as_str(), "channel_type": ch.kind.as_u8() })
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

/// One channel of `/conversation/syncByChannels`.
#[derive(Deserialize)]
pub struct ChannelRef {
    channel_id: String,
    channel_type: u8,
}

/// `{uid, channels: [{channel_id, channel_type}], msg_count}`.
#[derive(Deserialize)]
pub struct SyncByChannelsReq {
    #[serde(default)]
    uid: String,
    channels: Vec<ChannelRef>,
    #[serde(default)]
    msg_count: i64,
}

/// `/conversation/syncByChannels`: the user's conversation in each
/// channel named, in the order named (one with no messages comes with
/// zeros and no recents), each with its `msg_count` (default 15) newest
/// messages, newest first, as `/conversation/sync` shows conversations.
/// `readed_to_msg_seq` is the last seq less the unread count, or the last
/// seq when the user sent the last message.
pub async fn sync_by_channels(
    State(app): State<App>,
    Json(req): Json<SyncByChannelsReq>,
) -> ApiResult {
    let reader = user(&req.uid)?;
    check_channels(req.channels.len())?;
    let count = msg_count(&app, req.msg_count);
    let mut out = Vec::with_capacity(req.channels.len());
    for c in &req.channels {
        let ch = stored(&c.channel_id, c.channel_type, &req.uid)?;
        let recents = app.hub.recent_messages(&ch, 0, count, true).await?;
        let conversation = app.hub.conversation(&reader, &ch).await?;
        out.push(entry(&reader, &ch, conversation.as_ref(), &recents));
    }
    Ok(Json(Value::Array(out)))
}

fn entry(
    reader: &Uid,
    ch: &Channel,
    conversation: Option<&imcore::store::Conversation>,
    recents: &[HistoryMessage],
) -> Value {
    let seen = ch.as_seen_by(reader);
    let last = recents.first();
    let last_seq = last.map_or(0, |m| m.message_seq);
    let (mut unread, version) = conversation.map_or((0, 0), |c| (c.unread, c.version));
    let mut read_to = last_seq.saturating_sub(unread);
    if last.is_some_and(|m| m.from_uid == *reader) {
        (unread, read_to) = (0, last_seq);
    }
    json!({
        "channel_id": seen.id.as_str(),
        "channel_type": seen.kind.as_u8(),
        "unread": unread,
        "timestamp": last.map_or(0, |m| m.timestamp_secs()),
        "last_msg_seq": last_seq,
        "last_client_msg_no": last.map_or("", |m| m.client_msg_no.as_str()),
        "offset_msg_seq": 0,
        "readed_to_msg_seq": read_to,
        "version": version,
        "recents": recents.iter().map(shown).collect::<Vec<_>>(),
    })
}
