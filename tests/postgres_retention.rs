//! Retention on PostgreSQL with several hubs on one database (a server
//! each test starts itself): a pass runs once per lease, not once per
//! node, and what it deletes is gone from the tables (messages, their
//! revocations, events and outbox entries), tombstones kept until purged.
//!
//! Without the PostgreSQL binaries each test says it is skipped and why;
//! with `IMCORE_REQUIRE_SERVERS=1` (CI) a skip is a failure.

#[path = "common/servers.rs"]
mod servers;

use std::sync::Arc;
use std::time::Duration;

use imcore::hub::{RetentionPolicy, RetentionRule};
use imcore::store::{Outbox, PgConfig, PgStore};
use imcore::{
    Channel, Hub, HubConfig, ManualClock, MemoryDirectory, RevokeRequest, SendRequest, Uid,
};
use servers::PgServer;

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

/// Counts the rows of `table` in the database at `url` matching `filter`.
async fn count(url: &str, table: &str, filter: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    let driver = tokio::spawn(connection);
    let sql = format!("SELECT count(*) FROM {table} WHERE {filter}");
    let n: i64 = client.query_one(&sql, &[]).await.expect(&sql).get(0);
    drop(client);
    driver.await.expect("task").expect("connection");
    n
}

async fn hub(
    url: &str,
    node: u16,
    clock: Arc<ManualClock>,
    directory: Arc<MemoryDirectory>,
    policy: RetentionPolicy,
) -> Hub {
    let store = PgStore::open(PgConfig::new(url)).await.expect("open");
    store.enable_outbox();
    let config = HubConfig::default()
        .node_id(node)
        .send_rate(None)
        .revoke_window(None)
        .retention(policy);
    Hub::builder()
        .store(Arc::new(store))
        .directory(directory)
        .clock(clock)
        .config(config)
        .build()
        .expect("hub")
}

/// Two hubs on one database run their passes at once: one runs (the
/// other finds the lease taken), each channel is cut once, and the other
/// hub runs passes only once the lease has run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hubs_on_one_database_run_one_pass_per_lease() {
    let Some(server) = PgServer::start("two_hubs_on_one_database_run_one_pass_per_lease") else {
        return;
    };
    let url = server.create_database("retention_lease").await;
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let directory = Arc::new(MemoryDirectory::new());
    let policy = RetentionPolicy::default()
        .all(RetentionRule::keep_all().max_messages(Some(5)))
        .batch(4)
        .interval(Duration::from_secs(60));
    let a = hub(&url, 1, clock.clone(), directory.clone(), policy.clone()).await;
    let b = hub(&url, 2, clock.clone(), directory.clone(), policy).await;
    let groups: Vec<Channel> = (0..6)
        .map(|i| Channel::group(format!("lease-{i}")).unwrap())
        .collect();
    for g in &groups {
        directory.create_channel(g, &uid("alice"), [uid("bob")]);
        for i in 0..20 {
            let by = if i % 2 == 0 { &a } else { &b };
            by.send(SendRequest::new(uid("alice"), g.clone(), format!("m{i}")))
                .await
                .unwrap();
        }
    }
    let (pa, pb) = tokio::join!(a.retention_pass(), b.retention_pass());
    let (pa, pb) = (pa.unwrap(), pb.unwrap());
    assert!(pa.ran != pb.ran, "exactly one ran: {pa:?} {pb:?}");
    assert_eq!(pa.deleted + pb.deleted, 6 * 15, "each channel cut once");
    let (runner, other) = if pa.ran { (&a, &b) } else { (&b, &a) };
    for g in &groups {
        assert_eq!(runner.store().history_floor(g).await.unwrap(), 15);
    }
    assert_eq!(count(&url, "imcore_messages", "true").await, 6 * 5);
    assert_eq!(count(&url, "imcore_tombstones", "true").await, 6 * 15);
    assert_eq!(count(&url, "imcore_outbox", "true").await, 6 * 5);
    // Within the interval the other hub's passes do nothing.
    clock.advance(Duration::from_secs(59));
    runner
        .send(SendRequest::new(uid("alice"), groups[0].clone(), "new"))
        .await
        .unwrap();
    assert!(!other.retention_pass().await.unwrap().ran);
    assert_eq!(count(&url, "imcore_messages", "true").await, 6 * 5 + 1);
    clock.advance(Duration::from_secs(2));
    let taken = other.retention_pass().await.unwrap();
    assert!(taken.ran, "the lease ran out: {taken:?}");
    assert_eq!(taken.deleted, 1);
}

/// What an explicit deletion removes is gone from every table: messages,
/// revocations, events and outbox entries; tombstones stay until a pass
/// past the resend protection purges them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deletion_removes_the_rows_that_go_with_the_messages() {
    let Some(server) = PgServer::start("a_deletion_removes_the_rows_that_go_with_the_messages")
    else {
        return;
    };
    let url = server.create_database("retention_rows").await;
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let directory = Arc::new(MemoryDirectory::new());
    let policy = RetentionPolicy::default()
        .all(RetentionRule::keep_all().max_messages(Some(1_000)))
        .resend_protection(Duration::from_secs(60));
    let h = hub(&url, 1, clock.clone(), directory.clone(), policy).await;
    let g = Channel::group("rows").unwrap();
    directory.create_channel(&g, &uid("alice"), [uid("bob")]);
    let mut acks = Vec::new();
    for i in 0..10 {
        let send = SendRequest::new(uid("alice"), g.clone(), format!("m{i}"))
            .client_msg_no(imcore::ClientMsgNo::new(format!("rows-{i}")).unwrap());
        acks.push(h.send(send).await.unwrap());
    }
    for at in [1, 7] {
        let revoke = RevokeRequest::by_id(uid("alice"), acks[at].message_id);
        h.revoke(revoke).await.unwrap();
    }
    for ack in &acks[..2] {
        let event = imcore::event::NewEvent::new(
            g.clone(),
            ack.client_msg_no.clone(),
            imcore::EventId::new("open").unwrap(),
            imcore::event::STREAM_OPEN,
            uid("alice"),
            "{}",
        )
        .unwrap();
        h.append_event(event).await.unwrap();
    }
    let cid = "ctype = 2 AND cid = 'rows'";
    assert_eq!(count(&url, "imcore_revocations", cid).await, 2);
    assert_eq!(count(&url, "imcore_events", cid).await, 2);
    let report = h.delete_history(&g, 5, false).await.unwrap();
    assert_eq!(report.deleted_count, 5);
    assert_eq!(count(&url, "imcore_messages", cid).await, 5);
    assert_eq!(count(&url, "imcore_revocations", cid).await, 1);
    assert_eq!(count(&url, "imcore_events", cid).await, 0);
    assert_eq!(count(&url, "imcore_event_records", cid).await, 0);
    assert_eq!(count(&url, "imcore_open_streams", cid).await, 0);
    let ids: Vec<String> = acks[..5]
        .iter()
        .map(|a| a.message_id.0.to_string())
        .collect();
    let deleted = format!("message_id IN ({})", ids.join(","));
    assert_eq!(count(&url, "imcore_outbox", &deleted).await, 0);
    assert_eq!(count(&url, "imcore_tombstones", cid).await, 5);
    clock.advance(Duration::from_secs(61));
    let pass = h.retention_pass().await.unwrap();
    assert_eq!(pass.tombstones_purged, 5);
    assert_eq!(count(&url, "imcore_tombstones", cid).await, 0);
}
