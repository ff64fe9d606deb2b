//! Message records, as the `log` tree stores them, and reading pages of
//! them.
//!
//! A record's channel and seq are in its key. Its value is a fixed header
//! and then the variable parts, so that reading one costs a few loads
//! rather than a decoder's walk (history pages read a hundred at a time):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | format ([`RECORD_FORMAT`]) |
//! | 8 | message id, big-endian |
//! | 8 | timestamp (ms), big-endian |
//! | 1 | flags ([`Flags::bits`]) |
//! | 8 | the channel's red-dot count up to this message |
//! | 8 | the store version of the append |
//! | 1 | sender uid length |
//! | 1 | client_msg_no length |
//! | 1 | setting ([`Setting::stored`]) |
//! | 1 | topic length (0: none) |
//! | … | sender uid, client_msg_no, topic, payload |
//!
//! Records of format 2 (written before messages kept a setting and a
//! topic) are the same without the setting and topic bytes, and are read
//! as messages with neither.
//!
//! The red-dot count and the version make the last record of a channel its
//! head.

use bytes::{Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::model::{Channel, ClientMsgNo, Flags, Message, MessageId, Setting, Uid};
use crate::store::HistoryMessage;

/// First byte of a record.
const RECORD_FORMAT: u8 = 3;
/// The format before setting and topic, still read.
const RECORD_FORMAT_2: u8 = 2;
/// Bytes before the variable parts.
const HEADER: usize = 38;
/// Bytes before the variable parts in format 2.
const HEADER_2: usize = 36;

/// Whether a stored record is of the current format, which only code that
/// keeps a message's setting and topic writes.
pub(super) fn keeps_setting(value: &[u8]) -> bool {
    value.first() == Some(&RECORD_FORMAT)
}

/// Encodes `m` as a record with the channel's red-dot count up to it and
/// its version.
pub(super) fn encode(m: &Message, red_dots: u64, version: u64) -> Result<Vec<u8>> {
    let (uid, no) = (m.from_uid.as_str(), m.client_msg_no.as_str());
    let topic = m.topic.as_deref().unwrap_or("");
    let too_long = |what| Error::corrupt(format!("a {what} too long to store"));
    let uid_len = u8::try_from(uid.len()).map_err(|_| too_long("uid"))?;
    let no_len = u8::try_from(no.len()).map_err(|_| too_long("client_msg_no"))?;
    let topic_len = u8::try_from(topic.len()).map_err(|_| too_long("topic"))?;
    let mut out = Vec::with_capacity(HEADER + uid.len() + no.len() + topic.len() + m.payload.len());
    out.push(RECORD_FORMAT);
    out.extend_from_slice(&m.message_id.0.to_be_bytes());
    out.extend_from_slice(&m.timestamp_ms.to_be_bytes());
    out.push(m.flags.bits());
    out.extend_from_slice(&red_dots.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&[uid_len, no_len, m.setting.stored().0, topic_len]);
    out.extend_from_slice(uid.as_bytes());
    out.extend_from_slice(no.as_bytes());
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(&m.payload);
    Ok(out)
}

/// A record read in place.
pub(super) struct RecordRef<'a> {
    pub(super) message_id: MessageId,
    pub(super) timestamp_ms: i64,
    pub(super) flags: Flags,
    pub(super) red_dots: u64,
    pub(super) version: u64,
    pub(super) setting: Setting,
    /// UTF-8 when the record is sound; checked where it becomes a `Uid`.
    from_uid: &'a [u8],
    client_msg_no: &'a [u8],
    /// Empty: no topic.
    topic: &'a [u8],
    pub(super) payload: &'a [u8],
}

fn be8(b: &[u8], at: usize) -> [u8; 8] {
    let mut out = [0; 8];
    out.copy_from_slice(&b[at..at + 8]);
    out
}

impl<'a> RecordRef<'a> {
    /// Reads a stored record; damage is [`Error::Corrupt`], never a panic.
    pub(super) fn parse(value: &'a [u8]) -> Result<Self> {
        let corrupt = || Error::corrupt("message record: malformed");
        let (header, setting, topic_len) = match value.first() {
            Some(&RECORD_FORMAT) if value.len() >= HEADER => {
                (HEADER, Setting(value[36]), usize::from(value[37]))
            }
            Some(&RECORD_FORMAT_2) if value.len() >= HEADER_2 => (HEADER_2, Setting(0), 0),
            _ => return Err(corrupt()),
        };
        let (uid_len, no_len) = (usize::from(value[34]), usize::from(value[35]));
        let rest = &value[header..];
        if rest.len() < uid_len + no_len + topic_len {
            return Err(corrupt());
        }
        let (from_uid, rest) = rest.split_at(uid_len);
        let (client_msg_no, rest) = rest.split_at(no_len);
        let (topic, payload) = rest.split_at(topic_len);
        Ok(RecordRef {
            message_id: MessageId(u64::from_be_bytes(be8(value, 1))),
            timestamp_ms: i64::from_be_bytes(be8(value, 9)),
            flags: Flags::from_bits(value[17]),
            red_dots: u64::from_be_bytes(be8(value, 18)),
            version: u64::from_be_bytes(be8(value, 26)),
            setting,
            from_uid,
            client_msg_no,
            topic,
            payload,
        })
    }

    /// The sender and its number as stored, for the resend index's key.
    pub(super) fn resend_parts(&self) -> (&'a [u8], &'a [u8]) {
        (self.from_uid, self.client_msg_no)
    }

    /// The topic, as stored.
    pub(super) fn topic(&self) -> Result<Option<String>> {
        match self.topic {
            [] => Ok(None),
            topic => Ok(Some(utf8(topic)?.to_owned())),
        }
    }

    /// The sender, as stored (validated when it was stored).
    pub(super) fn sender(&self) -> Result<Uid> {
        Ok(Uid::from_stored(utf8(self.from_uid)?))
    }

    /// The message it holds, at `seq` in `channel`, copied out of it.
    pub(super) fn to_message(&self, channel: Channel, seq: u64) -> Result<Message> {
        Ok(Message {
            message_id: self.message_id,
            message_seq: seq,
            client_msg_no: ClientMsgNo::from_stored(utf8(self.client_msg_no)?),
            from_uid: self.sender()?,
            channel,
            timestamp_ms: self.timestamp_ms,
            flags: self.flags,
            setting: self.setting,
            topic: self.topic()?,
            payload: Bytes::copy_from_slice(self.payload),
        })
    }
}

fn utf8(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes)
        .map_err(|_| Error::corrupt("message record: an id or topic is not UTF-8"))
}

/// Reads the messages of one page: ids are not validated again (the crate
/// validated them before storing), and a sender repeated from the message
/// before shares its id. The page's client message numbers and payloads
/// are copied into one buffer that its messages share (each part split off
/// it): no allocation per message, and sled's node buffers are not held by
/// what the caller keeps.
pub(super) struct PageReader<T = Message> {
    channel: Channel,
    buf: BytesMut,
    messages: Vec<T>,
}

/// What a page is made of: messages, or history messages (built in place,
/// not wrapped afterwards, which would copy the page).
pub(super) trait PageItem {
    fn wrap(message: Message) -> Self;
    fn message(&self) -> &Message;
}

impl PageItem for Message {
    fn wrap(message: Message) -> Self {
        message
    }
    fn message(&self) -> &Message {
        self
    }
}

impl PageItem for HistoryMessage {
    fn wrap(message: Message) -> Self {
        HistoryMessage {
            message,
            revoked: None,
            events: Vec::new(),
            extra: None,
        }
    }
    fn message(&self) -> &Message {
        &self.message
    }
}

impl<T: PageItem> PageReader<T> {
    /// A page of up to about `capacity` messages of `channel`.
    pub(super) fn new(channel: Channel, capacity: usize) -> Self {
        PageReader {
            channel,
            buf: BytesMut::with_capacity(capacity * 256),
            messages: Vec::with_capacity(capacity),
        }
    }

    /// Adds the message stored as `value` at `seq`.
    pub(super) fn push(&mut self, seq: u64, value: &[u8]) -> Result<()> {
        let r = RecordRef::parse(value)?;
        let from_uid = match self.messages.last().map(T::message) {
            Some(last) if last.from_uid.as_str().as_bytes() == r.from_uid => last.from_uid.clone(),
            _ => r.sender()?,
        };
        self.buf.extend_from_slice(r.client_msg_no);
        let client_msg_no = ClientMsgNo::from_stored_bytes(self.buf.split().freeze())
            .ok_or_else(|| Error::corrupt("message record: a client_msg_no is not UTF-8"))?;
        self.buf.extend_from_slice(r.payload);
        self.messages.push(T::wrap(Message {
            message_id: r.message_id,
            message_seq: seq,
            client_msg_no,
            from_uid,
            channel: self.channel.clone(),
            timestamp_ms: r.timestamp_ms,
            flags: r.flags,
            setting: r.setting,
            topic: r.topic()?,
            payload: self.buf.split().freeze(),
        }));
        Ok(())
    }

    /// The page's messages, in the order they were added.
    pub(super) fn finish(self) -> Vec<T> {
        self.messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        Message {
            message_id: MessageId(u64::MAX - 7),
            message_seq: 0,
            client_msg_no: ClientMsgNo::new("no-1").unwrap(),
            from_uid: Uid::new("alice").unwrap(),
            channel: Channel::group("g").unwrap(),
            timestamp_ms: -5,
            flags: Flags::from_bits(0b1010),
            setting: Setting(Setting::RECEIPT),
            topic: Some("news".into()),
            payload: Bytes::from_static(b"hello"),
        }
    }

    #[test]
    fn format_2_records_read_as_messages_without_setting_or_topic() {
        let m = sample();
        let v3 = encode(&m, 3, 9).unwrap();
        // Format 2: the same header without the setting and topic bytes,
        // and no topic among the variable parts.
        let mut v2 = vec![RECORD_FORMAT_2];
        v2.extend_from_slice(&v3[1..HEADER_2]);
        v2.extend_from_slice(b"alice");
        v2.extend_from_slice(b"no-1");
        v2.extend_from_slice(b"hello");
        let read = RecordRef::parse(&v2)
            .unwrap()
            .to_message(m.channel.clone(), 4)
            .unwrap();
        let expected = Message {
            message_seq: 4,
            setting: Setting(0),
            topic: None,
            ..m
        };
        assert_eq!(read, expected);
    }

    #[test]
    fn records_round_trip_through_a_page() {
        let m = sample();
        let value = encode(&m, 3, 9).unwrap();
        let mut page = PageReader::<Message>::new(m.channel.clone(), 2);
        page.push(4, &value).unwrap();
        page.push(5, &value).unwrap();
        let read = page.finish();
        assert_eq!(read.len(), 2);
        assert_eq!(read[1].message_seq, 5);
        assert_eq!(
            Message {
                message_seq: 0,
                ..read[0].clone()
            },
            m
        );
        let r = RecordRef::parse(&value).unwrap();
        assert_eq!((r.red_dots, r.version), (3, 9));
    }

    #[test]
    fn damaged_records_are_corrupt_not_panics() {
        let value = encode(&sample(), 0, 1).unwrap();
        for len in 0..value.len() {
            // Cut anywhere in the header or the ids: refused.
            let cut = &value[..len];
            if len < HEADER + 5 + 4 + 4 {
                assert!(RecordRef::parse(cut).is_err(), "{len}");
            }
        }
        let mut bad = value.clone();
        bad[0] = 9;
        assert!(matches!(RecordRef::parse(&bad), Err(Error::Corrupt { .. })));
        let mut bad = value;
        bad[HEADER] = 0xff; // not UTF-8
        assert!(RecordRef::parse(&bad).unwrap().sender().is_err());
    }
}
