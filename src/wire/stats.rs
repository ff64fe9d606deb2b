//! What a wire server's connections did, counted, for a host's metrics.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::reason::ReasonCode;
use crate::wire::server::SessionEnd;
use crate::wire::WireError;

/// A snapshot of a [`WireServer`](crate::wire::WireServer)'s counters
/// (shared by its clones); see `WireServer::stats`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WireStats {
    /// Connections logged in now.
    pub connections: u64,
    /// Logins accepted.
    pub logins: u64,
    /// Logins refused, by the reason code sent in the CONNACK (code,
    /// count), in code order; codes never used are left out.
    pub refusals: Vec<(ReasonCode, u64)>,
    /// Connections that did not log in, or stayed silent, in time.
    pub timeouts: u64,
    /// Connections given up because a write to them did not finish in time.
    pub write_timeouts: u64,
}

/// The live counters.
#[derive(Debug)]
pub(super) struct WireCounters {
    connections: AtomicU64,
    logins: AtomicU64,
    refusals: [AtomicU64; 256],
    timeouts: AtomicU64,
    write_timeouts: AtomicU64,
}

impl Default for WireCounters {
    fn default() -> Self {
        WireCounters {
            connections: AtomicU64::new(0),
            logins: AtomicU64::new(0),
            refusals: std::array::from_fn(|_| AtomicU64::new(0)),
            timeouts: AtomicU64::new(0),
            write_timeouts: AtomicU64::new(0),
        }
    }
}

impl WireCounters {
    /// A login was accepted: one more connection, until `closed`.
    pub(super) fn logged_in(&self) {
        self.logins.fetch_add(1, Ordering::Relaxed);
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// A logged-in connection ended.
    pub(super) fn closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// A login was refused with `reason` (counted before the client is
    /// told, so that what it sees is already counted).
    pub(super) fn refused(&self, reason: ReasonCode) {
        self.refusals[usize::from(reason.as_u8())].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts how a connection ended (refusals are counted as they happen).
    pub(super) fn ended(&self, end: &Result<SessionEnd, WireError>) {
        let counter = match end {
            Ok(SessionEnd::TimedOut) => &self.timeouts,
            Err(WireError::WriteTimeout) => &self.write_timeouts,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> WireStats {
        let refusals = self
            .refusals
            .iter()
            .enumerate()
            .filter_map(|(code, n)| {
                let n = n.load(Ordering::Relaxed);
                let code = ReasonCode::from(u8::try_from(code).ok()?);
                (n > 0).then_some((code, n))
            })
            .collect();
        WireStats {
            connections: self.connections.load(Ordering::Relaxed),
            logins: self.logins.load(Ordering::Relaxed),
            refusals,
            timeouts: self.timeouts.load(Ordering::Relaxed),
            write_timeouts: self.write_timeouts.load(Ordering::Relaxed),
        }
    }
}
