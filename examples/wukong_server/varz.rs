//! This node's figures and health, as WuKongIM answers them: `/varz`
//! (connections, traffic, uptime), `/connz` (a page of connections),
//! `/health`, and v3's `/healthz` and `/readyz`.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use imcore::wire::{ConnSort, WireConnection};
use imcore::DeviceLevel;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{ApiError, ApiResult};
use crate::App;

/// WuKongIM's page when `limit` is absent or not above 0.
const PAGE: usize = 20;

/// A duration as WuKongIM's `myUptime` writes it: `1y2d3h4m5s`, leaving
/// out the leading zero units.
pub fn uptime(d: Duration) -> String {
    let secs = d.as_secs();
    let (mins, hours, days) = (secs / 60, secs / 3600, secs / 86_400);
    let years = days / 365;
    let (s, m, h) = (secs % 60, mins % 60, hours % 24);
    match () {
        _ if years > 0 => format!("{years}y{}d{h}h{m}m{s}s", days % 365),
        _ if days > 0 => format!("{days}d{h}h{m}m{s}s"),
        _ if hours > 0 => format!("{hours}h{m}m{s}s"),
        _ if mins > 0 => format!("{mins}m{s}s"),
        _ => format!("{secs}s"),
    }
}

/// The process's resident memory in bytes, where `/proc` says (Linux);
/// 0 elsewhere.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    kb.unwrap_or(0) * 1024
}

/// `?show&conn_limit&node_id`.
#[derive(Deserialize)]
pub struct VarzQuery {
    #[serde(default)]
    show: String,
    #[serde(default)]
    conn_limit: usize,
    #[serde(default)]
    node_id: u64,
}

fn check_node(app: &App, node: u64) -> Result<(), ApiError> {
    let here = u64::from(app.hub.config().node_id);
    match node == 0 || node == here {
        true => Ok(()),
        // WuKongIM forwards to that node; a node here does not forward.
        false => Err(ApiError::bad(format!(
            "node {node} not found: this is node {here}; ask that node"
        ))),
    }
}

/// `GET /varz`: this node's connections and traffic since it started
/// (`in_msgs`/`out_msgs`: packets read and written; `in_bytes`/
/// `out_bytes`: their bytes), uptime and memory; with `show=conn`, its
/// `conn_limit` (default 20) busiest connections by messages in.
pub async fn varz(State(app): State<App>, Query(q): Query<VarzQuery>) -> ApiResult {
    check_node(&app, q.node_id)?;
    let traffic = app.wire.traffic();
    let stats = app.hub.stats();
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let a = &app.addresses;
    let mut varz = json!({
        "server_id": app.hub.config().node_id.to_string(),
        "server_name": "imcore",
        "version": env!("CARGO_PKG_VERSION"),
        "connections": app.hub.connection_count(),
        "user_handler_count": app.hub.online_users(),
        "user_handler_conn_count": stats.online_devices,
        "uptime": uptime(app.started.elapsed()),
        "goroutine": tasks,
        "mem": resident_bytes(),
        "cpu": 0.0,
        "in_msgs": traffic.in_packets,
        "out_msgs": traffic.out_packets,
        "in_bytes": traffic.in_packet_bytes,
        "out_bytes": traffic.out_packet_bytes,
        "slow_clients": stats.slow_consumers,
        "retry_queue": 0,
        "tcp_addr": a.tcp,
        "ws_addr": a.ws,
        "wss_addr": a.wss,
        "manager_addr": "",
        "manager_on": 0,
        "commit": "",
        "commit_date": "",
        "tree_state": "",
        "api_url": "",
        "manager_uid": "",
        "manager_token_on": 0,
        "conversation_cache_count": 0,
    });
    if q.show == "conn" {
        let limit = match q.conn_limit {
            0 => PAGE,
            n => n,
        };
        let page = app.wire.connections("", (ConnSort::InMsgs, true), 0, limit);
        let now = app.hub.clock().now_ms();
        let conns: Vec<Value> = page
            .connections
            .iter()
            .map(|c| conn_info(c, now, here(&app)))
            .collect();
        varz["conns"] = Value::Array(conns);
    }
    Ok(Json(varz))
}

fn here(app: &App) -> u64 {
    u64::from(app.hub.config().node_id)
}

/// `?sort&offset&limit&uid&node_id`.
#[derive(Deserialize)]
pub struct ConnzQuery {
    #[serde(default)]
    sort: String,
    #[serde(default)]
    offset: usize,
    #[serde(default)]
    limit: usize,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    node_id: u64,
}

/// `GET /connz`: a page of this node's connections (`offset`, `limit`
/// default 20), those whose uid contains `uid`, sorted by `sort`
/// (WuKongIM's names: `id`, `inMsgDesc`, `idle`, …; default `id`), with
/// `total` (every connection here), `now`, `offset` and `limit`.
pub async fn connz(State(app): State<App>, Query(q): Query<ConnzQuery>) -> ApiResult {
    check_node(&app, q.node_id)?;
    let sort = match q.sort.as_str() {
        "" => (ConnSort::Id, false),
        name => ConnSort::parse(name).ok_or_else(|| ApiError::bad(format!("no sort {name:?}")))?,
    };
    let limit = match q.limit {
        0 => PAGE,
        n => n.min(app.limits.list(1000)),
    };
    let page = app.wire.connections(q.uid.trim(), sort, q.offset, limit);
    let now = app.hub.clock().now_ms();
    let list: Vec<Value> = page
        .connections
        .iter()
        .map(|c| conn_info(c, now, here(&app)))
        .collect();
    Ok(Json(json!({
        "connections": list,
        "now": rfc3339(now),
        "total": page.total,
        "offset": q.offset,
        "limit": limit,
    })))
}

/// Unix milliseconds as RFC 3339 UTC, as Go writes a `time.Time`.
fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

fn since(now: i64, then: i64) -> String {
    uptime(Duration::from_millis(
        u64::try_from(now - then).unwrap_or(0),
    ))
}

/// A connection as WuKongIM's `ConnInfo` shows it.
fn conn_info(c: &WireConnection, now: i64, node: u64) -> Value {
    let t = &c.traffic;
    let kind = match c.device.flag {
        imcore::DeviceFlag::App => "App",
        imcore::DeviceFlag::Web => "Web",
        imcore::DeviceFlag::Pc => "PC",
        _ => "Unknown",
    };
    let level = match c.device.level {
        DeviceLevel::Master => "master",
        DeviceLevel::Slave => "slave",
    };
    json!({
        "id": c.id.get(),
        "uid": c.device.uid.as_str(),
        "ip": c.address.map_or(String::new(), |a| a.ip().to_string()),
        "port": c.address.map_or(0, |a| a.port()),
        "last_activity": rfc3339(c.last_activity_ms),
        "uptime": since(now, c.connected_ms),
        "idle": since(now, c.last_activity_ms),
        "pending_bytes": 0,
        "in_msgs": t.in_msgs,
        "out_msgs": t.out_msgs,
        "in_msg_bytes": t.in_msg_bytes,
        "out_msg_bytes": t.out_msg_bytes,
        "in_packets": t.in_packets,
        "out_packets": t.out_packets,
        "in_packet_bytes": t.in_packet_bytes,
        "out_packet_bytes": t.out_packet_bytes,
        "device": format!("{kind}({level})"),
        "device_id": c.device.device_id.as_str(),
        "version": c.version,
        "proxy_type_format": "local",
        "leader_id": node,
        "node_id": node,
    })
}

/// `GET /health`: `{"status": "ok"}` while the server answers (in a
/// cluster, NATS' state is not asked: the router does not expose it).
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /healthz` (WuKongIM v3): the process answers.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz` (WuKongIM v3): `{"ready": true}`; 503 with
/// `{"ready": false, "reason"}` once the server is stopping.
pub async fn readyz(State(app): State<App>) -> Response {
    if *app.shutdown.stopping.borrow() {
        let body = json!({ "ready": false, "reason": "shutting down" });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    Json(json!({ "ready": true })).into_response()
}
