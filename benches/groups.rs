//! G: sends into groups of growing size, nobody online (read diffusion: a
//! send's store work does not grow with the group), against sends into
//! 1:1 channels in the same run; and the conversation sync of a user in
//! 1,000 channels, at two history lengths.
//!
//! `IMCORE_BENCH_QUICK=1` shrinks the data sets (CI runs it that way with
//! `cargo bench -- --quick`).

mod common;

use common::{quick, rt, uid, PAYLOAD};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use imcore::store::{Durability, SledConfig, SledStore, Store};
use imcore::{
    Channel, ChannelType, ClientMsgNo, Hub, MemoryDirectory, MemoryStore, Message, MessageId,
    SendRequest, Uid,
};

const SENDERS: usize = 4;

fn sled_store(dir: &std::path::Path) -> Arc<dyn Store> {
    let config = SledConfig::new(dir).durability(Durability::Background {
        flush_every: std::time::Duration::from_millis(500),
    });
    Arc::new(SledStore::open_with(config).unwrap())
}

/// `n` sends from `SENDERS` concurrent tasks, each to its own target.
async fn send_all(hub: &Hub, targets: &Arc<Vec<(Uid, Channel)>>, n: u64) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(SENDERS);
    for s in 0..SENDERS {
        let (hub, targets) = (hub.clone(), targets.clone());
        let count = n / SENDERS as u64 + u64::from((s as u64) < n % SENDERS as u64);
        tasks.push(tokio::spawn(async move {
            let (from, to) = &targets[s % targets.len()];
            for _ in 0..count {
                let req = SendRequest::new(from.clone(), to.clone(), Bytes::from_static(&PAYLOAD));
                hub.send(req).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

/// A hub on `store` with one group of `members` (the first `SENDERS` of
/// them send), or with `SENDERS` 1:1 channels when `members` is 0.
fn hub_with(store: Arc<dyn Store>, members: usize) -> (Hub, Arc<Vec<(Uid, Channel)>>) {
    let directory = Arc::new(MemoryDirectory::new());
    let hub = Hub::builder()
        .config(unlimited())
        .store(store)
        .directory(directory.clone())
        .build()
        .unwrap();
    let targets = if members == 0 {
        (0..SENDERS)
            .map(|i| {
                let to = Channel::new(uid(&format!("b{i}")).into(), ChannelType::PERSON);
                (uid(&format!("a{i}")), to)
            })
            .collect()
    } else {
        let group = Channel::group(format!("g{members}")).unwrap();
        let uids: Vec<Uid> = (0..members).map(|i| uid(&format!("m{i}"))).collect();
        directory.create_channel(&group, &uids[0], uids[1..].iter().cloned());
        uids.iter()
            .take(SENDERS)
            .map(|u| (u.clone(), group.clone()))
            .collect()
    };
    (hub, Arc::new(targets))
}

fn g_group_sends(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("g_group_send");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    let sizes: &[usize] = if quick() {
        &[0, 2, 2_000]
    } else {
        &[0, 2, 20, 200, 2_000, 10_000]
    };
    for backend in ["sled", "memory"] {
        for &members in sizes {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn Store> = match backend {
                "sled" => sled_store(dir.path()),
                _ => Arc::new(MemoryStore::new()),
            };
            let (hub, targets) = hub_with(store, members);
            let name = if members == 0 {
                "1to1".to_string()
            } else {
                format!("group_{members}")
            };
            g.bench_function(BenchmarkId::new(backend, name), |b| {
                b.to_async(&rt)
                    .iter_custom(|iters| send_all(&hub, &targets, iters))
            });
        }
    }
    g.finish();
}

/// A user in 1,000 channels (groups from the directory) with `per_channel`
/// messages in each, syncing the whole list in one call.
fn conversation_sync(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("conversation_sync_1000_channels");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    let lengths: &[u64] = if quick() { &[1, 10] } else { &[1, 100] };
    for &per_channel in lengths {
        let dir = tempfile::tempdir().unwrap();
        let store = sled_store(dir.path());
        let directory = Arc::new(MemoryDirectory::new());
        let reader = uid("reader");
        let mut next = 0u64;
        rt.block_on(async {
            for c in 0..1_000 {
                let channel = Channel::group(format!("c{c}")).unwrap();
                directory.create_channel(&channel, &uid("owner"), [reader.clone()]);
                let batch: Vec<Message> = (0..per_channel)
                    .map(|_| {
                        next += 1;
                        Message::new(
                            MessageId(next),
                            ClientMsgNo::new(format!("n{next}")).unwrap(),
                            uid("owner"),
                            channel.clone(),
                            1_700_000_000_000,
                            Bytes::from_static(&PAYLOAD),
                        )
                    })
                    .collect();
                store.append(batch).await.unwrap();
            }
        });
        // Reopened, as after a restart: sled reads the pages back whole
        // (right after a bulk write, they are still chains of fragments).
        drop(store);
        let store = sled_store(dir.path());
        let hub = Hub::builder()
            .config(unlimited())
            .store(store.clone())
            .directory(directory)
            .build()
            .unwrap();
        g.bench_function(BenchmarkId::new("sled", per_channel * 1_000), |b| {
            b.to_async(&rt).iter(|| async {
                let list = hub.sync_conversations(&reader, 0, 1_000).await.unwrap();
                assert_eq!(list.len(), 1_000);
                assert!(list.iter().all(|v| v.conversation.unread == per_channel));
            })
        });
        // A control: 1,000 look-ups in the revocations tree, which is empty
        // at every history length. What it loses as the history grows is
        // what the process loses, not what the sync does.
        let ids: Vec<MessageId> = (1..=1_000).map(MessageId).collect();
        g.bench_function(
            BenchmarkId::new("control_empty_tree_gets", per_channel * 1_000),
            |b| {
                b.to_async(&rt).iter(|| async {
                    let found = store.lookup_revocations(&ids).await.unwrap();
                    assert!(found.iter().all(Option::is_none));
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, g_group_sends, conversation_sync);
criterion_main!(benches);

/// The hub's settings here: no send rate (these measure the hub, and send
/// from one uid as fast as it goes).
fn unlimited() -> imcore::HubConfig {
    imcore::HubConfig::default().send_rate(None)
}
