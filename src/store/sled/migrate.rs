//! Bringing a database of an earlier format up to date when it opens.
//!
//! Format 4 is format 5 without the `changed` tree, which is built from
//! the channels' heads and the read positions (see `changed.rs`).
//!
//! Format 3 knew a resend by its sender and number only; format 4 knows it
//! by sender, channel and number, in the resend index of the `history`
//! tree and in the `command_dedup` tree.
//!
//! Format 3 was also written before messages kept a setting and a topic:
//! such databases have history records of format 2 (which are read as
//! they are) and queued commands encoded without the two fields, which
//! are re-encoded here.

use std::collections::HashSet;

use bytes::Bytes;
use serde::Deserialize;
use sled::{Batch, Db};

use super::keys::{
    by_sender_key, channel_of_log_prefix, command_sender_key, encode, OLD_BY_SENDER, VALUE_FORMAT,
};
use super::{record, storage};
use crate::error::{Error, Result};
use crate::model::{Channel, ClientMsgNo, Flags, Message, MessageId, Uid};

/// The formats this module brings up to date.
pub(super) const FORMAT_3: &[u8] = b"imcore-sled-3";
/// Format 4 had no `changed` tree (see `changed.rs`), which format 5 has.
pub(super) const FORMAT_4: &[u8] = b"imcore-sled-4";
/// Every format this module brings up to date, oldest first.
pub(super) const MIGRATED: [&[u8]; 2] = [FORMAT_3, FORMAT_4];

/// Builds the `changed` tree that format 4 did not have.
pub(super) fn from_format_4(db: &Db) -> Result<()> {
    let tree = |name: &str| db.open_tree(name).map_err(storage);
    let changed = tree("changed")?;
    // Left by a build that a crash cut short before the format was
    // marked: built again whole.
    changed.clear().map_err(storage)?;
    super::changed::build(
        &tree("log")?,
        &tree("floors")?,
        &tree("positions")?,
        &changed,
    )
}

/// Moves format 3's resend entries to format 4's keys. Each tree moves in
/// one atomic batch that removes the old entries as it adds the new, so a
/// crash part way leaves nothing to move twice: the next open finishes.
///
/// A command every recipient had acknowledged is no longer stored, so its
/// channel is unknown: its format-3 entry is dropped, and a resend of it
/// would be queued again. Its id stays known to `is_command`.
pub(super) fn from_format_3(db: &Db) -> Result<()> {
    let tree = |name: &str| db.open_tree(name).map_err(storage);
    let history = tree("history")?;
    let mut batch = Batch::default();
    for entry in history.scan_prefix([OLD_BY_SENDER]) {
        let (key, value) = entry.map_err(storage)?;
        let (uid, no) = old_sender(&key[1..])?;
        // The value: the message id, then its record's key (channel, seq).
        let record = value
            .get(8..value.len().saturating_sub(8))
            .ok_or_else(|| Error::corrupt("format-3 resend entry too short"))?;
        let channel = channel_of_log_prefix(record)?;
        batch.insert(by_sender_key(&uid, &channel, &no), value);
        batch.remove(key);
    }
    history.apply_batch(batch).map_err(storage)?;

    let (commands, dedup) = (tree("commands")?, tree("command_dedup")?);
    // A log with no record of the current format was written only before
    // messages kept a setting and a topic: its commands are of that time.
    let mut keeps_setting = false;
    for value in tree("log")?.iter().values() {
        if record::keeps_setting(&value.map_err(storage)?) {
            keeps_setting = true;
            break;
        }
    }
    let mut batch = Batch::default();
    let mut reencoded = Batch::default();
    let mut seen = HashSet::new();
    for entry in commands.iter() {
        let (key, value) = entry.map_err(storage)?;
        let (command, old) = queued_command(&value, keeps_setting)?;
        if old {
            reencoded.insert(key, encode(&command)?);
        }
        if seen.insert(command.message_id) {
            let mut first = command.message_id.0.to_be_bytes().to_vec();
            first.extend_from_slice(&command.payload);
            batch.insert(command_sender_key(&command), first);
        }
    }
    // Format 3's keys start with the uid's length, 1 to 64.
    for entry in dedup.iter() {
        let (key, _) = entry.map_err(storage)?;
        if matches!(key.first(), Some(1..=64)) {
            batch.remove(key);
        }
    }
    dedup.apply_batch(batch).map_err(storage)?;
    // Last: a crash before it leaves old encodings, read again next time.
    commands.apply_batch(reencoded).map_err(storage)
}

/// A queued command as format 3 encoded it before messages kept a setting
/// and a topic: [`Message`]'s fields without those two.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct CommandWithoutSetting {
    message_id: MessageId,
    message_seq: u64,
    client_msg_no: ClientMsgNo,
    from_uid: Uid,
    channel: Channel,
    timestamp_ms: i64,
    flags: Flags,
    payload: Bytes,
}

/// `value` decoded as a `T` that takes every byte of it.
fn whole<'a, T: Deserialize<'a>>(value: &'a [u8]) -> Option<T> {
    match value.split_first() {
        Some((&VALUE_FORMAT, rest)) => match postcard::take_from_bytes(rest) {
            Ok((decoded, [])) => Some(decoded),
            _ => None,
        },
        _ => None,
    }
}

/// A format-3 queued command, and whether it was in the encoding without
/// setting and topic. The two encodings share their first fields, so one
/// can be misread as the other only if it also takes every byte: the
/// encoding of the log's time is tried first (see `from_format_3`), then
/// the other, for a command queued before an upgrade across the change.
fn queued_command(value: &[u8], keeps_setting: bool) -> Result<(Message, bool)> {
    let current = || whole::<Message>(value).map(|m| (m, false));
    let old = || {
        whole::<CommandWithoutSetting>(value).map(|c| {
            let m = Message::new(
                c.message_id,
                c.client_msg_no,
                c.from_uid,
                c.channel,
                c.timestamp_ms,
                c.payload,
            );
            (m.seq(c.message_seq).flags(c.flags), true)
        })
    };
    let found = match keeps_setting {
        true => current().or_else(old),
        false => old().or_else(current),
    };
    found.ok_or_else(|| Error::corrupt("queued command: neither format-3 encoding"))
}

/// The uid and number of a format-3 resend key (after its first byte).
fn old_sender(key: &[u8]) -> Result<(Uid, ClientMsgNo)> {
    let bad = || Error::corrupt("format-3 resend key");
    let (&len, rest) = key.split_first().ok_or_else(bad)?;
    let (uid, no) = rest.split_at_checked(usize::from(len)).ok_or_else(bad)?;
    let text = |b: &[u8]| std::str::from_utf8(b).map(str::to_owned).map_err(|_| bad());
    let uid = Uid::new(text(uid)?).map_err(|_| bad())?;
    let no = ClientMsgNo::new(text(no)?).map_err(|_| bad())?;
    Ok((uid, no))
}

#[cfg(test)]
mod tests {
    use super::super::keys::COMMAND_SENDER;
    use super::super::{SledStore, FORMAT_KEY};
    use super::*;
    use crate::model::{Channel, Flags, MessageId};
    use crate::store::{CommandQueue, MessageLog};

    fn message(id: u64, channel: &Channel, no: &str, payload: &'static str) -> Message {
        let from = Uid::new("alice").unwrap();
        let no = ClientMsgNo::new(no).unwrap();
        Message::new(MessageId(id), no, from, channel.clone(), 0, payload)
    }

    /// Format 3's key for a sender's number: length-prefixed uid, number.
    fn old_key(first: Option<u8>, no: &str) -> Vec<u8> {
        let mut k: Vec<u8> = first.into_iter().collect();
        k.push(5);
        k.extend_from_slice(b"alice");
        k.extend_from_slice(no.as_bytes());
        k
    }

    /// A queued command reads in either format-3 encoding, whichever the
    /// log's time suggests, and one without setting and topic is marked
    /// for re-encoding.
    #[test]
    fn queued_commands_read_in_both_format_3_encodings() {
        let group = Channel::group("g").unwrap();
        // The second payload also decodes whole in the current encoding
        // (setting 5, no topic, "abc"): only the log's time tells.
        for (payload, hints) in [
            ("{\"cmd\":\"x\"}", &[false, true][..]),
            ("\u{0}\u{3}abc", &[false]),
        ] {
            let m = message(9, &group, "c-9", payload)
                .seq(0)
                .flags(Flags::command());
            let old = encode(&CommandWithoutSetting {
                message_id: m.message_id,
                message_seq: m.message_seq,
                client_msg_no: m.client_msg_no.clone(),
                from_uid: m.from_uid.clone(),
                channel: m.channel.clone(),
                timestamp_ms: m.timestamp_ms,
                flags: m.flags,
                payload: m.payload.clone(),
            })
            .unwrap();
            let current = encode(&m).unwrap();
            for &keeps_setting in hints {
                let read = queued_command(&old, keeps_setting).unwrap();
                assert_eq!(read, (m.clone(), true), "{payload:?}");
            }
            for keeps_setting in [false, true] {
                let read = queued_command(&current, keeps_setting).unwrap();
                assert_eq!(read, (m.clone(), false), "{payload:?}");
            }
        }
        assert!(matches!(
            queued_command(&[1, 2, 3], true),
            Err(Error::Corrupt { .. })
        ));
    }

    /// A database written with format 3's resend keys opens as format 4:
    /// a resend is a duplicate (history and queued command), a changed
    /// payload a conflict, and the same number elsewhere a new message.
    #[tokio::test]
    async fn format_3_resend_keys_move_to_format_4() {
        let dir = tempfile::tempdir().unwrap();
        let group = Channel::group("g").unwrap();
        let other = Channel::group("h").unwrap();
        let recipient = [Uid::new("bob").unwrap()];
        {
            let store = SledStore::open(dir.path()).unwrap();
            store
                .append(vec![message(1, &group, "m-1", "hi")])
                .await
                .unwrap();
            let command = message(2, &group, "c-1", "cmd").flags(Flags::command());
            store.push_command(&command, &recipient).await.unwrap();
            // Turn it into what format 3 wrote.
            let history = store.db.open_tree("history").unwrap();
            let new = by_sender_key(
                &Uid::new("alice").unwrap(),
                &group,
                &ClientMsgNo::new("m-1").unwrap(),
            );
            let value = history.remove(&new).unwrap().expect("the format-4 entry");
            history
                .insert(old_key(Some(OLD_BY_SENDER), "m-1"), value)
                .unwrap();
            let dedup = store.db.open_tree("command_dedup").unwrap();
            let new: Vec<_> = dedup.scan_prefix([COMMAND_SENDER]).keys().collect();
            assert_eq!(new.len(), 1);
            dedup.remove(new[0].as_ref().unwrap()).unwrap();
            dedup
                .insert(old_key(None, "c-1"), &2u64.to_be_bytes())
                .unwrap();
            store.db.insert(FORMAT_KEY, FORMAT_3).unwrap();
            store.db.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        let again = store
            .append(vec![message(3, &group, "m-1", "hi")])
            .await
            .unwrap();
        assert!(again[0].duplicate);
        assert_eq!(again[0].message_id, MessageId(1));
        let changed = store
            .append(vec![message(4, &group, "m-1", "changed")])
            .await;
        assert!(
            matches!(changed, Err(Error::Conflict { .. })),
            "{changed:?}"
        );
        let elsewhere = store
            .append(vec![message(5, &other, "m-1", "hi")])
            .await
            .unwrap();
        assert!(!elsewhere[0].duplicate);
        let command = message(6, &group, "c-1", "cmd").flags(Flags::command());
        let pushed = store.push_command(&command, &recipient).await.unwrap();
        assert!(pushed.duplicate);
        assert_eq!(pushed.message_id, MessageId(2));
        let history = store.db.open_tree("history").unwrap();
        assert_eq!(
            history.scan_prefix([OLD_BY_SENDER]).count(),
            0,
            "nothing left to move"
        );
    }
}
