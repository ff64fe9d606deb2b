//! A user's conversation list: sync, unread counts, deletion.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{channel, flag, history_json, uid, ApiError, ApiResult};
use crate::App;

#[derive(Deserialize)]
pub struct ConversationSyncReq {
    uid: String,
    #[serde(default)]
    version: u64,
    #[serde(default = "crate::api::one")]
    msg_count: u8,
    /// An extension: 1 lists the conversations deleted since `version` too,
    /// each with `"deleted": 1`. Off by default, since WuKongIM's clients
    /// would list such an entry as a conversation; they learn of a delete
    /// from the `conversationDeleted` command instead.
    #[serde(default)]
    include_deleted: u8,
}

/// The most conversations one `/conversation/sync` answers (and fewer if
/// `--max-list` says so).
const CONVERSATIONS: usize = 1000;

/// `/conversation/sync`: the user's conversations changed since `version`,
/// each with up to `msg_count` recent messages; deleted ones only when the
/// request says `include_deleted`.
pub async fn conversation_sync(
    State(app): State<App>,
    Json(req): Json<ConversationSyncReq>,
) -> ApiResult {
    let user = uid(&req.uid)?;
    let limit = app.limits.list(CONVERSATIONS);
    let views = app
        .hub
        .sync_conversations(&user, req.version, limit)
        .await?;
    let list: Vec<Value> = views
        .iter()
        .filter(|v| flag(req.include_deleted) || !v.deleted)
        .map(|v| {
            let recents: Vec<Value> = v
                .last_message
                .iter()
                .take(usize::from(req.msg_count))
                .map(|m| history_json(m, &user))
                .collect();
            let mut entry = json!({
                "channel_id": v.channel.id.as_str(),
                "channel_type": v.channel.kind.as_u8(),
                "unread": v.conversation.unread,
                "timestamp": v.conversation.last_timestamp_ms / 1000,
                "last_msg_seq": v.conversation.last_seq,
                "last_client_msg_no": v.last_message.as_ref().map_or("", |m| m.client_msg_no.as_str()),
                "version": v.conversation.version,
                "recents": recents,
            });
            if v.deleted {
                entry["deleted"] = json!(1);
            }
            entry
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

#[derive(Deserialize)]
pub struct ClearUnreadReq {
    uid: String,
    channel_id: String,
    channel_type: u8,
    /// Read up to this seq; 0 (or absent) for everything.
    #[serde(default)]
    message_seq: u64,
}

#[derive(Deserialize)]
pub struct SetUnreadReq {
    uid: String,
    channel_id: String,
    channel_type: u8,
    unread: u64,
}

/// `/conversations/setUnread`: only 0 (everything read). Unread counts
/// are derived from the log and the user's read position (read
/// diffusion), which never moves back, so a conversation cannot be made
/// unread again.
pub async fn set_unread(State(app): State<App>, Json(req): Json<SetUnreadReq>) -> ApiResult {
    if req.unread != 0 {
        return Err(ApiError::bad(
            "unread can only be set to 0: unread counts derive from the read position, \
             which never moves back",
        ));
    }
    let ch = channel(&req.channel_id, req.channel_type)?;
    let found = app.hub.clear_unread(&uid(&req.uid)?, &ch, u64::MAX).await?;
    Ok(Json(json!({ "found": found })))
}

#[derive(Deserialize)]
pub struct ConversationDeleteReq {
    uid: String,
    channel_id: String,
    channel_type: u8,
}

/// `/conversations/delete`: the conversation leaves the user's list until
/// a newer message arrives; the history stays.
pub async fn conversation_delete(
    State(app): State<App>,
    Json(req): Json<ConversationDeleteReq>,
) -> ApiResult {
    let ch = channel(&req.channel_id, req.channel_type)?;
    let found = app.hub.delete_conversation(&uid(&req.uid)?, &ch).await?;
    Ok(Json(json!({ "found": found })))
}

pub async fn clear_unread(State(app): State<App>, Json(req): Json<ClearUnreadReq>) -> ApiResult {
    let read_seq = match req.message_seq {
        0 => u64::MAX,
        seq => seq,
    };
    let ch = channel(&req.channel_id, req.channel_type)?;
    let found = app.hub.clear_unread(&uid(&req.uid)?, &ch, read_seq).await?;
    Ok(Json(json!({ "found": found })))
}
