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
    /// Those writes' times, in buckets that double, for percentiles.
    pub store_write_latency: LatencyBuckets,
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

/// Durations counted in buckets that double: bucket 0 holds those under
/// 2 µs, bucket `i` those from 2^i µs to under 2^(i+1) µs, the last one
/// everything longer. A snapshot's counts are counters since the hub was
/// built: the difference of two snapshots ([`LatencyBuckets::since`]) gives
/// the percentiles of the time between them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencyBuckets {
    counts: [u64; LatencyBuckets::LEN],
}

impl LatencyBuckets {
    /// How many buckets there are (the last starts at about 8.4 s).
    pub const LEN: usize = 24;

    /// The bucket a duration falls in.
    fn bucket(took: Duration) -> usize {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        (micros.ilog2() as usize).min(Self::LEN - 1)
    }

    /// Each bucket's count, bucket 0 first.
    pub fn counts(&self) -> &[u64; Self::LEN] {
        &self.counts
    }

    /// The exclusive upper bound of bucket `i` (2^(i+1) µs); `None` for the
    /// last, which has none.
    pub fn upper_bound(i: usize) -> Option<Duration> {
        (i + 1 < Self::LEN).then(|| Duration::from_micros(2u64 << i))
    }

    /// How many durations were counted in all.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The counts added since `earlier`, a snapshot taken before this one.
    pub fn since(&self, earlier: &LatencyBuckets) -> LatencyBuckets {
        LatencyBuckets {
            counts: std::array::from_fn(|i| self.counts[i].saturating_sub(earlier.counts[i])),
        }
    }

    /// The upper bound of the bucket holding the `q` quantile (0.5: the
    /// median, 0.99: the 99th percentile), so at most twice the real
    /// figure; `None` when nothing was counted, or the quantile lies in the
    /// last bucket (over about 8.4 s).
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        // The rank of the quantile, 1-based: at least the first.
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        let bucket = self.counts.iter().position(|&n| {
            seen += n;
            seen >= rank
        })?;
        Self::upper_bound(bucket)
    }
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
    store_write_buckets: [AtomicU64; LatencyBuckets::LEN],
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
        self.store_write_buckets[LatencyBuckets::bucket(took)].fetch_add(1, Ordering::Relaxed);
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
            store_write_latency: LatencyBuckets {
                counts: std::array::from_fn(|i| {
                    self.store_write_buckets[i].load(Ordering::Relaxed)
                }),
            },
            late_deliveries: self.late_deliveries.load(Ordering::Relaxed),
            skipped_seqs: self.skipped_seqs.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            rate_tracked_senders: n(senders),
            store_timeouts: self.store_timeouts.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(micros: &[u64]) -> LatencyBuckets {
        let counters = Counters::default();
        for &m in micros {
            counters.store_write(Duration::from_micros(m));
        }
        counters.snapshot((0, 0, 0), 0).store_write_latency
    }

    #[test]
    fn durations_fall_in_buckets_that_double() {
        let b = counted(&[0, 1, 2, 3, 4, 1000, 20_000_000]);
        let c = b.counts();
        assert_eq!((c[0], c[1], c[2], c[9]), (2, 2, 1, 1), "{c:?}");
        assert_eq!(
            c[LatencyBuckets::LEN - 1],
            1,
            "the longest, in the last bucket"
        );
        assert_eq!(b.total(), 7);
        assert_eq!(
            LatencyBuckets::upper_bound(0),
            Some(Duration::from_micros(2))
        );
        assert_eq!(
            LatencyBuckets::upper_bound(9),
            Some(Duration::from_micros(1024))
        );
        assert_eq!(LatencyBuckets::upper_bound(LatencyBuckets::LEN - 1), None);
    }

    #[test]
    fn quantiles_are_bucket_bounds_and_differences_count_what_came_since() {
        assert_eq!(LatencyBuckets::default().quantile(0.5), None);
        // 90 fast writes (100 µs: bucket 6, under 128 µs), 10 slow (5 ms).
        let mut times = vec![100; 90];
        times.extend([5000; 10]);
        let b = counted(&times);
        assert_eq!(b.quantile(0.5), Some(Duration::from_micros(128)));
        assert_eq!(b.quantile(0.9), Some(Duration::from_micros(128)));
        assert_eq!(b.quantile(0.99), Some(Duration::from_micros(8192)));
        let earlier = counted(&[100; 90]);
        let since = b.since(&earlier);
        assert_eq!(since.total(), 10);
        assert_eq!(since.quantile(0.5), Some(Duration::from_micros(8192)));
    }
}
