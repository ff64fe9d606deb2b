//! The directory on PostgreSQL, shared by nodes that hear each other's
//! changes over NATS: the conformance suite, changes in force on the other
//! node as soon as its feed hears them, and a lost notice healed (by the
//! revalidation bound, and by a resync when NATS comes back).
//!
//! Each test starts its own servers; without their binaries it says so and
//! skips (a failure under `IMCORE_REQUIRE_SERVERS=1`).

#[path = "common/servers.rs"]
mod servers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use imcore::directory::{ChannelInfo, Permission};
use imcore::route::NatsChangeFeed;
use imcore::store::{conformance, PgConfig, PgStore};
use imcore::wire::{Authenticator, ConnectInfo};
use imcore::{
    AccessList, Channel, DeviceFlag, DeviceId, DeviceLevel, Directory, DirectoryConfig,
    ManualClock, ReasonCode, StoredDirectory, Uid,
};
use servers::{NatsServer, PgServer};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(10);

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_directory_passes_the_conformance_suite_on_postgres() {
    let Some(server) = PgServer::start("directory conformance") else {
        return;
    };
    for (i, (name, check)) in conformance::directory_checks().into_iter().enumerate() {
        let url = server.create_database(&format!("dir_{i}")).await;
        let store = PgStore::open(PgConfig::new(url)).await.expect("open");
        check(Arc::new(store)).await;
        eprintln!("{name}: ok");
    }
    let url = server.create_database("dir_all").await;
    let store = PgStore::open(PgConfig::new(url)).await.expect("open");
    conformance::run_directory(Arc::new(store)).await;
}

/// A version-3 database (before the directory) gets the directory's tables
/// when a store opens it, and keeps its history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_3_schema_gets_the_directory() {
    let Some(server) = PgServer::start("directory migration") else {
        return;
    };
    let url = server.create_database("dir_v3").await;
    drop(
        PgStore::open(PgConfig::new(url.clone()))
            .await
            .expect("open"),
    );
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "DROP TABLE imcore_dir_tokens, imcore_dir_channels, imcore_dir_members, \
                 imcore_dir_lists, imcore_dir_system, imcore_dir_versions; \
             ALTER TABLE imcore_outbox DROP COLUMN batch, DROP COLUMN lease_until; \
             DROP TABLE imcore_events, imcore_event_records, imcore_open_streams; \
             DROP TABLE imcore_extras, imcore_reads; \
             DROP TABLE imcore_floors, imcore_tombstones, imcore_leases; \
             UPDATE imcore_schema SET version = 3",
        )
        .await
        .unwrap();
    let store = Arc::new(
        PgStore::open(PgConfig::new(url.clone()))
            .await
            .expect("migrates"),
    );
    conformance::directory_channels_are_put_read_and_deleted(store).await;
    let version: i32 = client
        .query_one("SELECT version FROM imcore_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 11, "brought to the current version");
}

/// A node: its own store handle and feed, as a process would have.
async fn node(url: &str, nats: &NatsServer, clock: Option<Arc<ManualClock>>) -> StoredDirectory {
    let store = Arc::new(PgStore::open(PgConfig::new(url)).await.expect("open"));
    let feed = NatsChangeFeed::connect(&nats.url(), "dirtest")
        .await
        .expect("feed");
    let dir = match clock {
        // A clock that stands still: only the feed (or a resync) updates it.
        Some(clock) => StoredDirectory::with(store, DirectoryConfig::default(), clock),
        None => StoredDirectory::new(store),
    };
    dir.feed(Arc::new(feed))
}

/// Waits until `heard` moves past what it was when taken.
async fn heard(rx: &mut watch::Receiver<u64>) {
    tokio::time::timeout(WAIT, rx.changed())
        .await
        .expect("the feed hands the change on")
        .expect("directory alive");
}

/// Asks `dir` until it answers `want`, each time after the feed has
/// handed it something.
async fn until(
    dir: &StoredDirectory,
    rx: &mut watch::Receiver<u64>,
    sender: &Uid,
    ch: &Channel,
    want: Permission,
) -> Duration {
    let started = Instant::now();
    while dir.check_send(sender, ch).await.unwrap() != want {
        heard(rx).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_through_one_node_is_in_force_on_the_other() {
    let (Some(pg), Some(nats)) = (
        PgServer::start("directory across nodes"),
        NatsServer::start("directory across nodes"),
    ) else {
        return;
    };
    let url = pg.create_database("dir_nodes").await;
    let a = node(&url, &nats, None).await;
    let b = node(&url, &nats, Some(Arc::new(ManualClock::new(0)))).await;
    let mut b_heard = b.heard();
    let (owner, m, late) = (uid("owner"), uid("m"), uid("late"));
    let g = Channel::group("g").unwrap();

    a.create_channel(&g, ChannelInfo::default(), &[owner.clone(), m.clone()])
        .await
        .unwrap();
    assert_eq!(b.check_send(&m, &g).await.unwrap(), Permission::Allowed);
    let denied = |code| Permission::Denied(code);
    assert_eq!(
        b.check_send(&late, &g).await.unwrap(),
        denied(ReasonCode::SUBSCRIBER_NOT_EXIST)
    );

    // Each change, through A, reaches B's cache by the feed alone (B's
    // clock never moves, so nothing else would refresh it).
    let mut took = Vec::new();
    a.add_subscribers(&g, std::slice::from_ref(&late))
        .await
        .unwrap();
    took.push(until(&b, &mut b_heard, &late, &g, Permission::Allowed).await);
    a.add_to_list(AccessList::Black, &g, std::slice::from_ref(&m))
        .await
        .unwrap();
    took.push(until(&b, &mut b_heard, &m, &g, denied(ReasonCode::IN_BLACKLIST)).await);
    a.remove_subscribers(&g, std::slice::from_ref(&late))
        .await
        .unwrap();
    let gone = denied(ReasonCode::SUBSCRIBER_NOT_EXIST);
    took.push(until(&b, &mut b_heard, &late, &g, gone).await);
    a.delete_channel(&g).await.unwrap();
    let missing = denied(ReasonCode::CHANNEL_NOT_EXIST);
    took.push(until(&b, &mut b_heard, &owner, &g, missing).await);
    eprintln!("changes in force on the other node after {took:?}");
    assert!(
        took.iter().all(|t| *t < Duration::from_millis(100)),
        "each within 100 ms: {took:?}"
    );

    // Tokens are read at each login: a removal through A is in force on B
    // when A's call returns.
    let info = ConnectInfo {
        uid: m.clone(),
        token: "t".into(),
        device_id: DeviceId::new("d").unwrap(),
        device_flag: DeviceFlag::Web,
        version: 2,
    };
    a.set_token(&m, DeviceFlag::Web, "t", DeviceLevel::Master)
        .await
        .unwrap();
    assert_eq!(b.authenticate(&info).await, Ok(DeviceLevel::Master));
    a.remove_token(&m, DeviceFlag::Web).await.unwrap();
    assert_eq!(b.authenticate(&info).await, Err(ReasonCode::AUTH_FAIL));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_notice_is_healed_by_the_bound_and_by_a_resync() {
    let (Some(pg), Some(mut nats)) = (
        PgServer::start("directory heals"),
        NatsServer::start("directory heals"),
    ) else {
        return;
    };
    let url = pg.create_database("dir_heal").await;
    let a = node(&url, &nats, None).await;
    let clock = Arc::new(ManualClock::new(0));
    let b = node(&url, &nats, Some(clock.clone())).await;
    let mut b_heard = b.heard();
    let m = uid("m");
    let g = Channel::group("g").unwrap();
    a.create_channel(&g, ChannelInfo::default(), std::slice::from_ref(&m))
        .await
        .unwrap();
    assert_eq!(b.check_send(&m, &g).await.unwrap(), Permission::Allowed);

    // NATS away: the change is stored (the call succeeds), its notice lost.
    nats.kill();
    let banned = ChannelInfo {
        ban: true,
        ..ChannelInfo::default()
    };
    assert!(a.update_channel(&g, banned).await.unwrap());
    assert_eq!(
        b.check_send(&m, &g).await.unwrap(),
        Permission::Allowed,
        "the notice was lost and the bound has not passed"
    );
    clock.advance(DirectoryConfig::default().revalidate_after);
    assert_eq!(
        b.check_send(&m, &g).await.unwrap(),
        Permission::Denied(ReasonCode::BAN),
        "past the bound the ban holds without any notice"
    );

    // Another lost notice, then NATS back: the feed's reconnect makes B
    // check what it holds, with no clock move.
    assert!(a.update_channel(&g, ChannelInfo::default()).await.unwrap());
    nats.restart();
    let started = Instant::now();
    loop {
        heard(&mut b_heard).await;
        if b.check_send(&m, &g).await.unwrap() == Permission::Allowed {
            break;
        }
        assert!(started.elapsed() < WAIT, "no resync after NATS came back");
    }
}
