//! Throwaway servers for tests and benches, from the installed binaries,
//! on a free port of 127.0.0.1, stopped by pid when dropped (and killed by
//! a watchdog if the test process dies first):
//!
//! - [`PgServer`]: `initdb` into a temporary directory, then `postgres`.
//!   As root, both run as the `postgres` user (PostgreSQL refuses root).
//! - [`NatsServer`]: `nats-server` (core NATS, no JetStream).
//!
//! Without the binaries, `start` says loudly that the caller is skipped
//! and returns `None`; with `IMCORE_REQUIRE_SERVERS=1` it panics instead,
//! so that CI cannot pass by skipping.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running server and its data directory.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
    child: Option<Child>,
    /// Kills the server if this process dies without dropping it (killed
    /// itself, say), so that no server outlives its test.
    watchdog: Option<Child>,
}

impl PgServer {
    /// A fresh server, ready for connections; `None` (after saying so) when
    /// the PostgreSQL binaries are not installed.
    pub fn start(why: &str) -> Option<PgServer> {
        let Some(bin) = binaries() else {
            skip(&format!(
                "{why}: PostgreSQL binaries (initdb, postgres) not found; \
                 set IMCORE_PG_BIN or install postgresql"
            ));
            return None;
        };
        let dir = tempfile::tempdir().expect("temporary directory");
        let user = if effective_uid() == 0 {
            Some(postgres_user())
        } else {
            None
        };
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown data dir");
        }
        let mut server = PgServer {
            dir,
            bin,
            port: 0,
            user,
            child: None,
            watchdog: None,
        };
        let out = server
            .command("initdb")
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .args(["--locale=C", "-D"])
            .arg(server.data())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for _ in 0..5 {
            server.port = free_port();
            if server.run() {
                return Some(server);
            }
        }
        panic!("postgres could not bind a port: {}", server.log_tail());
    }

    /// The URL of database `db`, as the superuser, trust auth.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` (as the superuser); its URL.
    pub async fn create_database(&self, name: &str) -> String {
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .expect("connect to the test server");
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        drop(client);
        driver.await.expect("connection task").expect("connection");
        self.url(name)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Fast shutdown (SIGINT): running transactions are rolled back,
    /// clients disconnected; returns once the server has exited.
    pub fn stop_fast(&mut self) {
        self.signal("INT");
    }

    /// SIGKILL, and wait for the process to end.
    pub fn kill(&mut self) {
        self.signal("KILL");
    }

    /// Freezes the server and its backends (SIGSTOP): connections stay
    /// open and nothing answers, as with a hung host.
    pub fn pause(&self) {
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-STOP", &pid]).status();
        let _ = Command::new("pkill").args(["-STOP", "-P", &pid]).status();
    }

    /// Undoes [`pause`](Self::pause) (SIGCONT).
    pub fn resume(&self) {
        let pid = self.pid().to_string();
        let _ = Command::new("pkill").args(["-CONT", "-P", &pid]).status();
        let _ = Command::new("kill").args(["-CONT", &pid]).status();
    }

    /// Starts the server again on its data directory and port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        assert!(self.run(), "restart failed: {}", self.log_tail());
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// A command for one of the binaries, as the server's user.
    fn command(&self, name: &str) -> Command {
        let mut command = Command::new(self.bin.join(name));
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Starts `postgres` and waits for it to accept connections: `true`,
    /// or `false` when the port was taken.
    fn run(&mut self) -> bool {
        let mut child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", "max_connections=200", "-c", "shared_buffers=128MB"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start postgres");
        let ready = watch_stderr(
            &mut child,
            Some(self.log()),
            "ready to accept connections",
            &["could not bind", "could not create any"],
        );
        match ready.recv_timeout(Duration::from_secs(60)) {
            Ok(true) => {
                self.watchdog = Some(watchdog(child.id()));
                self.child = Some(child);
                true
            }
            Ok(false) => {
                let _ = child.kill();
                let _ = child.wait();
                false
            }
            Err(_) => {
                let _ = child.kill();
                panic!("postgres did not start: {}", self.log_tail())
            }
        }
    }

    fn signal(&mut self, signal: &str) {
        stop(&mut self.child, &mut self.watchdog, signal);
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where `initdb` and `postgres` are: `IMCORE_PG_BIN`, the newest
/// `/usr/lib/postgresql/*/bin`, or `PATH`.
fn binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("IMCORE_PG_BIN") {
        return Some(PathBuf::from(dir)).filter(|d| has_both(d));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_both(bin))
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).find(|d| has_both(d))
}

fn effective_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .unwrap_or(u32::MAX)
}

/// The `postgres` user's uid and gid, from `/etc/passwd`.
fn postgres_user() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"postgres") && f.len() > 3)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .expect("running as root needs a postgres user to run PostgreSQL as")
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Says loudly that a test is skipped, or fails it under
/// `IMCORE_REQUIRE_SERVERS=1`.
fn skip(msg: &str) {
    if std::env::var("IMCORE_REQUIRE_SERVERS").as_deref() == Ok("1") {
        panic!("SKIPPED: {msg} (IMCORE_REQUIRE_SERVERS=1 makes this a failure)");
    }
    eprintln!("\n*** SKIPPED: {msg} ***\n");
}

/// Reads a server's stderr on a thread of its own, copying it to `log` if
/// given: the receiver gets `true` once a line holds `ready`, `false` on a
/// line holding one of `failed` or when the server ends first.
fn watch_stderr(
    child: &mut Child,
    log: Option<PathBuf>,
    ready: &'static str,
    failed: &'static [&'static str],
) -> mpsc::Receiver<bool> {
    let stderr = child.stderr.take().expect("piped stderr");
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut file = log.map(|log| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("server log")
        });
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(file) = &mut file {
                let _ = writeln!(file, "{line}");
            }
            if line.contains(ready) {
                let _ = ready_tx.send(true);
            } else if failed.iter().any(|f| line.contains(f)) {
                let _ = ready_tx.send(false);
            }
        }
        // The server ended (ready or not).
        let _ = ready_tx.send(false);
    });
    ready_rx
}

/// Kills `pid` when this process ends, however it ends.
fn watchdog(pid: u32) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tail --pid={} -f /dev/null; kill -KILL {pid}",
            std::process::id()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the watchdog")
}

/// Stops the watchdog, then signals the server and waits for it to end.
fn stop(child: &mut Option<Child>, watchdog: &mut Option<Child>, signal: &str) {
    if let Some(mut watchdog) = watchdog.take() {
        let _ = watchdog.kill();
        let _ = watchdog.wait();
    }
    let Some(mut child) = child.take() else {
        return;
    };
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// A running `nats-server` (core NATS) on a port of 127.0.0.1.
pub struct NatsServer {
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl NatsServer {
    /// A fresh server, ready for clients; `None` (after saying so) when
    /// `nats-server` is not installed.
    pub fn start(why: &str) -> Option<NatsServer> {
        let bin = std::env::var_os("IMCORE_NATS_BIN")
            .map(PathBuf::from)
            .or_else(|| {
                let path = std::env::var_os("PATH").unwrap_or_default();
                std::env::split_paths(&path)
                    .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
                    .map(|d| d.join("nats-server"))
                    .find(|b| b.is_file())
            })
            .filter(|b| b.is_file());
        let Some(bin) = bin else {
            skip(&format!(
                "{why}: nats-server not found; set IMCORE_NATS_BIN or install nats-server"
            ));
            return None;
        };
        let mut server = NatsServer {
            bin,
            port: 0,
            child: None,
            watchdog: None,
        };
        for _ in 0..5 {
            server.port = free_port();
            if server.run() {
                return Some(server);
            }
        }
        panic!("nats-server could not bind a port");
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, and wait for the process to end.
    pub fn kill(&mut self) {
        stop(&mut self.child, &mut self.watchdog, "KILL");
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        // The port was just freed; another process may take it meanwhile,
        // but on a test machine a few tries suffice.
        for _ in 0..50 {
            if self.run() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("nats-server could not bind its port again");
    }

    /// Starts the server and waits until it is ready: `true`, or `false`
    /// when it exited (its port taken).
    fn run(&mut self) -> bool {
        let mut child = Command::new(&self.bin)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nats-server");
        let ready = watch_stderr(&mut child, None, "Server is ready", &[]);
        match ready.recv_timeout(Duration::from_secs(30)) {
            Ok(true) => {
                self.watchdog = Some(watchdog(child.id()));
                self.child = Some(child);
                true
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                false
            }
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
