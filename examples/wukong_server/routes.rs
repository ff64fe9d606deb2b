//! The HTTP API's routes, and the layers every request passes: the body
//! limits (outermost), WuKongIM's JSON errors, the manager token, and the
//! body timeout (innermost: a request without the token is refused before
//! its body is read).

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{any, get, post};
use axum::Router;

use crate::cli::Secret;
use crate::{
    access, api, channels, conversations, manager, metrics, net, revoke, routing, send, sync,
    users, App,
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
        .route("/message/extra/sync", post(revoke::extra_sync))
        .route("/user/onlinestatus", post(users::online_status))
        .route("/route", get(routing::route))
        .route("/route/batch", post(routing::route_batch))
        .route("/metrics", get(metrics::metrics))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::wrong_method)
        .layer(axum::middleware::from_fn_with_state(
            body_timeout,
            api::read_body_within,
        ))
        .layer(axum::middleware::from_fn_with_state(
            token,
            manager::require_token,
        ))
        .layer(axum::middleware::map_response(api::json_errors))
        .layer(axum::middleware::from_fn(api::refuse_large_bodies))
        .layer(axum::extract::DefaultBodyLimit::max(api::BODY_LIMIT))
        .with_state(app)
}
