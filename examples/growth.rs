//! How costs grow (issue 32, item 5): the CPU and wall time of a send, and
//! the process's resident memory, at 10,000, 100,000 and 1,000,000
//! messages of history; and the cost of a conversation sync for a user in
//! 1,000, 10,000 and 100,000 channels. Each next to the bare substrate
//! doing the same storage work in the same run.
//!
//! Run: `cargo run --release --example growth` (a few minutes on 2 cores),
//! or with `-- --quick` (history of 10,000 and 100,000, 100 to 10,000
//! channels: about half a minute; what CI runs).
//!
//! Every point runs in a fresh process (this executable again, with
//! `--child`), so that one point's memory is not counted in another's (an
//! allocator keeps what was freed). Sled points are built by one child and
//! measured by another that opens the database, as a restarted server
//! does.
//!
//! Sends: history spread over 1,000 1:1 channels (appended in batches of
//! 1,000, one message per channel, so channels interleave as on a live
//! server), then one sender sends through `Hub::send` into the same
//! channels, round robin: six rounds of 1,000 sends (300 with
//! flush-before-ack), each after a flush; the first warms up, the median
//! of the other five is reported, with the lowest and highest. Rounds are
//! the same size at every history size, so a background flush (every
//! 500 ms) falls in about as many of them at each; the median leaves it
//! out. On sled, background durability is measured first, then
//! flush-before-ack (the default) on the same database: the history under
//! measurement is N plus those sends (at most 6,000). The
//! substrates: raw sled inserts of the same records (the crate's postcard
//! bytes) under one key per message (channel, big-endian seq), with the
//! same flushing; and, for the memory store, a `BTreeMap` insert of the
//! same key and value.
//!
//! Conversation sync: a user is a member of M groups (the hub's
//! `MemoryDirectory`), each with one message. Measured: a full sync
//! (version 0, a page of 1,000: `HubConfig::max_page`), an incremental
//! sync from the current version (nothing new), and one from the version
//! before 10 new messages (10 returned). The control does the storage work
//! of one look-up per channel with nothing on top: M raw sled gets of M
//! keys of the size of a head (in channel order, as the sync goes), and a
//! scan of the same M keys; for memory, M `BTreeMap` gets.
//!
//! CPU is the process's, every thread (the runtime's, sled's flusher, the
//! store's write thread): the sum of `/proc/self/task/*/schedstat`, in
//! nanoseconds. Resident memory is `VmRSS` of `/proc/self/status`. Linux
//! only.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use imcore::store::{Durability, MessageLog, SledConfig};
use imcore::{
    Channel, ChannelType, ClientMsgNo, Hub, HubConfig, MemoryDirectory, MemoryStore, Message,
    MessageId, SendRequest, SledStore, Uid,
};

/// The 1:1 channels the history is spread over.
const PAIRS: u64 = 1_000;
/// The payload of every message.
const PAYLOAD: [u8; 200] = [b'x'; 200];
/// Messages per append while filling.
const BATCH: u64 = 1_000;
/// Messages sent after `version` for the incremental sync that finds some.
const CHANGED: u64 = 10;
/// Set for children in quick mode.
const QUICK_ENV: &str = "IMCORE_GROWTH_QUICK";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        child(&args[1..]);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    if quick {
        // Children inherit it: shorter measuring windows.
        std::env::set_var(QUICK_ENV, "1");
    }
    let (history, channels): (&[u64], &[u64]) = if quick {
        (&[10_000, 100_000], &[100, 1_000, 10_000])
    } else {
        (&[10_000, 100_000, 1_000_000], &[1_000, 10_000, 100_000])
    };
    let scratch = tempfile::tempdir().unwrap();
    println!("# sends (one sender; CPU of the whole process per send, median round (lowest–highest); RSS after the sends)");
    println!("| store | history | sends | CPU µs/send | wall µs/send | RSS MiB | substrate CPU µs | substrate wall µs | substrate RSS MiB | CPU ratio |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &n in history {
        let (crate_dir, raw_dir) = (scratch.path().join("crate"), scratch.path().join("raw"));
        run(&["build-sled", path(&crate_dir), &n.to_string()]);
        run(&["build-raw", path(&raw_dir), &n.to_string()]);
        for (mode, raw_mode) in [
            ("sled-background", "raw-background"),
            ("sled-flush", "raw-flush"),
        ] {
            let ours = run(&["send", mode, path(&crate_dir), &n.to_string()]);
            let theirs = run(&["send", raw_mode, path(&raw_dir), &n.to_string()]);
            row(mode, n, &ours, &theirs);
        }
        let ours = run(&["send", "memory", "-", &n.to_string()]);
        let theirs = run(&["send", "btree", "-", &n.to_string()]);
        row("memory", n, &ours, &theirs);
        std::fs::remove_dir_all(&crate_dir).unwrap();
        std::fs::remove_dir_all(&raw_dir).unwrap();
    }
    println!();
    println!("# conversation sync (a user in M groups, one message each; page of 1,000)");
    println!("| store | channels | call | returned | CPU µs/call | wall µs/call | CPU ns/channel | RSS MiB | control CPU µs (M gets) | control scan µs | CPU ratio to gets |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &m in channels {
        let dir = scratch.path().join("sync");
        run(&["build-sync", path(&dir), &m.to_string()]);
        for store in ["sled", "memory"] {
            for line in run(&["sync", store, path(&dir), &m.to_string()]) {
                println!("{line}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs this executable as a child; returns its `ROW` lines (without the
/// tag).
fn run(args: &[&str]) -> Vec<String> {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("--child")
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child {args:?} failed: {stderr}");
    eprint!("{stderr}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("ROW ").map(str::to_owned))
        .collect()
}

/// A send point as the child reports it: sends per round; the median
/// round's CPU and wall ns per send; the lowest and highest round's CPU ns
/// per send; RSS KiB.
fn parse(lines: &[String]) -> Vec<f64> {
    lines[0].split(' ').map(|f| f.parse().unwrap()).collect()
}

fn row(store: &str, n: u64, ours: &[String], theirs: &[String]) {
    let (ours, theirs) = (parse(ours), parse(theirs));
    let us = |ns: f64| ns / 1_000.0;
    let mib = |kib: f64| kib / 1024.0;
    println!(
        "| {store} | {n} | {ROUNDS} × {} | {:.1} ({:.1}–{:.1}) | {:.1} | {:.1} | {:.1} ({:.1}–{:.1}) | {:.1} | {:.1} | {:.2} |",
        ours[0],
        us(ours[1]),
        us(ours[3]),
        us(ours[4]),
        us(ours[2]),
        mib(ours[5]),
        us(theirs[1]),
        us(theirs[3]),
        us(theirs[4]),
        us(theirs[2]),
        mib(theirs[5]),
        ours[1] / theirs[1],
    );
}

/// The process's CPU time so far, every live thread, in nanoseconds.
///
/// The kernel adds a thread's run time to its `schedstat` when the thread
/// is switched out (or at a tick): this thread sleeps a moment first, and
/// the runtime's threads are parked between measured calls.
fn cpu_ns() -> u64 {
    std::thread::sleep(Duration::from_millis(2));
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task (this example needs Linux)")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// `VmRSS` of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line["VmRSS:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

/// CPU and wall time of `f`, in nanoseconds.
fn measure<T>(f: impl FnOnce() -> T) -> (T, u64, u64) {
    let (cpu, wall) = (cpu_ns(), Instant::now());
    let out = f();
    let wall = wall.elapsed().as_nanos() as u64;
    (out, cpu_ns() - cpu, wall)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

/// Pair `i`'s sender and the channel it sends to (as addressed).
fn pair(i: u64) -> (Uid, Channel) {
    let to = Channel::new(uid(&format!("b{i}")).into(), ChannelType::PERSON);
    (uid(&format!("a{i}")), to)
}

/// The `k`th message of the history (from 0): pair `k % PAIRS`, stored
/// form; its seq in the channel is `k / PAIRS + 1`.
fn history_message(k: u64) -> Message {
    let (from, to) = pair(k % PAIRS);
    let channel = to.stored_for(&from).unwrap();
    Message::new(
        MessageId(k + 1),
        ClientMsgNo::new(format!("f{k}")).unwrap(),
        from,
        channel,
        1_700_000_000_000 + k as i64,
        Bytes::from_static(&PAYLOAD),
    )
}

/// The raw key of a message: channel type, id length, id, big-endian seq.
fn raw_key(channel: &Channel, seq: u64) -> Vec<u8> {
    let id = channel.id.as_str().as_bytes();
    let mut k = vec![channel.kind.as_u8(), id.len() as u8];
    k.extend_from_slice(id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The raw key and value of the `k`th message.
fn raw_record(k: u64) -> (Vec<u8>, Vec<u8>) {
    let m = history_message(k);
    (
        raw_key(&m.channel, k / PAIRS + 1),
        postcard::to_allocvec(&m).unwrap(),
    )
}

fn background() -> Durability {
    Durability::Background {
        flush_every: Duration::from_millis(500),
    }
}

fn open_sled(dir: &Path, durability: Durability) -> SledStore {
    SledStore::open_with(SledConfig::new(dir).durability(durability)).unwrap()
}

/// Raw sled with the crate's page cache size.
fn open_raw(dir: &Path) -> sled::Db {
    sled::Config::new()
        .path(dir)
        .cache_capacity(SledConfig::new(dir).cache_capacity)
        .flush_every_ms(Some(500))
        .open()
        .unwrap()
}

/// Appends history messages `from..to` in batches.
async fn fill(store: &dyn MessageLog, from: u64, to: u64) {
    for start in (from..to).step_by(BATCH as usize) {
        let batch = (start..(start + BATCH).min(to)).map(history_message);
        store.append(batch.collect()).await.unwrap();
    }
}

fn hub(store: Arc<dyn imcore::store::Store>, directory: Option<Arc<MemoryDirectory>>) -> Hub {
    let mut b = Hub::builder()
        .config(HubConfig::default().send_rate(None))
        .store(store);
    if let Some(d) = directory {
        b = b.directory(d);
    }
    b.build().unwrap()
}

fn child(args: &[String]) {
    let arg = |i: usize| args[i].as_str();
    let n: u64 = arg(args.len() - 1).parse().unwrap();
    let rt = runtime();
    match arg(0) {
        "build-sled" => {
            let store = open_sled(Path::new(arg(1)), background());
            let ((), _, wall) = measure(|| rt.block_on(fill(&store, 0, n)));
            rt.block_on(store.flush()).unwrap();
            eprintln!("built sled store of {n} messages in {:.1} s", secs(wall));
        }
        "build-raw" => {
            let db = open_raw(Path::new(arg(1)));
            let ((), _, wall) = measure(|| {
                for start in (0..n).step_by(BATCH as usize) {
                    let mut batch = sled::Batch::default();
                    for k in start..(start + BATCH).min(n) {
                        let (key, value) = raw_record(k);
                        batch.insert(key, value);
                    }
                    db.apply_batch(batch).unwrap();
                }
            });
            db.flush().unwrap();
            eprintln!("built raw sled of {n} records in {:.1} s", secs(wall));
        }
        "send" => send_point(&rt, arg(1), Path::new(arg(2)), n),
        "build-sync" => build_sync(&rt, Path::new(arg(1)), n),
        "sync" => sync_point(&rt, arg(1), Path::new(arg(2)), n),
        other => panic!("unknown child role {other}"),
    }
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Rounds of sends measured at each point; the median round is reported.
const ROUNDS: usize = 5;

/// Measures sends into a history of `n` (built by `build-sled` /
/// `build-raw` in `dir`, or filled here for the in-memory ones): `ROUNDS`
/// rounds of the same number of sends at every size, each after a flush
/// (so that a round starts with nothing dirty; a background flush may
/// still fall in one, which the median leaves out). Prints
/// `ROW sends_per_round median_cpu_ns median_wall_ns min_cpu_ns
/// max_cpu_ns rss_kib`, the times per send.
fn send_point(rt: &tokio::runtime::Runtime, store: &str, dir: &Path, n: u64) {
    let flush = store.ends_with("flush");
    let sends: u64 = if flush { 300 } else { 1_000 };
    // Each channel already has `n / PAIRS` messages, and sled points
    // measured before may have added some; the raw keys start well above.
    let seq0 = n / PAIRS + if flush { 200_000 } else { 100_000 };
    let raw_records: Vec<Vec<u8>> = (0..PAIRS).map(|k| raw_record(k).1).collect();
    let raw_key_of = |i: u64| raw_key(&history_message(i % PAIRS).channel, seq0 + i / PAIRS);
    let mut rounds: Vec<(u64, u64)> = Vec::new();
    match store {
        "sled-background" | "sled-flush" | "memory" => {
            let (store, sled): (Arc<dyn imcore::store::Store>, Option<Arc<SledStore>>) = match store
            {
                "memory" => {
                    let m = Arc::new(MemoryStore::new());
                    rt.block_on(fill(&*m, 0, n));
                    (m, None)
                }
                mode => {
                    let durability = match mode {
                        "sled-flush" => Durability::Flush,
                        _ => background(),
                    };
                    let s = Arc::new(open_sled(dir, durability));
                    (s.clone(), Some(s))
                }
            };
            let hub = hub(store, None);
            let mut next = 0u64;
            for round in 0..=ROUNDS {
                if let Some(s) = &sled {
                    rt.block_on(s.flush()).unwrap();
                }
                let ((), cpu, wall) = measure(|| {
                    rt.block_on(async {
                        for _ in 0..sends {
                            let (from, to) = pair(next % PAIRS);
                            next += 1;
                            let req = SendRequest::new(from, to, Bytes::from_static(&PAYLOAD));
                            hub.send(req).await.unwrap();
                        }
                    })
                });
                if round > 0 {
                    rounds.push((cpu, wall)); // round 0 warms up
                }
            }
        }
        "raw-background" | "raw-flush" => {
            let db = open_raw(dir);
            let mut next = 0u64;
            for round in 0..=ROUNDS {
                db.flush().unwrap();
                let ((), cpu, wall) = measure(|| {
                    for _ in 0..sends {
                        let record = raw_records[(next % PAIRS) as usize].as_slice();
                        db.insert(raw_key_of(next), record).unwrap();
                        next += 1;
                        if flush {
                            db.flush().unwrap();
                        }
                    }
                });
                if round > 0 {
                    rounds.push((cpu, wall));
                }
            }
        }
        "btree" => {
            let mut map = BTreeMap::new();
            for k in 0..n {
                let (key, value) = raw_record(k);
                map.insert(key, value);
            }
            let mut next = 0u64;
            for round in 0..=ROUNDS {
                let ((), cpu, wall) = measure(|| {
                    for _ in 0..sends {
                        let record = raw_records[(next % PAIRS) as usize].clone();
                        map.insert(raw_key_of(next), record);
                        next += 1;
                    }
                });
                if round > 0 {
                    rounds.push((cpu, wall));
                }
            }
            std::hint::black_box(&map);
        }
        other => panic!("unknown store {other}"),
    }
    rounds.sort_unstable();
    let per = |ns: u64| ns / sends;
    let (cpu, wall) = rounds[ROUNDS / 2];
    println!(
        "ROW {sends} {} {} {} {} {}",
        per(cpu),
        per(wall),
        per(rounds[0].0),
        per(rounds[ROUNDS - 1].0),
        rss_kib()
    );
}

/// Group `i` of the sync points.
fn group(i: u64) -> Channel {
    Channel::group(format!("g{i}")).unwrap()
}

/// Group `i`'s one message, from the owner.
fn group_message(i: u64) -> Message {
    Message::new(
        MessageId(i + 1),
        ClientMsgNo::new(format!("g{i}")).unwrap(),
        uid("owner"),
        group(i),
        1_700_000_000_000,
        Bytes::from_static(&PAYLOAD),
    )
}

/// A head-sized value for the control (a head record: ids, seq, counters,
/// sender).
const HEAD_VALUE: [u8; 64] = [7; 64];

/// Builds the sync point's sled store (`dir/crate`: `m` groups with one
/// message each) and the control's raw database (`dir/raw`: `m` keys, one
/// per group, head-sized values).
fn build_sync(rt: &tokio::runtime::Runtime, dir: &Path, m: u64) {
    let store = open_sled(&dir.join("crate"), background());
    rt.block_on(async {
        for start in (0..m).step_by(BATCH as usize) {
            let batch = (start..(start + BATCH).min(m)).map(group_message);
            store.append(batch.collect()).await.unwrap();
        }
        store.flush().await.unwrap();
    });
    let db = open_raw(&dir.join("raw"));
    for i in 0..m {
        db.insert(raw_key(&group(i), 0), &HEAD_VALUE[..]).unwrap();
    }
    db.flush().unwrap();
}

/// Calls `f` until `window` has passed (at least twice); returns the CPU
/// and wall nanoseconds per call and the last result.
fn per_call<T>(window: Duration, mut f: impl FnMut() -> T) -> (T, f64, f64) {
    let mut out = f(); // warm
    let (cpu, start) = (cpu_ns(), Instant::now());
    let mut calls = 0u32;
    while calls < 2 || start.elapsed() < window {
        out = f();
        calls += 1;
    }
    let wall = start.elapsed().as_nanos() as f64;
    let cpu = (cpu_ns() - cpu) as f64;
    (out, cpu / f64::from(calls), wall / f64::from(calls))
}

/// Measures conversation syncs of a user in `m` groups; prints one `ROW`
/// line (a table row) per kind of call.
fn sync_point(rt: &tokio::runtime::Runtime, kind: &str, dir: &Path, m: u64) {
    let window = match std::env::var_os(QUICK_ENV) {
        Some(_) => Duration::from_millis(300),
        None => Duration::from_secs(1),
    };
    let directory = Arc::new(MemoryDirectory::new());
    let reader = uid("reader");
    for i in 0..m {
        directory.create_channel(&group(i), &uid("owner"), [reader.clone()]);
    }
    let store: Arc<dyn imcore::store::Store> = match kind {
        "sled" => Arc::new(open_sled(&dir.join("crate"), background())),
        _ => {
            let store = Arc::new(MemoryStore::new());
            rt.block_on(async {
                for start in (0..m).step_by(BATCH as usize) {
                    let batch = (start..(start + BATCH).min(m)).map(group_message);
                    store.append(batch.collect()).await.unwrap();
                }
            });
            store
        }
    };
    let hub = hub(store.clone(), Some(directory));
    let before = rt.block_on(store.stable_version()).unwrap();
    rt.block_on(async {
        for i in 0..CHANGED {
            let req = SendRequest::new(uid("owner"), group(i * 7 % m), Bytes::from_static(b"n"));
            hub.send(req).await.unwrap();
        }
    });
    let now = rt.block_on(store.stable_version()).unwrap();
    // The control, in this process: one look-up per channel, and a scan.
    let (control_gets, control_scan) = match kind {
        "sled" => {
            let db = open_raw(&dir.join("raw"));
            let mut keys: Vec<Vec<u8>> = (0..m).map(|i| raw_key(&group(i), 0)).collect();
            keys.sort_unstable();
            let (_, gets, _) = per_call(window, || {
                keys.iter().filter(|k| db.get(k).unwrap().is_some()).count()
            });
            let (_, scan, _) = per_call(window, || {
                db.iter().map(|kv| kv.unwrap().1.len()).sum::<usize>()
            });
            (gets, scan)
        }
        _ => {
            let map: BTreeMap<Vec<u8>, Vec<u8>> = (0..m)
                .map(|i| (raw_key(&group(i), 0), HEAD_VALUE.to_vec()))
                .collect();
            let keys: Vec<Vec<u8>> = map.keys().cloned().collect();
            let (_, gets, _) = per_call(window, || {
                keys.iter().filter(|k| map.contains_key(*k)).count()
            });
            let (_, scan, _) = per_call(window, || map.values().map(Vec::len).sum::<usize>());
            (gets, scan)
        }
    };
    for (call, version, expect) in [
        ("full", 0, 1_000.min(m)),
        ("incremental, nothing new", now, 0),
        ("incremental, 10 new", before, CHANGED),
    ] {
        let (list, cpu, wall) = per_call(window, || {
            rt.block_on(hub.sync_conversations(&reader, version, 1_000))
                .unwrap()
        });
        assert_eq!(list.len() as u64, expect, "{call}");
        println!(
            "ROW | {kind} | {m} | {call} | {} | {:.0} | {:.0} | {:.0} | {:.1} | {:.0} | {:.0} | {:.1} |",
            list.len(),
            cpu / 1e3,
            wall / 1e3,
            cpu / m as f64,
            rss_kib() as f64 / 1024.0,
            control_gets / 1e3,
            control_scan / 1e3,
            cpu / control_gets,
        );
    }
}
