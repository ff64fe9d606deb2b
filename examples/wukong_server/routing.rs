//! `/route` and `/route/batch`: where a client connects, as WuKongIM's
//! business servers ask before handing an address to an app.
//!
//! Every node of a cluster serves every user (deliveries cross over NATS),
//! so the answer is this node's own addresses: put the nodes behind a load
//! balancer, or ask each node, to spread users. The host is
//! `--external-host` if given, else the address bound (a server bound to
//! every address without it warns at start: clients cannot connect to
//! `0.0.0.0`); `wss_addr` is empty without a wss listener.

use std::net::SocketAddr;

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{uid, ApiResult};
use crate::App;

/// Where this server listens, as clients reach it.
#[derive(Debug, Clone)]
pub struct Addresses {
    /// `host:port` of the TCP listener.
    pub tcp: String,
    /// `ws://host:port` of the WebSocket listener.
    pub ws: String,
    /// `wss://host:port` of the wss listener, or empty.
    pub wss: String,
}

impl Addresses {
    /// The listeners' addresses as clients reach them: at `host` when
    /// given, else at the address each is bound to.
    pub fn new(
        host: Option<&str>,
        tcp: SocketAddr,
        ws: SocketAddr,
        wss: Option<SocketAddr>,
    ) -> Self {
        let at = |a: SocketAddr| match host {
            Some(host) => format!("{host}:{}", a.port()),
            None => a.to_string(),
        };
        Addresses {
            tcp: at(tcp),
            ws: format!("ws://{}", at(ws)),
            wss: wss.map_or(String::new(), |a| format!("wss://{}", at(a))),
        }
    }

    fn json(&self) -> Value {
        json!({ "tcp_addr": self.tcp, "ws_addr": self.ws, "wss_addr": self.wss })
    }
}

/// `GET /route?uid=…`.
#[derive(Deserialize)]
pub struct RouteQuery {
    uid: String,
}

/// `GET /route?uid=…`: `{tcp_addr, ws_addr, wss_addr}`.
pub async fn route(State(app): State<App>, Query(q): Query<RouteQuery>) -> ApiResult {
    uid(&q.uid)?;
    Ok(Json(app.addresses.json()))
}

/// `POST /route/batch` with a list of uids: one entry holding them all,
/// `[{uids, tcp_addr, ws_addr, wss_addr}]`, as WuKongIM groups uids by
/// node.
pub async fn route_batch(State(app): State<App>, Json(uids): Json<Vec<String>>) -> ApiResult {
    for u in &uids {
        uid(u)?;
    }
    let mut entry = app.addresses.json();
    entry["uids"] = json!(uids);
    Ok(Json(json!([entry])))
}
