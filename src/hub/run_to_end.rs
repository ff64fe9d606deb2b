//! Work that a caller cannot cut short.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Runs `work` to the end even if the caller stops waiting (a timeout, a
/// dropped HTTP request), so that nothing is left stored but untold.
///
/// The work runs in the caller's task, with no hand-off to another thread
/// (a hand-off costs two context switches per send); only if the caller
/// drops it half-way is the rest moved into a task of its own, on the
/// runtime that first polled it.
pub(super) async fn run_to_end<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
) -> T {
    RunToEnd {
        work: Some(Box::pin(work)),
        runtime: None,
    }
    .await
}

type Work<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// See [`run_to_end`].
struct RunToEnd<T: Send + 'static> {
    work: Option<Work<T>>,
    /// Where to finish the work if the caller drops it: the runtime that
    /// polled it (the one dropping it may be another thread, or none).
    runtime: Option<tokio::runtime::Handle>,
}

impl<T: Send + 'static> Future for RunToEnd<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if self.runtime.is_none() {
            self.runtime = tokio::runtime::Handle::try_current().ok();
        }
        // Polled again after it finished: a caller's bug (`Future`'s
        // contract), answered as the standard library's futures do.
        let Some(work) = self.work.as_mut() else {
            panic!("run_to_end polled after completion");
        };
        let out = work.as_mut().poll(cx);
        if out.is_ready() {
            self.work = None;
        }
        out
    }
}

impl<T: Send + 'static> Drop for RunToEnd<T> {
    fn drop(&mut self) {
        let Some(rest) = self.work.take() else {
            return;
        };
        // Unwinding from a panic inside the work: polling it again would
        // panic again. Let it go.
        if std::thread::panicking() {
            return;
        }
        // The caller gave up half-way: finish in a task of its own.
        if let Some(runtime) = self.runtime.take() {
            runtime.spawn(async move {
                let _ = rest.await;
            });
        }
    }
}
