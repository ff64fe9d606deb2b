//! The JSON frames of the WebSocket, one per WebSocket text message, each
//! an object tagged by `"type"` (serde's internally tagged enums).
//!
//! The page sends [`ClientFrame`]s; the server answers and pushes
//! [`ServerFrame`]s. A message's payload is WuKongIM's text content,
//! `{"type":1,"content":"…"}`, so that the same history reads well from
//! any other client of the hub. Message ids travel as strings: they are
//! 64-bit and JavaScript numbers are not.
//!
//! Refusals are [`ServerFrame::Error`]s made from the crate's typed
//! [`imcore::Error`] by [`refusal`], or from the transport's own checks
//! (a bad name, a frame that does not parse, a request before login).

use serde::{Deserialize, Serialize};

use imcore::{Error, HistoryMessage, Message, ReasonCode, ValidationError};

/// What the page asks.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Become `name` (the first frame). `device` names this tab, so that a
    /// reload replaces its own connection.
    Login {
        /// The user's name: 1 to 32 of `A-Z a-z 0-9 _ -`.
        name: String,
        /// The tab's device id, if it has one.
        #[serde(default)]
        device: Option<String>,
    },
    /// Join a group, creating it if it does not exist.
    Join {
        /// The group's name (the same rule as a user's).
        group: String,
    },
    /// Send a text to a group.
    Send {
        /// The group.
        channel: String,
        /// The text.
        text: String,
        /// The page's own number for it: a resend with the same number is
        /// the same message.
        client_msg_no: String,
    },
    /// A page of a group's history, newest first from `before` (exclusive;
    /// absent: from the newest).
    History {
        /// The group.
        channel: String,
        /// Only messages older than this seq.
        #[serde(default)]
        before: Option<u64>,
        /// How many at most (1 to 50; default 20).
        #[serde(default)]
        limit: Option<usize>,
    },
    /// The user has read a group up to `seq`.
    Read {
        /// The group.
        channel: String,
        /// The last seq read.
        seq: u64,
    },
    /// Revoke a message by its id.
    Revoke {
        /// The message id, as the server gave it.
        message_id: String,
    },
}

impl ClientFrame {
    /// The frame's type, for error frames.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientFrame::Login { .. } => "login",
            ClientFrame::Join { .. } => "join",
            ClientFrame::Send { .. } => "send",
            ClientFrame::History { .. } => "history",
            ClientFrame::Read { .. } => "read",
            ClientFrame::Revoke { .. } => "revoke",
        }
    }

    /// The group it is about, if any.
    pub fn channel(&self) -> Option<&str> {
        match self {
            ClientFrame::Join { group } => Some(group),
            ClientFrame::Send { channel, .. }
            | ClientFrame::History { channel, .. }
            | ClientFrame::Read { channel, .. } => Some(channel),
            ClientFrame::Login { .. } | ClientFrame::Revoke { .. } => None,
        }
    }
}

/// What the server answers or pushes.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Logged in: the user's groups with their unread counts.
    Welcome {
        /// The user.
        name: String,
        /// How long the user may revoke a message after sending it, in
        /// seconds.
        revoke_window_secs: u64,
        /// The largest payload the hub takes, in bytes.
        max_payload: usize,
        /// The user's groups.
        conversations: Vec<ConversationFrame>,
    },
    /// Joined a group.
    Joined {
        /// Where the user now is.
        conversation: ConversationFrame,
    },
    /// A message, live: sent by someone else, or by this user on another
    /// tab.
    Message {
        /// The message.
        message: MessageView,
        /// The user's unread count in its group, after it.
        unread: u64,
    },
    /// This tab's send was stored: the message as everyone has it.
    Sent {
        /// The message.
        message: MessageView,
        /// A resend of a message already stored (nothing new was sent).
        duplicate: bool,
    },
    /// A page of history, oldest first.
    History {
        /// The group.
        channel: String,
        /// The messages, ascending by seq.
        messages: Vec<MessageView>,
        /// Whether older messages remain.
        more: bool,
    },
    /// The user's unread count in a group changed (the user read it).
    Unread {
        /// The group.
        channel: String,
        /// Unread messages left.
        unread: u64,
    },
    /// A message was revoked (by anyone allowed to): strike it.
    Revoked {
        /// Its group.
        channel: String,
        /// Its id.
        message_id: String,
        /// Its seq.
        seq: u64,
        /// Who revoked it.
        revoker: String,
    },
    /// A request was refused, or failed.
    Error {
        /// A short, stable code (`refused`, `too_large`, `bad_name`…).
        code: &'static str,
        /// The server's words, for the user.
        message: String,
        /// The type of the request that failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        request: Option<&'static str>,
        /// The group it was about, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
    },
    /// The server is closing this connection, and why.
    Closed {
        /// `kicked`, `replaced`, `slow_consumer`, `closed` or `shutdown`.
        reason: &'static str,
    },
}

/// One of the user's groups.
#[derive(Debug, Serialize)]
pub struct ConversationFrame {
    /// The group.
    pub channel: String,
    /// Messages from others the user has not read.
    pub unread: u64,
    /// The group's last seq (0: none yet).
    pub last_seq: u64,
}

/// A message as the page shows it.
#[derive(Debug, Serialize)]
pub struct MessageView {
    /// Its id, as a string.
    pub message_id: String,
    /// Its seq in its group.
    pub seq: u64,
    /// The group.
    pub channel: String,
    /// The sender.
    pub from: String,
    /// The text (empty once revoked: the hub removes revoked payloads).
    pub text: String,
    /// The sender's number for it.
    pub client_msg_no: String,
    /// When it was sent, in Unix milliseconds.
    pub timestamp_ms: i64,
    /// Whether it has been revoked.
    pub revoked: bool,
}

/// WuKongIM's text content: `{"type":1,"content":"…"}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct TextContent {
    /// 1: text.
    #[serde(rename = "type")]
    pub kind: i64,
    /// The text.
    pub content: String,
}

/// The payload a text is sent as.
pub fn text_payload(text: &str) -> Vec<u8> {
    let content = TextContent {
        kind: 1,
        content: text.to_owned(),
    };
    serde_json::to_vec(&content).unwrap_or_default()
}

impl MessageView {
    /// A delivered message.
    pub fn live(m: &Message) -> Self {
        MessageView::new(m, false)
    }

    /// A message read from history, with its revocation.
    pub fn history(h: &HistoryMessage) -> Self {
        MessageView::new(&h.message, h.revoked.is_some())
    }

    fn new(m: &Message, revoked: bool) -> Self {
        // Another client's payload that is not text shows as it is.
        let text = match serde_json::from_slice::<TextContent>(&m.payload) {
            Ok(t) => t.content,
            Err(_) => String::from_utf8_lossy(&m.payload).into_owned(),
        };
        MessageView {
            message_id: m.message_id.to_string(),
            seq: m.message_seq,
            channel: m.channel.id.as_str().to_owned(),
            from: m.from_uid.as_str().to_owned(),
            text,
            client_msg_no: m.client_msg_no.as_str().to_owned(),
            timestamp_ms: m.timestamp_ms,
            revoked,
        }
    }
}

/// An error frame for a request of type `request`.
pub fn error(
    code: &'static str,
    message: impl Into<String>,
    request: Option<&'static str>,
) -> ServerFrame {
    ServerFrame::Error {
        code,
        message: message.into(),
        request,
        channel: None,
    }
}

/// The error frame for the crate's error `e`, answering `request` about
/// `channel`: the code says which kind of refusal, the message is the
/// crate's own words (with the user's view of a refused channel first).
pub fn refusal(e: &Error, request: &'static str, channel: Option<&str>) -> ServerFrame {
    let code = match e {
        Error::Validation(ValidationError::PayloadTooLarge { .. }) => "too_large",
        Error::Validation(ValidationError::EmptyPayload) => "empty",
        Error::Validation(_) => "invalid",
        Error::Rejected { .. } => "refused",
        Error::RateLimited { .. } => "rate_limited",
        Error::RevokeRefused(_) => "revoke_refused",
        Error::NotFound { .. } => "not_found",
        Error::Conflict { .. } => "conflict",
        Error::Closed => "closing",
        _ => "server_error",
    };
    let message = match (e, channel) {
        (Error::Rejected { reason, .. }, Some(group))
            if *reason == ReasonCode::SUBSCRIBER_NOT_EXIST =>
        {
            format!("you are not in {group}: {e}")
        }
        _ => e.to_string(),
    };
    ServerFrame::Error {
        code,
        message,
        request: Some(request),
        channel: channel.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_by_type_and_refuse_what_they_do_not_know() {
        let send: ClientFrame = serde_json::from_str(
            r#"{"type":"send","channel":"team","text":"hi","client_msg_no":"c1"}"#,
        )
        .expect("a send");
        assert!(matches!(send, ClientFrame::Send { ref text, .. } if text == "hi"));
        let history: ClientFrame =
            serde_json::from_str(r#"{"type":"history","channel":"team"}"#).expect("a history");
        assert!(matches!(
            history,
            ClientFrame::History {
                before: None,
                limit: None,
                ..
            }
        ));
        for bad in [
            r#"{"type":"shout","text":"hi"}"#,
            r#"{"type":"join"}"#,
            r#"{"type":"join","group":"a","extra":1}"#,
            r#"{"group":"a"}"#,
        ] {
            assert!(serde_json::from_str::<ClientFrame>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn crate_errors_become_error_frames_with_their_words() {
        let too_large: Error = ValidationError::PayloadTooLarge {
            len: 5000,
            max: 4096,
        }
        .into();
        let frame = serde_json::to_value(refusal(&too_large, "send", Some("team"))).expect("json");
        assert_eq!(frame["type"], "error");
        assert_eq!(frame["code"], "too_large");
        assert_eq!(frame["request"], "send");
        assert_eq!(frame["channel"], "team");
        assert_eq!(
            frame["message"],
            "invalid input: payload is 5000 bytes, the limit is 4096"
        );
        let not_in = Error::rejected(ReasonCode::SUBSCRIBER_NOT_EXIST, &"bob", &"2:team");
        let frame = serde_json::to_value(refusal(&not_in, "send", Some("team"))).expect("json");
        assert_eq!(frame["code"], "refused");
        let message = frame["message"].as_str().expect("text");
        assert!(
            message.starts_with("you are not in team: refused: 3(SUBSCRIBER_NOT_EXIST)"),
            "{message}"
        );
    }

    #[test]
    fn texts_travel_as_wukongim_text_content() {
        let payload = text_payload("hi \"there\"");
        let value: serde_json::Value = serde_json::from_slice(&payload).expect("json");
        assert_eq!(
            value,
            serde_json::json!({"type": 1, "content": "hi \"there\""})
        );
    }
}
