//! The outbox: committed history messages waiting to be told to the host,
//! for a webhook, a search index or a queue of its own.
//!
//! Once enabled, every new history message is put in the outbox in the
//! same write that stores it: a message that is stored is in the outbox,
//! whatever happens to the process after. The host reads the oldest
//! entries, tells them wherever it tells them, and removes them; what it
//! had not removed when the process died is read again after a restart.
//!
//! # Many senders
//!
//! Several processes on one store (hub nodes sharing one PostgreSQL) each
//! run a sender, so entries are **claimed** in batches
//! ([`claim_outbox`](Outbox::claim_outbox)): a batch is leased to one
//! sender at a time, which renews its lease while it works
//! ([`renew_outbox`](Outbox::renew_outbox)) and removes the entries once
//! told ([`outbox_done`](Outbox::outbox_done)). A sender that dies stops
//! renewing; once its lease has run out, the next claim (by any process)
//! takes the batch over, whole. A batch never changes once formed: the
//! same entries, under the same number, at every claim, on every node and
//! after a restart, so that an idempotency key made from it (its first
//! and last message ids, say) is the same at every retry.
//!
//! Delivery is at least once: a batch told but not yet removed at a crash
//! is told again, and a sender cut off from the store for longer than its
//! lease may overlap with the one that took over. Give each event an
//! idempotency key (the message id, or the batch's) and let the receiver
//! deduplicate by it.
//!
//! Leases are measured on the callers' clocks (`now_ms`, milliseconds since
//! the Unix epoch): processes sharing a store need clocks that agree to
//! well within a lease.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Result, ValidationError};
use crate::model::Message;

/// A claim on one batch of outbox entries: which batch, and until when.
/// Renewing a lease or taking a batch over gives a new one, so a stale
/// lease (one a batch was taken over from) is known as such.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutboxLease {
    /// The batch's number: its first entry's, the same at every claim.
    pub batch: u64,
    /// When the lease runs out, in milliseconds since the Unix epoch.
    pub until_ms: i64,
}

/// A batch of outbox entries, claimed.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxBatch {
    /// The claim: renew it with [`Outbox::renew_outbox`] while telling.
    pub lease: OutboxLease,
    /// The entries, oldest first: each entry's number and its message.
    pub entries: Vec<(u64, Message)>,
}

impl OutboxBatch {
    /// The entries' numbers, for [`Outbox::outbox_done`].
    pub fn numbers(&self) -> Vec<u64> {
        self.entries.iter().map(|(n, _)| *n).collect()
    }
}

/// The end of a lease of `lease` from `now_ms`; a lease shorter than a
/// millisecond is refused (a batch taken over must get a lease end other
/// than the one it was taken from).
pub(crate) fn lease_end(now_ms: i64, lease: Duration) -> Result<i64> {
    if lease < Duration::from_millis(1) {
        return Err(ValidationError::OutOfRange("an outbox lease must be at least 1 ms").into());
    }
    Ok(now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)))
}

/// The end of `held` renewed by `lease` from `now_ms`: never sooner than
/// it was, so that a clock that went back keeps the lease.
pub(crate) fn renewal_end(held: &OutboxLease, now_ms: i64, lease: Duration) -> Result<i64> {
    Ok(lease_end(now_ms, lease)?.max(held.until_ms))
}

/// Committed history messages waiting to be told to the host. See the
/// module docs.
#[async_trait]
pub trait Outbox: Send + Sync + Debug + 'static {
    /// From now on, every new history message (not a resend) goes into the
    /// outbox with the write that stores it. Off until called: a store
    /// nobody reads the outbox of would keep every message twice.
    fn enable_outbox(&self);

    /// Up to `limit` entries, oldest first, claimed or not: each entry's
    /// number and its message. A look, for tests and monitoring; senders
    /// use [`claim_outbox`](Self::claim_outbox). Entries whose message a
    /// crash lost before it was stored (the outbox entry is written first)
    /// are dropped, never returned.
    async fn outbox(&self, limit: usize) -> Result<Vec<(u64, Message)>>;

    /// Claims a batch until `now_ms` plus `lease` (at least 1 ms): the oldest batch whose
    /// lease ran out (at or before `now_ms`), whole and unchanged, if there
    /// is one; else a new batch of up to `limit` of the oldest entries no
    /// batch holds; else `None`. Entries whose message a crash lost are
    /// never put in a batch. Two claims, from any processes on the store,
    /// never both get a batch whose lease has not run out.
    async fn claim_outbox(
        &self,
        limit: usize,
        now_ms: i64,
        lease: Duration,
    ) -> Result<Option<OutboxBatch>>;

    /// Extends a claim to `now_ms` plus `lease`: the new lease, or `None`
    /// if the batch is no longer held under `held` (its lease ran out and
    /// another claim took it over, or it is done).
    async fn renew_outbox(
        &self,
        held: OutboxLease,
        now_ms: i64,
        lease: Duration,
    ) -> Result<Option<OutboxLease>>;

    /// Removes entries, by number (unknown numbers are ignored); a batch
    /// whose entries are all removed is gone.
    async fn outbox_done(&self, entries: &[u64]) -> Result<()>;
}
