//! Conformance of resends: a message is known by its sender, its channel
//! and the sender's number for it, in the log and in the command queue
//! alike; the same number with another payload is a conflict.

use std::sync::Arc;

use super::{group, message, seqs, uid};
use crate::error::Error;
use crate::model::{Flags, Message};
use crate::store::{Page, Store};

fn command(from: &str, channel: &crate::Channel, no: &str, payload: &[u8]) -> Message {
    message(from, channel, no, payload).flags(Flags::command())
}

fn is_conflict<T: std::fmt::Debug>(result: crate::Result<T>, m: &Message) -> bool {
    match result {
        Err(Error::Conflict {
            uid,
            channel,
            client_msg_no,
        }) => {
            assert_eq!(uid, m.from_uid.as_str());
            assert_eq!(channel, m.channel.to_string());
            assert_eq!(client_msg_no, m.client_msg_no.as_str());
            true
        }
        other => panic!("expected a conflict for {m:?}, got {other:?}"),
    }
}

/// A resend of `(from_uid, channel, client_msg_no)` with the same payload,
/// later or in the same batch, is answered with the first id and seq and
/// stores nothing. Another sender, or another channel, with the same
/// number is another message.
pub async fn append_is_idempotent_per_sender_channel_and_number(store: Arc<dyn Store>) {
    let ch = group("c-dedup");
    let first = message("u1", &ch, "dedup-1", b"first");
    let out = store.append(vec![first.clone()]).await.expect("append");
    let resend = message("u1", &ch, "dedup-1", b"first");
    let again = store.append(vec![resend]).await.expect("append");
    assert!(again[0].duplicate);
    assert_eq!(again[0].message_id, first.message_id);
    assert_eq!(again[0].message_seq, out[0].message_seq);
    let other = store
        .append(vec![message("u2", &ch, "dedup-1", b"other")])
        .await
        .expect("append");
    assert!(!other[0].duplicate, "another sender");
    assert_eq!(other[0].message_seq, 2);
    let elsewhere = group("c-dedup-elsewhere");
    let there = store
        .append(vec![message("u1", &elsewhere, "dedup-1", b"there")])
        .await
        .expect("append");
    assert!(!there[0].duplicate, "another channel");
    assert_eq!(there[0].message_seq, 1);
    // Twice in one batch.
    let twin_a = message("u1", &ch, "dedup-2", b"a");
    let twin_b = message("u1", &ch, "dedup-2", b"a");
    let out = store
        .append(vec![twin_a.clone(), twin_b])
        .await
        .expect("append");
    assert!(!out[0].duplicate && out[1].duplicate);
    assert_eq!(out[1].message_id, twin_a.message_id);
    assert_eq!(out[1].message_seq, 3);
    let all = store.read(&ch, Page::forward(1, 100)).await.expect("read");
    assert_eq!(seqs(&all), vec![1, 2, 3], "duplicates are not stored");
    assert_eq!(all[0].payload.as_ref(), b"first");
    let found = store
        .get_by_client_msg_no(&uid("u1"), &elsewhere, &first.client_msg_no)
        .await
        .expect("get")
        .expect("found in the other channel");
    assert_eq!(found.payload.as_ref(), b"there");
}

/// The same sender, channel and number with another payload is not a
/// resend: the append fails with [`Error::Conflict`], stores nothing of
/// its batch, and the first message stands. Alone or in a batch (stores
/// may write a single message another way).
pub async fn a_resend_with_another_payload_conflicts(store: Arc<dyn Store>) {
    let ch = group("c-conflict");
    let first = message("u1", &ch, "conflict-1", b"first");
    store.append(vec![first.clone()]).await.expect("append");
    let changed = message("u1", &ch, "conflict-1", b"changed");
    // Alone.
    assert!(is_conflict(
        store.append(vec![changed.clone()]).await,
        &changed
    ));
    let innocent = message("u1", &ch, "conflict-2", b"innocent");
    let refused = store.append(vec![innocent.clone(), changed.clone()]).await;
    assert!(is_conflict(refused, &changed));
    // In one batch.
    let twin_a = message("u1", &ch, "conflict-3", b"a");
    let twin_b = message("u1", &ch, "conflict-3", b"b");
    assert!(is_conflict(
        store.append(vec![twin_a, twin_b.clone()]).await,
        &twin_b
    ));
    let all = store.read(&ch, Page::forward(1, 100)).await.expect("read");
    assert_eq!(seqs(&all), vec![1], "nothing of a refused batch is stored");
    assert_eq!(all[0].payload.as_ref(), b"first");
    let next = store.append(vec![innocent]).await.expect("append");
    assert_eq!(next[0].message_seq, 2, "the refused batches used no seq");
}

/// Command resends are recognised by sender, channel and number, as in
/// the log: another sender's or another channel's command with the same
/// number is another command, queued and returned like any other; another
/// payload under the same triple is a conflict and queues nothing.
pub async fn command_resends_are_per_sender_channel_and_number(store: Arc<dyn Store>) {
    let ch = group("c-cmd-senders");
    let user = uid("cs-user");
    let to = std::slice::from_ref(&user);
    let first = command("cs-server-a", &ch, "same-no", b"a");
    let a = store.push_command(&first, to).await.expect("push");
    let b = store
        .push_command(&command("cs-server-b", &ch, "same-no", b"b"), to)
        .await
        .expect("push");
    let elsewhere = group("c-cmd-elsewhere");
    let c = store
        .push_command(&command("cs-server-a", &elsewhere, "same-no", b"c"), to)
        .await
        .expect("push");
    assert!(
        !a.duplicate && !b.duplicate && !c.duplicate,
        "three commands"
    );
    let again = store
        .push_command(&command("cs-server-a", &ch, "same-no", b"a"), to)
        .await
        .expect("push");
    assert!(again.duplicate);
    assert_eq!(again.message_id, first.message_id);
    let changed = command("cs-server-a", &ch, "same-no", b"changed");
    assert!(is_conflict(
        store.push_command(&changed, to).await,
        &changed
    ));
    let pending = store.pending_commands(&user, 0, 10).await.expect("pending");
    let payloads: Vec<&[u8]> = pending.iter().map(|c| c.message.payload.as_ref()).collect();
    assert_eq!(
        payloads,
        [b"a".as_slice(), b"b".as_slice(), b"c".as_slice()]
    );
}
