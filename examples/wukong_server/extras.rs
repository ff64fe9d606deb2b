//! Message extras over HTTP: editing a message, marking messages read,
//! and syncing every extra of a channel (revocations, edits, receipts) in
//! the fields `wukongimjssdk`'s `MessageExtra` is built from.

use axum::extract::State;
use axum::Json;
use imcore::extra::{EditRequest, ExtraView};
use imcore::store::MessageExtra;
use imcore::{HistoryMessage, RevokeTarget};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{base64, channel, message_id, uid, ApiError, ApiResult};
use crate::App;

/// `{message_id, message_seq, channel_id, channel_type, from_uid,
/// content_edit}`: `content_edit` in base64; the message by its id, or
/// (without one) by channel and seq.
#[derive(Deserialize)]
pub struct EditReq {
    from_uid: String,
    message_id: Option<Value>,
    #[serde(default)]
    message_seq: u64,
    #[serde(default)]
    channel_id: String,
    #[serde(default)]
    channel_type: u8,
    content_edit: String,
}

pub async fn edit(State(app): State<App>, Json(req): Json<EditReq>) -> ApiResult {
    use base64::Engine as _;
    let requester = uid(&req.from_uid)?;
    let content = base64::engine::general_purpose::STANDARD
        .decode(&req.content_edit)
        .map_err(|_| ApiError::bad("content_edit is not base64"))?;
    let target = match &req.message_id {
        Some(id) if id != &json!(0) && id != &json!("") => RevokeTarget::MessageId(message_id(id)?),
        _ if req.message_seq > 0 => RevokeTarget::Seq {
            channel: channel(&req.channel_id, req.channel_type)?,
            seq: req.message_seq,
        },
        _ => {
            return Err(ApiError::bad(
                "name the message: message_id, or channel and message_seq",
            ))
        }
    };
    let outcome = app
        .hub
        .edit(EditRequest::new(requester, target, content))
        .await?;
    let x = outcome.extra();
    Ok(Json(json!({
        "message_id": x.message_id.0.to_string(),
        "message_seq": x.message_seq,
        "extra_version": x.extra_version,
        "edited_at": x.edit.as_ref().map_or(0, |e| e.edited_at_ms / 1000),
    })))
}

/// `{uid, channel_id, channel_type, message_ids}`.
#[derive(Deserialize)]
pub struct ReadedReq {
    uid: String,
    channel_id: String,
    channel_type: u8,
    message_ids: Vec<Value>,
}

pub async fn readed(State(app): State<App>, Json(req): Json<ReadedReq>) -> ApiResult {
    let reader = uid(&req.uid)?;
    let ch = channel(&req.channel_id, req.channel_type)?;
    let ids = req.message_ids.iter().map(message_id);
    let ids = ids.collect::<Result<Vec<_>, _>>()?;
    let outcome = app.hub.mark_read(&reader, &ch, &ids).await?;
    let counted: Vec<Value> = outcome
        .counted
        .iter()
        .map(|x| {
            let receipt = x.receipt.unwrap_or(imcore::store::Receipt {
                audience: 0,
                readers: 0,
            });
            json!({
                "message_id": x.message_id.0.to_string(),
                "message_seq": x.message_seq,
                "readed_count": receipt.readers,
                "unread_count": receipt.unread(),
                "extra_version": x.extra_version,
            })
        })
        .collect();
    Ok(Json(json!({ "counted": counted })))
}

#[derive(Deserialize)]
pub struct ExtraSyncReq {
    login_uid: String,
    channel_id: String,
    channel_type: u8,
    #[serde(default)]
    extra_version: u64,
    #[serde(default = "crate::api::hundred")]
    limit: usize,
}

pub async fn extra_sync(State(app): State<App>, Json(req): Json<ExtraSyncReq>) -> ApiResult {
    let reader = uid(&req.login_uid)?;
    let ch = channel(&req.channel_id, req.channel_type)?;
    let views = app
        .hub
        .sync_extras(&reader, &ch, req.extra_version, app.limits.list(req.limit))
        .await?;
    Ok(Json(Value::Array(views.iter().map(view_json).collect())))
}

/// An extra as TangSengDaoDao answers it: seconds for times, the edited
/// content as its JSON object (base64 beside it, for content that is not
/// JSON), 0/1 flags.
fn view_json(v: &ExtraView) -> Value {
    let mut out = json!({
        "message_id": v.message_id.0,
        "message_id_str": v.message_id.0.to_string(),
        "message_seq": v.message_seq,
        "revoke": u8::from(v.revocation.is_some()),
        "revoker": v.revocation.as_ref().map_or("", |r| r.revoker.as_str()),
        "readed": u8::from(v.read_at_ms.is_some()),
        "readed_at": v.read_at_ms.map_or(0, |ms| ms / 1000),
        "readed_count": v.receipt.map_or(0, |r| r.readers),
        "unread_count": v.receipt.map_or(0, |r| r.unread()),
        "edited_at": v.edit.as_ref().map_or(0, |e| e.edited_at_ms / 1000),
        "extra_version": v.extra_version,
    });
    if let Some(edit) = &v.edit {
        add_content_edit(&mut out, &edit.content);
    }
    out
}

fn add_content_edit(out: &mut Value, content: &[u8]) {
    if let Ok(parsed) = serde_json::from_slice::<Value>(content) {
        out["content_edit"] = parsed;
    }
    out["content_edit_base64"] = json!(base64(content));
}

/// The `message_extra` of a history message.
pub fn history_extra_json(h: &HistoryMessage, x: &MessageExtra) -> Value {
    let mut out = json!({
        "message_id": x.message_id.0,
        "message_id_str": x.message_id.0.to_string(),
        "message_seq": x.message_seq,
        "revoke": u8::from(h.revoked.is_some()),
        "readed_count": x.receipt.map_or(0, |r| r.readers),
        "unread_count": x.receipt.map_or(0, |r| r.unread()),
        "edited_at": x.edit.as_ref().map_or(0, |e| e.edited_at_ms / 1000),
        "extra_version": x.extra_version,
    });
    if let Some(edit) = &x.edit {
        add_content_edit(&mut out, &edit.content);
    }
    out
}
