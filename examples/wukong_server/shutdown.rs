//! A graceful end on SIGTERM or Ctrl-C: stop accepting, let the HTTP
//! requests under way finish, shut the hub down (new sends refused, sends
//! under way finished, the store flushed, every connection closed once
//! what was queued for it is written), wait for the connections to close,
//! exit 0.
//!
//! Nobody is logged out: the connections close without a DISCONNECT
//! packet, so the SDKs reconnect by themselves once the server (or
//! another one at the same address) listens again, as they do when
//! WuKongIM restarts. A rolling restart needs nothing more from clients.

use std::future::Future;
use std::time::Duration;

use imcore::Hub;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// What the listeners and connections watch and are counted by.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Turns true when the server is stopping.
    pub stopping: watch::Receiver<bool>,
    /// HTTP connections (requests, up to a WebSocket upgrade).
    pub http: TaskTracker,
    /// Protocol sessions (WebSocket after the upgrade, TCP, TLS over TCP).
    pub sessions: TaskTracker,
}

impl Shutdown {
    /// A new one, and the sender that starts the stop.
    pub fn new() -> (watch::Sender<bool>, Self) {
        let (tx, stopping) = watch::channel(false);
        let shutdown = Shutdown {
            stopping,
            http: TaskTracker::new(),
            sessions: TaskTracker::new(),
        };
        (tx, shutdown)
    }

    /// Resolves once the server is stopping.
    pub async fn stopped(&self) {
        let mut stopping = self.stopping.clone();
        // Err: the sender is gone, which only happens as the process ends.
        let _ = stopping.wait_for(|s| *s).await;
    }
}

/// Watches SIGTERM and SIGINT (Ctrl-C) from now on (the handlers are
/// installed at the call, before the server says it listens), and
/// resolves with the first one's name.
pub fn signal() -> impl Future<Output = &'static str> {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    let watch = |kind: SignalKind, name: &str| -> Option<Signal> {
        signal(kind)
            .inspect_err(|e| {
                warn!("cannot watch {name} ({e}); it will not stop the server gracefully")
            })
            .ok()
    };
    let mut term = watch(SignalKind::terminate(), "SIGTERM");
    let mut int = watch(SignalKind::interrupt(), "SIGINT");
    async move {
        tokio::select! {
            _ = next(&mut term) => "SIGTERM",
            _ = next(&mut int) => "SIGINT",
        }
    }
}

/// The next delivery of a watched signal; never, for one not watched.
async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// The stop, once `stop` told the listeners: HTTP requests finish, the hub
/// shuts down, the sessions close; the waits for connections together take
/// at most `bound` (the hub's own shutdown, which flushes the store, is
/// waited for whole). `Err` only if the flush failed.
pub async fn run(
    stop: watch::Sender<bool>,
    shutdown: Shutdown,
    hub: Hub,
    bound: Duration,
) -> imcore::Result<()> {
    let deadline = Instant::now() + bound;
    let _ = stop.send(true);
    drain(&shutdown.http, deadline, "HTTP connections").await;
    hub.shutdown().await?;
    info!("hub shut down: sends finished, store flushed, connections closing");
    drain(&shutdown.sessions, deadline, "sessions").await;
    Ok(())
}

/// Closes `tracker` to new tasks and waits for its tasks until `deadline`;
/// says how many of `what` were still open if they outlived it.
async fn drain(tracker: &TaskTracker, deadline: Instant, what: &str) {
    tracker.close();
    if tokio::time::timeout_at(deadline, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            open = tracker.len(),
            "{what} still open at the shutdown bound"
        );
    }
}
