//! Conformance of the command queue: pending commands per user, acked
//! once, removed, and deduplicated by their sender's number.

use std::sync::Arc;

use super::{group, message, uid};
use crate::model::{Flags, MessageId};
use crate::store::Store;

/// Commands queue per user with cursors from 1, page after a cursor, and
/// are gone after an ack; they consume no channel seq.
pub async fn command_queue_push_pending_ack(store: Arc<dyn Store>) {
    let ch = group("c-cmd");
    let (alice, bob) = (uid("q-alice"), uid("q-bob"));
    let mut cmds = Vec::new();
    for i in 0..5 {
        let mut m = message("q-server", &ch, &format!("cmd-{i}"), &[i]);
        m.flags = Flags::command();
        let recipients = if i == 2 {
            vec![alice.clone()]
        } else {
            vec![alice.clone(), bob.clone(), alice.clone()]
        };
        let pushed = store.push_command(&m, &recipients).await.expect("push");
        assert!(!pushed.duplicate);
        assert_eq!(pushed.message_id, m.message_id);
        cmds.push(m);
    }
    assert_eq!(
        store.last_seq(&ch).await.expect("last_seq"),
        0,
        "no channel seq"
    );
    let a = store
        .pending_commands(&alice, 0, 100)
        .await
        .expect("pending");
    assert_eq!(
        a.iter().map(|q| q.cursor).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5],
        "a recipient named twice is queued once"
    );
    assert_eq!(a[3].message, cmds[3]);
    let b = store.pending_commands(&bob, 0, 100).await.expect("pending");
    assert_eq!(
        b.iter().map(|q| q.cursor).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(b[2].message.message_id, cmds[3].message_id);
    let page = store.pending_commands(&alice, 2, 2).await.expect("pending");
    assert_eq!(
        page.iter().map(|q| q.cursor).collect::<Vec<_>>(),
        vec![3, 4]
    );
    assert_eq!(store.ack_commands(&alice, 3).await.expect("ack"), 3);
    let a = store
        .pending_commands(&alice, 0, 100)
        .await
        .expect("pending");
    assert_eq!(a.iter().map(|q| q.cursor).collect::<Vec<_>>(), vec![4, 5]);
    assert_eq!(
        store.ack_commands(&alice, 3).await.expect("ack"),
        0,
        "acked is gone"
    );
    assert_eq!(store.ack_commands(&alice, u64::MAX).await.expect("ack"), 2);
    assert!(store
        .pending_commands(&alice, 0, 100)
        .await
        .expect("p")
        .is_empty());
    // New entries continue after the old cursors.
    let mut later = message("q-server", &ch, "cmd-later", b"later");
    later.flags = Flags::command();
    store
        .push_command(&later, std::slice::from_ref(&alice))
        .await
        .expect("push");
    let a = store
        .pending_commands(&alice, 0, 100)
        .await
        .expect("pending");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].cursor, 6);
    assert_eq!(
        store.pending_commands(&bob, 0, 100).await.expect("p").len(),
        4
    );
    assert!(store
        .pending_commands(&uid("q-nobody"), 0, 10)
        .await
        .expect("p")
        .is_empty());
}

/// Single commands are removed by id; a resent command is not queued again.
pub async fn command_queue_remove_and_dedup(store: Arc<dyn Store>) {
    let ch = group("c-cmd2");
    let user = uid("r-user");
    let mut m1 = message("r-server", &ch, "rcmd-1", b"1");
    let mut m2 = message("r-server", &ch, "rcmd-2", b"2");
    m1.flags = Flags::command();
    m2.flags = Flags::command();
    store
        .push_command(&m1, std::slice::from_ref(&user))
        .await
        .expect("push");
    store
        .push_command(&m2, std::slice::from_ref(&user))
        .await
        .expect("push");
    let resend = message("r-server", &ch, "rcmd-1", b"1");
    let pushed = store
        .push_command(&resend, std::slice::from_ref(&user))
        .await
        .expect("push");
    assert!(pushed.duplicate);
    assert_eq!(pushed.message_id, m1.message_id);
    assert_eq!(
        store.pending_commands(&user, 0, 10).await.expect("p").len(),
        2
    );
    assert!(store.is_command(m1.message_id).await.expect("is_command"));
    assert!(!store
        .is_command(resend.message_id)
        .await
        .expect("is_command"));
    let removed = store
        .remove_commands(&user, &[m1.message_id, MessageId(u64::MAX - 3)])
        .await
        .expect("remove");
    assert_eq!(removed, 1);
    let left = store.pending_commands(&user, 0, 10).await.expect("p");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].message.message_id, m2.message_id);
    assert_eq!(
        store
            .remove_commands(&user, &[m1.message_id])
            .await
            .expect("remove"),
        0
    );
    assert_eq!(
        store
            .ack_commands(&user, left[0].cursor)
            .await
            .expect("ack"),
        1
    );
    assert_eq!(
        store
            .remove_commands(&user, &[m2.message_id])
            .await
            .expect("remove"),
        0,
        "acked by cursor is gone by id too"
    );
    assert!(
        store.is_command(m1.message_id).await.expect("is_command"),
        "still known as a command after every ack"
    );
}
