//! Protocol versions: which one a session speaks, and which fields each
//! version puts on the wire (as WuKongIMGoProto v1.2.3 encodes them).
//!
//! | version | adds |
//! |---|---|
//! | 1 | the packets as first defined |
//! | 2 | SEND's stream no and RECV's stream fields, when the setting says stream |
//! | 3 | SEND's and RECV's `expire` (u32, after the channel type) |
//! | 4 | CONNACK's node id (u64, last); a CONNECT above 3 gets a CONNACK with the server version byte first (header flag bit 0) |
//! | 5 | SEND and RECV drop the stream fields again; the EVENT packet (12) |
//!
//! Version 0 has no field of its own: it reads and writes as version 1.

/// The version [`Packet::encode`](super::Packet::encode) and
/// [`Packet::decode`](super::Packet::decode) speak: 2, the JavaScript SDK's
/// default.
pub const PROTOCOL_VERSION: u8 = 2;

/// The newest version WuKongIM speaks (WuKongIMGoProto's `LatestVersion`).
pub const LATEST_VERSION: u8 = 5;

/// The version a session speaks with a client that asked for `requested`
/// in its CONNECT: `requested`, or [`LATEST_VERSION`] if it is newer, as
/// WuKongIM's server answers (it refuses none).
///
/// ```
/// use imcore::wire::{negotiate_version, LATEST_VERSION};
/// assert_eq!(negotiate_version(2), 2);
/// assert_eq!(negotiate_version(9), LATEST_VERSION);
/// ```
pub const fn negotiate_version(requested: u8) -> u8 {
    if requested > LATEST_VERSION {
        LATEST_VERSION
    } else {
        requested
    }
}

/// SEND's stream no and RECV's stream fields are on the wire (when the
/// setting says stream): versions 2 to 4.
pub(super) const fn has_stream_fields(version: u8) -> bool {
    version >= 2 && version < 5
}

/// SEND and RECV carry `expire`: version 3 on.
pub(super) const fn has_expire(version: u8) -> bool {
    version >= 3
}

/// CONNACK carries the node id: version 4 on.
pub(super) const fn has_node_id(version: u8) -> bool {
    version >= 4
}

/// The server sends EVENT packets: version 5 on.
pub const fn has_events(version: u8) -> bool {
    version >= 5
}

/// Whether a CONNACK answering a CONNECT of version `requested` carries
/// the server's version (WuKongIM's server: above 3).
pub const fn connack_has_server_version(requested: u8) -> bool {
    requested > 3
}
