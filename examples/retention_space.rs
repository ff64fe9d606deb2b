//! Shows that retention gives space back: fills one channel (100,000
//! messages of 1 KiB by default), deletes it whole through the hub's
//! retention (`Hub::delete_history`), and reports the store's size on
//! disk at each step.
//!
//! - sled: `size_on_disk()` after the fill, after the deletion (flushed),
//!   after as many messages again written to another channel (sled 0.34
//!   frees the segments the deletion emptied and writes into them: the
//!   file grows by far less than the new data), and after a reopen.
//! - PostgreSQL (with `--postgres URL`, or `IMCORE_PG_URL`):
//!   `pg_total_relation_size('imcore_messages')` after the fill, after the
//!   deletion, after `VACUUM` (which gives the emptied pages back to the
//!   file system when they are at its end) and after `VACUUM FULL`. It
//!   creates and drops a database of its own, `imcore_retention_space`.
//!
//! ```text
//! cargo run --release --example retention_space -- [--messages N] [--postgres URL]
//! ```

use std::sync::Arc;
use std::time::Instant;

use imcore::store::{PgConfig, PgStore, SledStore, Store};
use imcore::{Channel, ClientMsgNo, Hub, HubConfig, Message, MessageIdGenerator, Uid};

const BATCH: u64 = 500;

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

async fn fill(store: &dyn Store, ids: &MessageIdGenerator, channel: &Channel, n: u64) {
    let payload = vec![b'x'; 1024];
    let mut sent = 0;
    while sent < n {
        let take = (n - sent).min(BATCH);
        let batch = (sent..sent + take)
            .map(|i| {
                Message::new(
                    ids.next_id(),
                    ClientMsgNo::new(format!("{}-{i}", channel.id.as_str())).unwrap(),
                    Uid::new("filler").unwrap(),
                    channel.clone(),
                    0,
                    payload.clone(),
                )
            })
            .collect();
        store.append(batch).await.unwrap();
        sent += take;
    }
}

/// Deletes the channel whole through the hub; prints how long it took.
async fn delete_all(store: Arc<dyn Store>, channel: &Channel) {
    let hub = Hub::builder()
        .store(store.clone())
        .config(HubConfig::default())
        .build()
        .unwrap();
    let last = store.last_seq(channel).await.unwrap();
    let started = Instant::now();
    let report = hub.delete_history(channel, last, false).await.unwrap();
    let took = started.elapsed();
    println!(
        "  deleted {} messages in {:.2} s ({:.0}/s)",
        report.deleted_count,
        took.as_secs_f64(),
        report.deleted_count as f64 / took.as_secs_f64()
    );
}

async fn sled(n: u64) {
    println!("sled ({n} messages of 1 KiB):");
    let dir = tempfile::tempdir().unwrap();
    let ids = MessageIdGenerator::new(1).unwrap();
    let channel = Channel::group("space").unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    fill(&*store, &ids, &channel, n).await;
    store.flush().await.unwrap();
    println!(
        "  after the fill:               {}",
        mib(store.size_on_disk().unwrap())
    );
    delete_all(store.clone(), &channel).await;
    store.flush().await.unwrap();
    println!(
        "  after the deletion, flushed:  {}",
        mib(store.size_on_disk().unwrap())
    );
    drop(store);
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    println!(
        "  after a reopen:               {}",
        mib(store.size_on_disk().unwrap())
    );
    let other = Channel::group("space-again").unwrap();
    fill(&*store, &ids, &other, n).await;
    store.flush().await.unwrap();
    println!(
        "  after as much again elsewhere: {}",
        mib(store.size_on_disk().unwrap())
    );
    drop(store);
    let store = SledStore::open(dir.path()).unwrap();
    println!(
        "  after a reopen:               {}",
        mib(store.size_on_disk().unwrap())
    );
}

async fn postgres(url: &str, n: u64) {
    println!("PostgreSQL ({n} messages of 1 KiB):");
    let admin = connect(url).await;
    let db = "imcore_retention_space";
    for statement in [
        format!("DROP DATABASE IF EXISTS {db}"),
        format!("CREATE DATABASE {db}"),
    ] {
        admin.batch_execute(&statement).await.unwrap();
    }
    let mut config: tokio_postgres::Config = url.parse().unwrap();
    config.dbname(db);
    let db_url = format!(
        "host={} port={} user={} dbname={db} sslmode=disable",
        host_of(&config),
        config.get_ports().first().copied().unwrap_or(5432),
        config.get_user().unwrap_or("postgres"),
    );
    let store = Arc::new(PgStore::open(PgConfig::new(db_url.clone())).await.unwrap());
    let client = connect(&db_url).await;
    let size = || async {
        let row = client
            .query_one("SELECT pg_total_relation_size('imcore_messages')", &[])
            .await
            .unwrap();
        mib(row.get::<_, i64>(0) as u64)
    };
    let ids = MessageIdGenerator::new(1).unwrap();
    let channel = Channel::group("space").unwrap();
    fill(&*store, &ids, &channel, n).await;
    println!("  after the fill:      {}", size().await);
    delete_all(store.clone(), &channel).await;
    println!("  after the deletion:  {}", size().await);
    client
        .batch_execute("VACUUM imcore_messages")
        .await
        .unwrap();
    println!("  after VACUUM:        {}", size().await);
    client
        .batch_execute("VACUUM FULL imcore_messages")
        .await
        .unwrap();
    println!("  after VACUUM FULL:   {}", size().await);
    drop(client);
    drop(store);
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .await
        .unwrap();
}

fn host_of(config: &tokio_postgres::Config) -> String {
    match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut n, mut url) = (100_000, std::env::var("IMCORE_PG_URL").ok());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--messages" => n = args.next().and_then(|v| v.parse().ok()).expect("a number"),
            "--postgres" => url = args.next(),
            other => panic!("unknown argument {other}"),
        }
    }
    sled(n).await;
    match url {
        Some(url) => postgres(&url, n).await,
        None => println!("PostgreSQL: skipped (give --postgres URL or IMCORE_PG_URL)"),
    }
}
