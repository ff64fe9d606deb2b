//! Channels: creating them, their settings, and adding subscribers.

use axum::extract::State;
use axum::Json;
use imcore::directory::ChannelInfo;
use imcore::{Channel, ChannelType, Error};
use serde::Deserialize;
use serde_json::json;

use crate::api::{channel, uids, ApiError, ApiResult};
use crate::App;

/// `{channel_id, channel_type, ban, send_ban, disband, subscribers,
/// reset}`, as WuKongIM's `/channel` (its `large` and `allow_stranger`
/// are accepted and ignored).
#[derive(Deserialize)]
pub struct ChannelReq {
    channel_id: String,
    #[serde(default = "group")]
    channel_type: u8,
    #[serde(default)]
    subscribers: Vec<String>,
    #[serde(flatten)]
    settings: Settings,
    /// 1: the subscribers replace the channel's (the owner stays).
    #[serde(default)]
    reset: u8,
}

/// A channel's settings, 0 or 1 each as WuKongIM sends them.
#[derive(Deserialize, Default)]
pub struct Settings {
    #[serde(default)]
    ban: u8,
    #[serde(default)]
    send_ban: u8,
    #[serde(default)]
    disband: u8,
}

impl Settings {
    fn info(&self) -> ChannelInfo {
        ChannelInfo {
            ban: self.ban == 1,
            send_ban: self.send_ban == 1,
            disband: self.disband == 1,
            ..ChannelInfo::default()
        }
    }
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
    if list.is_empty() {
        return Err(ApiError::bad(
            "a channel needs at least one subscriber, its owner",
        ));
    }
    if req.reset == 1 {
        app.directory.remove_all_subscribers(&ch).await?;
    }
    app.directory
        .create_channel(&ch, req.settings.info(), &list)
        .await?;
    Ok(Json(json!({})))
}

/// `/channel/info`: a channel's settings (`ban`, `send_ban`, `disband`;
/// WuKongIM's `large` and `allow_stranger` are accepted and ignored),
/// creating it (with no subscribers) if need be; answers
/// `{"status": 200}`, as WuKongIM.
pub async fn channel_info(State(app): State<App>, Json(req): Json<InfoReq>) -> ApiResult {
    let ch = channel(&req.channel_id, req.channel_type)?;
    if ch.kind == ChannelType::PERSON {
        return Err(ApiError::bad("person channels have no settings here"));
    }
    let info = req.settings.info();
    if !app.directory.update_channel(&ch, info.clone()).await? {
        app.directory.create_channel(&ch, info, &[]).await?;
    }
    // WuKongIM's `ResponseOK`.
    Ok(Json(json!({ "status": 200 })))
}

/// `{channel_id, channel_type, ban, send_ban, disband}`.
#[derive(Deserialize)]
pub struct InfoReq {
    channel_id: String,
    #[serde(default = "group")]
    channel_type: u8,
    #[serde(flatten)]
    settings: Settings,
}

/// The channel, if it exists; a 404 JSON error if not.
pub async fn existing(app: &App, id: &str, kind: u8) -> Result<Channel, ApiError> {
    let ch = channel(id, kind)?;
    if app.directory.channel_info(&ch).await?.is_none() {
        return Err(Error::NotFound {
            what: format!("channel {id}"),
        }
        .into());
    }
    Ok(ch)
}

pub async fn subscriber_add(State(app): State<App>, Json(req): Json<ChannelReq>) -> ApiResult {
    let ch = existing(&app, &req.channel_id, req.channel_type).await?;
    let list = uids(&req.subscribers)?;
    if req.reset == 1 {
        app.directory.remove_all_subscribers(&ch).await?;
    }
    app.directory.add_subscribers(&ch, &list).await?;
    Ok(Json(json!({})))
}
