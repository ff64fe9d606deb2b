//! The HTTP API's routes, and the one layer every request passes
//! ([`gate`]: the body limits, the manager token, the body timeout and
//! WuKongIM's JSON errors).

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{any, get, post};
use axum::Router;

use crate::cli::Secret;
use crate::gate::{self, Gate};
use crate::{
    access, api, channel_admin, channels, conn_admin, conversation_reads, conversations, events,
    extras, messages, metrics, net, retention, revoke, routing, send, sync, users, varz, App,
};

/// Every endpoint, behind `token` when one is set, each request's body
/// read whole within `body_timeout`.
pub fn router(app: App, token: Option<Arc<Secret>>, body_timeout: Duration) -> Router {
    Router::new()
        .route("/", any(net::websocket))
        .route("/user/token", post(users::user_token))
        .route("/user/device_quit", post(users::device_quit))
        .route("/channel", post(channels::channel_create))
        .route("/channel/info", post(channels::channel_info))
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
        .route("/message/event", post(events::event_append))
        .route("/message/eventsync", post(events::event_sync))
        .route("/message/extra/sync", post(extras::extra_sync))
        .route("/message/edit", post(extras::edit))
        .route("/message/readed", post(extras::readed))
        .route("/user/onlinestatus", post(users::online_status))
        .route("/route", get(routing::route))
        .route("/route/batch", post(routing::route_batch))
        .route("/metrics", get(metrics::metrics))
        .route("/messages", post(messages::messages))
        .route("/message", post(messages::message))
        .route("/messages/retention", post(retention::delete_history))
        .route("/message/byclientmsgno", get(messages::by_client_msg_no))
        .route("/channel/max_message_seq", get(messages::max_message_seq))
        .route("/channel/last_message", get(messages::last_message))
        .route(
            "/channel/subscriber_remove_all",
            post(channel_admin::subscriber_remove_all),
        )
        .route(
            "/channel/blacklist_remove_all",
            post(channel_admin::blacklist_remove_all),
        )
        .route(
            "/channel/whitelist_remove_all",
            post(channel_admin::whitelist_remove_all),
        )
        .route("/channel/whitelist", get(channel_admin::whitelist))
        .route(
            "/tmpchannel/subscriber_set",
            post(channel_admin::tmp_subscriber_set),
        )
        .route("/user/systemuids", get(channel_admin::system_uids))
        .route(
            "/conversation/syncMessages",
            post(conversation_reads::sync_messages),
        )
        .route("/conversation/channels", post(conversation_reads::channels))
        .route(
            "/conversation/syncByChannels",
            post(conversation_reads::sync_by_channels),
        )
        .route("/conn/remove", post(conn_admin::remove))
        .route("/conn/kick", post(conn_admin::kick))
        .route("/varz", get(varz::varz))
        .route("/connz", get(varz::connz))
        .route("/health", get(varz::health))
        .route("/healthz", get(varz::healthz))
        .route("/readyz", get(varz::readyz))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::wrong_method)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(Gate {
                token,
                body_timeout,
            }),
            gate::gate,
        ))
        .with_state(app)
}
