//! The store deadline: a send's store call that does not answer in time
//! fails, retryable, instead of holding the send (and its channel) for as
//! long as the store stalls.

use std::future::Future;
use std::time::Duration;

use super::Hub;
use crate::error::{Error, Result};

/// Why a store call failed: it did not answer in time.
#[derive(Debug, thiserror::Error)]
#[error("no answer to {call} within {after:?} (the hub's store deadline)")]
pub(super) struct StoreDeadline {
    call: &'static str,
    after: Duration,
}

impl Hub {
    /// Awaits the store call `call` for at most
    /// [`HubConfig::store_deadline`](super::HubConfig::store_deadline).
    /// Past it: [`Error::Unavailable`], counted and logged. Dropping `call`
    /// stops waiting for it; what it does then is the store's (the sled
    /// store skips a write that has not begun and finishes one that has).
    pub(super) async fn within<T>(
        &self,
        call: &'static str,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let Some(after) = self.inner.config.store_deadline else {
            return work.await;
        };
        match tokio::time::timeout(after, work).await {
            Ok(done) => done,
            Err(_) => {
                self.inner.counters.store_timeout();
                tracing::warn!(
                    call,
                    ?after,
                    "a store call missed the store deadline; its send fails, retryable"
                );
                Err(Error::Unavailable {
                    backend: "store",
                    source: Box::new(StoreDeadline { call, after }),
                })
            }
        }
    }
}
