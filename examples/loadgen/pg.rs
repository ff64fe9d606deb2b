//! PostgreSQL for `loadgen http`: a database of its own for the run
//! ([`PgDatabase`]), and the bare substrate of a send over the HTTP API on
//! it: raw single-row autocommit INSERTs of a payload of the same size
//! into an indexed table, one connection per sender, back to back for the
//! same window, on the same server.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Barrier;

use crate::server::cpu_of;
use crate::servers::PgServer;

/// Where a local PostgreSQL is looked for (superuser, trust auth), unless
/// `IMCORE_LOADGEN_PG` says otherwise.
const LOCAL_PG: &str = "postgres://postgres@127.0.0.1:5432";

/// The table: a channel's log, as small as an indexed log can be.
const CREATE: &str = "CREATE TABLE raw_log (ch text NOT NULL, seq bigserial, \
    payload bytea NOT NULL, PRIMARY KEY (ch, seq))";
const INSERT: &str = "INSERT INTO raw_log (ch, payload) VALUES ($1, $2)";

/// Inserts per second from `connections` connections to `url` inserting
/// `payload_len` bytes back to back for `window`.
pub async fn inserts_per_sec(
    url: &str,
    connections: usize,
    payload_len: usize,
    window: Duration,
) -> Result<f64, String> {
    let admin = connect(url).await?;
    admin
        .batch_execute(&format!("DROP TABLE IF EXISTS raw_log; {CREATE}"))
        .await
        .map_err(|e| e.to_string())?;
    let ready = Arc::new(Barrier::new(connections + 1));
    let started = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut tasks = Vec::new();
    for i in 0..connections {
        let client = connect(url).await?;
        let (ready, started) = (ready.clone(), started.clone());
        tasks.push(tokio::spawn(async move {
            let statement = client.prepare(INSERT).await.map_err(|e| e.to_string())?;
            let (channel, payload) = (format!("raw-{i}"), vec![b'x'; payload_len]);
            ready.wait().await;
            let deadline = *started.get().ok_or("no start")? + window;
            let mut done = 0u64;
            while Instant::now() < deadline {
                client
                    .execute(&statement, &[&channel, &payload])
                    .await
                    .map_err(|e| e.to_string())?;
                done += 1;
            }
            Ok::<u64, String>(done)
        }));
    }
    let _ = started.set(Instant::now());
    ready.wait().await;
    let mut done = 0;
    for task in tasks {
        done += task.await.map_err(|e| e.to_string())??;
    }
    let elapsed = started.get().map_or(window, Instant::elapsed);
    admin
        .batch_execute("DROP TABLE raw_log")
        .await
        .map_err(|e| e.to_string())?;
    Ok(done as f64 / elapsed.as_secs_f64())
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("raw PostgreSQL: {e}"))?;
    tokio::spawn(connection);
    Ok(client)
}

/// A database of its own for the PostgreSQL run, dropped after it; on a
/// throwaway server of its own when no PostgreSQL answers at the local
/// address.
pub struct PgDatabase {
    base: String,
    name: String,
    _server: Option<PgServer>,
}

impl PgDatabase {
    /// `None` after saying loudly that PostgreSQL is skipped (an error
    /// instead under `IMCORE_REQUIRE_SERVERS=1`).
    pub async fn create() -> Result<Option<Self>, String> {
        let name = format!("imcore_loadgen_{}", std::process::id());
        let local = std::env::var("IMCORE_LOADGEN_PG").unwrap_or_else(|_| LOCAL_PG.into());
        match admin(&local, &name, true).await {
            Ok(()) => {
                return Ok(Some(PgDatabase {
                    base: local,
                    name,
                    _server: None,
                }))
            }
            Err(e) => eprintln!("http: no PostgreSQL at {local} ({e}): a throwaway server"),
        }
        // Skips loudly without the binaries, or panics under
        // IMCORE_REQUIRE_SERVERS=1: an error here.
        let server = tokio::task::spawn_blocking(|| PgServer::start("loadgen http on postgres"))
            .await
            .map_err(|e| format!("PostgreSQL: {e}"))?;
        let Some(server) = server else {
            return Ok(None);
        };
        let base = server.url("").trim_end_matches('/').to_string();
        admin(&base, &name, true).await?;
        Ok(Some(PgDatabase {
            base,
            name,
            _server: Some(server),
        }))
    }

    /// Without TLS: on 127.0.0.1 it only costs (and a server built with
    /// `postgres-tls` would try it first).
    pub fn url(&self) -> String {
        format!("{}/{}?sslmode=disable", self.base, self.name)
    }

    /// The CPU time each backend connected to the database has used.
    pub async fn backends(&self) -> Result<HashMap<u32, Duration>, String> {
        let (client, connection) =
            tokio_postgres::connect(&format!("{}/postgres", self.base), tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(connection);
        let rows = client
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1",
                &[&self.name],
            )
            .await
            .map_err(|e| e.to_string())?;
        drop(client);
        let _ = driver.await;
        // A backend gone since is left out.
        Ok(rows
            .iter()
            .map(|row| row.get::<_, i32>(0) as u32)
            .filter_map(|pid| Some((pid, on_cpu(pid)?)))
            .collect())
    }

    pub async fn drop(self) {
        if let Err(e) = admin(&self.base, &self.name, false).await {
            eprintln!("http: could not drop database {}: {e}", self.name);
        }
    }
}

/// The time process `pid` has run on a CPU, to the nanosecond
/// (`/proc/<pid>/schedstat`; `/proc/<pid>/stat` counts whole ticks, of
/// 10 ms, which a backend's share of a short level rounds to nothing).
fn on_cpu(pid: u32) -> Option<Duration> {
    let schedstat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
    match schedstat.split_whitespace().next()?.parse() {
        Ok(ns) => Some(Duration::from_nanos(ns)),
        Err(_) => cpu_of(pid).ok().map(|(cpu, _)| cpu),
    }
}

/// Creates database `name` afresh (`create`), or drops it.
async fn admin(base: &str, name: &str, create: bool) -> Result<(), String> {
    let url = format!("{base}/postgres");
    let connect = tokio_postgres::connect(&url, tokio_postgres::NoTls);
    let (client, connection) = tokio::time::timeout(Duration::from_secs(3), connect)
        .await
        .map_err(|_| "no answer in 3 s".to_string())?
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let mut sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE);");
    if create {
        sql += &format!("CREATE DATABASE {name};");
    }
    // One statement at a time: CREATE DATABASE cannot run in the implicit
    // transaction of a multi-statement batch.
    for statement in sql.split_terminator(';') {
        client
            .batch_execute(statement)
            .await
            .map_err(|e| e.to_string())?;
    }
    drop(client);
    let _ = driver.await;
    Ok(())
}
