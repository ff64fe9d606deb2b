//! Conformance of outbox claims: a batch is held by one claim at a time,
//! never changes, and is taken over whole once its lease runs out.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::{group, message};
use crate::store::{OutboxBatch, Store};

const LEASE: Duration = Duration::from_secs(10);
/// A time to claim at (the store only compares the times it is given).
const T: i64 = 1_700_000_000_000;

/// Enables the outbox and removes what other checks left in it.
async fn emptied(store: &Arc<dyn Store>) {
    store.enable_outbox();
    let left: Vec<u64> = store
        .outbox(10_000)
        .await
        .expect("outbox")
        .iter()
        .map(|(n, _)| *n)
        .collect();
    store.outbox_done(&left).await.expect("done");
}

async fn claim(store: &Arc<dyn Store>, limit: usize, now: i64) -> Option<OutboxBatch> {
    store.claim_outbox(limit, now, LEASE).await.expect("claim")
}

fn payloads(batch: &OutboxBatch) -> Vec<u8> {
    batch.entries.iter().map(|(_, m)| m.payload[0]).collect()
}

/// Claims: a new batch takes the oldest unclaimed entries and is held
/// until its lease ends; held batches never grow; a batch whose lease ran
/// out is claimed again whole, under the same number, and the lease it was
/// taken from can no longer be renewed; done entries leave their batch.
pub async fn outbox_batches_are_leased_and_taken_over_whole(store: Arc<dyn Store>) {
    let ch = group("c-outbox-claims");
    emptied(&store).await;
    let append = |i: u8| {
        let store = store.clone();
        let m = message("claim-alice", &ch, &format!("claim-{i}"), &[i]);
        async move { store.append(vec![m]).await.expect("append") }
    };
    assert!(claim(&store, 10, T).await.is_none(), "nothing to claim");
    for i in 1..=3 {
        append(i).await;
    }
    let a = claim(&store, 2, T).await.expect("a batch");
    assert_eq!(payloads(&a), [1, 2], "the oldest, up to the limit");
    assert_eq!(a.lease.batch, a.entries[0].0, "numbered by its first entry");
    assert_eq!(a.lease.until_ms, T + 10_000);
    let b = claim(&store, 2, T + 1).await.expect("the rest");
    assert_eq!(payloads(&b), [3]);
    assert!(claim(&store, 2, T + 2).await.is_none(), "all held");
    append(4).await;
    let c = claim(&store, 10, T + 3).await.expect("the new entry");
    assert_eq!(payloads(&c), [4], "a held batch does not grow");

    assert!(
        claim(&store, 10, T + 9_999).await.is_none(),
        "no lease has run out"
    );
    let b_kept = store
        .renew_outbox(b.lease, T + 9_000, LEASE)
        .await
        .expect("renew")
        .expect("b is still held");
    assert_eq!(b_kept.until_ms, T + 19_000);
    let a_again = claim(&store, 1, T + 10_000).await.expect("a, taken over");
    assert_eq!(a_again.lease.batch, a.lease.batch, "the same number");
    assert_eq!(a_again.entries, a.entries, "whole, whatever the limit");
    assert_eq!(a_again.lease.until_ms, T + 20_000);
    assert_eq!(
        store
            .renew_outbox(a.lease, T + 10_001, LEASE)
            .await
            .expect("renew"),
        None,
        "the lease a batch was taken over from is lost"
    );
    let c_again = claim(&store, 10, T + 10_005).await.expect("c ran out");
    assert_eq!(c_again.lease.batch, c.lease.batch, "b was renewed");
    store.outbox_done(&a_again.numbers()).await.expect("done");
    assert_eq!(
        store
            .renew_outbox(a_again.lease, T + 10_010, LEASE)
            .await
            .expect("renew"),
        None,
        "a done batch is gone"
    );
    let late = T + 1_000_000;
    let b_again = claim(&store, 10, late).await.expect("b ran out");
    assert_eq!(
        (b_again.lease.batch, payloads(&b_again)),
        (b.lease.batch, vec![3])
    );
    let c_last = claim(&store, 10, late).await.expect("c ran out again");
    assert_eq!(c_last.lease.batch, c.lease.batch);
    assert!(claim(&store, 10, late).await.is_none(), "all held again");
    store
        .outbox_done(&[b_again.numbers(), c_last.numbers()].concat())
        .await
        .expect("done");
    assert!(store.outbox(10).await.expect("outbox").is_empty());
    assert!(claim(&store, 10, late * 2).await.is_none(), "nothing left");
    assert!(store.claim_outbox(0, T, LEASE).await.is_err(), "limit 0");
    assert!(
        store.claim_outbox(1, T, Duration::ZERO).await.is_err(),
        "no lease"
    );
}

/// Concurrent claims never share an entry, and together take them all.
pub async fn concurrent_outbox_claims_never_share_an_entry(store: Arc<dyn Store>) {
    let ch = group("c-outbox-race");
    emptied(&store).await;
    let sent: Vec<_> = (0..20u8)
        .map(|i| message("race-bob", &ch, &format!("race-{i}"), &[i]))
        .collect();
    store.append(sent).await.expect("append");
    let claims: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.claim_outbox(3, T, LEASE).await })
        })
        .collect();
    let mut seen = HashSet::new();
    for claim in claims {
        let batch = claim.await.expect("task").expect("claim");
        for (n, _) in batch.iter().flat_map(|b| &b.entries) {
            assert!(seen.insert(*n), "entry {n} claimed twice");
        }
    }
    assert_eq!(seen.len(), 20, "every entry claimed");
    let all: Vec<u64> = seen.into_iter().collect();
    store.outbox_done(&all).await.expect("done");
}
