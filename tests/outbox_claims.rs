//! Outbox claims where one store is not enough to see them: two
//! `PgStore`s on one database (as two hub nodes have) racing for batches
//! and taking one over from the other; a version-4 database's pending
//! entries after the migration; and a sled batch across a restart. (The
//! single-store contract is in the conformance suite, every backend.)
//!
//! Without the PostgreSQL binaries its tests say they are skipped and why;
//! with `IMCORE_REQUIRE_SERVERS=1` (CI) a skip is a failure.

#[path = "common/servers.rs"]
mod servers;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use imcore::store::{MessageLog, Outbox, OutboxBatch, PgConfig, PgStore, Store};
use imcore::{Channel, ClientMsgNo, Message, MessageIdGenerator, SledStore, Uid};
use servers::PgServer;

const LEASE: Duration = Duration::from_secs(10);
const T: i64 = 1_700_000_000_000;

fn message(ids: &MessageIdGenerator, no: &str) -> Message {
    Message::new(
        ids.next_id(),
        ClientMsgNo::new(no).unwrap(),
        Uid::new("alice").unwrap(),
        Channel::group("hooked").unwrap(),
        T,
        no.as_bytes().to_vec(),
    )
}

fn numbers(batches: &[OutboxBatch]) -> Vec<u64> {
    batches.iter().flat_map(OutboxBatch::numbers).collect()
}

/// Claims from `store` until there is nothing left to claim at `now`.
async fn claim_all(store: Arc<dyn Store>, now: i64) -> Vec<OutboxBatch> {
    let mut batches = Vec::new();
    while let Some(batch) = store.claim_outbox(3, now, LEASE).await.unwrap() {
        batches.push(batch);
    }
    batches
}

/// Two nodes' stores claim at once: each entry goes to one of them, in one
/// batch. A batch one holds is the other's only once its lease has run
/// out, then whole and under the same number; the first holder's lease is
/// then lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pg_stores_claim_each_entry_once_and_take_over_a_dead_ones_batch() {
    let Some(server) = PgServer::start("two_pg_stores_claim_each_entry_once") else {
        return;
    };
    let url = server.create_database("claims").await;
    let a: Arc<dyn Store> = Arc::new(PgStore::open(PgConfig::new(url.clone())).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(PgStore::open(PgConfig::new(url)).await.unwrap());
    a.enable_outbox();
    b.enable_outbox();
    let ids = MessageIdGenerator::new(1).unwrap();
    let sent: Vec<Message> = (0..60).map(|i| message(&ids, &format!("m{i}"))).collect();
    a.append(sent[..30].to_vec()).await.unwrap();
    b.append(sent[30..].to_vec()).await.unwrap();

    let (from_a, from_b) = tokio::join!(
        tokio::spawn(claim_all(a.clone(), T)),
        tokio::spawn(claim_all(b.clone(), T))
    );
    let (from_a, from_b) = (from_a.unwrap(), from_b.unwrap());
    let mut seen = HashSet::new();
    for n in numbers(&from_a).into_iter().chain(numbers(&from_b)) {
        assert!(seen.insert(n), "entry {n} claimed by both");
    }
    assert_eq!(seen.len(), 60, "every entry claimed");
    assert!(
        !from_a.is_empty() && !from_b.is_empty(),
        "both stores claimed"
    );

    // a "dies" holding its batches; b takes the first over once its lease
    // has run out, not before.
    let held = &from_a[0];
    assert!(b.claim_outbox(3, T + 9_999, LEASE).await.unwrap().is_none());
    let taken = b
        .claim_outbox(3, T + 10_000, LEASE)
        .await
        .unwrap()
        .expect("a batch ran out");
    let oldest = from_a
        .iter()
        .chain(&from_b)
        .map(|batch| batch.lease.batch)
        .min();
    assert_eq!(Some(taken.lease.batch), oldest, "the oldest first");
    if taken.lease.batch == held.lease.batch {
        assert_eq!(taken.entries, held.entries, "whole");
        let renewed = a.renew_outbox(held.lease, T + 10_001, LEASE).await.unwrap();
        assert_eq!(renewed, None, "a's lease is lost");
    }
    let renewed = b
        .renew_outbox(taken.lease, T + 10_002, LEASE)
        .await
        .unwrap()
        .expect("b holds it");
    assert_eq!(renewed.until_ms, T + 20_002);
    b.outbox_done(&taken.numbers()).await.unwrap();
    assert_eq!(a.outbox(100).await.unwrap().len(), 60 - taken.entries.len());
}

/// A version-4 database's waiting entries are unclaimed after the
/// migration to version 5, and claimed as any others.
#[tokio::test]
async fn a_version_4_outbox_is_claimed_after_the_migration() {
    let Some(server) = PgServer::start("a_version_4_outbox_is_claimed_after_the_migration") else {
        return;
    };
    let url = server.create_database("outbox_v4").await;
    let ids = MessageIdGenerator::new(1).unwrap();
    let store = PgStore::open(PgConfig::new(url.clone())).await.unwrap();
    store.enable_outbox();
    let sent = vec![message(&ids, "old-1"), message(&ids, "old-2")];
    store.append(sent.clone()).await.unwrap();
    drop(store);
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // What version 4 had: entries with no batch columns.
    client
        .batch_execute(
            "ALTER TABLE imcore_outbox DROP COLUMN batch, DROP COLUMN lease_until; \
             DROP TABLE imcore_events, imcore_event_records, imcore_open_streams; \
             DROP TABLE imcore_extras, imcore_reads; \
             DROP TABLE imcore_floors, imcore_tombstones, imcore_leases; \
             UPDATE imcore_schema SET version = 4",
        )
        .await
        .unwrap();

    let store = PgStore::open(PgConfig::new(url)).await.expect("migrates");
    let batch = store
        .claim_outbox(10, T, LEASE)
        .await
        .unwrap()
        .expect("the waiting entries");
    let got: Vec<_> = batch.entries.iter().map(|(_, m)| m.message_id).collect();
    assert_eq!(got, [sent[0].message_id, sent[1].message_id]);
    let version: i32 = client
        .query_one("SELECT version FROM imcore_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 11);
}

/// A sled batch is the same after a restart: its entries, not the ones
/// stored after it was claimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sled_batch_is_the_same_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ids = MessageIdGenerator::new(1).unwrap();
    let first = {
        let store = SledStore::open(dir.path()).unwrap();
        store.enable_outbox();
        store
            .append(vec![message(&ids, "a"), message(&ids, "b")])
            .await
            .unwrap();
        let first = store
            .claim_outbox(10, T, LEASE)
            .await
            .unwrap()
            .expect("a batch");
        assert_eq!(first.entries.len(), 2);
        store.append(vec![message(&ids, "c")]).await.unwrap();
        store.flush().await.unwrap();
        first
        // Dropped here, the batch untold: as if the process had died.
    };
    let store = SledStore::open(dir.path()).unwrap();
    store.enable_outbox();
    assert!(
        store
            .claim_outbox(10, T + 1, LEASE)
            .await
            .unwrap()
            .is_some(),
        "the entry stored after the claim is free"
    );
    let again = store
        .claim_outbox(10, T + 10_000, LEASE)
        .await
        .unwrap()
        .expect("the batch ran out");
    assert_eq!(again.lease.batch, first.lease.batch);
    assert_eq!(again.entries, first.entries, "the same entries, no more");
}
