//! What the server is told at start: flags, each also from an `IMCORE_*`
//! environment variable (clap), checked together before anything listens.

use std::fmt;
use std::io::IsTerminal as _;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use imcore::{RetentionPolicy, RetentionRule, SendRate};

/// A WuKongIM-compatible server on imcore: WebSocket and HTTP API on one
/// port, WuKongIM's binary protocol over TCP on another, optionally TLS on
/// both.
#[derive(Parser, Debug)]
#[command(name = "wukong_server", args_conflicts_with_subcommands = true)]
pub struct Settings {
    /// A tool instead of the server.
    #[command(subcommand)]
    pub command: Option<Tool>,
    /// Port of the WebSocket and HTTP API listener (0: any free port).
    #[arg(long, env = "IMCORE_PORT", default_value_t = 5200)]
    pub port: u16,
    /// Address the WebSocket/HTTP listener (and the wss one) binds to.
    /// Anything but loopback needs a manager token.
    #[arg(long, env = "IMCORE_BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Port of the TCP listener for WuKongIM's native SDKs (WuKongIM's
    /// 5100; 0: any free port).
    #[arg(long, env = "IMCORE_TCP_PORT", default_value_t = 5100)]
    pub tcp_port: u16,
    /// Address the TCP listener (and the TLS-over-TCP one) binds to.
    /// Anything but loopback needs a manager token.
    #[arg(long, env = "IMCORE_TCP_BIND", default_value = "127.0.0.1")]
    pub tcp_bind: IpAddr,
    /// The sled store's directory (unless --postgres).
    #[arg(long, env = "IMCORE_DATA", default_value = "wukong-data")]
    pub data: PathBuf,
    /// A PostgreSQL URL: the history lives there instead of sled.
    #[arg(long, env = "IMCORE_POSTGRES")]
    pub postgres: Option<String>,
    /// Keeps history and directory in memory (`MemoryStore`) instead of
    /// sled: nothing is written to disk and nothing survives a restart.
    /// For tests and benchmarks (the load generator's `http` scenario
    /// measures the server without a store's cost with it), not for use.
    #[arg(long, env = "IMCORE_MEMORY_STORE", conflicts_with = "postgres",
          action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub memory_store: bool,
    /// A NATS URL: this server is one node of a cluster joined there.
    #[arg(long, env = "IMCORE_NATS")]
    pub nats: Option<String>,
    /// A webhook URL: WuKongIM's events are POSTed there.
    #[arg(long, env = "IMCORE_WEBHOOK")]
    pub webhook: Option<String>,
    /// This node's number (0 to 1023; unique per node of a cluster).
    #[arg(long, env = "IMCORE_NODE_ID", default_value_t = 1)]
    pub node_id: u16,
    /// Milliseconds a connection has to send its first request's headers
    /// (and TLS handshake), and after an upgrade its CONNECT.
    #[arg(long = "connect-timeout-ms", env = "IMCORE_CONNECT_TIMEOUT_MS",
          default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout_ms: u64,
    /// Seconds an idle HTTP keep-alive connection is kept between
    /// requests, announced in every response (`Keep-Alive: timeout=N`);
    /// longer than common client pools keep theirs, so that the client
    /// closes it first.
    #[arg(long = "keep-alive-timeout-s", env = "IMCORE_KEEP_ALIVE_TIMEOUT_S",
          default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub keep_alive_timeout_s: u64,
    /// The manager token: when set, every HTTP API request must carry it
    /// in a `token` header (or `Authorization: Bearer`), as WuKongIM's
    /// managerToken. Required to bind anything but loopback.
    #[arg(long, env = "IMCORE_MANAGER_TOKEN", hide_env_values = true)]
    pub manager_token: Option<Secret>,
    /// Address and port of the operator's console (a page of live
    /// figures, and the JSON it reads), on a listener of its own; off
    /// unless given. Needs --manager-token: the page asks for it, and
    /// every figure is answered only with it.
    #[arg(long, env = "IMCORE_CONSOLE_ADDR", requires = "manager_token")]
    pub console_addr: Option<SocketAddr>,
    /// PEM certificate chain for the TLS listeners.
    #[arg(long, env = "IMCORE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for the TLS listeners.
    #[arg(long, env = "IMCORE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Port of a wss (and HTTPS API) listener on --bind, beside the plain
    /// one (0: any free port). Needs --tls-cert and --tls-key.
    #[arg(long, env = "IMCORE_WSS_PORT", requires = "tls_cert")]
    pub wss_port: Option<u16>,
    /// Port of a TLS-over-TCP listener on --tcp-bind, beside the plain one
    /// (0: any free port). Needs --tls-cert and --tls-key.
    #[arg(long, env = "IMCORE_TLS_TCP_PORT", requires = "tls_cert")]
    pub tls_tcp_port: Option<u16>,
    /// The host name or address clients reach this server at, for the
    /// addresses `/route` hands out (default: the bound address; bound to
    /// every address, 0.0.0.0 or ::, the server warns at start).
    #[arg(long, env = "IMCORE_EXTERNAL_HOST")]
    pub external_host: Option<String>,
    /// Logins (CONNECTs) allowed per source address per second, as a burst
    /// of as many; more are refused with reason 22 (rate limit). 0: no
    /// limit.
    #[arg(long, env = "IMCORE_LOGINS_PER_SECOND", default_value_t = 20)]
    pub logins_per_second: u32,
    /// Connections open at once per source address, on all listeners
    /// together; more are closed as they are accepted. 0: no limit.
    #[arg(long, env = "IMCORE_CONNECTIONS_PER_ADDRESS", default_value_t = 1000)]
    pub connections_per_address: u32,
    /// Sends allowed per sender (uid) per second, over every connection
    /// and the HTTP API together; more are refused with reason 22 (rate
    /// limit: a SENDACK, or HTTP 429). 0: no limit.
    #[arg(long, env = "IMCORE_SEND_RATE", default_value_t = 200)]
    pub send_rate: u32,
    /// The most sends a sender may make at once, after a pause, within
    /// --send-rate. 0: no limit.
    #[arg(long, env = "IMCORE_SEND_BURST", default_value_t = 400)]
    pub send_burst: u32,
    /// Milliseconds a send waits for the store to write it and make it
    /// durable; past it the send fails, retryable (reason 15 on the wire,
    /// 503 over HTTP), and is counted in imcore_store_timeouts. 0: wait
    /// for ever.
    #[arg(
        long = "store-deadline-ms",
        env = "IMCORE_STORE_DEADLINE_MS",
        default_value_t = 5_000
    )]
    pub store_deadline_ms: u64,
    /// Seconds a message event stream may stay open without an event
    /// before the server ends it with stream.error. 0: never.
    #[arg(
        long = "stream-idle-timeout-s",
        env = "IMCORE_STREAM_IDLE_TIMEOUT_S",
        default_value_t = 300
    )]
    pub stream_idle_timeout_s: u64,
    /// Retention: every channel keeps at most this many of its newest
    /// messages; older ones are deleted for good by a pass every
    /// --retention-interval-s. 0: no limit.
    #[arg(long, env = "IMCORE_RETAIN_MESSAGES", default_value_t = 0)]
    pub retain_messages: u64,
    /// Retention: messages older than this many seconds are deleted for
    /// good by a pass every --retention-interval-s. 0: no limit.
    #[arg(
        long = "retain-age-s",
        env = "IMCORE_RETAIN_AGE_S",
        default_value_t = 0
    )]
    pub retain_age_s: u64,
    /// Seconds between retention passes (with --retain-messages or
    /// --retain-age-s); of several nodes on one database, one runs each.
    #[arg(long = "retention-interval-s", env = "IMCORE_RETENTION_INTERVAL_S",
          default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub retention_interval_s: u64,
    /// Seconds after its deletion a message's resend is still answered as
    /// a duplicate (and not stored again).
    #[arg(
        long = "resend-protection-s",
        env = "IMCORE_RESEND_PROTECTION_S",
        default_value_t = 86_400
    )]
    pub resend_protection_s: u64,
    /// Milliseconds an HTTP request has, once its headers are in, to send
    /// its whole body; a slower one is answered 408 and its connection
    /// closed.
    #[arg(long = "body-timeout-ms", env = "IMCORE_BODY_TIMEOUT_MS",
          default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_ms: u64,
    /// The most items an HTTP endpoint returns in one answer (messages,
    /// commands, revocations, conversations); larger `limit`s are cut to it.
    #[arg(long, env = "IMCORE_MAX_LIST", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_list: u32,
    /// Milliseconds a shutdown (SIGTERM, Ctrl-C) waits for HTTP requests
    /// and connections to finish before it exits anyway.
    #[arg(
        long = "shutdown-timeout-ms",
        env = "IMCORE_SHUTDOWN_TIMEOUT_MS",
        default_value_t = 8000
    )]
    pub shutdown_timeout_ms: u64,
    /// Logs as JSON lines instead of text (levels from RUST_LOG; default
    /// info).
    #[arg(long, env = "IMCORE_LOG_JSON", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub log_json: bool,
}

/// Tools the binary also is.
#[derive(Subcommand, Debug)]
pub enum Tool {
    /// Writes a self-signed certificate and its key (PEM), for trying the
    /// TLS listeners (and for the tests); not for production.
    SelfSignedCert {
        /// Where the certificate goes.
        #[arg(long)]
        cert: PathBuf,
        /// Where the private key goes.
        #[arg(long)]
        key: PathBuf,
        /// Names (DNS names or IP addresses) the certificate is for.
        #[arg(long = "name", default_values = ["localhost", "127.0.0.1"])]
        names: Vec<String>,
    },
}

/// A secret from the command line or the environment: shown as `***` in
/// every `Debug` and `Display`, so that it cannot reach a log by accident.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret's bytes, for comparing.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("the manager token cannot be empty".into());
        }
        Ok(Secret(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Settings {
    /// From the command line and the environment (clap exits with its
    /// message on a bad flag). An empty URL or host, as an environment
    /// variable set to nothing gives, is no URL, as it always was here.
    pub fn from_args() -> Self {
        let mut settings = Settings::parse();
        for url in [
            &mut settings.postgres,
            &mut settings.nats,
            &mut settings.webhook,
            &mut settings.external_host,
        ] {
            if url.as_deref() == Some("") {
                *url = None;
            }
        }
        settings
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// How long an idle keep-alive connection is kept.
    pub fn keep_alive(&self) -> Duration {
        Duration::from_secs(self.keep_alive_timeout_s)
    }

    /// The body timeout.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }

    /// The hub's send rate: `None` (no limit) when either number is 0.
    pub fn send_rate(&self) -> Option<SendRate> {
        Some(SendRate::new(
            NonZeroU32::new(self.send_rate)?,
            NonZeroU32::new(self.send_burst)?,
        ))
    }

    /// The hub's store deadline: `None` (wait for ever) when 0.
    pub fn store_deadline(&self) -> Option<Duration> {
        (self.store_deadline_ms > 0).then(|| Duration::from_millis(self.store_deadline_ms))
    }

    /// How long an event stream may idle: `None` (for ever) when 0.
    pub fn stream_idle_timeout(&self) -> Option<Duration> {
        (self.stream_idle_timeout_s > 0).then(|| Duration::from_secs(self.stream_idle_timeout_s))
    }

    /// The hub's retention policy: the default rule for every channel.
    pub fn retention(&self) -> RetentionPolicy {
        let rule = RetentionRule::keep_all()
            .max_messages((self.retain_messages > 0).then_some(self.retain_messages))
            .max_age((self.retain_age_s > 0).then(|| Duration::from_secs(self.retain_age_s)));
        RetentionPolicy::default()
            .all(rule)
            .interval(Duration::from_secs(self.retention_interval_s))
            .resend_protection(Duration::from_secs(self.resend_protection_s))
    }

    /// The shutdown bound.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }

    /// What clap cannot check alone: an exposed listener needs a manager
    /// token, a certificate needs a listener to serve, a node id fits.
    pub fn check(&self) -> Result<(), String> {
        if self.node_id > 1023 {
            return Err(format!("bad node id {} (0 to 1023)", self.node_id));
        }
        for (flag, ip) in [("--bind", self.bind), ("--tcp-bind", self.tcp_bind)] {
            if !ip.is_loopback() && self.manager_token.is_none() {
                return Err(format!(
                    "refusing to bind {flag} {ip} without a manager token: the HTTP API \
                     would let anyone who reaches it register tokens, log in as any user \
                     and send as anyone. Set --manager-token (IMCORE_MANAGER_TOKEN), or \
                     bind a loopback address and put a reverse proxy in front"
                ));
            }
        }
        if self.tls_cert.is_some() && self.wss_port.is_none() && self.tls_tcp_port.is_none() {
            return Err(
                "--tls-cert and --tls-key serve no listener: add --wss-port \
                        and/or --tls-tcp-port"
                    .into(),
            );
        }
        Ok(())
    }

    /// What is allowed but likely wrong, to be warned of at start: a
    /// listener bound to every address (`0.0.0.0`, `::`) without
    /// `--external-host` makes `/route` hand clients that address, which
    /// they cannot connect to.
    pub fn warnings(&self) -> Vec<String> {
        if self.external_host.is_some() {
            return Vec::new();
        }
        [("--bind", self.bind), ("--tcp-bind", self.tcp_bind)]
            .into_iter()
            .filter(|(_, ip)| ip.is_unspecified())
            .map(|(flag, ip)| {
                format!(
                    "{flag} {ip} without --external-host: /route hands clients {ip} as this \
                     server's address, which they cannot connect to. Set --external-host \
                     (IMCORE_EXTERNAL_HOST) to the name or address clients reach it at"
                )
            })
            .collect()
    }
}

/// Logs through tracing-subscriber to stderr (stdout carries the
/// `listening on` lines): levels from `RUST_LOG` (default `info`), text
/// or JSON lines.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, String> {
        let settings =
            Settings::try_parse_from(std::iter::once("wukong_server").chain(args.iter().copied()))
                .map_err(|e| e.to_string())?;
        settings.check()?;
        Ok(settings)
    }

    #[test]
    fn the_memory_store_is_off_by_default_and_not_with_postgres() {
        assert!(!parse(&[]).unwrap().memory_store);
        assert!(parse(&["--memory-store"]).unwrap().memory_store);
        let both = parse(&["--memory-store", "--postgres", "postgres://x/y"]);
        assert!(both.unwrap_err().contains("cannot be used with"));
    }

    #[test]
    fn loopback_is_the_default_and_needs_no_token() {
        let s = parse(&[]).unwrap();
        assert!(s.bind.is_loopback() && s.tcp_bind.is_loopback());
    }

    #[test]
    fn an_exposed_address_without_a_token_is_refused_and_says_why() {
        for args in [&["--bind", "0.0.0.0"][..], &["--tcp-bind", "::"][..]] {
            let e = parse(args).unwrap_err();
            assert!(e.contains("manager token"), "{e}");
        }
        let s = parse(&["--bind", "0.0.0.0", "--manager-token", "m"]).unwrap();
        assert!(!s.bind.is_loopback());
    }

    #[test]
    fn every_address_without_an_external_host_is_warned_of() {
        let token = ["--manager-token", "m"];
        let warned = |args: &[&str]| parse(&[&token[..], args].concat()).unwrap().warnings();
        let all = warned(&["--bind", "0.0.0.0"]);
        assert_eq!(all.len(), 1, "{all:?}");
        assert!(all[0].contains("--bind 0.0.0.0") && all[0].contains("--external-host"));
        let all = warned(&["--bind", "::", "--tcp-bind", "0.0.0.0"]);
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(all[0].contains("--bind ::") && all[1].contains("--tcp-bind 0.0.0.0"));
        let named = ["--bind", "0.0.0.0", "--external-host", "chat.example.com"];
        assert_eq!(warned(&named), Vec::<String>::new());
        assert_eq!(warned(&["--bind", "192.0.2.7"]), Vec::<String>::new());
        assert_eq!(parse(&[]).unwrap().warnings(), Vec::<String>::new());
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let s = parse(&["--manager-token", "hunter2-secret"]).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert_eq!(s.manager_token.unwrap().expose(), b"hunter2-secret");
    }

    #[test]
    fn the_console_is_off_by_default_and_needs_the_manager_token() {
        assert_eq!(parse(&[]).unwrap().console_addr, None);
        let e = parse(&["--console-addr", "127.0.0.1:5300"]).unwrap_err();
        assert!(e.contains("--manager-token"), "{e}");
        let on = parse(&["--console-addr", "127.0.0.1:0", "--manager-token", "m"]).unwrap();
        assert_eq!(on.console_addr, Some("127.0.0.1:0".parse().unwrap()));
        assert!(parse(&["--console-addr", "5300", "--manager-token", "m"]).is_err());
    }

    #[test]
    fn tls_needs_both_files_and_a_listener() {
        assert!(parse(&["--tls-cert", "c.pem"]).is_err());
        assert!(parse(&["--wss-port", "0"]).is_err());
        let e = parse(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]).unwrap_err();
        assert!(e.contains("--wss-port"), "{e}");
        parse(&[
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-tcp-port",
            "0",
        ])
        .unwrap();
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(parse(&["--port", "70000"]).is_err());
        assert!(parse(&["--connect-timeout-ms", "0"]).is_err());
        assert!(parse(&["--node-id", "1024"]).is_err());
        assert!(parse(&["--bind", "not-an-address"]).is_err());
        assert!(parse(&["--manager-token", ""]).is_err());
        assert!(parse(&["--max-list", "0"]).is_err());
        assert!(parse(&["--body-timeout-ms", "0"]).is_err());
        assert!(parse(&["--keep-alive-timeout-s", "0"]).is_err());
        assert!(parse(&["--send-rate", "-1"]).is_err());
    }

    #[test]
    fn the_send_rate_is_on_by_default_and_zero_turns_it_off() {
        let on = parse(&[]).unwrap().send_rate().unwrap();
        assert_eq!((on.per_second.get(), on.burst.get()), (200, 400));
        let set = parse(&["--send-rate", "5", "--send-burst", "7"]).unwrap();
        let set = set.send_rate().unwrap();
        assert_eq!((set.per_second.get(), set.burst.get()), (5, 7));
        for off in [&["--send-rate", "0"], &["--send-burst", "0"]] {
            assert_eq!(parse(off).unwrap().send_rate(), None);
        }
        assert_eq!(parse(&[]).unwrap().body_timeout(), Duration::from_secs(10));
        assert_eq!(parse(&[]).unwrap().keep_alive(), Duration::from_secs(90));
        let set = parse(&["--keep-alive-timeout-s", "5"]).unwrap();
        assert_eq!(set.keep_alive(), Duration::from_secs(5));
    }
}
