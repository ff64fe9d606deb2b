//! Helpers shared by the `wire_codec_*` tests: byte layouts written
//! independently of the crate (remaining lengths, strings, frames), feeding
//! a codec in chunks, and the cipher known answers' secret and salt.

// Each test file uses a part of this.
#![allow(dead_code)]

use bytes::BytesMut;
use imcore::wire::{Packet, WireCodec, WireError};
use proptest::sample::Index;
use tokio_util::codec::Decoder;

pub const MAX: usize = 1 << 20;

pub fn encode(p: &Packet) -> Vec<u8> {
    let mut buf = BytesMut::new();
    p.encode(&mut buf).expect("the packet encodes");
    buf.to_vec()
}

/// MQTT-style remaining length, written here independently of the crate.
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let digit = (n % 128) as u8;
        n /= 128;
        if n == 0 {
            out.push(digit);
            return out;
        }
        out.push(digit | 0x80);
    }
}

/// Reads the remaining length after the header byte of an encoded packet
/// (independently of the crate): the header's length (type byte and
/// varint) and the declared body length.
pub fn read_length(buf: &[u8]) -> (usize, usize) {
    let mut len = 0usize;
    for (i, &b) in buf[1..].iter().take(4).enumerate() {
        len |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return (i + 2, len);
        }
    }
    panic!("no varint in {buf:?}");
}

/// A u16 BE length and the UTF-8 bytes, as the JS `Encoder.writeString`.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Header byte, remaining length and body.
pub fn frame(header: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![header];
    out.extend(varint(body.len()));
    out.extend_from_slice(body);
    out
}

/// The errors decoding may give (the others belong to the cipher, the
/// encoder or the server).
pub fn is_decode_error(e: &WireError) -> bool {
    matches!(
        e,
        WireError::Incomplete
            | WireError::Truncated
            | WireError::Oversized { .. }
            | WireError::UnknownType(_)
            | WireError::BadLength
            | WireError::InvalidUtf8(_)
            | WireError::TrailingBytes(_)
    )
}

/// Feeds `bytes` to a fresh codec in chunks cut at `cuts`, decoding after
/// each chunk until the codec wants more. Returns the packets and what is
/// left in the buffer, or the first error.
pub fn feed_in_chunks(
    max_frame: usize,
    bytes: &[u8],
    cuts: &[Index],
) -> Result<(Vec<Packet>, BytesMut), WireError> {
    let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points.dedup();

    let mut codec = WireCodec::new(max_frame);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for w in points.windows(2) {
        buf.extend_from_slice(&bytes[w[0]..w[1]]);
        loop {
            let before = buf.len();
            match codec.decode(&mut buf)? {
                Some(p) => {
                    assert!(buf.len() < before, "a decoded packet consumed no bytes");
                    out.push(p);
                }
                None => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    break;
                }
            }
        }
    }
    Ok((out, buf))
}

/// The shared secret used by the cipher known answers: bytes 1 to 32.
pub fn kat_secret() -> Vec<u8> {
    (1..=32).collect()
}

pub const KAT_SALT: &str = "abcdefghijklmnop";
