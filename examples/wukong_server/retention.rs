//! Retention: `POST /messages/retention` deletes a channel's history
//! through a seq (or, with `dry_run`, says what it would delete), and a
//! ticker applies the default retention (`--retain-messages`,
//! `--retain-age-s`) every `--retention-interval-s`.
//!
//! Like every route but the WebSocket upgrade, it needs the manager token
//! when one is set (see `manager.rs`).

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use imcore::Hub;
use serde::Deserialize;
use serde_json::json;

use crate::api::ApiResult;
use crate::messages::stored;
use crate::App;

/// `{channel_id, channel_type, through_seq, dry_run, login_uid}`; a person
/// channel is named `a@b`, or by one party with `login_uid` the other.
#[derive(Deserialize)]
pub struct RetentionReq {
    #[serde(default)]
    login_uid: String,
    channel_id: String,
    channel_type: u8,
    through_seq: u64,
    #[serde(default)]
    dry_run: bool,
}

/// `/messages/retention`: deletes the channel's messages with a seq up to
/// `through_seq`, for good; answers `{channel_id, channel_type,
/// requested_through_seq, advanced_through_seq, min_available_seq, status
/// ("ok", "dry_run" or "noop"), deleted_count}`. A `through_seq` above the
/// channel's last seq is a 400, nothing deleted.
pub async fn delete_history(State(app): State<App>, Json(req): Json<RetentionReq>) -> ApiResult {
    let ch = stored(&req.channel_id, req.channel_type, &req.login_uid)?;
    let report = app
        .hub
        .delete_history(&ch, req.through_seq, req.dry_run)
        .await?;
    Ok(Json(json!({
        "channel_id": req.channel_id,
        "channel_type": req.channel_type,
        "requested_through_seq": report.requested_through_seq,
        "advanced_through_seq": report.advanced_through_seq,
        "min_available_seq": report.min_available_seq,
        "status": report.status.as_str(),
        "deleted_count": report.deleted_count,
    })))
}

/// Runs a retention pass every interval of the hub's policy, for as long
/// as the server runs; nothing when the policy keeps everything. Of
/// several nodes on one database, one runs each pass (the store's lease).
pub async fn run_passes(hub: Hub) {
    let policy = &hub.config().retention;
    if !policy.is_active() {
        return;
    }
    let every = policy.interval.max(Duration::from_secs(1));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if hub.is_closing() {
            return;
        }
        match hub.retention_pass().await {
            Ok(pass) if pass.deleted > 0 || pass.tombstones_purged > 0 => tracing::info!(
                channels = pass.channels,
                deleted = pass.deleted,
                tombstones_purged = pass.tombstones_purged,
                "retention pass"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention pass failed"),
        }
    }
}
