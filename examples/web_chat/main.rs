//! web_chat: a chat page in the browser, on a hub of this crate, over a
//! JSON-over-WebSocket transport written here on the crate's public
//! traits: the reference for "bring your own transport".
//!
//! Run with `cargo run --example web_chat` and open the printed URL; a
//! second tab (or a private window) is another user. `--data DIR` keeps
//! the sled database in DIR (a temporary directory otherwise), `--port`
//! picks the port (0: any free one).
//!
//! The parts:
//!
//! - [`protocol`]: the JSON frames (serde-tagged enums) and how the
//!   crate's typed errors become error frames the page shows;
//! - [`transport`]: one WebSocket is one device: a [`imcore::DeviceSink`]
//!   that queues the hub's deliveries for the socket, and the loop that
//!   reads frames and writes deliveries;
//! - [`requests`]: each client frame as calls on [`imcore::Hub`] and the
//!   directory ([`imcore::StoredDirectory`]);
//! - `static/`: the page (plain HTML, CSS and JavaScript, no build step),
//!   compiled into the binary and served by axum.
//!
//! It uses none of the crate's `wire` feature (WuKongIM's binary
//! protocol): everything here is what a host writes for its own protocol.

mod protocol;
mod requests;
mod transport;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use imcore::{Hub, HubConfig, Limits, SledStore, StoredDirectory};

/// The page, its script and its style, compiled in.
const INDEX_HTML: &str = include_str!("static/index.html");
const APP_JS: &str = include_str!("static/app.js");
const STYLE_CSS: &str = include_str!("static/style.css");

/// The largest WebSocket message read, at least: see [`max_frame`].
const MIN_FRAME: usize = 64 * 1024;

/// The largest WebSocket message read for a hub taking payloads of up to
/// `max_payload` bytes: room for a frame whose text is well over the limit
/// (JSON escapes a character in up to 6 bytes), so that the hub, not the
/// socket, refuses it with a typed error the page shows. Past this the
/// socket closes.
fn max_frame(max_payload: usize) -> usize {
    max_payload.saturating_mul(8).max(MIN_FRAME)
}

/// A chat page on an imcore hub, over JSON on a WebSocket.
#[derive(Debug, Parser)]
#[command(name = "web_chat")]
struct Args {
    /// The port to listen on, on 127.0.0.1 (0: any free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Keep the sled database in this directory (default: a temporary
    /// one, removed on exit).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The largest message payload the hub takes, in bytes.
    #[arg(long, default_value_t = 4096)]
    max_payload: usize,
    /// How long after sending a message its sender may revoke it, in
    /// seconds.
    #[arg(long, default_value_t = 120)]
    revoke_window: u64,
}

/// What every connection shares.
#[derive(Debug, Clone)]
pub struct App {
    /// The hub: sends, deliveries, history, conversations, revocations.
    pub hub: Hub,
    /// The directory, in the same sled store: groups and their members.
    pub directory: Arc<StoredDirectory>,
    /// The revoke window, told to the page (which offers "revoke" on
    /// the user's own messages within it).
    pub revoke_window: Duration,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    // A temporary directory lives until the end of main.
    let temporary = match args.data {
        Some(_) => None,
        None => Some(tempfile::tempdir()?),
    };
    let dir = match (&args.data, &temporary) {
        (Some(dir), _) => dir.clone(),
        (None, t) => t.as_ref().ok_or("no data directory")?.path().to_path_buf(),
    };
    let store = Arc::new(SledStore::open(&dir)?);
    let directory = Arc::new(StoredDirectory::new(store.clone()));
    let revoke_window = Duration::from_secs(args.revoke_window);
    let config = HubConfig::default()
        .limits(Limits::default().max_payload(args.max_payload))
        .revoke_window(Some(revoke_window));
    let hub = Hub::builder()
        .store(store)
        .directory(directory.clone())
        .config(config)
        .build()?;
    let app = App {
        hub: hub.clone(),
        directory,
        revoke_window,
    };

    let router = Router::new()
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript", APP_JS) }),
        )
        .route("/style.css", get(|| async { asset("text/css", STYLE_CSS) }))
        .route("/ws", get(websocket))
        .fallback(|| async { http_error(StatusCode::NOT_FOUND, "not_found", "no such page") })
        .with_state(app);

    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, args.port))).await?;
    let port = listener.local_addr()?.port();
    println!("data in {}", dir.display());
    println!("listening on http://127.0.0.1:{port}");

    // On Ctrl-C or SIGTERM the hub shuts down first: it closes every
    // connection (each page is told), then the server stops.
    let closing = hub.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            stop_signal().await;
            if let Err(e) = closing.shutdown().await {
                eprintln!("hub shutdown: {e}");
            }
        })
        .await?;
    println!("stopped");
    Ok(())
}

/// A static file with its content type.
fn asset(kind: &str, body: &'static str) -> Response {
    ([(CONTENT_TYPE, format!("{kind}; charset=utf-8"))], body).into_response()
}

/// `/ws`: one WebSocket, one device, served by [`transport::serve`]. A
/// request that is not a WebSocket upgrade is answered with a JSON error.
async fn websocket(
    State(app): State<App>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return http_error(rejection.status(), "not_websocket", &rejection.body_text())
        }
    };
    let cap = max_frame(app.hub.config().limits.max_payload);
    upgrade
        .max_message_size(cap)
        .max_frame_size(cap)
        .on_upgrade(move |socket| transport::serve(app, socket))
}

/// An HTTP error as JSON: `{"type":"error","code":…,"message":…}`, the
/// shape of the WebSocket's error frames.
fn http_error(status: StatusCode, code: &'static str, message: &str) -> Response {
    let body = protocol::error(code, message, None);
    (status, Json(body)).into_response()
}

/// Ctrl-C, or SIGTERM on Unix.
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
