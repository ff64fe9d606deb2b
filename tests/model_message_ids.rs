//! Message ids: strictly increasing within a millisecond, across a clock
//! stepping back and per thread; node numbers; the clock time in a fresh
//! millisecond's first id; no collisions between nodes; below 2^63 at the
//! end of time.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};

use imcore::id::{ID_EPOCH_MS, MAX_NODE};
use imcore::{Error, ManualClock, MessageId, MessageIdGenerator, ValidationError};

const T0: i64 = 1_700_000_000_000;

fn generator(node: u16, clock: &Arc<ManualClock>) -> MessageIdGenerator {
    MessageIdGenerator::with_clock(node, clock.clone()).unwrap()
}

fn assert_strictly_increasing(ids: &[MessageId]) {
    for (i, w) in ids.windows(2).enumerate() {
        assert!(
            w[1] > w[0],
            "id {} ({}) <= id {} ({})",
            i + 1,
            w[1],
            i,
            w[0]
        );
    }
}

#[test]
fn ids_increase_within_one_millisecond_and_borrow_the_next() {
    let clock = Arc::new(ManualClock::new(T0));
    let ids = generator(3, &clock);
    let got: Vec<MessageId> = (0..10_000).map(|_| ids.next_id()).collect();
    assert_strictly_increasing(&got);
    assert!(got.iter().all(|id| id.0 < 1 << 63));
    assert!(got.iter().all(|&id| MessageIdGenerator::node_of(id) == 3));
    // 4096 ids per millisecond; past that the next millisecond is borrowed.
    assert_eq!(MessageIdGenerator::time_ms_of(got[0]), T0);
    assert_eq!(MessageIdGenerator::time_ms_of(got[4095]), T0);
    assert_eq!(MessageIdGenerator::time_ms_of(got[4096]), T0 + 1);
    assert_eq!(MessageIdGenerator::time_ms_of(got[9999]), T0 + 2);
    // When the clock reaches a borrowed millisecond, ids keep increasing.
    clock.advance(std::time::Duration::from_millis(1));
    let next = ids.next_id();
    assert!(next > got[9999]);
    // And a millisecond never borrowed starts fresh.
    clock.advance(std::time::Duration::from_millis(10));
    let fresh = ids.next_id();
    assert!(fresh > next);
    assert_eq!(MessageIdGenerator::time_ms_of(fresh), T0 + 11);
}

#[test]
fn ids_increase_when_the_clock_steps_back() {
    let clock = Arc::new(ManualClock::new(T0));
    let ids = generator(0, &clock);
    let mut got = vec![ids.next_id(), ids.next_id()];
    clock.set_ms(T0 - 60_000);
    got.extend((0..100).map(|_| ids.next_id()));
    clock.rewind(std::time::Duration::from_millis(1));
    got.push(ids.next_id());
    // Before the id epoch, and before the Unix epoch.
    clock.set_ms(ID_EPOCH_MS - 5);
    got.push(ids.next_id());
    clock.set_ms(-1_000);
    got.push(ids.next_id());
    assert_strictly_increasing(&got);
    // The generator kept its last time while the clock was behind.
    assert!(got
        .iter()
        .all(|&id| MessageIdGenerator::time_ms_of(id) == T0));
    // Once the clock passes it again, the clock's time is used.
    clock.set_ms(T0 + 5);
    let later = ids.next_id();
    assert!(later > *got.last().unwrap());
    assert_eq!(MessageIdGenerator::time_ms_of(later), T0 + 5);
}

#[test]
fn ids_from_concurrent_threads_are_unique_and_increase_per_thread() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 5_000;
    let clock = Arc::new(ManualClock::new(T0));
    let ids = generator(17, &clock);
    let barrier = Barrier::new(THREADS);
    let per_thread: Vec<Vec<MessageId>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (ids, clock, barrier) = (&ids, &clock, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let mut mine = Vec::with_capacity(PER_THREAD);
                    for i in 0..PER_THREAD {
                        // One thread moves the clock, back and forth, while
                        // the others take ids.
                        if t == 0 && i % 500 == 0 {
                            step(clock, if i % 1000 == 0 { 3 } else { -2 });
                        }
                        mine.push(ids.next_id());
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all = HashSet::new();
    for mine in &per_thread {
        assert_eq!(mine.len(), PER_THREAD);
        assert_strictly_increasing(mine);
        for &id in mine {
            assert_eq!(MessageIdGenerator::node_of(id), 17);
            assert!(all.insert(id), "duplicate id {id}");
        }
    }
    assert_eq!(all.len(), THREADS * PER_THREAD);
}

#[test]
fn node_numbers() {
    let clock = Arc::new(ManualClock::new(T0));
    assert_eq!(MAX_NODE, 1023);
    for node in [0, 1, 2, 511, 1000, 1023] {
        let ids = generator(node, &clock);
        for _ in 0..3 {
            assert_eq!(MessageIdGenerator::node_of(ids.next_id()), node);
        }
    }
    for node in [1024, 2047, u16::MAX] {
        assert!(
            matches!(
                MessageIdGenerator::with_clock(node, clock.clone()),
                Err(Error::Validation(ValidationError::OutOfRange(_)))
            ),
            "node {node} accepted"
        );
    }
    assert!(MessageIdGenerator::new(1024).is_err());
    assert!(MessageIdGenerator::new(1023).is_ok());
}

#[test]
fn first_id_of_a_fresh_millisecond_carries_the_clock_time() {
    let clock = Arc::new(ManualClock::new(T0));
    let ids = generator(5, &clock);
    for ms in [1, 7, 1_000, 86_400_000] {
        step(&clock, ms);
        let id = ids.next_id();
        assert_eq!(MessageIdGenerator::time_ms_of(id), clock_now(&clock));
        // Later ids of the same millisecond too.
        assert_eq!(
            MessageIdGenerator::time_ms_of(ids.next_id()),
            clock_now(&clock)
        );
    }
    // At the epoch itself.
    let at_epoch = generator(5, &Arc::new(ManualClock::new(ID_EPOCH_MS)));
    assert_eq!(
        MessageIdGenerator::time_ms_of(at_epoch.next_id()),
        ID_EPOCH_MS
    );
}

fn clock_now(clock: &ManualClock) -> i64 {
    use imcore::Clock;
    clock.now_ms()
}

#[test]
fn ids_of_two_nodes_never_collide() {
    let clock = Arc::new(ManualClock::new(T0));
    let (one, two) = (generator(1, &clock), generator(2, &clock));
    let mut seen = HashSet::new();
    for i in 0..6_000 {
        if i % 1_000 == 999 {
            clock.advance(std::time::Duration::from_millis(1));
        }
        let (a, b) = (one.next_id(), two.next_id());
        assert_eq!(MessageIdGenerator::node_of(a), 1);
        assert_eq!(MessageIdGenerator::node_of(b), 2);
        assert!(seen.insert(a), "duplicate {a}");
        assert!(seen.insert(b), "duplicate {b}");
    }
    // The largest node number and node 0 do not collide either.
    let (low, high) = (generator(0, &clock), generator(MAX_NODE, &clock));
    for _ in 0..5_000 {
        assert!(seen.insert(low.next_id()));
        assert!(seen.insert(high.next_id()));
    }
}

/// Ids stay below 2^63 (documented on `MessageId`), even when a generator
/// whose clock is at the end of the 41-bit time range borrows milliseconds:
/// it saturates instead of overflowing into the sign bit.
#[test]
fn ids_stay_below_2_pow_63_at_the_end_of_time() {
    let clock = Arc::new(ManualClock::new(i64::MAX));
    let ids = generator(MAX_NODE, &clock);
    let got: Vec<MessageId> = (0..4_097).map(|_| ids.next_id()).collect();
    assert!(got.iter().all(|id| id.0 < 1 << 63), "{:?}", got.last());
    // The range is exhausted: ids never go back, and the last one repeats
    // (as documented on `MessageIdGenerator`).
    assert!(got.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(got[4_096], got[4_095]);
    assert_strictly_increasing(&got[..4_095]);
}

/// Moves a manual clock by `ms`, forward or (negative) back.
fn step(clock: &ManualClock, ms: i64) {
    let by = std::time::Duration::from_millis(ms.unsigned_abs());
    match ms >= 0 {
        true => clock.advance(by),
        false => clock.rewind(by),
    }
}
