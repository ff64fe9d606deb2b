//! Users: tokens for logins, who is online, and logging devices out.

use axum::extract::State;
use axum::Json;
use imcore::{DeviceFlag, DeviceLevel};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{uid, ApiError, ApiResult};
use crate::App;

#[derive(Deserialize)]
pub struct TokenReq {
    uid: String,
    token: String,
    #[serde(default = "web")]
    device_flag: u8,
    #[serde(default = "crate::api::one")]
    device_level: u8,
}

/// The longest token accepted (WuKongIM sets no bound; tokens are stored).
const MAX_TOKEN: usize = 256;

fn web() -> u8 {
    1
}

pub async fn user_token(State(app): State<App>, Json(req): Json<TokenReq>) -> ApiResult {
    let flag = DeviceFlag::try_from(req.device_flag)?;
    let level = if req.device_level == 0 {
        DeviceLevel::Slave
    } else {
        DeviceLevel::Master
    };
    if req.token.is_empty() || req.token.len() > MAX_TOKEN {
        return Err(ApiError::bad("token must be 1 to 256 bytes"));
    }
    app.directory
        .set_token(&uid(&req.uid)?, flag, req.token, level)
        .await?;
    Ok(Json(json!({})))
}

/// The users of the list with a master device online on any node, as
/// WuKongIM's `/user/onlinestatus` answers (offline users are left out).
pub async fn online_status(State(app): State<App>, Json(uids): Json<Vec<String>>) -> ApiResult {
    let mut online = Vec::new();
    for u in uids {
        if app.hub.is_online(&uid(&u)?) {
            online.push(json!({ "uid": u, "online": 1 }));
        }
    }
    Ok(Json(Value::Array(online)))
}

#[derive(Deserialize)]
pub struct QuitReq {
    uid: String,
    /// One device kind (0 app, 1 web, 2 pc), or -1 for all.
    #[serde(default = "all_devices")]
    device_flag: i16,
}

fn all_devices() -> i16 {
    -1
}

/// Logs a user's devices out (DISCONNECT 12), as WuKongIM's
/// `/user/device_quit`. Their tokens are forgotten too.
pub async fn device_quit(State(app): State<App>, Json(req): Json<QuitReq>) -> ApiResult {
    let user = uid(&req.uid)?;
    let flag = match req.device_flag {
        -1 => None,
        n => Some(
            u8::try_from(n)
                .map_err(|_| ApiError::bad("device_flag is -1, 0, 1 or 2"))
                .and_then(|n| DeviceFlag::try_from(n).map_err(ApiError::from))?,
        ),
    };
    let kinds = flag.map_or(
        vec![DeviceFlag::App, DeviceFlag::Web, DeviceFlag::Pc],
        |f| vec![f],
    );
    for kind in kinds {
        app.directory.remove_token(&user, kind).await?;
    }
    let closed = app.hub.kick(&user, flag);
    Ok(Json(json!({ "closed": closed })))
}
