//! Throughput of the crate against the bare substrate (raw sled, raw tokio
//! channels), in the same run.
//!
//! - W1: sends into 1:1 channels, 200-byte payloads, on sled, with
//!   background durability and with flush-before-ack (1 and 64 concurrent
//!   senders); substrate: raw sled inserts of the same keys and values with
//!   the same flushing.
//! - W2: one message to a group of N online members (one device each,
//!   in-process transport); substrate: the same value pushed into N bounded
//!   tokio channels in a loop.
//! - W3: a page of 100 from a channel of N messages with 1 % revoked,
//!   merged; substrate: the raw sled range scan of the same 100 keys.
//! - W4: an offline user with 10,000 pending commands syncs and acks them in
//!   pages of 200.
//!
//! `IMCORE_BENCH_QUICK=1` shrinks the data sets (CI runs it that way with
//! `cargo bench -- --quick`).

mod common;

use common::{quick, rt, uid, PAYLOAD};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use imcore::session::InProcessConnection;
use imcore::store::{
    CommandQueue, Durability, MessageLog, NewRevocation, Page, RevocationStore, SledConfig,
    SledStore,
};
use imcore::{
    Channel, ChannelType, ClientMsgNo, Device, DeviceFlag, DeviceId, Flags, Hub, MemoryDirectory,
    MemoryStore, Message, MessageId, SendRequest, Uid,
};

const PAIRS: usize = 100;

/// The raw-sled key of a message: the same layout the crate uses
/// (type, id length, id, seq big-endian).
fn raw_key(channel: &Channel, seq: u64) -> Vec<u8> {
    let id = channel.id.as_str().as_bytes();
    let mut k = vec![channel.kind.as_u8(), id.len() as u8];
    k.extend_from_slice(id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn message(i: u64, from: &Uid, channel: &Channel) -> Message {
    Message::new(
        MessageId(i + 1),
        ClientMsgNo::new(format!("c{i}")).unwrap(),
        from.clone(),
        channel.clone(),
        1_700_000_000_000,
        Bytes::from_static(&PAYLOAD),
    )
}

/// The raw-sled value of a message: what the crate stores (postcard).
fn raw_value(m: &Message) -> Vec<u8> {
    postcard::to_allocvec(m).unwrap()
}

/// A store with background durability, for benches that read.
fn background_store(dir: &std::path::Path) -> SledStore {
    SledStore::open_with(SledConfig::new(dir).durability(Durability::Background {
        flush_every: std::time::Duration::from_millis(1000),
    }))
    .unwrap()
}

fn sled_hub(durability: Durability) -> (Hub, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open_with(SledConfig::new(dir.path()).durability(durability)).unwrap();
    let hub = Hub::builder()
        .config(unlimited())
        .store(Arc::new(store))
        .build()
        .unwrap();
    (hub, dir)
}

fn raw_sled(flush_every_ms: u64) -> (sled::Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    // The same page cache as `SledConfig`'s default, for a fair comparison.
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(SledConfig::new(dir.path()).cache_capacity)
        .flush_every_ms(Some(flush_every_ms))
        .open()
        .unwrap();
    (db, dir)
}

fn pairs() -> Vec<(Uid, Channel)> {
    (0..PAIRS)
        .map(|i| {
            let from = uid(&format!("a{i}"));
            let to = Channel::new(uid(&format!("b{i}")).into(), ChannelType::PERSON);
            (from, to)
        })
        .collect()
}

/// Sends `n` messages from `senders` concurrent tasks; returns the time.
async fn send_concurrently(hub: &Hub, senders: usize, n: u64) -> Duration {
    let pairs = Arc::new(pairs());
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(senders);
    for s in 0..senders {
        let (hub, pairs) = (hub.clone(), pairs.clone());
        let count = n / senders as u64 + u64::from((s as u64) < n % senders as u64);
        tasks.push(tokio::spawn(async move {
            for i in 0..count {
                let (from, to) = &pairs[(s + i as usize * senders) % PAIRS];
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

fn w1_send(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("w1_send_1to1");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20).measurement_time(Duration::from_secs(4));

    let (hub, _d1) = sled_hub(Durability::Background {
        flush_every: std::time::Duration::from_millis(500),
    });
    g.bench_function("crate/background", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| send_concurrently(&hub, 1, iters))
    });
    let (db, _d2) = raw_sled(500);
    let substrate = raw_inserts(&db, false);
    g.bench_function("raw_sled/background", |b| b.iter(&substrate));

    let (hub, _d3) = sled_hub(Durability::Flush);
    for senders in [1, 64] {
        g.bench_function(BenchmarkId::new("crate/flush", senders), |b| {
            b.to_async(&rt)
                .iter_custom(|iters| send_concurrently(&hub, senders, iters))
        });
    }
    let (db, _d4) = raw_sled(500);
    let substrate = raw_inserts(&db, true);
    g.bench_function("raw_sled/flush", |b| b.iter(&substrate));
    // The substrate's own ceiling for concurrent flushed writes: bare sled,
    // one key per write, writers on OS threads sharing flushes as well as
    // they can (group commit), at 1 and 64 writers.
    for writers in [1, 64] {
        let (db, _d) = raw_sled(500);
        g.bench_function(BenchmarkId::new("raw_sled/flush_group", writers), |b| {
            b.iter_custom(|iters| raw_group_commit(&db, writers, iters))
        });
    }
    g.finish();
}

/// `n` raw inserts by `writers` threads, each insert waiting until a flush
/// that started after it has finished; one flush at a time, by whichever
/// waiting writer finds none running. Returns the time.
fn raw_group_commit(db: &sled::Db, writers: usize, n: u64) -> Duration {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Condvar, Mutex};
    let value = raw_value(&message(0, &uid("a"), &Channel::group("g").unwrap()));
    // Keys never written before (criterion calls this many times per db).
    static BASE: AtomicU64 = AtomicU64::new(0);
    let base = BASE.fetch_add(n, Ordering::Relaxed);
    let next = AtomicU64::new(base);
    let n = base + n;
    let committed = AtomicU64::new(0);
    // (durable up to this ticket, a flush is running)
    let durable = (Mutex::new((0u64, false)), Condvar::new());
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..writers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                db.insert(i.to_be_bytes(), value.as_slice()).unwrap();
                let ticket = committed.fetch_add(1, Ordering::AcqRel) + 1;
                let (lock, flushed) = &durable;
                let mut state = lock.lock().unwrap();
                while state.0 < ticket {
                    if state.1 {
                        state = flushed.wait(state).unwrap();
                        continue;
                    }
                    state.1 = true;
                    drop(state);
                    let target = committed.load(Ordering::Acquire);
                    db.flush().unwrap();
                    state = lock.lock().unwrap();
                    state.0 = state.0.max(target);
                    state.1 = false;
                    flushed.notify_all();
                }
            });
        }
    });
    start.elapsed()
}

/// One raw insert of the next message's key and value, optionally flushed.
fn raw_inserts(db: &sled::Db, flush: bool) -> impl Fn() + '_ {
    let pairs = pairs();
    let values: Vec<(Channel, Vec<u8>)> = pairs
        .iter()
        .enumerate()
        .map(|(i, (from, to))| {
            let stored = to.stored_for(from).unwrap();
            (stored.clone(), raw_value(&message(i as u64, from, &stored)))
        })
        .collect();
    let next = std::sync::atomic::AtomicU64::new(0);
    move || {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (channel, value) = &values[i as usize % PAIRS];
        db.insert(raw_key(channel, i / PAIRS as u64 + 1), value.as_slice())
            .unwrap();
        if flush {
            db.flush().unwrap();
        }
    }
}

struct Group {
    hub: Hub,
    channel: Channel,
    connections: Vec<InProcessConnection>,
}

fn group_of(members: usize) -> Group {
    let directory = Arc::new(MemoryDirectory::new());
    let hub = Hub::builder()
        .config(unlimited())
        .store(Arc::new(MemoryStore::new()))
        .directory(directory.clone())
        .build()
        .unwrap();
    let channel = Channel::group("big").unwrap();
    let uids: Vec<Uid> = (0..members).map(|i| uid(&format!("m{i}"))).collect();
    directory.create_channel(&channel, &uid("sender"), uids.iter().cloned());
    let connections = uids
        .iter()
        .map(|u| {
            let device = Device::master(u.clone(), DeviceId::new("d").unwrap(), DeviceFlag::App);
            hub.connect_in_process(device, 1024).1
        })
        .collect();
    Group {
        hub,
        channel,
        connections,
    }
}

fn w2_fanout(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("w2_fanout");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    for members in [100usize, 1_000, 10_000] {
        g.throughput(Throughput::Elements(members as u64));
        let mut group = group_of(members);
        for (name, flags) in [
            ("crate/transient", Flags::transient()),
            ("crate/history", Flags::normal()),
        ] {
            g.bench_function(BenchmarkId::new(name, members), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let req = SendRequest::new(
                            uid("sender"),
                            group.channel.clone(),
                            Bytes::from_static(&PAYLOAD),
                        )
                        .flags(flags);
                        let start = Instant::now();
                        rt.block_on(group.hub.send(req)).unwrap();
                        total += start.elapsed();
                        for conn in &mut group.connections {
                            conn.drain();
                        }
                    }
                    total
                })
            });
        }
        // Substrate: the same Arc pushed into `members` bounded channels.
        let (senders, mut receivers): (Vec<_>, Vec<_>) = (0..members)
            .map(|_| tokio::sync::mpsc::channel::<Arc<Message>>(1024))
            .unzip();
        let value = Arc::new(message(0, &uid("sender"), &group.channel));
        g.bench_function(BenchmarkId::new("raw_channels", members), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    for tx in &senders {
                        tx.try_send(value.clone()).unwrap();
                    }
                    total += start.elapsed();
                    for rx in &mut receivers {
                        while rx.try_recv().is_ok() {}
                    }
                }
                total
            })
        });
    }
    g.finish();
}

fn w3_history_page(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("w3_history_page");
    g.sample_size(30).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(100));
    let sizes: &[u64] = if quick() {
        &[10_000, 100_000]
    } else {
        &[10_000, 100_000, 1_000_000]
    };
    for &n in sizes {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(background_store(dir.path()));
        let directory = Arc::new(MemoryDirectory::new());
        let channel = Channel::group("history").unwrap();
        let reader = uid("reader");
        directory.create_channel(&channel, &reader, []);
        let (raw, _raw_dir) = raw_sled(1000);
        rt.block_on(async {
            let batch = 1000;
            for start in (0..n).step_by(batch) {
                let messages: Vec<Message> = (start..(start + batch as u64).min(n))
                    .map(|i| message(i, &reader, &channel))
                    .collect();
                let mut raw_batch = sled::Batch::default();
                for (i, m) in (start..).zip(&messages) {
                    raw_batch.insert(raw_key(&channel, i + 1), raw_value(m));
                }
                raw.apply_batch(raw_batch).unwrap();
                store.append(messages).await.unwrap();
            }
            for i in (0..n).step_by(100) {
                store
                    .record_revocation(NewRevocation {
                        message_id: MessageId(i + 1),
                        channel: channel.clone(),
                        message_seq: i + 1,
                        revoker: reader.clone(),
                        revoked_at_ms: 0,
                    })
                    .await
                    .unwrap();
            }
        });
        let hub = Hub::builder()
            .config(unlimited())
            .store(store.clone())
            .directory(directory)
            .build()
            .unwrap();
        let from = n / 2;
        g.bench_function(BenchmarkId::new("crate/merged", n), |b| {
            b.to_async(&rt).iter(|| async {
                let page = hub
                    .sync_channel(&reader, &channel, Page::forward(from, 100))
                    .await
                    .unwrap();
                assert_eq!(page.iter().filter(|m| m.revoked.is_some()).count(), 1);
            })
        });
        g.bench_function(BenchmarkId::new("crate/unmerged", n), |b| {
            b.to_async(&rt).iter(|| async {
                let page = store
                    .read(&channel, Page::forward(from, 100))
                    .await
                    .unwrap();
                assert_eq!(page.len(), 100);
            })
        });
        let (lo, hi) = (raw_key(&channel, from), raw_key(&channel, from + 99));
        let raw_scan = || {
            let (mut count, mut bytes) = (0, 0);
            for kv in raw.range(lo.as_slice()..=hi.as_slice()) {
                bytes += kv.unwrap().1.len();
                count += 1;
            }
            assert_eq!(count, 100);
            std::hint::black_box(bytes);
        };
        g.bench_function(BenchmarkId::new("raw_sled/range_scan", n), |b| {
            b.iter(raw_scan)
        });
        // The two above run one after the other, and this machine's speed
        // drifts between them. Here they alternate page by page, in rounds:
        // the median round's ratio is the figure the README reports.
        let mut ratios: Vec<f64> = (0..15)
            .map(|_| {
                rt.block_on(async {
                    let (mut crate_time, mut raw_time) = (Duration::ZERO, Duration::ZERO);
                    for _ in 0..400 {
                        let t = Instant::now();
                        let page = hub
                            .sync_channel(&reader, &channel, Page::forward(from, 100))
                            .await
                            .unwrap();
                        crate_time += t.elapsed();
                        std::hint::black_box(page);
                        let t = Instant::now();
                        raw_scan();
                        raw_time += t.elapsed();
                    }
                    crate_time.as_secs_f64() / raw_time.as_secs_f64()
                })
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        println!(
            "w3 interleaved, {n} messages: merged / raw = {:.2} (median of 15 rounds; {:.2}..{:.2})",
            ratios[7], ratios[0], ratios[14]
        );
    }
    g.finish();
}

fn w4_command_queue(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("w4_command_sync");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    let pending: u64 = if quick() { 2_000 } else { 10_000 };
    g.throughput(Throughput::Elements(pending));
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(background_store(dir.path()));
    let hub = Hub::builder()
        .config(unlimited())
        .store(store.clone())
        .build()
        .unwrap();
    let user = uid("offline");
    let server = uid("server");
    let channel = Channel::new(server.clone().into(), ChannelType::PERSON);
    let mut next = 0u64;
    g.bench_function(
        BenchmarkId::new("crate/sync_and_ack_pages_of_200", pending),
        |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    rt.block_on(async {
                        for _ in 0..pending {
                            next += 1;
                            let mut m = message(next, &server, &channel);
                            m.flags = Flags::command();
                            store
                                .push_command(&m, std::slice::from_ref(&user))
                                .await
                                .unwrap();
                        }
                        let start = Instant::now();
                        let mut cursor = 0;
                        let mut seen = 0;
                        loop {
                            let page = hub.sync_commands(&user, cursor, 200).await.unwrap();
                            let Some(last) = page.last() else { break };
                            cursor = last.cursor;
                            seen += page.len() as u64;
                            hub.ack_commands(&user, cursor).await.unwrap();
                        }
                        total += start.elapsed();
                        assert_eq!(seen, pending);
                    });
                }
                total
            })
        },
    );
    g.finish();
}

criterion_group!(
    benches,
    w1_send,
    w2_fanout,
    w3_history_page,
    w4_command_queue
);
criterion_main!(benches);

/// The hub's settings here: no send rate (these measure the hub, and send
/// from one uid as fast as it goes).
fn unlimited() -> imcore::HubConfig {
    imcore::HubConfig::default().send_rate(None)
}
