//! Sessions open now, by the transport they came over (WebSocket, wss,
//! TCP, TLS over TCP), for the console. A session counts from its upgrade
//! (WebSocket) or its accept (TCP) to its end, logged in or not: the wire
//! server counts logins, not transports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How a session reached the wire server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A WebSocket on the plain HTTP listener.
    Ws,
    /// A WebSocket on the TLS listener (`--wss-port`).
    Wss,
    /// A plain TCP connection (`--tcp-port`).
    Tcp,
    /// TLS over TCP (`--tls-tcp-port`).
    Tls,
}

impl Transport {
    /// Every transport, in the order [`Transports::open_now`] lists them.
    pub const ALL: [Transport; 4] = [
        Transport::Ws,
        Transport::Wss,
        Transport::Tcp,
        Transport::Tls,
    ];

    /// Its name, as the console shows it.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Wss => "wss",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The sessions open now, per transport.
#[derive(Debug, Default)]
pub struct Transports {
    open: [AtomicU64; 4],
}

/// One open session, counted until dropped.
#[derive(Debug)]
pub struct Open {
    transports: Arc<Transports>,
    transport: Transport,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.transports.open[self.transport.index()].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Transports {
    /// Counts a session on `transport` until the result is dropped.
    pub fn open(self: &Arc<Self>, transport: Transport) -> Open {
        self.open[transport.index()].fetch_add(1, Ordering::Relaxed);
        Open {
            transports: self.clone(),
            transport,
        }
    }

    /// Each transport's name and its sessions open now.
    pub fn open_now(&self) -> [(&'static str, u64); 4] {
        Transport::ALL.map(|t| (t.name(), self.open[t.index()].load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_counted_per_transport_until_dropped() {
        let transports = Arc::new(Transports::default());
        let ws = transports.open(Transport::Ws);
        let _ws2 = transports.open(Transport::Ws);
        let _tls = transports.open(Transport::Tls);
        let now = transports.open_now();
        assert_eq!(now, [("ws", 2), ("wss", 0), ("tcp", 0), ("tls", 1)]);
        drop(ws);
        assert_eq!(transports.open_now()[0], ("ws", 1));
    }
}
