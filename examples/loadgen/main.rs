//! A load generator for `examples/wukong_server`: real WebSocket clients on
//! 127.0.0.1 speaking WuKongIM's protocol with the crate's own codec and
//! cipher, against a server process it starts itself (fresh data
//! directory, free port). It reports what a host sizes a server by, from
//! the server process's own accounting (`/proc/<pid>`), and checks that
//! the run was exact.
//!
//! ```text
//! cargo build --release --example wukong_server --example loadgen
//! target/release/examples/loadgen [--quick] [send|recv|storm|idle|burst|soak|http ...]
//! ```
//!
//! Scenarios (sized for 2 cores; `--quick` is a short run for CI):
//!
//! - `send`: 100 groups of 100 members, one member of each online and
//!   sending (WuKongIM's single-node send test, scaled);
//! - `recv`: one group of 2,000 members, 1,000 online, one of them sending
//!   at a steady rate (WuKongIM's receive test, scaled);
//! - `storm`: 10 groups of 20, all online, every member sending 120
//!   messages with 8 in flight;
//! - `idle`: logged-in connections that do nothing: resident memory per
//!   connection and logins per second, against a server with its TCP and
//!   TLS listeners and its limits per source address on.
//!
//! Each prints sends/s, deliveries/s, SENDACK latency (p50, p99, max),
//! server CPU time per send and per delivery, and server resident memory.
//! Exactness: every SENDACK is a success, every online member gets every
//! message of its group once and in seq order, and no client is closed by
//! the server. A failed check ends the run with exit code 1.
//!
//! `send`, `recv` and `storm` then run again against the bare substrate (a
//! WebSocket fan-out server with no IM in it, see `substrate`) with the
//! same clients and traffic, and print the ratio of the server CPU per
//! delivery and per send. `send` and `storm` also run against the
//! substrate writing each send to raw sled, flushed before its
//! acknowledgement (what a durable send costs with no IM in it), and on
//! the server's memory store against the substrate that stores nothing
//! (what the crate costs without a store's).
//!
//! Two more scenarios, run only when named, throw bursts at the server
//! as a hostile or merely buggy client would, with the server's default
//! send rate (200 a second per sender, in bursts of 400), so that most of
//! each burst is refused (`IMCORE_SEND_RATE=0` in the environment, which
//! the server reads, turns it off: every SEND is then stored):
//!
//! - `burst`: four users each write one 4 MiB WebSocket message of about
//!   50,000 small SENDs to a person channel, four rounds (`--quick`: two):
//!   every SEND answered once, a success or reason 22. The server's RSS
//!   after a warm-up, at the peak, and once a second after the last round:
//!   it must be back within 64 MiB of where it started within 60 s (the
//!   full run follows it for all 60 s and prints it then);
//! - `soak`: the same burst 60 times (`--quick`: 20) against one server;
//!   after each round a fifth user's SEND is acknowledged within 1 s, and
//!   the history of each channel (the HTTP API's `/channel/messagesync`)
//!   holds every SEND acknowledged as a success exactly once and nothing
//!   else. Time per round and in all.
//!
//! One more, run by default after those four, the HTTP API as business
//! servers use it (see `http`):
//!
//! - `http`: `POST /message/send` on 1, 16 and 64 keep-alive connections,
//!   against the server on its memory store, on sled and on PostgreSQL,
//!   and against a bare hyper server (`bare_http`) answering the same
//!   bodies: requests/s, latency p50/p99, server CPU per request, the
//!   ratio to the bare server's and what each store adds. Every request
//!   answered 200 and stored, every channel's history exactly as sent.
//!
//! The server binary is `wukong_server` beside this one, or `--server PATH`.

mod bare_http;
mod burst;
mod client;
mod http;
mod pg;
mod server;
/// Throwaway PostgreSQL servers, for `http` when none runs locally.
#[path = "../../tests/common/servers.rs"]
mod servers;
mod substrate;

use std::time::{Duration, Instant};

/// The allocator `wukong_server` uses (see its `main.rs`), so that the bare
/// substrate this runs is measured on the same one.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use client::{Client, Tally};
use server::Server;

/// What one scenario is.
struct Plan {
    name: &'static str,
    groups: usize,
    members: usize,
    /// Online members per group (the first ones).
    online: usize,
    /// Of the online members, how many send (the first ones).
    senders: usize,
    messages: usize,
    in_flight: usize,
    /// Sends per second per sender, or as fast as acks come back.
    rate: Option<f64>,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--substrate-server") {
        let store = args
            .windows(2)
            .find(|w| w[0] == "--store")
            .map(|w| std::path::PathBuf::from(&w[1]));
        if let Err(e) = substrate::serve(store).await {
            eprintln!("substrate: {e}");
            std::process::exit(2);
        }
        return;
    }
    if args.iter().any(|a| a == "--bare-http-server") {
        if let Err(e) = bare_http::serve().await {
            eprintln!("bare http: {e}");
            std::process::exit(2);
        }
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let binary = args
        .windows(2)
        .find(|w| w[0] == "--server")
        .map(|w| std::path::PathBuf::from(&w[1]));
    let mut chosen: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| ["send", "recv", "storm", "idle", "burst", "soak", "http"].contains(a))
        .collect();
    if chosen.is_empty() {
        chosen = vec!["send", "recv", "storm", "idle", "http"];
    }
    let mut failed = false;
    for name in chosen {
        if let Err(e) = scenario(name, quick, binary.as_deref()).await {
            eprintln!("{name}: FAILED: {e}");
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
}

/// Runs one scenario against `wukong_server` and then, but for `idle`,
/// against the bare substrate.
async fn scenario(name: &str, quick: bool, binary: Option<&std::path::Path>) -> Result<(), String> {
    if name == "http" {
        return http::scenario(quick, binary).await;
    }
    if name == "burst" || name == "soak" {
        let server = Server::start_rate_limited(binary).await?;
        let outcome = match name {
            "burst" => burst::memory(&server, if quick { 2 } else { 4 }, !quick).await,
            _ => burst::soak(&server, if quick { 20 } else { 60 }).await,
        };
        server.stop();
        return outcome;
    }
    if name == "idle" {
        let server = Server::start_production(binary).await?;
        let outcome = idle(&server, if quick { 200 } else { 4_000 }).await;
        server.stop();
        return outcome;
    }
    let server = Server::start(binary).await?;
    let plan = plan(name, quick);
    let served = run(&server, &plan, Target::Wukong).await;
    server.stop();
    let served = served?;
    let against = |what: &str, substrate: &Measured| ratio(name, what, &served, substrate);
    let substrate = substrate_run(&plan, false).await?;
    against("as fast as it goes", &substrate);
    if plan.rate.is_none() {
        // The cost of a delivery depends on the rate: a faster server
        // writes more frames per system call and finds its clients
        // already awake. The substrate again, at the served run's rate.
        let substrate = paced_substrate(&plan, served.sends_per_sec, false).await?;
        against("at the same rate", &substrate);
        // What storing costs without the crate: the same sends into raw
        // sled, each flushed before its acknowledgement.
        let stored = paced_substrate(&plan, served.sends_per_sec, true).await?;
        against("with raw sled, at the same rate", &stored);
        // The crate without the cost of a store: on its memory store,
        // against the substrate (which stores nothing) at that run's rate.
        let server = Server::start_with_flags(binary, &["--memory-store"]).await?;
        let on_memory = Plan {
            name: if name == "send" {
                "send, memory store"
            } else {
                "storm, memory store"
            },
            ..plan
        };
        let memory = run(&server, &on_memory, Target::Wukong).await;
        server.stop();
        let memory = memory?;
        let substrate = paced_substrate(&plan, memory.sends_per_sec, false).await?;
        ratio(on_memory.name, "at the same rate", &memory, &substrate);
    }
    Ok(())
}

/// The substrate (writing each send to raw sled if `store`) with `plan`'s
/// clients and traffic, paced to `sends_per_sec` in all.
async fn paced_substrate(plan: &Plan, sends_per_sec: f64, store: bool) -> Result<Measured, String> {
    let senders = (plan.groups * plan.senders) as f64;
    let paced = Plan {
        rate: Some(sends_per_sec / senders),
        ..*plan
    };
    let what = if store {
        "substrate + raw sled"
    } else {
        "substrate"
    };
    println!(
        "{} ({what}), again at {sends_per_sec:.0} sends/s:",
        plan.name
    );
    substrate_run(&paced, store).await
}

/// Prints the ratio of `served`'s server CPU per delivery and per send to
/// `substrate`'s.
fn ratio(name: &str, what: &str, served: &Measured, substrate: &Measured) {
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.1}×", a / b),
        _ => "-".into(),
    };
    println!(
        "{name}: wukong_server / substrate {what}: server CPU per delivery {}, per send {}",
        ratio(served.per_delivery, substrate.per_delivery),
        ratio(served.per_send, substrate.per_send),
    );
}

/// The scenario against a fresh substrate process, storing sends in raw
/// sled if `store`.
async fn substrate_run(plan: &Plan, store: bool) -> Result<Measured, String> {
    let bare = Server::substrate(store).await?;
    let measured = run(&bare, plan, Target::Substrate).await;
    bare.stop();
    measured
}

/// Whom the clients talk to.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    /// `wukong_server`, in WuKongIM's protocol.
    Wukong,
    /// The bare substrate, in its own frames.
    Substrate,
}

/// Server CPU per send and per delivery, in µs.
struct Measured {
    sends_per_sec: f64,
    per_send: Option<f64>,
    per_delivery: Option<f64>,
}

fn plan(name: &str, quick: bool) -> Plan {
    let q = |full: usize, short: usize| if quick { short } else { full };
    match name {
        "send" => Plan {
            name: "send",
            groups: q(100, 20),
            members: 100,
            online: 1,
            senders: 1,
            messages: q(200, 20),
            in_flight: 8,
            rate: None,
        },
        "recv" => Plan {
            name: "recv",
            groups: 1,
            members: q(2_000, 400),
            online: q(1_000, 200),
            senders: 1,
            messages: q(500, 50),
            in_flight: 8,
            rate: Some(q(100, 50) as f64),
        },
        _ => Plan {
            name: "storm",
            groups: 10,
            members: 20,
            online: 20,
            senders: 20,
            messages: q(120, 20),
            in_flight: 8,
            rate: None,
        },
    }
}

/// Sets up the groups, logs the online members in, runs the senders, and
/// checks and reports what came back.
async fn run(server: &Server, plan: &Plan, target: Target) -> Result<Measured, String> {
    let group_id = |g: usize| format!("{}-g{g}", plan.name);
    let uid = |g: usize, m: usize| format!("{}-g{g}-u{m}", plan.name);
    for g in (0..plan.groups).filter(|_| target == Target::Wukong) {
        let members: Vec<String> = (0..plan.members).map(|m| uid(g, m)).collect();
        for u in members.iter().take(plan.online) {
            server.token(u).await?;
        }
        server.group(&group_id(g), &members).await?;
    }
    let mut clients = Vec::new();
    for g in 0..plan.groups {
        for m in 0..plan.online {
            let client = match target {
                Target::Wukong => Client::login(server, &uid(g, m)).await?,
                Target::Substrate => {
                    substrate::login(server.port, &uid(g, m), &group_id(g)).await?
                }
            };
            clients.push((g, m, client));
        }
    }
    let before = server.usage()?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    // Every online member expects every message of its group but its own.
    let per_group = plan.senders * plan.messages;
    for (g, m, client) in clients {
        let sends = if m < plan.senders { plan.messages } else { 0 };
        let load = client::Load {
            channel: group_id(g),
            sends,
            expected: per_group - sends,
            in_flight: plan.in_flight,
            rate: plan.rate,
        };
        tasks.push(tokio::spawn(client.drive(load)));
    }
    let mut tallies = Vec::new();
    for t in tasks {
        tallies.push(t.await.map_err(|e| e.to_string())?);
    }
    let elapsed = started.elapsed();
    let after = server.usage()?;
    let name = match target {
        Target::Wukong => plan.name.to_string(),
        Target::Substrate => format!("{} (substrate)", plan.name),
    };
    report(&name, &tallies, elapsed, before, after)
}

fn report(
    name: &str,
    tallies: &[Tally],
    elapsed: Duration,
    before: server::Usage,
    after: server::Usage,
) -> Result<Measured, String> {
    let sends: usize = tallies.iter().map(|t| t.acks.len()).sum();
    let deliveries: usize = tallies.iter().map(|t| t.received).sum();
    let mut latencies: Vec<Duration> = tallies.iter().flat_map(|t| t.acks.clone()).collect();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let cpu = after.cpu - before.cpu;
    let kernel = after.kernel - before.kernel;
    let secs = elapsed.as_secs_f64();
    println!(
        "{}: {} sends, {} deliveries in {:.2} s: {:.0} sends/s, {:.0} deliveries/s",
        name,
        sends,
        deliveries,
        secs,
        sends as f64 / secs,
        deliveries as f64 / secs
    );
    println!(
        "{}: SENDACK p50 {:?}, p99 {:?}, max {:?}",
        name,
        pct(0.5),
        pct(0.99),
        latencies.last().copied().unwrap_or_default()
    );
    let per_us = |n: usize| (n > 0).then(|| cpu.as_secs_f64() * 1e6 / n as f64);
    let measured = Measured {
        sends_per_sec: sends as f64 / elapsed.as_secs_f64(),
        per_send: per_us(sends),
        per_delivery: per_us(deliveries),
    };
    let per = |us: Option<f64>| us.map_or("-".to_string(), |us| format!("{us:.1} µs"));
    println!(
        "{}: server CPU {:.2} s ({:.0} % in the kernel): {} per send, {} per delivery; server RSS {:.1} MiB",
        name,
        cpu.as_secs_f64(),
        100.0 * kernel.as_secs_f64() / cpu.as_secs_f64().max(1e-9),
        per(measured.per_send),
        per(measured.per_delivery),
        after.rss_kib as f64 / 1024.0
    );
    let mut problems = Vec::new();
    for t in tallies {
        if let Some(e) = &t.failure {
            problems.push(format!("{}: {e}", t.uid));
        }
        if t.refused > 0 {
            problems.push(format!("{}: {} SENDACKs were refusals", t.uid, t.refused));
        }
        if t.received != t.expected {
            problems.push(format!(
                "{}: received {} messages, expected {}",
                t.uid, t.received, t.expected
            ));
        }
    }
    match problems.len() {
        0 => {
            println!(
                "{}: exact (every ack a success, every message once, in seq order, nobody closed)",
                name
            );
            Ok(measured)
        }
        n => Err(format!("{n} problems, first: {}", problems[0])),
    }
}

/// `n` connections that log in and stay: memory per connection, logins/s.
async fn idle(server: &Server, n: usize) -> Result<(), String> {
    for i in 0..n {
        server.token(&format!("idle-u{i}")).await?;
    }
    let before = server.usage()?;
    let started = Instant::now();
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        clients.push(Client::login(server, &format!("idle-u{i}")).await?);
    }
    let elapsed = started.elapsed();
    let after = server.usage()?;
    let per = (after.rss_kib as f64 - before.rss_kib as f64) / n as f64;
    println!(
        "idle: {n} logged-in connections: {:.0} logins/s; server RSS {:.1} -> {:.1} MiB, {per:.1} KiB per connection",
        n as f64 / elapsed.as_secs_f64(),
        before.rss_kib as f64 / 1024.0,
        after.rss_kib as f64 / 1024.0,
    );
    for c in clients {
        c.close().await;
    }
    Ok(())
}
