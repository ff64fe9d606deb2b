//! Closing one connection, as WuKongIM's `/conn/kick` and `/conn/remove`
//! do: a kick tells the client (DISCONNECT, reason 12, "server kick":
//! WuKongIM's clients then stay away) and closes; a remove only closes
//! (the client reconnects, as after a restart).

use axum::extract::State;
use axum::Json;
use imcore::session::ConnectionId;
use imcore::DisconnectReason;
use serde::Deserialize;
use serde_json::json;

use crate::api::{uid, ApiError, ApiResult};
use crate::App;

/// `{uid, conn_id, node_id, op_node_id}`: the connection (its id as
/// `/connz` lists it) of `uid` on node `node_id` (0: this one), the
/// request handled by node `op_node_id` (0: this one).
#[derive(Deserialize)]
pub struct ConnReq {
    uid: String,
    #[serde(default)]
    conn_id: i64,
    #[serde(default)]
    node_id: u64,
    #[serde(default)]
    op_node_id: u64,
}

async fn close(app: &App, req: &ConnReq, reason: DisconnectReason) -> ApiResult {
    let here = u64::from(app.hub.config().node_id);
    if req.op_node_id != 0 && req.op_node_id != here {
        // WuKongIM forwards to that node; a node here does not forward.
        return Err(ApiError::bad(format!(
            "node {} not found: this is node {here}; ask that node",
            req.op_node_id
        )));
    }
    if req.conn_id == 0 {
        return Err(ApiError::bad("conn_id is 0"));
    }
    let id = u64::try_from(req.conn_id)
        .map_err(|_| ApiError::bad(format!("conn_id {} is negative", req.conn_id)))?;
    let user = uid(&req.uid)?;
    let node = if req.node_id == 0 { here } else { req.node_id };
    let closed = node == here
        && app
            .hub
            .close_connection(&user, ConnectionId::from(id), reason);
    // WuKongIM answers OK whether or not the connection was found;
    // `closed` says which.
    Ok(Json(json!({ "status": 200, "closed": closed })))
}

/// `/conn/kick`: DISCONNECT (reason 12), then the connection closes.
pub async fn kick(State(app): State<App>, Json(req): Json<ConnReq>) -> ApiResult {
    close(&app, &req, DisconnectReason::Kicked).await
}

/// `/conn/remove`: the connection closes, with no DISCONNECT (the hub's
/// [`DisconnectReason::Shutdown`]: a plain close the client reconnects
/// after).
pub async fn remove(State(app): State<App>, Json(req): Json<ConnReq>) -> ApiResult {
    close(&app, &req, DisconnectReason::Shutdown).await
}
