//! The operator's console: a page of this node's live figures, on a
//! listener of its own (`--console-addr 127.0.0.1:5300`,
//! `IMCORE_CONSOLE_ADDR`; off unless given).
//!
//! A separate address, not a path on the API's port, so that the console
//! can be bound where only operators reach it (a management network, or
//! loopback behind an SSH tunnel) while the API and WebSockets face the
//! clients; and so that the page, which needs no token, is not one more
//! exception to the API's token check. It needs `--manager-token`:
//!
//! - `GET /` (and `/console.js`, `/console.css`): the page, compiled into
//!   the binary, served to anyone who reaches the address; it holds no
//!   figure. It asks for the manager token and keeps it in the tab's
//!   `sessionStorage`.
//! - `GET /stats`: the figures as JSON, only with the manager token (the
//!   same check as the API's, [`manager::refusal`]: a `token` header or
//!   `Authorization: Bearer`); without it, 401 and the API's JSON error.
//!   Unknown paths and methods are answered as the API answers them.
//!
//! The figures are what the server counts anyway (the hub's, the wire
//! server's, the limits', the directory cache's), as counters since the
//! start: the page makes rates of them from successive snapshots, about
//! one a second. Store latency is the hub's store writes (history and
//! commands, on the send path) in buckets that double
//! ([`imcore::LatencyBuckets`]); the page takes percentiles of the last
//! seconds' difference. The webhook backlog is the outbox's length, read
//! up to [`BACKLOG_LOOK`] entries. The directory's channels and
//! subscriptions are counted by its store reading every entry, so at most
//! once per [`COUNT_EVERY`] (the figures say when).
//!
//! In a cluster each node has its own console: a node shows its own
//! connections, and the other nodes' users online as it hears them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use imcore::{LatencyBuckets, SendCounts};
use serde_json::{json, Map, Value};

use crate::api::{self, ApiResult};
use crate::cli::Secret;
use crate::{manager, App};

/// The page.
const INDEX_HTML: &str = include_str!("console/index.html");
/// Its script: fetching, rates, charts.
const CONSOLE_JS: &str = include_str!("console/console.js");
/// Its style.
const CONSOLE_CSS: &str = include_str!("console/console.css");

/// The most outbox entries read to measure the webhook's backlog; a longer
/// one is shown as at least this.
pub const BACKLOG_LOOK: usize = 1000;

/// How often the directory's channels and subscriptions are counted at
/// most.
pub const COUNT_EVERY: Duration = Duration::from_secs(5);

/// The last count of the directory, and when it was made.
static DIRECTORY_COUNT: Mutex<Option<(Instant, Value)>> = Mutex::new(None);

/// The console's routes: the page for anyone, the figures behind `token`.
pub fn router(app: App, token: Arc<Secret>) -> Router {
    let stats = get(stats).route_layer(axum::middleware::from_fn_with_state(token, with_token));
    Router::new()
        .route("/", get(|| file("text/html; charset=utf-8", INDEX_HTML)))
        .route(
            "/console.js",
            get(|| file("text/javascript; charset=utf-8", CONSOLE_JS)),
        )
        .route(
            "/console.css",
            get(|| file("text/css; charset=utf-8", CONSOLE_CSS)),
        )
        .route("/stats", stats)
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::wrong_method)
        .with_state(app)
}

/// Passes a request that carries the manager token; answers any other as
/// the API does ([`manager::refusal`]).
async fn with_token(State(token): State<Arc<Secret>>, request: Request, next: Next) -> Response {
    match manager::refusal(Some(&token), &request) {
        Some(refusal) => refusal,
        None => next.run(request).await,
    }
}

/// One of the page's files.
async fn file(kind: &'static str, body: &'static str) -> impl IntoResponse {
    ([(CONTENT_TYPE, kind), (CACHE_CONTROL, "no-cache")], body)
}

/// A class's sends as JSON.
fn counts(c: &SendCounts) -> Value {
    json!({
        "accepted": c.accepted,
        "duplicate": c.duplicates,
        "refused": c.refused,
        "failed": c.failed,
    })
}

/// Store write latency: each bucket's upper bound in µs (`null` for the
/// last, unbounded) and count, with the percentiles since the start.
fn latency(b: &LatencyBuckets) -> Value {
    let micros = |d: Option<std::time::Duration>| d.map(|d| d.as_micros() as u64);
    let bounds: Vec<Option<u64>> = (0..LatencyBuckets::LEN)
        .map(|i| micros(LatencyBuckets::upper_bound(i)))
        .collect();
    json!({
        "bucket_bounds_us": bounds,
        "bucket_counts": b.counts(),
        "p50_us": micros(b.quantile(0.5)),
        "p90_us": micros(b.quantile(0.9)),
        "p99_us": micros(b.quantile(0.99)),
    })
}

/// The webhook's backlog: outbox entries not yet told (and removed), up
/// to [`BACKLOG_LOOK`]; `null` without a webhook.
async fn webhook(app: &App) -> Value {
    let Some(store) = &app.outbox else {
        return Value::Null;
    };
    match store.outbox(BACKLOG_LOOK).await {
        Ok(entries) => json!({
            "backlog": entries.len(),
            "at_least": entries.len() >= BACKLOG_LOOK,
        }),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

/// The directory's channels and subscriptions, counted at most once per
/// [`COUNT_EVERY`]; `null` figures from a store that does not count.
async fn directory_counts(app: &App) -> Value {
    let last = || DIRECTORY_COUNT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, counted)) = last().as_ref() {
        if at.elapsed() < COUNT_EVERY {
            return counted.clone();
        }
    }
    let counted = match app.directory.store().counts().await {
        Ok(Some(c)) => json!({ "channels": c.channels, "subscriptions": c.subscriptions }),
        Ok(None) => json!({ "channels": null, "subscriptions": null }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let counted = json!({ "counted_at_ms": at, "counts": counted });
    *last() = Some((Instant::now(), counted.clone()));
    counted
}

/// The nodes this one knows: itself with its connections, and in a
/// cluster the others with their users online as they announce them.
fn nodes(app: &App) -> Value {
    let here = json!({
        "node_id": app.hub.config().node_id,
        "this": true,
        "connections": app.wire.stats().connections,
        "users": app.hub.online_users(),
    });
    let mut list = vec![here];
    if let Some(cluster) = &app.cluster {
        list.extend(cluster.nodes().into_iter().map(|(node, users)| {
            json!({ "node_id": node, "this": false, "connections": null, "users": users })
        }));
    }
    Value::Array(list)
}

/// `GET /stats`: a snapshot of this node's counters.
async fn stats(State(app): State<App>) -> ApiResult {
    let hub = app.hub.stats();
    let wire = app.wire.stats();
    let limits = app.limits.stats();
    let directory = app.directory.stats();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let refusals: Map<String, Value> = wire
        .refusals
        .iter()
        .map(|(reason, n)| (reason.as_u8().to_string(), json!(n)))
        .collect();
    let transports: Map<String, Value> = app
        .transports
        .open_now()
        .iter()
        .map(|(name, n)| ((*name).to_owned(), json!(n)))
        .collect();
    let accepted = hub.history.accepted + hub.commands.accepted + hub.transient.accepted;
    Ok(Json(json!({
        "node_id": app.hub.config().node_id,
        "version": env!("CARGO_PKG_VERSION"),
        "now_ms": now_ms,
        "uptime_s": app.started.elapsed().as_secs(),
        "connections": {
            "logged_in": wire.connections,
            "devices_online": hub.online_devices,
            "users_online": app.hub.online_users(),
            "open_sockets": limits.open,
            "sessions_by_transport": transports,
        },
        "nodes": nodes(&app),
        "logins": {
            "accepted": wire.logins,
            "refused": wire.refusals.iter().map(|(_, n)| n).sum::<u64>(),
            "refused_by_reason": refusals,
            "connect_timeouts": wire.timeouts,
        },
        "sends": {
            "accepted": accepted,
            "history": counts(&hub.history),
            "command": counts(&hub.commands),
            "transient": counts(&hub.transient),
            "refused_unclassified": hub.refused_unclassified,
        },
        "deliveries": {
            "delivered": hub.deliveries,
            "queued": hub.queued_deliveries,
            "deepest_queue": hub.deepest_queue,
            "late": hub.late_deliveries,
        },
        "slow": {
            "slow_consumer_closes": hub.slow_consumers,
            "write_timeouts": wire.write_timeouts,
        },
        "limits": {
            "sends_rate_limited": hub.rate_limited,
            "logins_rate_limited": limits.refused_logins,
            "connections_refused": limits.refused_connections,
            "store_timeouts": hub.store_timeouts,
        },
        "store": {
            "writes": hub.store_writes,
            "write_seconds": hub.store_write_time.as_secs_f64(),
            "latency": latency(&hub.store_write_latency),
        },
        "webhook": webhook(&app).await,
        "directory": {
            "counted": directory_counts(&app).await,
            "cached_channels": directory.cached,
            "hits": directory.hits,
            "loads": directory.loads,
            "invalidations": directory.invalidations,
        },
    })))
}
