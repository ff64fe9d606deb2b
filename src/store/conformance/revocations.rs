//! Conformance of revocation records: per-channel versions, the first
//! record kept, under concurrency too.

use std::collections::HashSet;
use std::sync::Arc;

use super::{group, uid};
use crate::model::{Channel, MessageId};
use crate::store::{NewRevocation, Recorded, Store};

fn revocation(id: u64, channel: &Channel, seq: u64, by: &str) -> NewRevocation {
    NewRevocation {
        message_id: MessageId(id),
        channel: channel.clone(),
        message_seq: seq,
        revoker: uid(by),
        revoked_at_ms: 1_700_000_100_000,
    }
}

/// Versions are per channel from 1; a second record of a message keeps the
/// first; look-ups answer in order; `revocations_after` pages ascending.
pub async fn revocations_record_once_with_versions(store: Arc<dyn Store>) {
    let (a, b) = (group("c-rev-a"), group("c-rev-b"));
    let base = 5_000_000_000;
    let r1 = store
        .record_revocation(revocation(base + 1, &a, 1, "x-alice"))
        .await
        .expect("record");
    let Recorded::New(r1) = r1 else {
        panic!("first record is new")
    };
    assert_eq!(r1.extra_version, 1);
    let r2 = store
        .record_revocation(revocation(base + 2, &a, 2, "x-alice"))
        .await
        .expect("record");
    assert_eq!(r2.revocation().extra_version, 2);
    let rb = store
        .record_revocation(revocation(base + 3, &b, 9, "x-bob"))
        .await
        .expect("record");
    assert_eq!(rb.revocation().extra_version, 1, "per-channel versions");
    let again = store
        .record_revocation(revocation(base + 1, &a, 1, "x-other"))
        .await
        .expect("record");
    assert_eq!(again, Recorded::Existing(r1.clone()));
    let found = store
        .lookup_revocations(&[
            MessageId(base + 2),
            MessageId(base + 99),
            MessageId(base + 1),
        ])
        .await
        .expect("lookup");
    assert_eq!(found.len(), 3);
    assert_eq!(found[0].as_ref().map(|r| r.message_seq), Some(2));
    assert!(found[1].is_none());
    assert_eq!(found[2].as_ref(), Some(&r1));
    let changed = store.revocations_after(&a, 0, 10).await.expect("changed");
    assert_eq!(
        changed.iter().map(|r| r.extra_version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let changed = store.revocations_after(&a, 1, 1).await.expect("changed");
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].message_id, MessageId(base + 2));
    assert!(store
        .revocations_after(&a, 2, 10)
        .await
        .expect("changed")
        .is_empty());
}

/// Eight concurrent records of one message leave one record, and exactly
/// one caller is told it is new.
pub async fn concurrent_revocations_of_one_message_record_once(store: Arc<dyn Store>) {
    let ch = group("c-rev-conc");
    let mut handles = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        let ch = ch.clone();
        handles.push(tokio::spawn(async move {
            store
                .record_revocation(revocation(6_000_000_000, &ch, 1, &format!("y-{t}")))
                .await
                .expect("record")
        }));
    }
    let mut new = 0;
    let mut revokers = HashSet::new();
    for h in handles {
        let r = h.await.expect("task");
        if matches!(r, Recorded::New(_)) {
            new += 1;
        }
        revokers.insert(r.revocation().revoker.clone());
    }
    assert_eq!(new, 1, "exactly one new record");
    assert_eq!(revokers.len(), 1, "everyone sees the same first record");
    assert_eq!(
        store
            .revocations_after(&ch, 0, 10)
            .await
            .expect("changed")
            .len(),
        1
    );
}
