//! The per-sender send rate ([`HubConfig::send_rate`]): a token bucket per
//! uid, checked before a send is looked at.
//!
//! It is governor's keyed GCRA limiter (a `DashMap` of one 8-byte state
//! per uid), run on the hub's [`Clock`] so that tests move time by hand.
//! The hub's clock is a wall clock and may step back: the limiter sees
//! only the time it moves forward (a step back counts as no time), so a
//! step back neither locks senders out nor hands them extra sends.
//!
//! Idle senders are forgotten: at most once a minute (of the hub's
//! clock), the send that finds the minute over sweeps out every uid whose
//! allowance is full again, so the limiter remembers the uids that sent
//! lately, not every uid that ever sent.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use super::*;

/// How many sends a second each sender may make, in bursts of how many:
/// see [`HubConfig::send_rate`].
///
/// ```
/// use std::num::NonZeroU32;
/// use imcore::{HubConfig, SendRate};
///
/// let rate = SendRate::new(NonZeroU32::new(50).unwrap(), NonZeroU32::new(100).unwrap());
/// let config = HubConfig::default().send_rate(Some(rate));
/// assert_eq!(config.send_rate.unwrap().burst.get(), 100);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendRate {
    /// Sends a second, each sender: the rate its allowance refills at.
    pub per_second: NonZeroU32,
    /// The most sends a sender may make at once after a pause: its
    /// allowance when full.
    pub burst: NonZeroU32,
}

impl SendRate {
    /// `per_second` sends a second, in bursts of up to `burst`.
    pub const fn new(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        SendRate { per_second, burst }
    }
}

/// How often (in the hub's clock's milliseconds) idle senders are swept
/// out.
const SWEEP_EVERY_MS: u64 = 60_000;

/// The time the hub's clock has moved forward since the limiter was
/// made, as governor reads it: steps back count as no time.
#[derive(Debug, Clone)]
struct Forward(Arc<ForwardInner>);

#[derive(Debug)]
struct ForwardInner {
    clock: Arc<dyn Clock>,
    /// The clock's last reading (ms), and the forward time counted (ms).
    seen: Mutex<(i64, u64)>,
}

impl Forward {
    fn new(clock: Arc<dyn Clock>) -> Self {
        let now = clock.now_ms();
        Forward(Arc::new(ForwardInner {
            clock,
            seen: Mutex::new((now, 0)),
        }))
    }

    /// The forward time so far, in milliseconds.
    fn elapsed_ms(&self) -> u64 {
        let now = self.0.clock.now_ms();
        let mut seen = self.0.seen.lock().unwrap_or_else(|e| e.into_inner());
        let (last, elapsed) = &mut *seen;
        if now > *last {
            *elapsed = elapsed.saturating_add(now.abs_diff(*last));
        }
        *last = now;
        *elapsed
    }
}

impl GovernorClock for Forward {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::new(self.elapsed_ms().saturating_mul(1_000_000))
    }
}

/// The limiter: a bucket per sender, and when to sweep next.
pub(super) struct SendLimiter {
    buckets: RateLimiter<Uid, DashMapStateStore<Uid>, Forward, NoOpMiddleware<Nanos>>,
    clock: Forward,
    /// The forward time (ms) at which the next sweep is due.
    next_sweep_ms: AtomicU64,
}

impl fmt::Debug for SendLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendLimiter")
            .field("senders", &self.buckets.len())
            .finish_non_exhaustive()
    }
}

impl SendLimiter {
    /// A limiter allowing `rate`, on `clock`.
    pub(super) fn new(rate: SendRate, clock: Arc<dyn Clock>) -> Self {
        let clock = Forward::new(clock);
        let quota = Quota::per_second(rate.per_second).allow_burst(rate.burst);
        SendLimiter {
            buckets: RateLimiter::dashmap_with_clock(quota, clock.clone()),
            clock,
            next_sweep_ms: AtomicU64::new(SWEEP_EVERY_MS),
        }
    }

    /// Takes a token of `uid`'s, if it has one.
    fn admit(&self, uid: &Uid) -> bool {
        self.buckets.check_key(uid).is_ok()
    }

    /// Forgets the senders whose allowance is full again, if a sweep is
    /// due (one caller sweeps; the others go on).
    fn sweep_if_due(&self) {
        let due = self.next_sweep_ms.load(Ordering::Relaxed);
        let now = self.clock.elapsed_ms();
        if now < due {
            return;
        }
        let next = now.saturating_add(SWEEP_EVERY_MS);
        if self
            .next_sweep_ms
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.buckets.retain_recent();
            self.buckets.shrink_to_fit();
        }
    }

    /// The senders remembered now.
    pub(super) fn senders(&self) -> usize {
        self.buckets.len()
    }
}

impl Hub {
    /// Takes one token of each request's sender, in order: `Ok` for a
    /// request within its sender's rate, [`Error::RateLimited`] (counted)
    /// for one over it. Without a rate, all are `Ok`.
    pub(super) fn admit_all(&self, requests: &[SendRequest]) -> Vec<Result<()>> {
        let inner = &*self.inner;
        let admitted = requests
            .iter()
            .map(|request| match &inner.send_limiter {
                Some(limiter) if !limiter.admit(&request.from_uid) => {
                    inner.counters.rate_limited();
                    Err(Error::RateLimited {
                        uid: request.from_uid.to_string(),
                    })
                }
                _ => Ok(()),
            })
            .collect();
        // Once a batch, not once a send: it reads the clock under its lock.
        if let Some(limiter) = &inner.send_limiter {
            limiter.sweep_if_due();
        }
        admitted
    }
}
