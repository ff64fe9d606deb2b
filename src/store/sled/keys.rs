//! Key and value encoding: big-endian composite keys, so that a prefix
//! scan of one channel (or one user) comes out in seq (or cursor) order,
//! and values as a format byte followed by postcard.

use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::TransactionalTree;

use super::{abort, unabortable, TxResult, BACKEND};
use crate::error::{Error, Result};
use crate::model::{Channel, ChannelId, ChannelType, ClientMsgNo, Message, MessageId, Uid};

/// First byte of every encoded value.
pub(super) const VALUE_FORMAT: u8 = 1;

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

/// The first byte of a command's resend key in the `command_dedup` tree:
/// above any uid length (1 to 64) and the id keys' 0, so that the kinds
/// never collide (format 3's keys started with the uid length).
pub(super) const COMMAND_SENDER: u8 = 0x80;

/// A command's resend key: sender, channel, the sender's number.
pub(super) fn command_sender_key(m: &Message) -> Vec<u8> {
    key(|k| {
        k.push(COMMAND_SENDER);
        sender_key(k, &m.from_uid, &m.channel, &m.client_msg_no);
    })
}

fn sender_key(k: &mut Vec<u8>, from_uid: &Uid, channel: &Channel, client_msg_no: &ClientMsgNo) {
    uid_key(k, from_uid);
    channel_key(k, channel);
    k.extend_from_slice(client_msg_no.as_str().as_bytes());
}

// ---- the `log` tree (records) and the `history` tree (everything else);
// each kind of entry has its own first byte ----

/// `m` ++ channel ++ seq: a message record.
const LOG: u8 = b'm';
/// `i` ++ message id: the record's key.
const BY_ID: u8 = b'i';
/// `r` ++ from uid ++ channel ++ client_msg_no: message id ++ the
/// record's key.
const BY_SENDER: u8 = b'r';
/// Format 3's resend index: `d` ++ from uid ++ client_msg_no (no channel);
/// opening a format-3 database moves it to `r`.
pub(super) const OLD_BY_SENDER: u8 = b'd';
/// `o` ++ entry number: an outbox entry (message id ++ the record's key).
const OUTBOX: u8 = b'o';
/// `b` ++ batch number: a batch claimed from the outbox (lease end ++ its
/// entry numbers, 8 bytes each, big-endian).
const OUTBOX_BATCH: u8 = b'b';
/// `p` ++ uid ++ channel: the user's read position.
const POSITION: u8 = b'p';
/// `c` ++ uid ++ channel: (empty) a person channel of the user.
const PERSON: u8 = b'c';
/// `h` ++ uid ++ channel: the seq the user's conversation is hidden up to.
const HIDDEN: u8 = b'h';
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

/// The first byte of every outbox entry's key.
pub(super) const OUTBOX_PREFIX: [u8; 1] = [OUTBOX];

/// Outbox entry `n`'s key.
pub(super) fn outbox_key(n: u64) -> [u8; 9] {
    let mut k = [OUTBOX; 9];
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

/// The first byte of every outbox batch's key.
pub(super) const OUTBOX_BATCH_PREFIX: [u8; 1] = [OUTBOX_BATCH];

/// Outbox batch `n`'s key.
pub(super) fn outbox_batch_key(n: u64) -> [u8; 9] {
    let mut k = [OUTBOX_BATCH; 9];
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

pub(super) fn id_key(id: MessageId) -> [u8; 9] {
    let mut k = [BY_ID; 9];
    k[1..].copy_from_slice(&id.0.to_be_bytes());
    k
}

pub(super) fn by_sender_key(
    from_uid: &Uid,
    channel: &Channel,
    client_msg_no: &ClientMsgNo,
) -> Vec<u8> {
    key(|k| {
        k.push(BY_SENDER);
        sender_key(k, from_uid, channel, client_msg_no);
    })
}

/// [`by_sender_key`] from a record's stored parts: the sender's uid and
/// number as stored, and the channel's key (a log prefix without its
/// first byte).
pub(super) fn by_sender_key_raw(from_uid: &[u8], channel: &[u8], client_msg_no: &[u8]) -> Vec<u8> {
    key(|k| {
        k.push(BY_SENDER);
        // Stored uids are at most MAX_ID_LEN (64) bytes.
        k.push(from_uid.len() as u8);
        k.extend_from_slice(from_uid);
        k.extend_from_slice(channel);
        k.extend_from_slice(client_msg_no);
    })
}

/// `t` ++ deletion time ++ channel ++ floor: one retention batch's resend
/// tombstones (their resend keys, each length-prefixed), for purging by
/// time.
const TOMBSTONES: u8 = b't';

/// The first byte of every tombstone batch's key.
pub(super) const TOMBSTONES_PREFIX: [u8; 1] = [TOMBSTONES];

/// The key of a retention batch's tombstones: deleted at `at_ms` from the
/// channel of `log_prefix`, up to `floor`.
pub(super) fn tombstones_key(at_ms: i64, log_prefix: &[u8], floor: u64) -> Vec<u8> {
    key(|k| {
        k.push(TOMBSTONES);
        // Times before the epoch sort first, as zero.
        k.extend_from_slice(&u64::try_from(at_ms).unwrap_or(0).to_be_bytes());
        k.extend_from_slice(&log_prefix[1..]);
        k.extend_from_slice(&floor.to_be_bytes());
    })
}

/// The first key of tombstone batches deleted at `at_ms` or later.
pub(super) fn tombstones_from(at_ms: i64) -> Vec<u8> {
    key(|k| {
        k.push(TOMBSTONES);
        k.extend_from_slice(&u64::try_from(at_ms).unwrap_or(0).to_be_bytes());
    })
}

/// The prefix of a user's entries of one kind (`POSITION`, `PERSON` or
/// `HIDDEN`).
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

/// The prefix of `uid`'s hidden conversations.
pub(super) fn hidden_prefix(uid: &Uid) -> Vec<u8> {
    user_prefix(HIDDEN, uid)
}

/// Where `uid`'s hidden mark for a channel (given by its log prefix) is.
pub(super) fn hidden_key(uid: &Uid, log_prefix: &[u8]) -> Vec<u8> {
    let mut k = hidden_prefix(uid);
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

// ---- the `changed` tree: what changed after a version ----

/// `h` ++ version: (the log prefix of) the channel whose head is at it.
const HEAD_AT: u8 = b'h';
/// `p` ++ uid ++ version: (the log prefix of) the channel in which a clear
/// or a hide moved the user's read position to it.
const MOVED_AT: u8 = b'p';
/// `q` ++ uid ++ channel: the version of the user's `p` entry for it.
const MOVED_OF: u8 = b'q';

/// The key of the channel whose head is at `version`.
pub(super) fn head_at_key(version: u64) -> [u8; 9] {
    let mut k = [HEAD_AT; 9];
    k[1..].copy_from_slice(&version.to_be_bytes());
    k
}

/// The key of the channel in which `uid`'s position was moved to
/// `version`.
pub(super) fn moved_at_key(uid: &Uid, version: u64) -> Vec<u8> {
    let mut k = user_prefix(MOVED_AT, uid);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// Where the version of `uid`'s `p` entry for a channel (given by its log
/// prefix) is.
pub(super) fn moved_of_key(uid: &Uid, log_prefix: &[u8]) -> Vec<u8> {
    let mut k = user_prefix(MOVED_OF, uid);
    k.extend_from_slice(&log_prefix[1..]);
    k
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
        type Position = crate::store::ReadPosition;
        assert!(matches!(
            decode::<Position>(&[], "p"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            decode::<Position>(&[VALUE_FORMAT, 0xff, 0xff], "p"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            decode::<Position>(&[9, 1, 2], "p"),
            Err(Error::Corrupt { .. })
        ));
        assert!(be_u64(&[1, 2, 3], "x").is_err());
    }
}
