//! The HTTP API's plumbing: errors in WuKongIM's JSON shape, id parsing,
//! and messages as the API shows them.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::Body as _;
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
    /// A 400 with `msg`.
    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            msg: msg.into(),
            reason_code: 0,
            reason: None,
        }
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

/// The largest request body read, in bytes; a larger one is answered 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The longest error text a refusal made outside the handlers (an
/// extractor's rejection) is read up to.
const ERROR_TEXT_LIMIT: usize = 4096;

/// Answers every error the handlers did not make themselves in WuKongIM's
/// shape: axum's extractors refuse malformed JSON, missing or mistyped
/// fields, a wrong content type or a body over the limit with a 4xx and
/// a text body, which this turns into `{"msg", "status"}` with the same
/// status. Errors already in JSON pass as they are.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    // axum says 422 for a body of the wrong shape; WuKongIM says 400 for
    // every bad request.
    let status = match status {
        StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
        status => status,
    };
    let text = axum::body::to_bytes(response.into_body(), ERROR_TEXT_LIMIT)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let msg = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error").to_owned(),
        text => text.to_owned(),
    };
    ApiError {
        status,
        msg,
        reason_code: 0,
        reason: None,
    }
    .into_response()
}

/// How long the rest of a body over [`BODY_LIMIT`] is read, and thrown
/// away, before the 413 goes out: a client sends its whole body before it
/// reads the answer, and a connection closed with its body unread would
/// reset under it, so that it saw a dropped connection instead of the 413.
/// A client with more to send than this allows sees that still.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Answers a request that says its body is over [`BODY_LIMIT`] with 413,
/// after reading the body through (for up to [`DRAIN_TIME`]). A body that
/// does not say its length is cut at the limit by the router's
/// `DefaultBodyLimit` as it is read.
pub async fn refuse_large_bodies(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let Some(len) = declared.filter(|len| *len > BODY_LIMIT as u64) else {
        return next.run(request).await;
    };
    let mut body = request.into_body();
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        msg: format!("a body of {len} bytes is over the limit of {BODY_LIMIT}"),
        reason_code: 0,
        reason: None,
    }
    .into_response()
}

/// Reads a request's whole body within `limit` (from when its headers are
/// in) before the handler sees it: hyper's header read timeout stops at
/// the headers, and a body trickled in a byte a second would otherwise
/// hold its connection for as long as it takes. Over the limit: 408 in
/// WuKongIM's shape, and the connection is closed. A body over
/// [`BODY_LIMIT`] is 413 (one that declares its length never gets here:
/// [`refuse_large_bodies`]).
pub async fn read_body_within(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(limit, Limited::new(body, BODY_LIMIT).collect()).await;
    let (status, msg) = match read {
        Ok(Ok(body)) => {
            let request = Request::from_parts(parts, Body::from(body.to_bytes()));
            return next.run(request).await;
        }
        Ok(Err(e)) if e.is::<LengthLimitError>() => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a body over the limit of {BODY_LIMIT} bytes"),
        ),
        Ok(Err(e)) => (
            StatusCode::BAD_REQUEST,
            format!("the body could not be read: {e}"),
        ),
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {} ms", limit.as_millis()),
        ),
    };
    let mut response = ApiError {
        status,
        msg,
        reason_code: 0,
        reason: None,
    }
    .into_response();
    // The rest of the body is never read: the connection cannot carry
    // another request.
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A path the API does not have: 404 in WuKongIM's shape.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        msg: format!("no endpoint {}", uri.path()),
        reason_code: 0,
        reason: None,
    }
}

/// A path the API has, with another method: 405 in WuKongIM's shape.
pub async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        msg: format!("{} does not take {method}", uri.path()),
        reason_code: 0,
        reason: None,
    }
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
