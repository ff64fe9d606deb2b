//! A streaming codec: splits a byte stream into packets and back.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::wire::fields::frame_len;
use crate::wire::packet::{Packet, PROTOCOL_VERSION};
use crate::wire::WireError;

/// The default largest packet body a [`WireCodec`] accepts: 256 KiB, room
/// for a 64 KiB payload encrypted and base64'd, and its fields.
pub const DEFAULT_MAX_FRAME: usize = 256 * 1024;

/// A [`tokio_util::codec`] codec for the protocol: use it with `Framed` on
/// a TCP stream, or feed it WebSocket messages (one message may hold
/// several packets, and a packet may span messages).
///
/// A packet whose declared body is longer than `max_frame` is an error as
/// soon as its length has arrived: the codec never buffers more than one
/// frame's worth for a packet.
///
/// ```
/// use bytes::BytesMut;
/// use imcore::wire::{Packet, WireCodec};
/// use tokio_util::codec::Decoder;
///
/// let mut codec = WireCodec::default();
/// let mut buf = BytesMut::from(&[0x70u8, 0x70][..]); // two PINGs in one chunk
/// assert_eq!(codec.decode(&mut buf)?, Some(Packet::Ping));
/// assert_eq!(codec.decode(&mut buf)?, Some(Packet::Ping));
/// assert_eq!(codec.decode(&mut buf)?, None);
/// # Ok::<(), imcore::wire::WireError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireCodec {
    max_frame: usize,
    version: u8,
}

impl WireCodec {
    /// A codec refusing bodies longer than `max_frame` bytes, speaking
    /// [`PROTOCOL_VERSION`].
    pub fn new(max_frame: usize) -> Self {
        WireCodec {
            max_frame,
            version: PROTOCOL_VERSION,
        }
    }

    /// This codec, speaking protocol `version` instead
    /// ([`Packet::encode_at`], [`Packet::decode_at`]).
    pub fn with_version(mut self, version: u8) -> Self {
        self.version = version;
        self
    }

    /// The largest body it accepts.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// The protocol version it speaks.
    pub fn version(&self) -> u8 {
        self.version
    }
}

impl Default for WireCodec {
    fn default() -> Self {
        WireCodec::new(DEFAULT_MAX_FRAME)
    }
}

impl Decoder for WireCodec {
    type Item = Packet;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, WireError> {
        match frame_len(src, self.max_frame)? {
            None => Ok(None),
            Some(len) => Packet::decode_frame(src.split_to(len).freeze(), self.version).map(Some),
        }
    }
}

impl Encoder<Packet> for WireCodec {
    type Error = WireError;

    fn encode(&mut self, packet: Packet, dst: &mut BytesMut) -> Result<(), WireError> {
        packet.encode_at(self.version, dst)
    }
}

impl Encoder<&Packet> for WireCodec {
    type Error = WireError;

    fn encode(&mut self, packet: &Packet, dst: &mut BytesMut) -> Result<(), WireError> {
        packet.encode_at(self.version, dst)
    }
}
