//! Abuse limits per source address: logins per second (governor's keyed
//! rate limiter; over it, CONNACK reason 22, rate limit, before the token
//! is even looked at) and connections open at once (over it, a new
//! connection is closed as it is accepted, before any byte of it is read).
//!
//! Both key on the TCP peer's address: behind a reverse proxy every client
//! is the proxy, so raise them there (see the README's Deployment).

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use imcore::wire::{Authenticator, ConnectInfo};
use imcore::{DeviceLevel, ReasonCode};

tokio::task_local! {
    /// The source address of the connection this task serves, for the
    /// login limit (the wire server calls the authenticator on the
    /// connection's own task).
    static PEER: IpAddr;
}

/// Runs `serve` (one connection's session) as coming from `ip`. Not an
/// `async fn`: that would hold `serve` twice (its argument, and the scope
/// made of it), and an idle connection would cost twice its session.
pub fn from_peer<F: Future>(ip: IpAddr, serve: F) -> impl Future<Output = F::Output> {
    PEER.scope(ip, serve)
}

/// The limits and what they refused.
#[derive(Debug)]
pub struct Limits {
    /// Logins per address per second (also the burst); 0: none.
    pub logins_per_second: u32,
    /// Connections per address at once; 0: none.
    pub connections_per_address: u32,
    /// The most items an HTTP answer lists.
    pub max_list: usize,
    logins: Option<DefaultKeyedRateLimiter<IpAddr>>,
    open: Mutex<HashMap<IpAddr, u32>>,
    open_total: AtomicU64,
    refused_connections: AtomicU64,
    refused_logins: AtomicU64,
}

/// One open connection, counted against its address until the last clone
/// is dropped (an upgraded WebSocket keeps it after its HTTP connection).
#[derive(Debug, Clone)]
pub struct Slot(#[allow(dead_code)] Arc<SlotInner>);

#[derive(Debug)]
struct SlotInner {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Drop for SlotInner {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
        self.limits.open_total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A snapshot for `/metrics`.
pub struct LimitStats {
    /// Connections open now (all listeners).
    pub open: u64,
    /// Connections closed at accept: their address had too many open.
    pub refused_connections: u64,
    /// Logins refused with reason 22.
    pub refused_logins: u64,
    /// Addresses the login limiter remembers.
    pub tracked_addresses: u64,
}

impl Limits {
    /// Limits as configured (0 turns a limit off).
    pub fn new(logins_per_second: u32, connections_per_address: u32, max_list: usize) -> Self {
        let logins = NonZeroU32::new(logins_per_second)
            .map(|n| RateLimiter::keyed(Quota::per_second(n).allow_burst(n)));
        Limits {
            logins_per_second,
            connections_per_address,
            max_list,
            logins,
            open: Mutex::default(),
            open_total: AtomicU64::new(0),
            refused_connections: AtomicU64::new(0),
            refused_logins: AtomicU64::new(0),
        }
    }

    /// A slot for a new connection from `ip`, or `None` if it has as many
    /// open as allowed.
    pub fn open(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let n = open.entry(ip).or_insert(0);
            if self.connections_per_address != 0 && *n >= self.connections_per_address {
                drop(open);
                self.refused_connections.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            *n += 1;
        }
        self.open_total.fetch_add(1, Ordering::Relaxed);
        Some(Slot(Arc::new(SlotInner {
            limits: self.clone(),
            ip,
        })))
    }

    /// Whether one more login from `ip` is allowed now (counting it).
    pub fn allow_login(&self, ip: IpAddr) -> bool {
        let allowed = self
            .logins
            .as_ref()
            .is_none_or(|l| l.check_key(&ip).is_ok());
        if !allowed {
            self.refused_logins.fetch_add(1, Ordering::Relaxed);
        }
        allowed
    }

    /// `limit` as asked, cut to [`Limits::max_list`].
    pub fn list(&self, limit: usize) -> usize {
        limit.min(self.max_list)
    }

    /// What the limits did so far.
    pub fn stats(&self) -> LimitStats {
        LimitStats {
            open: self.open_total.load(Ordering::Relaxed),
            refused_connections: self.refused_connections.load(Ordering::Relaxed),
            refused_logins: self.refused_logins.load(Ordering::Relaxed),
            tracked_addresses: self.logins.as_ref().map_or(0, |l| l.len() as u64),
        }
    }

    /// Forgets, every minute, the addresses whose login allowance is full
    /// again: the limiter's memory follows the addresses seen lately, not
    /// all that ever came.
    pub async fn forget_idle(self: Arc<Self>) {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            if let Some(l) = &self.logins {
                l.retain_recent();
                l.shrink_to_fit();
            }
        }
    }
}

/// The host's authenticator behind the login limit of the connection's
/// address ([`from_peer`]).
#[derive(Debug)]
pub struct Limited {
    /// The limits.
    pub limits: Arc<Limits>,
    /// The real check (the token table).
    pub inner: Arc<dyn Authenticator>,
}

#[async_trait]
impl Authenticator for Limited {
    async fn authenticate(&self, info: &ConnectInfo) -> Result<DeviceLevel, ReasonCode> {
        if let Ok(ip) = PEER.try_with(|ip| *ip) {
            if !self.limits.allow_login(ip) {
                return Err(ReasonCode::RATE_LIMIT);
            }
        }
        self.inner.authenticate(info).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn connections_are_counted_per_address_and_freed_when_dropped() {
        let limits = Arc::new(Limits::new(0, 2, 10));
        let (a1, _a2) = (limits.open(A).unwrap(), limits.open(A).unwrap());
        assert!(limits.open(A).is_none(), "a third from A");
        let b = limits.open(B).expect("B has its own count");
        let clone = a1.clone();
        drop(a1);
        assert!(limits.open(A).is_none(), "a clone still holds the slot");
        drop(clone);
        let _a3 = limits.open(A).expect("a slot came free");
        drop(b);
        let s = limits.stats();
        assert_eq!((s.open, s.refused_connections), (2, 2));
    }

    #[test]
    fn logins_over_the_rate_are_refused_per_address() {
        let limits = Limits::new(3, 0, 10);
        let allowed = (0..10).filter(|_| limits.allow_login(A)).count();
        assert_eq!(allowed, 3);
        assert!(limits.allow_login(B));
        assert_eq!(limits.stats().refused_logins, 7);
    }

    #[test]
    fn zero_turns_a_limit_off_and_lists_are_capped() {
        let limits = Arc::new(Limits::new(0, 0, 50));
        assert!((0..1000).all(|_| limits.allow_login(A)));
        let slots: Vec<_> = (0..1000).map(|_| limits.open(A)).collect();
        assert!(slots.iter().all(Option::is_some));
        assert_eq!((limits.list(20), limits.list(10_000)), (20, 50));
    }
}
