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
    let sql = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'";
    until_count(watcher, sql, &[], |n| n > 0, &format!("{who} never waited")).await;
}

#[allow(dead_code)] // not every test that includes this file needs it
/// Waits until no backend but the watcher's runs a statement whose text
/// holds `what` (one left running by a client that gave up on it).
pub async fn until_no_backend_runs(watcher: &tokio_postgres::Client, what: &str) {
    let sql = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
               AND pid <> pg_backend_pid() AND strpos(query, $1) > 0";
    until_count(
        watcher,
        sql,
        &[&what],
        |n| n == 0,
        &format!("{what} still runs"),
    )
    .await;
}

/// Polls `sql`, a count, until `done` holds for it; fails with `failure`
/// after 10 s. PostgreSQL has no notice for "a backend started waiting"
/// or "a statement ended".
async fn until_count(
    watcher: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    done: impl Fn(i64) -> bool,
    failure: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count: i64 = watcher.query_one(sql, params).await.unwrap().get(0);
        if done(count) {
            return;
        }
        assert!(Instant::now() < deadline, "{failure}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
