//! A graceful end on SIGTERM or Ctrl-C: stop accepting, let the HTTP
//! requests under way finish, shut the hub down (new sends refused, sends
//! under way finished, the store flushed, every device told with a
//! DISCONNECT), wait for the connections to close, exit 0.

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

/// Resolves with the signal's name on SIGTERM or SIGINT (Ctrl-C).
pub async fn signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => Some(term),
        Err(e) => {
            warn!("cannot watch SIGTERM ({e}); only Ctrl-C stops the server gracefully");
            None
        }
    };
    let term = async {
        match &mut term {
            Some(term) => term.recv().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term => "SIGTERM",
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
    shutdown.http.close();
    if tokio::time::timeout_at(deadline, shutdown.http.wait())
        .await
        .is_err()
    {
        warn!(
            open = shutdown.http.len(),
            "HTTP connections still open at the shutdown bound"
        );
    }
    hub.shutdown().await?;
    info!("hub shut down: sends finished, store flushed, devices told");
    shutdown.sessions.close();
    if tokio::time::timeout_at(deadline, shutdown.sessions.wait())
        .await
        .is_err()
    {
        warn!(
            open = shutdown.sessions.len(),
            "sessions still open at the shutdown bound"
        );
    }
    Ok(())
}
