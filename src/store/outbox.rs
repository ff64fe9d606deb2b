//! The outbox: committed history messages waiting to be told to the host,
//! for a webhook, a search index or a queue of its own.
//!
//! Once enabled, every new history message is put in the outbox in the
//! same write that stores it: a message that is stored is in the outbox,
//! whatever happens to the process after. The host reads the oldest
//! entries, tells them wherever it tells them, and removes them; what it
//! had not removed when the process died is read again after a restart.
//! Delivery is at least once: an entry told but not yet removed at a crash
//! is told again, so give each event an idempotency key (the message id
//! does).

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::Message;

/// Committed history messages waiting to be told to the host. See the
/// module docs.
#[async_trait]
pub trait Outbox: Send + Sync + Debug + 'static {
    /// From now on, every new history message (not a resend) goes into the
    /// outbox with the write that stores it. Off until called: a store
    /// nobody reads the outbox of would keep every message twice.
    fn enable_outbox(&self);

    /// Up to `limit` entries, oldest first: each entry's number and its
    /// message. Entries whose message a crash lost before it was stored
    /// (the outbox entry is written first) are dropped, never returned.
    async fn outbox(&self, limit: usize) -> Result<Vec<(u64, Message)>>;

    /// Removes entries, by number (unknown numbers are ignored).
    async fn outbox_done(&self, entries: &[u64]) -> Result<()>;
}
