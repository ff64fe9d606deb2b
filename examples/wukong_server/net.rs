//! The accept loops (plain and TLS, HTTP and TCP) and WebSocket
//! connections. Every accepted connection takes a slot of its source
//! address ([`Limits::open`]) or is closed at once; every connection task
//! is counted for the graceful shutdown.

use std::future::{ready, Future};
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::Request;
use axum::response::Response;
use axum::{Extension, Router};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tower::ServiceExt as _;
use tracing::{debug, warn};

use imcore::wire::{SessionEnd, WireError, WireServer};

use crate::keep_alive::{Expired, KeepAlive, Pace};
use crate::limits::{from_peer, Slot};
use crate::shutdown::Shutdown;
use crate::transports::{Open, Transport};
use crate::App;

/// The next connection that its address has room for, or `None` once the
/// server is stopping. A failure (out of file descriptors, say) is logged
/// and waited out.
async fn accept(
    listener: &TcpListener,
    what: &str,
    app: &App,
) -> Option<(TcpStream, SocketAddr, Slot)> {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = app.shutdown.stopped() => return None,
        };
        match accepted {
            Ok((tcp, peer)) => match app.limits.open(peer.ip()) {
                Some(slot) => return Some((tcp, peer, slot)),
                None => debug!(%peer, what, "closed at accept: too many connections from it"),
            },
            Err(e) => {
                warn!("{what} accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Accepts HTTP connections (WebSocket upgrades and the API) until the
/// server stops, over TLS when `tls` is given. Each must finish its TLS
/// handshake, and then send its first request's headers, each within
/// `keep_alive.first_request`, or it is closed; between requests it is
/// kept idle for `keep_alive.idle`, as every response announces.
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    app: App,
    keep_alive: KeepAlive,
) {
    // Its WebSockets are counted as ws, or as wss over TLS.
    let transport = match tls {
        None => Transport::Ws,
        Some(_) => Transport::Wss,
    };
    let router = router.layer(Extension(transport));
    while let Some((tcp, peer, slot)) = accept(&listener, "http", &app).await {
        let router = router.clone();
        let tls = tls.clone();
        let shutdown = app.shutdown.clone();
        let keep_alive = keep_alive.clone();
        app.shutdown.http.spawn(async move {
            let handshake = keep_alive.first_request;
            match tls {
                None => http_connection(tcp, peer, slot, router, keep_alive, shutdown).await,
                Some(tls) => match tokio::time::timeout(handshake, tls.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        http_connection(tls, peer, slot, router, keep_alive, shutdown).await;
                    }
                    Ok(Err(e)) => debug!(%peer, "TLS handshake failed: {e}"),
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
}

/// Serves one HTTP/1 connection (hyper's own builder: hyper-util's `auto`
/// first waits for a byte to sniff the version) until it closes, its
/// [`Pace`] expires, or the server stops: then the request under way
/// finishes and the connection closes.
async fn http_connection<IO>(
    io: IO,
    peer: SocketAddr,
    slot: Slot,
    router: Router,
    keep_alive: KeepAlive,
    shutdown: Shutdown,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let pace = Pace::new(&keep_alive);
    // The handlers see the peer (the login limit) and its slot (an
    // upgraded WebSocket keeps it); the request counts as under way, for
    // the idle time, from its headers to its response.
    let service = router
        .map_request(move |mut r: Request<Incoming>| {
            r.extensions_mut().insert(ConnectInfo(peer));
            r.extensions_mut().insert(slot.clone());
            r
        })
        .map_future({
            let pace = pace.clone();
            move |answer| {
                let visit = pace.begin();
                let keep_alive = keep_alive.clone();
                async move {
                    let mut response: Response = answer.await?;
                    drop(visit);
                    keep_alive.announce(&mut response);
                    Ok::<_, std::convert::Infallible>(response)
                }
            }
        });
    // No header read timeout: hyper's starts again at every request, so
    // it would time the idle gaps too; `pace` times the connection.
    let connection = http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
        .with_upgrades();
    tokio::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = shutdown.stopped() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
        // Nothing under way: dropping the connection closes it.
        expired = pace.expired() => {
            return match expired {
                Expired::FirstRequest => debug!(%peer, "closed: no request headers in time"),
                Expired::Idle => debug!(%peer, "closed: idle past the keep-alive timeout"),
            };
        }
    };
    if let Err(e) = ended {
        debug!(%peer, "http connection ended: {e}");
    }
}

/// Accepts TCP connections until the server stops, each served by the
/// wire server (over TLS when `tls` is given): what WuKongIM's native SDKs
/// (and WuKongIMGoSDK) connect to. A connection must finish its TLS
/// handshake and send its CONNECT, each within the connect timeout.
pub async fn serve_tcp(listener: TcpListener, tls: Option<TlsAcceptor>, app: App) {
    let what = if tls.is_some() { "tls tcp" } else { "tcp" };
    let transport = if tls.is_some() {
        Transport::Tls
    } else {
        Transport::Tcp
    };
    while let Some((tcp, peer, slot)) = accept(&listener, what, &app).await {
        // Small packets, answered at once: no Nagle delay.
        if let Err(e) = tcp.set_nodelay(true) {
            debug!("tcp nodelay: {e}");
        }
        let wire = app.wire.clone();
        let tls = tls.clone();
        let open = app.transports.open(transport);
        app.shutdown.sessions.spawn(async move {
            let _counted = (slot, open);
            let ended = match tls {
                None => serve_stream(&wire, tcp, peer).await,
                Some(tls) => {
                    let handshake = wire.config().connect_timeout;
                    match tokio::time::timeout(handshake, tls.accept(tcp)).await {
                        Ok(Ok(tls)) => serve_stream(&wire, tls, peer).await,
                        Ok(Err(e)) => return debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => return debug!(%peer, "TLS handshake timed out"),
                    }
                }
            };
            match ended {
                Ok(end) => debug!(%peer, "{what} connection ended: {end:?}"),
                Err(e) => debug!(%peer, "{what} connection failed: {e}"),
            }
        });
    }
}

/// Serves one byte-stream connection, then closes it lingering: the wire
/// server has sent its last packet and shut its side down; what the client
/// still sends is read and thrown away until it closes too (for at most
/// [`LINGER`]). A socket closed with the client's data unread is reset,
/// and a reset can throw away, at the client, the DISCONNECT sent just
/// before it.
async fn serve_stream<S>(
    wire: &WireServer,
    mut stream: S,
    peer: SocketAddr,
) -> Result<SessionEnd, WireError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let ended = from_peer(peer.ip(), wire.serve_stream_from(Some(peer), &mut stream)).await;
    if told(&ended) {
        let mut nowhere = tokio::io::sink();
        let drain = tokio::io::copy(&mut stream, &mut nowhere);
        let _ = tokio::time::timeout(LINGER, drain).await;
    }
    ended
}

/// Whether the server ended the session with a last word to the client (a
/// DISCONNECT, a refusing CONNACK, the last deliveries and SENDACKs before
/// a shutdown's close), which a lingering close keeps from being lost; a
/// client that timed out or left is closed at once.
fn told(ended: &Result<SessionEnd, WireError>) -> bool {
    matches!(
        ended,
        Ok(SessionEnd::Refused(_) | SessionEnd::Disconnected(_))
    )
}

/// How long a closing connection waits for the client to close its side.
const LINGER: Duration = Duration::from_secs(1);

/// Bytes read from a WebSocket at a time.
const READ_BUFFER: usize = 512;

/// Upgrades to a WebSocket served by the wire server. Needs no manager
/// token: the client logs in with its own in CONNECT.
pub async fn websocket(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(slot): Extension<Slot>,
    Extension(transport): Extension<Transport>,
    upgrade: WebSocketUpgrade,
) -> Response {
    // The WebSocket library assembles whole messages before the wire server
    // sees them: cap them at what the wire server would read past anyway.
    let cap = app.wire.config().max_discard + 16;
    // Counted from now, so that a shutdown that starts between the answer
    // and the session's start still waits for it.
    let session = app.shutdown.sessions.token();
    let open = app.transports.open(transport);
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
        // No `async` block around it: it would hold the session's future
        // and, again, what that is made of.
        .on_upgrade(move |socket| {
            from_peer(
                peer.ip(),
                serve_socket(app, socket, peer, (session, slot, open)),
            )
        })
}

/// Adapts a WebSocket to the wire server: binary messages in, one binary
/// message per packet out. `_counted` (its shutdown token, its address's
/// slot and its transport's count) is held until it ends.
///
/// Not an `async fn`: the socket is split and the server taken out of `app`
/// first, so that the future, which lives as long as the connection, holds
/// only what it goes on using (an `async fn` keeps room for its arguments
/// for as long as it lives).
fn serve_socket(
    app: App,
    socket: WebSocket,
    peer: SocketAddr,
    _counted: (TaskTrackerToken, Slot, Open),
) -> impl Future<Output = ()> {
    let (sink, stream) = socket.split();
    let mut incoming = Box::pin(
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
    let wire = app.wire.clone();
    drop(app);
    // A block, not an `async fn`: it holds what it captured and nothing
    // twice (an `async fn` keeps its arguments beside its locals).
    async move {
        let _counted = _counted;
        let ended = wire.serve_from(Some(peer), &mut incoming, outgoing).await;
        match &ended {
            Ok(end) => debug!("connection ended: {end:?}"),
            Err(e) => debug!("connection failed: {e}"),
        }
        if !told(&ended) {
            return;
        }
        // A lingering close: the wire server has sent its last packet (a
        // DISCONNECT, a refusing CONNACK) and the close frame; read on until
        // the client's close frame answers it. A socket closed with the
        // client's data unread is reset, and a reset can throw away, at the
        // client, what was sent just before it.
        let _ =
            tokio::time::timeout(LINGER, async { while incoming.next().await.is_some() {} }).await;
    }
}
