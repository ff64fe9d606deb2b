//! Conformance under concurrency and across senders: what a reader may see
//! while writers work, and whose resends are resends.

use std::sync::Arc;

use super::{group, message, uid};
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

/// A conversation seen at a version is the same whenever it is seen at
/// that version: a reader syncing while others append (one message or a
/// batch) and the user answers never sees an unread count that a later
/// look at the same version contradicts (an incremental sync would never
/// hear of the correction).
pub async fn one_version_one_conversation_under_concurrent_appends(store: Arc<dyn Store>) {
    const ROUNDS: usize = 300;
    let (x, y) = (group("c-torn-x"), group("c-torn-y"));
    let user = uid("torn-u2");
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, x, user, done) = (store.clone(), x.clone(), user.clone(), done.clone());
        tokio::spawn(async move {
            let mut seen = std::collections::HashMap::<u64, u64>::new();
            let mut looks = 0usize;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::Acquire);
                let list = store
                    .conversations_after(&user, std::slice::from_ref(&x), 0, 10)
                    .await
                    .expect("sync");
                if let Some(c) = list.first() {
                    let first = *seen.entry(c.version).or_insert(c.unread);
                    assert_eq!(
                        first, c.unread,
                        "version {} seen with unread {first} and {}",
                        c.version, c.unread
                    );
                }
                looks += 1;
                if finished {
                    return looks;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    for i in 0..ROUNDS {
        let answer = message("torn-u2", &x, &format!("torn-a{i}"), b"a");
        store.append(vec![answer]).await.expect("append");
        let batch = if i % 2 == 0 {
            vec![
                message("torn-u1", &x, &format!("torn-b{i}"), b"b"),
                message("torn-u1", &y, &format!("torn-c{i}"), b"c"),
            ]
        } else {
            vec![message("torn-u1", &x, &format!("torn-b{i}"), b"b")]
        };
        store.append(batch).await.expect("append");
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    assert!(reader.await.expect("reader") > 0);
    let c = store
        .conversation(&user, &x)
        .await
        .expect("get")
        .expect("has messages");
    assert_eq!(c.unread, 1, "the last message is u1's, after u2's answer");
}
