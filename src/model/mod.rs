//! The message model: identifiers, channels, header flags and messages.
//!
//! Everything here means what it means in WuKongIM, so that its clients read
//! the same values: channel type numbers, the header flag bits, and the
//! person-channel id rule.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{IdKind, Result, ValidationError};

mod flags;

pub use flags::{Flags, Setting, MAX_TOPIC_LEN};

/// The longest uid, device id or `client_msg_no` accepted, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// The longest channel id accepted, in bytes: room for a derived person
/// channel id `a@b` made of two uids of [`MAX_ID_LEN`] bytes.
pub const MAX_CHANNEL_ID_LEN: usize = 2 * MAX_ID_LEN + 1;

/// The default payload limit, in bytes (64 KiB). See [`Limits`].
pub const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024;

/// Characters a uid may not contain: WuKongIM uses `@` to join the two uids
/// of a person channel, and reserves `#` and `&`.
pub const UID_FORBIDDEN_CHARS: [char; 3] = ['@', '#', '&'];

fn check_id(kind: IdKind, s: &str, max: usize, forbidden: &[char]) -> Result<()> {
    if s.is_empty() {
        return Err(ValidationError::EmptyId { kind }.into());
    }
    if s.len() > max {
        return Err(ValidationError::IdTooLong {
            kind,
            len: s.len(),
            max,
        }
        .into());
    }
    if let Some(ch) = s.chars().find(|c| forbidden.contains(c) || c.is_control()) {
        return Err(ValidationError::ForbiddenChar { kind, ch }.into());
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $kind:expr, $max:expr, $forbidden:expr) => {
        string_id!($(#[$meta])* $name, $kind, $max, $forbidden, Arc<str>);
    };
    ($(#[$meta:meta])* $name:ident, $kind:expr, $max:expr, $forbidden:expr, $inner:ty) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name($inner);

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            /// Validates as [`Self::new`] does; decodes from a borrowed
            /// string where the format allows, with one allocation.
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "a valid {}", $kind)
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<$name, E> {
                        $name::new(s).map_err(E::custom)
                    }
                }
                d.deserialize_str(Visitor)
            }
        }

        impl $name {
            /// Validates and wraps `s`: it must be non-empty, at most the
            /// documented number of bytes, and free of control characters
            /// (and, for uids, of [`UID_FORBIDDEN_CHARS`]).
            pub fn new(s: impl AsRef<str>) -> Result<Self> {
                let s = s.as_ref();
                check_id($kind, s, $max, $forbidden)?;
                Ok(Self(<$inner>::from(s)))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Wraps an id the crate itself validated and stored, without
            /// checking it again (reading history back).
            #[allow(dead_code)]
            pub(crate) fn from_stored(s: &str) -> Self {
                Self(<$inner>::from(s))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = crate::Error;
            fn try_from(s: String) -> Result<Self> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = crate::Error;
            fn try_from(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.to_string()
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }
    };
}

string_id!(
    /// A user id. At most [`MAX_ID_LEN`] bytes, never empty, and free of
    /// [`UID_FORBIDDEN_CHARS`] (`@`, `#`, `&`) as WuKongIM requires.
    ///
    /// ```
    /// use imcore::Uid;
    /// assert!(Uid::new("alice").is_ok());
    /// assert!(Uid::new("").is_err());
    /// assert!(Uid::new("a@b").is_err());
    /// ```
    Uid,
    IdKind::Uid,
    MAX_ID_LEN,
    &UID_FORBIDDEN_CHARS
);

string_id!(
    /// A device id, chosen by the client (one per installation). At most
    /// [`MAX_ID_LEN`] bytes, never empty.
    DeviceId,
    IdKind::DeviceId,
    MAX_ID_LEN,
    &[]
);

string_id!(
    /// The client's own number for a message, used to recognise resends: a
    /// second send with the same `(from_uid, client_msg_no)` is answered with
    /// the first send's id and seq. At most [`MAX_ID_LEN`] bytes, never empty.
    ///
    /// Unlike the other ids it can share a buffer with other data (a page
    /// of history read back shares one), since every message has its own.
    ClientMsgNo,
    IdKind::ClientMsgNo,
    MAX_ID_LEN,
    &[],
    bytestring::ByteString
);

impl ClientMsgNo {
    /// Wraps a number the crate itself validated and stored, sharing
    /// `bytes` rather than copying it; `None` if it is not UTF-8.
    #[cfg(feature = "sled")]
    pub(crate) fn from_stored_bytes(bytes: bytes::Bytes) -> Option<Self> {
        bytestring::ByteString::try_from(bytes).ok().map(Self)
    }
}

string_id!(
    /// The caller's id for a message event, which makes appending it
    /// idempotent: a second event with the same id on the same message is
    /// answered as the first. At most [`MAX_ID_LEN`] bytes, never empty.
    EventId,
    IdKind::EventId,
    MAX_ID_LEN,
    &[]
);

string_id!(
    /// The key of one stream of events within a message (WuKongIM's
    /// `event_key`; `main` unless the caller names another): a message can
    /// carry several, each with a state of its own. At most [`MAX_ID_LEN`]
    /// bytes, never empty.
    EventKey,
    IdKind::EventKey,
    MAX_ID_LEN,
    &[]
);

string_id!(
    /// A channel id. At most [`MAX_CHANNEL_ID_LEN`] bytes, never empty. For
    /// person channels see [`Channel::person`].
    ChannelId,
    IdKind::ChannelId,
    MAX_CHANNEL_ID_LEN,
    &[]
);

impl From<Uid> for ChannelId {
    /// A uid is always a valid channel id: that is how a person channel is
    /// addressed by its clients.
    fn from(uid: Uid) -> Self {
        ChannelId(uid.0)
    }
}

/// A server-assigned message id: unique, and increasing with time when made
/// by [`crate::MessageIdGenerator`]. Always below 2^63 so that it fits
/// WuKongIM's signed 64-bit field.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct MessageId(pub u64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A channel type, with WuKongIM's numbers.
///
/// The known types have constants; any other non-zero number is kept as it
/// is and resolved by the host's directory. Zero is never a channel type.
///
/// ```
/// use imcore::ChannelType;
/// assert_eq!(ChannelType::try_from(2).unwrap(), ChannelType::GROUP);
/// assert_eq!(ChannelType::try_from(42).unwrap().as_u8(), 42);
/// assert!(ChannelType::try_from(0).is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct ChannelType(u8);

impl ChannelType {
    /// 1: a one-to-one conversation between two users.
    pub const PERSON: ChannelType = ChannelType(1);
    /// 2: a group.
    pub const GROUP: ChannelType = ChannelType(2);
    /// 3: customer service.
    pub const CUSTOMER_SERVICE: ChannelType = ChannelType(3);
    /// 4: a community.
    pub const COMMUNITY: ChannelType = ChannelType(4);
    /// 5: a topic inside a community.
    pub const COMMUNITY_TOPIC: ChannelType = ChannelType(5);
    /// 6: an information channel (temporary subscribers).
    pub const INFO: ChannelType = ChannelType(6);
    /// 7: a data channel.
    pub const DATA: ChannelType = ChannelType(7);

    /// The WuKongIM number of this type.
    pub const fn as_u8(self) -> u8 {
        self.0
    }

    /// The name of a known type, `None` for a host-defined one.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "person",
            2 => "group",
            3 => "customer_service",
            4 => "community",
            5 => "community_topic",
            6 => "info",
            7 => "data",
            _ => return None,
        })
    }
}

impl TryFrom<u8> for ChannelType {
    type Error = crate::Error;
    fn try_from(n: u8) -> Result<Self> {
        if n == 0 {
            Err(ValidationError::InvalidChannelType(0).into())
        } else {
            Ok(ChannelType(n))
        }
    }
}

impl From<ChannelType> for u8 {
    fn from(t: ChannelType) -> u8 {
        t.0
    }
}

impl fmt::Debug for ChannelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{}({name})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

impl fmt::Display for ChannelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A channel: its id and its type.
///
/// A person channel is *addressed* by the other party's uid, and *stored*
/// under one id derived from both uids ([`Channel::person`]), the same from
/// either side. Messages carry the stored form; [`Channel::as_seen_by`] turns
/// it back into what a given user calls it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Channel {
    /// The channel id.
    pub id: ChannelId,
    /// The channel type.
    #[serde(rename = "channel_type")]
    pub kind: ChannelType,
}

impl Channel {
    /// A channel of `kind` named `id`.
    pub fn new(id: ChannelId, kind: ChannelType) -> Self {
        Channel { id, kind }
    }

    /// A group channel (type 2), validating `id`.
    pub fn group(id: impl AsRef<str>) -> Result<Self> {
        Ok(Channel::new(ChannelId::new(id)?, ChannelType::GROUP))
    }

    /// The stored person channel between `a` and `b`, the same whichever
    /// side is named first.
    ///
    /// The id is WuKongIM's `x@y`: the uid with the larger CRC32 (IEEE) comes
    /// first. WuKongIM leaves a CRC32 tie order-dependent (it then puts the
    /// second argument first); here a tie is broken by comparing the uids
    /// bytewise, larger first, so the id is the same from both sides in
    /// every case and equal to WuKongIM's whenever the hashes differ.
    ///
    /// ```
    /// use imcore::{Channel, Uid};
    /// let (a, b) = (Uid::new("alice").unwrap(), Uid::new("bob").unwrap());
    /// let ab = Channel::person(&a, &b);
    /// assert_eq!(ab, Channel::person(&b, &a));
    /// // Each side calls the channel by the other's uid.
    /// assert_eq!(ab.as_seen_by(&a).id.as_str(), "bob");
    /// assert_eq!(ab.as_seen_by(&b).id.as_str(), "alice");
    /// ```
    pub fn person(a: &Uid, b: &Uid) -> Self {
        let (ha, hb) = (
            crc32fast::hash(a.as_str().as_bytes()),
            crc32fast::hash(b.as_str().as_bytes()),
        );
        let a_first = ha > hb || (ha == hb && a.as_str() >= b.as_str());
        let (first, second) = if a_first { (a, b) } else { (b, a) };
        let id = format!("{first}@{second}");
        Channel {
            // Two uids of at most MAX_ID_LEN bytes, free of control
            // characters, joined by '@': always a valid channel id.
            id: ChannelId(Arc::from(id)),
            kind: ChannelType::PERSON,
        }
    }

    /// The two uids of a stored person channel, `None` for any other channel
    /// (including a person channel in its addressed, single-uid form).
    pub fn person_parties(&self) -> Option<(Uid, Uid)> {
        if self.kind != ChannelType::PERSON {
            return None;
        }
        let (a, b) = self.id.as_str().split_once('@')?;
        Some((Uid::new(a).ok()?, Uid::new(b).ok()?))
    }

    /// Turns a channel as a client addresses it into the channel as it is
    /// stored: a person channel named by the other party's uid becomes the
    /// derived id of `sender` and that uid, and a derived id is put in its
    /// canonical order; anything else is returned as is.
    ///
    /// A person channel whose id is neither a uid nor a derived id gives
    /// [`ValidationError::InvalidChannelId`].
    pub fn stored_for(&self, sender: &Uid) -> Result<Channel> {
        if self.kind != ChannelType::PERSON {
            return Ok(self.clone());
        }
        if let Some((a, b)) = self.person_parties() {
            // Canonical order, so that `b@a` never names a second channel.
            return Ok(Channel::person(&a, &b));
        }
        match Uid::new(self.id.as_str()) {
            Ok(peer) => Ok(Channel::person(sender, &peer)),
            Err(_) => Err(ValidationError::InvalidChannelId {
                id: self.id.to_string(),
                channel_type: self.kind.as_u8(),
            }
            .into()),
        }
    }

    /// The channel as `viewer` calls it: for a stored person channel that
    /// `viewer` is part of, the other party's uid; otherwise unchanged.
    pub fn as_seen_by(&self, viewer: &Uid) -> Channel {
        match self.person_parties() {
            Some((a, b)) if &a == viewer => Channel::new(b.into(), ChannelType::PERSON),
            Some((a, b)) if &b == viewer => Channel::new(a.into(), ChannelType::PERSON),
            _ => self.clone(),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_u8(), self.id)
    }
}

/// A message as the crate stores and delivers it.
///
/// `channel` is always the stored form (see [`Channel`]); `message_seq` is
/// the channel's sequence number for history messages and 0 for commands
/// and transient messages, which use no channel seq.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Message {
    /// Server-assigned id, unique per hub cluster (transient messages get
    /// one too, though nothing is stored under it).
    pub message_id: MessageId,
    /// The channel's sequence number (from 1), or 0 when not in history.
    pub message_seq: u64,
    /// The sender's own number for this message.
    pub client_msg_no: ClientMsgNo,
    /// The sender.
    pub from_uid: Uid,
    /// The channel, in its stored form.
    pub channel: Channel,
    /// Server time of the send, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Header flags as sent.
    pub flags: Flags,
    /// The setting byte as sent, without the bits that describe packet
    /// fields ([`Setting::stored`]).
    #[serde(default)]
    pub setting: Setting,
    /// The topic the sender gave, if any (at most [`MAX_TOPIC_LEN`] bytes).
    #[serde(default)]
    pub topic: Option<String>,
    /// The payload, opaque to the crate (WuKongIM clients send JSON).
    pub payload: Bytes,
}

impl Message {
    /// A message with seq 0 (a log assigns the seq), [`Flags::normal`], no
    /// setting and no topic; the setters change those.
    ///
    /// ```
    /// use imcore::{Channel, ClientMsgNo, Flags, Message, MessageId, Uid};
    /// # fn main() -> imcore::Result<()> {
    /// let alice = Uid::new("alice")?;
    /// let message = Message::new(
    ///     MessageId(1),
    ///     ClientMsgNo::new("c-1")?,
    ///     alice.clone(),
    ///     Channel::person(&alice, &Uid::new("bob")?),
    ///     1_700_000_000_000,
    ///     "hi",
    /// )
    /// .flags(Flags::command());
    /// assert_eq!(message.message_seq, 0);
    /// assert!(message.flags.sync_once);
    /// # Ok(()) }
    /// ```
    pub fn new(
        message_id: MessageId,
        client_msg_no: ClientMsgNo,
        from_uid: Uid,
        channel: Channel,
        timestamp_ms: i64,
        payload: impl Into<Bytes>,
    ) -> Self {
        Message {
            message_id,
            message_seq: 0,
            client_msg_no,
            from_uid,
            channel,
            timestamp_ms,
            flags: Flags::normal(),
            setting: Setting::default(),
            topic: None,
            payload: payload.into(),
        }
    }

    /// Sets [`Message::message_seq`] (a store reading a message back).
    pub fn seq(mut self, message_seq: u64) -> Self {
        self.message_seq = message_seq;
        self
    }

    /// Sets [`Message::flags`].
    pub fn flags(mut self, flags: Flags) -> Self {
        self.flags = flags;
        self
    }

    /// Sets [`Message::setting`].
    pub fn setting(mut self, setting: Setting) -> Self {
        self.setting = setting;
        self
    }

    /// Sets [`Message::topic`].
    pub fn topic(mut self, topic: Option<String>) -> Self {
        self.topic = topic;
        self
    }

    /// The send time in whole seconds, as WuKongIM's RECV packet carries it.
    pub fn timestamp_secs(&self) -> i64 {
        self.timestamp_ms.div_euclid(1000)
    }
}

/// Size limits applied to input. The defaults are documented on each field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The largest payload accepted, in bytes. Default
    /// [`DEFAULT_MAX_PAYLOAD`] (64 KiB).
    pub max_payload: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload: DEFAULT_MAX_PAYLOAD,
        }
    }
}

impl Limits {
    /// Sets [`Limits::max_payload`].
    pub fn max_payload(mut self, max_payload: usize) -> Self {
        self.max_payload = max_payload;
        self
    }

    /// Checks a payload against [`Limits::max_payload`].
    ///
    /// ```
    /// use imcore::Limits;
    /// let limits = Limits::default().max_payload(4);
    /// assert!(limits.check_payload(b"1234").is_ok());
    /// assert!(limits.check_payload(b"12345").is_err());
    /// ```
    pub fn check_payload(&self, payload: &[u8]) -> Result<()> {
        if payload.len() > self.max_payload {
            return Err(ValidationError::PayloadTooLarge {
                len: payload.len(),
                max: self.max_payload,
            }
            .into());
        }
        Ok(())
    }
}
