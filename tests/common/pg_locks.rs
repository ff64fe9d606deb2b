//! Helpers for tests that hold a PostgreSQL lock to line up what the store
//! does behind it: a plain client, and a wait until some backend waits.

use std::time::{Duration, Instant};

/// A client of its own, outside the store's pool.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

/// Waits until some backend waits for a lock (`who` names it in the
/// failure: the one expected to queue behind the test's lock).
pub async fn until_a_backend_waits(watcher: &tokio_postgres::Client, who: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{who} never waited");
        // PostgreSQL has no notice for "a backend started waiting".
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[allow(dead_code)] // not every test that includes this file needs it
/// Waits until no backend but the watcher's runs a statement whose text
/// holds `what` (one left running by a client that gave up on it).
pub async fn until_no_backend_runs(watcher: &tokio_postgres::Client, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let running: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
                 AND pid <> pg_backend_pid() AND strpos(query, $1) > 0",
                &[&what],
            )
            .await
            .unwrap()
            .get(0);
        if running == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{what} still runs");
        // PostgreSQL has no notice for "a statement ended".
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
