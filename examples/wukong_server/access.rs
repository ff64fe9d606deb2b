//! Who may send where, as WuKongIM's business servers set it: channel
//! blacklists and whitelists, system accounts, subscriber removal and
//! channel deletion. The directory keeps them in the store, shared by every
//! node.

use axum::extract::State;
use axum::Json;
use imcore::{AccessList, ChannelType, Error};
use serde::Deserialize;
use serde_json::json;

use crate::api::{channel, uids, ApiError, ApiResult};
use crate::App;

/// A channel and some uids: the body of the list endpoints
/// (`{channel_id, channel_type, uids}`, as WuKongIM's).
#[derive(Deserialize)]
pub struct ListReq {
    channel_id: String,
    channel_type: u8,
    uids: Vec<String>,
}

/// What a list endpoint does with its uids.
#[derive(Clone, Copy)]
enum Edit {
    Add,
    Remove,
    Set,
}

async fn edit_list(app: &App, list: AccessList, edit: Edit, req: ListReq) -> ApiResult {
    let ch = channel(&req.channel_id, req.channel_type)?;
    let uids = uids(&req.uids)?;
    let dir = &app.directory;
    match edit {
        Edit::Add => dir.add_to_list(list, &ch, &uids).await?,
        Edit::Remove => dir.remove_from_list(list, &ch, &uids).await?,
        Edit::Set => dir.set_list(list, &ch, &uids).await?,
    }
    Ok(Json(json!({})))
}

/// `/channel/blacklist_add`: these uids may no longer send to the channel
/// (reason 4); for a person channel (`channel_type` 1, `channel_id` a uid),
/// may no longer message that user.
pub async fn blacklist_add(State(app): State<App>, Json(req): Json<ListReq>) -> ApiResult {
    edit_list(&app, AccessList::Black, Edit::Add, req).await
}

/// `/channel/blacklist_remove`.
pub async fn blacklist_remove(State(app): State<App>, Json(req): Json<ListReq>) -> ApiResult {
    edit_list(&app, AccessList::Black, Edit::Remove, req).await
}

/// `/channel/blacklist_set`: replaces the blacklist (empty: none).
pub async fn blacklist_set(State(app): State<App>, Json(req): Json<ListReq>) -> ApiResult {
    edit_list(&app, AccessList::Black, Edit::Set, req).await
}

/// `/channel/whitelist_add`: while a channel's whitelist has anyone, only
/// they may send (reason 13 for the others).
pub async fn whitelist_add(State(app): State<App>, Json(req): Json<ListReq>) -> ApiResult {
    edit_list(&app, AccessList::White, Edit::Add, req).await
}

/// `/channel/whitelist_remove`.
pub async fn whitelist_remove(State(app): State<App>, Json(req): Json<ListReq>) -> ApiResult {
    edit_list(&app, AccessList::White, Edit::Remove, req).await
}

/// `/channel/whitelist_set`: replaces the whitelist (empty: anyone).
pub async fn whitelist_set(State(app): State<App>, Json(req): Json<ListReq>) -> ApiResult {
    edit_list(&app, AccessList::White, Edit::Set, req).await
}

/// `{uids}`: the body of the system uid endpoints.
#[derive(Deserialize)]
pub struct UidsReq {
    uids: Vec<String>,
}

async fn set_system(app: &App, req: &UidsReq, system: bool) -> ApiResult {
    let list = uids(&req.uids)?;
    app.directory.set_system(&list, system).await?;
    Ok(Json(json!({})))
}

/// `/user/systemuids_add`: these accounts may send to every channel there
/// is, member or not.
pub async fn systemuids_add(State(app): State<App>, Json(req): Json<UidsReq>) -> ApiResult {
    set_system(&app, &req, true).await
}

/// `/user/systemuids_remove`.
pub async fn systemuids_remove(State(app): State<App>, Json(req): Json<UidsReq>) -> ApiResult {
    set_system(&app, &req, false).await
}

/// `{channel_id, channel_type, subscribers}`.
#[derive(Deserialize)]
pub struct SubscribersReq {
    channel_id: String,
    channel_type: u8,
    subscribers: Vec<String>,
}

/// `/channel/subscriber_remove`: they stop receiving the channel and it
/// leaves their conversation lists (the owner stays).
pub async fn subscriber_remove(
    State(app): State<App>,
    Json(req): Json<SubscribersReq>,
) -> ApiResult {
    let ch = crate::channels::existing(&app, &req.channel_id, req.channel_type).await?;
    app.directory
        .remove_subscribers(&ch, &uids(&req.subscribers)?)
        .await?;
    Ok(Json(json!({})))
}

/// `{channel_id, channel_type}`.
#[derive(Deserialize)]
pub struct ChannelDeleteReq {
    channel_id: String,
    channel_type: u8,
}

/// `/channel/delete`: the channel and its subscribers go; its history
/// stays in the store.
pub async fn channel_delete(
    State(app): State<App>,
    Json(req): Json<ChannelDeleteReq>,
) -> ApiResult {
    let ch = channel(&req.channel_id, req.channel_type)?;
    if ch.kind == ChannelType::PERSON {
        return Err(ApiError::bad("person channels cannot be deleted"));
    }
    if !app.directory.delete_channel(&ch).await? {
        return Err(not_found(&req.channel_id));
    }
    Ok(Json(json!({})))
}

fn not_found(id: &str) -> ApiError {
    Error::NotFound {
        what: format!("channel {id}"),
    }
    .into()
}
