//! The login packets: CONNECT and CONNACK.

use crate::reason::ReasonCode;
use crate::wire::fields::{Reader, Writer};
use crate::wire::packet::version::has_node_id;
use crate::wire::WireError;

/// CONNECT: the client logs in and offers its key. Its layout is the same
/// at every version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectPacket {
    /// The protocol version the client asks for (the session speaks
    /// [`negotiate_version`](super::negotiate_version) of it).
    pub version: u8,
    /// The device kind: 0 app, 1 web, 2 pc.
    pub device_flag: u8,
    /// The device's id.
    pub device_id: String,
    /// The user.
    pub uid: String,
    /// The user's token, checked by the host's authenticator.
    pub token: String,
    /// The client's clock, in milliseconds.
    pub client_timestamp: i64,
    /// The client's Curve25519 public key, base64.
    pub client_key: String,
}

/// CONNACK: the server's answer to CONNECT.
///
/// Fields that the version does not carry are not written, and read back
/// as their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnackPacket {
    /// The version the server speaks, written first when present; its
    /// presence is bit 0 of the header byte. WuKongIM's server sends it
    /// when the CONNECT asked for a version above 3
    /// ([`connack_has_server_version`](super::connack_has_server_version)).
    pub server_version: Option<u8>,
    /// Server time minus client time, in milliseconds.
    pub time_diff: i64,
    /// [`ReasonCode::SUCCESS`], or why the login was refused.
    pub reason: ReasonCode,
    /// The server's Curve25519 public key, base64 (empty on refusal).
    pub server_key: String,
    /// The salt the client takes its AES IV from (empty on refusal).
    pub salt: String,
    /// The server's node id: on the wire from version 4.
    pub node_id: u64,
}

impl ConnackPacket {
    /// A CONNACK refusing a login for `reason`: no keys, no server version,
    /// node id 0.
    pub fn refusal(reason: ReasonCode) -> Self {
        ConnackPacket {
            server_version: None,
            time_diff: 0,
            reason,
            server_key: String::new(),
            salt: String::new(),
            node_id: 0,
        }
    }

    /// The header's low four bits: bit 0 says a server version follows.
    pub(super) fn header_bits(&self) -> u8 {
        u8::from(self.server_version.is_some())
    }
}

pub(super) fn read_connect(r: &mut Reader) -> Result<ConnectPacket, WireError> {
    Ok(ConnectPacket {
        version: r.u8()?,
        device_flag: r.u8()?,
        device_id: r.string("device_id")?,
        uid: r.string("uid")?,
        token: r.string("token")?,
        client_timestamp: r.i64()?,
        client_key: r.string("client_key")?,
    })
}

pub(super) fn write_connect(p: &ConnectPacket, w: &mut Writer<'_>) -> Result<(), WireError> {
    w.u8(p.version);
    w.u8(p.device_flag);
    w.string(&p.device_id)?;
    w.string(&p.uid)?;
    w.string(&p.token)?;
    w.i64(p.client_timestamp);
    w.string(&p.client_key)
}

pub(super) fn read_connack(
    r: &mut Reader,
    header: u8,
    version: u8,
) -> Result<ConnackPacket, WireError> {
    Ok(ConnackPacket {
        server_version: (header & 0x01 != 0).then(|| r.u8()).transpose()?,
        time_diff: r.i64()?,
        reason: r.u8()?.into(),
        server_key: r.string("server_key")?,
        salt: r.string("salt")?,
        node_id: if has_node_id(version) { r.u64()? } else { 0 },
    })
}

pub(super) fn write_connack(
    p: &ConnackPacket,
    w: &mut Writer<'_>,
    version: u8,
) -> Result<(), WireError> {
    if let Some(server_version) = p.server_version {
        w.u8(server_version);
    }
    w.i64(p.time_diff);
    w.u8(p.reason.as_u8());
    w.string(&p.server_key)?;
    w.string(&p.salt)?;
    if has_node_id(version) {
        w.u64(p.node_id);
    }
    Ok(())
}
