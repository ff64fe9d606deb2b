//! The server process under load: started, told who may log in and which
//! groups exist (its HTTP API), measured from `/proc`, stopped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

/// A running `wukong_server`.
pub struct Server {
    child: Child,
    pub port: u16,
    _data: tempfile::TempDir,
}

/// What the server process has used so far.
#[derive(Clone, Copy)]
pub struct Usage {
    /// CPU time, user and system.
    pub cpu: Duration,
    /// Of `cpu`, the time in the kernel (system calls, and on 127.0.0.1
    /// the TCP stack of both ends of each write).
    pub kernel: Duration,
    /// Resident memory.
    pub rss_kib: u64,
}

impl Server {
    /// Starts `binary` (default: `wukong_server` beside this executable) on
    /// a free port with a fresh data directory.
    pub async fn start(binary: Option<&Path>) -> Result<Self, String> {
        // A sender sends as fast as it goes: a send rate far above it, so
        // that the rate limiter still runs (as it does by default) but
        // never refuses.
        Self::start_with(
            binary,
            &["--send-rate", "1000000", "--send-burst", "1000000"],
        )
        .await
    }

    /// As [`Server::start`], with more flags (`--memory-store`,
    /// `--postgres URL`).
    pub async fn start_with_flags(binary: Option<&Path>, flags: &[&str]) -> Result<Self, String> {
        let mut args = vec!["--send-rate", "1000000", "--send-burst", "1000000"];
        args.extend_from_slice(flags);
        Self::start_with(binary, &args).await
    }

    /// As [`Server::start`], but with the server's default send rate
    /// (200 a second per sender, in bursts of 400): what a burst meets.
    pub async fn start_rate_limited(binary: Option<&Path>) -> Result<Self, String> {
        Self::start_with(binary, &[]).await
    }

    async fn start_with(binary: Option<&Path>, args: &[&str]) -> Result<Self, String> {
        Self::start_full(binary, args, false).await
    }

    /// As [`Server::start`], as a host would run it in production: the TCP
    /// listener, the TLS listeners (WSS and TLS over TCP, with a
    /// self-signed certificate the server binary writes) and the limits per
    /// source address on, set above what thousands of clients from one
    /// address need.
    pub async fn start_production(binary: Option<&Path>) -> Result<Self, String> {
        Self::start_full(
            binary,
            &["--send-rate", "1000000", "--send-burst", "1000000"],
            true,
        )
        .await
    }

    async fn start_full(
        binary: Option<&Path>,
        args: &[&str],
        production: bool,
    ) -> Result<Self, String> {
        let binary = match binary {
            Some(b) => b.to_path_buf(),
            None => sibling("wukong_server")?,
        };
        let data = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut command = Command::new(&binary);
        command.args(["--port", "0", "--tcp-port", "0"]);
        if production {
            let cert = data.path().join("cert.pem");
            let key = data.path().join("key.pem");
            let made = Command::new(&binary)
                .arg("self-signed-cert")
                .arg("--cert")
                .arg(&cert)
                .arg("--key")
                .arg(&key)
                .status()
                .map_err(|e| e.to_string())?;
            if !made.success() {
                return Err(format!("{} self-signed-cert: {made}", binary.display()));
            }
            command
                .arg("--tls-cert")
                .arg(&cert)
                .arg("--tls-key")
                .arg(&key)
                .args(["--wss-port", "0", "--tls-tcp-port", "0"])
                .args(["--logins-per-second", "100000"])
                .args(["--connections-per-address", "100000"]);
        } else {
            // Thousands of clients log in from 127.0.0.1 at once: no limits
            // per source address.
            command.args(["--logins-per-second", "0", "--connections-per-address", "0"]);
        }
        command
            .args(args)
            .arg("--data")
            .arg(data.path().join("store"));
        Self::spawn(command, data).await
    }

    /// Starts the bare substrate (this executable, `--substrate-server`),
    /// with a raw sled store in its data directory if `store`.
    pub async fn substrate(store: bool) -> Result<Self, String> {
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let data = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut command = Command::new(me);
        command.arg("--substrate-server");
        if store {
            command.arg("--store").arg(data.path().join("sled"));
        }
        Self::spawn(command, data).await
    }

    /// Starts the bare HTTP server (this executable, `--bare-http-server`).
    pub async fn bare_http() -> Result<Self, String> {
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut command = Command::new(me);
        command.arg("--bare-http-server");
        Self::spawn(command, tempfile::tempdir().map_err(|e| e.to_string())?).await
    }

    async fn spawn(mut command: Command, data: tempfile::TempDir) -> Result<Self, String> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {command:?}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        // The line it prints when ready (the example server prints its
        // other listeners' lines before it).
        let line = tokio::task::spawn_blocking(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                if stdout.read_line(&mut line)? == 0 || line.starts_with("listening on ") {
                    return Ok::<_, std::io::Error>(line);
                }
            }
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let port = line
            .trim()
            .strip_prefix("listening on 127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("unexpected first line from the server: {line:?}"))?;
        Ok(Server {
            child,
            port,
            _data: data,
        })
    }

    /// The process's CPU time and resident memory now.
    pub fn usage(&self) -> Result<Usage, String> {
        let pid = self.child.id();
        let (cpu, kernel) = cpu_of(pid)?;
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or("no VmRSS")?;
        Ok(Usage {
            cpu,
            kernel,
            rss_kib,
        })
    }

    /// Lets `uid` log in (with the token [`token_of`]).
    pub async fn token(&self, uid: &str) -> Result<(), String> {
        self.post("/user/token", json!({"uid": uid, "token": token_of(uid)}))
            .await
            .map(drop)
    }

    /// Creates a group with these members (the first owns it).
    pub async fn group(&self, id: &str, members: &[String]) -> Result<(), String> {
        self.post(
            "/channel",
            json!({"channel_id": id, "channel_type": 2, "subscribers": members}),
        )
        .await
        .map(drop)
    }

    /// The client_msg_nos of the person channel between `uid` and `peer`
    /// from seq `from` on, as `uid` reads its history (the HTTP API's
    /// `/channel/messagesync`, page after page), and the last seq read.
    pub async fn history(&self, uid: &str, peer: &str, from: u64) -> Result<History, String> {
        self.history_of(uid, peer, 1, from).await
    }

    /// As [`Server::history`], of any channel `uid` may read: a person
    /// channel (`channel_type` 1, `channel_id` the peer) or a group (2).
    pub async fn history_of(
        &self,
        uid: &str,
        channel_id: &str,
        channel_type: u8,
        from: u64,
    ) -> Result<History, String> {
        let mut history = History {
            client_msg_nos: Vec::new(),
            last_seq: from.saturating_sub(1),
        };
        loop {
            let page = self
                .post(
                    "/channel/messagesync",
                    json!({
                        "login_uid": uid,
                        "channel_id": channel_id,
                        "channel_type": channel_type,
                        "start_message_seq": history.last_seq + 1,
                        "limit": 1000,
                        "pull_mode": 1,
                    }),
                )
                .await?;
            let messages = page["messages"].as_array().ok_or("no messages")?;
            for m in messages {
                let seq = m["message_seq"].as_u64().ok_or("no message_seq")?;
                if seq <= history.last_seq {
                    return Err(format!("seq {seq} after {}", history.last_seq));
                }
                history.last_seq = seq;
                let no = m["client_msg_no"].as_str().ok_or("no client_msg_no")?;
                history.client_msg_nos.push(no.to_string());
            }
            if page["more"] != 1 || messages.is_empty() {
                return Ok(history);
            }
        }
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        let err = |e: &dyn std::fmt::Display| format!("POST {path}: {e}");
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|e| err(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| err(&e))?;
        tokio::spawn(connection);
        let request = Request::post(path)
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| err(&e))?;
        let response = sender.send_request(request).await.map_err(|e| err(&e))?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| err(&e))?;
        let body = body.to_bytes();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body).into_owned();
            return Err(err(&format!("{status}: {text}")));
        }
        // Some answers are empty, or not JSON: those are just a success.
        Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CPU time process `pid` has used so far, user and system, and of
/// it the system time.
pub fn cpu_of(pid: u32) -> Result<(Duration, Duration), String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    // Fields after the command name (which may hold spaces), from the
    // third: utime and stime are the 14th and 15th, in clock ticks
    // (USER_HZ, 100 on Linux).
    let rest = stat.rsplit_once(')').ok_or("bad /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let cpu = Duration::from_millis((ticks(14) + ticks(15)) * 10);
    let kernel = Duration::from_millis(ticks(15) * 10);
    Ok((cpu, kernel))
}

/// A person channel's history, as [`Server::history`] read it.
pub struct History {
    /// In seq order.
    pub client_msg_nos: Vec<String>,
    /// The last seq read (the seq before the first asked for if none).
    pub last_seq: u64,
}

/// The token the load generator registers for `uid`.
pub fn token_of(uid: &str) -> String {
    format!("{uid}-token")
}

fn sibling(name: &str) -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = me.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: build it first (cargo build --release --example {name}), or pass --server PATH",
            path.display()
        ))
    }
}
