//! Clearing a channel's subscribers and lists, reading its whitelist and
//! the system uids, and setting a temporary channel's subscribers: the
//! rest of WuKongIM's channel administration.

use axum::extract::{Query, State};
use axum::Json;
use imcore::directory::ChannelInfo;
use imcore::{AccessList, Channel, ChannelId, ChannelType};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{channel, uids, ApiError, ApiResult};
use crate::App;

/// WuKongIM's temporary channel type (`ChannelTypeTemp`).
const TEMP: u8 = 8;

/// What WuKongIM's `ResponseOK` answers.
fn ok() -> ApiResult {
    Ok(Json(json!({ "status": 200 })))
}

/// `{channel_id, channel_type}`, both needed (WuKongIM's `channelReq`).
#[derive(Deserialize)]
pub struct ChannelReq {
    #[serde(default)]
    channel_id: String,
    #[serde(default)]
    channel_type: u8,
}

impl ChannelReq {
    fn channel(&self) -> Result<Channel, ApiError> {
        if self.channel_id.is_empty() {
            return Err(ApiError::bad("channel_id must not be empty"));
        }
        if self.channel_type == 0 {
            return Err(ApiError::bad("channel_type must not be 0"));
        }
        channel(&self.channel_id, self.channel_type)
    }
}

/// `/channel/subscriber_remove_all`: the channel keeps no subscriber but
/// its owner (not for person channels).
pub async fn subscriber_remove_all(
    State(app): State<App>,
    Json(req): Json<ChannelReq>,
) -> ApiResult {
    let ch = req.channel()?;
    if ch.kind == ChannelType::PERSON {
        return Err(ApiError::bad(
            "person channels have no subscribers to remove",
        ));
    }
    app.directory.remove_all_subscribers(&ch).await?;
    ok()
}

/// `/channel/blacklist_remove_all`: the blacklist is emptied.
pub async fn blacklist_remove_all(
    State(app): State<App>,
    Json(req): Json<ChannelReq>,
) -> ApiResult {
    let ch = req.channel()?;
    app.directory.set_list(AccessList::Black, &ch, &[]).await?;
    ok()
}

/// `/channel/whitelist_remove_all`: the whitelist is emptied (anyone may
/// send again).
pub async fn whitelist_remove_all(
    State(app): State<App>,
    Json(req): Json<ChannelReq>,
) -> ApiResult {
    let ch = req.channel()?;
    app.directory.set_list(AccessList::White, &ch, &[]).await?;
    ok()
}

/// `GET /channel/whitelist?channel_id&channel_type`: the whitelist, as
/// `[{"uid"}]` (WuKongIM's member rows, without their row ids and times).
pub async fn whitelist(State(app): State<App>, Query(q): Query<ChannelReq>) -> ApiResult {
    let ch = q.channel()?;
    let list = app.directory.list(AccessList::White, &ch).await?;
    let rows: Vec<Value> = list.iter().map(|u| json!({ "uid": u.as_str() })).collect();
    Ok(Json(Value::Array(rows)))
}

/// `GET /user/systemuids`: the system uids, as an array of strings.
pub async fn system_uids(State(app): State<App>) -> ApiResult {
    let list = app.directory.system_uids().await?;
    let uids: Vec<&str> = list.iter().map(|u| u.as_str()).collect();
    Ok(Json(json!(uids)))
}

/// `{channel_id, uids}`.
#[derive(Deserialize)]
pub struct TmpSubscribersReq {
    #[serde(default)]
    channel_id: String,
    #[serde(default)]
    uids: Vec<String>,
}

/// `/tmpchannel/subscriber_set`: the temporary channel (type 8) named
/// `channel_id` has these subscribers, and only these, from now on;
/// created if need be. A send to it (`channel_type` 8) reaches them.
pub async fn tmp_subscriber_set(
    State(app): State<App>,
    Json(req): Json<TmpSubscribersReq>,
) -> ApiResult {
    if req.channel_id.is_empty() {
        return Err(ApiError::bad("channel_id must not be empty"));
    }
    if req.uids.is_empty() {
        return Err(ApiError::bad("uids must not be empty"));
    }
    let ch = Channel::new(
        ChannelId::new(&req.channel_id)?,
        ChannelType::try_from(TEMP)?,
    );
    let list = uids(&req.uids)?;
    // Made anew, so that no earlier subscriber (an owner included) stays.
    app.directory.delete_channel(&ch).await?;
    app.directory
        .create_channel(&ch, ChannelInfo::default(), &list)
        .await?;
    ok()
}
