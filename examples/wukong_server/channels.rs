//! Channels: creating them and adding subscribers.

use axum::extract::State;
use axum::Json;
use imcore::{ChannelType, Error};
use serde::Deserialize;
use serde_json::json;

use crate::api::{channel, uids, ApiError, ApiResult};
use crate::App;

#[derive(Deserialize)]
pub struct ChannelReq {
    channel_id: String,
    #[serde(default = "group")]
    channel_type: u8,
    #[serde(default)]
    subscribers: Vec<String>,
}

fn group() -> u8 {
    2
}

pub async fn channel_create(State(app): State<App>, Json(req): Json<ChannelReq>) -> ApiResult {
    let ch = channel(&req.channel_id, req.channel_type)?;
    if ch.kind == ChannelType::PERSON {
        return Err(ApiError::bad("person channels need no creating"));
    }
    let list = uids(&req.subscribers)?;
    let (owner, rest) = list
        .split_first()
        .ok_or_else(|| ApiError::bad("a channel needs at least one subscriber, its owner"))?;
    app.directory
        .create_channel(&ch, owner, rest.iter().cloned());
    Ok(Json(json!({})))
}

pub async fn subscriber_add(State(app): State<App>, Json(req): Json<ChannelReq>) -> ApiResult {
    let ch = channel(&req.channel_id, req.channel_type)?;
    if !app.directory.add_members(&ch, uids(&req.subscribers)?) {
        return Err(Error::NotFound {
            what: format!("channel {}", req.channel_id),
        }
        .into());
    }
    Ok(Json(json!({})))
}
