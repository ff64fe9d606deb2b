//! What this node knows of the others: who is connected where, as of which
//! of their presence changes, and when each was last heard.
//!
//! A node publishes each change of a user's devices as that user's new
//! state, numbered. A node that misses a number (core NATS drops what it
//! cannot deliver; a node whose publishing queue is full drops the change
//! but not its number) or hears of a node it does not know asks that node
//! for a snapshot, and applies the changes that arrive meanwhile on top of
//! it.
//! A node not heard within the presence TTL counts as gone: its users are
//! offline for push, and nothing is routed to it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::event::Mark;
use crate::model::Uid;
use crate::route::UserPresence;

/// The most changes kept while a snapshot is on its way.
const MAX_BUFFERED: usize = 100_000;

#[derive(Debug)]
struct View {
    incarnation: u64,
    /// The last change applied; `None` before the first snapshot.
    counter: Option<u64>,
    users: HashMap<Uid, UserPresence, ahash::RandomState>,
    heard: Instant,
    /// A snapshot asked for and not complete.
    pending: Option<Pending>,
}

#[derive(Debug)]
struct Pending {
    asked: Instant,
    /// The snapshot's counter, from its first part.
    counter: Option<u64>,
    parts: Vec<Option<Vec<(Uid, UserPresence)>>>,
    /// Changes heard meanwhile: counter, user, state.
    buffered: Vec<(u64, Uid, UserPresence)>,
}

impl Pending {
    fn new(now: Instant) -> Self {
        Pending {
            asked: now,
            counter: None,
            parts: Vec::new(),
            buffered: Vec::new(),
        }
    }
}

impl View {
    fn new(incarnation: u64, now: Instant) -> Self {
        View {
            incarnation,
            counter: None,
            users: HashMap::default(),
            heard: now,
            pending: None,
        }
    }

    /// Marks a snapshot as asked for, unless one was asked for within
    /// `ttl`. Returns whether to ask.
    fn ask(&mut self, now: Instant, ttl: Duration) -> bool {
        match &self.pending {
            Some(p) if now.duration_since(p.asked) < ttl => false,
            _ => {
                self.pending = Some(Pending::new(now));
                true
            }
        }
    }
}

/// Every other node's users.
#[derive(Debug)]
pub(super) struct Views {
    me: u16,
    ttl: Duration,
    nodes: HashMap<u16, View>,
}

impl Views {
    pub(super) fn new(me: u16, ttl: Duration) -> Self {
        Views {
            me,
            ttl,
            nodes: HashMap::new(),
        }
    }

    /// The view of `mark`'s node, new if it was unknown or restarted.
    fn view(&mut self, mark: &Mark, now: Instant) -> &mut View {
        let view = self
            .nodes
            .entry(mark.node)
            .or_insert_with(|| View::new(mark.incarnation, now));
        if view.incarnation != mark.incarnation {
            *view = View::new(mark.incarnation, now);
        }
        view.heard = now;
        view
    }

    /// A node said it is alive. Returns whether to ask it for a snapshot.
    pub(super) fn beat(&mut self, mark: &Mark, now: Instant) -> bool {
        if mark.node == self.me {
            return false;
        }
        let ttl = self.ttl;
        let view = self.view(mark, now);
        view.counter != Some(mark.counter) && view.ask(now, ttl)
    }

    /// A user's state on `mark.node` changed. Returns whether to ask that
    /// node for a snapshot (a change was missed).
    pub(super) fn change(
        &mut self,
        mark: &Mark,
        uid: &Uid,
        presence: UserPresence,
        now: Instant,
    ) -> bool {
        if mark.node == self.me {
            return false;
        }
        let ttl = self.ttl;
        let view = self.view(mark, now);
        if let Some(pending) = &mut view.pending {
            if pending.buffered.len() < MAX_BUFFERED {
                pending.buffered.push((mark.counter, uid.clone(), presence));
            }
            return false;
        }
        match view.counter {
            Some(c) if c + 1 == mark.counter => {
                set(&mut view.users, uid, presence);
                view.counter = Some(mark.counter);
                false
            }
            // Heard already (a snapshot covered it).
            Some(c) if mark.counter <= c => false,
            _ => view.ask(now, ttl),
        }
    }

    /// One part of a node's snapshot. Returns whether to ask again (the
    /// changes heard meanwhile do not follow on from it).
    pub(super) fn snapshot_part(
        &mut self,
        mark: &Mark,
        part: u32,
        parts: u32,
        users: Vec<(Uid, UserPresence)>,
        now: Instant,
    ) -> bool {
        if mark.node == self.me || parts == 0 || part >= parts {
            return false;
        }
        let ttl = self.ttl;
        let view = self.view(mark, now);
        let Some(pending) = &mut view.pending else {
            return false;
        };
        if pending.counter.is_some_and(|c| c != mark.counter)
            || pending.parts.len() > parts as usize
        {
            // Parts of two different snapshots: start over.
            view.pending = None;
            return view.ask(now, ttl);
        }
        pending.counter = Some(mark.counter);
        pending.parts.resize(parts as usize, None);
        pending.parts[part as usize] = Some(users);
        if pending.parts.iter().any(Option::is_none) {
            return false;
        }
        let Some(pending) = view.pending.take() else {
            return false;
        };
        view.users.clear();
        for (uid, presence) in pending.parts.into_iter().flatten().flatten() {
            set(&mut view.users, &uid, presence);
        }
        let mut counter = mark.counter;
        let mut buffered = pending.buffered;
        buffered.sort_by_key(|(c, _, _)| *c);
        for (c, uid, presence) in buffered {
            if c <= counter {
                continue;
            }
            if c != counter + 1 {
                view.counter = Some(counter);
                return view.ask(now, ttl);
            }
            set(&mut view.users, &uid, presence);
            counter = c;
        }
        view.counter = Some(counter);
        false
    }

    /// Forgets the nodes not heard within the TTL. Returns whether any was.
    pub(super) fn expire(&mut self, now: Instant) -> bool {
        let ttl = self.ttl;
        let before = self.nodes.len();
        self.nodes
            .retain(|_, view| now.duration_since(view.heard) < ttl);
        self.nodes.len() != before
    }

    fn live(&self, now: Instant) -> impl Iterator<Item = (&u16, &View)> {
        let ttl = self.ttl;
        self.nodes
            .iter()
            .filter(move |(_, v)| now.duration_since(v.heard) < ttl)
    }

    /// Whether `uid` has a master device on a live node.
    pub(super) fn online(&self, uid: &Uid, now: Instant) -> bool {
        self.live(now)
            .any(|(_, v)| v.users.get(uid).is_some_and(|p| p.masters > 0))
    }

    /// The live nodes with a device of any of `recipients`, and which.
    pub(super) fn route(&self, recipients: &[Uid], now: Instant) -> Vec<(u16, Vec<Uid>)> {
        self.live(now)
            .filter_map(|(node, view)| {
                let here: Vec<Uid> = recipients
                    .iter()
                    .filter(|uid| view.users.contains_key(*uid))
                    .cloned()
                    .collect();
                (!here.is_empty()).then_some((*node, here))
            })
            .collect()
    }

    /// The live nodes, each with its users.
    pub(super) fn census(&self, now: Instant) -> Vec<(u16, usize)> {
        let mut nodes: Vec<(u16, usize)> = self
            .live(now)
            .map(|(node, view)| (*node, view.users.len()))
            .collect();
        nodes.sort_unstable();
        nodes
    }
}

fn set(
    users: &mut HashMap<Uid, UserPresence, ahash::RandomState>,
    uid: &Uid,
    presence: UserPresence,
) {
    if presence.devices == 0 {
        users.remove(uid);
    } else {
        users.insert(uid.clone(), presence);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(3);

    fn mark(counter: u64) -> Mark {
        Mark {
            node: 2,
            incarnation: 7,
            counter,
        }
    }

    fn online(devices: u32) -> UserPresence {
        UserPresence {
            devices,
            masters: devices,
        }
    }

    fn alice() -> Uid {
        Uid::new("alice").unwrap()
    }

    #[test]
    fn a_new_node_is_asked_for_a_snapshot_and_changes_wait_for_it() {
        let (mut v, t) = (Views::new(1, TTL), Instant::now());
        assert!(v.beat(&mark(4), t), "unknown: ask");
        assert!(!v.beat(&mark(4), t), "asked already");
        assert!(!v.change(&mark(5), &alice(), online(0), t));
        assert!(!v.snapshot_part(&mark(4), 0, 1, vec![(alice(), online(1))], t));
        assert!(
            !v.online(&alice(), t),
            "the change after the snapshot applies"
        );
        assert!(!v.change(&mark(6), &alice(), online(1), t));
        assert!(v.online(&alice(), t));
        assert_eq!(v.route(&[alice()], t), [(2, vec![alice()])]);
    }

    #[test]
    fn a_missed_change_asks_for_a_snapshot() {
        let (mut v, t) = (Views::new(1, TTL), Instant::now());
        v.beat(&mark(0), t);
        v.snapshot_part(&mark(0), 0, 1, vec![], t);
        assert!(!v.change(&mark(1), &alice(), online(1), t));
        assert!(v.change(&mark(3), &alice(), online(0), t), "2 was missed");
        assert!(!v.snapshot_part(&mark(3), 0, 1, vec![], t));
        assert!(!v.online(&alice(), t));
    }

    #[test]
    fn a_snapshot_in_parts_applies_once_whole() {
        let (mut v, t) = (Views::new(1, TTL), Instant::now());
        v.beat(&mark(2), t);
        let bob = Uid::new("bob").unwrap();
        v.snapshot_part(&mark(2), 1, 2, vec![(bob.clone(), online(1))], t);
        assert!(!v.online(&bob, t));
        v.snapshot_part(&mark(2), 0, 2, vec![(alice(), online(1))], t);
        assert!(v.online(&bob, t) && v.online(&alice(), t));
    }

    #[test]
    fn a_node_not_heard_within_the_ttl_is_gone() {
        let (mut v, t) = (Views::new(1, TTL), Instant::now());
        v.beat(&mark(0), t);
        v.snapshot_part(&mark(0), 0, 1, vec![(alice(), online(1))], t);
        assert!(v.online(&alice(), t + TTL - Duration::from_millis(1)));
        assert!(!v.online(&alice(), t + TTL), "not live");
        assert!(v.expire(t + TTL));
        assert!(v.census(t + TTL).is_empty());
    }

    #[test]
    fn a_restarted_node_starts_over() {
        let (mut v, t) = (Views::new(1, TTL), Instant::now());
        v.beat(&mark(0), t);
        v.snapshot_part(&mark(0), 0, 1, vec![(alice(), online(1))], t);
        let reborn = Mark {
            incarnation: 8,
            ..mark(0)
        };
        assert!(v.beat(&reborn, t));
        assert!(!v.online(&alice(), t));
    }

    #[test]
    fn slaves_alone_are_routed_to_but_not_online_for_push() {
        let (mut v, t) = (Views::new(1, TTL), Instant::now());
        v.beat(&mark(0), t);
        let slave = UserPresence {
            devices: 1,
            masters: 0,
        };
        v.snapshot_part(&mark(0), 0, 1, vec![(alice(), slave)], t);
        assert!(!v.online(&alice(), t));
        assert_eq!(v.route(&[alice()], t).len(), 1);
    }

    #[test]
    fn its_own_events_are_ignored() {
        let (mut v, t) = (Views::new(2, TTL), Instant::now());
        assert!(!v.beat(&mark(0), t));
        assert!(v.census(t).is_empty());
    }
}
