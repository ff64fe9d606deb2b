//! WuKongIM's binary protocol, versions 1 to 5 (feature `wire`): what its
//! clients, such as the official JavaScript SDK `wukongimjssdk` (version
//! 2) and the Go and native SDKs, speak.
//!
//! - [`Packet`] and its parts: every packet with its encoding and
//!   decoding at each version ([`Packet::encode_at`],
//!   [`Packet::decode_at`]); [`WireCodec`] splits a byte stream into
//!   packets. A session speaks [`negotiate_version`] of what its CONNECT
//!   asks for, as WuKongIM's server does.
//! - [`KeyExchange`] and [`SessionCipher`]: the Curve25519 key exchange and
//!   the AES-128-CBC payload cipher, as the clients do them.
//! - [`Authenticator`]: the host's check of a login; [`TokenTable`] keeps
//!   tokens in memory.
//! - [`WireServer`]: serves one client connection on a [`Hub`](crate::Hub),
//!   over any transport that carries byte chunks in and frames out.
//!
//! Decoding never panics and never allocates more than the frame it reads
//! (the transport's own buffering, such as a WebSocket library assembling a
//! message, is the host's to bound); bad input is a [`WireError`].

mod auth;
mod cipher;
mod codec;
mod conns;
mod events;
mod fields;
mod packet;
mod queue;
mod server;
mod session;
mod stats;
mod transport;

pub use auth::{Authenticator, ConnectInfo, TokenTable};
pub use cipher::{new_salt, KeyExchange, SessionCipher, SALT_LEN};
pub use codec::{WireCodec, DEFAULT_MAX_FRAME};
pub use conns::{ConnPage, ConnSort, Traffic, WireConnection};
pub use fields::frame_len;
pub use packet::{
    connack_has_server_version, has_events, negotiate_version, ConnackPacket, ConnectPacket,
    DisconnectPacket, EventPacket, Packet, PacketType, RecvPacket, RecvackPacket, SendPacket,
    SendackPacket, Setting, StreamInfo, SubPacket, SubackPacket, LATEST_VERSION,
    MAX_REMAINING_LENGTH, PROTOCOL_VERSION,
};
pub use server::{SessionEnd, WireConfig, WireServer};
pub use stats::WireStats;

/// What went wrong reading, writing or serving the protocol.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The input ends before the packet does (only from
    /// [`Packet::decode`]; streaming decoders wait for more).
    #[error("the input ends before the packet does")]
    Incomplete,
    /// A field runs past the end of its packet.
    #[error("a field runs past the end of its packet")]
    Truncated,
    /// A packet declares a body longer than allowed.
    #[error("packet body of {len} bytes is over the limit of {max}")]
    Oversized {
        /// The declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The header names no packet type (0, or 13 to 15).
    #[error("unknown packet type {0}")]
    UnknownType(u8),
    /// The remaining length runs over four bytes.
    #[error("the remaining length is longer than four bytes")]
    BadLength,
    /// A string field is not UTF-8.
    #[error("field {0} is not UTF-8")]
    InvalidUtf8(&'static str),
    /// A packet has bytes after its last field.
    #[error("{0} bytes after the packet's last field")]
    TrailingBytes(usize),
    /// A string is too long for its u16 length.
    #[error("a string of {0} bytes is longer than 65,535")]
    StringTooLong(usize),
    /// An optional field and the setting bit that announces it disagree.
    #[error("field {0} and its setting bit disagree")]
    Inconsistent(&'static str),
    /// A value does not fit its field on the wire.
    #[error("{0} does not fit its field")]
    OutOfRange(&'static str),
    /// A key or salt is unusable.
    #[error("key exchange failed: {0}")]
    Key(&'static str),
    /// A payload could not be decrypted.
    #[error("cipher: {0}")]
    Cipher(&'static str),
    /// The client sent a packet it may not send at this point.
    #[error("unexpected {0:?} packet")]
    Unexpected(PacketType),
    /// The hub failed (storage).
    #[error("hub: {0}")]
    Hub(#[source] crate::Error),
    /// A write to the client made no progress within the write timeout.
    #[error("a write to the client timed out")]
    WriteTimeout,
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An I/O error from a `tokio_util` framed transport.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}
