//! Messages by key, as WuKongIM's business API reads them: `/messages`
//! (by seqs, ids or client numbers), `/message` (one),
//! `/message/byclientmsgno`, `/channel/max_message_seq` and
//! `/channel/last_message`. A message shows its person channel by the
//! party other than its sender, as WuKongIM's `MessageResp` does.

use axum::extract::{Query, State};
use axum::Json;
use imcore::{Channel, ChannelId, ChannelType, ClientMsgNo, HistoryMessage, MessageId};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{history_json, uid, ApiError, ApiResult};
use crate::App;

/// The most keys one `/messages` takes, of each kind.
const MAX_KEYS: usize = 1000;

/// A message as WuKongIM's API shows it: its person channel named by the
/// party other than the sender.
pub fn shown(m: &HistoryMessage) -> Value {
    history_json(m, &m.from_uid)
}

/// What WuKongIM answers for "no such message": HTTP 200 with
/// `{"status": 404}` (its `ResponseStatus`), and a `msg` here.
pub fn not_found(what: &str) -> ApiResult {
    Ok(Json(json!({ "status": 404, "msg": format!("no {what}") })))
}

/// The channel as stored: a person channel named by one party is the pair
/// of `login_uid` and that party (a person channel named `a@b` is taken
/// as is). `login_uid` is needed for the first form only.
pub fn stored(id: &str, kind: u8, login_uid: &str) -> Result<Channel, ApiError> {
    if id.trim().is_empty() {
        return Err(ApiError::bad("channel_id must not be empty"));
    }
    let kind = ChannelType::try_from(kind)?;
    let ch = Channel::new(ChannelId::new(id)?, kind);
    if kind != ChannelType::PERSON {
        return Ok(ch);
    }
    if let Some((a, b)) = ch.person_parties() {
        return Ok(Channel::person(&a, &b));
    }
    if login_uid.trim().is_empty() {
        return Err(ApiError::bad(
            "login_uid must not be empty for a person channel",
        ));
    }
    Ok(ch.stored_for(&uid(login_uid)?)?)
}

/// `{login_uid, channel_id, channel_type, message_seqs, message_ids,
/// client_msg_nos}`.
#[derive(Deserialize)]
pub struct MessagesReq {
    #[serde(default)]
    login_uid: String,
    channel_id: String,
    channel_type: u8,
    #[serde(default)]
    message_seqs: Vec<u64>,
    #[serde(default)]
    message_ids: Vec<i64>,
    #[serde(default)]
    client_msg_nos: Vec<String>,
}

fn id_of(n: i64) -> Result<MessageId, ApiError> {
    u64::try_from(n)
        .map(MessageId)
        .map_err(|_| ApiError::bad(format!("message id {n} is negative")))
}

fn client_msg_no(s: &str) -> Result<ClientMsgNo, ApiError> {
    Ok(ClientMsgNo::new(s)?)
}

/// `/messages`: the channel's messages with these seqs, then these ids,
/// then these client numbers, each found once in that order (those not
/// found left out), as `{"messages": [...]}`.
pub async fn messages(State(app): State<App>, Json(req): Json<MessagesReq>) -> ApiResult {
    let ch = stored(&req.channel_id, req.channel_type, &req.login_uid)?;
    let too_many = [
        req.message_seqs.len(),
        req.message_ids.len(),
        req.client_msg_nos.len(),
    ]
    .into_iter()
    .any(|n| n > MAX_KEYS);
    if too_many {
        return Err(ApiError::bad(format!(
            "at most {MAX_KEYS} seqs, ids and client_msg_nos each"
        )));
    }
    let ids = req.message_ids.iter().map(|n| id_of(*n));
    let ids = ids.collect::<Result<Vec<_>, _>>()?;
    let nos = req.client_msg_nos.iter().map(|s| client_msg_no(s));
    let nos = nos.collect::<Result<Vec<_>, _>>()?;
    let mut found = app.hub.messages_by_seqs(&ch, &req.message_seqs).await?;
    for id in ids {
        found.extend(app.hub.message_by_id(&ch, id).await?);
    }
    for no in &nos {
        found.extend(app.hub.message_by_client_msg_no(&ch, no).await?);
    }
    let list: Vec<Value> = found.iter().map(shown).collect();
    Ok(Json(json!({ "messages": list })))
}

/// `{login_uid, channel_id, channel_type, message_id | client_msg_no}`.
#[derive(Deserialize)]
pub struct MessageReq {
    #[serde(default)]
    login_uid: String,
    channel_id: String,
    channel_type: u8,
    #[serde(default)]
    message_id: i64,
    #[serde(default)]
    client_msg_no: String,
}

/// `/message`: one message of the channel, by `message_id` (when not 0)
/// or `client_msg_no`.
pub async fn message(State(app): State<App>, Json(req): Json<MessageReq>) -> ApiResult {
    let ch = stored(&req.channel_id, req.channel_type, &req.login_uid)?;
    let found = match (req.message_id, req.client_msg_no.as_str()) {
        (0, "") => {
            return Err(ApiError::bad(
                "one of message_id and client_msg_no is needed",
            ))
        }
        (0, no) => {
            let no = client_msg_no(no)?;
            app.hub.message_by_client_msg_no(&ch, &no).await?
        }
        (id, _) => app.hub.message_by_id(&ch, id_of(id)?).await?,
    };
    match found {
        Some(m) => Ok(Json(shown(&m))),
        None => not_found("such message"),
    }
}

/// `?channel_id&channel_type&client_msg_no`.
#[derive(Deserialize)]
pub struct ByClientMsgNoQuery {
    #[serde(default)]
    channel_id: String,
    #[serde(default)]
    channel_type: u8,
    #[serde(default)]
    client_msg_no: String,
}

/// `GET /message/byclientmsgno`: as WuKongIM, a person channel must be
/// named in its stored form (`a@b`).
pub async fn by_client_msg_no(
    State(app): State<App>,
    Query(q): Query<ByClientMsgNoQuery>,
) -> ApiResult {
    if q.client_msg_no.trim().is_empty() {
        return Err(ApiError::bad("client_msg_no must not be empty"));
    }
    let ch = stored(&q.channel_id, q.channel_type, "")?;
    let no = client_msg_no(&q.client_msg_no)?;
    match app.hub.message_by_client_msg_no(&ch, &no).await? {
        Some(m) => Ok(Json(shown(&m))),
        None => not_found("such message"),
    }
}

/// `?channel_id&channel_type&login_uid`.
#[derive(Deserialize)]
pub struct ChannelQuery {
    #[serde(default)]
    channel_id: String,
    #[serde(default)]
    channel_type: u8,
    #[serde(default)]
    login_uid: String,
}

/// `GET /channel/max_message_seq`: `{"message_seq"}`, 0 for a channel
/// with no messages.
pub async fn max_message_seq(State(app): State<App>, Query(q): Query<ChannelQuery>) -> ApiResult {
    let ch = stored(&q.channel_id, q.channel_type, &q.login_uid)?;
    let seq = app.hub.max_message_seq(&ch).await?;
    Ok(Json(json!({ "message_seq": seq })))
}

/// `GET /channel/last_message`: the channel's newest message.
pub async fn last_message(State(app): State<App>, Query(q): Query<ChannelQuery>) -> ApiResult {
    let ch = stored(&q.channel_id, q.channel_type, &q.login_uid)?;
    match app.hub.last_message(&ch).await? {
        Some(m) => Ok(Json(shown(&m))),
        None => not_found("message in this channel"),
    }
}
