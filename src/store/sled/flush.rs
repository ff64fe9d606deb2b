//! Group flush: concurrent writers share fsyncs.

use std::sync::atomic::{AtomicU64, Ordering};

use sled::Db;
use tokio::sync::watch;

use super::{storage, BACKEND};
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
/// Running one flush at a time (see [`flush_now`] for where), with sled's
/// synchronous `flush` rather than `Tree::flush_async`, also avoids a
/// deadlock in sled 0.34: `flush_async` runs each flush on sled's small
/// I/O pool while holding sled's global read guard, and with several
/// concurrent flushes and a transaction waiting for the write guard the pool
/// can fill with flushes that wait for one another.
#[derive(Debug)]
pub(super) struct GroupFlush {
    /// Tickets handed out: writes committed so far.
    committed: AtomicU64,
    /// The highest ticket known to be on disk; told to every waiter when
    /// a flush ends (and, unchanged, when one fails, so that a waiter
    /// takes the next).
    durable: watch::Sender<u64>,
    /// Held by the writer whose flush is running.
    flushing: tokio::sync::Mutex<()>,
    /// Flushes done.
    flushes: AtomicU64,
}

impl Default for GroupFlush {
    fn default() -> Self {
        GroupFlush {
            committed: AtomicU64::new(0),
            durable: watch::Sender::new(0),
            flushing: tokio::sync::Mutex::new(()),
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
    pub(super) async fn flush(&self, db: &Db, ticket: u64) -> Result<()> {
        let mut durable = self.durable.subscribe();
        loop {
            if *durable.borrow_and_update() >= ticket {
                return Ok(()); // a flush that started after our commit covered us
            }
            let Ok(lock) = self.flushing.try_lock() else {
                // A flush is running: when it ends, look again (it may
                // have begun before our commit). The sender lives in
                // `self`, so this only ends with a change.
                let _ = durable.changed().await;
                continue;
            };
            let flushing = Flushing {
                lock: Some(lock),
                durable: &self.durable,
            };
            if *self.durable.borrow() >= ticket {
                return Ok(()); // one ended between our look and the lock
            }
            // Every ticket up to `target` belongs to a committed write, so
            // this flush makes all of them durable.
            let target = self.committed();
            let flushed = flush_now(db).await;
            if flushed.is_ok() {
                self.flushes.fetch_add(1, Ordering::Relaxed);
                self.durable.send_if_modified(|d| {
                    *d = (*d).max(target);
                    false // `flushing` tells the waiters once it has unlocked
                });
            }
            drop(flushing);
            return flushed;
        }
    }
}

/// The right to flush, held by one writer at a time. Dropping it (after
/// the flush, or when the writer's future is dropped mid-flush) unlocks and
/// then wakes every waiter: unlocking first, so that no waiter can find the
/// lock still taken after its wake-up and wait for a wake-up that never
/// comes. After a failed flush the waiters see no progress and one of them
/// flushes again.
struct Flushing<'a> {
    lock: Option<tokio::sync::MutexGuard<'a, ()>>,
    durable: &'a watch::Sender<u64>,
}

impl Drop for Flushing<'_> {
    fn drop(&mut self) {
        drop(self.lock.take());
        self.durable.send_modify(|_| {});
    }
}

/// Flushes and fsyncs the database. On a multi-thread runtime the flush
/// runs on the calling worker, which hands its other tasks to another
/// thread while it blocks (`block_in_place`): no hand-off of the flush
/// itself, which for a lone sender costs as much again as the fsync. On a
/// current-thread runtime it runs on a blocking thread instead.
async fn flush_now(db: &Db) -> Result<()> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        return tokio::task::block_in_place(|| db.flush())
            .map(drop)
            .map_err(storage);
    }
    let db = db.clone();
    tokio::task::spawn_blocking(move || db.flush())
        .await
        .map_err(|e| Error::Storage {
            backend: BACKEND,
            source: Box::new(e),
        })?
        .map(drop)
        .map_err(storage)
}
