//! The crate's one error type.

use std::fmt;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure the crate reports.
///
/// The variants separate *who* is at fault: [`Error::Validation`] is the
/// caller's input, [`Error::NotFound`] is a lookup that found nothing,
/// [`Error::Storage`] is the backend failing, and [`Error::Corrupt`] is data
/// on disk that the crate cannot read back (a damaged or foreign database).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input was rejected before anything was stored.
    #[error("invalid input: {0}")]
    Validation(#[from] ValidationError),

    /// The requested item does not exist.
    #[error("not found: {what}")]
    NotFound {
        /// What was looked up, for humans (for example `message 42`).
        what: String,
    },

    /// The storage backend failed (I/O, a full disk, a closed database…).
    /// Nothing was stored by the failed call, unless the backend's own
    /// contract says otherwise.
    #[error("storage backend {backend} failed: {source}")]
    Storage {
        /// The backend's name, such as `"sled"`.
        backend: &'static str,
        /// The backend's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// The backend could not be reached, or did not answer within its
    /// configured time (a database server down or restarting, a full
    /// connection pool). Retrying later is the answer; [`Error::is_retryable`]
    /// says so. A read changed nothing. A write changed nothing unless the
    /// connection was lost while its commit was under way, in which case it
    /// may be stored: a resend with the same `client_msg_no` is then answered
    /// as a duplicate of it, so retrying a send is always safe.
    #[error("storage backend {backend} is unavailable: {source}")]
    Unavailable {
        /// The backend's name, such as `"postgres"`.
        backend: &'static str,
        /// The backend's own error (a refused connection, a timeout…).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// The write was committed but could not be made durable (its flush
    /// failed): it **may be stored**, and may be lost by a crash. It was
    /// not delivered. A resend with the same `client_msg_no` is answered as
    /// a duplicate of it, so a caller that needs it delivered live sends it
    /// again under a new `client_msg_no` only after a sync shows it
    /// missing; clients that sync by seq see it if it stayed.
    #[error("storage backend {backend} committed the write but could not flush it: {source}")]
    Unconfirmed {
        /// The backend's name, such as `"sled"`.
        backend: &'static str,
        /// The flush's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// The request was refused, for a reason WuKongIM has a code for (not a
    /// member, blacklisted, channel disbanded…). Nothing was stored or sent.
    #[error("refused: {reason} ({uid} in channel {channel})")]
    Rejected {
        /// Why, as a WuKongIM reason code.
        reason: crate::ReasonCode,
        /// Who was refused (the sender, or the reader): the uid.
        uid: String,
        /// The channel, in its stored form, as `type:id` (`2:g1`).
        channel: String,
    },

    /// A resend that is not the same message: this sender's
    /// `client_msg_no` is already stored in this channel with another
    /// payload. Nothing was stored or sent; the first message stands. A
    /// client reusing numbers must make new ones; a resend after a lost
    /// acknowledgement carries the same payload and is answered as a
    /// duplicate instead.
    #[error("{uid} already sent client_msg_no {client_msg_no:?} in channel {channel} with another payload")]
    Conflict {
        /// The sender.
        uid: String,
        /// The channel, in its stored form, as `type:id` (`2:g1`).
        channel: String,
        /// The number sent twice.
        client_msg_no: String,
    },

    /// The sender is sending faster than the hub's
    /// [`HubConfig::send_rate`](crate::HubConfig::send_rate) allows. This
    /// send was refused before it was looked at: nothing was stored or
    /// sent. Retryable ([`Error::is_retryable`]): the same send succeeds
    /// once the sender's allowance has refilled (at the configured rate:
    /// 5 ms a send at the default 200 a second), so a client retries it
    /// later, not at once. WuKongIM's reason code is 22, `RATE_LIMIT`.
    #[error("{uid} is sending faster than its allowed rate")]
    RateLimited {
        /// The sender.
        uid: String,
    },

    /// The hub is shutting down ([`Hub::shutdown`](crate::Hub::shutdown)):
    /// nothing was stored or sent. Another node, or the restarted one, will
    /// take it: [`Error::is_retryable`] says so.
    #[error("the hub is shutting down")]
    Closed,

    /// A store's files are in use by another process (sled keeps one
    /// process per directory). Nothing was opened; stop the other process,
    /// or use another directory.
    #[error("{what} is in use by another process")]
    InUse {
        /// What is in use, for humans (the directory).
        what: String,
    },

    /// A revocation was refused: the message is not revocable, the
    /// requester may not revoke it, or the window has passed.
    #[error("revocation refused: {0}")]
    RevokeRefused(RevokeRefusal),

    /// An edit was refused: see [`EditRefusal`]. Nothing was changed.
    #[error("edit refused: {0}")]
    EditRefused(EditRefusal),

    /// The database was written by another version of the crate, in a
    /// format this version does not read. Nothing was changed; open it with
    /// the version that wrote it, or start a new database.
    #[error("the database is in format {found}, which this version cannot read: {why}")]
    UnsupportedFormat {
        /// The format the database says it is in.
        found: String,
        /// Why this version cannot read it.
        why: &'static str,
    },

    /// Stored data could not be decoded: the database is damaged, or was
    /// written by something else.
    #[error("stored data is corrupt or foreign: {what}")]
    Corrupt {
        /// What could not be read, for humans.
        what: String,
    },
}

impl Error {
    /// The WuKongIM reason code that tells a client about this error, or
    /// `None` where WuKongIM has none that fits:
    ///
    /// - a refusal: its own code;
    /// - a sender over its send rate: [`ReasonCode::RATE_LIMIT`];
    /// - a bad channel: [`ReasonCode::CHANNEL_ID_ERROR`], or
    ///   [`ReasonCode::NOT_SUPPORT_CHANNEL_TYPE`] for its type;
    /// - a message's own fault (a payload over the limit, a bad uid or
    ///   `client_msg_no`): [`ReasonCode::NOT_ALLOW_SEND`];
    /// - a failing or unreadable store: [`ReasonCode::SYSTEM_ERROR`];
    /// - an argument out of range (a page limit, a configuration), a
    ///   look-up that found nothing, a revocation refused: `None` (the
    ///   error's text says what; a wire server answers a SEND it cannot
    ///   place with [`ReasonCode::SYSTEM_ERROR`]).
    ///
    /// ```
    /// use imcore::{Error, ReasonCode, ValidationError};
    /// let paging: Error = ValidationError::OutOfRange("limit 0").into();
    /// assert_eq!(paging.reason_code(), None);
    /// let bad_type: Error = ValidationError::InvalidChannelType(0).into();
    /// assert_eq!(bad_type.reason_code(), Some(ReasonCode::NOT_SUPPORT_CHANNEL_TYPE));
    /// ```
    ///
    /// [`ReasonCode::CHANNEL_ID_ERROR`]: crate::ReasonCode::CHANNEL_ID_ERROR
    /// [`ReasonCode::NOT_SUPPORT_CHANNEL_TYPE`]: crate::ReasonCode::NOT_SUPPORT_CHANNEL_TYPE
    /// [`ReasonCode::NOT_ALLOW_SEND`]: crate::ReasonCode::NOT_ALLOW_SEND
    /// [`ReasonCode::SYSTEM_ERROR`]: crate::ReasonCode::SYSTEM_ERROR
    /// [`ReasonCode::RATE_LIMIT`]: crate::ReasonCode::RATE_LIMIT
    pub fn reason_code(&self) -> Option<crate::ReasonCode> {
        use crate::ReasonCode as R;
        use ValidationError as V;
        match self {
            Error::Rejected { reason, .. } => Some(*reason),
            Error::RateLimited { .. } => Some(R::RATE_LIMIT),
            Error::Validation(V::InvalidChannelType(_)) => Some(R::NOT_SUPPORT_CHANNEL_TYPE),
            Error::Validation(
                V::InvalidChannelId { .. }
                | V::EmptyId {
                    kind: IdKind::ChannelId,
                }
                | V::IdTooLong {
                    kind: IdKind::ChannelId,
                    ..
                }
                | V::ForbiddenChar {
                    kind: IdKind::ChannelId,
                    ..
                },
            ) => Some(R::CHANNEL_ID_ERROR),
            Error::Validation(
                V::EmptyId { .. }
                | V::IdTooLong { .. }
                | V::ForbiddenChar { .. }
                | V::PayloadTooLarge { .. }
                | V::EmptyPayload,
            )
            | Error::Conflict { .. } => Some(R::NOT_ALLOW_SEND),
            Error::Validation(V::OutOfRange(_) | V::SeqBeyondHead { .. })
            | Error::NotFound { .. }
            | Error::RevokeRefused(_)
            | Error::EditRefused(_) => None,
            Error::Storage { .. }
            | Error::Unavailable { .. }
            | Error::Unconfirmed { .. }
            | Error::UnsupportedFormat { .. }
            | Error::InUse { .. }
            | Error::Closed
            | Error::Corrupt { .. } => Some(R::SYSTEM_ERROR),
        }
    }

    /// Whether the same call may succeed if made again later, unchanged:
    /// `true` for [`Error::Unavailable`] (the backend is down or slow),
    /// [`Error::Closed`] (this hub is shutting down; another will take
    /// it) and [`Error::RateLimited`] (the sender's allowance refills),
    /// and nothing else. Retry after a pause, not at once.
    ///
    /// ```
    /// let down = imcore::Error::Unavailable { backend: "postgres", source: "refused".into() };
    /// assert!(down.is_retryable());
    /// assert!(!imcore::Error::not_found("message 7").is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Unavailable { .. } | Error::Closed | Error::RateLimited { .. }
        )
    }

    /// A [`Error::Rejected`]: `uid` was refused `channel` for `reason`
    /// (each as it displays: the uid, and the channel as `type:id`).
    pub fn rejected(
        reason: crate::ReasonCode,
        uid: &impl fmt::Display,
        channel: &impl fmt::Display,
    ) -> Self {
        Error::Rejected {
            reason,
            uid: uid.to_string(),
            channel: channel.to_string(),
        }
    }

    /// A [`Error::Conflict`]: `uid` already stored `client_msg_no` in
    /// `channel` with another payload (each as it displays; the channel
    /// as `type:id`).
    pub fn conflict(
        uid: &impl fmt::Display,
        channel: &impl fmt::Display,
        client_msg_no: &impl fmt::Display,
    ) -> Self {
        Error::Conflict {
            uid: uid.to_string(),
            channel: channel.to_string(),
            client_msg_no: client_msg_no.to_string(),
        }
    }

    /// A [`Error::NotFound`] for `what`.
    pub fn not_found(what: impl fmt::Display) -> Self {
        Error::NotFound {
            what: what.to_string(),
        }
    }

    /// A [`Error::Corrupt`] for `what`.
    pub fn corrupt(what: impl fmt::Display) -> Self {
        Error::Corrupt {
            what: what.to_string(),
        }
    }
}

/// Which identifier a [`ValidationError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdKind {
    /// A [`Uid`](crate::Uid).
    Uid,
    /// A [`DeviceId`](crate::DeviceId).
    DeviceId,
    /// A [`ClientMsgNo`](crate::ClientMsgNo).
    ClientMsgNo,
    /// A [`ChannelId`](crate::ChannelId).
    ChannelId,
    /// An [`EventId`](crate::EventId).
    EventId,
    /// An [`EventKey`](crate::EventKey).
    EventKey,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::Uid => "uid",
            IdKind::DeviceId => "device id",
            IdKind::ClientMsgNo => "client_msg_no",
            IdKind::ChannelId => "channel id",
            IdKind::EventId => "event_id",
            IdKind::EventKey => "event_key",
        })
    }
}

/// Why an input was rejected. Carried by [`Error::Validation`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// An identifier was empty.
    #[error("{kind} must not be empty")]
    EmptyId {
        /// Which identifier.
        kind: IdKind,
    },
    /// An identifier was longer than its documented limit, in bytes.
    #[error("{kind} is {len} bytes long, the limit is {max}")]
    IdTooLong {
        /// Which identifier.
        kind: IdKind,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// An identifier contained a character it may not contain.
    #[error("{kind} must not contain {ch:?}")]
    ForbiddenChar {
        /// Which identifier.
        kind: IdKind,
        /// The offending character.
        ch: char,
    },
    /// A payload was larger than the configured limit, in bytes.
    #[error("payload is {len} bytes, the limit is {max}")]
    PayloadTooLarge {
        /// The payload's length in bytes.
        len: usize,
        /// The configured limit in bytes.
        max: usize,
    },
    /// A send with an empty payload. WuKongIM refuses it ("payload不能为空"),
    /// and so does the hub: a message always has content. (A revoked
    /// message read from history has its payload removed; that is not a
    /// send.)
    #[error("payload must not be empty")]
    EmptyPayload,
    /// A channel type number that cannot be used here (0 is never valid).
    #[error("channel type {0} is not valid here")]
    InvalidChannelType(u8),
    /// A channel id that does not fit its channel type (for example a person
    /// channel id that is not of the form `a@b`).
    #[error("channel id {id:?} is not valid for channel type {channel_type}")]
    InvalidChannelId {
        /// The channel id given.
        id: String,
        /// Its channel type number.
        channel_type: u8,
    },
    /// A page or batch limit of zero, or some other argument out of range.
    #[error("{0}")]
    OutOfRange(&'static str),
    /// A retention deletion through a seq the channel has not reached
    /// ([`Hub::delete_history`](crate::Hub::delete_history)): nothing is
    /// deleted.
    #[error("through_seq {through_seq} is above the channel's last seq {last_seq}")]
    SeqBeyondHead {
        /// The seq asked to delete through.
        through_seq: u64,
        /// The channel's last seq.
        last_seq: u64,
    },
}

/// Why a revocation was refused. Carried by
/// [`Error::RevokeRefused`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevokeRefusal {
    /// Commands and transient messages are not in history and cannot be
    /// revoked; neither can the hub's own revocation tips.
    #[error("commands, transient messages and revocation tips cannot be revoked")]
    NotRevocable,
    /// The authorizer said no.
    #[error("the requester may not revoke this message")]
    NotPermitted,
    /// The revocation window has passed.
    #[error("too late: sent at {sent_at_ms} ms, asked at {now_ms} ms, more than the {window_ms} ms window")]
    WindowExpired {
        /// When the message was sent (Unix ms).
        sent_at_ms: i64,
        /// The window (ms).
        window_ms: u64,
        /// When the revocation was asked (Unix ms).
        now_ms: i64,
    },
}

/// Why an edit was refused ([`Error::EditRefused`] carries it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EditRefusal {
    /// Commands, transient messages and the hub's own tips are not in
    /// history as content a user wrote, and cannot be edited.
    #[error("commands, transient messages and the hub's tips cannot be edited")]
    NotEditable,
    /// The rules said no (by default, only the sender may edit).
    #[error("the requester may not edit this message")]
    NotPermitted,
    /// The message is revoked.
    #[error("the message is revoked and cannot be edited")]
    Revoked,
    /// The edit window has passed.
    #[error("too late: sent at {sent_at_ms} ms, asked at {now_ms} ms, more than the {window_ms} ms window")]
    WindowExpired {
        /// When the message was sent (Unix ms).
        sent_at_ms: i64,
        /// The window (ms).
        window_ms: u64,
        /// When the edit was asked (Unix ms).
        now_ms: i64,
    },
}

impl EditRefusal {
    /// A stable code for the refusal, for APIs: `not_editable`,
    /// `not_permitted`, `revoked` or `window_expired`.
    pub const fn code(&self) -> &'static str {
        match self {
            EditRefusal::NotEditable => "not_editable",
            EditRefusal::NotPermitted => "not_permitted",
            EditRefusal::Revoked => "revoked",
            EditRefusal::WindowExpired { .. } => "window_expired",
        }
    }
}
