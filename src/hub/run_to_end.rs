//! Work that a caller cannot cut short.

use crate::error::{Error, Result};

/// Runs `work` to the end even if the caller stops waiting (a timeout, a
/// dropped HTTP request), so that nothing is left stored but untold.
///
/// The work runs in the caller's task, with no hand-off to another thread
/// (a hand-off costs two context switches per send); only if the caller
/// drops it half-way is the rest moved into a task of its own.
pub(super) async fn run_to_end<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    RunToEnd(Some(Box::pin(work))).await
}

type Work<T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send>>;

/// See [`run_to_end`].
struct RunToEnd<T: Send + 'static>(Option<Work<T>>);

impl<T: Send + 'static> std::future::Future for RunToEnd<T> {
    type Output = Result<T>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<T>> {
        let Some(work) = self.0.as_mut() else {
            return std::task::Poll::Ready(Err(Error::Storage {
                backend: "hub",
                source: "polled after completion".into(),
            }));
        };
        let out = work.as_mut().poll(cx);
        if out.is_ready() {
            self.0 = None;
        }
        out
    }
}

impl<T: Send + 'static> Drop for RunToEnd<T> {
    fn drop(&mut self) {
        if let Some(rest) = self.0.take() {
            // The caller gave up half-way: finish in a task of its own. A
            // hub runs inside a tokio runtime (its sends need one), so
            // there is one to spawn on unless the runtime itself is going.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = rest.await;
                });
            }
        }
    }
}
