//! `PgStore` runs a transaction again when PostgreSQL rolled it back as a
//! deadlock's victim (40P01): a command push that loses a real deadlock,
//! on a server the test starts itself, still goes through.
//!
//! Without the PostgreSQL binaries the test says it is skipped and why;
//! with `IMCORE_REQUIRE_SERVERS=1` (CI) a skip is a failure.

#[path = "common/pg_locks.rs"]
mod pg_locks;
#[path = "common/servers.rs"]
mod servers;

use std::time::{Duration, Instant};

use imcore::store::{CommandQueue, PgConfig, PgStore};
use imcore::{Channel, ClientMsgNo, Message, MessageIdGenerator, Uid};
use pg_locks::{connect, until_a_backend_waits};
use servers::PgServer;

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

fn command(ids: &MessageIdGenerator, no: &str) -> Message {
    Message::new(
        ids.next_id(),
        ClientMsgNo::new(no).unwrap(),
        uid("system"),
        Channel::group("commands").unwrap(),
        1_700_000_000_000,
        no.as_bytes().to_vec(),
    )
}

/// A push to alice and bob locks their cursor rows in that order; another
/// transaction holding bob's and then asking for alice's makes a deadlock,
/// which PostgreSQL breaks by rolling the push back (its backend waited
/// first, so its deadlock check runs first). The push is run again, and
/// succeeds once the other transaction has committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_push_that_loses_a_deadlock_is_run_again() {
    let Some(server) = PgServer::start("a_command_push_that_loses_a_deadlock_is_run_again") else {
        return;
    };
    let url = server.create_database("deadlock").await;
    let store = std::sync::Arc::new(PgStore::open(PgConfig::new(url.clone())).await.unwrap());
    let ids = MessageIdGenerator::new(1).unwrap();
    let both = [uid("alice"), uid("bob")];
    // The cursor rows, so that the push updates (locks) them in order.
    store
        .push_command(&command(&ids, "first"), &both)
        .await
        .unwrap();

    let mut locker = connect(&url).await;
    let watcher = connect(&url).await;
    // Only the push's backend looks for the deadlock (after PostgreSQL's
    // default second), so the push is its victim.
    locker
        .batch_execute("SET deadlock_timeout = '1h'")
        .await
        .unwrap();
    let tx = locker.transaction().await.unwrap();
    let lock = "UPDATE imcore_command_cursors SET last_cursor = last_cursor WHERE uid = $1";
    tx.execute(lock, &[&"bob"]).await.unwrap();

    let pushing = {
        let (store, second) = (store.clone(), command(&ids, "second"));
        tokio::spawn(async move { store.push_command(&second, &both).await })
    };
    until_a_backend_waits(&watcher, "the push").await;
    // Waits for the push's lock on alice: the deadlock. Returns once the
    // push was rolled back (it cannot commit while bob's row is held here),
    // which, sooner than the store's timeout of 5 s, only the deadlock
    // check does.
    let asked = Instant::now();
    tx.execute(lock, &[&"alice"]).await.unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "the push was rolled back as the deadlock's victim"
    );
    tx.commit().await.unwrap();

    let pushed = pushing.await.unwrap();
    let pushed = pushed.expect("the push is run again after losing the deadlock");
    assert!(!pushed.duplicate);
    for who in ["alice", "bob"] {
        let pending = store.pending_commands(&uid(who), 0, 10).await.unwrap();
        let numbers: Vec<&str> = pending
            .iter()
            .map(|c| c.message.client_msg_no.as_str())
            .collect();
        assert_eq!(numbers, ["first", "second"], "{who}'s queue");
    }
}
