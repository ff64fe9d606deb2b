//! The HTTP API's plumbing: errors in WuKongIM's JSON shape, id parsing,
//! and messages as the API shows them.

use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use imcore::{Channel, ChannelId, ChannelType, Error, HistoryMessage, Message, ReasonCode, Uid};
use serde_json::{json, Value};

/// An API error: a JSON body of status, msg and reason_code, with that
/// HTTP status.
pub struct ApiError {
    status: StatusCode,
    msg: String,
    reason_code: u8,
    /// A refusal's stable code (an edit's), when it has one.
    reason: Option<&'static str>,
}

impl ApiError {
    /// `status` with `msg`.
    pub fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        ApiError {
            status,
            msg: msg.into(),
            reason_code: 0,
            reason: None,
        }
    }

    /// A 400 with `msg`.
    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, msg)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match e {
            Error::Validation(_)
            | Error::Rejected { .. }
            | Error::RevokeRefused(_)
            | Error::EditRefused(_) => StatusCode::BAD_REQUEST,
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            // The sender's send rate: reason 22 in the body.
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable { .. } | Error::Closed => StatusCode::SERVICE_UNAVAILABLE,
            // The store failing, or holding what this version cannot read:
            // the server's fault, whatever the request.
            Error::Storage { .. }
            | Error::Corrupt { .. }
            | Error::Unconfirmed { .. }
            | Error::UnsupportedFormat { .. }
            | Error::InUse { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            // A kind this example does not know yet: the crate's reason
            // code says whether the system is at fault.
            _ if e.reason_code() == Some(ReasonCode::SYSTEM_ERROR) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError {
            status,
            reason_code: e.reason_code().map_or(0, |r| r.as_u8()),
            reason: match &e {
                Error::EditRefused(why) => Some(why.code()),
                _ => None,
            },
            msg: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "status": self.status.as_u16(),
            "msg": self.msg,
            "reason_code": self.reason_code,
        });
        if let Some(reason) = self.reason {
            body["reason"] = json!(reason);
        }
        (self.status, Json(body)).into_response()
    }
}

/// What a handler answers.
pub type ApiResult = Result<Json<Value>, ApiError>;

/// A path the API does not have: 404 in WuKongIM's shape.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no endpoint {}", uri.path()))
}

/// A path the API has, with another method: 405 in WuKongIM's shape.
pub async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    let msg = format!("{} does not take {method}", uri.path());
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, msg)
}

/// Serde default: 1.
pub fn one() -> u8 {
    1
}

/// Serde default: 100 (a page).
pub fn hundred() -> usize {
    100
}

/// Uids from their strings.
pub fn uids(list: &[String]) -> Result<Vec<Uid>, ApiError> {
    list.iter().map(|s| uid(s)).collect()
}

pub fn uid(s: &str) -> Result<Uid, ApiError> {
    Ok(Uid::new(s)?)
}

pub fn channel(id: &str, kind: u8) -> Result<Channel, ApiError> {
    Ok(Channel::new(
        ChannelId::new(id)?,
        ChannelType::try_from(kind)?,
    ))
}

/// A message id as clients send it: a string (ids pass 2^53, where a
/// JavaScript number has already lost the low bits that tell messages of
/// one millisecond apart), or a number below 2^53.
pub fn message_id(v: &Value) -> Result<imcore::MessageId, ApiError> {
    const JS_SAFE: u64 = (1 << 53) - 1;
    let id = match v {
        Value::String(s) => s.parse().ok(),
        other => other.as_u64().filter(|n| *n <= JS_SAFE),
    };
    id.map(imcore::MessageId)
        .ok_or_else(|| ApiError::bad("message_id must be the id as a string"))
}

pub fn flag(b: u8) -> bool {
    b != 0
}

/// A message as WuKongIM's HTTP API shows it, with the channel as `viewer`
/// addresses it.
pub fn message_json(m: &Message, viewer: &Uid) -> Value {
    let seen = m.channel.as_seen_by(viewer);
    json!({
        "header": {
            "no_persist": u8::from(m.flags.no_persist),
            "red_dot": u8::from(m.flags.red_dot),
            "sync_once": u8::from(m.flags.sync_once),
        },
        "setting": m.setting.0,
        "topic": m.topic.as_deref().unwrap_or(""),
        "message_id": m.message_id.0,
        "message_idstr": m.message_id.0.to_string(),
        "client_msg_no": m.client_msg_no.as_str(),
        "message_seq": m.message_seq,
        "from_uid": m.from_uid.as_str(),
        "channel_id": seen.id.as_str(),
        "channel_type": seen.kind.as_u8(),
        "timestamp": m.timestamp_secs(),
        "payload": BASE64.encode(&m.payload),
    })
}

/// A history message: the above, and its revocation state.
pub fn history_json(h: &HistoryMessage, viewer: &Uid) -> Value {
    let mut v = message_json(h, viewer);
    v["revoke"] = json!(u8::from(h.revoked.is_some()));
    v["revoker"] = json!(h.revoked.as_ref().map_or("", |r| r.revoker.as_str()));
    crate::events::add_event_meta(&mut v, h.client_msg_no.as_str(), &h.events);
    if let Some(extra) = &h.extra {
        v["message_extra"] = crate::extras::history_extra_json(h, extra);
    }
    v
}

/// `bytes` in base64, as the API carries binary fields.
pub fn base64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}
