//! Revocation: revoking a message (its sync is in `extras.rs`).

use axum::extract::State;
use axum::Json;
use imcore::{ClientMsgNo, RevokeRequest, RevokeTarget};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{channel, message_id, uid, ApiError, ApiResult};
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
        (Some(id), _, _) => RevokeTarget::MessageId(message_id(id)?),
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
