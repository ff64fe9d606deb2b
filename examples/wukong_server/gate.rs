//! What every API request passes before its handler, in one middleware
//! (one layer: each layer costs every request a boxed service and a boxed
//! future), in this order:
//!
//! 1. a body that says it is over [`BODY_LIMIT`] is answered 413;
//! 2. without the manager token (when one is set) the request is answered
//!    401, before its body is read ([`manager::refusal`]);
//! 3. the body is read whole within the body timeout;
//! 4. the handler runs, and an error it did not make itself (an
//!    extractor's) is turned into WuKongIM's JSON shape.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::Body as _;

use crate::api::ApiError;
use crate::cli::Secret;
use crate::manager;

/// What the gate checks requests against.
pub struct Gate {
    /// The manager token, when one is set.
    pub token: Option<Arc<Secret>>,
    /// How long a request's body may take to arrive.
    pub body_timeout: Duration,
}

/// The gate itself (see the module's documentation).
pub async fn gate(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    if let Some(len) = declared_length(&request).filter(|len| *len > BODY_LIMIT as u64) {
        return refuse_large_body(request, len).await;
    }
    if let Some(refusal) = manager::refusal(gate.token.as_deref(), &request) {
        return refusal;
    }
    let request = match read_body_within(gate.body_timeout, request).await {
        Ok(request) => request,
        Err(refusal) => return refusal,
    };
    json_errors(next.run(request).await).await
}

/// The largest request body read, in bytes; a larger one is answered 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The longest error text a refusal made outside the handlers (an
/// extractor's rejection) is read up to.
const ERROR_TEXT_LIMIT: usize = 4096;

/// How long the rest of a body over [`BODY_LIMIT`] is read, and thrown
/// away, before the 413 goes out: a client sends its whole body before it
/// reads the answer, and a connection closed with its body unread would
/// reset under it, so that it saw a dropped connection instead of the 413.
/// A client with more to send than this allows sees that still.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// The body's length, as the request says it.
fn declared_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Answers a request that says its body is `len` bytes, over
/// [`BODY_LIMIT`], with 413, after reading the body through (for up to
/// [`DRAIN_TIME`]). A body that does not say its length is cut at the
/// limit as it is read ([`read_body_within`]).
async fn refuse_large_body(request: Request, len: u64) -> Response {
    let mut body = request.into_body();
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
    let msg = format!("a body of {len} bytes is over the limit of {BODY_LIMIT}");
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, msg).into_response()
}

/// Reads a request's whole body within `limit` (from when its headers are
/// in) before the handler sees it: hyper's header read timeout stops at
/// the headers, and a body trickled in a byte a second would otherwise
/// hold its connection for as long as it takes. Over the limit: 408 in
/// WuKongIM's shape, and the connection is closed. A body over
/// [`BODY_LIMIT`] is 413.
async fn read_body_within(limit: Duration, request: Request) -> Result<Request, Response> {
    if request.body().is_end_stream() {
        return Ok(request);
    }
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(limit, Limited::new(body, BODY_LIMIT).collect()).await;
    let (status, msg) = match read {
        Ok(Ok(body)) => return Ok(Request::from_parts(parts, Body::from(body.to_bytes()))),
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
    let mut response = ApiError::new(status, msg).into_response();
    // The rest of the body is never read: the connection cannot carry
    // another request.
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    Err(response)
}

/// Answers every error the handlers did not make themselves in WuKongIM's
/// shape: axum's extractors refuse malformed JSON, missing or mistyped
/// fields, a wrong content type or a body over the limit with a 4xx and
/// a text body, which this turns into `{"msg", "status"}` with the same
/// status. Errors already in JSON pass as they are.
async fn json_errors(response: Response) -> Response {
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
    ApiError::new(status, msg).into_response()
}
