//! Group flush: concurrent writers share fsyncs.

use std::sync::atomic::{AtomicU64, Ordering};

use sled::Db;

use super::{storage, BACKEND};
use crate::error::{Error, Result};

/// Group commit: one flush at a time, each covering every write committed
/// before it started.
///
/// Writers take a ticket once their write is in sled and wait until a flush
/// that started after that point has finished. Concurrent writers therefore
/// share flushes instead of queueing one each.
///
/// Running one flush at a time (see [`flush_now`] for where), with sled's
/// synchronous `flush` rather than `Tree::flush_async`, also avoids a
/// deadlock in sled 0.34: `flush_async` runs each flush on sled's small
/// I/O pool while holding sled's global read guard, and with several
/// concurrent flushes and a transaction waiting for the write guard the pool
/// can fill with flushes that wait for one another.
#[derive(Debug, Default)]
pub(super) struct GroupFlush {
    /// Tickets handed out: writes committed so far.
    committed: AtomicU64,
    /// The highest ticket known to be on disk. Guarded by the mutex so that
    /// only one flush runs at a time.
    durable: tokio::sync::Mutex<u64>,
    /// Flushes done.
    flushes: AtomicU64,
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
        let mut durable = self.durable.lock().await;
        if *durable >= ticket {
            return Ok(()); // a flush that started after our commit covered us
        }
        // Every ticket up to `target` belongs to a committed write, so this
        // flush makes all of them durable.
        let target = self.committed();
        flush_now(db).await?;
        self.flushes.fetch_add(1, Ordering::Relaxed);
        *durable = target;
        Ok(())
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
