//! Message events: a stream of small appends to a stored message, such as
//! an AI agent's reply written token by token into a conversation
//! (WuKongIM's message events, `POST /message/event`).
//!
//! An event belongs to one message, named by its channel and
//! `client_msg_no`, and to one stream within it (its [`EventKey`], `main`
//! unless named). Each event gets the message's next `msg_event_seq`
//! (shared by all its streams). Every stream has a state
//! ([`EventState`]): open until a terminal event (`stream.close`,
//! `stream.error`, `stream.cancel`, `stream.finish`) ends it, and a
//! snapshot folded from its events, so that a device that was offline
//! during the stream reads one complete message from history.
//!
//! Appending is idempotent by [`EventId`]: an event whose id the message
//! already has is answered as the first, and stores nothing.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Result, ValidationError};
use crate::model::{Channel, ClientMsgNo, EventId, EventKey, Uid};

mod fold;

pub use fold::{fold, next_state, text_of};

/// `stream.open`: a stream starts.
pub const STREAM_OPEN: &str = "stream.open";
/// `stream.delta`: a piece to add (for `{"kind":"text","delta":"…"}`, text
/// appended to the snapshot).
pub const STREAM_DELTA: &str = "stream.delta";
/// `stream.snapshot`: the whole content so far, replacing the snapshot.
pub const STREAM_SNAPSHOT: &str = "stream.snapshot";
/// `stream.close`: the stream ended normally.
pub const STREAM_CLOSE: &str = "stream.close";
/// `stream.error`: the stream ended with an error (`{"error":"…"}`).
pub const STREAM_ERROR: &str = "stream.error";
/// `stream.cancel`: the stream was cancelled.
pub const STREAM_CANCEL: &str = "stream.cancel";
/// `stream.finish`: the whole message is complete (its own key,
/// [`FINISH_KEY`]).
pub const STREAM_FINISH: &str = "stream.finish";

/// The key of events that name none.
pub const DEFAULT_KEY: &str = "main";
/// The key a `stream.finish` event always goes to, as WuKongIM's does.
pub const FINISH_KEY: &str = "__finish__";

/// The longest event type accepted, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 64;

/// Where a stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamStatus {
    /// Events may still come.
    Open,
    /// Ended by `stream.close` (or `stream.finish`).
    Closed,
    /// Ended by `stream.error`, or by the server for a stream left open.
    Error,
    /// Ended by `stream.cancel`.
    Cancelled,
}

impl StreamStatus {
    /// Its name as WuKongIM writes it (`open`, `closed`, `error`,
    /// `cancelled`).
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Open => "open",
            StreamStatus::Closed => "closed",
            StreamStatus::Error => "error",
            StreamStatus::Cancelled => "cancelled",
        }
    }

    /// Whether no more events are taken.
    pub fn is_terminal(self) -> bool {
        self != StreamStatus::Open
    }
}

/// Who may see an event in an event sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Everyone who may read the channel. The default.
    #[default]
    Public,
    /// Left out of a sync unless it asks for private events.
    Private,
    /// Left out of a sync unless it asks for private events.
    Restricted,
}

impl Visibility {
    /// Parses WuKongIM's names; an empty string is [`Visibility::Public`].
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "" | "public" => Ok(Visibility::Public),
            "private" => Ok(Visibility::Private),
            "restricted" => Ok(Visibility::Restricted),
            _ => Err(ValidationError::OutOfRange(
                "visibility must be public, private or restricted",
            )
            .into()),
        }
    }

    /// Its name as WuKongIM writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
            Visibility::Restricted => "restricted",
        }
    }
}

/// An event to append, before the store gives it its `msg_event_seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NewEvent {
    /// The message's channel (stored form).
    pub channel: Channel,
    /// The message's `client_msg_no`.
    pub client_msg_no: ClientMsgNo,
    /// Makes the append idempotent within the message.
    pub event_id: EventId,
    /// The stream within the message.
    pub event_key: EventKey,
    /// `stream.open`, `stream.delta`, … (lowercase; see the constants).
    pub event_type: String,
    /// Who may see it in an event sync.
    pub visibility: Visibility,
    /// Who sent it.
    pub from_uid: Uid,
    /// When it happened (Unix ms), as the sender says.
    pub occurred_at_ms: i64,
    /// Its payload, JSON by convention (`{"kind":"text","delta":"…"}`).
    pub payload: Bytes,
}

impl NewEvent {
    /// An event of `event_type` with `payload` on the message
    /// `client_msg_no` of `channel` (stored form), in the `main` stream,
    /// public, occurred at 0 (the hub fills in its clock's time).
    ///
    /// ```
    /// use imcore::event::{NewEvent, STREAM_DELTA};
    /// use imcore::{Channel, ClientMsgNo, EventId, Uid};
    /// let e = NewEvent::new(
    ///     Channel::group("g1")?,
    ///     ClientMsgNo::new("reply-1")?,
    ///     EventId::new("e-1")?,
    ///     STREAM_DELTA,
    ///     Uid::new("bot")?,
    ///     r#"{"kind":"text","delta":"Hel"}"#,
    /// )?;
    /// assert_eq!(e.event_key.as_str(), "main");
    /// # Ok::<(), imcore::Error>(())
    /// ```
    pub fn new(
        channel: Channel,
        client_msg_no: ClientMsgNo,
        event_id: EventId,
        event_type: &str,
        from_uid: Uid,
        payload: impl Into<Bytes>,
    ) -> Result<Self> {
        let event_type = normalize_type(event_type)?;
        let event_key = EventKey::new(match event_type.as_str() {
            STREAM_FINISH => FINISH_KEY,
            _ => DEFAULT_KEY,
        })?;
        Ok(NewEvent {
            channel,
            client_msg_no,
            event_id,
            event_key,
            event_type,
            visibility: Visibility::Public,
            from_uid,
            occurred_at_ms: 0,
            payload: payload.into(),
        })
    }

    /// Sets the stream (a `stream.finish` keeps [`FINISH_KEY`]).
    pub fn event_key(mut self, key: EventKey) -> Self {
        if self.event_type != STREAM_FINISH {
            self.event_key = key;
        }
        self
    }

    /// Sets the visibility.
    pub fn visibility(mut self, visibility: Visibility) -> Self {
        self.visibility = visibility;
        self
    }

    /// Sets when it happened (Unix ms).
    pub fn occurred_at_ms(mut self, ms: i64) -> Self {
        self.occurred_at_ms = ms;
        self
    }
}

/// An event type, trimmed and lowercased: non-empty, at most
/// [`MAX_EVENT_TYPE_LEN`] bytes, no control characters.
fn normalize_type(event_type: &str) -> Result<String> {
    let t = event_type.trim().to_ascii_lowercase();
    if t.is_empty() {
        return Err(ValidationError::OutOfRange("event_type must not be empty").into());
    }
    if t.len() > MAX_EVENT_TYPE_LEN || t.chars().any(char::is_control) {
        return Err(ValidationError::OutOfRange(
            "event_type must be at most 64 bytes, without control characters",
        )
        .into());
    }
    Ok(t)
}

/// A stored event, with its place in the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredEvent {
    /// Its number within the message: 1, 2, … across all its streams.
    pub msg_event_seq: u64,
    /// What was appended.
    pub event: NewEvent,
}

/// The state of one stream of a message: its status and the content its
/// events fold to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EventState {
    /// The stream.
    pub event_key: EventKey,
    /// Open, or how it ended.
    pub status: StreamStatus,
    /// The seq of its last event.
    pub last_msg_event_seq: u64,
    /// The id of its last event.
    pub last_event_id: EventId,
    /// When its last event was appended (the store's clock, Unix ms): how
    /// a stream left open is found.
    pub updated_at_ms: i64,
    /// The content its events fold to (JSON; for text,
    /// `{"kind":"text","text":"…"}`), if any, up to `snapshot_seq`.
    pub snapshot: Option<Bytes>,
    /// The seq `snapshot` covers: a store keeps the snapshot of the last
    /// `stream.snapshot` (or of the end) and does not rewrite it for each
    /// delta; [`fold`] adds the events after it when it is read.
    pub snapshot_seq: u64,
    /// `end_reason` of the ending event's payload, if any.
    pub end_reason: u8,
    /// `error` of a `stream.error`'s payload, if any.
    pub error: String,
}

/// What appending an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum EventOutcome {
    /// It was stored with the next `msg_event_seq`.
    Appended,
    /// The message already had an event with its id: nothing was stored,
    /// and the answer is the first event.
    Duplicate,
    /// Its stream had ended: nothing was stored, and the answer is the
    /// stream's state (as WuKongIM answers).
    Ended,
}

/// The answer to an append: the event as stored (or as first stored), and
/// the state of its stream after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EventAppend {
    /// The event; for [`EventOutcome::Ended`] the one given, with the
    /// stream's last seq.
    pub event: StoredEvent,
    /// Its stream's state.
    pub state: EventState,
    /// What happened.
    pub outcome: EventOutcome,
}

/// Whether an event of `event_type` ends its stream.
pub fn is_terminal(event_type: &str) -> bool {
    matches!(
        event_type,
        STREAM_CLOSE | STREAM_ERROR | STREAM_CANCEL | STREAM_FINISH
    )
}
