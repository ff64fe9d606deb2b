//! `http`: the HTTP API under load, as business servers use it. Clients
//! `POST /message/send` (WuKongIM's body: `header` with `no_persist: 0`
//! and `sync_once: 0`, so that every message is stored; `from_uid`,
//! `channel_id`, `channel_type`, `client_msg_no`, a base64 `payload`) on
//! 1, 16 and 64 keep-alive HTTP/1.1 connections at once (hyper's client,
//! one connection each, each request sent when the last is answered), for
//! a fixed time per level. Each connection is its own sender and sends in
//! turn to a person channel and to a group of [`GROUP`] members.
//!
//! Against `wukong_server` on its memory store (`--memory-store`), on sled
//! (its default, flushed before the answer) and on PostgreSQL (a fresh
//! database on 127.0.0.1:5432, or `IMCORE_LOADGEN_PG`, created and dropped
//! here; a throwaway server from the installed binaries when none answers
//! there; skipped loudly without either, a failure under
//! `IMCORE_REQUIRE_SERVERS=1`), and against the bare substrate
//! (`bare_http`) in the same run. The bare substrate and the memory store
//! run each level in turns, five rounds of a fifth of the time each
//! (`--quick`: one), and each round's ratio is taken from the two runs
//! side by side, so that what drifts on a shared machine drifts for both.
//! Each level prints requests/s, latency p50 and p99, and the server's
//! CPU per request (user and system, from `/proc`); at the end the ratio
//! of CPU per request on the memory store to the bare substrate's (the
//! median of the rounds' ratios, with their range; the target: at most
//! 2×) and what each store adds per request; and PostgreSQL's requests/s
//! against raw inserts from as many connections on the same server (`pg`;
//! the target: at least half at 16).
//!
//! Exactness: every request is answered 200 with the message's seq and
//! its client_msg_no, and after each level every channel's history (the
//! API's `/channel/messagesync`) holds exactly the messages sent to it, in
//! the order sent.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::{watch, Barrier};

use crate::pg::{self, PgDatabase};
use crate::server::{Server, Usage};

/// Connections at once, one level each.
const LEVELS: [usize; 3] = [1, 16, 64];

/// Rounds of each level on the bare substrate and on the memory store,
/// in turns (`--quick`: one).
const ROUNDS: usize = 5;

/// Members of each sender's group, the sender among them.
const GROUP: usize = 8;

/// What each message carries (before base64), a chat message's size.
const CONTENT: &str =
    r#"{"type":1,"content":"hello from the load generator, a message of ordinary size"}"#;

/// One level's figures.
struct Level {
    connections: usize,
    requests: usize,
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    /// Server CPU per request, µs.
    cpu_us: f64,
    /// PostgreSQL's backends' CPU per request (those connected to the
    /// server's database), µs.
    backends_us: Option<f64>,
}

/// Runs the scenario against the bare substrate and each store.
pub async fn scenario(quick: bool, binary: Option<&Path>) -> Result<(), String> {
    let window = if quick {
        Duration::from_millis(400)
    } else {
        Duration::from_secs(5)
    };
    println!(
        "http: POST /message/send on {LEVELS:?} keep-alive connections, {window:?} each, \
         every sender in turn to a person channel and to a group of {GROUP}"
    );
    let mut rows: Vec<(&str, Vec<Level>)> = Vec::new();
    // The bare substrate and the memory store in turns, round by round,
    // each round's ratio from the two runs side by side: what drifts on a
    // shared machine over a minute drifts for both.
    let rounds = if quick { 1 } else { ROUNDS };
    let bare = Server::bare_http().await?;
    let memory = match Server::start_with_flags(binary, &["--memory-store"]).await {
        Ok(memory) => memory,
        Err(e) => {
            bare.stop();
            return Err(e);
        }
    };
    let paired = in_turns(&bare, &memory, rounds, window / rounds as u32).await;
    bare.stop();
    memory.stop();
    let (bare_levels, memory_levels, ratios) = paired?;
    rows.push(("bare hyper", bare_levels));
    rows.push(("memory", memory_levels));
    let server = Server::start_with_flags(binary, &[]).await?;
    let measured = levels(&server, "sled", true, window, None).await;
    server.stop();
    rows.push(("sled", measured?));
    let mut raw = Vec::new();
    if let Some(db) = PgDatabase::create().await? {
        let measured = match Server::start_with_flags(binary, &["--postgres", &db.url()]).await {
            Ok(server) => {
                let measured = levels(&server, "postgres", true, window, Some(&db)).await;
                server.stop();
                measured
            }
            Err(e) => Err(e),
        };
        // The same server, inserting raw rows from as many connections.
        let mut inserted = Ok(());
        for connections in LEVELS {
            match pg::inserts_per_sec(&db.url(), connections, CONTENT.len(), window).await {
                Ok(rate) => raw.push(rate),
                Err(e) => inserted = Err(e),
            }
        }
        db.drop().await;
        rows.push(("postgres", measured?));
        inserted?;
    }
    summary(&rows, &ratios, &raw);
    Ok(())
}

async fn levels(
    server: &Server,
    name: &str,
    wukong: bool,
    window: Duration,
    db: Option<&PgDatabase>,
) -> Result<Vec<Level>, String> {
    let mut levels = Vec::new();
    for connections in LEVELS {
        levels.push(level(server, name, connections, wukong, window, db, 0).await?);
    }
    Ok(levels)
}

/// Each level `rounds` times on the bare substrate and on the memory
/// store in turns (which of the two goes first alternates), `window`
/// each: both rows (each level's rounds together) and, for each level,
/// the median, least and greatest of the rounds' ratios of CPU per
/// request, memory store to bare.
async fn in_turns(
    bare: &Server,
    memory: &Server,
    rounds: usize,
    window: Duration,
) -> Result<(Vec<Level>, Vec<Level>, Vec<Spread>), String> {
    let (mut bare_levels, mut memory_levels, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for connections in LEVELS {
        let (mut b, mut m) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let on_bare = level(bare, "bare hyper", connections, false, window, None, round);
            let on_memory = level(memory, "memory", connections, true, window, None, round);
            if round % 2 == 0 {
                b.push(on_bare.await?);
                m.push(on_memory.await?);
            } else {
                m.push(on_memory.await?);
                b.push(on_bare.await?);
            }
        }
        ratios.push(Spread::of(
            m.iter().zip(&b).map(|(m, b)| m.cpu_us / b.cpu_us.max(1e-9)),
        ));
        bare_levels.push(Level::together(&b));
        memory_levels.push(Level::together(&m));
    }
    Ok((bare_levels, memory_levels, ratios))
}

/// The median and range of some figures, one per round (at least one).
struct Spread {
    median: f64,
    least: f64,
    greatest: f64,
}

impl Spread {
    fn of(figures: impl Iterator<Item = f64>) -> Spread {
        let mut sorted: Vec<f64> = figures.collect();
        sorted.sort_by(f64::total_cmp);
        Spread {
            median: sorted[sorted.len() / 2],
            least: sorted[0],
            greatest: sorted[sorted.len() - 1],
        }
    }
}

impl Level {
    /// One level's rounds as one: requests and rate summed and averaged,
    /// the median round's latencies and CPU per request.
    fn together(rounds: &[Level]) -> Level {
        let median = |f: fn(&Level) -> f64| Spread::of(rounds.iter().map(f)).median;
        Level {
            connections: rounds[0].connections,
            requests: rounds.iter().map(|l| l.requests).sum(),
            per_sec: rounds.iter().map(|l| l.per_sec).sum::<f64>() / rounds.len() as f64,
            p50: Duration::from_secs_f64(median(|l| l.p50.as_secs_f64())),
            p99: Duration::from_secs_f64(median(|l| l.p99.as_secs_f64())),
            cpu_us: median(|l| l.cpu_us),
            backends_us: None,
        }
    }
}

/// What one connection sent: its channels' client_msg_nos in the order
/// sent (those answered), and each timed request's latency.
struct Sent {
    uid: String,
    peer: String,
    group: String,
    to_peer: Vec<String>,
    to_group: Vec<String>,
    latencies: Vec<Duration>,
}

/// `connections` senders for `window`, then the figures and the check.
async fn level(
    server: &Server,
    name: &str,
    connections: usize,
    wukong: bool,
    window: Duration,
    db: Option<&PgDatabase>,
    round: usize,
) -> Result<Level, String> {
    // Channels of this level and round only, so that each round's check
    // finds its own messages alone.
    let prefix = format!("h{connections}r{round}");
    let uid = |i: usize| format!("{prefix}-u{i}");
    if wukong {
        for i in 0..connections {
            let mut members = vec![uid(i)];
            members.extend((1..GROUP).map(|m| format!("{prefix}-g{i}-m{m}")));
            server.group(&format!("{prefix}-g{i}"), &members).await?;
        }
    }
    let ready = Arc::new(Barrier::new(connections + 1));
    let (go, deadline) = watch::channel(None);
    let mut tasks = Vec::new();
    for i in 0..connections {
        let sent = Sent {
            uid: uid(i),
            peer: format!("{prefix}-p{i}"),
            group: format!("{prefix}-g{i}"),
            to_peer: Vec::new(),
            to_group: Vec::new(),
            latencies: Vec::new(),
        };
        tasks.push(tokio::spawn(drive(
            server.port,
            sent,
            ready.clone(),
            deadline.clone(),
        )));
    }
    // Every connection open and warmed up (one request to each channel).
    ready.wait().await;
    let backends = match db {
        Some(db) => Some(db.backends().await?),
        None => None,
    };
    let before = server.usage()?;
    let started = Instant::now();
    let _ = go.send(Some(started + window));
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed();
    let after = server.usage()?;
    let mut level = report(name, connections, &all, elapsed, before, after);
    if let (Some(db), Some(before)) = (db, backends) {
        let after = db.backends().await?;
        let used: Duration = after
            .iter()
            .map(|(pid, cpu)| cpu.saturating_sub(before.get(pid).copied().unwrap_or_default()))
            .sum();
        let us = used.as_secs_f64() * 1e6 / level.requests.max(1) as f64;
        println!(
            "http {name} ×{connections}: PostgreSQL's {} backends: CPU {:.2} s, {us:.1} µs per request",
            after.len(),
            used.as_secs_f64()
        );
        level.backends_us = Some(us);
    }
    if wukong {
        for sent in &all {
            check(server, sent).await?;
        }
        println!("http {name} ×{connections}: exact (every request 200 and stored, every history as sent)");
    }
    Ok(level)
}

/// One connection: open, one untimed request to each channel, wait for
/// the start, then send back to back until the deadline.
async fn drive(
    port: u16,
    sent: Sent,
    ready: Arc<Barrier>,
    mut deadline: watch::Receiver<Option<Instant>>,
) -> Result<Sent, String> {
    let opened = async {
        let mut sender = Sender {
            connection: connect(port).await?,
            payload: base64::engine::general_purpose::STANDARD.encode(CONTENT),
            number: 0,
            sent,
        };
        sender.send().await?;
        sender.send().await?;
        Ok::<_, String>(sender)
    }
    .await;
    // Waited for even after a failure, so that the level starts and ends.
    ready.wait().await;
    let mut sender = opened?;
    let deadline = deadline
        .wait_for(Option::is_some)
        .await
        .map_err(|e| e.to_string())?
        .expect("waited for");
    while Instant::now() < deadline {
        let started = Instant::now();
        sender.send().await?;
        sender.sent.latencies.push(started.elapsed());
    }
    Ok(sender.sent)
}

/// A sender on its connection.
struct Sender {
    connection: SendRequest<Full<Bytes>>,
    payload: String,
    /// Requests sent: even ones to the peer, odd ones to the group.
    number: usize,
    sent: Sent,
}

impl Sender {
    async fn send(&mut self) -> Result<(), String> {
        let to_group = self.number % 2 == 1;
        let no = format!("{}-{}", self.sent.uid, self.number);
        self.number += 1;
        let (channel_id, channel_type) = match to_group {
            true => (&self.sent.group, 2),
            false => (&self.sent.peer, 1),
        };
        let body = json!({
            "header": {"no_persist": 0, "red_dot": 1, "sync_once": 0},
            "from_uid": self.sent.uid,
            "channel_id": channel_id,
            "channel_type": channel_type,
            "client_msg_no": no,
            "payload": self.payload,
        });
        post(&mut self.connection, body.to_string(), &no).await?;
        match to_group {
            true => self.sent.to_group.push(no),
            false => self.sent.to_peer.push(no),
        }
        Ok(())
    }
}

async fn connect(port: u16) -> Result<SendRequest<Full<Bytes>>, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One `/message/send`: answered 200 with a seq (the message was
/// stored) and its client_msg_no, or an error.
async fn post(
    connection: &mut SendRequest<Full<Bytes>>,
    body: String,
    client_msg_no: &str,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{client_msg_no}: {e}");
    connection.ready().await.map_err(|e| err(&e))?;
    let request = Request::post("/message/send")
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| err(&e))?;
    let response = connection
        .send_request(request)
        .await
        .map_err(|e| err(&e))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| err(&e))?
        .to_bytes();
    let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let stored = answer["message_seq"].as_u64().unwrap_or(0) > 0;
    if status != StatusCode::OK || !stored || answer["client_msg_no"] != client_msg_no {
        return Err(err(&format!(
            "answered {status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    Ok(())
}

/// Both of a sender's channels hold what it sent, in order, and nothing
/// else.
async fn check(server: &Server, sent: &Sent) -> Result<(), String> {
    for (channel, kind, expected) in [
        (&sent.peer, 1, &sent.to_peer),
        (&sent.group, 2, &sent.to_group),
    ] {
        let history = server.history_of(&sent.uid, channel, kind, 1).await?;
        if &history.client_msg_nos != expected {
            return Err(format!(
                "{} to {channel}: sent {} messages, history holds {} (first difference at {:?})",
                sent.uid,
                expected.len(),
                history.client_msg_nos.len(),
                expected
                    .iter()
                    .zip(&history.client_msg_nos)
                    .position(|(a, b)| a != b)
            ));
        }
    }
    Ok(())
}

fn report(
    name: &str,
    connections: usize,
    all: &[Sent],
    elapsed: Duration,
    before: Usage,
    after: Usage,
) -> Level {
    let mut latencies: Vec<Duration> = all.iter().flat_map(|s| s.latencies.clone()).collect();
    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(i).copied().unwrap_or_default()
    };
    let requests = latencies.len();
    let cpu = (after.cpu - before.cpu).as_secs_f64();
    let kernel = (after.kernel - before.kernel).as_secs_f64();
    let level = Level {
        connections,
        requests,
        per_sec: requests as f64 / elapsed.as_secs_f64(),
        p50: pct(0.5),
        p99: pct(0.99),
        cpu_us: cpu * 1e6 / requests.max(1) as f64,
        backends_us: None,
    };
    println!(
        "http {name} ×{connections}: {requests} requests in {:.2} s: {:.0}/s, p50 {:?}, p99 {:?}; \
         server CPU {cpu:.2} s ({:.0} % in the kernel), {:.1} µs per request",
        elapsed.as_secs_f64(),
        level.per_sec,
        level.p50,
        level.p99,
        100.0 * kernel / cpu.max(1e-9),
        level.cpu_us,
    );
    level
}

/// The table: CPU per request for each server and level, the memory
/// store against the bare substrate, and what each store adds.
/// The table of every row; `raw`: raw PostgreSQL inserts per second at
/// each level, if PostgreSQL ran.
fn summary(rows: &[(&str, Vec<Level>)], ratios: &[Spread], raw: &[f64]) {
    let header: Vec<String> = LEVELS.iter().map(|c| format!("{c:>11} conn")).collect();
    println!("http: server CPU per request {}", header.join(""));
    for (name, levels) in rows {
        let cells: Vec<String> = levels
            .iter()
            .map(|l| format!("{:>13.1} µs", l.cpu_us))
            .collect();
        println!("http:   {name:<26} {}", cells.join(""));
    }
    let row = |name: &str| rows.iter().find(|(n, _)| *n == name).map(|(_, l)| l);
    let Some(memory) = row("memory") else {
        return;
    };
    let cells: Vec<String> = ratios
        .iter()
        .map(|r| format!("{:>15.1}×", r.median))
        .collect();
    let met = match ratios.iter().all(|r| r.median <= 2.0) {
        true => "met",
        false => "MISSED",
    };
    println!(
        "http:   {:<26} {}   (target ≤ 2×: {met}; median of the rounds' ratios)",
        "memory / bare hyper",
        cells.join("")
    );
    let cells: Vec<String> = ratios
        .iter()
        .map(|r| format!("{:>10.1}–{:.1}×", r.least, r.greatest))
        .collect();
    println!("http:   {:<26} {}", "  rounds' range", cells.join(""));
    for store in ["sled", "postgres"] {
        let Some(levels) = row(store) else { continue };
        let cells: Vec<String> = levels
            .iter()
            .zip(memory)
            .map(|(s, m)| format!("{:>+13.1} µs", s.cpu_us - m.cpu_us))
            .collect();
        println!(
            "http:   {:<26} {}",
            format!("{store} − memory"),
            cells.join("")
        );
    }
    if let Some(pg) = row("postgres").filter(|_| raw.len() == LEVELS.len()) {
        let cells: Vec<String> = raw.iter().map(|r| format!("{r:>14.0}/s")).collect();
        println!(
            "http:   {:<26} {}",
            "raw INSERT, as many conns",
            cells.join("")
        );
        let cells: Vec<String> = pg
            .iter()
            .zip(raw)
            .map(|(p, r)| format!("{:>15.2}×", p.per_sec / r.max(1e-9)))
            .collect();
        println!(
            "http:   {:<26} {}   (target ≥ 0.5 at 16)",
            "postgres / raw INSERT",
            cells.join("")
        );
    }
    if let Some(pg) = row("postgres").filter(|l| l.iter().all(|l| l.backends_us.is_some())) {
        let cells: Vec<String> = pg
            .iter()
            .map(|l| format!("{:>13.1} µs", l.backends_us.unwrap_or_default()))
            .collect();
        println!("http:   {:<26} {}", "PostgreSQL's backends", cells.join(""));
        let cells: Vec<String> = pg
            .iter()
            .zip(memory)
            .map(|(p, m)| {
                let both = p.cpu_us + p.backends_us.unwrap_or_default();
                format!("{:>+13.1} µs", both - m.cpu_us)
            })
            .collect();
        println!(
            "http:   {:<26} {}",
            "postgres+backends − memory",
            cells.join("")
        );
    }
    for (name, levels) in rows {
        let cells: Vec<String> = levels
            .iter()
            .map(|l| {
                format!(
                    "{:>6} conn {:.0}/s p50 {:.2} ms p99 {:.2} ms",
                    l.connections,
                    l.per_sec,
                    l.p50.as_secs_f64() * 1e3,
                    l.p99.as_secs_f64() * 1e3
                )
            })
            .collect();
        println!("http: {name}: {}", cells.join(";"));
    }
}
