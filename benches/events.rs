//! Message events: one long stream of 20-byte text deltas appended through
//! the hub (`Hub::append_event`: checks, the store's append, delivery to
//! one online device), against, in the same run, the same store's own
//! message append (`MessageLog::append` of a 20-byte message) and the bare
//! substrate (a raw sled insert / a raw PostgreSQL INSERT). Each stream is
//! 10,000 deltas long; the next iterations go on in a new message.
//!
//! sled runs with background durability (flushed every 500 ms) in all
//! three; PostgreSQL (a throwaway server) commits each call.

#[path = "../tests/common/servers.rs"]
mod servers;

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{rt, uid};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use imcore::event::{NewEvent, STREAM_DELTA};
use imcore::store::{Durability, PgConfig, PgStore, SledConfig, SledStore, Store};
use imcore::{
    Channel, ChannelType, ClientMsgNo, Device, DeviceFlag, DeviceId, EventId, Hub, Message,
    MessageIdGenerator, SendRequest,
};

const STREAM: u64 = 10_000;
const DELTA: &str = r#"{"kind":"text","delta":"twenty bytes of txt"}"#;

/// Appends `iters` deltas through `hub`, starting a new anchor message
/// every [`STREAM`] deltas; `n` counts deltas across calls.
async fn deltas(hub: &Hub, n: &AtomicU64, iters: u64) -> Duration {
    let to_bob = Channel::new(uid("bob").into(), ChannelType::PERSON);
    let mut took = Duration::ZERO;
    for _ in 0..iters {
        let i = n.fetch_add(1, Ordering::Relaxed);
        let reply = ClientMsgNo::new(format!("reply-{}", i / STREAM)).unwrap();
        if i % STREAM == 0 {
            let anchor = SendRequest::new(uid("bot"), to_bob.clone(), r#"{"type":1}"#)
                .client_msg_no(reply.clone());
            hub.send(anchor).await.unwrap();
        }
        let id = EventId::new(format!("e{i}")).unwrap();
        let e = NewEvent::new(to_bob.clone(), reply, id, STREAM_DELTA, uid("bot"), DELTA).unwrap();
        let started = Instant::now();
        hub.append_event(e).await.unwrap();
        took += started.elapsed();
    }
    took
}

/// A hub on `store` with bob online (his device drains what it gets).
fn hub_on(rt: &tokio::runtime::Runtime, store: Arc<dyn Store>) -> Hub {
    let hub = Hub::builder().store(store).build().unwrap();
    let _guard = rt.enter();
    let (_, mut conn) = hub.connect_in_process(
        Device::master(uid("bob"), DeviceId::new("phone").unwrap(), DeviceFlag::App),
        1 << 16,
    );
    let mut events = conn.take_events();
    rt.spawn(async move { while events.recv().await.is_some() {} });
    rt.spawn(async move { while conn.recv().await.is_some() {} });
    hub
}

/// `EventStore::append_event` of `iters` deltas, straight to the store.
async fn store_events(store: &dyn Store, n: &AtomicU64, iters: u64) -> Duration {
    let channel = Channel::group("store-only").unwrap();
    let started = Instant::now();
    for _ in 0..iters {
        let i = n.fetch_add(1, Ordering::Relaxed);
        let reply = ClientMsgNo::new(format!("s-{}", i / STREAM)).unwrap();
        let id = EventId::new(format!("e{i}")).unwrap();
        let e = NewEvent::new(channel.clone(), reply, id, STREAM_DELTA, uid("bot"), DELTA).unwrap();
        store.append_event(e, 0).await.unwrap();
    }
    started.elapsed()
}

/// `MessageLog::append` of one 20-byte message at a time into one channel.
async fn messages(
    store: &dyn Store,
    ids: &MessageIdGenerator,
    n: &AtomicU64,
    iters: u64,
) -> Duration {
    let channel = Channel::person(&uid("bot"), &uid("bob"));
    let started = Instant::now();
    for _ in 0..iters {
        let i = n.fetch_add(1, Ordering::Relaxed);
        let m = Message::new(
            ids.next_id(),
            ClientMsgNo::new(format!("m{i}")).unwrap(),
            uid("bot"),
            channel.clone(),
            0,
            "twenty bytes of txt!",
        );
        store.append(vec![m]).await.unwrap();
    }
    started.elapsed()
}

fn bench_sled(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("event_delta_sled");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    let dir = tempfile::tempdir().unwrap();
    let config = SledConfig::new(dir.path()).durability(Durability::Background {
        flush_every: Duration::from_millis(500),
    });
    let store = Arc::new(SledStore::open_with(config).unwrap());
    let hub = hub_on(&rt, store.clone());
    let n = AtomicU64::new(0);
    g.bench_function(BenchmarkId::new("hub_append_event", "sled"), |b| {
        b.to_async(&rt).iter_custom(|iters| deltas(&hub, &n, iters))
    });
    let e = AtomicU64::new(0);
    g.bench_function(BenchmarkId::new("store_append_event", "sled"), |b| {
        b.to_async(&rt)
            .iter_custom(|iters| store_events(&*store, &e, iters))
    });
    let ids = MessageIdGenerator::new(2).unwrap();
    let m = AtomicU64::new(0);
    g.bench_function(BenchmarkId::new("store_append_message", "sled"), |b| {
        b.to_async(&rt)
            .iter_custom(|iters| messages(&*store, &ids, &m, iters))
    });
    let raw = sled::Config::new().temporary(true).open().unwrap();
    let tree = raw.open_tree("t").unwrap();
    let k = AtomicU64::new(0);
    g.bench_function(BenchmarkId::new("substrate_insert", "sled"), |b| {
        b.iter(|| {
            let i = k.fetch_add(1, Ordering::Relaxed);
            tree.insert(i.to_be_bytes(), DELTA.as_bytes()).unwrap()
        })
    });
    g.finish();
}

fn bench_postgres(c: &mut Criterion) {
    let Some(server) = servers::PgServer::start("benches/events") else {
        return;
    };
    let rt = rt();
    let mut g = c.benchmark_group("event_delta_postgres");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    let url = server.url("postgres");
    let store = Arc::new(
        rt.block_on(PgStore::open(PgConfig::new(url.clone())))
            .unwrap(),
    );
    let hub = hub_on(&rt, store.clone());
    let n = AtomicU64::new(0);
    g.bench_function(BenchmarkId::new("hub_append_event", "postgres"), |b| {
        b.to_async(&rt).iter_custom(|iters| deltas(&hub, &n, iters))
    });
    let e = AtomicU64::new(0);
    g.bench_function(BenchmarkId::new("store_append_event", "postgres"), |b| {
        b.to_async(&rt)
            .iter_custom(|iters| store_events(&*store, &e, iters))
    });
    let ids = MessageIdGenerator::new(2).unwrap();
    let m = AtomicU64::new(0);
    g.bench_function(BenchmarkId::new("store_append_message", "postgres"), |b| {
        b.to_async(&rt)
            .iter_custom(|iters| messages(&*store, &ids, &m, iters))
    });
    let (client, insert) = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute("CREATE TABLE raw_events (k int8 PRIMARY KEY, v bytea NOT NULL)")
            .await
            .unwrap();
        let insert = client
            .prepare("INSERT INTO raw_events VALUES ($1, $2)")
            .await
            .unwrap();
        (client, insert)
    });
    let k = AtomicU64::new(0);
    g.bench_function(BenchmarkId::new("substrate_insert", "postgres"), |b| {
        b.to_async(&rt).iter(|| async {
            let i = k.fetch_add(1, Ordering::Relaxed) as i64;
            client
                .execute(&insert, &[&i, &DELTA.as_bytes()])
                .await
                .unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, bench_sled, bench_postgres);
criterion_main!(benches);
