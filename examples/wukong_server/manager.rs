//! The manager token, as WuKongIM's `managerToken`: when one is set, every
//! HTTP request but the WebSocket upgrade must carry it in a `token` header
//! (or as `Authorization: Bearer`, what Prometheus sends), or it is
//! answered 401 before any handler runs.
//!
//! `/metrics` needs it too: counts of logins and refusals are nobody
//! else's business. The WebSocket upgrade (`/`) does not: clients log in
//! with their own token in CONNECT, which the wire server checks.

use axum::extract::Request;
use axum::http::header::AUTHORIZATION;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::cli::Secret;

/// The path of the WebSocket upgrade, which needs no manager token.
const WEBSOCKET_PATH: &str = "/";

/// Whether `request` carries `token`, compared in constant time.
fn carries(request: &Request, token: &Secret) -> bool {
    let headers = request.headers();
    let given = headers.get("token").map(|v| v.as_bytes()).or_else(|| {
        headers
            .get(AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
    });
    given.is_some_and(|given| bool::from(given.ct_eq(token.expose())))
}

/// The answer to a request without the manager token, when one is set:
/// 401 and WuKongIM's JSON error. `None`: the request may pass.
pub fn refusal(token: Option<&Secret>, request: &Request) -> Option<Response> {
    let token = token?;
    if request.uri().path() == WEBSOCKET_PATH || carries(request, token) {
        return None;
    }
    let status = StatusCode::UNAUTHORIZED;
    let body = json!({
        "status": status.as_u16(),
        "msg": "a valid manager token is required in the `token` header",
        "reason_code": 0,
    });
    Some((status, Json(body)).into_response())
}
