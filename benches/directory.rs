//! The directory a send asks, `StoredDirectory`, against the bare
//! substrate in the same run:
//!
//! - warm `check_send` of a member of a 10,000-member group (cache hit, no
//!   store call); substrate: a `HashSet<Uid>` look-up behind an `RwLock`,
//!   and `MemoryDirectory` for reference;
//! - cold `check_send` (a cache miss: the channel's version, record, both
//!   lists and its subscribers read from the store) of a 10-member group,
//!   on sled and on PostgreSQL; substrate: one raw sled `get` / one
//!   indexed primary-key SELECT;
//! - a send into a group of 100,000 members on the hub (sled, nobody
//!   online), through `StoredDirectory` and through `MemoryDirectory`.
//!
//! `IMCORE_BENCH_QUICK=1` shrinks the big group to 10,000 members.

#[path = "../tests/common/servers.rs"]
mod servers;

mod common;

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use common::{quick, rt, uid, PAYLOAD};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use imcore::directory::ChannelInfo;
use imcore::store::{Durability, PgConfig, PgStore, SledConfig, SledStore};
use imcore::{
    Channel, Directory, DirectoryConfig, DirectoryStore, Hub, MemoryDirectory, SendRequest,
    StoredDirectory, SystemClock, Uid,
};

fn members(prefix: &str, n: usize) -> Vec<Uid> {
    (0..n).map(|i| uid(&format!("{prefix}{i:06}"))).collect()
}

/// A directory that can hold one channel only: every other channel's
/// check is a miss.
fn one_channel(store: Arc<dyn DirectoryStore>) -> StoredDirectory {
    let config = DirectoryConfig::default().capacity(1);
    StoredDirectory::with(store, config, Arc::new(SystemClock))
}

/// Two 10-member groups whose checks evict each other.
async fn cold_groups(dir: &StoredDirectory) -> [(Channel, Uid); 2] {
    let mut out = Vec::new();
    for name in ["cold-a", "cold-b"] {
        let ch = Channel::group(name).unwrap();
        let m = members(name, 10);
        dir.create_channel(&ch, ChannelInfo::default(), &m)
            .await
            .unwrap();
        out.push((ch, m[3].clone()));
    }
    [out[0].clone(), out[1].clone()]
}

fn bench_warm(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("directory_warm_check_send_10k");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    let store = Arc::new(SledStore::temporary().unwrap());
    let stored = StoredDirectory::new(store);
    let memory = MemoryDirectory::new();
    let ch = Channel::group("warm").unwrap();
    let m = members("w", 10_000);
    rt.block_on(stored.create_channel(&ch, ChannelInfo::default(), &m))
        .unwrap();
    memory.create_channel(&ch, &m[0], m[1..].iter().cloned());
    let sender = m[5_000].clone();
    let set: RwLock<HashSet<Uid>> = RwLock::new(m.iter().cloned().collect());
    rt.block_on(stored.check_send(&sender, &ch)).unwrap();
    g.bench_function("stored_directory", |b| {
        b.to_async(&rt)
            .iter(|| async { stored.check_send(&sender, &ch).await.unwrap() })
    });
    g.bench_function("memory_directory", |b| {
        b.to_async(&rt)
            .iter(|| async { memory.check_send(&sender, &ch).await.unwrap() })
    });
    g.bench_function("substrate_hashset", |b| {
        b.iter(|| set.read().unwrap().contains(&sender))
    });
    g.finish();
}

fn bench_cold(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("directory_cold_check_send");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    let dir = tempfile::tempdir().unwrap();
    let sled = Arc::new(SledStore::open(dir.path()).unwrap());
    let stored = one_channel(sled);
    let groups = rt.block_on(cold_groups(&stored));
    let mut turn = 0usize;
    g.bench_function(BenchmarkId::new("stored_directory", "sled"), |b| {
        b.to_async(&rt).iter(|| {
            turn += 1;
            let (ch, m) = &groups[turn % 2];
            let stored = &stored;
            async move { stored.check_send(m, ch).await.unwrap() }
        })
    });
    let raw = sled::Config::new().temporary(true).open().unwrap();
    let tree = raw.open_tree("t").unwrap();
    for i in 0..1_000u32 {
        tree.insert(format!("key{i}"), &[1u8; 8]).unwrap();
    }
    g.bench_function(BenchmarkId::new("substrate_get", "sled"), |b| {
        b.iter(|| tree.get(b"key500").unwrap())
    });

    if let Some(server) = servers::PgServer::start("benches/directory") {
        let url = server.url("postgres");
        let pg = Arc::new(
            rt.block_on(PgStore::open(PgConfig::new(url.clone())))
                .unwrap(),
        );
        let stored = one_channel(pg);
        let groups = rt.block_on(cold_groups(&stored));
        g.bench_function(BenchmarkId::new("stored_directory", "postgres"), |b| {
            b.to_async(&rt).iter(|| {
                turn += 1;
                let (ch, m) = &groups[turn % 2];
                let stored = &stored;
                async move { stored.check_send(m, ch).await.unwrap() }
            })
        });
        let (client, select) = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let select = client
                .prepare(
                    "SELECT 1 FROM imcore_dir_members WHERE ctype = $1 AND cid = $2 AND uid = $3",
                )
                .await
                .unwrap();
            (client, select)
        });
        g.bench_function(BenchmarkId::new("substrate_select", "postgres"), |b| {
            b.to_async(&rt).iter(|| async {
                let rows = client
                    .query(&select, &[&2i16, &"cold-a", &"cold-a000003"])
                    .await
                    .unwrap();
                assert_eq!(rows.len(), 1);
            })
        });
    }
    g.finish();
}

fn bench_big_group_send(c: &mut Criterion) {
    let rt = rt();
    let n = if quick() { 10_000 } else { 100_000 };
    let mut g = c.benchmark_group("hub_send_big_group");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    let m = members("b", n);
    let ch = Channel::group("big").unwrap();
    let sled = |dir: &std::path::Path| {
        let config = SledConfig::new(dir).durability(Durability::Background {
            flush_every: Duration::from_millis(500),
        });
        Arc::new(SledStore::open_with(config).unwrap())
    };
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = sled(d1.path());
    let stored = Arc::new(StoredDirectory::new(store.clone()));
    rt.block_on(async {
        stored
            .create_channel(&ch, ChannelInfo::default(), &m)
            .await
            .unwrap();
        // The 200,000 keys just written on disk before measuring, so that
        // sled's background flush of them is not measured with the sends.
        store.flush().await.unwrap();
    });
    let memory = Arc::new(MemoryDirectory::new());
    memory.create_channel(&ch, &m[0], m[1..].iter().cloned());
    let hubs: [(&str, Hub); 2] = [
        (
            "stored_directory",
            Hub::builder()
                .config(unlimited())
                .store(store)
                .directory(stored)
                .build()
                .unwrap(),
        ),
        (
            "memory_directory",
            Hub::builder()
                .config(unlimited())
                .store(sled(d2.path()))
                .directory(memory)
                .build()
                .unwrap(),
        ),
    ];
    for (name, hub) in &hubs {
        g.bench_function(BenchmarkId::new(*name, n), |b| {
            b.to_async(&rt).iter(|| async {
                let req = SendRequest::new(m[1].clone(), ch.clone(), Bytes::from_static(&PAYLOAD));
                hub.send(req).await.unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_warm, bench_cold, bench_big_group_send);
criterion_main!(benches);

/// The hub's settings here: no send rate (these measure the hub, and send
/// from one uid as fast as it goes).
fn unlimited() -> imcore::HubConfig {
    imcore::HubConfig::default().send_rate(None)
}
