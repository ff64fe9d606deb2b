//! WuKongIM's reason codes, carried by acknowledgements and disconnects.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A WuKongIM reason code. The numbers are WuKongIM's, so that its clients
/// read them; codes the crate does not name are kept as they are.
///
/// ```
/// use imcore::ReasonCode;
/// assert_eq!(ReasonCode::SUCCESS.as_u8(), 1);
/// assert_eq!(ReasonCode::from(4), ReasonCode::IN_BLACKLIST);
/// assert!(ReasonCode::SUCCESS.is_success());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReasonCode(u8);

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $n:literal,)*) => {
        impl ReasonCode {
            $($(#[$doc])* pub const $name: ReasonCode = ReasonCode($n);)*

            /// The code's WuKongIM name, `None` for a code the crate does not name.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($n => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    /// 0: unknown.
    UNKNOWN = 0,
    /// 1: success.
    SUCCESS = 1,
    /// 2: authentication failed.
    AUTH_FAIL = 2,
    /// 3: the sender is not a subscriber (member) of the channel.
    SUBSCRIBER_NOT_EXIST = 3,
    /// 4: the sender is in a blacklist (the recipient's, or the channel's: muted).
    IN_BLACKLIST = 4,
    /// 5: the channel does not exist.
    CHANNEL_NOT_EXIST = 5,
    /// 7: the sending device is not connected.
    SENDER_OFFLINE = 7,
    /// 8: the message key did not verify. In WuKongIM's list, but its
    /// server answers a bad message key with 9, and so does this crate:
    /// 8 is never sent.
    MSG_KEY_ERROR = 8,
    /// 9: the payload could not be decoded.
    PAYLOAD_DECODE_ERROR = 9,
    /// 11: sending is not allowed (a host refusal with no more specific code).
    NOT_ALLOW_SEND = 11,
    /// 12: the connection was kicked (another login took its place).
    CONNECT_KICK = 12,
    /// 13: the sender is not in the recipient's whitelist (not friends).
    NOT_IN_WHITELIST = 13,
    /// 15: a system error.
    SYSTEM_ERROR = 15,
    /// 16: the channel id is not valid.
    CHANNEL_ID_ERROR = 16,
    /// 19: the channel is banned.
    BAN = 19,
    /// 20: the header is not supported.
    NOT_SUPPORT_HEADER = 20,
    /// 21: CONNECT carried no client key.
    CLIENT_KEY_IS_EMPTY = 21,
    /// 22: rate limited.
    RATE_LIMIT = 22,
    /// 23: the channel type is not supported.
    NOT_SUPPORT_CHANNEL_TYPE = 23,
    /// 24: the channel was disbanded.
    DISBAND = 24,
    /// 25: sending is banned in this channel (everyone muted).
    SEND_BAN = 25,
}

impl ReasonCode {
    /// The WuKongIM number.
    pub const fn as_u8(self) -> u8 {
        self.0
    }

    /// `true` for [`ReasonCode::SUCCESS`].
    pub const fn is_success(self) -> bool {
        self.0 == 1
    }
}

impl From<u8> for ReasonCode {
    fn from(n: u8) -> Self {
        ReasonCode(n)
    }
}

impl From<ReasonCode> for u8 {
    fn from(r: ReasonCode) -> u8 {
        r.0
    }
}

impl fmt::Debug for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{}({name})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
