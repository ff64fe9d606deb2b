//! Message events delivered here in `msg_event_seq` order per message,
//! with what other nodes send: an event that comes before one it follows
//! waits, at most the router's reorder wait, for the ones before it; one
//! that comes after a later one was delivered is late and not delivered
//! (devices find it by an event sync).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::event::StoredEvent;
use crate::model::{Channel, ClientMsgNo, Uid};

/// The most messages a node remembers; past it the memory starts again
/// (an event late by then is delivered).
const CAPACITY: usize = 65_536;

/// An event and who it is for.
pub(super) type Pending = (Arc<StoredEvent>, Arc<[Uid]>);

type Key = (Channel, ClientMsgNo);

#[derive(Debug, Default)]
struct Lane {
    /// The last seq delivered here.
    last: u64,
    /// Events that came before one they follow, by seq.
    held: BTreeMap<u64, Pending>,
}

/// What to do after an event came.
#[derive(Debug, Default)]
pub(super) struct Admitted {
    /// Deliver these now, in this order.
    pub(super) ready: Vec<Pending>,
    /// The event was late: count it, deliver nothing for it.
    pub(super) late: bool,
    /// Events are held for this message now and were not before: after the
    /// wait, [`EventGate::expire`] it.
    pub(super) arm: Option<(Channel, ClientMsgNo)>,
}

/// Per message, the last event seq delivered here and the events held.
#[derive(Debug)]
pub(super) struct EventGate {
    lanes: Mutex<HashMap<Key, Lane>>,
    /// The router's reorder wait; `None` (one node): nothing is held.
    wait: Option<Duration>,
}

impl EventGate {
    pub(super) fn new(wait: Option<Duration>) -> Self {
        EventGate {
            lanes: Mutex::default(),
            wait,
        }
    }

    pub(super) fn wait(&self) -> Option<Duration> {
        self.wait
    }

    /// The gate, locked: the caller delivers what it admits before
    /// letting go, so that deliveries keep the order.
    pub(super) fn lock(&self) -> GateGuard<'_> {
        GateGuard {
            lanes: self.lanes.lock().unwrap_or_else(|e| e.into_inner()),
            wait: self.wait,
        }
    }
}

/// The locked gate.
pub(super) struct GateGuard<'a> {
    lanes: MutexGuard<'a, HashMap<Key, Lane>>,
    wait: Option<Duration>,
}

impl GateGuard<'_> {
    /// An event came (stored here, or from another node).
    pub(super) fn admit(&mut self, event: Arc<StoredEvent>, to: Arc<[Uid]>) -> Admitted {
        if self.lanes.len() >= CAPACITY {
            self.lanes.retain(|_, lane| !lane.held.is_empty());
        }
        let key = (
            event.event.channel.clone(),
            event.event.client_msg_no.clone(),
        );
        let seq = event.msg_event_seq;
        let lane = self.lanes.entry(key.clone()).or_default();
        if seq <= lane.last || lane.held.contains_key(&seq) {
            return Admitted {
                late: true,
                ..Admitted::default()
            };
        }
        // A message's first event seen here other than its first waits
        // too: the ones before may be on their way (or went only to other
        // nodes' devices, and the wait runs out once).
        if seq == lane.last + 1 || self.wait.is_none() {
            lane.last = seq;
            let mut ready = vec![(event, to)];
            while let Some(entry) = lane.held.first_entry() {
                if *entry.key() != lane.last + 1 {
                    break;
                }
                lane.last += 1;
                ready.push(entry.remove());
            }
            return Admitted {
                ready,
                ..Admitted::default()
            };
        }
        let first = lane.held.is_empty();
        lane.held.insert(seq, (event, to));
        Admitted {
            arm: first.then_some(key),
            ..Admitted::default()
        }
    }

    /// The wait for a message's missing events ran out: what it holds goes
    /// now, in order, past the gap.
    pub(super) fn expire(&mut self, key: &(Channel, ClientMsgNo)) -> Vec<Pending> {
        let Some(lane) = self.lanes.get_mut(key) else {
            return Vec::new();
        };
        let held = std::mem::take(&mut lane.held);
        if let Some((&last, _)) = held.last_key_value() {
            lane.last = lane.last.max(last);
        }
        held.into_values().collect()
    }
}

/// The messages events were last appended to, known to exist: a stream's
/// events after its first skip the look-up. Messages are never removed, so
/// what is here stays true.
#[derive(Debug, Default)]
pub(super) struct KnownMessages(Mutex<std::collections::HashSet<(Uid, Channel, ClientMsgNo)>>);

/// How many messages [`KnownMessages`] keeps; past it, it starts again.
const KNOWN: usize = 4096;

impl KnownMessages {
    pub(super) fn contains(&self, key: &(Uid, Channel, ClientMsgNo)) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }

    pub(super) fn insert(&self, key: (Uid, Channel, ClientMsgNo)) {
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= KNOWN {
            known.clear();
        }
        known.insert(key);
    }
}
