//! The store's own thread, where its writes run: never on the caller's
//! runtime.
//!
//! sled's calls are synchronous, and under a burst one can stall: in sled
//! 0.34.7 a thread that reserves log space spins (`Log::reserve_inner`,
//! `Backoff::snooze`) for as long as the I/O buffer it found is sealed and
//! not yet replaced, and the thread that sealed it replaces it only after
//! taking the segment accountant's mutex (`IoBufs::with_sa`), which it may
//! hold while waiting for a file truncation queued on sled's I/O pool
//! (`SegmentAccountant::bump_tip`); every buffer write on that pool ends by
//! taking the same mutex (`IoBufs::sa_stabilize`), and the pool stops
//! growing once most of its threads are busy (its count of idle threads
//! goes below zero and wraps). A spin like that on a tokio worker takes the
//! worker with it: the reported wedge had one spinning for twenty minutes,
//! and a future that never yields cannot be timed out.
//!
//! sled's tracker has an open report of a deadlock under high load in the
//! same version (spacejam/sled#1412: threads parked for good after minutes
//! of concurrent gets and inserts, no stack trace, one comment that a newer
//! parking_lot cured a `flush_async` deadlock). The wedge seen here is not
//! obviously the same (a thread spinning, not parked), and this crate
//! cannot choose sled's parking_lot. Neither could be reproduced on demand:
//! 13 rounds of four 4 MiB bursts (2.7 million sled appends, debug build,
//! flush before ack, two workers, the machine's load average near 10) and
//! raw sled probes with 4 KiB segments, flushes on eight threads and the
//! machine loaded never wedged. What this crate controls is what a stall
//! costs; `tests/sled_stall.rs` stalls sled on demand (a transaction that
//! holds its process-wide lock) to check it.
//!
//! So writes are handed to this thread, one at a time, in the order they
//! were asked for, and the caller awaits the answer: the runtime's workers
//! stay free, and a caller can stop waiting (the hub's store deadline does)
//! while a write is stuck. A write whose caller stopped waiting before it
//! began is not made at all; one that began runs to its end. Every write
//! of the store comes here (history, read positions, commands,
//! revocations, the directory, the outbox); flushes run on a blocking
//! thread of their own (`flush.rs`). Reads stay on the caller's thread,
//! since handing each over would cost more than the read: a read that sled
//! stalls still holds its worker (the send path reads channel heads from
//! memory, and history and sync reads are not under the store deadline).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::BACKEND;
use crate::error::{Error, Result};

type Job = Box<dyn FnOnce() + Send>;

/// A thread that runs the store's writes in turn. Ends once the store (the
/// last clone of its sender) is dropped and the writes queued before have run.
#[derive(Debug, Clone)]
pub(super) struct WriteThread {
    jobs: mpsc::Sender<Job>,
    /// Writes asked for and not yet run (or skipped).
    pending: Arc<AtomicUsize>,
}

/// How long the thread looks for its next write before it sleeps, and a
/// lone caller for its answer before it awaits it. A hand-off that sleeps
/// costs a wake-up on each side, 20-37 µs for a round trip on this
/// project's 2-core VM (more than a whole send took on the caller's
/// thread); one that finds the other side looking costs under 1 µs. Both
/// give up after this, so the spin is bounded, and a stalled write is
/// awaited (and timed out) like any other.
const LINGER: Duration = Duration::from_micros(50);

impl WriteThread {
    /// Starts the thread.
    pub(super) fn start() -> Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let pending = Arc::new(AtomicUsize::new(0));
        let left = pending.clone();
        std::thread::Builder::new()
            .name("imcore-sled-writer".into())
            .spawn(move || {
                while let Some(job) = next(&queue) {
                    // A write that panics drops its answer (its caller
                    // gets an error) and leaves the thread to the next.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    left.fetch_sub(1, Ordering::AcqRel);
                }
            })
            .map_err(|e| Error::Storage {
                backend: BACKEND,
                source: Box::new(e),
            })?;
        Ok(WriteThread { jobs, pending })
    }

    /// Runs `write` on the thread and returns what it returned. If the
    /// returned future is dropped before the write began, the write is
    /// skipped.
    pub(super) async fn run<T, F>(&self, write: F) -> Result<T>
    where
        F: FnOnce() -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (answer, mut answered) = oneshot::channel();
        let job: Job = Box::new(move || {
            if answer.is_closed() {
                return; // nobody waits for it any more: not begun, not made
            }
            let _ = answer.send(write());
        });
        // Alone in the queue: the answer comes within microseconds.
        let lone = self.pending.fetch_add(1, Ordering::AcqRel) == 0;
        if self.jobs.send(job).is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(gone());
        }
        if lone {
            let since = Instant::now();
            while since.elapsed() < LINGER {
                match answered.try_recv() {
                    Ok(done) => return done,
                    Err(oneshot::error::TryRecvError::Empty) => std::hint::spin_loop(),
                    Err(oneshot::error::TryRecvError::Closed) => return Err(gone()),
                }
            }
        }
        answered.await.map_err(|_| gone())?
    }
}

/// The next job, or `None` once every sender is gone. Writes come in
/// runs (a caller's next write follows its answer within microseconds):
/// the thread looks again for [`LINGER`] before it sleeps.
fn next(queue: &mpsc::Receiver<Job>) -> Option<Job> {
    let since = Instant::now();
    loop {
        match queue.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if since.elapsed() < LINGER => std::hint::spin_loop(),
            Err(mpsc::TryRecvError::Empty) => return queue.recv().ok(),
        }
    }
}

/// No answer came: the write panicked (or the thread could not be
/// reached, which only a panic elsewhere can cause).
fn gone() -> Error {
    Error::Storage {
        backend: BACKEND,
        source: "the write panicked on the store's write thread".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_write_whose_caller_left_before_it_began_is_not_made() {
        let thread = WriteThread::start().unwrap();
        // A write that holds the thread until told to go on.
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let (began, started) = oneshot::channel::<()>();
        let first = tokio::spawn({
            let thread = thread.clone();
            async move {
                thread
                    .run(move || {
                        let _ = began.send(());
                        let _ = wait.recv();
                        Ok(1)
                    })
                    .await
            }
        });
        started.await.unwrap();
        let made = Arc::new(AtomicBool::new(false));
        let second = thread.run({
            let made = made.clone();
            move || {
                made.store(true, Ordering::SeqCst);
                Ok(2)
            }
        });
        // The caller gives up while the thread is busy.
        assert!(tokio::time::timeout(Duration::from_millis(20), second)
            .await
            .is_err());
        go.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        // A write after it runs, and the one given up on did not.
        assert_eq!(thread.run(|| Ok(3)).await.unwrap(), 3);
        assert!(!made.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_write_that_panics_fails_its_caller_and_not_the_next() {
        let thread = WriteThread::start().unwrap();
        let err = thread
            .run(|| -> Result<()> { panic!("a bug in a write") })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
        assert_eq!(thread.run(|| Ok(7)).await.unwrap(), 7);
    }
}
