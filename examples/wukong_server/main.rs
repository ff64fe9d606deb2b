//! A WuKongIM-compatible server on imcore: the official clients (such as
//! the JavaScript SDK `wukongimjssdk`) connect to it over WebSocket, and a
//! business server drives it with WuKongIM-style HTTP JSON endpoints.
//!
//! ```text
//! cargo run --example wukong_server -- --port 5200 --data ./wukong-data
//! ```
//!
//! The port also comes from `IMCORE_PORT` (0 picks a free one), the data
//! directory from `IMCORE_DATA`. With `--postgres URL` (or
//! `IMCORE_POSTGRES`) the history lives in PostgreSQL instead of sled, so
//! that several servers can share it (with `--memory-store` it lives in
//! memory and is gone at exit: for tests and benchmarks). With `--nats URL` (or `IMCORE_NATS`)
//! as well, each server is one node of a cluster: `--node-id N`
//! (`IMCORE_NODE_ID`, default 1; unique per node) names it, and a device
//! on any node hears what is sent on every other (`NatsRouter`). When
//! ready it prints `tcp listening on 127.0.0.1:<tcp port>`, then
//! `listening on 127.0.0.1:<port>` (after `tls tcp listening on …` and
//! `wss listening on …` when those listeners are on).
//!
//! Everything listens on 127.0.0.1 unless `--bind`/`--tcp-bind` say
//! otherwise, which needs a manager token (`--manager-token`: every HTTP
//! request must then carry it in a `token` header). TLS (`--tls-cert`,
//! `--tls-key`, `--wss-port`, `--tls-tcp-port`), per-address limits on
//! logins and connections, list caps, logs (`RUST_LOG`, `--log-json`) and
//! the graceful SIGTERM are in the README's Deployment section; `--help`
//! lists every flag with its `IMCORE_*` environment variable.
//!
//! A connection must send its first HTTP request's headers, and after a
//! WebSocket upgrade its CONNECT, each within the connect timeout
//! (`--connect-timeout-ms`, `IMCORE_CONNECT_TIMEOUT_MS`; default 2,000 ms,
//! WuKongIM's; a TLS handshake too): a connection that sends nothing, or
//! half a request, is closed then instead of being held. Between requests
//! a keep-alive connection is kept idle for the keep-alive timeout
//! (`--keep-alive-timeout-s`, `IMCORE_KEEP_ALIVE_TIMEOUT_S`; default 90 s,
//! longer than common connection pools keep theirs), which every response
//! announces (`Keep-Alive: timeout=90`). A request's body
//! must then arrive whole within the body timeout (`--body-timeout-ms`,
//! `IMCORE_BODY_TIMEOUT_MS`; default 10,000 ms), or it is answered 408 and
//! its connection closed.
//!
//! Each sender (uid) may send 200 messages a second, in bursts of 400
//! (`--send-rate`, `--send-burst`; `IMCORE_SEND_RATE`,
//! `IMCORE_SEND_BURST`; 0 turns it off), over its connections and the HTTP
//! API together: more are refused with reason 22, rate limit (a SENDACK,
//! or HTTP 429).
//!
//! A send whose store call does not answer within the store deadline
//! (`--store-deadline-ms`, `IMCORE_STORE_DEADLINE_MS`; default 5,000 ms;
//! 0: wait for ever) fails, retryable (reason 15, HTTP 503), and is counted
//! in `imcore_store_timeouts`: a stalled disk or database holds senders
//! that long and no longer.
//!
//! - WebSocket, `ws://127.0.0.1:<port>/`: WuKongIM's binary protocol v2
//!   ([`imcore::wire::WireServer`]).
//! - TCP, `127.0.0.1:<tcp port>`: the same protocol as a plain byte
//!   stream, for WuKongIM's native SDKs and WuKongIMGoSDK (`--tcp-port`,
//!   `IMCORE_TCP_PORT`; default 5100, WuKongIM's; 0 picks a free one).
//! - HTTP on the WebSocket's port: WuKongIM's API for business servers, with its
//!   paths and bodies (the README's "HTTP API" table lists every endpoint
//!   and what differs from WuKongIM), and `GET /metrics` in Prometheus'
//!   text format. Every error is answered `{"msg", "status",
//!   "reason_code"}` with a 4xx status (a 5xx only when the store fails):
//!   malformed JSON, missing fields, wrong types, out-of-range numbers,
//!   bodies over 1 MiB, unknown paths and wrong methods included.
//! - `--webhook URL` (`IMCORE_WEBHOOK`): WuKongIM's webhook events
//!   (`msg.notify`, `msg.offline`, `user.onlinestatus`), the message events
//!   from the store's outbox, so that a crash loses none; in a cluster each
//!   batch of them is claimed and sent by one node (`webhook.rs`).
//! - `--console-addr 127.0.0.1:5300` (`IMCORE_CONSOLE_ADDR`; off unless
//!   given, and only with a manager token): the operator's console, a page
//!   of this node's live figures on a listener of its own (`console.rs`).
//!
//! Messages, conversations, command queues and revocations live in the
//! store (sled, or PostgreSQL), and so does the directory: tokens,
//! channels with their settings, subscribers, black- and whitelists and
//! system uids ([`imcore::StoredDirectory`]). They survive a restart, and in
//! a cluster every node answers from the same state: a business server may
//! call any node, and each node's cache hears the others' changes over NATS
//! ([`imcore::route::NatsChangeFeed`]).

mod access;
mod api;
mod channel_admin;
mod channels;
mod cli;
mod conn_admin;
mod console;
mod conversation_reads;
mod conversations;
mod events;
mod extras;
mod gate;
mod keep_alive;
mod limits;
mod manager;
mod messages;
mod metrics;
mod net;
mod presence;
mod retention;
mod revoke;
mod routes;
mod routing;
mod send;
mod shutdown;
mod sync;
mod tls;
mod transports;
mod users;
mod varz;
mod webhook;

use std::net::SocketAddr;
use std::process::ExitCode;

/// A server that fans messages out allocates and frees a few small buffers
/// per delivery. jemalloc does that faster than glibc's allocator (the
/// load generator's `storm`: 4.6-5.7 µs of server CPU per delivery against
/// 7.1-8.9) and keeps an idle connection smaller (7.4 KiB against 7.6).
/// The load generator uses it too, so that the bare substrate it runs is
/// measured on the same allocator.
///
/// Its background threads are on (the `background_threads` feature in
/// Cargo.toml): without them jemalloc returns freed pages to the system
/// only when the program allocates again, so a server left idle after a
/// burst kept what the burst used (the load generator's `burst`: +32 MiB
/// still held 60 s after four 4 MiB bursts of four users, +6 MiB with
/// them). `_RJEM_MALLOC_CONF` in the environment overrides it at run time.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use std::sync::Arc;

use imcore::route::NatsChangeFeed;
use imcore::store::{PgConfig, PgStore, Store};
use imcore::wire::{WireConfig, WireServer};
use imcore::{
    DirectoryStore, Hub, HubConfig, MemoryStore, NatsConfig, NatsRouter, SingleNode, SledStore,
    StoredDirectory,
};
use tracing::{error, info, warn};

use crate::cli::{Settings, Tool};
use crate::limits::Limits;
use crate::shutdown::Shutdown;

/// What every handler and connection shares: one pointer, since the web
/// framework clones its state for every request (cloning the fields
/// themselves cost 3.5 % of a `/message/send` under `loadgen http`).
#[derive(Clone)]
struct App(Arc<Shared>);

impl std::ops::Deref for App {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`App`] points at.
struct Shared {
    hub: Hub,
    /// Tokens, channels, subscribers, lists and system uids, in the store.
    directory: Arc<StoredDirectory>,
    wire: WireServer,
    addresses: Arc<routing::Addresses>,
    limits: Arc<Limits>,
    shutdown: Shutdown,
    /// The link to the other nodes, in a cluster (for `/metrics`).
    cluster: Option<NatsRouter>,
    /// When the server started (for `/varz`).
    started: std::time::Instant,
    /// Sessions open now by transport (for the console).
    transports: Arc<transports::Transports>,
    /// The store whose outbox the webhook reads, when there is one (for
    /// the console's backlog).
    outbox: Option<Arc<dyn Store>>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let settings = Settings::from_args();
    cli::init_logging(settings.log_json);
    if let Some(Tool::SelfSignedCert { cert, key, names }) = &settings.command {
        return match tls::write_self_signed(cert, key, names.clone()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Err(e) = settings.check() {
        error!("{e}");
        return ExitCode::from(2);
    }
    for warning in settings.warnings() {
        warn!("{warning}");
    }
    match run(settings).await {
        Ok(()) => {
            info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The store, as history and as directory: sled in the data directory,
/// unless PostgreSQL is named or memory asked for (`--memory-store`).
async fn stores(
    settings: &Settings,
) -> Result<(Arc<dyn Store>, Arc<dyn DirectoryStore>), Box<dyn std::error::Error>> {
    Ok(match &settings.postgres {
        Some(url) => {
            let store = Arc::new(PgStore::open(PgConfig::new(url.clone())).await?);
            (store.clone(), store)
        }
        None if settings.memory_store => {
            warn!("--memory-store: nothing is stored on disk, a restart loses everything");
            let store = Arc::new(MemoryStore::new());
            (store.clone(), store)
        }
        None => {
            let store = Arc::new(SledStore::open(&settings.data)?);
            (store.clone(), store)
        }
    })
}

/// The directory on its store; in a cluster, hearing the other nodes'
/// changes over NATS.
async fn directory(
    settings: &Settings,
    store: Arc<dyn DirectoryStore>,
) -> Result<StoredDirectory, Box<dyn std::error::Error>> {
    let directory = StoredDirectory::new(store);
    Ok(match &settings.nats {
        Some(url) => directory.feed(Arc::new(NatsChangeFeed::connect(url, "imcore").await?)),
        None => directory,
    })
}

/// The hub on its store and router, with the webhook if one is named;
/// and the link to the other nodes, in a cluster.
async fn hub(
    settings: &Settings,
    store: Arc<dyn Store>,
    directory: Arc<StoredDirectory>,
) -> Result<(Hub, Option<NatsRouter>), Box<dyn std::error::Error>> {
    // The webhook reads the outbox, which then takes every new message.
    let webhook = match &settings.webhook {
        Some(url) => {
            store.enable_outbox();
            Some(webhook::Webhook::parse(url)?)
        }
        None => None,
    };
    let hub = Hub::builder()
        .store(store.clone())
        .directory(directory)
        .config(
            HubConfig::default()
                .node_id(settings.node_id)
                .send_rate(settings.send_rate())
                .store_deadline(settings.store_deadline())
                .stream_idle_timeout(settings.stream_idle_timeout())
                .retention(settings.retention()),
        );
    let mut router: Arc<dyn imcore::Router> = Arc::new(SingleNode);
    let mut cluster = None;
    if let Some(url) = &settings.nats {
        let nats = NatsRouter::connect(NatsConfig::new(url.clone(), settings.node_id)).await?;
        router = Arc::new(nats.clone());
        cluster = Some(nats);
    }
    // With a webhook, the router is tapped for who comes and goes.
    let mut changes = None;
    if webhook.is_some() {
        let (tap, rx) = presence::PresenceTap::new(router);
        router = Arc::new(tap);
        changes = Some(rx);
    }
    let hub = hub.router(router).build()?;
    if let Some(webhook) = webhook {
        if let Some(changes) = changes {
            tokio::spawn(presence::run(webhook.clone(), hub.clone(), changes));
        }
        tokio::spawn(webhook.run(store, hub.clone()));
    }
    Ok((hub, cluster))
}

/// Serves until SIGTERM or Ctrl-C, then shuts down gracefully.
async fn run(settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    let (store, directory_store) = stores(&settings).await?;
    let directory = Arc::new(directory(&settings, directory_store).await?);
    let outbox = settings.webhook.is_some().then(|| store.clone());
    let (hub, cluster) = hub(&settings, store, directory.clone()).await?;
    let tls = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    let limits = Arc::new(Limits::new(
        settings.logins_per_second,
        settings.connections_per_address,
        settings.max_list as usize,
    ));
    tokio::spawn(limits.clone().forget_idle());
    tokio::spawn(events::close_stale_streams(hub.clone()));
    tokio::spawn(retention::run_passes(hub.clone()));
    // Upgrade, then CONNECT: each within the connect timeout.
    let wire = WireConfig::default().connect_timeout(settings.connect_timeout());
    // From here on, SIGTERM and Ctrl-C stop the server gracefully.
    let signal = shutdown::signal();
    let bind = |ip, port| async move {
        let address = SocketAddr::new(ip, port);
        tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| format!("cannot listen on {address}: {e}"))
    };
    let tcp = bind(settings.tcp_bind, settings.tcp_port).await?;
    let listener = bind(settings.bind, settings.port).await?;
    let tls_tcp = match settings.tls_tcp_port {
        Some(port) => Some(bind(settings.tcp_bind, port).await?),
        None => None,
    };
    let wss = match settings.wss_port {
        Some(port) => Some(bind(settings.bind, port).await?),
        None => None,
    };
    let console = match settings.console_addr {
        Some(address) => Some(bind(address.ip(), address.port()).await?),
        None => None,
    };
    let addresses = routing::Addresses::new(
        settings.external_host.as_deref(),
        tcp.local_addr()?,
        listener.local_addr()?,
        wss.as_ref().map(|l| l.local_addr()).transpose()?,
    );
    let (stop, shutdown) = Shutdown::new();
    let authenticator = Arc::new(limits::Limited {
        limits: limits.clone(),
        inner: directory.clone(),
    });
    let app = App(Arc::new(Shared {
        addresses: Arc::new(addresses),
        wire: WireServer::new(hub.clone(), authenticator).with_config(wire),
        hub: hub.clone(),
        directory,
        limits,
        shutdown: shutdown.clone(),
        cluster,
        started: std::time::Instant::now(),
        transports: Arc::default(),
        outbox,
    }));
    let token = settings.manager_token.clone().map(Arc::new);
    let router = routes::router(app.clone(), token.clone(), settings.body_timeout());
    let keep_alive = keep_alive::KeepAlive::new(settings.connect_timeout(), settings.keep_alive());
    // TLS listeners first: the lines the harnesses wait for stay the last.
    if let (Some(tls_tcp), Some(tls)) = (tls_tcp, &tls) {
        println!("tls tcp listening on {}", tls_tcp.local_addr()?);
        tokio::spawn(net::serve_tcp(tls_tcp, Some(tls.clone()), app.clone()));
    }
    if let (Some(wss), Some(tls)) = (wss, &tls) {
        println!("wss listening on {}", wss.local_addr()?);
        let serve = net::serve_http(
            wss,
            router.clone(),
            Some(tls.clone()),
            app.clone(),
            keep_alive.clone(),
        );
        tokio::spawn(serve);
    }
    if let (Some(console), Some(token)) = (console, &token) {
        println!("console listening on {}", console.local_addr()?);
        let router = console::router(app.clone(), token.clone());
        let serve = net::serve_http(console, router, None, app.clone(), keep_alive.clone());
        tokio::spawn(serve);
    }
    println!("tcp listening on {}", tcp.local_addr()?);
    tokio::spawn(net::serve_tcp(tcp, None, app.clone()));
    println!("listening on {}", listener.local_addr()?);
    tokio::spawn(net::serve_http(listener, router, None, app, keep_alive));
    let signal = signal.await;
    info!("{signal}: shutting down");
    shutdown::run(stop, shutdown, hub, settings.shutdown_timeout()).await?;
    Ok(())
}
