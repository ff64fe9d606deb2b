//! The look-ups of many keys use their indexes once a table has grown,
//! whatever was planned while it was small. A prepared statement's generic
//! plan, cached then, keeps scanning the whole table (sends slowed as
//! history grew); the store runs them as unnamed statements, which
//! PostgreSQL plans at every run. The test plans them the same way
//! (`plan_cache_mode=force_custom_plan` on prepared statements) after
//! caching had every chance to happen. The append function's statements
//! are planned once per connection, while the tables are small here, and
//! still scan no table once they have grown.

#[path = "../../../tests/common/servers.rs"]
mod servers;

use tokio_postgres::{NoTls, SimpleQueryMessage};

use super::{conversations, extras, revocations, PgConfig, PgStore};

/// The plan of prepared statement `name` run with `args`, as text.
async fn plan(client: &tokio_postgres::Client, name: &str, args: &str) -> String {
    let rows = client
        .simple_query(&format!("EXPLAIN EXECUTE {name}({args})"))
        .await
        .expect("explain");
    let lines: Vec<&str> = rows
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        })
        .collect();
    lines.join("\n")
}

/// A throwaway server with the store's schema in place, and its URL;
/// `None` (said loudly) without the PostgreSQL binaries.
async fn migrated_server(why: &str) -> Option<(servers::PgServer, String)> {
    let server = servers::PgServer::start(why)?;
    let url = server.url("postgres");
    drop(
        PgStore::open(PgConfig::new(url.clone()))
            .await
            .expect("open"),
    );
    Some((server, url))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_ups_of_many_keys_use_indexes_after_the_tables_grow() {
    let Some((_server, url)) =
        migrated_server("look_ups_of_many_keys_use_indexes_after_the_tables_grow").await
    else {
        return;
    };
    let mut config: tokio_postgres::Config = url.parse().expect("url");
    config.options("-c plan_cache_mode=force_custom_plan");
    let (client, connection) = config.connect(NoTls).await.expect("connect");
    tokio::spawn(connection);
    // Small tables, analyzed as such.
    client
        .batch_execute(
            "INSERT INTO imcore_messages SELECT 2, 'g', i, i, 'u', 'n' || i, 0, 2, i, '' \
                 FROM generate_series(1, 3) i;
             INSERT INTO imcore_heads VALUES (2, 'g', 3, 3, 0, 3, 3);
             INSERT INTO imcore_positions VALUES ('u', 2, 'g', 3, 3, 3);
             INSERT INTO imcore_extras VALUES (1, 2, 'g', 1, NULL, NULL, NULL, 3, 1, 1);
             INSERT INTO imcore_reads VALUES (1, 'u', 0);
             ANALYZE;",
        )
        .await
        .expect("small tables");
    let cases = [
        (revocations::by_ids(), "'{1}'"),
        (extras::by_ids(), "'{1}'"),
        (extras::READS_BY.to_owned(), "'w', '{1}'"),
        (extras::READS.to_owned(), "3, 'c1', 'w', '{1001}', 0"),
        (extras::between(), "3, 'c1', 1, 20000"),
        (extras::after_sql(), "3, 'c1', 0, 10"),
        (
            conversations::conversations_after_sql(),
            "'u', '{2}', '{g}', 0, 10, 10",
        ),
        (
            conversations::conversations_among_sql(),
            "'u', '{2}', '{g}', 0, 10, 10",
        ),
        (conversations::changed_after_sql(), "'w7', 5, 10, 10"),
    ];
    // Each run more often than PostgreSQL's five before it caches a plan.
    for (i, (sql, args)) in cases.iter().enumerate() {
        client
            .batch_execute(&format!("PREPARE p{i} AS {sql}"))
            .await
            .expect("prepare");
        for _ in 0..8 {
            client
                .batch_execute(&format!("EXECUTE p{i}({args})"))
                .await
                .expect("execute");
        }
    }
    // Then the tables grow (no ANALYZE: autovacuum may not have come).
    client
        .batch_execute(
            "INSERT INTO imcore_messages SELECT 3, 'c' || (i % 1000), i, i, 'w' || (i % 97), \
                 'm' || i, 0, 2, i, '' FROM generate_series(10, 200000) i;
             INSERT INTO imcore_heads SELECT 3, 'c' || i, 1, 1, 0, 1, 1 \
                 FROM generate_series(0, 50000) i;
             INSERT INTO imcore_positions SELECT 'w' || i, 3, 'c' || i, 1, 1, 1 \
                 FROM generate_series(0, 50000) i;
             INSERT INTO imcore_revocations SELECT i, 3, 'c', i, 'w', 0, i \
                 FROM generate_series(10, 50000) i;
             INSERT INTO imcore_extras SELECT i, 3, 'c' || (i % 1000), i, NULL, NULL, NULL, \
                 10, 1, i FROM generate_series(10, 50000) i;
             INSERT INTO imcore_reads SELECT i, 'w' || (i % 97), 0 \
                 FROM generate_series(10, 50000) i;",
        )
        .await
        .expect("grown tables");
    for (i, (sql, args)) in cases.iter().enumerate() {
        let plan = plan(&client, &format!("p{i}"), args).await;
        for table in [
            "imcore_messages",
            "imcore_heads",
            "imcore_positions",
            "imcore_revocations",
            "imcore_extras",
            "imcore_reads",
        ] {
            assert!(
                !plan.contains(&format!("Seq Scan on {table}")),
                "scans {table} after it grew:\n{sql}\n{plan}"
            );
        }
        // Reads name their messages: each probed by id, not found among
        // the channel's extras.
        if sql == extras::READS {
            assert!(
                !plan.contains("imcore_extras_seq") && !plan.contains("imcore_extras_version"),
                "reads scan the channel's extras:\n{plan}"
            );
        }
    }
}

/// The seq scans of the tables an append reads, in the current
/// transaction.
async fn seq_scans(client: &tokio_postgres::Client) -> Vec<(String, i64)> {
    let rows = client
        .query(
            "SELECT relname::text, seq_scan FROM pg_stat_xact_user_tables \
             WHERE relname IN ('imcore_messages', 'imcore_heads', 'imcore_tombstones', \
             'imcore_positions', 'imcore_counter') AND seq_scan > 0",
            &[],
        )
        .await
        .expect("seq scans");
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// One message in a call of its own, through `imcore_append`.
async fn append_one(client: &tokio_postgres::Client, id: i64, resend_of: Option<i64>) {
    let no = format!("n{}", resend_of.unwrap_or(id));
    let rows = client
        .query(
            "SELECT r_verdict FROM imcore_append('{0}', '{2}', '{g}', ARRAY[$1::int8], '{u}', \
             ARRAY[$2::text], '{0}', '{0}', '{f}', '{\\x01}', '{0}', '{NULL}', '{NULL}', \
             '{NULL}', false)",
            &[&id, &no],
        )
        .await
        .expect("append");
    let verdict: i16 = rows[0].get(0);
    assert_eq!(
        verdict,
        i16::from(resend_of.is_some()),
        "stored, or a duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_append_function_probes_indexes_after_the_tables_grow() {
    let Some((_server, url)) =
        migrated_server("the_append_function_probes_indexes_after_the_tables_grow").await
    else {
        return;
    };
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.expect("connect");
    tokio::spawn(connection);
    // Small tables, analyzed as such; the function's plans cached then.
    client.batch_execute("ANALYZE").await.expect("analyze");
    for id in 1..=8 {
        append_one(&client, id, None).await;
    }
    append_one(&client, 100, Some(1)).await;
    client
        .batch_execute(
            "INSERT INTO imcore_messages SELECT 3, 'c' || (i % 1000), i, i, 'w' || (i % 97), \
                 'm' || i, 0, 2, i, '' FROM generate_series(10, 200000) i;
             INSERT INTO imcore_heads SELECT 3, 'c' || i, 1, 1, 0, 1, 1 \
                 FROM generate_series(0, 50000) i;
             INSERT INTO imcore_positions SELECT 'w' || i, 3, 'c' || i, 1, 1, 1 \
                 FROM generate_series(0, 50000) i;
             INSERT INTO imcore_tombstones SELECT 'w', 3, 'c', 'm' || i, i, i, 0 \
                 FROM generate_series(300000, 350000) i;",
        )
        .await
        .expect("grown tables");
    // In a transaction, to read its own scan counts.
    client.batch_execute("BEGIN").await.expect("begin");
    append_one(&client, 500_000, None).await;
    append_one(&client, 500_001, Some(2)).await;
    assert_eq!(seq_scans(&client).await, [], "an append scanned a table");
    client.batch_execute("ROLLBACK").await.expect("rollback");
}
