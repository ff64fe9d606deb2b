//! Sending from the business server: `/message/send` and
//! `/message/sendbatch`.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use tracing::debug;

use std::sync::Once;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use imcore::{ChannelType, ClientMsgNo, Error, Flags, ReasonCode, SendRequest};

use crate::api::{channel, flag, uid, uids, ApiError, ApiResult};
use crate::App;

#[derive(Deserialize, Default)]
struct Header {
    #[serde(default)]
    no_persist: u8,
    #[serde(default)]
    red_dot: u8,
    /// `None` when not given: then 1, WuKongIM's default (see
    /// [`Header::flags`]).
    #[serde(default)]
    sync_once: Option<u8>,
}

#[derive(Deserialize)]
pub struct SendReq {
    #[serde(default)]
    header: Header,
    from_uid: String,
    #[serde(default)]
    channel_id: String,
    #[serde(default)]
    channel_type: u8,
    #[serde(default)]
    subscribers: Vec<String>,
    client_msg_no: Option<String>,
    payload: String,
}

impl Header {
    fn flags(&self) -> Flags {
        Flags {
            dup: false,
            no_persist: flag(self.no_persist),
            red_dot: flag(self.red_dot),
            sync_once: match self.sync_once {
                Some(given) => flag(given),
                None => {
                    said_once_what_sync_once_defaults_to();
                    true
                }
            },
        }
    }
}

/// A send without `sync_once` is a pass-through message, which surprises
/// whoever expected history: said once, at debug level, the first time.
fn said_once_what_sync_once_defaults_to() {
    static SAID: Once = Once::new();
    SAID.call_once(|| {
        debug!(
            "/message/send or /message/sendbatch without header.sync_once: 1, WuKongIM's \
             default: the message reaches online devices only, is not stored (message_seq 0) \
             and never shows in history; send \"sync_once\": 0 for a message clients keep \
             (said once)"
        );
    });
}

fn payload_of(base64: &str) -> Result<Vec<u8>, ApiError> {
    BASE64
        .decode(base64)
        .map_err(|_| ApiError::bad("payload is not base64"))
}

pub async fn message_send(State(app): State<App>, Json(req): Json<SendReq>) -> ApiResult {
    let from = uid(&req.from_uid)?;
    let payload = payload_of(&req.payload)?;
    let flags = req.header.flags();
    let mut request = if req.subscribers.is_empty() {
        SendRequest::new(from, channel(&req.channel_id, req.channel_type)?, payload)
    } else {
        SendRequest::command_to(from, uids(&req.subscribers)?, payload)
    }
    .flags(flags);
    if let Some(no) = &req.client_msg_no {
        request = request.client_msg_no(ClientMsgNo::new(no)?);
    }
    let ack = app.hub.send(request).await?;
    Ok(Json(json!({
        "message_id": ack.message_id.0,
        "message_idstr": ack.message_id.0.to_string(),
        "message_seq": ack.message_seq,
        "client_msg_no": ack.client_msg_no.as_str(),
    })))
}

// ---- sync ----

#[derive(Deserialize)]
pub struct SendBatchReq {
    #[serde(default)]
    header: Header,
    from_uid: String,
    subscribers: Vec<String>,
    payload: String,
}

/// `/message/sendbatch`: the same message to each subscriber, in the
/// person channel between the sender and them, as WuKongIM's. Answers
/// `{fail_uids, reason}`: who it was refused for, and each refusal's
/// reason code (22 for those over the sender's send rate: a batch to N
/// subscribers takes N of the sender's sends, and those over its
/// allowance are refused, the others sent).
pub async fn message_sendbatch(State(app): State<App>, Json(req): Json<SendBatchReq>) -> ApiResult {
    let from = uid(&req.from_uid)?;
    let payload = bytes::Bytes::from(payload_of(&req.payload)?);
    let mut requests = Vec::with_capacity(req.subscribers.len());
    for to in &req.subscribers {
        let to = channel(to, ChannelType::PERSON.as_u8())?;
        requests
            .push(SendRequest::new(from.clone(), to, payload.clone()).flags(req.header.flags()));
    }
    let (mut fail_uids, mut reasons) = (Vec::new(), Vec::new());
    for (to, ack) in req.subscribers.iter().zip(app.hub.send_all(requests).await) {
        match ack {
            Ok(_) => {}
            Err(Error::Rejected { reason, .. }) => {
                fail_uids.push(to.clone());
                reasons.push(reason.as_u8());
            }
            Err(Error::RateLimited { .. }) => {
                fail_uids.push(to.clone());
                reasons.push(ReasonCode::RATE_LIMIT.as_u8());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Json(json!({ "fail_uids": fail_uids, "reason": reasons })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(json: &str) -> Header {
        serde_json::from_str::<SendReq>(json).unwrap().header
    }

    #[test]
    fn sync_once_defaults_to_one_and_zero_keeps_the_message() {
        let no_header = r#"{"from_uid": "a", "payload": ""}"#;
        assert!(header(no_header).flags().sync_once);
        let not_given = r#"{"header": {"red_dot": 1}, "from_uid": "a", "payload": ""}"#;
        let flags = header(not_given).flags();
        assert!(flags.sync_once && flags.red_dot && !flags.no_persist);
        let zero = r#"{"header": {"sync_once": 0}, "from_uid": "a", "payload": ""}"#;
        assert!(!header(zero).flags().sync_once);
        let one = r#"{"header": {"sync_once": 1}, "from_uid": "a", "payload": ""}"#;
        assert!(header(one).flags().sync_once);
    }
}
