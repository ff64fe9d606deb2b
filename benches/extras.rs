//! Edits and read receipts against sends, on the same store in the same
//! run: `Hub::send` of a 200-byte message to a group of three (one member
//! online), `Hub::edit` of a message (its content changed each time), and
//! `Hub::mark_read` of one message sent with receipts (a new message and
//! reader pair each time; the sends that make them are not timed).
//!
//! sled runs with background durability (flushed every 500 ms);
//! PostgreSQL (a throwaway server) commits each call.

#[path = "../tests/common/servers.rs"]
mod servers;

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{rt, uid, PAYLOAD};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use imcore::extra::EditRequest;
use imcore::store::{
    Durability, NewEdit, NewReads, PgConfig, PgStore, SledConfig, SledStore, Store,
};
use imcore::{
    Channel, Device, DeviceFlag, DeviceId, Hub, HubConfig, MemoryDirectory, MessageId,
    RevokeTarget, SendRequest, Setting,
};

/// A hub on `store` with group `g` (alice, bob, carol) and bob online (his
/// device drains what it gets).
fn hub_on(rt: &tokio::runtime::Runtime, store: Arc<dyn Store>) -> (Hub, Channel) {
    let directory = Arc::new(MemoryDirectory::new());
    let group = Channel::group("g").unwrap();
    directory.create_channel(&group, &uid("alice"), [uid("bob"), uid("carol")]);
    let hub = Hub::builder()
        .store(store)
        .directory(directory)
        .config(HubConfig::default().send_rate(None))
        .build()
        .unwrap();
    let _guard = rt.enter();
    let (_, mut conn) = hub.connect_in_process(
        Device::master(uid("bob"), DeviceId::new("phone").unwrap(), DeviceFlag::App),
        1 << 16,
    );
    rt.spawn(async move { while conn.recv().await.is_some() {} });
    (hub, group)
}

async fn send(hub: &Hub, group: &Channel, receipt: bool) -> MessageId {
    let mut request = SendRequest::new(uid("alice"), group.clone(), &PAYLOAD[..]);
    if receipt {
        request = request.setting(Setting(Setting::RECEIPT));
    }
    hub.send(request).await.unwrap().message_id
}

async fn sends(hub: &Hub, group: &Channel, iters: u64) -> Duration {
    let started = Instant::now();
    for _ in 0..iters {
        send(hub, group, false).await;
    }
    started.elapsed()
}

async fn edits(hub: &Hub, target: MessageId, n: &AtomicU64, iters: u64) -> Duration {
    let started = Instant::now();
    for _ in 0..iters {
        let i = n.fetch_add(1, Ordering::Relaxed);
        let content = format!("{{\"type\":1,\"content\":\"edit {i}\"}}");
        let request = EditRequest::new(uid("alice"), RevokeTarget::MessageId(target), content);
        hub.edit(request).await.unwrap();
    }
    started.elapsed()
}

async fn reads(hub: &Hub, group: &Channel, iters: u64) -> Duration {
    let mut ids = Vec::with_capacity(iters as usize);
    for _ in 0..iters {
        ids.push(send(hub, group, true).await);
    }
    let started = Instant::now();
    for id in ids {
        let out = hub.mark_read(&uid("bob"), group, &[id]).await.unwrap();
        assert_eq!(out.counted.len(), 1);
    }
    started.elapsed()
}

/// The store alone: `record_reads` of one message sent with receipts
/// (sent, untimed, through the hub) by a new reader each time.
async fn store_reads(hub: &Hub, group: &Channel, iters: u64) -> Duration {
    let mut ids = Vec::with_capacity(iters as usize);
    for _ in 0..iters {
        ids.push(send(hub, group, true).await);
    }
    let store = hub.store();
    let started = Instant::now();
    for id in ids {
        let reads = NewReads {
            reader: uid("bob"),
            channel: group.clone(),
            messages: vec![(id, 0)],
            read_at_ms: 0,
        };
        store.record_reads(reads).await.unwrap();
    }
    started.elapsed()
}

/// The store alone: `record_edit` of one message, its content changed
/// each time.
async fn store_edits(hub: &Hub, group: &Channel, n: &AtomicU64, iters: u64) -> Duration {
    let target = send(hub, group, false).await;
    let store = hub.store();
    let started = Instant::now();
    for _ in 0..iters {
        let i = n.fetch_add(1, Ordering::Relaxed);
        let edit = NewEdit {
            message_id: target,
            channel: group.clone(),
            message_seq: 0,
            editor: uid("alice"),
            content: format!("edit {i}").into(),
            edited_at_ms: 0,
        };
        store.record_edit(edit).await.unwrap();
    }
    started.elapsed()
}

fn run(c: &mut Criterion, name: &str, rt: &tokio::runtime::Runtime, store: Arc<dyn Store>) {
    let (hub, group) = hub_on(rt, store);
    let mut g = c.benchmark_group(format!("extras_{name}"));
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    g.bench_function(BenchmarkId::new("hub_send", name), |b| {
        b.to_async(rt)
            .iter_custom(|iters| sends(&hub, &group, iters))
    });
    let target = rt.block_on(send(&hub, &group, false));
    let n = AtomicU64::new(0);
    g.bench_function(BenchmarkId::new("hub_edit", name), |b| {
        b.to_async(rt)
            .iter_custom(|iters| edits(&hub, target, &n, iters))
    });
    g.bench_function(BenchmarkId::new("hub_mark_read", name), |b| {
        b.to_async(rt)
            .iter_custom(|iters| reads(&hub, &group, iters))
    });
    g.bench_function(BenchmarkId::new("store_record_edit", name), |b| {
        b.to_async(rt)
            .iter_custom(|iters| store_edits(&hub, &group, &n, iters))
    });
    g.bench_function(BenchmarkId::new("store_record_reads", name), |b| {
        b.to_async(rt)
            .iter_custom(|iters| store_reads(&hub, &group, iters))
    });
    g.finish();
}

fn bench_memory(c: &mut Criterion) {
    let rt = rt();
    run(c, "memory", &rt, Arc::new(imcore::MemoryStore::new()));
}

fn bench_sled(c: &mut Criterion) {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let config = SledConfig::new(dir.path()).durability(Durability::Background {
        flush_every: Duration::from_millis(500),
    });
    let store = Arc::new(SledStore::open_with(config).unwrap());
    run(c, "sled", &rt, store);
}

fn bench_postgres(c: &mut Criterion) {
    let Some(server) = servers::PgServer::start("benches/extras") else {
        return;
    };
    let rt = rt();
    let url = server.url("postgres");
    let store = Arc::new(rt.block_on(PgStore::open(PgConfig::new(url))).unwrap());
    run(c, "postgres", &rt, store);
}

criterion_group!(benches, bench_memory, bench_sled, bench_postgres);
criterion_main!(benches);
