//! Retention: how fast a retention pass (`Hub::retention_pass`, a rule of
//! no message kept, batches of 500, the default resend protection of 24
//! hours) deletes a channel's messages, against, in the same run, the bare
//! substrate deleting the same data.
//!
//! Two cases. The realistic one, `pass_delete_old`: retention deletes old
//! history, so the messages are older than the resend protection when
//! deleted (timestamp 0) and the pass writes no tombstone. The other,
//! `pass_delete_young`: messages sent just now (the same pass deletes
//! them), each of which leaves a resend tombstone.
//!
//! The substrate: on sled, a raw tree holding each message's three keys
//! (its 200-byte record, its id index and its resend index),
//! `substrate_remove` removing all three 500 messages to a batch (what an
//! old message's deletion does), and `substrate_remove_and_tombstone`
//! removing two and overwriting the resend index with a 46-byte
//! tombstone (what a young one's does). On PostgreSQL (a throwaway
//! server), a plain copy of the messages table (`LIKE imcore_messages
//! INCLUDING ALL`, the same rows) emptied by the same range `DELETE …
//! WHERE seq <= (SELECT min(seq) …) + 499`, one transaction per batch
//! (`substrate_delete`); and the same with each deleted row's key
//! inserted into a copy of the tombstones table in the same statement
//! (`substrate_delete_and_tombstone`), the substrate's cost of a young
//! message's deletion.
//!
//! Each iteration deletes one message; the messages are written before
//! the timed part. sled runs with background durability (flushed every
//! 500 ms). `IMCORE_BENCH_QUICK=1` shortens the measurement.

#[path = "../tests/common/servers.rs"]
mod servers;

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{quick, rt, uid, PAYLOAD};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use imcore::hub::{RetentionPolicy, RetentionRule};
use imcore::store::{Durability, PgConfig, PgStore, SledConfig, SledStore, Store};
use imcore::{Channel, ClientMsgNo, Hub, HubConfig, Message, MessageIdGenerator};

/// Messages deleted per store batch, in the pass and in the substrate.
const BATCH: usize = 500;

fn hub_on(store: Arc<dyn Store>) -> Hub {
    let policy = RetentionPolicy::default()
        .all(RetentionRule::keep_all().max_messages(Some(0)))
        .batch(BATCH);
    let config = HubConfig::default().send_rate(None).retention(policy);
    Hub::builder().store(store).config(config).build().unwrap()
}

/// The two cases: messages sent long before the pass (timestamp 0), or
/// just now.
const AGES: [(&str, bool); 2] = [("pass_delete_old", false), ("pass_delete_young", true)];

/// A message's timestamp: now when `young`, else 0 (the epoch).
fn sent_at(young: bool) -> i64 {
    match young {
        true => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
        false => 0,
    }
}

/// Appends `n` messages of [`PAYLOAD`] to `channel`, 500 to a call, sent
/// now when `young`, else long ago.
async fn fill(
    store: &dyn Store,
    ids: &MessageIdGenerator,
    channel: &Channel,
    n: u64,
    k: &AtomicU64,
    young: bool,
) {
    let at = sent_at(young);
    let mut left = n;
    while left > 0 {
        let take = left.min(BATCH as u64);
        let batch = (0..take)
            .map(|_| {
                let i = k.fetch_add(1, Ordering::Relaxed);
                Message::new(
                    ids.next_id(),
                    ClientMsgNo::new(format!("m{i}")).unwrap(),
                    uid("bot"),
                    channel.clone(),
                    at,
                    PAYLOAD.to_vec(),
                )
            })
            .collect();
        store.append(batch).await.unwrap();
        left -= take;
    }
}

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    let time = if quick() { 2 } else { 5 };
    g.sample_size(10)
        .measurement_time(Duration::from_secs(time))
        .throughput(Throughput::Elements(1));
    g
}

fn bench_sled(c: &mut Criterion) {
    let rt = rt();
    let mut g = group(c, "retention_sled");
    let dir = tempfile::tempdir().unwrap();
    let config = SledConfig::new(dir.path()).durability(Durability::Background {
        flush_every: Duration::from_millis(500),
    });
    let store: Arc<dyn Store> = Arc::new(SledStore::open_with(config).unwrap());
    let hub = hub_on(store.clone());
    let ids = MessageIdGenerator::new(2).unwrap();
    let (k, channel) = (AtomicU64::new(0), Channel::group("retention").unwrap());
    for (name, young) in AGES {
        g.bench_function(BenchmarkId::new(name, "sled"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (store, hub, ids, k, channel) = (&store, &hub, &ids, &k, &channel);
                async move {
                    fill(&**store, ids, channel, iters, k, young).await;
                    let started = Instant::now();
                    let pass = hub.retention_pass().await.unwrap();
                    let took = started.elapsed();
                    assert_eq!(pass.deleted, iters);
                    took
                }
            })
        });
    }
    let raw = sled::Config::new().temporary(true).open().unwrap();
    let tree = raw.open_tree("t").unwrap();
    let n = AtomicU64::new(0);
    let record = [b'x'; 38 + 3 + 8 + 200];
    for (name, tombstone) in [
        ("substrate_remove", false),
        ("substrate_remove_and_tombstone", true),
    ] {
        g.bench_function(BenchmarkId::new(name, "sled"), |b| {
            b.iter_custom(|iters| {
                // Each message's three keys, as the store writes them.
                let first = n.fetch_add(iters, Ordering::Relaxed);
                let keys = |i: u64| {
                    let mut log = b"m\x02\x09retention".to_vec();
                    log.extend_from_slice(&i.to_be_bytes());
                    let mut id = b"i".to_vec();
                    id.extend_from_slice(&i.to_be_bytes());
                    let sender = format!("r\x03bot\x02\x09retentionm{i}").into_bytes();
                    [log, id, sender]
                };
                for i in first..first + iters {
                    let [log, id, sender] = keys(i);
                    tree.insert(log, &record[..]).unwrap();
                    tree.insert(id, &record[..20]).unwrap();
                    tree.insert(sender, &record[..28]).unwrap();
                }
                let started = Instant::now();
                let mut i = first;
                while i < first + iters {
                    let mut batch = sled::Batch::default();
                    for j in i..(i + BATCH as u64).min(first + iters) {
                        let [log, id, sender] = keys(j);
                        batch.remove(log);
                        batch.remove(id);
                        match tombstone {
                            true => batch.insert(sender, &record[..46]),
                            false => batch.remove(sender),
                        }
                    }
                    tree.apply_batch(batch).unwrap();
                    i += BATCH as u64;
                }
                started.elapsed()
            })
        });
    }
    g.finish();
}

const COPY: &str = "INSERT INTO raw_messages SELECT * FROM imcore_messages \
    WHERE ctype = 2 AND cid = 'retention'";
const RAW_DELETE: &str = "DELETE FROM raw_messages WHERE ctype = 2 AND cid = 'retention' \
    AND seq <= (SELECT min(seq) FROM raw_messages WHERE ctype = 2 AND cid = 'retention') + $1 - 1";

/// [`RAW_DELETE`] with what a resend tombstone costs: each deleted row's
/// resend key, id and seq inserted into a plain copy of the tombstones
/// table, in the same statement.
const RAW_DELETE_AND_TOMBSTONE: &str = "WITH gone AS (DELETE FROM raw_messages \
    WHERE ctype = 2 AND cid = 'retention' \
    AND seq <= (SELECT min(seq) FROM raw_messages WHERE ctype = 2 AND cid = 'retention') + $1 - 1 \
    RETURNING from_uid, ctype, cid, client_msg_no, message_id, seq) \
    INSERT INTO raw_tombstones SELECT *, 0 FROM gone";

fn bench_postgres(c: &mut Criterion) {
    let Some(server) = servers::PgServer::start("benches/retention") else {
        return;
    };
    let rt = rt();
    let mut g = group(c, "retention_postgres");
    let url = server.url("postgres");
    let store: Arc<dyn Store> = Arc::new(
        rt.block_on(PgStore::open(PgConfig::new(url.clone())))
            .unwrap(),
    );
    let hub = hub_on(store.clone());
    let client = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(
                "CREATE TABLE raw_messages (LIKE imcore_messages INCLUDING ALL); \
                 CREATE TABLE raw_tombstones (LIKE imcore_tombstones INCLUDING ALL)",
            )
            .await
            .unwrap();
        client
    });
    let ids = MessageIdGenerator::new(2).unwrap();
    let (k, channel) = (AtomicU64::new(0), Channel::group("retention").unwrap());
    // The passes and the substrate delete the same rows: each iteration's
    // rows are copied before the pass deletes them, and deleted raw in
    // the next benchmarks.
    for (name, young) in AGES {
        g.bench_function(BenchmarkId::new(name, "postgres"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (store, hub, ids, k, channel, client) =
                    (&store, &hub, &ids, &k, &channel, &client);
                async move {
                    fill(&**store, ids, channel, iters, k, young).await;
                    client.execute(COPY, &[]).await.unwrap();
                    let started = Instant::now();
                    let pass = hub.retention_pass().await.unwrap();
                    let took = started.elapsed();
                    assert_eq!(pass.deleted, iters);
                    took
                }
            })
        });
    }
    let copied = rt.block_on(async {
        let row = client
            .query_one("SELECT count(*) FROM raw_messages", &[])
            .await
            .unwrap();
        row.get::<_, i64>(0) as u64
    });
    let left = AtomicU64::new(copied);
    for (name, raw_delete) in [
        ("substrate_delete", RAW_DELETE),
        ("substrate_delete_and_tombstone", RAW_DELETE_AND_TOMBSTONE),
    ] {
        // Prepared once, as the store's statements are.
        let raw_delete = rt.block_on(client.prepare(raw_delete)).unwrap();
        let raw_delete = &raw_delete;
        g.bench_function(BenchmarkId::new(name, "postgres"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (client, left, store, hub, ids, k, channel) =
                    (&client, &left, &store, &hub, &ids, &k, &channel);
                async move {
                    // Top up with more of the same rows when the copy runs low.
                    if left.load(Ordering::Relaxed) < iters {
                        fill(&**store, ids, channel, iters, k, false).await;
                        client.execute(COPY, &[]).await.unwrap();
                        hub.retention_pass().await.unwrap();
                        left.fetch_add(iters, Ordering::Relaxed);
                    }
                    let started = Instant::now();
                    let mut deleted = 0;
                    while deleted < iters {
                        let limit = (iters - deleted).min(BATCH as u64) as i64;
                        match client.execute(raw_delete, &[&limit]).await.unwrap() {
                            0 => break,
                            n => deleted += n,
                        }
                    }
                    let took = started.elapsed();
                    left.fetch_sub(deleted, Ordering::Relaxed);
                    took
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_sled, bench_postgres);
criterion_main!(benches);
