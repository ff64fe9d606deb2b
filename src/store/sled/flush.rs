//! Group flush: concurrent writers share fsyncs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sled::Db;
use tokio::sync::watch;

use super::BACKEND;
use crate::error::{Error, Result};

/// Group commit: one flush at a time, each covering every write committed
/// before it started.
///
/// Writers take a ticket once their write is in sled and wait until a flush
/// that started after that point has finished. Concurrent writers therefore
/// share flushes instead of queueing one each. When a flush ends, every
/// writer it covers is woken at once: the sends it made durable go on to
/// deliver together, rather than one after another as each hands a lock on
/// to the next.
///
/// The flush itself runs on a blocking thread, not on the waiter's worker
/// and not on the store's write thread (writes go on while it runs, and
/// the next flush covers them: on the write thread, each flush would cover
/// only the writes queued before it, and sends to one channel, which write
/// one after another, would get a flush each). It does not belong to any
/// waiter: a waiter that stops waiting (a deadline) leaves it running, and
/// the next waiter does not start another beside it. So a flush that sled
/// stalls holds one thread, however many give up on it, and never a
/// runtime worker.
///
/// Running one flush at a time, with sled's synchronous `flush` rather
/// than `Tree::flush_async`, also avoids a deadlock in sled 0.34:
/// `flush_async` runs each flush on sled's small I/O pool while holding
/// sled's global read guard, and with several concurrent flushes and a
/// transaction waiting for the write guard the pool can fill with flushes
/// that wait for one another.
#[derive(Debug)]
pub(super) struct GroupFlush {
    /// Tickets handed out: writes committed so far.
    committed: AtomicU64,
    /// What the flushes have done, told to every waiter when one ends.
    state: watch::Sender<Flushed>,
    /// Flushes done.
    flushes: AtomicU64,
}

/// Where the flushes are.
#[derive(Debug, Clone, Default)]
struct Flushed {
    /// The highest ticket known to be on disk.
    durable: u64,
    /// A flush is running.
    running: bool,
    /// The last flush that failed: the highest ticket it was to cover, and
    /// why. Waiters it covered fail with it; later ones flush again.
    failed: Option<(u64, String)>,
}

impl Default for GroupFlush {
    fn default() -> Self {
        GroupFlush {
            committed: AtomicU64::new(0),
            state: watch::Sender::new(Flushed::default()),
            flushes: AtomicU64::new(0),
        }
    }
}

impl GroupFlush {
    /// Takes a ticket for a write that has just committed.
    pub(super) fn commit(&self) -> u64 {
        self.committed.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The latest ticket handed out.
    pub(super) fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// How many flushes have been done.
    pub(super) fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Returns once every write up to `ticket` is on disk.
    pub(super) async fn flush(self: &Arc<Self>, db: &Db, ticket: u64) -> Result<()> {
        let mut state = self.state.subscribe();
        // The first failure seen, if it came after our ticket was taken, is
        // ours; one from before it is someone else's, and we flush again.
        let mut seen_failure = state.borrow().failed.as_ref().map(|(t, _)| *t);
        loop {
            let start = {
                let now = state.borrow_and_update();
                if now.durable >= ticket {
                    return Ok(()); // a flush that started after our commit covered us
                }
                if let Some((target, why)) = &now.failed {
                    if Some(*target) != seen_failure && *target >= ticket {
                        return Err(Error::Storage {
                            backend: BACKEND,
                            source: why.clone().into(),
                        });
                    }
                    seen_failure = Some(*target);
                }
                !now.running
            };
            if start && self.start(db) {
                continue; // look again: it may already have ended
            }
            // A flush is running: when it ends, look again (it may have
            // begun before our commit). The sender lives in `self`, so
            // this only ends with a change.
            let _ = state.changed().await;
        }
    }

    /// Starts a flush of everything committed so far, unless one is
    /// running. Returns whether this call started it.
    fn start(self: &Arc<Self>, db: &Db) -> bool {
        let started = self.state.send_if_modified(|s| {
            let start = !s.running;
            s.running = true;
            start
        });
        if !started {
            return false;
        }
        let (me, db) = (self.clone(), db.clone());
        tokio::task::spawn_blocking(move || {
            // Every ticket up to `target` belongs to a write committed
            // before this flush began, so it makes all of them durable.
            // Taken here, not before the hand-off: writes committed while
            // this thread was being scheduled are covered too.
            let target = me.committed();
            let flushed = db.flush();
            if flushed.is_ok() {
                me.flushes.fetch_add(1, Ordering::Relaxed);
            }
            me.state.send_modify(|s| {
                s.running = false;
                match flushed {
                    Ok(_) => s.durable = s.durable.max(target),
                    Err(e) => s.failed = Some((target, e.to_string())),
                }
            });
        });
        true
    }
}
