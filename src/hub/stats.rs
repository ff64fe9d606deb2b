//! What the hub has done, counted, for a host's metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::policy::Persistence;

/// How sends of one class ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendCounts {
    /// Stored (or, for transient messages, delivered) and acknowledged.
    pub accepted: u64,
    /// Resends, answered with the first send's ids.
    pub duplicates: u64,
    /// Refused: bad input, no permission, a rule of the host's.
    pub refused: u64,
    /// Failed in the store ([`Error::Storage`], [`Error::Corrupt`],
    /// [`Error::Unconfirmed`], [`Error::Unavailable`]): may be retried.
    pub failed: u64,
}

/// A snapshot of the hub's counters since it was built; see
/// [`Hub::stats`](crate::Hub::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubStats {
    /// History messages.
    pub history: SendCounts,
    /// Commands (`sync_once`).
    pub commands: SendCounts,
    /// Transient messages (`no_persist`).
    pub transient: SendCounts,
    /// Sends refused before they had a class (bad input, no permission).
    pub refused_unclassified: u64,
    /// Messages handed to devices.
    pub deliveries: u64,
    /// Devices disconnected because their queue was full.
    pub slow_consumers: u64,
    /// Devices online now.
    pub online_devices: u64,
    /// Messages waiting in devices' queues now, in all.
    pub queued_deliveries: u64,
    /// The most messages waiting in one device's queue now.
    pub deepest_queue: u64,
    /// Writes of history and commands to the store, and their total time.
    pub store_writes: u64,
    /// See `store_writes`.
    pub store_write_time: Duration,
    /// In a cluster: history messages that reached this node after a later
    /// message of their channel had been delivered here (their wait had
    /// run out), or older than a forgotten channel's memory: not delivered
    /// live, so that a device never goes below a seq it has; devices find
    /// them by sync.
    pub late_deliveries: u64,
    /// In a cluster: seqs given up on at this node (never arrived within
    /// the reorder wait); devices find them by sync.
    pub skipped_seqs: u64,
    /// Sends refused for coming faster than their sender's
    /// [`HubConfig::send_rate`](crate::HubConfig::send_rate) allows
    /// ([`Error::RateLimited`]); also counted in `refused_unclassified`.
    pub rate_limited: u64,
    /// Senders the send-rate limiter remembers now: those that sent lately
    /// (idle ones are forgotten). 0 without a rate.
    pub rate_tracked_senders: u64,
    /// Store calls on the send path that did not answer within
    /// [`HubConfig::store_deadline`](crate::HubConfig::store_deadline):
    /// their sends failed, retryable.
    pub store_timeouts: u64,
}

#[derive(Debug, Default)]
struct Outcomes {
    accepted: AtomicU64,
    duplicates: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

impl Outcomes {
    fn snapshot(&self) -> SendCounts {
        SendCounts {
            accepted: self.accepted.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// The live counters.
#[derive(Debug, Default)]
pub(super) struct Counters {
    history: Outcomes,
    commands: Outcomes,
    transient: Outcomes,
    refused_unclassified: AtomicU64,
    deliveries: AtomicU64,
    slow_consumers: AtomicU64,
    store_writes: AtomicU64,
    store_write_nanos: AtomicU64,
    late_deliveries: AtomicU64,
    skipped_seqs: AtomicU64,
    rate_limited: AtomicU64,
    store_timeouts: AtomicU64,
}

impl Counters {
    /// Counts how a send of class `class` (`None`: refused before it had
    /// one) ended.
    pub(super) fn send<T>(&self, class: Option<Persistence>, result: &Result<T>, duplicate: bool) {
        let outcomes = match class {
            Some(Persistence::History) => &self.history,
            Some(Persistence::Command) => &self.commands,
            Some(Persistence::Transient) => &self.transient,
            None => {
                self.refused_unclassified.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let counter = match result {
            Ok(_) if duplicate => &outcomes.duplicates,
            Ok(_) => &outcomes.accepted,
            Err(
                Error::Storage { .. }
                | Error::Corrupt { .. }
                | Error::Unconfirmed { .. }
                | Error::Unavailable { .. },
            ) => &outcomes.failed,
            Err(_) => &outcomes.refused,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn store_timeout(&self) {
        self.store_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn delivered(&self, n: u64) {
        self.deliveries.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn slow_consumer(&self) {
        self.slow_consumers.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn reordered(&self, late: u64, skipped: u64) {
        if late > 0 {
            self.late_deliveries.fetch_add(late, Ordering::Relaxed);
        }
        if skipped > 0 {
            self.skipped_seqs.fetch_add(skipped, Ordering::Relaxed);
        }
    }

    pub(super) fn store_write(&self, took: Duration) {
        self.store_writes.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.store_write_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The counters, with the session table's figures (devices online,
    /// messages queued for them in all, the most for one) and the senders
    /// the rate limiter remembers.
    pub(super) fn snapshot(
        &self,
        (online, queued, deepest): (usize, usize, usize),
        senders: usize,
    ) -> HubStats {
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        HubStats {
            history: self.history.snapshot(),
            commands: self.commands.snapshot(),
            transient: self.transient.snapshot(),
            refused_unclassified: self.refused_unclassified.load(Ordering::Relaxed),
            deliveries: self.deliveries.load(Ordering::Relaxed),
            slow_consumers: self.slow_consumers.load(Ordering::Relaxed),
            online_devices: n(online),
            queued_deliveries: n(queued),
            deepest_queue: n(deepest),
            store_writes: self.store_writes.load(Ordering::Relaxed),
            store_write_time: Duration::from_nanos(self.store_write_nanos.load(Ordering::Relaxed)),
            late_deliveries: self.late_deliveries.load(Ordering::Relaxed),
            skipped_seqs: self.skipped_seqs.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            rate_tracked_senders: n(senders),
            store_timeouts: self.store_timeouts.load(Ordering::Relaxed),
        }
    }
}
