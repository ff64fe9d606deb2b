//! A connection's transport: incoming byte chunks split into packets, and
//! outgoing packets written one per frame, each write bounded in time.

use std::error::Error as StdError;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio_util::codec::Decoder;

use crate::model::Flags;
use crate::wire::codec::WireCodec;
use crate::wire::packet::{Packet, PacketType};
use crate::wire::server::WireConfig;
use crate::wire::WireError;

pub(super) type BoxError = Box<dyn StdError + Send + Sync>;

/// What the reader found in the incoming bytes.
// Short-lived, one per packet: boxing the packet would only add an
// allocation.
#[allow(clippy::large_enum_variant)]
pub(super) enum Inbound {
    /// A whole packet.
    Packet(Packet),
    /// A SEND over `max_frame` (but within `max_discard`), read past.
    TooLarge {
        /// The SEND's header flags and client seq, to answer it.
        flags: Flags,
        client_seq: u32,
    },
}

/// Buffers incoming chunks and splits them into packets, one at a time:
/// what is not yet asked for stays in the buffer, undecoded.
///
/// It holds at most the chunk being read (taken over without a copy when
/// nothing else is buffered) and, when a packet spans chunks, that packet's
/// bytes so far (at most a frame) with the next chunk; once what it holds
/// is all read, it holds nothing.
pub(super) struct PacketReader {
    codec: WireCodec,
    buf: BytesMut,
    max_discard: usize,
    /// An oversized SEND being read past: bytes still to drop, its header
    /// flags and seq.
    discarding: Option<(usize, Flags, u32)>,
    /// Nothing whole is buffered: [`PacketReader::buffered`] found nothing
    /// since the last chunk came.
    starved: bool,
    /// `buf` is a chunk taken over whole: its allocation is the chunk's,
    /// however little of it is left unread.
    adopted: bool,
}

impl PacketReader {
    pub(super) fn new(config: &WireConfig) -> Self {
        PacketReader {
            codec: WireCodec::new(config.max_frame),
            buf: BytesMut::new(),
            max_discard: config.max_discard,
            discarding: None,
            starved: true,
            adopted: false,
        }
    }

    /// Reads what follows as protocol `version` lays it out (once the
    /// login has settled the session's version).
    pub(super) fn set_version(&mut self, version: u8) {
        self.codec = self.codec.with_version(version);
    }

    /// Whether a packet may be buffered whole: `false` once
    /// [`PacketReader::buffered`] has found nothing, until the next chunk.
    pub(super) fn ready(&self) -> bool {
        !self.starved
    }

    /// What is already buffered, if anything whole.
    pub(super) fn buffered(&mut self) -> Result<Option<Inbound>, WireError> {
        let found = self.decode();
        if !matches!(found, Ok(Some(_))) {
            self.starved = true;
            self.release();
        }
        found
    }

    /// Lets go of the memory of chunks already read: an empty buffer holds
    /// nothing, and the start of a packet left at the end of a chunk taken
    /// over is copied out of it, so that the chunk is freed.
    fn release(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
            self.adopted = false;
        } else if self.adopted {
            self.buf = BytesMut::from(&self.buf[..]);
            self.adopted = false;
        }
    }

    fn decode(&mut self) -> Result<Option<Inbound>, WireError> {
        if let Some((left, flags, client_seq)) = self.discarding {
            let n = left.min(self.buf.len());
            self.buf.advance(n);
            if left > n {
                self.discarding = Some((left - n, flags, client_seq));
                return Ok(None);
            }
            self.discarding = None;
            return Ok(Some(Inbound::TooLarge { flags, client_seq }));
        }
        match self.codec.decode(&mut self.buf) {
            Ok(packet) => Ok(packet.map(Inbound::Packet)),
            Err(WireError::Oversized { len, .. })
                if self.buf[0] >> 4 == PacketType::Send.as_u8() && len <= self.max_discard =>
            {
                // Header, remaining length (already checked to end within
                // four bytes), the setting byte, then the client seq.
                let length_bytes = self.buf[1..].iter().take_while(|b| *b & 0x80 != 0).count() + 1;
                let seq_at = 1 + length_bytes + 1;
                let Some(seq) = self.buf.get(seq_at..seq_at + 4) else {
                    return Ok(None); // wait for the seq
                };
                let client_seq = u32::from_be_bytes([seq[0], seq[1], seq[2], seq[3]]);
                let flags = Flags::from_bits(self.buf[0]);
                self.discarding = Some((1 + length_bytes + len, flags, client_seq));
                self.decode()
            }
            Err(e) => Err(e),
        }
    }

    /// Adds a chunk to what is buffered.
    pub(super) fn push(&mut self, chunk: Bytes) {
        self.starved = false;
        if let Some((left, _, _)) = self.discarding {
            if self.buf.is_empty() && chunk.len() <= left {
                // Dropped without being copied.
                self.discarding = self
                    .discarding
                    .map(|(l, flags, seq)| (l - chunk.len(), flags, seq));
                return;
            }
        }
        if self.buf.is_empty() {
            // Taken over, without a copy when no one else holds it.
            self.buf = BytesMut::from(chunk);
            self.adopted = true;
        } else {
            self.buf.extend_from_slice(&chunk);
        }
    }

    /// The next packet, reading chunks as needed; `None` when the stream
    /// ends.
    pub(super) async fn next<I, E>(
        &mut self,
        incoming: &mut I,
    ) -> Result<Option<Inbound>, WireError>
    where
        I: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<BoxError>,
    {
        loop {
            if let Some(inbound) = self.buffered()? {
                return Ok(Some(inbound));
            }
            match incoming.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(WireError::Transport(e.into())),
                Some(Ok(chunk)) => self.push(chunk),
            }
        }
    }
}

/// The outgoing side: one packet per frame, each laid out as the session's
/// protocol version says, each write bounded in time.
pub(super) struct Out<'o, O> {
    pub(super) sink: &'o mut O,
    pub(super) timeout: Duration,
    /// The protocol version every packet is written at.
    pub(super) version: u8,
}

impl<O> Out<'_, O>
where
    O: Sink<Bytes> + Unpin,
    O::Error: Into<BoxError>,
{
    /// Writes one packet as one frame, and flushes.
    pub(super) async fn send(&mut self, packet: &Packet) -> Result<(), WireError> {
        let frame = packet.to_bytes_at(self.version)?;
        bounded(self.timeout, self.sink.send(frame)).await
    }

    /// Writes packets, one frame each, and flushes once: several frames
    /// in one write to the transport.
    pub(super) async fn send_all(
        &mut self,
        packets: impl IntoIterator<Item = Packet>,
    ) -> Result<(), WireError> {
        for packet in packets {
            let frame = packet.to_bytes_at(self.version)?;
            bounded(self.timeout, self.sink.feed(frame)).await?;
        }
        bounded(self.timeout, self.sink.flush()).await
    }

    /// Closes the transport, giving up after the write timeout.
    pub(super) async fn close(&mut self) {
        let _ = tokio::time::timeout(self.timeout, self.sink.close()).await;
    }
}

/// A write that must finish within `timeout`.
async fn bounded<F, T, E>(timeout: Duration, write: F) -> Result<T, WireError>
where
    F: std::future::Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    match tokio::time::timeout(timeout, write).await {
        Ok(done) => done.map_err(|e| WireError::Transport(e.into())),
        Err(_) => Err(WireError::WriteTimeout),
    }
}
