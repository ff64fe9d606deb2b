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
//! - HTTP, all `POST` with JSON bodies on the same port; errors are HTTP
//!   400 (404 for what does not exist) with
//!   `{"status", "msg", "reason_code"}`:
//!   - `/user/token` `{uid, token, device_flag=1, device_level=1}`: who may
//!     log in; `/user/device_quit` `{uid, device_flag=-1}`: logs devices out
//!     (DISCONNECT 12) and forgets their tokens;
//!   - `/channel` `{channel_id, channel_type=2, subscribers}`: creates a
//!     group, owned by the first subscriber; `/channel/subscriber_add`;
//!   - `/message/send` `{header: {no_persist=0, red_dot=0, sync_once=1},
//!     from_uid, channel_id, channel_type | subscribers, client_msg_no?,
//!     payload (base64)}`: a server-side send. As in WuKongIM,
//!     `sync_once` defaults to 1 (a pass-through command); send
//!     `sync_once: 0` for a message clients keep;
//!   - `/channel/messagesync` `{login_uid, channel_id, channel_type,
//!     start_message_seq, end_message_seq, limit, pull_mode}`: channel
//!     history, revoked messages marked `revoke: 1` with the payload
//!     removed;
//!   - `/conversation/sync` `{uid, version, msg_count}`;
//!     `/conversations/clearUnread` `{uid, channel_id, channel_type,
//!     message_seq}` (read up to that seq; 0 for everything);
//!   - `/message/sync` `{uid, message_seq, limit}` and `/message/syncack`
//!     `{uid, last_message_seq}`: the command queue;
//!   - `/message/revoke` `{uid, message_id | client_msg_no |
//!     (channel_id, channel_type, message_seq)}`: `uid` revokes a message;
//!   - `/user/onlinestatus` `[uid, …]`: the users with a master device
//!     online on any node, `[{uid, online: 1}]`;
//!   - `/message/extra/sync` `{login_uid, channel_id, channel_type,
//!     extra_version, limit}`: revocation state, TangSengDaoDao's shape;
//!   - `GET /metrics`: counters in Prometheus' text format (sends by class
//!     and result, deliveries, slow consumers, online devices and their
//!     queue depths, store writes and their time, connections, logins,
//!     refusals by reason, timeouts).
//!
//! Messages, conversations, command queues and revocations live in the
//! embedded sled store and survive a restart. Tokens and groups are the
//! host's own data; this example keeps them in memory, per node: in a
//! cluster, register tokens on the node a client connects to and create
//! groups on every node.

mod access;
mod api;
mod metrics;
mod net;
mod presence;
mod routing;
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

use api::{channel, flag, history_json, message_json, uid, ApiError, ApiResult};
use axum::extract::State;
use axum::routing::{any, get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use imcore::store::{Page, PgConfig, PgStore, Store};
use imcore::wire::{TokenTable, WireConfig, WireServer};
use imcore::{
    ChannelType, ClientMsgNo, DeviceFlag, DeviceLevel, Error, Flags, Hub, HubConfig,
    MemoryDirectory, MessageId, NatsConfig, NatsRouter, RevokeRequest, RevokeTarget, SendRequest,
    SingleNode, SledStore, Uid,
};
use serde::Deserialize;
use serde_json::{json, Value};

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
        .config(HubConfig {
            node_id: settings.node_id,
            ..HubConfig::default()
        });
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
        tokio::spawn(webhook.run(store, hub.clone(), directory.clone()));
    }
    // Upgrade, then CONNECT: each within the connect timeout.
    let wire = WireConfig {
        connect_timeout: settings.connect_timeout,
        ..WireConfig::default()
    };
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
        .route("/user/token", post(user_token))
        .route("/user/device_quit", post(device_quit))
        .route("/channel", post(channel_create))
        .route("/channel/subscriber_add", post(subscriber_add))
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
        .route("/message/send", post(message_send))
        .route("/message/sendbatch", post(message_sendbatch))
        .route("/channel/messagesync", post(channel_sync))
        .route("/conversation/sync", post(conversation_sync))
        .route("/conversations/clearUnread", post(clear_unread))
        .route("/conversations/setUnread", post(set_unread))
        .route("/conversations/delete", post(conversation_delete))
        .route("/message/sync", post(command_sync))
        .route("/message/syncack", post(command_ack))
        .route("/message/revoke", post(revoke))
        .route("/message/extra/sync", post(extra_sync))
        .route("/user/onlinestatus", post(online_status))
        .route("/route", get(routing::route))
        .route("/route/batch", post(routing::route_batch))
        .route("/metrics", get(metrics::metrics))
        .with_state(app.clone());
    println!("tcp listening on {}", tcp.local_addr()?);
    tokio::spawn(net::serve_tcp(tcp, app.clone()));
    println!("listening on {}", listener.local_addr()?);
    net::serve(listener, router, settings.connect_timeout).await;
    Ok(())
}

// ---- users and channels ----

#[derive(Deserialize)]
struct TokenReq {
    uid: String,
    token: String,
    #[serde(default = "web")]
    device_flag: u8,
    #[serde(default = "one")]
    device_level: u8,
}

fn web() -> u8 {
    1
}

fn one() -> u8 {
    1
}

async fn user_token(State(app): State<App>, Json(req): Json<TokenReq>) -> ApiResult {
    let flag = DeviceFlag::try_from(req.device_flag)?;
    let level = if req.device_level == 0 {
        DeviceLevel::Slave
    } else {
        DeviceLevel::Master
    };
    app.tokens.set(uid(&req.uid)?, flag, req.token, level);
    Ok(Json(json!({})))
}

/// The users of the list with a master device online on any node, as
/// WuKongIM's `/user/onlinestatus` answers (offline users are left out).
async fn online_status(State(app): State<App>, Json(uids): Json<Vec<String>>) -> ApiResult {
    let mut online = Vec::new();
    for u in uids {
        if app.hub.is_online(&uid(&u)?) {
            online.push(json!({ "uid": u, "online": 1 }));
        }
    }
    Ok(Json(Value::Array(online)))
}

#[derive(Deserialize)]
struct QuitReq {
    uid: String,
    /// One device kind (0 app, 1 web, 2 pc), or -1 for all.
    #[serde(default = "all_devices")]
    device_flag: i16,
}

fn all_devices() -> i16 {
    -1
}

/// Logs a user's devices out (DISCONNECT 12), as WuKongIM's
/// `/user/device_quit`. Their tokens are forgotten too.
async fn device_quit(State(app): State<App>, Json(req): Json<QuitReq>) -> ApiResult {
    let user = uid(&req.uid)?;
    let flag = match req.device_flag {
        -1 => None,
        n => Some(
            u8::try_from(n)
                .map_err(|_| ApiError::bad("device_flag is -1, 0, 1 or 2"))
                .and_then(|n| DeviceFlag::try_from(n).map_err(ApiError::from))?,
        ),
    };
    let kinds = flag.map_or(
        vec![DeviceFlag::App, DeviceFlag::Web, DeviceFlag::Pc],
        |f| vec![f],
    );
    for kind in kinds {
        app.tokens.remove(&user, kind);
    }
    let closed = app.hub.kick(&user, flag);
    Ok(Json(json!({ "closed": closed })))
}

#[derive(Deserialize)]
struct ChannelReq {
    channel_id: String,
    #[serde(default = "group")]
    channel_type: u8,
    #[serde(default)]
    subscribers: Vec<String>,
}

fn group() -> u8 {
    2
}

fn members(list: &[String]) -> Result<Vec<Uid>, ApiError> {
    list.iter().map(|s| uid(s)).collect()
}

async fn channel_create(State(app): State<App>, Json(req): Json<ChannelReq>) -> ApiResult {
    let ch = channel(&req.channel_id, req.channel_type)?;
    if ch.kind == ChannelType::PERSON {
        return Err(ApiError::bad("person channels need no creating"));
    }
    let list = members(&req.subscribers)?;
    let (owner, rest) = list
        .split_first()
        .ok_or_else(|| ApiError::bad("a channel needs at least one subscriber, its owner"))?;
    app.directory
        .create_channel(&ch, owner, rest.iter().cloned());
    Ok(Json(json!({})))
}

async fn subscriber_add(State(app): State<App>, Json(req): Json<ChannelReq>) -> ApiResult {
    let ch = channel(&req.channel_id, req.channel_type)?;
    if !app.directory.add_members(&ch, members(&req.subscribers)?) {
        return Err(Error::NotFound {
            what: format!("channel {}", req.channel_id),
        }
        .into());
    }
    Ok(Json(json!({})))
}

// ---- sending ----

#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    no_persist: u8,
    #[serde(default)]
    red_dot: u8,
    #[serde(default = "one")]
    sync_once: u8,
}

impl Default for Header {
    fn default() -> Self {
        Header {
            no_persist: 0,
            red_dot: 0,
            sync_once: 1,
        }
    }
}

#[derive(Deserialize)]
struct SendReq {
    #[serde(default)]
    header: Header,
    from_uid: String,
    #[serde(default)]
    channel_id: String,
    #[serde(default)]
    channel_type: u8,
    #[serde(default)]
    subscribers: Vec<String>,
    client_msg_no: Option<String>,
    payload: String,
}

impl Header {
    fn flags(&self) -> Flags {
        Flags {
            dup: false,
            no_persist: flag(self.no_persist),
            red_dot: flag(self.red_dot),
            sync_once: flag(self.sync_once),
        }
    }
}

fn payload_of(base64: &str) -> Result<Vec<u8>, ApiError> {
    BASE64
        .decode(base64)
        .map_err(|_| ApiError::bad("payload is not base64"))
}

async fn message_send(State(app): State<App>, Json(req): Json<SendReq>) -> ApiResult {
    let from = uid(&req.from_uid)?;
    let payload = payload_of(&req.payload)?;
    let flags = req.header.flags();
    let mut request = if req.subscribers.is_empty() {
        SendRequest::new(from, channel(&req.channel_id, req.channel_type)?, payload)
    } else {
        SendRequest::command_to(from, members(&req.subscribers)?, payload)
    }
    .flags(flags);
    if let Some(no) = &req.client_msg_no {
        request = request.client_msg_no(ClientMsgNo::new(no)?);
    }
    let ack = app.hub.send(request).await?;
    Ok(Json(json!({
        "message_id": ack.message_id.0,
        "message_idstr": ack.message_id.0.to_string(),
        "message_seq": ack.message_seq,
        "client_msg_no": ack.client_msg_no.as_str(),
    })))
}

// ---- sync ----

#[derive(Deserialize)]
struct SendBatchReq {
    #[serde(default)]
    header: Header,
    from_uid: String,
    subscribers: Vec<String>,
    payload: String,
}

/// `/message/sendbatch`: the same message to each subscriber, in the
/// person channel between the sender and them, as WuKongIM's. Answers
/// `{fail_uids, reason}`: who it was refused for, and each refusal's
/// reason code.
async fn message_sendbatch(State(app): State<App>, Json(req): Json<SendBatchReq>) -> ApiResult {
    let from = uid(&req.from_uid)?;
    let payload = bytes::Bytes::from(payload_of(&req.payload)?);
    let mut requests = Vec::with_capacity(req.subscribers.len());
    for to in &req.subscribers {
        let to = channel(to, ChannelType::PERSON.as_u8())?;
        requests
            .push(SendRequest::new(from.clone(), to, payload.clone()).flags(req.header.flags()));
    }
    let (mut fail_uids, mut reasons) = (Vec::new(), Vec::new());
    for (to, ack) in req.subscribers.iter().zip(app.hub.send_all(requests).await) {
        match ack {
            Ok(_) => {}
            Err(e @ Error::Rejected { .. }) => {
                fail_uids.push(to.clone());
                reasons.push(e.reason_code().as_u8());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Json(json!({ "fail_uids": fail_uids, "reason": reasons })))
}

#[derive(Deserialize)]
struct ChannelSyncReq {
    login_uid: String,
    channel_id: String,
    channel_type: u8,
    #[serde(default)]
    start_message_seq: u64,
    #[serde(default)]
    end_message_seq: u64,
    #[serde(default = "hundred")]
    limit: usize,
    #[serde(default)]
    pull_mode: u8,
}

fn hundred() -> usize {
    100
}

/// As WuKongIM: with `start_message_seq` and `end_message_seq` both 0, the
/// newest `limit` messages. Otherwise `pull_mode` 1 reads up (newer) from
/// `start_message_seq` (inclusive; 0 is the first) towards
/// `end_message_seq` (exclusive; 0 is no bound), and 0 reads down (older)
/// from `start_message_seq` (inclusive; 0 is the newest) towards
/// `end_message_seq` (exclusive). Messages come in ascending seq order;
/// `more` says whether the range holds more than was returned.
async fn channel_sync(State(app): State<App>, Json(req): Json<ChannelSyncReq>) -> ApiResult {
    let reader = uid(&req.login_uid)?;
    let ch = channel(&req.channel_id, req.channel_type)?;
    let limit = req.limit.clamp(1, app.hub.config().max_page);
    let (start, end) = (req.start_message_seq, req.end_message_seq);
    let up = req.pull_mode == 1 && !(start == 0 && end == 0);
    let page = if up {
        Page::forward(start.max(1), limit)
    } else if start == 0 {
        Page::latest(limit)
    } else {
        Page::backward(start, limit)
    };
    let mut messages = app.hub.sync_channel(&reader, &ch, page).await?;
    let read = messages.len();
    if end != 0 {
        messages.retain(|m| match up {
            true => m.message_seq < end,
            false => m.message_seq > end,
        });
    }
    // A full page that the end bound did not cut may have more behind it.
    let more = read == limit && messages.len() == read;
    messages.sort_by_key(|m| m.message_seq);
    let seqs = (
        messages.first().map_or(0, |m| m.message_seq),
        messages.last().map_or(0, |m| m.message_seq),
    );
    Ok(Json(json!({
        "start_message_seq": seqs.0,
        "end_message_seq": seqs.1,
        "more": u8::from(more),
        "messages": messages.iter().map(|m| history_json(m, &reader)).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
struct ConversationSyncReq {
    uid: String,
    #[serde(default)]
    version: u64,
    #[serde(default = "one")]
    msg_count: u8,
}

async fn conversation_sync(
    State(app): State<App>,
    Json(req): Json<ConversationSyncReq>,
) -> ApiResult {
    let user = uid(&req.uid)?;
    let views = app.hub.sync_conversations(&user, req.version, 1000).await?;
    let list: Vec<Value> = views
        .iter()
        .map(|v| {
            let recents: Vec<Value> = v
                .last_message
                .iter()
                .take(usize::from(req.msg_count))
                .map(|m| history_json(m, &user))
                .collect();
            json!({
                "channel_id": v.channel.id.as_str(),
                "channel_type": v.channel.kind.as_u8(),
                "unread": v.conversation.unread,
                "timestamp": v.conversation.last_timestamp_ms / 1000,
                "last_msg_seq": v.conversation.last_seq,
                "last_client_msg_no": v.last_message.as_ref().map_or("", |m| m.client_msg_no.as_str()),
                "version": v.conversation.version,
                "recents": recents,
            })
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

#[derive(Deserialize)]
struct ClearUnreadReq {
    uid: String,
    channel_id: String,
    channel_type: u8,
    /// Read up to this seq; 0 (or absent) for everything.
    #[serde(default)]
    message_seq: u64,
}

#[derive(Deserialize)]
struct SetUnreadReq {
    uid: String,
    channel_id: String,
    channel_type: u8,
    unread: u64,
}

/// `/conversations/setUnread`: only 0 (everything read). Unread counts
/// are derived from the log and the user's read position (read
/// diffusion), which never moves back, so a conversation cannot be made
/// unread again.
async fn set_unread(State(app): State<App>, Json(req): Json<SetUnreadReq>) -> ApiResult {
    if req.unread != 0 {
        return Err(ApiError::bad(
            "unread can only be set to 0: unread counts derive from the read position, \
             which never moves back",
        ));
    }
    let ch = channel(&req.channel_id, req.channel_type)?;
    let found = app.hub.clear_unread(&uid(&req.uid)?, &ch, u64::MAX).await?;
    Ok(Json(json!({ "found": found })))
}

#[derive(Deserialize)]
struct ConversationDeleteReq {
    uid: String,
    channel_id: String,
    channel_type: u8,
}

/// `/conversations/delete`: the conversation leaves the user's list until
/// a newer message arrives; the history stays.
async fn conversation_delete(
    State(app): State<App>,
    Json(req): Json<ConversationDeleteReq>,
) -> ApiResult {
    let ch = channel(&req.channel_id, req.channel_type)?;
    let found = app.hub.delete_conversation(&uid(&req.uid)?, &ch).await?;
    Ok(Json(json!({ "found": found })))
}

async fn clear_unread(State(app): State<App>, Json(req): Json<ClearUnreadReq>) -> ApiResult {
    let read_seq = match req.message_seq {
        0 => u64::MAX,
        seq => seq,
    };
    let ch = channel(&req.channel_id, req.channel_type)?;
    let found = app.hub.clear_unread(&uid(&req.uid)?, &ch, read_seq).await?;
    Ok(Json(json!({ "found": found })))
}

#[derive(Deserialize)]
struct CommandSyncReq {
    uid: String,
    #[serde(default)]
    message_seq: u64,
    #[serde(default = "hundred")]
    limit: usize,
}

/// The user's pending commands; `message_seq` is the queue cursor.
async fn command_sync(State(app): State<App>, Json(req): Json<CommandSyncReq>) -> ApiResult {
    let user = uid(&req.uid)?;
    let commands = app
        .hub
        .sync_commands(&user, req.message_seq, req.limit)
        .await?;
    let list: Vec<Value> = commands
        .iter()
        .map(|c| {
            let mut v = message_json(&c.message, &user);
            v["message_seq"] = json!(c.cursor);
            v
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

#[derive(Deserialize)]
struct CommandAckReq {
    uid: String,
    last_message_seq: u64,
}

async fn command_ack(State(app): State<App>, Json(req): Json<CommandAckReq>) -> ApiResult {
    let acked = app
        .hub
        .ack_commands(&uid(&req.uid)?, req.last_message_seq)
        .await?;
    Ok(Json(json!({ "acked": acked })))
}

// ---- revocation ----

#[derive(Deserialize)]
struct RevokeReq {
    uid: String,
    /// A string, as clients keep ids (a number only below 2^53).
    message_id: Option<Value>,
    client_msg_no: Option<String>,
    #[serde(default)]
    channel_id: String,
    #[serde(default)]
    channel_type: u8,
    message_seq: Option<u64>,
}

async fn revoke(State(app): State<App>, Json(req): Json<RevokeReq>) -> ApiResult {
    let requester = uid(&req.uid)?;
    let target = match (&req.message_id, &req.client_msg_no, req.message_seq) {
        (Some(id), _, _) => {
            // Ids pass 2^53, where a JavaScript number has already lost
            // the low bits that tell messages of one millisecond apart.
            const JS_SAFE: u64 = (1 << 53) - 1;
            let id = match id {
                Value::String(s) => s.parse().ok(),
                other => other.as_u64().filter(|n| *n <= JS_SAFE),
            };
            RevokeTarget::MessageId(MessageId(
                id.ok_or_else(|| ApiError::bad("message_id must be the id as a string"))?,
            ))
        }
        (None, Some(no), _) => RevokeTarget::ClientMsgNo {
            from_uid: requester.clone(),
            client_msg_no: ClientMsgNo::new(no)?,
        },
        (None, None, Some(seq)) => RevokeTarget::Seq {
            channel: channel(&req.channel_id, req.channel_type)?,
            seq,
        },
        (None, None, None) => {
            return Err(ApiError::bad(
                "name the message: message_id, client_msg_no, or channel and message_seq",
            ))
        }
    };
    let outcome = app.hub.revoke(RevokeRequest { requester, target }).await?;
    let r = outcome.revocation();
    Ok(Json(json!({
        "message_id": r.message_id.0.to_string(),
        "extra_version": r.extra_version,
    })))
}

#[derive(Deserialize)]
struct ExtraSyncReq {
    login_uid: String,
    channel_id: String,
    channel_type: u8,
    #[serde(default)]
    extra_version: u64,
    #[serde(default = "hundred")]
    limit: usize,
}

async fn extra_sync(State(app): State<App>, Json(req): Json<ExtraSyncReq>) -> ApiResult {
    let reader = uid(&req.login_uid)?;
    let ch = channel(&req.channel_id, req.channel_type)?;
    let rows = app
        .hub
        .sync_revocations(&reader, &ch, req.extra_version, req.limit)
        .await?;
    let list: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "message_id": r.message_id.0,
                "message_id_str": r.message_id.0.to_string(),
                "message_seq": r.message_seq,
                "revoke": 1,
                "revoker": r.revoker.as_str(),
                "extra_version": r.extra_version,
            })
        })
        .collect();
    Ok(Json(Value::Array(list)))
}
