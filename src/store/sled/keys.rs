//! Key and value encoding: big-endian composite keys, so that a prefix
//! scan of one channel (or one user) comes out in seq (or cursor) order,
//! and values as a format byte followed by postcard.

use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::TransactionalTree;

use super::{abort, unabortable, TxResult, BACKEND};
use crate::error::{Error, Result};
use crate::model::{Channel, ChannelId, ChannelType, ClientMsgNo, MessageId, Uid};

/// First byte of every encoded value.
const VALUE_FORMAT: u8 = 1;

pub(super) fn uid_key(out: &mut Vec<u8>, uid: &Uid) {
    let s = uid.as_str().as_bytes();
    // Uids are at most MAX_ID_LEN (64) bytes.
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

pub(super) fn channel_key(out: &mut Vec<u8>, channel: &Channel) {
    let s = channel.id.as_str().as_bytes();
    out.push(channel.kind.as_u8());
    // Channel ids are at most MAX_CHANNEL_ID_LEN (129) bytes.
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

pub(super) fn key(parts: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut k = Vec::with_capacity(96);
    parts(&mut k);
    k
}

pub(super) fn decode_channel_key(bytes: &[u8]) -> Result<Channel> {
    let bad = || Error::corrupt("channel key");
    let (&kind, rest) = bytes.split_first().ok_or_else(bad)?;
    let (&len, rest) = rest.split_first().ok_or_else(bad)?;
    let id = rest.get(..usize::from(len)).ok_or_else(bad)?;
    let id = std::str::from_utf8(id).map_err(|_| bad())?;
    Ok(Channel::new(
        ChannelId::new(id).map_err(|_| bad())?,
        ChannelType::try_from(kind).map_err(|_| bad())?,
    ))
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let out = vec![VALUE_FORMAT];
    postcard::to_extend(value, out).map_err(|e| Error::Storage {
        backend: BACKEND,
        source: Box::new(e),
    })
}

pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    decode_in_place(bytes, what)
}

/// [`decode`], for a value that borrows from `bytes`.
fn decode_in_place<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T> {
    match bytes.split_first() {
        Some((&VALUE_FORMAT, rest)) => {
            postcard::from_bytes(rest).map_err(|e| Error::corrupt(format!("{what}: {e}")))
        }
        _ => Err(Error::corrupt(format!("{what}: unknown value format"))),
    }
}

pub(super) fn be_u64(bytes: &[u8], what: &str) -> Result<u64> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::corrupt(format!("{what}: expected 8 bytes")))?;
    Ok(u64::from_be_bytes(arr))
}

/// The u64 at the end of a key.
pub(super) fn key_suffix_u64(key: &[u8], what: &str) -> Result<u64> {
    let start = key
        .len()
        .checked_sub(8)
        .ok_or_else(|| Error::corrupt(format!("{what}: key too short")))?;
    be_u64(&key[start..], what)
}

/// Reads a counter inside a transaction, adds one, writes it back.
pub(super) fn next_counter(counters: &TransactionalTree, key: &[u8]) -> TxResult<u64> {
    let current = match counters.get(key).map_err(unabortable)? {
        Some(v) => match be_u64(&v, "counter") {
            Ok(n) => n,
            Err(e) => return abort(e),
        },
        None => 0,
    };
    let next = current + 1;
    counters
        .insert(key, &next.to_be_bytes())
        .map_err(unabortable)?;
    Ok(next)
}

pub(super) fn counter_key(tag: u8, rest: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    key(|k| {
        k.push(tag);
        rest(k);
    })
}

pub(super) fn seq_key(prefix: &[u8], n: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// Marks a command id in the `command_dedup` tree. Sender keys start with a
/// uid length of 1 to 64; this starts with 0, so the two never collide.
pub(super) fn command_id_key(id: MessageId) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[1..].copy_from_slice(&id.0.to_be_bytes());
    k
}

pub(super) fn sender_key(from_uid: &Uid, client_msg_no: &ClientMsgNo) -> Vec<u8> {
    key(|k| {
        uid_key(k, from_uid);
        k.extend_from_slice(client_msg_no.as_str().as_bytes());
    })
}

// ---- the `log` tree (records) and the `history` tree (everything else);
// each kind of entry has its own first byte ----

/// `m` ++ channel ++ seq: a message record.
const LOG: u8 = b'm';
/// `i` ++ message id: the record's key.
const BY_ID: u8 = b'i';
/// `d` ++ from uid ++ client_msg_no: message id ++ the record's key.
const BY_SENDER: u8 = b'd';
/// `p` ++ uid ++ channel: the user's read position.
const POSITION: u8 = b'p';
/// `c` ++ uid ++ channel: (empty) a person channel of the user.
const PERSON: u8 = b'c';
/// `v`: the highest conversation version reserved.
pub(super) const VERSION_KEY: &[u8] = b"v";

/// The prefix of a channel's records.
pub(super) fn log_prefix(channel: &Channel) -> Vec<u8> {
    key(|k| {
        k.push(LOG);
        channel_key(k, channel);
    })
}

/// The channel a log prefix names.
pub(super) fn channel_of_log_prefix(prefix: &[u8]) -> Result<Channel> {
    match prefix.split_first() {
        Some((&LOG, channel)) => decode_channel_key(channel),
        _ => Err(Error::corrupt("a record key outside the log")),
    }
}

pub(super) fn id_key(id: MessageId) -> [u8; 9] {
    let mut k = [BY_ID; 9];
    k[1..].copy_from_slice(&id.0.to_be_bytes());
    k
}

pub(super) fn by_sender_key(from_uid: &Uid, client_msg_no: &ClientMsgNo) -> Vec<u8> {
    let mut k = vec![BY_SENDER];
    k.extend_from_slice(&sender_key(from_uid, client_msg_no));
    k
}

/// The prefix of a user's entries of one kind (`POSITION` or `PERSON`).
fn user_prefix(kind: u8, uid: &Uid) -> Vec<u8> {
    key(|k| {
        k.push(kind);
        uid_key(k, uid);
    })
}

/// Where `uid`'s read position in a channel (given by its log prefix) is.
pub(super) fn position_key(uid: &Uid, log_prefix: &[u8]) -> Vec<u8> {
    let mut k = user_prefix(POSITION, uid);
    k.extend_from_slice(&log_prefix[1..]);
    k
}

/// The prefix of `uid`'s person channel entries.
pub(super) fn persons_prefix(uid: &Uid) -> Vec<u8> {
    user_prefix(PERSON, uid)
}

/// `uid`'s entry for a person channel (given by its log prefix).
pub(super) fn person_key(uid: &Uid, log_prefix: &[u8]) -> Vec<u8> {
    let mut k = persons_prefix(uid);
    k.extend_from_slice(&log_prefix[1..]);
    k
}

/// A message as the log stores it: its channel and seq are in its key; the
/// channel's running red-dot count and the store version of the append
/// come with it, so that the last record of a channel is its head.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Record {
    pub(super) message_id: MessageId,
    pub(super) client_msg_no: ClientMsgNo,
    pub(super) from_uid: Uid,
    pub(super) timestamp_ms: i64,
    pub(super) flags: crate::model::Flags,
    pub(super) red_dots: u64,
    pub(super) version: u64,
    /// Last, so that everything before it is small to skip.
    pub(super) payload: bytes::Bytes,
}

/// A record read in place: ids and payload borrowed from the stored value.
#[derive(serde::Deserialize)]
struct RecordRef<'a> {
    message_id: MessageId,
    client_msg_no: &'a str,
    from_uid: &'a str,
    timestamp_ms: i64,
    flags: crate::model::Flags,
    red_dots: u64,
    version: u64,
    payload: &'a [u8],
}

/// What a channel's last record says of the channel: read in place,
/// without copying the record's ids or payload.
pub(super) struct Tail {
    pub(super) message_id: MessageId,
    pub(super) from_uid: Uid,
    pub(super) timestamp_ms: i64,
    pub(super) red_dots: u64,
    pub(super) version: u64,
}

impl Tail {
    pub(super) fn decode(value: &[u8]) -> Result<Self> {
        let r: RecordRef<'_> = decode_in_place(value, "message")?;
        Ok(Tail {
            message_id: r.message_id,
            from_uid: Uid::from_stored(r.from_uid),
            timestamp_ms: r.timestamp_ms,
            red_dots: r.red_dots,
            version: r.version,
        })
    }
}

/// Reads the messages of one page: ids are not validated again (the crate
/// validated them before storing), and a sender repeated from the message
/// before shares its id. The page's client message numbers and payloads
/// are copied into one buffer that its messages share: no allocation per
/// message, and sled's node buffers are not held by what the caller keeps.
pub(super) struct PageReader {
    channel: Channel,
    last_sender: Option<Uid>,
    buf: Vec<u8>,
    parts: Vec<Part>,
}

/// A message of the page, with its variable-length parts in the buffer.
struct Part {
    seq: u64,
    message_id: MessageId,
    from_uid: Uid,
    timestamp_ms: i64,
    flags: crate::model::Flags,
    client_msg_no: std::ops::Range<usize>,
    payload: std::ops::Range<usize>,
}

impl PageReader {
    /// A page of up to about `capacity` messages of `channel`.
    pub(super) fn new(channel: Channel, capacity: usize) -> Self {
        PageReader {
            channel,
            last_sender: None,
            buf: Vec::with_capacity(capacity * 256),
            parts: Vec::with_capacity(capacity),
        }
    }

    /// Adds the message stored as `value` at `seq`.
    pub(super) fn push(&mut self, seq: u64, value: &[u8]) -> Result<()> {
        let r: RecordRef<'_> = decode_in_place(value, "message")?;
        let from_uid = match &self.last_sender {
            Some(last) if last.as_str() == r.from_uid => last.clone(),
            _ => {
                let uid = Uid::from_stored(r.from_uid);
                self.last_sender = Some(uid.clone());
                uid
            }
        };
        let mut copy = |part: &[u8]| {
            let start = self.buf.len();
            self.buf.extend_from_slice(part);
            start..self.buf.len()
        };
        let client_msg_no = copy(r.client_msg_no.as_bytes());
        let payload = copy(r.payload);
        self.parts.push(Part {
            seq,
            message_id: r.message_id,
            from_uid,
            timestamp_ms: r.timestamp_ms,
            flags: r.flags,
            client_msg_no,
            payload,
        });
        Ok(())
    }

    /// The page's messages, in the order they were added.
    pub(super) fn finish(self) -> Result<Vec<crate::model::Message>> {
        let shared = bytes::Bytes::from(self.buf);
        let channel = self.channel;
        self.parts
            .into_iter()
            .map(|p| {
                let client_msg_no =
                    ClientMsgNo::from_stored_bytes(shared.slice(p.client_msg_no))
                        .ok_or_else(|| Error::corrupt("a stored client_msg_no is not UTF-8"))?;
                Ok(crate::model::Message {
                    message_id: p.message_id,
                    message_seq: p.seq,
                    client_msg_no,
                    from_uid: p.from_uid,
                    channel: channel.clone(),
                    timestamp_ms: p.timestamp_ms,
                    flags: p.flags,
                    payload: shared.slice(p.payload),
                })
            })
            .collect()
    }
}

impl Record {
    pub(super) fn of(m: &crate::model::Message, red_dots: u64, version: u64) -> Self {
        Record {
            message_id: m.message_id,
            client_msg_no: m.client_msg_no.clone(),
            from_uid: m.from_uid.clone(),
            timestamp_ms: m.timestamp_ms,
            flags: m.flags,
            red_dots,
            version,
            payload: m.payload.clone(),
        }
    }

    pub(super) fn decode(value: &[u8]) -> Result<Self> {
        decode(value, "message")
    }

    /// The message this record holds, at `seq` in `channel`.
    pub(super) fn into_message(self, channel: Channel, seq: u64) -> crate::model::Message {
        crate::model::Message {
            message_id: self.message_id,
            message_seq: seq,
            client_msg_no: self.client_msg_no,
            from_uid: self.from_uid,
            channel,
            timestamp_ms: self.timestamp_ms,
            flags: self.flags,
            payload: self.payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_keys_round_trip_and_do_not_prefix_each_other() {
        let a = Channel::group("ab").unwrap();
        let b = Channel::group("abc").unwrap();
        let (ka, kb) = (key(|k| channel_key(k, &a)), key(|k| channel_key(k, &b)));
        assert!(!kb.starts_with(&ka));
        assert_eq!(decode_channel_key(&ka).unwrap(), a);
        assert!(decode_channel_key(&ka[..3]).is_err());
        assert!(decode_channel_key(&[0, 1, b'x']).is_err());
    }

    #[test]
    fn garbage_values_are_corrupt_not_panics() {
        assert!(matches!(
            decode::<Record>(&[], "m"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            decode::<Record>(&[VALUE_FORMAT, 0xff, 0xff], "m"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            decode::<Record>(&[9, 1, 2], "m"),
            Err(Error::Corrupt { .. })
        ));
        assert!(be_u64(&[1, 2, 3], "x").is_err());
    }
}
