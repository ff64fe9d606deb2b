//! The bits a message carries besides its payload: the header flags and
//! the setting byte, as WuKongIM's clients send them.

use serde::{Deserialize, Serialize};

/// The message flags of WuKongIM's fixed header byte:
/// `packet_type << 4 | dup << 3 | sync_once << 2 | red_dot << 1 | no_persist`.
///
/// ```
/// use imcore::Flags;
/// let f = Flags { red_dot: true, ..Flags::default() };
/// assert_eq!(f.header_byte(3), 0x32); // SEND with red_dot
/// assert_eq!(Flags::from_header_byte(0x32), (3, f));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Flags {
    /// Resent by the client (bit 3). Carried, never acted upon.
    #[serde(default)]
    pub dup: bool,
    /// A command (bit 2): delivered, never in channel history; an offline
    /// recipient gets it once, by command sync.
    #[serde(default)]
    pub sync_once: bool,
    /// Raise the recipients' unread count (bit 1).
    #[serde(default)]
    pub red_dot: bool,
    /// Transient (bit 0): delivered to online devices only, stored nowhere.
    #[serde(default)]
    pub no_persist: bool,
}

impl Flags {
    const DUP: u8 = 1 << 3;
    const SYNC_ONCE: u8 = 1 << 2;
    const RED_DOT: u8 = 1 << 1;
    const NO_PERSIST: u8 = 1;

    /// The flags of an ordinary chat message: history, with a red dot.
    pub const fn normal() -> Self {
        Flags {
            dup: false,
            sync_once: false,
            red_dot: true,
            no_persist: false,
        }
    }

    /// The flags of a command: `sync_once`, no red dot.
    pub const fn command() -> Self {
        Flags {
            dup: false,
            sync_once: true,
            red_dot: false,
            no_persist: false,
        }
    }

    /// The flags of a transient message: `no_persist`.
    pub const fn transient() -> Self {
        Flags {
            dup: false,
            sync_once: false,
            red_dot: false,
            no_persist: true,
        }
    }

    /// The low four bits of the header byte.
    pub const fn bits(self) -> u8 {
        (if self.dup { Self::DUP } else { 0 })
            | (if self.sync_once { Self::SYNC_ONCE } else { 0 })
            | (if self.red_dot { Self::RED_DOT } else { 0 })
            | (if self.no_persist { Self::NO_PERSIST } else { 0 })
    }

    /// The flags held in the low four bits of `bits` (the high bits are
    /// ignored).
    pub const fn from_bits(bits: u8) -> Self {
        Flags {
            dup: bits & Self::DUP != 0,
            sync_once: bits & Self::SYNC_ONCE != 0,
            red_dot: bits & Self::RED_DOT != 0,
            no_persist: bits & Self::NO_PERSIST != 0,
        }
    }

    /// The whole header byte for `packet_type` (only its low four bits are
    /// used).
    pub const fn header_byte(self, packet_type: u8) -> u8 {
        (packet_type << 4) | self.bits()
    }

    /// Splits a header byte into its packet type and flags.
    pub const fn from_header_byte(byte: u8) -> (u8, Self) {
        (byte >> 4, Self::from_bits(byte))
    }
}

/// The longest topic a message may carry, in bytes.
pub const MAX_TOPIC_LEN: usize = 255;

/// The setting byte of a message (WuKongIM's SEND and RECV carry it): read
/// receipts wanted, a topic, a stream. The crate keeps it with the message
/// and hands it back on every RECV and sync, so that a client's read
/// receipts and topics survive the trip; it acts on none of the bits.
///
/// The topic and stream bits describe fields of the packet, not of the
/// message: the wire layer sets the topic bit from
/// [`Message::topic`](crate::Message::topic), and the crate keeps no
/// stream fields, so a stored setting has neither bit.
///
/// ```
/// use imcore::Setting;
/// let s = Setting(Setting::RECEIPT | Setting::TOPIC);
/// assert!(s.receipt() && s.topic());
/// assert_eq!(s.stored(), Setting(Setting::RECEIPT));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Setting(pub u8);

impl Setting {
    /// Bit 7: the sender wants read receipts.
    pub const RECEIPT: u8 = 1 << 7;
    /// Bit 3: a topic string follows in the packet.
    pub const TOPIC: u8 = 1 << 3;
    /// Bit 1: the packet is part of a stream; at protocol versions 2 to 4
    /// stream fields follow (WuKongIMGoProto's `SettingStream` since
    /// v1.0.9, as WuKongIM's server reads it; the JavaScript SDK 1.0.4's
    /// older layout used bit 2).
    pub const STREAM: u8 = 1 << 1;

    /// Whether read receipts are on.
    pub const fn receipt(self) -> bool {
        self.0 & Self::RECEIPT != 0
    }

    /// Whether the packet carries a topic.
    pub const fn topic(self) -> bool {
        self.0 & Self::TOPIC != 0
    }

    /// Whether the packet carries stream fields.
    pub const fn stream(self) -> bool {
        self.0 & Self::STREAM != 0
    }

    /// The bits a message keeps: all but the topic and stream bits, which
    /// describe a packet's fields.
    pub const fn stored(self) -> Setting {
        Setting(self.0 & !(Self::TOPIC | Self::STREAM))
    }

    /// This setting with the topic bit set as `topic` says.
    pub const fn with_topic(self, topic: bool) -> Setting {
        match topic {
            true => Setting(self.0 | Self::TOPIC),
            false => Setting(self.0 & !Self::TOPIC),
        }
    }
}
