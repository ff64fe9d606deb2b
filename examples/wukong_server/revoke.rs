//! Revocation: revoking a message, and syncing what was revoked.

use axum::extract::State;
use axum::Json;
use imcore::{ClientMsgNo, MessageId, RevokeRequest, RevokeTarget};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{channel, uid, ApiError, ApiResult};
use crate::App;

#[derive(Deserialize)]
pub struct RevokeReq {
    uid: String,
    /// A string, as clients keep ids (a number only below 2^53).
    message_id: Option<Value>,
    client_msg_no: Option<String>,
    #[serde(default)]
    channel_id: String,
    #[serde(default)]
    channel_type: u8,
    message_seq: Option<u64>,
}

pub async fn revoke(State(app): State<App>, Json(req): Json<RevokeReq>) -> ApiResult {
    let requester = uid(&req.uid)?;
    let target = match (&req.message_id, &req.client_msg_no, req.message_seq) {
        (Some(id), _, _) => {
            // Ids pass 2^53, where a JavaScript number has already lost
            // the low bits that tell messages of one millisecond apart.
            const JS_SAFE: u64 = (1 << 53) - 1;
            let id = match id {
                Value::String(s) => s.parse().ok(),
                other => other.as_u64().filter(|n| *n <= JS_SAFE),
            };
            RevokeTarget::MessageId(MessageId(
                id.ok_or_else(|| ApiError::bad("message_id must be the id as a string"))?,
            ))
        }
        (None, Some(no), _) => RevokeTarget::ClientMsgNo {
            from_uid: requester.clone(),
            channel: channel(&req.channel_id, req.channel_type)?,
            client_msg_no: ClientMsgNo::new(no)?,
        },
        (None, None, Some(seq)) => RevokeTarget::Seq {
            channel: channel(&req.channel_id, req.channel_type)?,
            seq,
        },
        (None, None, None) => {
            return Err(ApiError::bad(
                "name the message: message_id, client_msg_no, or channel and message_seq",
            ))
        }
    };
    let outcome = app
        .hub
        .revoke(RevokeRequest::new(requester, target))
        .await?;
    let r = outcome.revocation();
    Ok(Json(json!({
        "message_id": r.message_id.0.to_string(),
        "extra_version": r.extra_version,
    })))
}

#[derive(Deserialize)]
pub struct ExtraSyncReq {
    login_uid: String,
    channel_id: String,
    channel_type: u8,
    #[serde(default)]
    extra_version: u64,
    #[serde(default = "crate::api::hundred")]
    limit: usize,
}

pub async fn extra_sync(State(app): State<App>, Json(req): Json<ExtraSyncReq>) -> ApiResult {
    let reader = uid(&req.login_uid)?;
    let ch = channel(&req.channel_id, req.channel_type)?;
    let rows = app
        .hub
        .sync_revocations(&reader, &ch, req.extra_version, app.limits.list(req.limit))
        .await?;
    let list: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "message_id": r.message_id.0,
                "message_id_str": r.message_id.0.to_string(),
                "message_seq": r.message_seq,
                "revoke": 1,
                "revoker": r.revoker.as_str(),
                "extra_version": r.extra_version,
            })
        })
        .collect();
    Ok(Json(Value::Array(list)))
}
