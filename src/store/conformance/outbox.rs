//! Conformance of the outbox: each new history message, once, oldest
//! first, until removed.

use std::sync::Arc;

use super::{group, message};
use crate::model::Message;
use crate::store::Store;

/// The outbox: off until enabled; then every new history message (not a
/// resend) is in it, oldest first, as stored, until removed.
pub async fn the_outbox_holds_each_new_message_until_done(store: Arc<dyn Store>) {
    let ch = group("c-outbox");
    store
        .append(vec![message("o-alice", &ch, "outbox-0", b"before")])
        .await
        .expect("append");
    store.enable_outbox();
    // What other checks left in it on a shared store.
    let left: Vec<u64> = store
        .outbox(10_000)
        .await
        .expect("outbox")
        .into_iter()
        .filter(|(_, m)| m.channel != ch)
        .map(|(n, _)| n)
        .collect();
    store.outbox_done(&left).await.expect("done");
    assert!(
        store.outbox(10).await.expect("outbox").is_empty(),
        "off until enabled"
    );

    let batch = vec![
        message("o-alice", &ch, "outbox-1", b"1"),
        message("o-bob", &ch, "outbox-2", b"2"),
    ];
    store.append(batch).await.expect("append");
    let single = message("o-alice", &ch, "outbox-3", b"3");
    store.append(vec![single.clone()]).await.expect("append");
    let resend = message("o-alice", &ch, "outbox-3", b"3");
    assert!(store.append(vec![resend]).await.expect("resend")[0].duplicate);

    let pending = store.outbox(10).await.expect("outbox");
    let seqs: Vec<u64> = pending.iter().map(|(_, m)| m.message_seq).collect();
    assert_eq!(seqs, [2, 3, 4], "each new message once, oldest first");
    assert!(pending.windows(2).all(|w| w[0].0 < w[1].0), "numbers rise");
    assert_eq!(
        pending[2].1,
        Message {
            message_seq: 4,
            ..single
        },
        "as stored"
    );
    let first_two: Vec<u64> = store
        .outbox(2)
        .await
        .expect("outbox")
        .iter()
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(
        first_two,
        [pending[0].0, pending[1].0],
        "a limit takes the oldest"
    );
    store
        .outbox_done(&[first_two[0], first_two[1], u64::MAX - 1])
        .await
        .expect("done");
    let rest = store.outbox(10).await.expect("outbox");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].0, pending[2].0);
    store.outbox_done(&[rest[0].0]).await.expect("done");
    assert!(store.outbox(10).await.expect("outbox").is_empty());
}
