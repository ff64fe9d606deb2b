//! Conformance under concurrency and across senders: what a reader may see
//! while writers work, and whose resends are resends.

use std::sync::Arc;

use super::{group, message, uid};
use crate::model::Flags;
use crate::store::{Page, Store};

/// A reader never sees a message in history before the conversations it
/// updates: an append and its head move are one atomic step. (A client
/// that reads the newest message and clears unread up to it in such a gap
/// would lose the clear.)
pub async fn history_is_never_ahead_of_conversations(store: Arc<dyn Store>) {
    const MESSAGES: usize = 400;
    let ch = group("c-atomic");
    let reader = uid("at-reader");
    let writer = {
        let (store, ch) = (store.clone(), ch.clone());
        tokio::spawn(async move {
            for i in 0..MESSAGES {
                let m = message("at-sender", &ch, &format!("at-{i}"), b"x");
                store.append(vec![m]).await.expect("append");
            }
        })
    };
    loop {
        let finished = writer.is_finished();
        let newest = store.read(&ch, Page::latest(1)).await.expect("read");
        let Some(newest) = newest.first() else {
            tokio::task::yield_now().await;
            continue;
        };
        let conversation = store
            .conversation(&reader, &ch)
            .await
            .expect("conversation");
        let last_seq = conversation.map_or(0, |c| c.last_seq);
        assert!(
            last_seq >= newest.message_seq,
            "history shows seq {} while the reader's conversation is at {last_seq}",
            newest.message_seq
        );
        if finished {
            break;
        }
    }
    writer.await.expect("writer");
}

/// Command resends are recognised by sender *and* client_msg_no: another
/// sender's command with the same number is a different command, queued
/// and returned like any other.
pub async fn command_dedup_is_per_sender(store: Arc<dyn Store>) {
    let ch = group("c-cmd-senders");
    let user = uid("cs-user");
    let mut first = message("cs-server-a", &ch, "same-no", b"a");
    let mut second = message("cs-server-b", &ch, "same-no", b"b");
    first.flags = Flags::command();
    second.flags = Flags::command();
    let a = store
        .push_command(&first, std::slice::from_ref(&user))
        .await
        .expect("push");
    let b = store
        .push_command(&second, std::slice::from_ref(&user))
        .await
        .expect("push");
    assert!(!a.duplicate && !b.duplicate, "two senders, two commands");
    assert_eq!(b.message_id, second.message_id);
    let pending = store.pending_commands(&user, 0, 10).await.expect("pending");
    let payloads: Vec<&[u8]> = pending.iter().map(|c| c.message.payload.as_ref()).collect();
    assert_eq!(payloads, [b"a".as_slice(), b"b".as_slice()]);
}
