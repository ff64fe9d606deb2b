//! Putting a node's deliveries of a channel back in seq order.
//!
//! On one node, sends to a channel take their seq and deliver in one turn,
//! so devices see the channel in order. With many nodes, a message stored
//! by another node arrives over the network while this node's own next
//! message may already be stored: the node holds a message until the one
//! before it has been delivered here, or until it is clear that it will
//! not come (it was stored long ago, or the wait passed a bound).
//!
//! A device never receives a channel's seq below one it has received
//! live: a message whose turn has passed (it arrives after a later one was
//! delivered here, its wait having run out) is not delivered but counted,
//! and the device finds it by sync, as WuKongIM's clients do.
//!
//! This is the logic alone, with time passed in, so that it can be tested
//! without a clock: the hub's cluster path drives it, with the time of the
//! hub's [`Clock`](crate::Clock) in milliseconds (a test's `ManualClock`
//! decides when a wait runs out). A clock that steps back restarts the
//! waits it would otherwise stretch.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::model::Channel;

/// One channel's place in the order at this node.
#[derive(Debug)]
struct Lane<T> {
    /// The seq to deliver next; `None` until this node has delivered one
    /// (or learned where to start).
    next: Option<u64>,
    /// Messages waiting for the ones before them.
    held: BTreeMap<u64, T>,
    /// When the oldest wait began, in ms (set while `held` is not empty).
    waiting_since: Option<i64>,
    /// The seq a running look-up asks about (the one before the first
    /// held message when it was asked).
    probing: Option<u64>,
    /// The last time anything happened here, in ms.
    touched: i64,
}

/// What the caller must look up: whether message `seq` of `channel` was
/// stored long enough ago that it is delivered or lost by now. Answer with
/// [`Sequencer::probed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Probe {
    pub(crate) channel: Channel,
    pub(crate) seq: u64,
}

/// What the caller must do now: deliver `ready` in this order, and start
/// the look-ups in `probes`.
#[derive(Debug)]
pub(crate) struct Step<T> {
    pub(crate) ready: Vec<T>,
    pub(crate) probes: Vec<Probe>,
    /// Messages that arrived after their turn had passed (a later one of
    /// their channel was delivered here, their wait having run out, or may
    /// have been before the channel was forgotten): not delivered.
    pub(crate) late: u64,
    /// Gaps given up on: seqs that never arrived within the wait.
    pub(crate) skipped: u64,
}

impl<T> Default for Step<T> {
    fn default() -> Self {
        Step {
            ready: Vec::new(),
            probes: Vec::new(),
            late: 0,
            skipped: 0,
        }
    }
}

/// Per-channel order of deliveries at one node.
#[derive(Debug)]
pub(crate) struct Sequencer<T> {
    lanes: HashMap<Channel, Lane<T>, ahash::RandomState>,
    /// How long a message waits for the ones before it, in ms.
    wait: i64,
    /// How long an idle channel's place is remembered, in ms.
    memory: i64,
}

/// `d` in whole milliseconds, saturating.
fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// How long ago `since` was at `now`; a `since` in the future (the clock
/// stepped back) becomes `now`, so that the clock's step does not stretch
/// what is measured from it.
fn elapsed(since: &mut i64, now: i64) -> i64 {
    if now < *since {
        *since = now;
    }
    now - *since
}

impl<T> Sequencer<T> {
    /// A sequencer that holds a message at most `wait`, and forgets a
    /// channel idle for `memory`.
    pub(crate) fn new(wait: Duration, memory: Duration) -> Self {
        Sequencer {
            lanes: HashMap::default(),
            wait: ms(wait),
            memory: ms(memory),
        }
    }

    /// Channels remembered now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lanes.len()
    }

    /// Message `seq` of `channel` (a history message: seq ≥ 1), stored at
    /// `stored` (ms), is here at `now` (ms).
    pub(crate) fn admit(
        &mut self,
        channel: &Channel,
        seq: u64,
        stored: i64,
        item: T,
        now: i64,
    ) -> Step<T> {
        let mut step = Step::default();
        let memory = self.memory;
        let lane = self.lanes.entry(channel.clone()).or_insert_with(|| Lane {
            next: None,
            held: BTreeMap::new(),
            waiting_since: None,
            probing: None,
            touched: now,
        });
        lane.touched = now;
        // Nothing delivered here yet, and the message older than a place
        // is remembered: the channel may have been forgotten after a later
        // seq was delivered (anything delivered before it was forgotten was
        // stored before `now - memory`, and so before any message stored
        // since).
        let forgotten = lane.next.is_none() && now.saturating_sub(stored) >= memory;
        match lane.next {
            // Its turn has passed, or may have: not delivered.
            _ if forgotten => step.late += 1,
            Some(next) if seq < next => step.late += 1,
            // The channel's first message, or the one awaited.
            None if seq <= 1 => {
                step.ready.push(item);
                lane.next = Some(seq + 1);
                drain(lane, &mut step);
            }
            Some(next) if seq == next => {
                step.ready.push(item);
                lane.next = Some(seq + 1);
                drain(lane, &mut step);
            }
            // Ahead of what was delivered here, or nothing known yet.
            _ => {
                lane.held.insert(seq, item);
                lane.waiting_since.get_or_insert(now);
                probe(channel, lane, &mut step);
            }
        }
        step
    }

    /// The answer to a [`Probe`]: `settled` when message `seq` was stored
    /// long enough ago (or not at all) that nothing up to it is still on
    /// its way.
    ///
    /// The answer is about `seq` only: the gap it was asked for may have
    /// closed meanwhile and another opened higher up, about which it says
    /// nothing (messages there may have been stored just now).
    pub(crate) fn probed(&mut self, channel: &Channel, seq: u64, settled: bool) -> Step<T> {
        let mut step = Step::default();
        let Some(lane) = self.lanes.get_mut(channel) else {
            return step;
        };
        // Only the look-up running is answered here (a channel forgotten
        // and met again may have asked another since).
        if lane.probing != Some(seq) {
            return step;
        }
        lane.probing = None;
        if settled {
            // Nothing up to `seq` is on its way: deliver from `seq + 1`.
            let next = lane.next.unwrap_or(0).max(seq + 1);
            if let Some(old) = lane.next {
                let arrived = lane.held.range(old..next).count() as u64;
                step.skipped += next - old - arrived;
            }
            lane.next = Some(next);
            drain(lane, &mut step);
        } else if lane.held.keys().next() == Some(&(seq + 1)) {
            // The gap asked about is still on its way (or not known): the
            // wait's bound decides, and the clock's expiry looks again.
            return step;
        }
        // The gap now (above what was released, or opened since the
        // question): is it old?
        probe(channel, lane, &mut step);
        step
    }

    /// Gives up the waits that ran past the bound at `now` (ms), delivering
    /// what waited in order, and forgets idle channels.
    pub(crate) fn expire(&mut self, now: i64) -> Step<T> {
        let mut step = Step::default();
        let (wait, memory) = (self.wait, self.memory);
        self.lanes.retain(|channel, lane| {
            if lane
                .waiting_since
                .as_mut()
                .is_some_and(|since| elapsed(since, now) >= wait)
            {
                if let Some(&first) = lane.held.keys().next() {
                    let next = lane.next.unwrap_or(first);
                    step.skipped += first.saturating_sub(next);
                    lane.next = Some(first);
                    lane.touched = now;
                    drain(lane, &mut step);
                }
                if !lane.held.is_empty() {
                    lane.waiting_since = Some(now);
                    probe(channel, lane, &mut step);
                }
            }
            !lane.held.is_empty() || elapsed(&mut lane.touched, now) < memory
        });
        step
    }
}

/// Moves what is now in order from `held` to `step.ready`.
fn drain<T>(lane: &mut Lane<T>, step: &mut Step<T>) {
    while let Some(next) = lane.next {
        match lane.held.first_entry() {
            Some(entry) if *entry.key() <= next => {
                let seq = *entry.key();
                step.ready.push(entry.remove());
                lane.next = Some(next.max(seq + 1));
            }
            _ => break,
        }
    }
    if lane.held.is_empty() {
        lane.waiting_since = None;
    }
}

/// Asks for a look-up of the message before the first held one, unless one
/// is running.
fn probe<T>(channel: &Channel, lane: &mut Lane<T>, step: &mut Step<T>) {
    if lane.probing.is_some() {
        return;
    }
    if let Some(&first) = lane.held.keys().next() {
        let seq = first - 1;
        lane.probing = Some(seq);
        step.probes.push(Probe {
            channel: channel.clone(),
            seq,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> Channel {
        Channel::group("g").unwrap()
    }

    fn seq() -> Sequencer<u64> {
        Sequencer::new(Duration::from_millis(100), Duration::from_secs(10))
    }

    #[test]
    fn in_order_arrivals_pass_straight_through() {
        let (mut s, t) = (seq(), 1_000_000i64);
        for n in 1..=3 {
            let step = s.admit(&group(), n, t, n, t);
            assert_eq!(step.ready, [n]);
            assert!(step.probes.is_empty());
        }
    }

    #[test]
    fn a_message_waits_for_the_one_before_it() {
        let (mut s, t) = (seq(), 1_000_000i64);
        assert_eq!(s.admit(&group(), 1, t, 1, t).ready, [1]);
        let step = s.admit(&group(), 3, t, 3, t);
        assert!(step.ready.is_empty());
        assert_eq!(
            step.probes,
            [Probe {
                channel: group(),
                seq: 2
            }]
        );
        // The look-up says 2 was stored just now: keep waiting.
        assert!(s.probed(&group(), 2, false).ready.is_empty());
        assert_eq!(s.admit(&group(), 2, t, 2, t).ready, [2, 3]);
    }

    #[test]
    fn an_unknown_channel_asks_whether_the_previous_message_is_old() {
        let (mut s, t) = (seq(), 1_000_000i64);
        let step = s.admit(&group(), 7, t, 7, t);
        assert!(step.ready.is_empty());
        assert_eq!(
            step.probes,
            [Probe {
                channel: group(),
                seq: 6
            }]
        );
        // 8 arrives meanwhile and waits behind 7; no second look-up.
        let step = s.admit(&group(), 8, t, 8, t);
        assert!(step.ready.is_empty() && step.probes.is_empty());
        let step = s.probed(&group(), 6, true);
        assert_eq!(step.ready, [7, 8]);
        assert_eq!(step.skipped, 0);
    }

    #[test]
    fn an_unknown_channel_whose_previous_message_is_recent_waits_for_it() {
        let (mut s, t) = (seq(), 1_000_000i64);
        s.admit(&group(), 7, t, 7, t);
        let step = s.probed(&group(), 6, false);
        assert!(step.ready.is_empty() && step.probes.is_empty());
        // 6 arrives: is 5 old? (it could be on its way too)
        let step = s.admit(&group(), 6, t, 6, t);
        assert!(step.ready.is_empty());
        assert_eq!(
            step.probes,
            [Probe {
                channel: group(),
                seq: 5
            }]
        );
        assert_eq!(s.probed(&group(), 5, true).ready, [6, 7]);
    }

    #[test]
    fn a_gap_is_given_up_after_the_wait_and_what_waited_goes_in_order() {
        let (mut s, t) = (seq(), 1_000_000i64);
        s.admit(&group(), 1, t, 1, t);
        s.admit(&group(), 4, t, 4, t);
        s.admit(&group(), 3, t, 3, t);
        s.probed(&group(), 2, false);
        assert!(s.expire(t + 99).ready.is_empty());
        let step = s.expire(t + 100);
        assert_eq!(step.ready, [3, 4]);
        assert_eq!(step.skipped, 1);
        // 2 arrives after all: below what was delivered, so not
        // delivered (sync finds it), counted as late.
        let step = s.admit(&group(), 2, t, 2, t + 101);
        assert_eq!((step.ready, step.late), (vec![], 1));
        assert_eq!(s.admit(&group(), 5, t, 5, t + 101).ready, [5]);
    }

    #[test]
    fn an_answer_about_a_gap_that_closed_releases_nothing_past_a_newer_one() {
        let (mut s, t) = (seq(), 1_000_000i64);
        s.admit(&group(), 1, t, 1, t);
        let step = s.admit(&group(), 3, t, 3, t);
        assert_eq!(step.probes[0].seq, 2);
        assert_eq!(s.admit(&group(), 2, t, 2, t).ready, [2, 3]);
        // 4 and 5 are on their way; 6 waits for them.
        let step = s.admit(&group(), 6, t, 6, t);
        assert!(step.ready.is_empty() && step.probes.is_empty());
        // "2 is old" says nothing about 4 and 5: ask about 5.
        let step = s.probed(&group(), 2, true);
        assert!(step.ready.is_empty(), "released {:?}", step.ready);
        assert_eq!((step.skipped, step.probes.len()), (0, 1));
        assert_eq!(step.probes[0].seq, 5);
        assert!(s.probed(&group(), 5, false).ready.is_empty());
        assert_eq!(s.admit(&group(), 4, t, 4, t).ready, [4]);
        assert_eq!(s.admit(&group(), 5, t, 5, t).ready, [5, 6]);
    }

    #[test]
    fn a_still_on_its_way_answer_about_a_gap_that_closed_asks_about_the_newer_one() {
        let (mut s, t) = (seq(), 1_000_000i64);
        s.admit(&group(), 1, t, 1, t);
        s.admit(&group(), 3, t, 3, t);
        s.admit(&group(), 2, t, 2, t);
        s.admit(&group(), 6, t, 6, t);
        let step = s.probed(&group(), 2, false);
        assert_eq!(step.probes.iter().map(|p| p.seq).collect::<Vec<_>>(), [5]);
        // An answer to no look-up running changes nothing.
        let step = s.probed(&group(), 2, true);
        assert!(step.ready.is_empty() && step.probes.is_empty());
        assert_eq!(s.probed(&group(), 5, true).ready, [6]);
    }

    #[test]
    fn a_message_older_than_a_channels_memory_is_not_delivered_on_a_channel_met_anew() {
        let (mut s, t) = (seq(), 1_000_000i64);
        s.admit(&group(), 1, t, 1, t);
        s.admit(&group(), 3, t, 3, t);
        assert_eq!(s.expire(t + 100).ready, [3]);
        // Idle for the memory (10 s): forgotten, 3 delivered or not.
        s.expire(t + 10_100);
        assert_eq!(s.len(), 0);
        // 2, stored at t, comes at last: 3 may have been delivered.
        let step = s.admit(&group(), 2, t, 2, t + 10_100);
        assert_eq!((step.ready, step.late), (vec![], 1));
        // 4, stored just now, is met as on a new channel.
        let step = s.admit(&group(), 4, t + 10_100, 4, t + 10_100);
        assert_eq!(step.probes[0].seq, 3);
        assert_eq!(s.probed(&group(), 3, true).ready, [4]);
    }

    #[test]
    fn a_settled_probe_releases_past_a_gap_of_old_messages() {
        let (mut s, t) = (seq(), 1_000_000i64);
        s.admit(&group(), 1, t, 1, t);
        s.admit(&group(), 5, t, 5, t);
        let step = s.probed(&group(), 4, true);
        assert_eq!(step.ready, [5]);
        assert_eq!(step.skipped, 3);
    }

    #[test]
    fn idle_channels_are_forgotten_and_waiting_ones_kept() {
        let (mut s, t) = (seq(), 1_000_000i64);
        s.admit(&group(), 1, t, 1, t);
        let other = Channel::group("h").unwrap();
        s.admit(&other, 1, t, 1, t);
        s.admit(&other, 3, t + 10_000, 3, t + 10_000);
        s.expire(t + 10_000);
        assert_eq!(s.len(), 1, "the idle group is forgotten");
        // Forgotten: its next message is treated as a first contact.
        let step = s.admit(&group(), 2, t + 11_000, 2, t + 11_000);
        assert_eq!(step.probes.len(), 1);
    }

    #[test]
    fn channels_do_not_wait_for_each_other() {
        let (mut s, t) = (seq(), 1_000_000i64);
        s.admit(&group(), 1, t, 1, t);
        s.admit(&group(), 3, t, 3, t);
        let other = Channel::group("h").unwrap();
        assert_eq!(s.admit(&other, 1, t, 10, t).ready, [10]);
    }

    #[test]
    fn a_later_wait_is_measured_from_its_own_start_not_an_earlier_one() {
        let (mut s, t) = (seq(), 1_000_000i64);
        s.admit(&group(), 1, t, 1, t);
        // A wait for 2 begins at t and ends when 2 arrives at t + 10.
        s.admit(&group(), 3, t, 3, t);
        assert_eq!(s.admit(&group(), 2, t + 10, 2, t + 10).ready, [2, 3]);
        // A new wait, for 4, begins at t + 90: it runs until t + 190.
        s.admit(&group(), 5, t + 90, 5, t + 90);
        let step = s.expire(t + 100);
        assert!(
            step.ready.is_empty() && step.skipped == 0,
            "the gap at 4 was given up 10 ms into its wait"
        );
        assert!(s.expire(t + 189).ready.is_empty());
        assert_eq!(s.expire(t + 190).ready, [5]);
    }

    #[test]
    fn a_clock_stepping_back_restarts_a_wait_instead_of_stretching_it() {
        let (mut s, t) = (seq(), 1_000_000i64);
        s.admit(&group(), 1, t, 1, t);
        s.admit(&group(), 3, t, 3, t);
        // The clock steps back an hour: the wait starts again from there.
        let back = t - 3_600_000;
        assert!(s.expire(back).ready.is_empty());
        assert_eq!(s.expire(back + 100).ready, [3]);
    }
}
