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
//! that several servers can share it. With `--nats URL` (or `IMCORE_NATS`)
//! as well, each server is one node of a cluster: `--node-id N`
//! (`IMCORE_NODE_ID`, default 1; unique per node) names it, and a device
//! on any node hears what is sent on every other (`NatsRouter`). When
//! ready it prints `tcp listening on 127.0.0.1:<tcp port>`, then
//! `listening on 127.0.0.1:<port>`. Everything listens on 127.0.0.1 only.
//!
//! A connection must send its HTTP request headers, and after a WebSocket
//! upgrade its CONNECT, each within the connect timeout
//! (`--connect-timeout-ms`, `IMCORE_CONNECT_TIMEOUT_MS`; default 2,000 ms,
//! WuKongIM's): a connection that sends nothing, or half a request, is
//! closed then instead of being held.
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
//!   from the store's outbox, so that a crash loses none.
//!
//! Messages, conversations, command queues and revocations live in the
//! embedded sled store and survive a restart. Tokens and groups are the
//! host's own data; this example keeps them in memory, per node: in a
//! cluster, register tokens on the node a client connects to and create
//! groups on every node.

mod access;
mod api;
mod channels;
mod conversations;
mod metrics;
mod net;
mod presence;
mod revoke;
mod routing;
mod send;
mod sync;
mod users;
mod webhook;

use std::net::SocketAddr;

/// A server that fans messages out allocates and frees a few small buffers
/// per delivery. jemalloc does that faster than glibc's allocator (the
/// load generator's `storm`: 4.6-5.7 µs of server CPU per delivery against
/// 7.1-8.9) and keeps an idle connection smaller (7.4 KiB against 7.6).
/// The load generator uses it too, so that the bare substrate it runs is
/// measured on the same allocator.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use std::sync::Arc;

use axum::routing::{any, get, post};
use axum::Router;
use imcore::store::{PgConfig, PgStore, Store};
use imcore::wire::{TokenTable, WireConfig, WireServer};
use imcore::{Hub, HubConfig, MemoryDirectory, NatsConfig, NatsRouter, SingleNode, SledStore};

#[derive(Clone)]
struct App {
    hub: Hub,
    directory: Arc<MemoryDirectory>,
    tokens: Arc<TokenTable>,
    wire: WireServer,
    addresses: Arc<routing::Addresses>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings = net::Settings::from_args()?;
    let directory = Arc::new(MemoryDirectory::new());
    let tokens = Arc::new(TokenTable::new());
    // sled in the data directory, unless PostgreSQL is named.
    let store: Arc<dyn Store> = match &settings.postgres {
        Some(url) => Arc::new(PgStore::open(PgConfig::new(url.clone())).await?),
        None => Arc::new(SledStore::open(&settings.data)?),
    };
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
        .directory(directory.clone())
        .config(HubConfig::default().node_id(settings.node_id));
    let mut router: Arc<dyn imcore::Router> = Arc::new(SingleNode);
    if let Some(url) = &settings.nats {
        router =
            Arc::new(NatsRouter::connect(NatsConfig::new(url.clone(), settings.node_id)).await?);
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
    // Upgrade, then CONNECT: each within the connect timeout.
    let wire = WireConfig::default().connect_timeout(settings.connect_timeout);
    let tcp = SocketAddr::from(([127, 0, 0, 1], settings.tcp_port));
    let tcp = tokio::net::TcpListener::bind(tcp).await?;
    let address = SocketAddr::from(([127, 0, 0, 1], settings.port));
    let listener = tokio::net::TcpListener::bind(address).await?;
    let addresses = routing::Addresses {
        tcp: tcp.local_addr()?.to_string(),
        ws: format!("ws://{}", listener.local_addr()?),
    };
    let app = App {
        addresses: Arc::new(addresses),
        wire: WireServer::new(hub.clone(), tokens.clone()).with_config(wire),
        hub,
        directory,
        tokens,
    };
    let router = Router::new()
        .route("/", any(net::websocket))
        .route("/user/token", post(users::user_token))
        .route("/user/device_quit", post(users::device_quit))
        .route("/channel", post(channels::channel_create))
        .route("/channel/subscriber_add", post(channels::subscriber_add))
        .route(
            "/channel/subscriber_remove",
            post(access::subscriber_remove),
        )
        .route("/channel/delete", post(access::channel_delete))
        .route("/channel/blacklist_add", post(access::blacklist_add))
        .route("/channel/blacklist_remove", post(access::blacklist_remove))
        .route("/channel/blacklist_set", post(access::blacklist_set))
        .route("/channel/whitelist_add", post(access::whitelist_add))
        .route("/channel/whitelist_remove", post(access::whitelist_remove))
        .route("/channel/whitelist_set", post(access::whitelist_set))
        .route("/user/systemuids_add", post(access::systemuids_add))
        .route("/user/systemuids_remove", post(access::systemuids_remove))
        .route("/message/send", post(send::message_send))
        .route("/message/sendbatch", post(send::message_sendbatch))
        .route("/channel/messagesync", post(sync::channel_sync))
        .route("/conversation/sync", post(conversations::conversation_sync))
        .route(
            "/conversations/clearUnread",
            post(conversations::clear_unread),
        )
        .route("/conversations/setUnread", post(conversations::set_unread))
        .route(
            "/conversations/delete",
            post(conversations::conversation_delete),
        )
        .route("/message/sync", post(sync::command_sync))
        .route("/message/syncack", post(sync::command_ack))
        .route("/message/revoke", post(revoke::revoke))
        .route("/message/extra/sync", post(revoke::extra_sync))
        .route("/user/onlinestatus", post(users::online_status))
        .route("/route", get(routing::route))
        .route("/route/batch", post(routing::route_batch))
        .route("/metrics", get(metrics::metrics))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::wrong_method)
        .layer(axum::middleware::map_response(api::json_errors))
        .layer(axum::middleware::from_fn(api::refuse_large_bodies))
        .layer(axum::extract::DefaultBodyLimit::max(api::BODY_LIMIT))
        .with_state(app.clone());
    println!("tcp listening on {}", tcp.local_addr()?);
    tokio::spawn(net::serve_tcp(tcp, app.clone()));
    println!("listening on {}", listener.local_addr()?);
    net::serve(listener, router, settings.connect_timeout).await;
    Ok(())
}
