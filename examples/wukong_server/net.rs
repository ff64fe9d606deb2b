//! Settings, the accept loop, and WebSocket connections.

use std::future::ready;
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::App;

/// What the server is told at start.
pub struct Settings {
    pub port: u16,
    /// The TCP port for WuKongIM's native SDKs (its 5100 convention; 0:
    /// any free port).
    pub tcp_port: u16,
    pub data: PathBuf,
    /// A PostgreSQL URL: the store is then `PgStore` there, not sled in
    /// `data`.
    pub postgres: Option<String>,
    /// A NATS URL: the server is then one node of a cluster, joined to
    /// the others there (with `postgres`, the history they share).
    pub nats: Option<String>,
    /// A webhook URL: WuKongIM's events are POSTed there, from the
    /// store's outbox.
    pub webhook: Option<String>,
    /// This node's number (message ids, and its name in the cluster).
    pub node_id: u16,
    /// How long a connection has to send its request headers, and after an
    /// upgrade its CONNECT.
    pub connect_timeout: Duration,
}

impl Settings {
    /// From `--port`/`--data`/`--connect-timeout-ms`/`--postgres`/
    /// `--nats`/`--node-id` or the environment.
    pub fn from_args() -> Result<Self, String> {
        let env =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
        let mut port = env("IMCORE_PORT", "5200");
        let mut tcp_port = env("IMCORE_TCP_PORT", "5100");
        let mut data = env("IMCORE_DATA", "wukong-data");
        let mut timeout = env("IMCORE_CONNECT_TIMEOUT_MS", "2000");
        let mut postgres = env("IMCORE_POSTGRES", "");
        let mut nats = env("IMCORE_NATS", "");
        let mut webhook = env("IMCORE_WEBHOOK", "");
        let mut node_id = env("IMCORE_NODE_ID", "1");
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let slot = match arg.as_str() {
                "--port" => &mut port,
                "--tcp-port" => &mut tcp_port,
                "--data" => &mut data,
                "--connect-timeout-ms" => &mut timeout,
                "--postgres" => &mut postgres,
                "--nats" => &mut nats,
                "--webhook" => &mut webhook,
                "--node-id" => &mut node_id,
                other => {
                    return Err(format!(
                        "unknown argument {other}; use --port N --tcp-port N --data DIR \
                         --connect-timeout-ms MS --postgres URL --nats URL --node-id N \
                         --webhook URL"
                    ))
                }
            };
            *slot = args.next().ok_or(format!("{arg} needs a value"))?;
        }
        let timeout: u64 = timeout.parse().ok().filter(|ms| *ms > 0).ok_or(format!(
            "bad connect timeout {timeout} (milliseconds, at least 1)"
        ))?;
        Ok(Settings {
            port: port.parse().map_err(|_| format!("bad port {port}"))?,
            tcp_port: tcp_port
                .parse()
                .map_err(|_| format!("bad TCP port {tcp_port}"))?,
            data: PathBuf::from(data),
            postgres: Some(postgres).filter(|url| !url.is_empty()),
            nats: Some(nats).filter(|url| !url.is_empty()),
            webhook: Some(webhook).filter(|url| !url.is_empty()),
            node_id: node_id
                .parse()
                .map_err(|_| format!("bad node id {node_id} (0 to 1023)"))?,
            connect_timeout: Duration::from_millis(timeout),
        })
    }
}

/// The next connection; on a failure (out of file descriptors, say) it
/// says so and waits for some to close.
async fn accept(listener: &TcpListener, what: &str) -> tokio::net::TcpStream {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => return tcp,
            Err(e) => {
                eprintln!("{what} accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Accepts connections for ever. Each must send its request headers
/// within `header_timeout` (from the moment it is accepted, and again for
/// each request it sends), or it is closed: hyper's header read timeout,
/// which `axum::serve` leaves off.
pub async fn serve(listener: TcpListener, router: Router, header_timeout: Duration) {
    loop {
        let tcp = accept(&listener, "http").await;
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            // HTTP/1 (WebSocket upgrades and the JSON API), served by
            // hyper's own builder: hyper-util's `auto` first waits for a
            // byte to sniff the version, and only then starts the timer.
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            if let Err(e) = connection.await {
                eprintln!("http connection ended: {e}");
            }
        });
    }
}

/// Accepts TCP connections for ever, each served by the wire server: what
/// WuKongIM's native SDKs (and WuKongIMGoSDK) connect to. A connection
/// must send its CONNECT within the wire server's connect timeout.
pub async fn serve_tcp(listener: TcpListener, app: App) {
    loop {
        let tcp = accept(&listener, "tcp").await;
        // Small packets, answered at once: no Nagle delay.
        if let Err(e) = tcp.set_nodelay(true) {
            eprintln!("tcp nodelay: {e}");
        }
        let wire = app.wire.clone();
        tokio::spawn(async move {
            match wire.serve_stream(tcp).await {
                Ok(end) => eprintln!("tcp connection ended: {end:?}"),
                Err(e) => eprintln!("tcp connection failed: {e}"),
            }
        });
    }
}

/// Bytes read from a WebSocket at a time.
const READ_BUFFER: usize = 512;

/// Upgrades to a WebSocket served by the wire server.
pub async fn websocket(State(app): State<App>, upgrade: WebSocketUpgrade) -> Response {
    // The WebSocket library assembles whole messages before the wire server
    // sees them: cap them at what the wire server would read past anyway.
    let cap = app.wire.config().max_discard + 16;
    upgrade
        // A small read buffer: it is allocated whole for every connection
        // (128 KiB by default), and an idle connection should cost little.
        // Larger messages still arrive, over several reads; packets from
        // clients are small (a SEND is its payload and about 100 bytes, a
        // RECVACK 15). 512 bytes cost no measurable CPU under the load
        // generator against 1 KiB, and 0.5 KiB less per connection.
        .read_buffer_size(READ_BUFFER)
        .max_message_size(cap)
        .max_frame_size(cap)
        .on_upgrade(move |socket| serve_socket(app, socket))
}

/// Adapts a WebSocket to the wire server: binary messages in, one binary
/// message per packet out.
async fn serve_socket(app: App, socket: WebSocket) {
    let (sink, stream) = socket.split();
    let incoming = Box::pin(
        stream
            .take_while(|m| ready(!matches!(m, Ok(WsMessage::Close(_)))))
            .filter_map(|m| {
                ready(match m {
                    Ok(WsMessage::Binary(b)) => Some(Ok(b)),
                    Ok(WsMessage::Text(t)) => Some(Ok(Bytes::copy_from_slice(t.as_bytes()))),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
            }),
    );
    let outgoing =
        Box::pin(sink.with(|frame: Bytes| ready(Ok::<_, axum::Error>(WsMessage::Binary(frame)))));
    match app.wire.serve(incoming, outgoing).await {
        Ok(end) => eprintln!("connection ended: {end:?}"),
        Err(e) => eprintln!("connection failed: {e}"),
    }
}
