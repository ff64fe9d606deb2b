//! The byte level of packets: a frame's length, and reading and writing
//! the fields of a body (big-endian integers, `u16`-length strings).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::wire::packet::PacketType;
use crate::wire::WireError;

/// The length of the packet at the start of `src` (header, length and
/// body), `None` when `src` does not hold all of it yet. A declared body
/// longer than `max_frame` is refused as soon as its length is read, so a
/// peer cannot make the reader wait for (or buffer) more.
pub fn frame_len(src: &[u8], max_frame: usize) -> Result<Option<usize>, WireError> {
    let Some(&header) = src.first() else {
        return Ok(None);
    };
    let kind = PacketType::from_u8(header >> 4).ok_or(WireError::UnknownType(header >> 4))?;
    if matches!(kind, PacketType::Ping | PacketType::Pong) {
        return Ok(Some(1));
    }
    let mut len = 0usize;
    for (i, &b) in src[1..].iter().take(4).enumerate() {
        len |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            if len > max_frame {
                return Err(WireError::Oversized {
                    len,
                    max: max_frame,
                });
            }
            let total = 1 + (i + 1) + len;
            return Ok((src.len() >= total).then_some(total));
        }
    }
    if src.len() >= 5 {
        Err(WireError::BadLength)
    } else {
        Ok(None)
    }
}

pub(super) fn put_varint(dst: &mut BytesMut, mut len: usize) {
    loop {
        let digit = (len & 0x7F) as u8;
        len >>= 7;
        if len == 0 {
            dst.put_u8(digit);
            return;
        }
        dst.put_u8(digit | 0x80);
    }
}

/// Reads fields from a whole frame; every read checks what is left.
pub(super) struct Reader(pub(super) Bytes);

impl Reader {
    pub(super) fn need(&self, n: usize) -> Result<(), WireError> {
        if self.0.remaining() < n {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    pub(super) fn u8(&mut self) -> Result<u8, WireError> {
        self.need(1)?;
        Ok(self.0.get_u8())
    }

    pub(super) fn u32(&mut self) -> Result<u32, WireError> {
        self.need(4)?;
        Ok(self.0.get_u32())
    }

    pub(super) fn i64(&mut self) -> Result<i64, WireError> {
        self.need(8)?;
        Ok(self.0.get_i64())
    }

    pub(super) fn u64(&mut self) -> Result<u64, WireError> {
        self.need(8)?;
        Ok(self.0.get_u64())
    }

    /// Skips the remaining length (already checked by [`frame_len`]).
    pub(super) fn varint(&mut self) -> Result<(), WireError> {
        for _ in 0..4 {
            if self.u8()? & 0x80 == 0 {
                return Ok(());
            }
        }
        Err(WireError::BadLength)
    }

    pub(super) fn string(&mut self, field: &'static str) -> Result<String, WireError> {
        self.need(2)?;
        let len = usize::from(self.0.get_u16());
        self.need(len)?;
        let raw = self.0.split_to(len);
        String::from_utf8(raw.to_vec()).map_err(|_| WireError::InvalidUtf8(field))
    }

    pub(super) fn rest(&mut self) -> Bytes {
        self.0.split_to(self.0.len())
    }

    pub(super) fn end(&self) -> Result<(), WireError> {
        match self.0.remaining() {
            0 => Ok(()),
            extra => Err(WireError::TrailingBytes(extra)),
        }
    }
}

pub(super) struct Writer<'a>(pub(super) &'a mut BytesMut);

impl Writer<'_> {
    pub(super) fn u8(&mut self, v: u8) {
        self.0.put_u8(v);
    }

    pub(super) fn u32(&mut self, v: u32) {
        self.0.put_u32(v);
    }

    pub(super) fn i64(&mut self, v: i64) {
        self.0.put_i64(v);
    }

    pub(super) fn u64(&mut self, v: u64) {
        self.0.put_u64(v);
    }

    pub(super) fn bytes(&mut self, v: &[u8]) {
        self.0.put_slice(v);
    }

    pub(super) fn string(&mut self, s: &str) -> Result<(), WireError> {
        let len = u16::try_from(s.len()).map_err(|_| WireError::StringTooLong(s.len()))?;
        self.0.put_u16(len);
        self.0.put_slice(s.as_bytes());
        Ok(())
    }

    /// A string that is present exactly when its setting bit is set.
    pub(super) fn optional(
        &mut self,
        flagged: bool,
        value: Option<&str>,
        field: &'static str,
    ) -> Result<(), WireError> {
        match (flagged, value) {
            (true, Some(s)) => self.string(s),
            (false, None) => Ok(()),
            _ => Err(WireError::Inconsistent(field)),
        }
    }
}
