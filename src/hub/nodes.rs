//! The hub among other nodes: delivering through the router, putting a
//! channel's messages from several nodes back in seq order, and answering
//! the router for this node's devices.

use std::sync::{Mutex, Weak};
use std::time::Duration;

use super::*;
use crate::route::order::{Probe, Sequencer, Step};
use crate::route::{LocalDevices, UserPresence};

/// Stripes of the reorder state: one lock per stripe of channels, held
/// while a stripe's ready messages are handed to devices (so that two
/// threads never hand one channel's messages over out of order).
const ORDER_STRIPES: usize = 64;

/// How long an idle channel's place in the order is remembered, in waits.
const ORDER_MEMORY_WAITS: u32 = 240;

/// A delivery waiting for its turn: the message, who gets it here, and the
/// sending connection to skip (a send of this node's).
type Pending = (Arc<Message>, Arc<[Uid]>, Option<ConnectionId>);

/// The reorder state of a hub in a cluster; see [`crate::route::order`].
#[derive(Debug)]
pub(super) struct Reorder {
    stripes: Box<[Mutex<Sequencer<Pending>>]>,
    wait: Duration,
}

impl Reorder {
    pub(super) fn new(wait: Duration) -> Self {
        let memory = wait.saturating_mul(ORDER_MEMORY_WAITS);
        Reorder {
            stripes: (0..ORDER_STRIPES)
                .map(|_| Mutex::new(Sequencer::new(wait, memory)))
                .collect(),
            wait,
        }
    }
}

/// The hub as its router sees it. Weak: the hub holds the router.
#[derive(Debug)]
pub(super) struct NodeHandle(pub(super) Weak<Inner>);

impl NodeHandle {
    fn hub(&self) -> Option<Hub> {
        self.0.upgrade().map(|inner| Hub { inner })
    }
}

impl LocalDevices for NodeHandle {
    fn deliver(&self, message: Arc<Message>, recipients: Arc<[Uid]>) {
        if let Some(hub) = self.hub() {
            hub.deliver_here(message, recipients, None);
        }
    }

    fn deliver_event(&self, event: Arc<crate::event::StoredEvent>, recipients: Arc<[Uid]>) {
        if let Some(hub) = self.hub() {
            hub.deliver_event_here(&event, &recipients);
        }
    }

    fn logged_in_elsewhere(&self, device: &Device) {
        if let Some(hub) = self.hub() {
            if hub.inner.sessions.displace(device) > 0 {
                hub.inner.router.presence_changed(&device.uid, None);
            }
        }
    }

    fn kick(&self, uid: &Uid, flag: Option<DeviceFlag>) -> usize {
        self.hub().map_or(0, |hub| hub.kick_here(uid, flag))
    }

    fn presence_of(&self, uid: &Uid) -> UserPresence {
        self.hub().map_or_else(UserPresence::default, |hub| {
            hub.inner.sessions.presence_of(uid)
        })
    }

    fn presence(&self) -> Vec<(Uid, UserPresence)> {
        self.hub()
            .map_or_else(Vec::new, |hub| hub.inner.sessions.presence())
    }
}

/// Starts the hub's reorder clock: gives up waits that ran past the bound,
/// as the hub's [`Clock`] tells the time (it looks every quarter of the
/// wait). It stops when the hub is dropped.
pub(super) fn start_reorder_clock(inner: Weak<Inner>, wait: Duration) -> Result<()> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
        ValidationError::OutOfRange("a hub with a cluster router is built inside a tokio runtime")
    })?;
    let period = (wait / 4).max(Duration::from_millis(1));
    runtime.spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let hub = Hub { inner };
            let Some(reorder) = &hub.inner.reorder else {
                return;
            };
            for stripe in reorder.stripes.iter() {
                let mut sequencer = lock(stripe);
                let step = sequencer.expire(hub.inner.clock.now_ms());
                hub.hand_over(step);
            }
        }
    });
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding it; a poisoned lock's state is whole.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    /// Delivers a sent message here and on the other nodes. Returns the
    /// recipients (never the sender) with no master device online on any
    /// node, if `collect_offline` asks for them.
    pub(super) fn route(
        &self,
        message: &Arc<Message>,
        recipients: &Arc<[Uid]>,
        skip: Option<ConnectionId>,
        collect_offline: bool,
    ) -> Vec<Uid> {
        let inner = &*self.inner;
        inner.router.deliver(message, recipients);
        let mut offline = if inner.reorder.is_some() && message.message_seq > 0 {
            let offline = match collect_offline {
                true => self.offline_here(recipients, &message.from_uid),
                false => Vec::new(),
            };
            self.deliver_here(message.clone(), recipients.clone(), skip);
            offline
        } else {
            self.deliver(message, recipients, skip, collect_offline)
        };
        offline.retain(|uid| !inner.router.online_elsewhere(uid));
        offline
    }

    /// Delivers to this node's devices, in seq order per channel with what
    /// other nodes sent when the hub is in a cluster.
    fn deliver_here(
        &self,
        message: Arc<Message>,
        recipients: Arc<[Uid]>,
        skip: Option<ConnectionId>,
    ) {
        let seq = message.message_seq;
        let Some(reorder) = self.inner.reorder.as_ref().filter(|_| seq > 0) else {
            self.deliver(&message, &recipients, skip, false);
            return;
        };
        let channel = message.channel.clone();
        let stripe = &reorder.stripes[self.order_stripe(&channel)];
        let mut sequencer = lock(stripe);
        let (stored, now) = (message.timestamp_ms, self.inner.clock.now_ms());
        let step = sequencer.admit(&channel, seq, stored, (message, recipients, skip), now);
        self.hand_over(step);
    }

    fn order_stripe(&self, channel: &Channel) -> usize {
        self.inner.hasher.hash_one(channel) as usize % ORDER_STRIPES
    }

    /// Delivers what is ready (the caller holds its stripe's lock, so that
    /// the order holds) and starts the look-ups asked for.
    fn hand_over(&self, step: Step<Pending>) {
        self.inner.counters.reordered(step.late, step.skipped);
        for (message, recipients, skip) in step.ready {
            self.deliver(&message, &recipients, skip, false);
        }
        for probe in step.probes {
            let hub = self.clone();
            tokio::spawn(async move { hub.probe(probe).await });
        }
    }

    /// Finds whether message `probe.seq` was stored long enough ago that
    /// nothing before the held messages is still on its way, and tells the
    /// sequencer.
    async fn probe(&self, probe: Probe) {
        let Some(reorder) = &self.inner.reorder else {
            return;
        };
        let wait_ms = i64::try_from(reorder.wait.as_millis()).unwrap_or(i64::MAX);
        let now_ms = self.inner.clock.now_ms();
        let settled = match probe.seq {
            0 => true,
            seq => match self
                .inner
                .store
                .read(&probe.channel, Page::forward(seq, 1))
                .await
            {
                Ok(page) => match page.first() {
                    Some(m) if m.message_seq == seq => now_ms - m.timestamp_ms >= wait_ms,
                    // Not in the log: nothing is on its way.
                    _ => true,
                },
                // Not known: the wait's bound decides.
                Err(_) => false,
            },
        };
        let stripe = &reorder.stripes[self.order_stripe(&probe.channel)];
        let mut sequencer = lock(stripe);
        let step = sequencer.probed(&probe.channel, probe.seq, settled);
        self.hand_over(step);
    }

    /// The recipients (never the sender) with no master device here.
    fn offline_here(&self, recipients: &[Uid], sender: &Uid) -> Vec<Uid> {
        let users = self.inner.sessions.read();
        recipients
            .iter()
            .filter(|uid| *uid != sender)
            .filter(|uid| {
                users
                    .get(*uid)
                    .is_none_or(|d| d.iter().all(|d| d.level != DeviceLevel::Master))
            })
            .cloned()
            .collect()
    }

    /// Closes the user's connections on this node only.
    pub(super) fn kick_here(&self, uid: &Uid, flag: Option<DeviceFlag>) -> usize {
        let closed = self
            .inner
            .sessions
            .disconnect_user(uid, flag, DisconnectReason::Kicked);
        if closed > 0 {
            self.inner.router.presence_changed(uid, None);
        }
        closed
    }

    /// Whether `uid` has a master device online on this node or, in a
    /// cluster, on another live node: what offline push asks.
    pub fn is_online(&self, uid: &Uid) -> bool {
        self.inner.sessions.presence_of(uid).masters > 0 || self.inner.router.online_elsewhere(uid)
    }
}
