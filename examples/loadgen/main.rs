//! A load generator for `examples/wukong_server`: real WebSocket clients on
//! 127.0.0.1 speaking WuKongIM's protocol with the crate's own codec and
//! cipher, against a server process it starts itself (fresh data
//! directory, free port). It reports what a host sizes a server by, from
//! the server process's own accounting (`/proc/<pid>`), and checks that
//! the run was exact.
//!
//! ```text
//! cargo build --release --example wukong_server --example loadgen
//! target/release/examples/loadgen [--quick] [send|recv|storm|idle ...]
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
//!   connection and logins per second.
//!
//! Each prints sends/s, deliveries/s, SENDACK latency (p50, p99, max),
//! server CPU time per send and per delivery, and server resident memory.
//! Exactness: every SENDACK is a success, every online member gets every
//! message of its group once and in seq order, and no client is closed by
//! the server. A failed check ends the run with exit code 1.
//!
//! The server binary is `wukong_server` beside this one, or `--server PATH`.

mod client;
mod server;

use std::time::{Duration, Instant};

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
    let quick = args.iter().any(|a| a == "--quick");
    let binary = args
        .windows(2)
        .find(|w| w[0] == "--server")
        .map(|w| std::path::PathBuf::from(&w[1]));
    let mut chosen: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| ["send", "recv", "storm", "idle"].contains(a))
        .collect();
    if chosen.is_empty() {
        chosen = vec!["send", "recv", "storm", "idle"];
    }
    let mut failed = false;
    for name in chosen {
        let server = match Server::start(binary.as_deref()).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("loadgen: {e}");
                std::process::exit(2);
            }
        };
        let outcome = match name {
            "idle" => idle(&server, if quick { 200 } else { 4_000 }).await,
            _ => run(&server, plan(name, quick)).await,
        };
        if let Err(e) = outcome {
            eprintln!("{name}: FAILED: {e}");
            failed = true;
        }
        server.stop();
    }
    if failed {
        std::process::exit(1);
    }
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
async fn run(server: &Server, plan: Plan) -> Result<(), String> {
    let group_id = |g: usize| format!("{}-g{g}", plan.name);
    let uid = |g: usize, m: usize| format!("{}-g{g}-u{m}", plan.name);
    for g in 0..plan.groups {
        let members: Vec<String> = (0..plan.members).map(|m| uid(g, m)).collect();
        for u in members.iter().take(plan.online) {
            server.token(u).await?;
        }
        server.group(&group_id(g), &members).await?;
    }
    let mut clients = Vec::new();
    for g in 0..plan.groups {
        for m in 0..plan.online {
            clients.push((g, m, Client::login(server, &uid(g, m)).await?));
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
    report(&plan, &tallies, elapsed, before, after)
}

fn report(
    plan: &Plan,
    tallies: &[Tally],
    elapsed: Duration,
    before: server::Usage,
    after: server::Usage,
) -> Result<(), String> {
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
    let secs = elapsed.as_secs_f64();
    println!(
        "{}: {} sends, {} deliveries in {:.2} s: {:.0} sends/s, {:.0} deliveries/s",
        plan.name,
        sends,
        deliveries,
        secs,
        sends as f64 / secs,
        deliveries as f64 / secs
    );
    println!(
        "{}: SENDACK p50 {:?}, p99 {:?}, max {:?}",
        plan.name,
        pct(0.5),
        pct(0.99),
        latencies.last().copied().unwrap_or_default()
    );
    let per = |n: usize| {
        if n == 0 {
            "-".to_string()
        } else {
            format!("{:.1} µs", cpu.as_secs_f64() * 1e6 / n as f64)
        }
    };
    println!(
        "{}: server CPU {:.2} s: {} per send, {} per delivery; server RSS {:.1} MiB",
        plan.name,
        cpu.as_secs_f64(),
        per(sends),
        per(deliveries),
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
                plan.name
            );
            Ok(())
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
